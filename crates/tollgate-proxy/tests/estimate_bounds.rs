//! The tokenizer estimate's cost is bounded whatever the input: 31 MiB of one repeated
//! character (one tokenizer "word", which used to cost ~58 bytes of memory per byte and
//! seconds of CPU) is counted within a fixed memory and time. A test binary of its own because
//! it installs a counting global allocator (dhat) for the whole process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use tollgate_proxy::estimate;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const MIB: usize = 1024 * 1024;
/// Peak heap the estimate may take on top of its input, whatever the input.
const MEMORY: usize = 16 * MIB;
/// Generous for a debug build on a busy 2-core machine; main took minutes in debug.
const TIME: Duration = Duration::from_secs(15);

#[test]
fn a_31_mib_body_of_one_character_costs_bounded_memory_and_time() {
    // The encoding's tables are a one-off cost of the process, not of a call: load them first.
    assert!(estimate::count("gpt-5.5", b"warm up", 0) > 0);
    let inputs: [(&str, Vec<u8>); 4] = [
        ("one repeated letter", vec![b'a'; 31 * MIB]),
        ("one repeated space", vec![b' '; 31 * MIB]),
        ("invalid UTF-8", vec![0xFF; 31 * MIB]),
        (
            "one repeated 4-byte char",
            "𝔞".repeat(31 * MIB / 4).into_bytes(),
        ),
    ];
    // Inputs are allocated before profiling starts: only what the estimate allocates counts.
    let _profiler = dhat::Profiler::builder().testing().build();
    for (what, input) in &inputs {
        let started = Instant::now();
        let tokens = estimate::count("gpt-5.5", input, 0);
        let took = started.elapsed();
        let peak = dhat::HeapStats::get().max_bytes;
        eprintln!("{what}: {tokens} tokens in {took:?}, peak heap so far {peak} bytes");
        assert!(
            tokens > 0 && tokens <= input.len() as u64,
            "{what}: {tokens} tokens is no upper bound within {} bytes",
            input.len()
        );
        assert!(
            peak < MEMORY,
            "{what}: the estimate peaked at {peak} bytes of heap (bound {MEMORY})"
        );
        assert!(took < TIME, "{what}: took {took:?} (bound {TIME:?})");
    }
}
