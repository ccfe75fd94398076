//! What reading a request costs on the hot path, on the recorded ~38 KB Codex request:
//! `inspect::inspect` (decode if encoded, check it is a JSON object, peek the few fields the
//! gateway acts on) as sent and gzip-encoded, and `headers::strip_hop_by_hop` on Codex's
//! headers. Run with `cargo bench -p tollgate-proxy`.

use std::hint::black_box;
use std::io::Write;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue};
use tollgate_proxy::{headers, inspect};

const CODEX_BODY: &[u8] = include_bytes!("../../../tests/fixtures/codex/turn-request-1.json");
const CODEX_HEADERS: &str = include_str!("../../../tests/fixtures/codex/turn-request-headers.json");
/// tollgate's default `limits.max_body_bytes`.
const LIMIT: u64 = 32 * 1024 * 1024;

fn gzip(data: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let written = encoder.write_all(data).and_then(|()| encoder.finish());
    Bytes::from(written.unwrap_or_default())
}

/// Codex's recorded headers, plus a `Connection` header naming one of them (so the
/// Connection-listed path is exercised too).
fn codex_headers() -> HeaderMap {
    let mut map = HeaderMap::new();
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(CODEX_HEADERS) {
        for (name, value) in fields {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(HeaderValue::from_str),
            ) {
                map.insert(name, value);
            }
        }
    }
    map.insert("connection", HeaderValue::from_static("keep-alive"));
    map.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    map
}

fn inspect_codex(c: &mut Criterion) {
    let identity = Bytes::from_static(CODEX_BODY);
    let gzipped = gzip(CODEX_BODY);
    assert!(inspect::inspect(identity.clone(), None, LIMIT).is_ok());
    assert!(inspect::inspect(gzipped.clone(), Some("gzip"), LIMIT).is_ok_and(|i| i.decoded));

    let mut group = c.benchmark_group("inspect_codex_request");
    group.throughput(Throughput::Bytes(CODEX_BODY.len() as u64));
    group.bench_function("identity", |b| {
        b.iter(|| inspect::inspect(black_box(identity.clone()), None, LIMIT))
    });
    group.bench_function("gzip", |b| {
        b.iter(|| inspect::inspect(black_box(gzipped.clone()), Some("gzip"), LIMIT))
    });
    group.finish();

    let headers = codex_headers();
    assert!(headers.len() > 10);
    c.bench_function("strip_hop_by_hop_codex_headers", |b| {
        b.iter_batched_ref(
            || headers.clone(),
            |h| headers::strip_hop_by_hop(black_box(h)),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, inspect_codex);
criterion_main!(benches);
