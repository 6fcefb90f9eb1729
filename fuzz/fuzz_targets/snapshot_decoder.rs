//! The snapshot file decoder on arbitrary bytes, and on arbitrary bodies
//! behind a valid header and checksum (so the fields' decoding is reached);
//! whatever decodes encodes back to the same snapshot.
#![no_main]

use conclave_storage::snapshot::{self, Snapshot};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    let file = if mode & 1 == 0 {
        data.to_vec()
    } else {
        // The header of a real snapshot file (magic, version), then this body's
        // length and checksum; the version is 1 or 2 by the mode's next bit.
        let mut file = snapshot::encode(&Snapshot::default())[..12].to_vec();
        if mode & 2 == 0 {
            file[8..12].copy_from_slice(&1u32.to_le_bytes());
        }
        file.extend_from_slice(&(body.len() as u64).to_le_bytes());
        file.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
        file.extend_from_slice(body);
        file
    };
    if let Ok(decoded) = snapshot::decode(&file) {
        let again = snapshot::decode(&snapshot::encode(&decoded)).expect("an encoded snapshot decodes");
        assert_eq!(again, decoded);
    }
});
