//! The request peek on arbitrary bodies and encodings: never panic, never return more than the
//! limit, and reject with a 4xx, never a 5xx.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tollgate_proxy::inspect::inspect;

const LIMIT: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else { return };
    let encoding = [None, Some("gzip"), Some("deflate"), Some("zstd"), Some("identity")][usize::from(which % 5)];
    match inspect(Bytes::copy_from_slice(body), encoding, LIMIT) {
        Ok(inspected) => assert!(inspected.body.len() as u64 <= LIMIT),
        Err(error) => assert!((400..500).contains(&error.status), "{error:?}"),
    }
});
