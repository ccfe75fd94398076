//! The SSE reader and the usage-chunk filter on arbitrary upstream bytes, split into arbitrary
//! frames: never panic, never loop, and the filter never invents bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tollgate_proxy::meter::lines::LineSplitter;
use tollgate_proxy::meter::observe::{self, Observed, ResponsesStream};
use tollgate_proxy::meter::strip::UsageChunkFilter;

fuzz_target!(|data: &[u8]| {
    // The first byte picks frame sizes, so the same stream is cut at different places.
    let Some((&cut, body)) = data.split_first() else { return };
    let step = usize::from(cut % 64) + 1;
    let mut responses = (LineSplitter::default(), ResponsesStream::default());
    let mut chat = LineSplitter::default();
    let mut filter = UsageChunkFilter::default();
    let mut seen = Observed::default();
    let mut out = Vec::new();
    for frame in body.chunks(step) {
        responses.0.feed(frame, |line| responses.1.line(line, &mut seen));
        chat.feed(frame, |line| observe::chat_line(line, &mut seen));
        filter.feed(Bytes::copy_from_slice(frame), &mut out);
    }
    responses.0.finish(|line| responses.1.line(line, &mut seen));
    chat.finish(|line| observe::chat_line(line, &mut seen));
    filter.finish(&mut out);
    let forwarded: usize = out.iter().map(Bytes::len).sum();
    assert!(forwarded <= body.len(), "the filter forwarded more than it received");
});
