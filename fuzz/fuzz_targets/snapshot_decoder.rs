//! The snapshot file decoder on arbitrary bytes; whatever decodes encodes
//! back to the same snapshot.
#![no_main]

use conclave_storage::snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = snapshot::decode(data) {
        let again = snapshot::decode(&snapshot::encode(&decoded)).expect("an encoded snapshot decodes");
        assert_eq!(again, decoded);
    }
});
