//! The RESP2 request parser on arbitrary bytes: never panics, never claims to
//! consume more than it was given, and always makes progress on a request.
#![no_main]

use conclave_server::resp::parser::{parse, ParseLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = ParseLimits { max_bulk_bytes: 1 << 16, max_array_len: 1024, max_inline_bytes: 1 << 12 };
    let mut rest = data;
    while let Ok(Some((_, used))) = parse(rest, &limits) {
        assert!(used > 0 && used <= rest.len(), "consumed {used} of {}", rest.len());
        rest = &rest[used..];
    }
});
