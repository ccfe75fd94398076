//! A small HTTP client for the mock's endpoint tests: JSON, raw bodies and multipart uploads.

#![allow(dead_code, reason = "each test file uses a different part")]
#![allow(
    clippy::disallowed_methods,
    reason = "the mock's answers in these tests are small and bounded"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly on purpose"
)]

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tollgate_mock::{MockOptions, MockServer, start};

/// A started mock and a client for it.
pub struct Mock {
    pub server: MockServer,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// What came back: status, content type and body.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `data:` payloads of an SSE body, parsed.
    pub fn events(&self) -> Vec<Value> {
        self.text()
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }
}

pub fn jsonl(lines: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

const BOUNDARY: &str = "tollgate-test-boundary";

/// A multipart/form-data body of text `fields` and `(name, filename, bytes)` files.
pub fn form(fields: &[(&str, &str)], files: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    for (name, filename, data) in files {
        out.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

impl Mock {
    pub async fn start(opts: MockOptions) -> Self {
        let server = start("127.0.0.1:0".parse().unwrap(), opts).await.unwrap();
        Self {
            server,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Answer {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.server.addr()));
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = self
            .client
            .request(builder.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Answer {
            status,
            content_type,
            body,
        }
    }

    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> Answer {
        self.send(
            Method::POST,
            path,
            headers,
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await
    }

    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let answer = self
            .send(method, path, &[], Some("application/json"), body)
            .await;
        (answer.status, answer.json())
    }

    pub async fn raw(&self, method: Method, path: &str) -> (StatusCode, Vec<u8>) {
        let answer = self.send(method, path, &[], None, Vec::new()).await;
        (answer.status, answer.body)
    }

    pub async fn form(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        files: &[(&str, &str, &[u8])],
    ) -> Answer {
        let ct = format!("multipart/form-data; boundary={BOUNDARY}");
        self.send(Method::POST, path, &[], Some(&ct), form(fields, files))
            .await
    }

    pub async fn upload(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        files: &[(&str, &str, &[u8])],
    ) -> (StatusCode, Value) {
        let answer = self.form(path, fields, files).await;
        (answer.status, answer.json())
    }
}
