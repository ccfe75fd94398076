//! The context a reader needs to weigh the numbers: cores, CPU model, date, versions.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::DateTime;

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

/// A time's UTC date, `YYYY-MM-DD` (1970-01-01 for a time before the epoch).
pub fn date_of(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0);
    DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_utc_days() {
        let day = |days: u64| date_of(UNIX_EPOCH + Duration::from_secs(days * 86_400 + 86_399));
        assert_eq!(day(0), "1970-01-01");
        assert_eq!(day(19_782), "2024-02-29");
        assert_eq!(day(20_000), "2024-10-04");
        assert_eq!(date_of(UNIX_EPOCH - Duration::from_secs(1)), "1970-01-01");
    }
}
