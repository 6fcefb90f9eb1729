//! The core's `step` fed arbitrary messages (decoded as the peer transport
//! decodes them) between ticks, as one member of a 3-node cluster that has
//! elected itself: the node drops what is invalid and never panics.
#![no_main]

use bincode::Options;
use conclave_core::message::Message;
use conclave_core::node::{Node, RestoredState};
use conclave_core::Config;
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else { return };
    let mut config = Config::new(1, 7, vec![1, 2, 3]);
    // Half the runs start as the configured initial leader.
    if first & 1 == 1 {
        config.initial_leader = Some(1);
    }
    let Ok(mut node) = Node::new(config, RestoredState::default(), ChaCha8Rng::seed_from_u64(1), 0) else { return };
    let mut now_ms = 0;
    let options = bincode::DefaultOptions::new().with_limit(1 << 16).allow_trailing_bytes();
    for _ in 0..64 {
        let Some((&advance, tail)) = rest.split_first() else { break };
        now_ms += u64::from(advance);
        let _ = node.tick(now_ms);
        let mut reader = tail;
        match options.deserialize_from::<_, Message>(&mut reader) {
            Ok(message) => {
                let _ = node.step(message);
                rest = reader;
            }
            Err(_) => break,
        }
    }
    let _ = node.status();
});
