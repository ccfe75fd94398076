//! What a process costs, read from `/proc`: CPU time (utime + stime, all threads, exited ones
//! included) and resident memory (current and peak), plus resetting the peak between cells.

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux).
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t: &u64| t > 0)
        .unwrap_or(100)
}

/// CPU time the process has used so far, user + system, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after its closing ')' are fixed.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': state is index 0, so utime (field 14) is index 11 and stime (15) index 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A CPU reading to diff against a later one.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    pid: u32,
    ticks: u64,
}

impl CpuMark {
    pub fn take(pid: u32) -> Option<CpuMark> {
        Some(CpuMark {
            pid,
            ticks: cpu_ticks(pid)?,
        })
    }

    /// CPU time used since this mark.
    pub fn elapsed(&self, ticks_per_sec: u64) -> Option<Duration> {
        let now = cpu_ticks(self.pid)?;
        let ticks = now.saturating_sub(self.ticks);
        Some(Duration::from_nanos(
            ticks.saturating_mul(1_000_000_000) / ticks_per_sec.max(1),
        ))
    }
}

/// A `Vm*` field of `/proc/<pid>/status`, in KiB (`VmRSS`, `VmHWM`, …).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM")
}

/// Resets the process's peak RSS to its current RSS (`echo 5 > /proc/<pid>/clear_refs`), so
/// each cell's peak is its own. Returns false where that is not allowed; peaks then span
/// the whole run.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(cpu_ticks(pid).is_some());
        assert!(rss_kib(pid).is_some_and(|kib| kib > 0));
        assert!(peak_rss_kib(pid).is_some_and(|kib| kib > 0));
        assert!(clock_ticks() > 0);
    }
}
