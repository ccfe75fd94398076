//! The OTLP side: one exporter per signal (HTTP/protobuf over hyper, or gRPC over tonic), each
//! wrapped to count its failures, driven by the SDK's async-runtime batch processors and
//! periodic reader on the caller's tokio runtime. Nothing here runs on the request path.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_http::HttpClient;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_otlp::tonic_types::metadata::MetadataMap;
use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
use opentelemetry_otlp::{
    LogExporter, MetricExporter, Protocol, SpanExporter, WithExportConfig, WithHttpConfig,
    WithTonicConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::logs::log_processor_with_async_runtime::BatchLogProcessor;
use opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tollgate_core::config::TelemetryConfig;

use crate::TelemetryError;
use crate::export_errors::{Counted, ExportErrors, Signal};

/// One exporter of any signal: the same options through two different builder types.
macro_rules! build {
    ($target:expr, $exporter:ident, $path:literal) => {{
        let t = $target;
        match (&t.http, t.grpc) {
            (Some(client), false) => $exporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(format!("{}{}", t.endpoint, $path))
                .with_timeout(t.timeout)
                .with_headers(t.headers.clone())
                .with_shared_http_client(client.clone())
                .build(),
            _ => {
                let b = $exporter::builder()
                    .with_tonic()
                    .with_endpoint(&t.endpoint)
                    .with_timeout(t.timeout)
                    .with_metadata(t.metadata());
                match t.tonic_tls() {
                    Some(tls) => b.with_tls_config(tls).build(),
                    None => b.build(),
                }
            }
        }
    }};
}

/// How to reach the collector, resolved once from the config.
pub(crate) struct Target {
    grpc: bool,
    endpoint: String,
    timeout: Duration,
    headers: HashMap<String, String>,
    ca_pem: Option<Vec<u8>>,
    /// Shared by the three HTTP exporters (one connection pool).
    http: Option<Arc<dyn HttpClient>>,
}

impl Target {
    pub(crate) fn new(cfg: &TelemetryConfig) -> Result<Target, TelemetryError> {
        let endpoint = cfg.endpoint();
        let timeout = Duration::from_millis(cfg.export_timeout_ms);
        let ca_pem = cfg
            .ca_file
            .as_deref()
            .map(|path| {
                std::fs::read(path).map_err(|e| TelemetryError::CaFile {
                    path: path.into(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        let http: Option<Arc<dyn HttpClient>> = if cfg.is_grpc() {
            None
        } else if endpoint.starts_with("https://") {
            let tls = tls_client_config(ca_pem.as_deref(), cfg.ca_file.as_deref())?;
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .build();
            Some(Arc::new(HyperClient::new(connector, timeout, None)))
        } else {
            Some(Arc::new(HyperClient::with_default_connector(timeout, None)))
        };
        Ok(Target {
            grpc: cfg.is_grpc(),
            endpoint,
            timeout,
            headers: cfg
                .headers
                .0
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ca_pem,
            http,
        })
    }

    fn tonic_tls(&self) -> Option<ClientTlsConfig> {
        if !self.endpoint.starts_with("https://") {
            return None;
        }
        let tls = ClientTlsConfig::new()
            .with_webpki_roots()
            .with_native_roots();
        Some(match &self.ca_pem {
            Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
            None => tls,
        })
    }

    fn metadata(&self) -> MetadataMap {
        let mut map = http::HeaderMap::new();
        for (k, v) in &self.headers {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                map.insert(k, v);
            }
        }
        MetadataMap::from_headers(map)
    }

    /// All three exporters, or the first that cannot be built. Nothing runs yet: the batch
    /// tasks start in [`Exporters::into_providers`], only once every exporter exists.
    pub(crate) fn exporters(
        &self,
        errors: &Arc<ExportErrors>,
    ) -> Result<Exporters, TelemetryError> {
        let failed = |signal: Signal| {
            move |e: opentelemetry_otlp::ExporterBuildError| {
                TelemetryError::Exporter(signal.label(), e.to_string())
            }
        };
        let spans = build!(self, SpanExporter, "/v1/traces").map_err(failed(Signal::Traces))?;
        let logs = build!(self, LogExporter, "/v1/logs").map_err(failed(Signal::Logs))?;
        let metrics =
            build!(self, MetricExporter, "/v1/metrics").map_err(failed(Signal::Metrics))?;
        Ok(Exporters {
            spans: Counted::new(spans, Signal::Traces, errors.clone()),
            logs: Counted::new(logs, Signal::Logs, errors.clone()),
            metrics: Counted::new(metrics, Signal::Metrics, errors.clone()),
            timeout: self.timeout,
        })
    }
}

/// The OTLP exporters of one process, each counting its failures.
pub(crate) struct Exporters {
    spans: Counted<SpanExporter>,
    logs: Counted<LogExporter>,
    metrics: Counted<MetricExporter>,
    timeout: Duration,
}

/// The providers the exporters feed, and the periodic reader for the MeterProvider.
pub(crate) struct OtlpProviders {
    pub tracer: SdkTracerProvider,
    pub logger: SdkLoggerProvider,
    pub metric_reader: PeriodicReader<Counted<MetricExporter>>,
}

impl Exporters {
    /// Starts the batch processors and the periodic reader as tasks on the current runtime.
    pub(crate) fn into_providers(self, resource: &Resource, interval: Duration) -> OtlpProviders {
        OtlpProviders {
            tracer: SdkTracerProvider::builder()
                .with_resource(resource.clone())
                .with_span_processor(BatchSpanProcessor::builder(self.spans, Tokio).build())
                .build(),
            logger: SdkLoggerProvider::builder()
                .with_resource(resource.clone())
                .with_log_processor(BatchLogProcessor::builder(self.logs, Tokio).build())
                .build(),
            metric_reader: PeriodicReader::builder(self.metrics, Tokio)
                .with_interval(interval)
                .with_timeout(self.timeout)
                .build(),
        }
    }
}

/// The TLS client config of tollgate's own OTLP/HTTP export (webpki roots, the system's, and
/// `[telemetry] ca_file`'s), for anything else that talks to the same collector (the intake's
/// forwarder).
pub fn collector_tls(cfg: &TelemetryConfig) -> Result<rustls::ClientConfig, TelemetryError> {
    let ca_pem = cfg
        .ca_file
        .as_deref()
        .map(|path| {
            std::fs::read(path).map_err(|e| TelemetryError::CaFile {
                path: path.into(),
                reason: e.to_string(),
            })
        })
        .transpose()?;
    tls_client_config(ca_pem.as_deref(), cfg.ca_file.as_deref())
}

/// rustls for an `https://` collector: webpki roots, the system's, and `ca_file`'s.
fn tls_client_config(
    ca_pem: Option<&[u8]>,
    ca_path: Option<&str>,
) -> Result<rustls::ClientConfig, TelemetryError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    // A bad or missing system store must not stop the gateway: webpki roots remain.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = ca_pem {
        let ca_error = |reason: String| TelemetryError::CaFile {
            path: ca_path.unwrap_or_default().into(),
            reason,
        };
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            roots
                .add(cert.map_err(|e| ca_error(e.to_string()))?)
                .map_err(|e| ca_error(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(ca_error("no PEM certificates found".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TelemetryError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
