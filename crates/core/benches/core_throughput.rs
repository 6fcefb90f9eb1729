//! Core throughput: messages stepped per second in a 5-node in-memory cluster
//! replicating proposals (no I/O: this is the protocol's own cost).

use std::collections::VecDeque;

use conclave_core::{Config, Message, Node, RestoredState, Role};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const NODES: u64 = 5;
const PROPOSALS_PER_ROUND: usize = 100;

struct Cluster {
    nodes: Vec<Node>,
    now_ms: u64,
    queue: VecDeque<Message>,
}

impl Cluster {
    /// Five nodes with node 1 elected leader.
    fn elected() -> Cluster {
        let voters: Vec<u64> = (1..=NODES).collect();
        let nodes = voters
            .iter()
            .map(|id| {
                let mut config = Config::new(*id, 1, voters.clone());
                // Replication is shared by every mode; the raft mode elects node 1
                // by its early start alone.
                config.election_mode = conclave_core::ElectionMode::Raft;
                // Node 1 starts earlier so its election timer fires first.
                let start_ms = if *id == 1 { 0 } else { 1_000 };
                Node::new(config, RestoredState::default(), ChaCha8Rng::seed_from_u64(*id), start_ms).unwrap()
            })
            .collect();
        let mut cluster = Cluster { nodes, now_ms: 1_000, queue: VecDeque::new() };
        let deadline = cluster.nodes[0].next_deadline_ms();
        cluster.now_ms = cluster.now_ms.max(deadline);
        let output = cluster.nodes[0].tick(cluster.now_ms);
        cluster.queue.extend(output.messages);
        while cluster.nodes[0].role() != Role::Leader {
            assert!(cluster.deliver_all() > 0, "the election makes progress");
        }
        cluster.deliver_all();
        cluster
    }

    /// Delivers until no message is left; returns how many were stepped.
    fn deliver_all(&mut self) -> u64 {
        let mut stepped = 0;
        while let Some(message) = self.queue.pop_front() {
            let node = &mut self.nodes[(message.to - 1) as usize];
            let output = node.step(message);
            self.queue.extend(output.messages);
            stepped += 1;
        }
        stepped
    }

    /// Proposes a round of commands at the leader and replicates them.
    fn round(&mut self) -> u64 {
        for sequence in 0..PROPOSALS_PER_ROUND {
            let proposal = self.nodes[0].propose((sequence as u64).to_le_bytes().to_vec()).unwrap();
            self.queue.extend(proposal.output.messages);
        }
        self.deliver_all()
    }
}

fn replicate(criterion: &mut Criterion) {
    let messages_per_round = Cluster::elected().round();
    let mut group = criterion.benchmark_group("core");
    group.throughput(Throughput::Elements(messages_per_round));
    group.bench_function("5_nodes_replicate_100_proposals", |bencher| {
        bencher.iter_batched_ref(Cluster::elected, |cluster| cluster.round(), BatchSize::SmallInput)
    });
    group.finish();
}

criterion_group!(benches, replicate);
criterion_main!(benches);
