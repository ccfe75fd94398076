//! The usage parsers on arbitrary response bodies: never panic; cached never exceeds input and
//! reasoning never exceeds output in what they report.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_proxy::meter::observe::{self, Observed};

fuzz_target!(|data: &[u8]| {
    for parse in [observe::response_json, observe::chat_json, observe::embeddings_json] {
        let mut seen = Observed::default();
        parse(data, &mut seen);
        if let Some(usage) = seen.usage {
            assert!(usage.cached_input <= usage.input);
            assert!(usage.reasoning <= usage.output);
        }
    }
    let _ = observe::is_usage_chunk(data);
});
