//! WAL persist throughput with sync, in a temporary directory: one batch of 1, 16
//! or 256 entries of 128 bytes per `persist` (one write and one fdatasync), beside
//! the raw rate of writing 128 bytes and calling `fdatasync` on a file in the same
//! directory — the physical limit of one sync per batch. Criterion's throughput
//! line counts entries per second; syncs per second are that over the batch size.

use std::io::Write;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use conclave_core::{Entry, HardState, LogWrite, Payload};
use conclave_storage::{LogStore, PersistRequest, Wal, WalOptions};

const COMMAND_BYTES: usize = 128;

fn write_of(first_index: u64, entries: u64) -> LogWrite {
    LogWrite {
        first_index,
        entries: (first_index..first_index + entries)
            .map(|index| Entry { term: 1, index, payload: Payload::Command(vec![7; COMMAND_BYTES].into()) })
            .collect(),
    }
}

fn bench_persist(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("wal");
    group.sample_size(10);
    for entries_per_batch in [1u64, 16, 256] {
        group.throughput(Throughput::Elements(entries_per_batch));
        group.bench_function(format!("persist_{entries_per_batch}_entries_per_sync"), |bencher| {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut wal = Wal::open(dir.path(), WalOptions::new(1, 1)).expect("open");
            let hard_state = HardState { term: 1, voted_for: Some(1), commit: 0 };
            // Inputs are made in order and persisted in that order.
            let next_index = std::cell::Cell::new(1);
            bencher.iter_batched(
                || write_of(next_index.replace(next_index.get() + entries_per_batch), entries_per_batch),
                |log_write| {
                    let request = PersistRequest { hard_state: Some(hard_state), log_write: Some(&log_write) };
                    wal.persist(&[request]).expect("persist");
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw_write_and_fdatasync_128_bytes", |bencher| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut file = std::fs::File::create(dir.path().join("raw")).expect("create");
        let bytes = [7u8; COMMAND_BYTES];
        bencher.iter(|| {
            file.write_all(&bytes).expect("write");
            file.sync_data().expect("fdatasync");
        });
    });
    group.finish();
}

criterion_group!(benches, bench_persist);
criterion_main!(benches);
