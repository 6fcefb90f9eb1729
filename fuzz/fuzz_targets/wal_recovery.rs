//! WAL recovery on a data dir whose only segment holds arbitrary bytes: an
//! error or a recovered state, never a panic; the record decoder on the same
//! bytes at every offset.
#![no_main]

use conclave_storage::{codec, recovery, segment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut offset = 0;
    while let Ok((_, next)) = codec::decode_frame(data, offset) {
        assert!(next > offset && next <= data.len());
        offset = next;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join(segment::segment_name(1)), data).expect("the segment is written");
    let _ = recovery::recover(dir.path());
});
