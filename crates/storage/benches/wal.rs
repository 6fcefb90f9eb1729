//! WAL persist throughput in a temporary directory: one entry per batch with a
//! sync per batch, against 64 batches per group commit (one sync for all).
//! Criterion's throughput line counts entries; syncs per second are entries per
//! second divided by the batches per sync (1 or 64).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use conclave_core::{Entry, HardState, LogWrite, Payload};
use conclave_storage::{LogStore, PersistRequest, Wal, WalOptions};

const COMMAND_BYTES: usize = 100;

fn batch(index: u64) -> LogWrite {
    LogWrite {
        first_index: index,
        entries: vec![Entry { term: 1, index, payload: Payload::Command(vec![7; COMMAND_BYTES]) }],
    }
}

fn bench_persist(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("wal");
    group.sample_size(10);
    for batches_per_sync in [1u64, 64] {
        group.throughput(Throughput::Elements(batches_per_sync));
        group.bench_function(format!("persist_{batches_per_sync}_batches_per_sync"), |bencher| {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut wal = Wal::open(dir.path(), WalOptions::new(1, 1)).expect("open");
            let hard_state = HardState { term: 1, voted_for: Some(1), commit: 0 };
            // Inputs are made in order and persisted in that order.
            let next_index = std::cell::Cell::new(1);
            bencher.iter_batched(
                || {
                    let next = next_index.replace(next_index.get() + batches_per_sync);
                    (next..next + batches_per_sync).map(batch).collect::<Vec<_>>()
                },
                |writes| {
                    let requests: Vec<_> = writes
                        .iter()
                        .map(|log_write| PersistRequest { hard_state: Some(hard_state), log_write: Some(log_write) })
                        .collect();
                    wal.persist(&requests).expect("persist");
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, bench_persist);
criterion_main!(benches);
