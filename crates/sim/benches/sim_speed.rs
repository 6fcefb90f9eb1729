//! Simulator speed: wall time per seed, and simulated milliseconds per wall
//! second (criterion's "elem/s" below counts simulated milliseconds).

use conclave_core::ElectionMode;
use conclave_sim::{run_seed, FaultSet, SimOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SEEDS: u64 = 20;

fn sweep(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("sim");
    group.sample_size(10);
    for nodes in [3, 5, 7] {
        let options = SimOptions::new(ElectionMode::Raft, nodes, FaultSet::all());
        let simulated_ms: u64 = (0..SEEDS).map(|seed| run_seed(&options, seed).0.simulated_ms).sum();
        group.throughput(Throughput::Elements(simulated_ms));
        group.bench_function(format!("raft_{nodes}_nodes_{SEEDS}_seeds_all_faults"), |bencher| {
            bencher.iter(|| (0..SEEDS).map(|seed| run_seed(&options, seed).0.steps).sum::<u64>())
        });
    }
    group.finish();
}

criterion_group!(benches, sweep);
criterion_main!(benches);
