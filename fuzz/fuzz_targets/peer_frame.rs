//! The peer frame decoder on arbitrary bytes, for every frame kind: a
//! length prefix, then the content decoded as each kind; whatever decodes
//! encodes back to a frame.
#![no_main]

use conclave_server::peer::frame::{check_length, decode, encode, Handshake, HandshakeReply, PeerFrame};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let _ = check_length(u32::from_be_bytes([data[0], data[1], data[2], data[3]]), LIMIT);
    }
    if let Ok(frame) = decode::<PeerFrame>(data, LIMIT) {
        let _ = frame.is_urgent();
        let _ = encode(&frame, usize::MAX).expect("a decoded frame encodes");
    }
    if let Ok(handshake) = decode::<Handshake>(data, LIMIT) {
        let _ = encode(&handshake, usize::MAX).expect("a decoded handshake encodes");
    }
    let _ = decode::<HandshakeReply>(data, LIMIT);
});
