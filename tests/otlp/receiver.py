#!/usr/bin/env python3
"""A real OTLP receiver for tollgate's telemetry tests.

Decodes ExportTraceServiceRequest / ExportMetricsServiceRequest / ExportLogsServiceRequest with
the official `opentelemetry-proto` package, over OTLP/HTTP (protobuf bodies at /v1/traces,
/v1/metrics, /v1/logs) and, with --grpc, over OTLP/gRPC, and appends one JSON line per export
to --out:

    {"signal": "traces", "transport": "http", "headers": {...}, "body": <proto3 JSON>}

Ids (traceId, spanId, parentSpanId) are rewritten from base64 to lowercase hex, as in the OTLP
JSON encoding, so tests compare them with W3C traceparent values directly. Each line is written
and flushed before the export is acknowledged: once the exporter has its answer, the line is in
the file. The first line on stdout is `READY http=<port> grpc=<port|0>`. With --tls-cert and
--tls-key both listeners speak TLS only (https:// and gRPC over TLS).

With --discard (tollgate-bench) nothing is written: every export is still decoded with the same
classes, and only counted (exports per signal, spans, log records, metric data points); the
counts are served as JSON at GET /counts on the HTTP port and printed to stderr on SIGTERM.

Installed by tests/clients/setup.sh (pinned opentelemetry-proto, protobuf, grpcio).
"""

import argparse
import base64
import gzip
import json
import signal
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

SIGNALS = {
    "/v1/traces": (
        "traces",
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
    ),
    "/v1/metrics": (
        "metrics",
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
    ),
    "/v1/logs": (
        "logs",
        logs_service_pb2.ExportLogsServiceRequest,
        logs_service_pb2.ExportLogsServiceResponse,
    ),
}
ID_FIELDS = {"traceId", "spanId", "parentSpanId"}
SIGNAL_NAMES = [name for name, _, _ in SIGNALS.values()]
ITEM_NAMES = {"traces": "spans", "logs": "log_records", "metrics": "metric_points"}

_lock = threading.Lock()
_out = None
# --discard: what arrived, instead of the JSON lines.
_counts = None


def hex_ids(node):
    """Rewrites base64 id fields to hex, recursively."""
    if isinstance(node, dict):
        return {
            k: (base64.b64decode(v).hex() if k in ID_FIELDS and isinstance(v, str) else hex_ids(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [hex_ids(v) for v in node]
    return node


def items(signal, message):
    """Spans, log records or metric data points in one decoded export."""
    if signal == "traces":
        return sum(len(s.spans) for r in message.resource_spans for s in r.scope_spans)
    if signal == "logs":
        return sum(len(s.log_records) for r in message.resource_logs for s in r.scope_logs)
    points = 0
    for r in message.resource_metrics:
        for s in r.scope_metrics:
            for metric in s.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    points += len(getattr(metric, kind).data_points)
    return points


def record(signal, transport, headers, message):
    if _counts is not None:
        n = items(signal, message)
        with _lock:
            _counts["exports"][signal] += 1
            _counts[ITEM_NAMES[signal]] += n
        return
    line = json.dumps(
        {
            "signal": signal,
            "transport": transport,
            "headers": headers,
            "body": hex_ids(MessageToDict(message)),
        }
    )
    with _lock:
        _out.write(line + "\n")
        _out.flush()


def counts_json():
    with _lock:
        return json.dumps(_counts)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if _counts is None:
            # As before --discard existed: there is nothing to read.
            self.send_error(501, f"Unsupported method ({self.command!r})")
            return
        body = counts_json().encode() if self.path == "/counts" else b""
        self.send_response(200 if body else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        entry = SIGNALS.get(self.path)
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if entry is None:
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        signal, request_type, response_type = entry
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        message = request_type()
        message.ParseFromString(body)
        record(signal, "http", {k.lower(): v for k, v in self.headers.items()}, message)
        reply = response_type().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def start_grpc(tls):
    import grpc
    from concurrent import futures
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    def servicer(base, signal, response_type):
        class Servicer(base):
            def Export(self, request, context):
                headers = {k: v for k, v in context.invocation_metadata()}
                record(signal, "grpc", headers, request)
                return response_type()

        return Servicer()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
        servicer(
            trace_service_pb2_grpc.TraceServiceServicer,
            "traces",
            trace_service_pb2.ExportTraceServiceResponse,
        ),
        server,
    )
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
        servicer(
            metrics_service_pb2_grpc.MetricsServiceServicer,
            "metrics",
            metrics_service_pb2.ExportMetricsServiceResponse,
        ),
        server,
    )
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(
        servicer(
            logs_service_pb2_grpc.LogsServiceServicer,
            "logs",
            logs_service_pb2.ExportLogsServiceResponse,
        ),
        server,
    )
    if tls is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        cert, key = (open(path, "rb").read() for path in tls)
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    server.start()
    return server, port


def on_sigterm(_signum, _frame):
    print(f"otlp receiver: {counts_json()}", file=sys.stderr, flush=True)
    sys.exit(0)


def main():
    global _out, _counts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="JSON lines file to append to (required unless --discard)")
    parser.add_argument(
        "--discard",
        action="store_true",
        help="decode and count exports, write nothing (counts at GET /counts and on SIGTERM)",
    )
    parser.add_argument("--grpc", action="store_true", help="also serve OTLP/gRPC")
    parser.add_argument("--tls-cert", help="PEM certificate: serve TLS only")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    args = parser.parse_args()
    if args.discard:
        _counts = {"exports": dict.fromkeys(SIGNAL_NAMES, 0)}
        _counts.update(dict.fromkeys(ITEM_NAMES.values(), 0))
        signal.signal(signal.SIGTERM, on_sigterm)
    elif args.out is None:
        parser.error("--out is required (or --discard)")
    else:
        _out = open(args.out, "a", encoding="utf-8")
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    http_server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        http_server.socket = context.wrap_socket(http_server.socket, server_side=True)
    grpc_server, grpc_port = start_grpc(tls) if args.grpc else (None, 0)
    print(f"READY http={http_server.server_address[1]} grpc={grpc_port}", flush=True)
    try:
        http_server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if grpc_server is not None:
            grpc_server.stop(0)


if __name__ == "__main__":
    sys.exit(main())
