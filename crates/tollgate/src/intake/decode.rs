//! From request bytes to an OTLP export message: content type, gzip (bounded), and protobuf
//! (prost) or OTLP/JSON. OTLP/JSON is the `opentelemetry-proto` crate's serde mapping, which
//! follows the OTLP/JSON encoding: lowerCamelCase field names, hex trace and span ids, enums
//! as integers, 64-bit integers as strings or numbers, unknown fields ignored.

use std::io::Read as _;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

use tollgate_telemetry::Signal;

use super::reply::Refusal;

/// How an export (and the answer to it) is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// The request's encoding by its `Content-Type`, or the type it named instead.
    pub fn of(headers: &HeaderMap) -> Result<Encoding, String> {
        let value = headers
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let media = value.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/x-protobuf") {
            Ok(Encoding::Protobuf)
        } else if media.eq_ignore_ascii_case("application/json") {
            Ok(Encoding::Json)
        } else {
            Err(value)
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// One decoded export.
#[derive(Debug, Clone, PartialEq)]
pub enum Export {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

impl Export {
    /// Protobuf, as forwarded to the collector.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Export::Traces(r) => r.encode_to_vec(),
            Export::Metrics(r) => r.encode_to_vec(),
            Export::Logs(r) => r.encode_to_vec(),
        }
    }
}

/// Whether the body is gzip-compressed; any encoding but gzip and identity is refused (415).
pub fn gzipped(headers: &HeaderMap) -> Result<bool, Refusal> {
    let Some(value) = headers.get(CONTENT_ENCODING) else {
        return Ok(false);
    };
    let encoding = String::from_utf8_lossy(value.as_bytes())
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => Ok(false),
        "gzip" => Ok(true),
        other => Err(Refusal::new(
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding '{other}' is not supported: send gzip or no encoding"),
        )),
    }
}

/// Decompresses a gzip body, refusing (413) once the output passes `limit` bytes: a small
/// compressed body cannot expand into an unbounded one.
pub fn gunzip(body: &[u8], limit: u64) -> Result<Bytes, Refusal> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Refusal::bad(format!("the gzip body cannot be decompressed: {e}")))?;
    if out.len() as u64 > limit {
        return Err(Refusal::too_large(limit));
    }
    Ok(Bytes::from(out))
}

/// The export message of `signal`, or 400 saying why it is not one.
pub fn decode(signal: Signal, encoding: Encoding, body: &[u8]) -> Result<Export, Refusal> {
    let what = match signal {
        Signal::Traces => "ExportTraceServiceRequest",
        Signal::Metrics => "ExportMetricsServiceRequest",
        Signal::Logs => "ExportLogsServiceRequest",
    };
    let bad = |e: String| Refusal::bad(format!("the body is not an OTLP {what}: {e}"));
    match encoding {
        Encoding::Protobuf => match signal {
            Signal::Traces => ExportTraceServiceRequest::decode(body).map(Export::Traces),
            Signal::Metrics => ExportMetricsServiceRequest::decode(body).map(Export::Metrics),
            Signal::Logs => ExportLogsServiceRequest::decode(body).map(Export::Logs),
        }
        .map_err(|e| bad(e.to_string())),
        Encoding::Json => match signal {
            Signal::Traces => serde_json::from_slice(body).map(Export::Traces),
            Signal::Metrics => serde_json::from_slice(body).map(Export::Metrics),
            Signal::Logs => serde_json::from_slice(body).map(Export::Logs),
        }
        .map_err(|e| bad(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 1 << 20]).unwrap();
        let small = gz.finish().unwrap();
        assert!(small.len() < 4096);
        let refused = gunzip(&small, 1000).unwrap_err();
        assert_eq!(refused.status, http::StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(gunzip(&small, 1 << 20).unwrap().len(), 1 << 20);
    }

    #[test]
    fn otlp_json_ids_are_hex_and_enums_integers() {
        let json = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"turn","kind":2,"startTimeUnixNano":"1544712660000000000",
            "attributes":[{"key":"n","value":{"intValue":"7"}}],"someFutureField":1}]}]}]}"#;
        let Export::Traces(r) = decode(Signal::Traces, Encoding::Json, json).unwrap() else {
            panic!("traces");
        };
        let span = &r.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            span.span_id,
            [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]
        );
        assert_eq!(span.kind, 2);
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert!(decode(Signal::Traces, Encoding::Protobuf, b"\xff\xff\xff").is_err());
    }
}
