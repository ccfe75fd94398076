//! Why a benchmark could not be set up or run (a failed request is a counted result, not this).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot find the {what} binary: {hint}")]
    MissingBinary { what: &'static str, hint: String },
    #[error("cannot start {name} ({program}): {source}")]
    Spawn {
        name: String,
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("{name} {why}; its last output:\n{log}")]
    NotReady {
        name: String,
        why: String,
        log: String,
    },
    #[error("`tollgate {command}` failed: {detail}")]
    Cli { command: String, detail: String },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    #[error("the {0} process vanished during the benchmark")]
    Vanished(String),
    #[error("{0}")]
    Internal(String),
}
