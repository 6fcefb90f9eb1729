//! Linearizable reads under faults (invariant 6 in docs/design/invariants.md, Raft thesis §6.4): the
//! simulated client asks any node that believes it leads for a read, and the
//! `linearizable_reads` checker requires every served read to include every
//! write applied anywhere before the read was issued. Each mode runs a few seeds
//! with every fault; the sweep in `broken_rules.rs` shows the checker fires when
//! the leadership check is removed.

use conclave_core::ElectionMode;
use conclave_sim::{run_seed, FaultSet, SimOptions};

#[test]
fn served_reads_see_every_write_acknowledged_before_them_in_every_mode() {
    let seeds = if cfg!(debug_assertions) { 10 } else { 60 };
    for mode in [ElectionMode::Raft, ElectionMode::Fast, ElectionMode::Gapless, ElectionMode::Conclave] {
        let options = SimOptions::new(mode, 3, FaultSet::all());
        let (mut issued, mut served, mut failed) = (0, 0, 0);
        for seed in 0..seeds {
            let (report, _) = run_seed(&options, seed);
            if let Some(violation) = report.violation {
                panic!(
                    "{mode:?} seed {seed}: {} — {} {:?}",
                    violation.property, violation.detail, violation.recent_events
                );
            }
            assert!(report.reads_served + report.reads_failed <= report.reads_issued);
            issued += report.reads_issued;
            served += report.reads_served;
            failed += report.reads_failed;
        }
        eprintln!("{mode:?}: {issued} reads issued, {served} served, {failed} failed");
        assert!(served > 0, "{mode:?}: reads were exercised");
        assert!(served * 2 > issued, "{mode:?}: most reads are served ({served} of {issued})");
    }
}
