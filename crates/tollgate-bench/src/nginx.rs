//! nginx as the floor: a plain, unbuffered reverse-proxy hop to the mock, one worker process,
//! in the foreground, with a generated configuration in a temporary directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::error::BenchError;
use crate::procs::{Ready, Service};

/// The nginx binary: `--nginx`, else `nginx` on PATH, else /usr/sbin/nginx.
pub fn find(explicit: Option<&Path>) -> Result<PathBuf, BenchError> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(missing(format!("{} does not exist", path.display())))
        };
    }
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("nginx"))
                .collect()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|p| p.is_file())
        .ok_or_else(|| missing("not installed (apt-get install -y nginx-light)".into()))
}

fn missing(hint: String) -> BenchError {
    BenchError::MissingBinary {
        what: "nginx",
        hint,
    }
}

/// `nginx -v`, e.g. "nginx/1.22.1".
pub async fn version(nginx: &Path) -> Option<String> {
    let out = Command::new(nginx).arg("-v").output().await.ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    Some(text.trim().trim_start_matches("nginx version: ").to_owned())
}

/// The configuration: what a careful operator would write for an SSE-friendly proxy hop.
pub fn config(dir: &Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"worker_rlimit_nofile 16384;
error_log stderr warn;
pid {d}/nginx.pid;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 64m;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    upstream mock {{
        server {upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 600s;
        }}
    }}
}}
"#
    )
}

/// Starts nginx in the foreground as a single process (`master_process off`), so the pid
/// spawned is the one doing the work.
pub async fn start(
    nginx: &Path,
    dir: &Path,
    listen: SocketAddr,
    upstream: SocketAddr,
) -> Result<Service, BenchError> {
    let file = dir.join("nginx.conf");
    std::fs::write(&file, config(dir, listen, upstream))?;
    let mut command = Command::new(nginx);
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&file)
        .arg("-e")
        .arg("stderr")
        .args(["-g", "daemon off; master_process off; worker_processes 1;"]);
    Service::spawn("nginx", command, listen, Ready::Port(listen)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_an_unbuffered_keepalive_hop() {
        let conf = config(
            Path::new("/tmp/x"),
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        for needle in [
            "proxy_buffering off;",
            "proxy_request_buffering off;",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "keepalive 64;",
            "server 127.0.0.1:2;",
            "listen 127.0.0.1:1;",
        ] {
            assert!(conf.contains(needle), "{needle}");
        }
    }
}
