//! The real clients and checkers the tests drive, which `tests/clients/setup.sh` installs (pinned)
//! under `target/clients/`: the `openai` SDK, PyYAML, kubernetes-validate, the OTLP protobufs
//! with grpcio, and schemathesis in its venv; the Codex CLI from npm. A missing one fails the test
//! with the way to install it; nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// Runs `tests/clients/setup.sh` once per test process and returns the directory it installed
/// into. `needed` says what the caller wants from it ("PyYAML and kubernetes-validate"), for the
/// message when it fails.
pub fn clients_dir(needed: &str) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo_root().join("tests/clients/setup.sh"))
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "tests/clients/setup.sh failed, so {needed} are not installed (it needs python3 with \
             venv (apt-get install -y python3-venv), npm, and the package registries on its first \
             run):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// The `bin` directory of setup.sh's venv (`python`, `kubernetes-validate`, `schemathesis`, …).
pub fn venv_bin(needed: &str) -> PathBuf {
    clients_dir(needed).join("venv/bin")
}
