//! The programs tests drive, set up on first use so `cargo test --workspace` works on a fresh
//! clone: `tests/clients/setup.sh` (the Python venv with the `openai` SDK, the OTLP protobufs,
//! PyYAML, kubernetes-validate and schemathesis; the Codex CLI from npm) and
//! `tests/clients/prometheus.sh` (`prometheus` and `promtool`). Each script runs at most once
//! per test process and takes a file lock, so parallel test binaries wait for one install
//! instead of racing; its progress lines reach the terminal as they come. A tool that cannot be
//! installed fails the test saying what to install; nothing is skipped.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Runs `tests/clients/setup.sh` once per test process and returns the directory it installed
/// into (`target/clients`, or `$TOLLGATE_CLIENTS_DIR`). `needed` says what the caller wants
/// from it ("PyYAML and kubernetes-validate"), for the message when it fails.
pub fn clients_dir(needed: &str) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        run_setup(
            "tests/clients/setup.sh",
            needed,
            "it needs python3 with venv (apt-get install -y python3-venv), npm, and the package \
             registries on its first run",
        )
    })
}

/// The `bin` directory of setup.sh's venv (`python`, `kubernetes-validate`, `schemathesis`, …).
pub fn venv_bin(needed: &str) -> PathBuf {
    clients_dir(needed).join("venv/bin")
}

/// `prometheus` or `promtool`: the ones on PATH, else Debian's package unpacked under
/// `target/clients/prometheus` by `tests/clients/prometheus.sh` on first use.
pub fn prometheus_tool(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        run_setup(
            "tests/clients/prometheus.sh",
            "prometheus and promtool",
            "install them with `apt-get install -y prometheus` (Debian/Ubuntu; .ci/run does \
             this) or put prometheus and promtool from https://prometheus.io/download/ on PATH",
        )
    })
    .join(name)
}

/// Runs a setup script, passing its stderr through live, and returns the path it prints.
#[allow(clippy::panic, reason = "test support: a missing tool fails the test")]
fn run_setup(script: &str, needed: &str, hint: &str) -> PathBuf {
    let mut child = Command::new("bash")
        .arg(repo_root().join(script))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {script} (for {needed}): {e}"));
    // Progress goes straight to the process's stderr: libtest captures `eprintln!`, not this,
    // so a first run's minute of installing is visible instead of looking like a hang.
    let mut said = String::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(std::io::stderr(), "{line}");
            said.push_str(&line);
            said.push('\n');
        }
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    let status = child.wait();
    let ok = status.as_ref().is_ok_and(|s| s.success());
    let dir = PathBuf::from(out.trim());
    if !ok || out.trim().is_empty() {
        panic!("{script} failed ({status:?}), so {needed} are not installed ({hint}):\n{said}");
    }
    dir
}
