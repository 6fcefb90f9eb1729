//! WAL persist throughput with sync, in a temporary directory, beside the raw
//! rate of the disk for the same bytes.
//!
//! * `persist_{1,16,256}_entries_per_sync`: one batch of 1, 16 or 256 entries
//!   of 128 bytes (and a hard state) per `persist`; Criterion's throughput line
//!   counts entries per second, syncs per second are that over the batch size.
//! * The raw baselines, each a minimal loop of one `write` and one `fdatasync`
//!   per iteration on a file of its own in the same directory, with nothing else:
//!   - `raw_append_fdatasync_<N>_bytes`: appends exactly the bytes one
//!     `persist` of 256 entries writes (`N`, its hard-state and log-write
//!     records). The file grows, so each `fdatasync` also commits its size.
//!   - `raw_overwrite_fdatasync_<N>_bytes`: the same bytes written over a file
//!     that was filled with zeros and synced beforehand (cycling through
//!     64 MiB), so each `fdatasync` flushes data only. This is the fastest that
//!     a loop of one write and one sync of these bytes goes on this disk; it is
//!     the baseline of the acceptance ratio.
//!   - `raw_write_and_fdatasync_128_bytes`: 128 bytes appended per sync, the
//!     older baseline (one disk block per sync), kept for reference.
//! * `compare`: the same three loops (persist of 256, raw overwrite, raw
//!   append) interleaved sync by sync, so that both sides of the ratio see the
//!   same disk at the same moments (the disk is shared and noisy). It prints
//!   the mean, median and 90th percentile time per sync of each, and the
//!   acceptance ratio: the WAL's batches per second (1 / mean) as a share of
//!   the raw overwrite loop's syncs per second.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use conclave_core::{Entry, HardState, LogWrite, Payload};
use conclave_storage::{codec, LogStore, PersistRequest, Wal, WalOptions};

const COMMAND_BYTES: usize = 128;
/// The batch size the acceptance ratio is about.
const BIG_BATCH: u64 = 256;
/// The raw overwrite loop cycles through a zero-filled file of this size.
const RAW_FILE_BYTES: u64 = 64 << 20;
const HARD_STATE: HardState = HardState { term: 1, voted_for: Some(1), commit: 0 };

fn write_of(first_index: u64, entries: u64) -> LogWrite {
    LogWrite {
        first_index,
        entries: (first_index..first_index + entries)
            .map(|index| Entry { term: 1, index, payload: Payload::Command(vec![7; COMMAND_BYTES].into()) })
            .collect(),
    }
}

/// Exactly the bytes one `persist` of `entries` entries and a hard state
/// appends to a segment.
fn encoded_batch(entries: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    codec::encode_hard_state(&HARD_STATE, &mut bytes);
    codec::encode_log_write(&write_of(1, entries), &mut bytes).expect("encode");
    bytes
}

/// A raw loop: one write of the same bytes and one `fdatasync` per step.
enum Raw {
    /// Appends: the file grows by each write.
    Append(File),
    /// Overwrites a zero-filled, synced file, from its start again when full.
    Overwrite { file: File, offset: u64 },
}

impl Raw {
    fn append(dir: &Path) -> Raw {
        Raw::Append(File::create(dir.join("raw-append")).expect("create"))
    }

    fn overwrite(dir: &Path) -> Raw {
        let mut file = File::create(dir.join("raw-overwrite")).expect("create");
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..RAW_FILE_BYTES / zeros.len() as u64 {
            file.write_all(&zeros).expect("zero fill");
        }
        file.sync_all().expect("fsync");
        Raw::Overwrite { file, offset: 0 }
    }

    fn step(&mut self, bytes: &[u8]) {
        match self {
            Raw::Append(file) => {
                file.write_all(bytes).expect("write");
                file.sync_data().expect("fdatasync");
            }
            Raw::Overwrite { file, offset } => {
                if *offset + bytes.len() as u64 > RAW_FILE_BYTES {
                    *offset = 0;
                }
                file.write_all_at(bytes, *offset).expect("write");
                file.sync_data().expect("fdatasync");
                *offset += bytes.len() as u64;
            }
        }
    }
}

/// A WAL fed batches of `entries` entries in order.
struct Persister {
    wal: Wal,
    entries: u64,
    next_index: u64,
}

impl Persister {
    fn new(dir: &Path, entries: u64) -> Persister {
        Persister { wal: Wal::open(dir, WalOptions::new(1, 1)).expect("open"), entries, next_index: 1 }
    }

    fn next_write(&mut self) -> LogWrite {
        let write = write_of(self.next_index, self.entries);
        self.next_index += self.entries;
        write
    }

    fn persist(&mut self, log_write: &LogWrite) {
        let request = PersistRequest { hard_state: Some(HARD_STATE), log_write: Some(log_write) };
        self.wal.persist(&[request]).expect("persist");
    }
}

fn bench_persist(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("wal");
    group.sample_size(10);
    for entries_per_batch in [1u64, 16, BIG_BATCH] {
        group.throughput(Throughput::Elements(entries_per_batch));
        group.bench_function(format!("persist_{entries_per_batch}_entries_per_sync"), |bencher| {
            let dir = tempfile::tempdir().expect("temp dir");
            let persister = std::cell::RefCell::new(Persister::new(dir.path(), entries_per_batch));
            // Inputs are made in order and persisted in that order.
            bencher.iter_batched(
                || persister.borrow_mut().next_write(),
                |log_write| persister.borrow_mut().persist(&log_write),
                BatchSize::SmallInput,
            );
        });
    }
    let batch = encoded_batch(BIG_BATCH);
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("raw_append_fdatasync_{}_bytes", batch.len()), |bencher| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut raw = Raw::append(dir.path());
        bencher.iter(|| raw.step(&batch));
    });
    group.bench_function(format!("raw_overwrite_fdatasync_{}_bytes", batch.len()), |bencher| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut raw = Raw::overwrite(dir.path());
        bencher.iter(|| raw.step(&batch));
    });
    group.bench_function("raw_write_and_fdatasync_128_bytes", |bencher| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut raw = Raw::append(dir.path());
        let bytes = [7u8; COMMAND_BYTES];
        bencher.iter(|| raw.step(&bytes));
    });
    group.finish();
}

/// Steps of the interleaved comparison: each times one sync of every loop.
/// 1800 batches of 256 entries are a little more than one 64 MiB segment, so
/// the WAL's side includes a roll and the filling of a spare.
const STEPS: usize = 1800;

/// Mean, median and 90th percentile of `times` (seconds).
fn summary(times: &mut [f64]) -> (f64, f64, f64) {
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    (mean, times[times.len() / 2], times[times.len() * 9 / 10])
}

fn timed(step: impl FnOnce()) -> f64 {
    let start = Instant::now();
    step();
    start.elapsed().as_secs_f64()
}

fn compare_interleaved(_criterion: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let batch = encoded_batch(BIG_BATCH);
    let mut persister = Persister::new(&dir.path().join("wal"), BIG_BATCH);
    let mut overwrite = Raw::overwrite(dir.path());
    let mut append = Raw::append(dir.path());
    // Warm up each loop (the first writes of a file are not typical), and
    // the WAL through its first segment, to its steady state (a WAL's first
    // segment writes its own zeros ahead; the next ones are prepared as
    // spares).
    for _ in 0..40 {
        overwrite.step(&batch);
        append.step(&batch);
    }
    while persister.wal.segment_paths().len() < 2 {
        let write = persister.next_write();
        persister.persist(&write);
    }
    // One sync of each loop per step, in an order that rotates, so that all
    // three see the same disk at the same moments.
    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    let started = Instant::now();
    for step in 0..STEPS {
        // The write is made before the clock starts, as in the Criterion bench.
        let write = persister.next_write();
        let mut write = Some(write);
        for turn in 0..3 {
            let which = (step + turn) % 3;
            let time = match which {
                0 => timed(|| persister.persist(&write.take().expect("one write per step"))),
                1 => timed(|| overwrite.step(&batch)),
                _ => timed(|| append.step(&batch)),
            };
            times[which].push(time);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let [persist, raw, raw_append] = times.map(|mut times| summary(&mut times));
    let line = |name: String, (mean, p50, p90): (f64, f64, f64), unit: &str| {
        println!(
            "wal/compare:   {name:<40} mean {:>6.0} µs = {:>5.0} {unit}/s   p50 {:>6.0} µs   p90 {:>6.0} µs",
            mean * 1e6,
            1.0 / mean,
            p50 * 1e6,
            p90 * 1e6
        );
    };
    println!(
        "wal/compare: {STEPS} syncs of each loop, interleaved one by one ({elapsed:.1} s; the WAL from its segment 2 to its segment {}):",
        persister.wal.segment_paths().len()
    );
    line(format!("persist_{BIG_BATCH}_entries_per_sync"), persist, "batches");
    line(format!("raw_overwrite_fdatasync_{}_bytes", batch.len()), raw, "syncs");
    line(format!("raw_append_fdatasync_{}_bytes", batch.len()), raw_append, "syncs");
    println!(
        "wal/compare: persist_{BIG_BATCH} = {:.0} entries/s = {:.0}% of the raw overwrite's syncs/s (the baseline; p50: {:.0}%), {:.0}% of the raw append's",
        BIG_BATCH as f64 / persist.0,
        raw.0 / persist.0 * 100.0,
        raw.1 / persist.1 * 100.0,
        raw_append.0 / persist.0 * 100.0
    );
}

criterion_group!(benches, bench_persist, compare_interleaved);
criterion_main!(benches);
