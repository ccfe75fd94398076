//! The real clients and checkers the tests drive, installed (pinned) under `target/clients/` on
//! first use: the `openai` SDK, PyYAML, kubernetes-validate, the OTLP protobufs with grpcio, and
//! schemathesis in a venv; the Codex CLI from npm; `prometheus` and `promtool`. A missing one
//! that cannot be installed fails the test with the way to install it; nothing is skipped. The
//! one implementation lives beside the OTLP receiver in `tollgate_telemetry::testing::tools`.

pub use tollgate_telemetry::testing::tools::{clients_dir, prometheus_tool, repo_root, venv_bin};
