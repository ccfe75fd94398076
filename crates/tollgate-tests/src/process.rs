//! Running the `tollgate` executable (or any program) in tests: output read line by line as it
//! comes, and stopped with SIGTERM or SIGKILL as an orchestrator would.

use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// A long-running child whose stdout and stderr lines are read as they come.
pub struct Child {
    pub child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Child {
    pub fn spawn(
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
        dir: &std::path::Path,
    ) -> Child {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawns");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        let err = BufReader::new(child.stderr.take().unwrap());
        for mut reader in [
            Box::new(out) as Box<dyn tokio::io::AsyncBufRead + Unpin + Send>,
            Box::new(err),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut line = String::new();
                while reader.read_line(&mut line).await.unwrap_or(0) > 0 {
                    let _ = tx.send(std::mem::take(&mut line));
                }
            });
        }
        Child { child, lines }
    }

    /// Collects output until a line matches `done`; returns everything read so far.
    pub async fn read_until(&mut self, done: impl Fn(&str) -> bool) -> String {
        let mut seen = String::new();
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                seen.push_str(&line);
                if done(&line) {
                    return true;
                }
            }
            false
        };
        let found = tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .unwrap_or(false);
        assert!(found, "expected output never came; got:\n{seen}");
        seen
    }

    /// SIGKILL: no chance to flush anything.
    pub async fn kill_hard(mut self) {
        let pid = self.child.id().unwrap().to_string();
        assert!(
            Command::new("kill")
                .args(["-KILL", &pid])
                .status()
                .unwrap()
                .success()
        );
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }

    /// SIGTERM, then the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap()
    }
}
