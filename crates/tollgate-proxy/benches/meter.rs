//! What metering costs per response: reading a 20-delta Responses stream and a 20-chunk Chat
//! stream as the meter does (line splitting, the few events it parses, delta text kept for a
//! possible estimate), the chat usage-chunk filter, and parsing a non-streamed body's usage.
//! Run with `cargo bench -p tollgate-proxy --bench meter`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tollgate_proxy::meter::lines::LineSplitter;
use tollgate_proxy::meter::observe::{self, Observed, ResponsesStream};
use tollgate_proxy::meter::strip::UsageChunkFilter;

/// A Responses stream shaped like OpenAI's (and the mock's): one event per frame.
fn responses_frames(deltas: usize) -> Vec<Bytes> {
    let mut frames = vec![Bytes::from_static(b"event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"model\":\"gpt-5.5\",\"status\":\"in_progress\",\"usage\":null}}\n\n")];
    for i in 0..deltas {
        frames.push(Bytes::from(format!("event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":{i},\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"piece {i} \",\"logprobs\":[]}}\n\n")));
    }
    frames.push(Bytes::from_static(b"event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"item\":{\"type\":\"message\",\"id\":\"msg_1\",\"role\":\"assistant\",\"content\":[]}}\n\n"));
    frames.push(Bytes::from_static(b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-5.5\",\"service_tier\":\"default\",\"usage\":{\"input_tokens\":9000,\"input_tokens_details\":{\"cached_tokens\":8000},\"output_tokens\":120,\"output_tokens_details\":{\"reasoning_tokens\":64},\"total_tokens\":9120}}}\n\n"));
    frames
}

fn chat_frames(chunks: usize) -> Vec<Bytes> {
    let mut frames: Vec<Bytes> = (0..chunks)
        .map(|i| Bytes::from(format!("data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-5.5\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"piece {i} \"}},\"finish_reason\":null}}],\"usage\":null}}\n\n")))
        .collect();
    frames.push(Bytes::from_static(b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-5.5\",\"choices\":[],\"usage\":{\"prompt_tokens\":9000,\"completion_tokens\":120,\"total_tokens\":9120}}\n\n"));
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    frames
}

fn bench(c: &mut Criterion) {
    let responses = responses_frames(20);
    let events = responses.len() as u64;
    let mut group = c.benchmark_group("meter");
    group.throughput(Throughput::Elements(events));
    group.bench_function("responses_stream_20_deltas", |b| {
        b.iter(|| {
            let (mut lines, mut stream, mut seen) = (
                LineSplitter::default(),
                ResponsesStream::default(),
                Observed::default(),
            );
            for frame in &responses {
                lines.feed(frame, |line| stream.line(line, &mut seen));
            }
            black_box(seen.usage)
        })
    });
    let chat = chat_frames(20);
    group.throughput(Throughput::Elements(chat.len() as u64));
    group.bench_function("chat_stream_20_chunks", |b| {
        b.iter(|| {
            let (mut lines, mut seen) = (LineSplitter::default(), Observed::default());
            for frame in &chat {
                lines.feed(frame, |line| observe::chat_line(line, &mut seen));
            }
            black_box(seen.usage)
        })
    });
    group.bench_function("chat_usage_chunk_filter_20_chunks", |b| {
        b.iter(|| {
            let mut filter = UsageChunkFilter::default();
            let mut out = Vec::with_capacity(chat.len());
            for frame in &chat {
                filter.feed(frame.clone(), &mut out);
            }
            black_box(out.len())
        })
    });
    group.finish();

    let body = br#"{"id":"resp_1","object":"response","model":"gpt-5.5","service_tier":"default","output":[{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Hello there, a short answer.","annotations":[]}]}],"usage":{"input_tokens":9000,"input_tokens_details":{"cached_tokens":8000},"output_tokens":120,"output_tokens_details":{"reasoning_tokens":64},"total_tokens":9120}}"#;
    c.bench_function("usage_parse/responses_json", |b| {
        b.iter(|| {
            let mut seen = Observed::default();
            observe::response_json(black_box(body), &mut seen);
            black_box(seen.usage)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
