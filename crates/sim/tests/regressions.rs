//! Seeds that once broke an invariant, each named after what it found. Each must
//! now run clean; the matching deterministic unit test (named in the comment)
//! pins the rule that fixed it.

use conclave_core::ElectionMode;
use conclave_sim::{run_seed, FaultSet, SimOptions};

/// Gapless, 5 nodes, all faults. A follower replaced a suffix and learned it
/// committed in one batch; a torn write kept the batch's hard state (commit 151)
/// without its log record, and after the restart a replaced entry counted as
/// committed: state machine safety broke at index 144. Fixed by never persisting
/// a commit index over the batch's own log write
/// (`conclave-core/tests/persistence_contract.rs`).
#[test]
fn seed_5000036_torn_conflict_truncation_kept_a_commit_over_replaced_entries() {
    let options = SimOptions::new(ElectionMode::Gapless, 5, FaultSet::all());
    let (report, trace) = run_seed(&options, 5_000_036);
    assert!(report.violation.is_none(), "{:?}\n{}", report.violation, trace.join("\n"));
    assert!(report.committed_entries > 100, "the run did real work");
}
