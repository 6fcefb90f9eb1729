//! The leader persists in parallel with replicating (docs/decisions/0068):
//! under many concurrent pipelined writers, commits reach every state machine
//! in log order and every acknowledged write is there.
//!
//! Regression: the first version reported a completed persist to the core
//! while the outputs released with it were still being carried out; the
//! commit that report produced overtook them and the leader's apply thread
//! stopped on "entries are applied once, in order: 22112 after 22175"
//! (64 `redis-benchmark` clients on a 3-node cluster).

mod support;

use std::time::Duration;

use support::cluster::Cluster;
use support::resp::{wait_until, Client, Reply};

const WRITERS: usize = 16;
const BATCHES: usize = 20;
const PIPELINE: usize = 25;

#[test]
fn concurrent_pipelined_writers_are_applied_in_order_on_every_node() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(&[1, 2, 3]);
    let address = cluster.address(leader);
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            std::thread::spawn(move || {
                let mut client = Client::connect(address).unwrap();
                let (mut acked, mut retryable) = (Vec::new(), 0usize);
                for batch in 0..BATCHES {
                    let keys: Vec<String> = (0..PIPELINE).map(|i| format!("w{writer}-{batch}-{i}")).collect();
                    for key in &keys {
                        client.send(&["SET", key, key]).unwrap();
                    }
                    for key in keys {
                        match client.read_reply().unwrap() {
                            Reply::Simple(ok) if ok == "OK" => acked.push(key),
                            Reply::Error(message) if message.starts_with("TRYAGAIN") => retryable += 1,
                            other => panic!("SET {key}: {other:?}"),
                        }
                    }
                }
                (acked, retryable)
            })
        })
        .collect();
    let mut acked = Vec::new();
    let mut retryable = 0;
    for writer in writers {
        let (keys, again) = writer.join().expect("a writer thread");
        acked.extend(keys);
        retryable += again;
    }
    let total = WRITERS * BATCHES * PIPELINE;
    println!("{} of {total} writes acknowledged, {retryable} TRYAGAIN", acked.len());
    assert!(retryable * 10 < total, "{retryable} of {total} writes refused");
    // Every node applies up to the leader's commit: none stopped on an
    // out-of-order apply.
    let field = |id: u64, name: &str| cluster.info_field(id, name).and_then(|value| value.parse::<u64>().ok());
    for id in 1..=3 {
        wait_until(&format!("node {id} applies what it committed"), Duration::from_secs(30), || {
            let (commit, applied) = (field(id, "commit_index")?, field(id, "applied_index")?);
            (commit > 0 && applied == commit && commit >= field(leader, "commit_index")?).then_some(())
        });
        assert!(!cluster.log(id).contains("applied once, in order"), "node {id} stopped applying");
    }
    let current = cluster.wait_for_leader(&[1, 2, 3]);
    for chunk in acked.chunks(200) {
        let values = cluster.mget(current, chunk);
        for (key, value) in chunk.iter().zip(values) {
            assert_eq!(value.as_deref(), Some(key.as_str()), "acknowledged SET {key} lost");
        }
    }
}
