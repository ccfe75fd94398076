//! Transports clients use to reach tollgate: HTTPS with rustls (h2 and HTTP/1.1 by ALPN) and
//! plaintext HTTP/2 with prior knowledge (h2c), streaming over each.

// Integration tests: shared helpers fail loudly, and read whole (small) test responses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use serde_json::json;

use tollgate_mock::MockOptions;
use tollgate_tests::{Backend, Harness, UPSTREAM_KEY};

fn stream_request(uri: String, key: &str) -> Request<Full<Bytes>> {
    Request::post(uri)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            json!({"model":"gpt-5.5","input":"hi","stream":true}).to_string(),
        )))
        .unwrap()
}

#[tokio::test]
async fn https_serves_h2_and_http1_by_alpn() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.tls.cert_file = Some(cert_path.display().to_string());
        c.tls.key_file = Some(key_path.display().to_string());
    })
    .await;
    // Keys are issued over the same (TLS) listener, so use an HTTPS client throughout.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.cert.der().to_vec()))
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let base = format!("https://localhost:{}", h.gateway.addr.port());
    for (http2, version) in [(true, Version::HTTP_2), (false, Version::HTTP_11)] {
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_only();
        let connector = if http2 {
            builder.enable_http2().build()
        } else {
            builder.enable_http1().build()
        };
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .http2_only(http2)
            .build(connector);
        let admin = Request::post(format!("{base}/admin/v1/teams/platform/keys"))
            .header(
                "authorization",
                format!("Bearer {}", tollgate_tests::ADMIN_TOKEN),
            )
            .body(Full::new(Bytes::from(json!({"name": "tls"}).to_string())))
            .unwrap();
        if http2 {
            let team = Request::post(format!("{base}/admin/v1/teams"))
                .header(
                    "authorization",
                    format!("Bearer {}", tollgate_tests::ADMIN_TOKEN),
                )
                .body(Full::new(Bytes::from(
                    json!({"name": "platform"}).to_string(),
                )))
                .unwrap();
            assert_eq!(
                client.request(team).await.unwrap().status(),
                StatusCode::CREATED
            );
        }
        let created = client.request(admin).await.unwrap();
        let created: serde_json::Value =
            serde_json::from_slice(&created.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        let key = created["secret"].as_str().unwrap().to_string();
        let response = client
            .request(stream_request(format!("{base}/v1/responses"), &key))
            .await
            .unwrap();
        assert_eq!(
            (response.status(), response.version()),
            (StatusCode::OK, version)
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(
            String::from_utf8_lossy(&body).contains("event: response.completed"),
            "{version:?}"
        );
    }
    assert_eq!(
        h.mock.requests().last().unwrap().header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
}

#[tokio::test]
async fn plaintext_http2_prior_knowledge_streams() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new());
    let response = client
        .request(stream_request(format!("{}/v1/responses", h.base()), &key))
        .await
        .unwrap();
    assert_eq!(
        (response.status(), response.version()),
        (StatusCode::OK, Version::HTTP_2)
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.starts_with("event: response.created") && text.contains("event: response.completed"),
        "{text}"
    );
}
