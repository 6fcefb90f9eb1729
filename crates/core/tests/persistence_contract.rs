//! The persist-before-send contract's finer points (docs/design/architecture.md): what a batch's
//! hard state may claim about the log.

mod support;

use conclave_core::{LogIndex, NodeId, RestoredState};
use support::*;

const VOTERS: [NodeId; 3] = [1, 2, 3];

/// Regression (simulator seed 5000036, 5-node gapless sweep, all faults): a
/// follower replaced a suffix and learned those entries committed in one batch;
/// a torn write kept the batch's hard-state record (commit 151) and lost its log
/// record, so on restart the old entries at those indexes counted as committed
/// and a different entry was applied at index 144. The commit a batch persists
/// must never cover that batch's own log write.
#[test]
fn a_batch_never_persists_a_commit_index_covering_its_own_log_write() {
    // Node 1 holds [1, 1, 2, 2] (indexes 3 and 4 from a deposed leader of term 2).
    let mut node = restored_node(config(1, &VOTERS), hard_state(2, None, 2), &[1, 1, 2, 2], 1);
    // The leader of term 3 replaces indexes 3.. and says they are committed.
    let body = append(2, 1, vec![entry(3, 3), entry(3, 4), entry(3, 5)], 5);
    let output = node.step(msg(2, 1, 3, body));
    let write = output.log_write.clone().expect("the suffix is rewritten");
    assert_eq!(write.first_index, 3, "a conflict truncation");
    let persisted_commit = output.hard_state.expect("the term changed").commit;
    assert!(
        persisted_commit < write.first_index,
        "persisted commit {persisted_commit} covers the batch's own write from index {}",
        write.first_index
    );
    // Nor does the node commit the replaced suffix in memory: what it persisted
    // is what it knows, so a restart never forgets an announced commit.
    assert_eq!(node.log().committed(), persisted_commit);
    assert!(output.committed_entries.iter().all(|entry| entry.index < write.first_index));

    // What survives a tear after the hard-state record: the old log and that commit.
    let mut torn = RestoredState {
        hard_state: output.hard_state.expect("checked"),
        entries: log_with_terms(&[1, 1, 2, 2]),
        snapshot: None,
    };
    let restarted = node_from(config(1, &VOTERS), torn.clone(), 1);
    assert!(restarted.log().committed() <= 2, "the replaced entries are not committed after the tear");

    // The next heartbeat (after the write is durable) commits and persists it all.
    let output = node.step(msg(2, 1, 3, heartbeat(5, 3, 5)));
    assert_eq!(output.hard_state.map(|state| state.commit), Some(5 as LogIndex));
    assert_eq!(output.committed_entries.last().map(|entry| entry.index), Some(5));
    torn.entries = node.log().all().to_vec();
    torn.hard_state.commit = 5;
    assert_eq!(node_from(config(1, &VOTERS), torn, 1).log().committed(), 5);
}

#[test]
fn a_pure_append_persists_the_commit_it_brings() {
    // No suffix is replaced, so the commit may cover the new entries: a restored
    // commit past the log's end is lowered to it, and nothing below changed.
    let mut node = restored_node(config(1, &VOTERS), hard_state(2, None, 1), &[1, 1], 1);
    let output = node.step(msg(2, 1, 2, append(2, 1, vec![entry(2, 3)], 3)));
    assert_eq!(output.log_write.as_ref().map(|write| write.first_index), Some(3));
    assert_eq!(output.hard_state.map(|state| state.commit), Some(3));
    assert_eq!(node.log().committed(), 3);
}
