//! What a run is asked to do, and every parameter its seed derives.

use conclave_core::{Config, ElectionMode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::faults::FaultSet;

/// The cluster id every simulated node uses.
pub const SIM_CLUSTER_ID: u64 = 0xC0C1A7E;

/// What the caller chooses; everything else comes from the seed.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Election mode of every node.
    pub mode: ElectionMode,
    /// Cluster size (the sweep uses 3, 5 and 7).
    pub nodes: usize,
    /// Faults that may be injected.
    pub faults: FaultSet,
    /// Keep every trace event (for `--trace`), not only the last few.
    pub keep_full_trace: bool,
    /// Adjusts each node's config before it starts (tests use it to inject bugs).
    pub config_hook: Option<fn(&mut Config)>,
    /// Fixed one-way latency range `[min, max]` ms, uniform, instead of the
    /// seed's distribution.
    pub latency_ms: Option<(u64, u64)>,
    /// Fixed message-loss probability instead of the seed's.
    pub loss_probability: Option<f64>,
    /// Nodes act on the evidence that a peer's process is gone
    /// (`Config::fast_detection`); off, a process crash is found by misses only.
    pub fast_detection: bool,
    /// Bug injection: the state machine model applies a command id it applied
    /// before again (no deduplication); the `exactly_once` checker must catch it.
    pub apply_duplicates: bool,
    /// Leaders send their appends before their own persist completes
    /// (`Config::parallel_persist`, as the server does); off, every message
    /// waits for its batch's fsync.
    pub parallel_persist: bool,
}

impl SimOptions {
    /// A sweep of `mode` on `nodes` nodes with `faults`.
    pub fn new(mode: ElectionMode, nodes: usize, faults: FaultSet) -> SimOptions {
        SimOptions {
            mode,
            nodes,
            faults,
            keep_full_trace: false,
            config_hook: None,
            latency_ms: None,
            loss_probability: None,
            fast_detection: true,
            apply_duplicates: false,
            parallel_persist: true,
        }
    }
}

/// The parameters of one run, all drawn from its seed (printed with the run so a
/// reader sees what the seed chose).
#[derive(Clone, Debug, Serialize)]
pub struct RunParams {
    /// The seed everything derives from.
    pub seed: u64,
    /// Length of the safety phase (faults active).
    pub safety_phase_ms: u64,
    /// Bound on the liveness phase (faults healed).
    pub liveness_bound_ms: u64,
    /// Smallest one-way message latency.
    pub latency_min_ms: u64,
    /// Mean of the exponential part of the latency added to the minimum.
    pub latency_mean_ms: f64,
    /// If set, latency is uniform in `[min, max]` instead (and the two above unused).
    pub latency_uniform_ms: Option<(u64, u64)>,
    /// Probability a message is lost.
    pub loss_probability: f64,
    /// Probability a message is delivered twice.
    pub duplicate_probability: f64,
    /// Probability a message is held back (reordered).
    pub reorder_probability: f64,
    /// Mean gap between injected faults.
    pub fault_interval_mean_ms: u64,
    /// Longest fsync.
    pub fsync_max_ms: u64,
    /// Gap between client proposals in the safety phase.
    pub proposal_interval_ms: u64,
    /// Mean gap between client reads (both phases).
    pub read_interval_ms: u64,
    /// Proposals the liveness phase requires to commit everywhere.
    pub liveness_proposals: u64,
    /// Entries per `AppendEntries`: small values split a new leader's catch-up
    /// across messages, which exposes commit-rule bugs that big batches mask.
    pub max_entries_per_message: usize,
    /// Payload bytes per `AppendEntries`: small values cut appends by size.
    pub max_bytes_per_message: usize,
    /// Each node snapshots its state machine and compacts its log every this
    /// many applied entries.
    pub snapshot_every: u64,
    /// Largest `InstallSnapshot` chunk.
    pub snapshot_chunk_bytes: usize,
}

impl RunParams {
    /// Draws the parameters for `seed`, honouring which faults are enabled.
    pub fn from_seed(seed: u64, faults: FaultSet) -> RunParams {
        use crate::faults::FaultKind::{Duplicate, Loss, Reorder};
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, "params"));
        let mut probability = |enabled: bool, max: f64| if enabled { rng.gen_range(0.0..max) } else { 0.0 };
        let loss_probability = probability(faults.contains(Loss), 0.10);
        let duplicate_probability = probability(faults.contains(Duplicate), 0.05);
        let reorder_probability = probability(faults.contains(Reorder), 0.05);
        RunParams {
            seed,
            safety_phase_ms: rng.gen_range(3_000..=10_000),
            liveness_bound_ms: 10_000,
            latency_min_ms: rng.gen_range(1..=5),
            latency_mean_ms: rng.gen_range(0.5..15.0),
            latency_uniform_ms: None,
            loss_probability,
            duplicate_probability,
            reorder_probability,
            fault_interval_mean_ms: rng.gen_range(150..=1_000),
            fsync_max_ms: rng.gen_range(0..=4),
            proposal_interval_ms: rng.gen_range(5..=60),
            liveness_proposals: 20,
            max_entries_per_message: [1, 2, 3, 8, 64][rng.gen_range(0..5)],
            // Drawn last, so the draws above are what they were before snapshots.
            snapshot_every: rng.gen_range(8..=48),
            snapshot_chunk_bytes: [64, 256, 4 << 10, 64 << 10][rng.gen_range(0..4)],
            // After the snapshot draws, for the same reason.
            read_interval_ms: rng.gen_range(5..=60),
            // Last again: every earlier draw keeps its value.
            max_bytes_per_message: [16, 200, 4 << 10, 1 << 20][rng.gen_range(0..4)],
        }
    }
}

impl RunParams {
    /// The parameters of `seed` under `options`: the seed's draws, then the
    /// caller's fixed latency and loss, if any.
    pub fn for_run(seed: u64, options: &SimOptions) -> RunParams {
        let mut params = RunParams::from_seed(seed, options.faults);
        params.latency_uniform_ms = options.latency_ms;
        if let Some(loss) = options.loss_probability {
            params.loss_probability = loss;
        }
        params
    }
}

/// Derives an independent stream's seed from the run's seed and a label, so that
/// adding draws to one stream does not shift the others.
pub fn derive_seed(seed: u64, label: &str) -> u64 {
    let mut hash = crate::trace::Fnv64::new();
    hash.write_u64(seed);
    hash.write_bytes(label.as_bytes());
    hash.finish()
}
