//! WAL recovery on a data dir whose only segment holds arbitrary bytes, or
//! arbitrary record bodies framed with valid lengths and checksums (so the
//! body decoder and the replay are reached): an error or a recovered state,
//! never a panic; the frame decoder on the same bytes, record after record.
#![no_main]

use conclave_storage::{codec, recovery, segment};
use libfuzzer_sys::fuzz_target;

/// Frames chunks of `data`: each chunk's length is its first byte (at least 1).
fn framed(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some((&length, rest)) = data.split_first() {
        let length = usize::from(length).max(1).min(rest.len());
        if length == 0 {
            break;
        }
        let (body, tail) = rest.split_at(length);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
        out.extend_from_slice(body);
        data = tail;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let segment = if mode & 1 == 0 { rest.to_vec() } else { framed(rest) };
    let _ = codec::decode_body(rest);
    let mut offset = 0;
    while let Ok((_, next)) = codec::decode_frame(&segment, offset) {
        assert!(next > offset && next <= segment.len());
        offset = next;
    }
    // In memory where there is a tmpfs: recovery's syncs cost nothing there.
    let shm = std::path::Path::new("/dev/shm");
    let dir =
        if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("a temporary directory");
    std::fs::write(dir.path().join(segment::segment_name(1)), &segment).expect("the segment is written");
    let _ = recovery::recover(dir.path());
});
