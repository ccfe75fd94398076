//! The context a reader needs to weigh the numbers: cores, CPU model, date, versions.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub date: String,
    pub commit: Option<String>,
    pub tollgate_version: Option<String>,
    pub nginx_version: Option<String>,
}

impl Machine {
    pub async fn describe(tollgate: &Path, nginx: Option<&Path>) -> Machine {
        let nginx_version = match nginx {
            Some(path) => crate::nginx::version(path).await,
            None => None,
        };
        Machine {
            cores: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1),
            cpu_model: cpu_model().unwrap_or_else(|| "unknown".into()),
            date: today(),
            commit: output("git", &["rev-parse", "--short", "HEAD"])
                .await
                .map(|c| {
                    let dirty = std::process::Command::new("git")
                        .args(["diff", "--quiet", "HEAD"])
                        .status()
                        .is_ok_and(|s| !s.success());
                    if dirty {
                        format!("{c} (with uncommitted changes)")
                    } else {
                        c
                    }
                }),
            tollgate_version: output(&tollgate.display().to_string(), &["--version"]).await,
            nginx_version,
        }
    }
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

async fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Today's UTC date, `YYYY-MM-DD`.
fn today() -> String {
    date_of(SystemTime::now())
}

/// A time's UTC date, `YYYY-MM-DD`.
pub fn date_of(time: SystemTime) -> String {
    let days = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
    }
}
