//! The microbenchmarks' latest numbers, read from criterion's saved estimates
//! (`target/criterion/**/new/estimates.json`, written by `cargo bench`).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

/// One criterion benchmark's latest result.
#[derive(Debug, Clone)]
pub struct Micro {
    pub id: String,
    /// Median time per iteration, ns.
    pub median_ns: f64,
    /// 95 % confidence interval of the mean, ns.
    pub mean_ns: f64,
    pub mean_low_ns: f64,
    pub mean_high_ns: f64,
    /// Bytes processed per iteration, when the benchmark declared a throughput.
    pub bytes: Option<u64>,
    pub measured: Option<SystemTime>,
}

/// `target/criterion` next to this executable's `target/release`.
pub fn criterion_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let target = exe.parent()?.parent()?;
    Some(target.join("criterion"))
}

/// Every benchmark with saved estimates, sorted by id.
pub fn load(dir: &Path) -> Vec<Micro> {
    let mut found = Vec::new();
    walk(dir, 0, &mut found);
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

fn walk(dir: &Path, depth: usize, found: &mut Vec<Micro>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() || depth > 6 {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            if let Some(micro) = read(&path) {
                found.push(micro);
            }
        } else if path
            .file_name()
            .is_some_and(|n| n != "report" && n != "base")
        {
            walk(&path, depth + 1, found);
        }
    }
}

fn read(new: &Path) -> Option<Micro> {
    let json = |name: &str| -> Option<Value> {
        serde_json::from_str(&std::fs::read_to_string(new.join(name)).ok()?).ok()
    };
    let estimates = json("estimates.json")?;
    let benchmark = json("benchmark.json")?;
    let point = |stat: &str, field: &str| -> Option<f64> {
        match field {
            "point" => estimates[stat]["point_estimate"].as_f64(),
            bound => estimates[stat]["confidence_interval"][bound].as_f64(),
        }
    };
    Some(Micro {
        id: benchmark["full_id"].as_str()?.to_owned(),
        median_ns: point("median", "point")?,
        mean_ns: point("mean", "point")?,
        mean_low_ns: point("mean", "lower_bound")?,
        mean_high_ns: point("mean", "upper_bound")?,
        bytes: benchmark["throughput"]["Bytes"]
            .as_u64()
            .or_else(|| benchmark["throughput"]["BytesDecimal"].as_u64()),
        measured: std::fs::metadata(new.join("estimates.json"))
            .and_then(|m| m.modified())
            .ok(),
    })
}

/// A duration in ns, in the unit that reads best.
pub fn human_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.1} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}
