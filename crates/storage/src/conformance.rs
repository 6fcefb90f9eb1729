//! The storage conformance suite: what every [`LogStore`] must do, run against
//! both [`crate::Wal`] and [`crate::MemoryStore`] by `tests/conformance.rs`.
//!
//! Each case takes `make` (a new, empty store) and `reopen` (drop a store and
//! open its data again: a restart) and panics on the first difference.
//! [`run_all`] runs every case.

use conclave_core::{
    Config, ElectionMode, Entry, HardState, LeaderTermRecord, LogIndex, LogWrite, Node, Payload, RestoredState, Term,
};
use rand::SeedableRng;

use crate::error::StorageError;
use crate::snapshot::Snapshot;
use crate::store::{LogStore, PersistRequest};

/// Runs every case of the suite.
pub fn run_all<S: LogStore>(make: impl Fn() -> S, reopen: impl Fn(S) -> S) {
    append(&make, &reopen);
    truncate_suffix(&make, &reopen);
    compact_prefix(&make, &reopen);
    snapshot_replaces_a_divergent_log(&make, &reopen);
    stale_snapshot_is_refused(&make, &reopen);
    restore_snapshot_and_suffix(&make, &reopen);
    hard_state_round_trip(&make, &reopen);
    reopen_after_drop(&make, &reopen);
    group_commit_of_many_batches(&make, &reopen);
    empty_batches(&make, &reopen);
    invalid_batches_are_refused_whole(&make, &reopen);
    out_of_range_reads(&make, &reopen);
}

/// The entry the suite writes at `index` in `term`: its payload names both, so
/// a wrong entry can never compare equal.
pub fn entry(term: Term, index: LogIndex) -> Entry {
    let payload = match index % 5 {
        1 => Payload::Noop,
        3 => Payload::BecomeLeader { leader_term: index, leader: term.max(1) },
        _ => Payload::Command(format!("{index}@{term}").into_bytes().into()),
    };
    Entry { term, index, payload }
}

/// A log write of entries `first_index..first_index + count`, all in `term`.
pub fn write(first_index: LogIndex, count: u64, term: Term) -> LogWrite {
    LogWrite { first_index, entries: (first_index..first_index + count).map(|index| entry(term, index)).collect() }
}

fn persist_one<S: LogStore>(store: &mut S, hard_state: Option<HardState>, log_write: Option<&LogWrite>) {
    store.persist(&[PersistRequest { hard_state, log_write }]).expect("persist");
}

/// Asserts that the log is exactly `expected`, starting at `first_index`.
pub fn assert_log<S: LogStore>(store: &S, first_index: LogIndex, expected: &[Entry]) {
    assert_eq!(store.first_index(), first_index, "first index");
    assert_eq!(store.last_index(), first_index - 1 + expected.len() as u64, "last index");
    let read = store.entries(first_index..store.last_index() + 1).expect("entries");
    assert_eq!(read, expected, "entries");
}

/// Plain appends are read back, before and after a restart.
pub fn append<S: LogStore>(make: impl Fn() -> S, reopen: impl Fn(S) -> S) {
    let mut store = make();
    let first = write(1, 3, 1);
    let second = write(4, 2, 1);
    persist_one(&mut store, Some(HardState { term: 1, voted_for: Some(1), commit: 0 }), Some(&first));
    persist_one(&mut store, None, Some(&second));
    let expected: Vec<Entry> = first.entries.iter().chain(&second.entries).cloned().collect();
    assert_log(&store, 1, &expected);
    assert_eq!(store.entries(2..4).expect("middle"), expected[1..3].to_vec());
    let store = reopen(store);
    assert_log(&store, 1, &expected);
    assert_eq!(store.restored_state().expect("restored").entries, expected);
}

/// A write below the last index replaces the suffix (Raft §5.3); a write of no
/// entries only truncates. Both survive a restart.
pub fn truncate_suffix<S: LogStore>(make: impl Fn() -> S, reopen: impl Fn(S) -> S) {
    let mut store = make();
    persist_one(&mut store, Some(HardState { term: 2, voted_for: None, commit: 0 }), Some(&write(1, 5, 1)));
    persist_one(&mut store, None, Some(&write(3, 2, 2)));
    let expected: Vec<Entry> = vec![entry(1, 1), entry(1, 2), entry(2, 3), entry(2, 4)];
    assert_log(&store, 1, &expected);
    let mut store = reopen(store);
    assert_log(&store, 1, &expected);
    persist_one(&mut store, None, Some(&LogWrite { first_index: 4, entries: Vec::new() }));
    assert_log(&store, 1, &expected[..3]);
    let store = reopen(store);
    assert_log(&store, 1, &expected[..3]);
}

/// A snapshot of the log's own prefix removes that prefix and keeps the rest;
/// compaction up to it is allowed, beyond it refused; all survives restarts.
pub fn compact_prefix<S: LogStore>(make: impl Fn() -> S, reopen: impl Fn(S) -> S) {
    let mut store = make();
    let log = write(1, 10, 1);
    persist_one(&mut store, Some(HardState { term: 1, voted_for: Some(2), commit: 8 }), Some(&log));
    let snapshot = Snapshot {
        last_included_index: 5,
        last_included_term: 1,
        membership: conclave_core::Membership::bootstrap(&[1, 2, 3], &Default::default()),
        last_leader_term: None,
        data: b"state".to_vec().into(),
    };
    store.save_snapshot(snapshot.clone()).expect("save snapshot");
    assert_log(&store, 6, &log.entries[5..]);
    assert!(matches!(store.entries(5..7), Err(StorageError::Compacted { requested: 5, first_index: 6 })));
    assert!(matches!(store.compact(6), Err(StorageError::CompactBeyondSnapshot { upto_index: 6, snapshot_index: 5 })));
    store.compact(5).expect("compact");
    assert_log(&store, 6, &log.entries[5..]);
    let restored = store.restored_state().expect("a snapshot and its suffix restore");
    assert_eq!(restored.snapshot.as_ref().map(|snapshot| snapshot.meta.clone()), Some(snapshot.meta()));
    assert_eq!(restored.entries, log.entries[5..].to_vec());
    let mut store = reopen(store);
    assert_eq!(store.snapshot(), Some(&snapshot));
    assert_log(&store, 6, &log.entries[5..]);
    assert_eq!(store.hard_state().commit, 8);
    persist_one(&mut store, None, Some(&write(11, 2, 1)));
    let expected: Vec<Entry> = log.entries[5..].iter().cloned().chain(write(11, 2, 1).entries).collect();
    let store = reopen(store);
    assert_log(&store, 6, &expected);
}

/// A snapshot whose last entry the log does not hold (installed from a leader)
/// discards the whole log; writes continue after it.
pub fn snapshot_replaces_a_divergent_log<S: LogStore>(make: impl Fn() -> S, reopen: impl Fn(S) -> S) {
    let mut store = make();
    persist_one(&mut store, Some(HardState { term: 3, voted_for: None, commit: 0 }), Some(&write(1, 5, 1)));
    let snapshot = Snapshot {
        last_included_index: 3,
        last_included_term: 2,
        membership: conclave_core::Membership::bootstrap(&[1], &Default::default()),
        last_leader_term: None,
        data: Vec::new().into(),
    };
    store.save_snapshot(snapshot.clone()).expect("save snapshot");
    assert_log(&store, 4, &[]);
    let mut store = reopen(store);
    assert_eq!(store.snapshot(), Some(&snapshot));
    assert_log(&store, 4, &[]);
    persist_one(&mut store, None, Some(&write(4, 2, 3)));
    let store = reopen(store);
    assert_log(&store, 4, &write(4, 2, 3).entries);
}

/// A node restarts from a snapshot and the entries after it (Raft §7): the
/// store hands back the snapshot (metadata with its last `BecomeLeader`, and the
/// data) and the suffix, and the core accepts them: its log starts after the
/// snapshot and its leader term comes from the snapshot's metadata. Entries
/// appended after the snapshot survive restarts too.
pub fn restore_snapshot_and_suffix<S: LogStore>(make: impl Fn() -> S, reopen: impl Fn(S) -> S) {
    let mut store = make();
    // A gapless-mode log: leader term 1 (n1, ballot 1) at 1, leader term 2 (n2,
    // ballot 2) at 6, commands between.
    let payload = |index: LogIndex| match index {
        1 => Payload::BecomeLeader { leader_term: 1, leader: 1 },
        6 => Payload::BecomeLeader { leader_term: 2, leader: 2 },
        _ => Payload::Command(format!("c{index}").into_bytes().into()),
    };
    let log: Vec<Entry> =
        (1..=10).map(|index| Entry { term: if index < 6 { 1 } else { 2 }, index, payload: payload(index) }).collect();
    let write = LogWrite { first_index: 1, entries: log.clone() };
    persist_one(&mut store, Some(HardState { term: 2, voted_for: Some(2), commit: 9 }), Some(&write));
    let record = LeaderTermRecord { leader_term: 2, leader: 2, ballot: 2, index: 6 };
    let snapshot = Snapshot {
        last_included_index: 7,
        last_included_term: 2,
        membership: conclave_core::Membership::bootstrap(&[1, 2, 3], &Default::default()),
        last_leader_term: Some(record),
        data: b"state at 7".to_vec().into(),
    };
    store.save_snapshot(snapshot.clone()).expect("save snapshot");
    store.compact(7).expect("compact");
    let store = reopen(store);
    let check = |store: &S, expected_suffix: &[Entry]| -> RestoredState {
        let restored = store.restored_state().expect("restored");
        assert_eq!(restored.snapshot, Some(snapshot.to_core()), "snapshot metadata and data");
        assert_eq!(restored.entries, expected_suffix, "the suffix after the snapshot");
        let mut config = Config::new(1, 7, vec![1, 2, 3]);
        config.election_mode = ElectionMode::Gapless;
        let rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let node = Node::new(config, restored.clone(), rng, 0).expect("the core starts from it");
        assert_eq!(node.log().first_index(), 8);
        assert_eq!(node.log().last_index(), expected_suffix.last().map_or(7, |entry| entry.index));
        assert_eq!(node.status().commit, 9);
        assert_eq!(node.status().leader_term, Some(2), "the leader term survives in the snapshot");
        restored
    };
    check(&store, &log[7..]);
    let mut store = store;
    let more = LogWrite {
        first_index: 11,
        entries: vec![Entry { term: 2, index: 11, payload: Payload::Command(b"c11".to_vec().into()) }],
    };
    persist_one(&mut store, None, Some(&more));
    let store = reopen(store);
    let expected: Vec<Entry> = log[7..].iter().cloned().chain(more.entries.clone()).collect();
    check(&store, &expected);
}

/// A snapshot older than the saved one is refused and changes nothing.
pub fn stale_snapshot_is_refused<S: LogStore>(make: impl Fn() -> S, reopen: impl Fn(S) -> S) {
    let mut store = make();
    persist_one(&mut store, Some(HardState { term: 1, voted_for: None, commit: 0 }), Some(&write(1, 6, 1)));
    let newer = Snapshot {
        last_included_index: 4,
        last_included_term: 1,
        membership: conclave_core::Membership::bootstrap(&[1], &Default::default()),
        last_leader_term: None,
        data: b"4".to_vec().into(),
    };
    store.save_snapshot(newer.clone()).expect("save snapshot");
    let older = Snapshot {
        last_included_index: 2,
        last_included_term: 1,
        membership: conclave_core::Membership::bootstrap(&[1], &Default::default()),
        last_leader_term: None,
        data: b"2".to_vec().into(),
    };
    assert!(matches!(store.save_snapshot(older), Err(StorageError::StaleSnapshot { index: 2, current: 4 })));
    let store = reopen(store);
    assert_eq!(store.snapshot(), Some(&newer));
    assert_log(&store, 5, &write(5, 2, 1).entries);
}

/// Every hard state field survives, the latest one wins, and `voted_for: None`
/// stays `None`.
pub fn hard_state_round_trip<S: LogStore>(make: impl Fn() -> S, reopen: impl Fn(S) -> S) {
    let mut store = make();
    assert_eq!(store.hard_state(), HardState::default());
    let states = [
        HardState { term: 1, voted_for: Some(3), commit: 0 },
        HardState { term: 2, voted_for: None, commit: 0 },
        HardState { term: u64::MAX - 1, voted_for: Some(u64::MAX), commit: 9 },
    ];
    for hard_state in states {
        persist_one(&mut store, Some(hard_state), None);
        assert_eq!(store.hard_state(), hard_state);
        store = reopen(store);
        assert_eq!(store.hard_state(), hard_state);
    }
    assert_log(&store, 1, &[]);
}

/// A store reopened with nothing written is empty; reopening twice changes
/// nothing.
pub fn reopen_after_drop<S: LogStore>(make: impl Fn() -> S, reopen: impl Fn(S) -> S) {
    let store = reopen(make());
    assert_eq!(store.hard_state(), HardState::default());
    assert_log(&store, 1, &[]);
    assert_eq!(store.snapshot(), None);
    assert_eq!(store.restored_state().expect("restored"), conclave_core::RestoredState::default());
    let mut store = store;
    persist_one(&mut store, Some(HardState { term: 4, voted_for: Some(1), commit: 1 }), Some(&write(1, 1, 4)));
    let store = reopen(reopen(store));
    assert_eq!(store.hard_state(), HardState { term: 4, voted_for: Some(1), commit: 1 });
    assert_log(&store, 1, &write(1, 1, 4).entries);
}

/// Many batches in one call land in order, truncations included.
pub fn group_commit_of_many_batches<S: LogStore>(make: impl Fn() -> S, reopen: impl Fn(S) -> S) {
    let mut store = make();
    let writes: Vec<LogWrite> = (1..=100).map(|index| write(index, 1, 1 + index / 10)).collect();
    let conflict = write(50, 3, 11);
    let mut batches: Vec<PersistRequest<'_>> = writes
        .iter()
        .map(|log_write| PersistRequest {
            hard_state: Some(HardState { term: 1 + log_write.first_index / 10, voted_for: None, commit: 0 }),
            log_write: Some(log_write),
        })
        .collect();
    batches.push(PersistRequest { hard_state: None, log_write: Some(&conflict) });
    store.persist(&batches).expect("group commit");
    let expected: Vec<Entry> =
        writes[..49].iter().flat_map(|w| w.entries.clone()).chain(conflict.entries.clone()).collect();
    assert_log(&store, 1, &expected);
    assert_eq!(store.hard_state().term, 11);
    let store = reopen(store);
    assert_log(&store, 1, &expected);
    assert_eq!(store.hard_state().term, 11);
}

/// No batches, or batches with nothing in them, change nothing.
pub fn empty_batches<S: LogStore>(make: impl Fn() -> S, reopen: impl Fn(S) -> S) {
    let mut store = make();
    store.persist(&[]).expect("no batches");
    store.persist(&[PersistRequest::default(); 3]).expect("empty batches");
    assert_log(&store, 1, &[]);
    persist_one(&mut store, Some(HardState { term: 1, voted_for: None, commit: 0 }), Some(&write(1, 2, 1)));
    store.persist(&[PersistRequest::default()]).expect("empty batch");
    let store = reopen(store);
    assert_log(&store, 1, &write(1, 2, 1).entries);
    assert_eq!(store.hard_state().term, 1);
}

/// A call with one bad batch (a hole, a misnumbered entry, a term going back,
/// a vote for node 0) writes none of its batches.
pub fn invalid_batches_are_refused_whole<S: LogStore>(make: impl Fn() -> S, reopen: impl Fn(S) -> S) {
    let mut store = make();
    persist_one(&mut store, Some(HardState { term: 5, voted_for: None, commit: 0 }), Some(&write(1, 2, 1)));
    let good = write(3, 1, 1);
    let hole = write(5, 1, 1);
    let misnumbered = LogWrite { first_index: 3, entries: vec![entry(1, 4)] };
    let refusals: [Vec<PersistRequest<'_>>; 4] = [
        vec![
            PersistRequest { hard_state: None, log_write: Some(&good) },
            PersistRequest { hard_state: None, log_write: Some(&hole) },
        ],
        vec![PersistRequest { hard_state: None, log_write: Some(&misnumbered) }],
        vec![PersistRequest { hard_state: Some(HardState { term: 4, voted_for: None, commit: 0 }), log_write: None }],
        vec![PersistRequest {
            hard_state: Some(HardState { term: 6, voted_for: Some(0), commit: 0 }),
            log_write: None,
        }],
    ];
    for batches in &refusals {
        assert!(matches!(store.persist(batches), Err(StorageError::InvalidWrite { .. })), "{batches:?}");
        assert_log(&store, 1, &write(1, 2, 1).entries);
        assert_eq!(store.hard_state().term, 5);
    }
    let store = reopen(store);
    assert_log(&store, 1, &write(1, 2, 1).entries);
    assert_eq!(store.hard_state().term, 5);
}

/// Reads past the end are refused with the log's last index; empty ranges are
/// empty.
pub fn out_of_range_reads<S: LogStore>(make: impl Fn() -> S, reopen: impl Fn(S) -> S) {
    let mut store = make();
    persist_one(&mut store, Some(HardState { term: 1, voted_for: None, commit: 0 }), Some(&write(1, 3, 1)));
    let store = reopen(store);
    assert!(matches!(store.entries(2..5), Err(StorageError::Unavailable { requested: 4, last_index: 3 })));
    assert!(matches!(store.entries(0..2), Err(StorageError::Compacted { requested: 0, first_index: 1 })));
    assert_eq!(store.entries(3..3).expect("empty range"), Vec::new());
}
