//! A brand-new 5-node cluster of real `conclave serve` processes started in a
//! random order, each at a random moment within the first 2 s, as a script or
//! an orchestrator starts them: the configured initial leader leads the first
//! term every time, since every member comes up within `cold_start_wait_ms`
//! (docs/design/cold-start.md). Twenty clusters; the counts are printed.

mod support;

use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use support::cluster::Cluster;

const RUNS: usize = 20;
const NODES: u64 = 5;
/// Every member starts within this long of the first.
const SPREAD_MS: u64 = 2_000;

/// One cluster: returns the leader and the ballot every member settled on.
fn one_run(rng: &mut rand_chacha::ChaCha8Rng) -> (u64, u64, Vec<(u64, u64)>) {
    let mut cluster = Cluster::new(NODES);
    let defaults = conclave_server::config::Timing::default();
    assert!(SPREAD_MS < defaults.cold_start_wait_ms, "the spread is within the shipped bound");
    for id in 1..=NODES {
        cluster.edit_config(id, |config| config.initial_leader = Some(1));
    }
    let mut order: Vec<u64> = (1..=NODES).collect();
    order.shuffle(rng);
    let mut offsets: Vec<u64> = order.iter().map(|_| rng.gen_range(0..=SPREAD_MS)).collect();
    offsets.sort_unstable();
    let starts: Vec<(u64, u64)> = offsets.into_iter().zip(order).collect();
    let began = Instant::now();
    for &(offset_ms, id) in &starts {
        // The stagger is the scenario itself, not a wait for a condition.
        if let Some(wait) = Duration::from_millis(offset_ms).checked_sub(began.elapsed()) {
            std::thread::sleep(wait);
        }
        cluster.start_node(id, &[]);
    }
    let all: Vec<u64> = (1..=NODES).collect();
    let leader = cluster.wait_for_leader(&all);
    // An acknowledged write: the leader serves (in `conclave` mode its
    // `BecomeLeader` of leader term 1 committed first).
    cluster.write_acked(&all, "cold", "start");
    let term = cluster.info_field(leader, "term").and_then(|term| term.parse().ok()).unwrap_or(0);
    (leader, term, starts)
}

#[test]
fn the_initial_leader_leads_term_1_when_processes_start_apart() {
    let seed: u64 = std::env::var("CONCLAVE_TEST_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
    println!("seed {seed} (CONCLAVE_TEST_SEED repeats it)");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut configured_in_term_1 = 0;
    let mut failures = Vec::new();
    for run in 1..=RUNS {
        let (leader, term, starts) = one_run(&mut rng);
        // Ballot 1 is the cold start's: any election runs at ballot 2 or later.
        if (leader, term) == (1, 1) {
            configured_in_term_1 += 1;
        } else {
            failures.push(format!("run {run}: node {leader} leads ballot {term}; starts (ms, node) {starts:?}"));
        }
    }
    println!(
        "cold start, {NODES} processes within {SPREAD_MS} ms in random order: node 1 led term 1 in \
         {configured_in_term_1} of {RUNS} runs"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
