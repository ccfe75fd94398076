//! A real OpenID provider for the console's tests: `tests/clients/oidc/provider.mjs`
//! (node-oidc-provider, installed by `tests/clients/setup.sh`). Needs `node` (20+) on PATH.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use tollgate_telemetry::testing::tools::{clients_dir, repo_root};

/// A running `provider.mjs`, killed when dropped.
pub struct Provider {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub issuer: String,
    pub port: u16,
}

impl Provider {
    /// Starts the provider on `port` (0: any free one) accepting `callback` as its client's
    /// redirect URI, with extra environment, and waits for its `listening <issuer>` line.
    pub async fn start(port: u16, callback: &str, env: &[(&str, &str)]) -> Provider {
        let clients = clients_dir("oidc-provider (npm)");
        let script = repo_root().join("tests/clients/oidc/provider.mjs");
        let mut child = Command::new("node")
            .arg(&script)
            .args(["--port", &port.to_string(), "--redirect-uri", callback])
            .env("TOLLGATE_CLIENTS_DIR", clients)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `node {}`: {e}. These tests need Node.js 20 or later on PATH \
                     (apt-get install -y nodejs npm)",
                    script.display()
                )
            });
        // Its warnings, read to the end (so it never blocks on them) and shown if it fails.
        let mut err = child.stderr.take().unwrap();
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text).await;
            text
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(issuer) = line.strip_prefix("listening ") {
                    return Some(issuer.to_string());
                }
            }
            None
        })
        .await;
        let Ok(Some(issuer)) = issuer else {
            let _ = child.start_kill();
            let status = child.wait().await;
            let stderr = stderr.await.unwrap_or_default();
            panic!("provider.mjs did not start ({status:?}):\n{stderr}");
        };
        // Keep draining stdout (oidc-provider's notices) so the provider never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let port = issuer.rsplit(':').next().unwrap().parse().unwrap();
        Provider {
            child,
            issuer,
            port,
        }
    }

    pub async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }
}
