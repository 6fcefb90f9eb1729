//! Snapshots in the core (Raft §7): driver-initiated compaction, restarting from
//! a snapshot and the entries after it, the chunked and resumable
//! `InstallSnapshot` that brings a lagging follower up to date once the leader
//! compacted what it needed, and gapless leader terms that survive compaction.

mod support;

use conclave_core::progress::MAX_INFLIGHT_CHUNKS;
use conclave_core::{
    Body, CompactError, Config, ElectionMode, Entry, LeaderTermRecord, LogIndex, Message, Node, NodeId, Payload,
    RestoredState, Role, Snapshot, SnapshotMeta, StartError,
};
use support::*;

const VOTERS: [NodeId; 3] = [1, 2, 3];

/// A three-node cluster in `mode` with small snapshot chunks, node 1 leading and
/// `commands` committed everywhere.
fn cluster_with(mode: ElectionMode, chunk_bytes: usize, commands: u64) -> Cluster {
    cluster_configured(chunk_bytes, commands, |config| config.election_mode = mode)
}

/// [`cluster_with`] with every node's configuration given by `tweak`.
fn cluster_configured(chunk_bytes: usize, commands: u64, tweak: impl Fn(&mut Config)) -> Cluster {
    let mut cluster = Cluster::with_config(3, 1, |config| {
        config.snapshot_chunk_bytes = chunk_bytes;
        tweak(config);
    });
    cluster.elect(1);
    for command in 0..commands {
        cluster.propose(1, format!("c{command}").as_bytes());
    }
    cluster.deliver_all();
    // One heartbeat round tells the followers the final commit index.
    let now = cluster.now_ms + HEARTBEAT_MS;
    cluster.run_until(now, HEARTBEAT_MS);
    cluster
}

/// The state machine bytes a driver would write for node `id`: here, just a
/// pattern long enough to need several chunks.
fn state_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|position| (position * 7 % 251) as u8).collect()
}

fn meta(index: LogIndex, term: u64, last_leader_term: Option<LeaderTermRecord>) -> SnapshotMeta {
    SnapshotMeta {
        last_included_index: index,
        last_included_term: term,
        membership: conclave_core::Membership::bootstrap(&VOTERS, &Default::default()),
        last_leader_term,
    }
}

fn install_chunks(cluster: &Cluster, to: NodeId) -> Vec<(u64, usize, bool)> {
    cluster
        .trace
        .iter()
        .filter_map(|(message, _)| match &message.body {
            Body::InstallSnapshot { offset, data, done, .. } if message.to == to => Some((*offset, data.len(), *done)),
            _ => None,
        })
        .collect()
}

/// Cuts node 3 off while node 1 commits `commands` more, then compacts node
/// 1's log into a snapshot of `snapshot_bytes` bytes and reconnects node 3,
/// which now needs that snapshot. Returns the snapshot and its index.
fn leave_node_3_behind(cluster: &mut Cluster, commands: u64, snapshot_bytes: usize) -> (Snapshot, LogIndex) {
    cluster.isolated.insert(3);
    for command in 0..commands {
        cluster.propose(1, format!("c{command}").as_bytes());
    }
    cluster.deliver_all();
    let applied = cluster.node(1).log().applied();
    let snapshot = cluster.node_mut(1).compact(applied, state_bytes(snapshot_bytes)).expect("compact");
    cluster.isolated.clear();
    (snapshot, applied)
}

/// Runs the cluster in heartbeat-sized steps for `duration_ms`, delivering every
/// message but those `drop` picks (which are lost).
fn run_dropping(cluster: &mut Cluster, duration_ms: u64, mut drop: impl FnMut(&Message) -> bool) {
    let end_ms = cluster.now_ms + duration_ms;
    while cluster.now_ms < end_ms {
        let now = cluster.now_ms + HEARTBEAT_MS / 5;
        cluster.tick_all(now);
        while let Some(message) = cluster.queue.pop_front() {
            if drop(&message) {
                cluster.lost.push(message);
            } else {
                let _ = cluster.deliver(message);
            }
        }
    }
}

#[test]
fn compaction_keeps_the_log_consistent() {
    // Reference: Raft §7 — "each server takes snapshots independently, covering
    // just the committed entries in its log"; the log keeps the last included
    // index and term for the consistency check of the entry after it.
    let mut cluster = cluster_with(ElectionMode::Raft, 64, 10);
    let leader = cluster.node_mut(1);
    let applied = leader.log().applied();
    assert_eq!(applied, 11, "the no-op and ten commands");
    let term = leader.log().term_at(8).expect("present");
    let kept: Vec<Entry> = leader.log().all()[8..].to_vec();

    assert_eq!(
        leader.compact(applied + 1, b"too far".to_vec()),
        Err(CompactError::BeyondApplied { upto_index: applied + 1, applied })
    );
    let snapshot = leader.compact(8, b"state at 8".to_vec()).expect("compact");
    assert_eq!(snapshot.meta, meta(8, term, None));
    assert_eq!(&*snapshot.data, b"state at 8");
    assert_eq!(leader.compact(8, Vec::new()), Err(CompactError::NotNewer { upto_index: 8, snapshot_index: 8 }));
    assert_eq!(leader.compact(5, Vec::new()), Err(CompactError::NotNewer { upto_index: 5, snapshot_index: 8 }));

    let log = leader.log();
    assert_eq!((log.first_index(), log.last_index(), log.committed(), log.applied()), (9, 11, 11, 11));
    assert_eq!(log.term_at(8), Some(term), "the snapshot's last term answers for index 8");
    assert_eq!(log.term_at(7), None, "below it, compacted");
    assert!(log.is_compacted(7) && !log.is_compacted(8));
    assert_eq!(log.entry(8), None);
    assert_eq!(log.all(), kept.as_slice());
    assert_eq!(leader.status().snapshot_index, 8);
    leader.validate().expect("invariants hold");

    // Replication goes on from the compacted log.
    let index = cluster.propose(1, b"after");
    cluster.deliver_all();
    for id in VOTERS {
        assert_eq!(cluster.node(id).log().term_at(index), cluster.node(1).log().term_at(index));
    }
    assert_eq!(cluster.node(1).log().committed(), index);
}

#[test]
fn a_node_restarts_from_a_snapshot_and_its_suffix() {
    // Reference: Raft §7 — on restart a server loads its snapshot and replays
    // only the log entries after it.
    let suffix: Vec<Entry> = (6..=8).map(|index| entry(2, index)).collect();
    let snapshot = Snapshot::new(meta(5, 2, None), b"state at 5".to_vec());
    let restored =
        RestoredState { hard_state: hard_state(3, None, 7), entries: suffix.clone(), snapshot: Some(snapshot.clone()) };
    let mut node = node_from(config(1, &VOTERS), restored, 1);
    assert_eq!((node.log().first_index(), node.log().last_index()), (6, 8));
    assert_eq!((node.log().committed(), node.log().applied()), (7, 5), "the state machine starts from the snapshot");
    assert_eq!(node.snapshot(), Some(&snapshot), "kept to send to followers");
    let output = node.tick(1);
    assert_eq!(output.committed_entries, suffix[..2].to_vec(), "only the committed entries after the snapshot");

    // A persisted commit below the snapshot is raised to it: a snapshot only
    // covers committed entries.
    let restored =
        RestoredState { hard_state: hard_state(3, None, 2), entries: suffix.clone(), snapshot: Some(snapshot.clone()) };
    let node = node_from(config(1, &VOTERS), restored, 1);
    assert_eq!(node.log().committed(), 5);
}

#[test]
fn node_new_refuses_a_snapshot_inconsistent_with_the_rest() {
    let refuse = |restored: RestoredState, words: &str| {
        let error = Node::new(config(1, &VOTERS), restored, rng(1), 0).expect_err("refused");
        let StartError::Restore(reason) = &error else { panic!("expected a restore error, got {error:?}") };
        assert!(reason.contains(words), "{reason:?} does not say {words:?}");
    };
    let good = || RestoredState {
        hard_state: hard_state(3, None, 5),
        entries: vec![entry(2, 6)],
        snapshot: Some(Snapshot::new(meta(5, 2, None), Vec::new())),
    };
    Node::new(config(1, &VOTERS), good(), rng(1), 0).expect("the good state starts");
    let with_meta = |meta: SnapshotMeta| RestoredState { snapshot: Some(Snapshot::new(meta, Vec::new())), ..good() };

    refuse(RestoredState { entries: vec![entry(2, 7)], ..good() }, "starts at index 7 (it must start at 6)");
    refuse(RestoredState { entries: vec![entry(1, 6)], ..good() }, "entry 6 has term 1 after term 2");
    refuse(with_meta(meta(5, 4, None)), "beyond the persisted term 3");
    let mut no_voter = conclave_core::Membership::bootstrap(&[1], &Default::default());
    no_voter.members.get_mut(&1).unwrap().voter = false;
    refuse(with_meta(SnapshotMeta { membership: no_voter, ..meta(5, 2, None) }), "has no voter");
    refuse(with_meta(meta(0, 0, None)), "covers at least entry 1");
    let beyond = LeaderTermRecord { leader_term: 1, leader: 2, ballot: 2, index: 6 };
    refuse(with_meta(meta(5, 2, Some(beyond))), "impossible last BecomeLeader");
    // Leader terms continue from the snapshot's record.
    let record = LeaderTermRecord { leader_term: 3, leader: 2, ballot: 2, index: 4 };
    let wrong_next = Entry { term: 3, index: 6, payload: Payload::BecomeLeader { leader_term: 5, leader: 1 } };
    let mut gapless = config(1, &VOTERS);
    gapless.election_mode = ElectionMode::Gapless;
    let restored = RestoredState {
        entries: vec![wrong_next],
        snapshot: Some(Snapshot::new(meta(5, 2, Some(record)), Vec::new())),
        ..good()
    };
    let error = Node::new(gapless, restored, rng(1), 0).expect_err("refused");
    assert!(error.to_string().contains("leader term 5, expected 4"), "{error}");
}

#[test]
fn a_lagging_follower_catches_up_through_install_snapshot_after_the_leader_compacted() {
    // Reference: Raft §7 — "the leader must occasionally send snapshots to
    // followers that lag behind ... when it has already discarded the next log
    // entry that it needs to send to a follower".
    let mut cluster = cluster_with(ElectionMode::Raft, 16, 2);
    cluster.isolated.insert(3);
    for command in 0..20 {
        cluster.propose(1, format!("while 3 is away {command}").as_bytes());
    }
    cluster.deliver_all();
    let applied = cluster.node(1).log().applied();
    assert_eq!(applied, 23, "nodes 1 and 2 commit without node 3");
    let data = state_bytes(100);
    let snapshot = cluster.node_mut(1).compact(applied, data.clone()).expect("compact");
    assert!(cluster.node(3).log().last_index() < cluster.node(1).log().first_index(), "node 3 needs compacted entries");

    cluster.isolated.clear();
    let now = cluster.now_ms + 10 * HEARTBEAT_MS;
    cluster.run_until(now, HEARTBEAT_MS / 5);

    let installed = &cluster.installed[&3];
    assert_eq!(installed.len(), 1, "installed once");
    assert_eq!(installed[0], snapshot, "the leader's snapshot, byte for byte");
    let chunks = install_chunks(&cluster, 3);
    assert_eq!(chunks.len(), 7, "100 bytes in chunks of 16: {chunks:?}");
    assert!(chunks.iter().all(|(_, len, _)| *len <= 16));
    assert_eq!(chunks.last(), Some(&(96, 4, true)));
    let follower = cluster.node(3);
    assert_eq!((follower.log().first_index(), follower.log().committed()), (24, 23));
    assert_eq!(cluster.node(1).status().followers[&3].match_index, 23);

    // And it follows the log from there like any follower.
    let index = cluster.propose(1, b"after the snapshot");
    cluster.deliver_all();
    assert_eq!(cluster.node(3).log().entry(index), cluster.node(1).log().entry(index));
    assert_eq!(cluster.applied[&3].last().map(|entry| entry.index), Some(index - 1));
    let now = cluster.now_ms + HEARTBEAT_MS;
    cluster.run_until(now, HEARTBEAT_MS);
    assert_eq!(cluster.applied[&3].last(), cluster.node(1).log().entry(index));
}

#[test]
fn a_lost_chunk_is_resent_at_the_next_heartbeat() {
    // Reference: Raft §7 with the heartbeat retransmission of docs/decisions/0033-snapshots-in-the-core.md: no
    // timer per message; the follower's answer says where to continue.
    let mut cluster = cluster_with(ElectionMode::Raft, 16, 2);
    let (snapshot, applied) = leave_node_3_behind(&mut cluster, 10, 64);
    let mut dropped = 0;
    run_dropping(&mut cluster, 10 * HEARTBEAT_MS, |message| {
        let lose = dropped == 0 && matches!(message.body, Body::InstallSnapshot { offset: 32, .. });
        dropped += u32::from(lose);
        lose
    });
    assert_eq!(dropped, 1, "the chunk at offset 32 was lost once");
    assert_eq!(cluster.installed[&3], vec![snapshot]);
    let offsets: Vec<u64> = install_chunks(&cluster, 3).iter().map(|(offset, _, _)| *offset).collect();
    assert_eq!(offsets.iter().filter(|offset| **offset == 32).count(), 1, "delivered once after the loss");
    assert_eq!(cluster.node(3).log().committed(), applied);
    // Heartbeats kept flowing to node 3 during the transfer: it never campaigned.
    assert_eq!(cluster.node(3).role(), Role::Follower);
    assert_eq!(cluster.node(1).role(), Role::Leader);
}

/// Runs the cluster for ten heartbeats, delivering everything, and restarts
/// node 3 from its disk once it took the snapshot chunk at offset 48 (in this
/// harness every batch is durable at once: its log and hard state; what its
/// driver staged is lost with the process). Returns whether it restarted.
fn run_restarting_node_3_at_chunk_48(cluster: &mut Cluster) -> bool {
    let mut restarted = false;
    let end_ms = cluster.now_ms + 10 * HEARTBEAT_MS;
    while cluster.now_ms < end_ms {
        let now = cluster.now_ms + HEARTBEAT_MS / 5;
        cluster.tick_all(now);
        while let Some(message) = cluster.queue.pop_front() {
            let at_48 = message.to == 3 && matches!(message.body, Body::InstallSnapshot { offset: 48, .. });
            let _ = cluster.deliver(message);
            if at_48 && !restarted {
                restarted = true;
                assert!(!cluster.installed.contains_key(&3), "the transfer is under way");
                let node = cluster.node(3);
                let status = node.status();
                let restored = RestoredState {
                    hard_state: conclave_core::HardState {
                        term: status.term,
                        voted_for: status.voted_for,
                        commit: status.commit,
                    },
                    entries: node.log().all().to_vec(),
                    snapshot: node.snapshot().cloned(),
                };
                let config = node.config().clone();
                cluster.nodes.insert(3, node_at(config, restored, 99, cluster.now_ms));
                cluster.applied.remove(&3); // Its state machine starts over too.
                cluster.staged.remove(&3);
            }
        }
    }
    restarted
}

#[test]
fn a_follower_that_restarts_mid_transfer_gets_the_snapshot_from_the_start() {
    // Reference: Raft §7 — the partial snapshot is volatile; the follower's
    // answer (0 bytes held) makes the leader start over.
    let mut cluster = cluster_with(ElectionMode::Raft, 16, 2);
    // 16 chunks: more than one window, so the transfer is still going when
    // node 3 restarts.
    let (snapshot, applied) = leave_node_3_behind(&mut cluster, 10, 256);
    let restarted = run_restarting_node_3_at_chunk_48(&mut cluster);
    assert!(restarted, "the transfer reached 48 bytes");
    assert_eq!(cluster.installed[&3], vec![snapshot], "installed whole, once");
    let offsets: Vec<u64> = install_chunks(&cluster, 3).iter().map(|(offset, _, _)| *offset).collect();
    let restart_at = offsets.iter().position(|offset| *offset == 48).expect("the chunk at 48 went to the old node");
    let again =
        offsets[restart_at..].iter().position(|offset| *offset == 0).expect("the leader starts over: {offsets:?}");
    let pass: Vec<u64> = offsets[restart_at + again..].to_vec();
    assert_eq!(pass, (0..16).map(|chunk| chunk * 16).collect::<Vec<u64>>(), "a whole pass from byte 0: {offsets:?}");
    assert_eq!(cluster.node(3).log().committed(), applied);
}

#[test]
fn leader_terms_survive_compaction_in_gapless_mode() {
    // Reference: docs/design/leader-terms.md — leader_term = (leader term of the last
    // BecomeLeader in the candidate's own log) + 1; the snapshot's metadata
    // carries that BecomeLeader once the entry itself is compacted.
    let mut cluster = cluster_with(ElectionMode::Gapless, 64, 5);
    let first = LeaderTermRecord { leader_term: 1, leader: 1, ballot: cluster.node(1).term(), index: 1 };
    for id in VOTERS {
        let node = cluster.node_mut(id);
        let applied = node.log().applied();
        assert_eq!(applied, 6, "node {id} applied the BecomeLeader and five commands");
        let snapshot = node.compact(applied, b"six".to_vec()).expect("compact");
        assert_eq!(snapshot.meta.last_leader_term, Some(first), "node {id}'s snapshot keeps the BecomeLeader");
        assert!(node.log().all().iter().all(|entry| entry.leader_term_record().is_none()), "compacted away");
        assert_eq!(node.status().leader_term, Some(1), "the established leader term survives");
        assert_eq!(node.status().leader_term_in_log, Some(1));
    }
    // Node 1 goes away; the next leader's BecomeLeader is leader term 2.
    cluster.isolated.insert(1);
    let now = cluster.now_ms + 6 * ELECTION_TIMEOUT_MS;
    cluster.run_until(now, HEARTBEAT_MS / 5);
    let leaders: Vec<NodeId> = cluster.leaders().into_iter().filter(|id| *id != 1).collect();
    assert_eq!(leaders.len(), 1, "one of nodes 2 and 3 leads: {leaders:?}");
    let leader = cluster.node(leaders[0]);
    assert!(leader.is_serving());
    let record = leader.log().all().iter().find_map(Entry::leader_term_record).expect("its BecomeLeader");
    assert_eq!((record.leader_term, record.leader), (2, leaders[0]), "last + 1 with the last only in the snapshot");

    // A node restarted from the snapshot alone knows the leader term too.
    let restored = RestoredState {
        hard_state: hard_state(first.ballot, None, 6),
        entries: Vec::new(),
        snapshot: Some(Snapshot::new(meta(6, first.ballot, Some(first)), b"six".to_vec())),
    };
    let mut gapless: Config = config(1, &VOTERS);
    gapless.election_mode = ElectionMode::Gapless;
    let mut node = node_from(gapless, restored, 1);
    assert_eq!(node.status().leader_term, Some(1));
    let _ = elect_alone(&mut node);
    let own = node.log().all().last().and_then(Entry::leader_term_record).expect("BecomeLeader");
    assert_eq!((own.leader_term, own.index), (2, 7));
}

#[test]
fn a_transfer_finishes_with_its_snapshot_when_the_leader_compacts_again() {
    // Reference: docs/decisions/0033-snapshots-in-the-core.md — restarting a transfer with every newer
    // snapshot could keep a slow follower from ever finishing (simulator seed 66).
    let mut cluster = cluster_with(ElectionMode::Raft, 16, 2);
    cluster.isolated.insert(3);
    for command in 0..10 {
        cluster.propose(1, format!("c{command}").as_bytes());
    }
    cluster.deliver_all();
    let first_index = cluster.node(1).log().applied();
    let first = cluster.node_mut(1).compact(first_index, state_bytes(64)).expect("compact");
    let mut compacted_again = None;

    cluster.isolated.clear();
    let end_ms = cluster.now_ms + 20 * HEARTBEAT_MS;
    while cluster.now_ms < end_ms {
        let now = cluster.now_ms + HEARTBEAT_MS / 5;
        cluster.tick_all(now);
        while let Some(message) = cluster.queue.pop_front() {
            let halfway = matches!(message.body, Body::SnapshotResponse { received_bytes: 32, .. });
            let _ = cluster.deliver(message);
            if halfway && compacted_again.is_none() {
                // Nodes 1 and 2 commit two more entries without node 3 (its next
                // chunk is lost with them), and node 1 compacts them too.
                cluster.isolated.insert(3);
                cluster.propose(1, b"more");
                cluster.propose(1, b"and more");
                cluster.deliver_all();
                cluster.isolated.clear();
                let applied = cluster.node(1).log().applied();
                compacted_again = Some(cluster.node_mut(1).compact(applied, state_bytes(40)).expect("compact again"));
            }
        }
    }
    let second = compacted_again.expect("the transfer reached 32 bytes");
    assert_eq!(cluster.installed[&3], vec![first, second.clone()], "the first transfer finished, then the newer one");
    assert_eq!(cluster.node(3).log().committed(), second.meta.last_included_index);
}

#[test]
fn a_transfer_keeps_a_window_of_chunks_in_flight_not_one() {
    // Reference: docs/decisions/0034-snapshot-chunk-window.md — stop-and-wait moved
    // one chunk per round trip, too slow for a follower to catch up while the
    // leader compacts (simulator seed 271). The leader keeps up to
    // MAX_INFLIGHT_CHUNKS unanswered chunks, sends more as answers come, and
    // never more than the window.
    let mut cluster = cluster_with(ElectionMode::Raft, 16, 2);
    // 20 chunks: two and a half windows.
    let (snapshot, applied) = leave_node_3_behind(&mut cluster, 10, 320);

    // The next heartbeat finds node 3 behind the log's start: the transfer
    // starts with a whole window in one batch, before any answer; each answer
    // then slides the window, never beyond MAX_INFLIGHT_CHUNKS unanswered.
    assert_eq!(MAX_INFLIGHT_CHUNKS, 8, "the window docs/decisions/0034 gives");
    let window = MAX_INFLIGHT_CHUNKS as usize;
    let now = cluster.now_ms + HEARTBEAT_MS;
    cluster.tick_all(now);
    let queued: Vec<u64> = cluster
        .queue
        .iter()
        .filter_map(|message| match message.body {
            Body::InstallSnapshot { offset, .. } if message.to == 3 => Some(offset),
            _ => None,
        })
        .collect();
    let (mut sent, mut answered, mut most_unanswered) = (queued.len(), 0usize, queued.len());
    let mut first_batch = Some(queued).filter(|chunks| !chunks.is_empty());
    let mut budget = 10_000;
    while let Some(message) = cluster.queue.pop_front() {
        budget -= 1;
        assert!(budget > 0, "the transfer ends");
        let answer = message.to == 1 && matches!(message.body, Body::SnapshotResponse { installed: false, .. });
        let output = cluster.deliver(message).expect("no link is cut");
        answered += usize::from(answer);
        let chunks: Vec<u64> = output
            .messages
            .iter()
            .filter_map(|out| match out.body {
                Body::InstallSnapshot { offset, .. } if out.to == 3 => Some(offset),
                _ => None,
            })
            .collect();
        if first_batch.is_none() && !chunks.is_empty() {
            first_batch = Some(chunks.clone());
        }
        sent += chunks.len();
        most_unanswered = most_unanswered.max(sent - answered);
    }
    let first_batch = first_batch.expect("the transfer started");
    assert_eq!(first_batch, (0..window as u64).map(|chunk| chunk * 16).collect::<Vec<u64>>(), "a full window at once");
    assert_eq!(most_unanswered, window, "the window fills and never overflows");
    assert_eq!(cluster.installed[&3], vec![snapshot], "installed whole, once");
    let offsets: Vec<u64> = install_chunks(&cluster, 3).iter().map(|(offset, _, _)| *offset).collect();
    assert_eq!(offsets, (0..20).map(|chunk| chunk * 16).collect::<Vec<u64>>(), "each chunk once, in order");
    assert_eq!(cluster.node(3).log().committed(), applied);
}

#[test]
fn snapshot_data_replaced_by_the_saved_copy_is_what_a_transfer_sends() {
    // The driver hands back a saved snapshot's bytes from where they now
    // live (`Node::replace_snapshot_data`): the core keeps those, also for a
    // transfer already under way, and refuses a length or index that is not
    // its snapshot's.
    let mut cluster = cluster_with(ElectionMode::Raft, 16, 2);
    cluster.isolated.insert(3);
    for command in 0..20 {
        cluster.propose(1, format!("while 3 is away {command}").as_bytes());
    }
    cluster.deliver_all();
    let applied = cluster.node(1).log().applied();
    let data = state_bytes(100);
    let snapshot = cluster.node_mut(1).compact(applied, data.clone()).expect("compact");
    let leader = cluster.node_mut(1);
    assert!(!leader.replace_snapshot_data(applied - 1, data.clone().into()), "not its snapshot's index");
    let saved = bytes::Bytes::from(data.clone());
    assert!(leader.replace_snapshot_data(applied, saved.clone()));
    assert_eq!(leader.snapshot().map(|held| held.data.as_ptr()), Some(saved.as_ptr()), "the saved bytes are held");

    cluster.isolated.clear();
    let now = cluster.now_ms + 10 * HEARTBEAT_MS;
    cluster.run_until(now, HEARTBEAT_MS / 5);
    assert_eq!(cluster.installed[&3], vec![snapshot], "the same snapshot arrives");
}

#[test]
#[should_panic(expected = "the bytes of the same snapshot")]
fn snapshot_data_of_another_length_is_refused() {
    let mut cluster = cluster_with(ElectionMode::Raft, 16, 2);
    cluster.deliver_all();
    let applied = cluster.node(1).log().applied();
    cluster.node_mut(1).compact(applied, state_bytes(100)).expect("compact");
    cluster.node_mut(1).replace_snapshot_data(applied, state_bytes(99).into());
}

/// Ticks the leader at each heartbeat for `beats` heartbeats, delivering every
/// message, and says whether any of its outputs asked for a snapshot.
fn heartbeats_asking(cluster: &mut Cluster, leader: NodeId, beats: u64) -> bool {
    let mut asked = false;
    for _ in 0..beats {
        let now = cluster.now_ms + HEARTBEAT_MS;
        asked |= cluster.tick(leader, now).snapshot_wanted;
        cluster.tick_all(now);
        while let Some((_, output)) = cluster.deliver_one() {
            asked |= output.is_some_and(|output| output.snapshot_wanted);
        }
    }
    asked
}

#[test]
fn a_log_compacted_without_bytes_asks_for_a_snapshot_and_sends_the_one_offered() {
    // Reference: docs/decisions/0086 — a state machine durable on its own
    // compacts the log without encoding anything; a follower that needs the
    // compacted entries gets a snapshot made on demand, at the applied index
    // of its making, above the log's base.
    let mut cluster = cluster_with(ElectionMode::Gapless, 16, 2);
    cluster.isolated.insert(3);
    for command in 0..20 {
        cluster.propose(1, format!("while 3 is away {command}").as_bytes());
    }
    cluster.deliver_all();
    let base = cluster.node(1).log().applied();
    let compacted = cluster.node_mut(1).compact_log(base).expect("compact");
    assert!(compacted.data.is_empty(), "nothing is encoded");
    assert_eq!(cluster.node(1).snapshot(), None, "no bytes to send are held");
    assert_eq!(cluster.node(1).log().first_index(), base + 1);
    assert!(cluster.node_mut(1).offer_snapshot(base - 1, state_bytes(10)).is_none(), "below the base: cannot serve");
    assert!(cluster.node_mut(1).offer_snapshot(base, Vec::new()).is_none(), "a snapshot has bytes");

    cluster.isolated.clear();
    assert!(heartbeats_asking(&mut cluster, 1, 3), "the leader asks its driver for a snapshot");
    assert!(cluster.node(3).log().last_index() < base, "node 3 waits for it");
    assert!(heartbeats_asking(&mut cluster, 1, 3), "and asks again while the need lasts and the follower answers");

    // Meanwhile the cluster commits more; the driver's snapshot holds the state
    // at a later applied index than the base.
    let later = cluster.propose(1, b"while the snapshot is made");
    cluster.deliver_all();
    assert_eq!(cluster.node(1).log().applied(), later);
    assert!(cluster.node_mut(1).offer_snapshot(later + 1, state_bytes(10)).is_none(), "beyond the applied index");
    let data = state_bytes(100);
    let output = cluster.node_mut(1).offer_snapshot(later, data.clone()).expect("offered");
    assert!(
        output.messages.iter().any(|message| message.to == 3 && matches!(message.body, Body::InstallSnapshot { .. })),
        "the transfer starts at once"
    );
    let _ = cluster.absorb(1, output);
    let kept = cluster.node(1).snapshot().expect("kept to send").clone();
    let record = cluster.node(1).committed_leader_term();
    assert_eq!(kept.meta.last_leader_term, record, "the leader term as of that index");
    assert_eq!(kept.meta.last_included_term, cluster.node(1).log().term_at(later).unwrap());
    assert!(cluster.node_mut(1).offer_snapshot(later, data.clone()).is_none(), "one as new is held");
    cluster.deliver_all();

    let installed = &cluster.installed[&3];
    assert_eq!(installed.len(), 1, "installed once");
    assert_eq!(installed[0], kept, "the offered snapshot, byte for byte");
    assert_eq!(cluster.node(3).log().committed(), later);
    let index = cluster.propose(1, b"after the snapshot");
    cluster.deliver_all();
    assert_eq!(cluster.node(3).log().entry(index), cluster.node(1).log().entry(index));
    assert!(!heartbeats_asking(&mut cluster, 1, 2), "no more asking once the follower caught up");
    for id in VOTERS {
        cluster.node(id).validate().expect("invariants hold");
    }
}

#[test]
fn compacting_without_bytes_past_an_offered_snapshot_drops_it() {
    let mut cluster = cluster_with(ElectionMode::Raft, 16, 6);
    let leader = cluster.node_mut(1);
    let applied = leader.log().applied();
    leader.compact_log(3).expect("compact");
    assert!(leader.offer_snapshot(5, state_bytes(40)).is_some());
    leader.compact_log(4).expect("compact below the offered snapshot");
    assert_eq!(leader.snapshot().map(|kept| kept.meta.last_included_index), Some(5), "still reaches the base");
    leader.compact_log(applied).expect("compact past it");
    assert_eq!(leader.snapshot(), None, "it no longer continues the log");
    leader.validate().expect("invariants hold");
}

#[test]
fn a_node_restarts_from_a_snapshot_without_bytes() {
    // The storage holds only the log's base; the state machine holds the data.
    let suffix: Vec<Entry> = (6..=8).map(|index| entry(2, index)).collect();
    let restored = RestoredState {
        hard_state: hard_state(2, None, 8),
        entries: suffix.clone(),
        snapshot: Some(Snapshot::new(meta(5, 2, None), Vec::new())),
    };
    let mut node = node_from(config(1, &VOTERS), restored, 1);
    assert_eq!(node.snapshot(), None, "nothing to send");
    assert_eq!(node.snapshot_meta(), Some(&meta(5, 2, None)));
    assert_eq!((node.log().first_index(), node.log().last_index()), (6, 8));
    let _ = elect_alone(&mut node);
    // A follower that has nothing: the leader asks for a snapshot.
    let term = node.term();
    // Its first append to node 2 went after index 8; node 2 has nothing.
    let output = node.step(msg(2, 1, term, rejected(8, 0)));
    assert!(output.snapshot_wanted, "{output:?}");
    node.validate().expect("invariants hold");
}

/// [`cluster_with`] in `raft` mode, every node staging the chunks of a
/// leader's snapshot in its driver (`Config::stage_snapshot_chunks`).
fn staging_cluster(chunk_bytes: usize, commands: u64) -> Cluster {
    cluster_configured(chunk_bytes, commands, |config| config.stage_snapshot_chunks = true)
}

#[test]
fn a_follower_staging_chunks_hands_each_to_its_driver_once_and_installs_without_bytes() {
    // docs/decisions/0090: a snapshot as large as the state machine never sits
    // in the follower's memory; the core only counts what arrived.
    let mut cluster = staging_cluster(16, 2);
    let (snapshot, applied) = leave_node_3_behind(&mut cluster, 10, 100);
    // One chunk lost: the chunks behind it arrive out of order and again when
    // the window is resent, and none reaches the driver twice or out of order.
    let mut dropped = 0;
    run_dropping(&mut cluster, 10 * HEARTBEAT_MS, |message| {
        let lose = dropped == 0 && matches!(message.body, Body::InstallSnapshot { offset: 32, .. });
        dropped += u32::from(lose);
        lose
    });
    assert_eq!(dropped, 1);
    // `Cluster::absorb` checks the order; the bytes staged are the leader's.
    assert_eq!(cluster.installed[&3], vec![snapshot]);
    let handed_out: usize = cluster
        .trace
        .iter()
        .filter(|(message, _)| message.to == 3)
        .flat_map(|(_, output)| output.snapshot_chunks.iter())
        .map(|chunk| chunk.data.len())
        .sum();
    assert_eq!(handed_out, 100, "each byte handed out once");
    let follower = cluster.node(3);
    assert_eq!(follower.log().committed(), applied);
    assert!(follower.snapshot().is_none(), "the follower keeps no bytes to send");
    // The leader still counts it caught up, and it follows the log from there.
    let index = cluster.propose(1, b"after the snapshot");
    cluster.deliver_all();
    assert_eq!(cluster.node(3).log().entry(index), cluster.node(1).log().entry(index));
}

#[test]
fn a_staging_follower_that_restarts_mid_transfer_stages_the_snapshot_again_from_byte_0() {
    let mut cluster = staging_cluster(16, 2);
    let (snapshot, applied) = leave_node_3_behind(&mut cluster, 10, 256);
    let restarted = run_restarting_node_3_at_chunk_48(&mut cluster);
    assert!(restarted);
    // Had the new core continued at 64, `Cluster::absorb` would have failed:
    // its driver holds nothing.
    assert_eq!(cluster.installed[&3], vec![snapshot]);
    assert_eq!(cluster.node(3).log().committed(), applied);
}

#[test]
fn the_compaction_floor_holds_the_log_for_a_follower_being_sent_a_snapshot_and_then_its_match() {
    let mut cluster = cluster_with(ElectionMode::Raft, 16, 2);
    let caught_up = cluster.node(1).log().applied();
    assert_eq!(cluster.node(1).compaction_floor(), Some(caught_up), "both followers hold everything");
    assert_eq!(cluster.node(2).compaction_floor(), None, "only a leader has one");
    cluster.isolated.insert(3);
    for command in 0..10 {
        cluster.propose(1, format!("c{command}").as_bytes());
    }
    cluster.deliver_all();
    let applied = cluster.node(1).log().applied();
    assert_eq!(cluster.node(1).compaction_floor(), Some(caught_up), "node 3 answered recently");
    // Rounds of CheckQuorum without node 3: it still holds the log back, so
    // that it resumes from the log when it is back; the driver's size bound
    // decides when to compact past it anyway, as here.
    let now = cluster.now_ms + 3 * ELECTION_TIMEOUT_MS;
    cluster.run_until(now, HEARTBEAT_MS);
    assert_eq!(cluster.node(1).compaction_floor(), Some(caught_up), "node 3, silent, holds the log");
    cluster.node_mut(1).compact(applied, state_bytes(256)).expect("compact");
    assert_eq!(cluster.node(1).compaction_floor(), Some(applied), "behind the log, node 3 holds nothing back");
    // Node 3 is back: while its snapshot travels, the floor is that snapshot.
    cluster.isolated.clear();
    let mut floors = Vec::new();
    let end_ms = cluster.now_ms + 10 * HEARTBEAT_MS;
    while cluster.now_ms < end_ms {
        let now = cluster.now_ms + HEARTBEAT_MS / 5;
        cluster.tick_all(now);
        while let Some(message) = cluster.queue.pop_front() {
            let _ = cluster.deliver(message);
            if !cluster.installed.contains_key(&3) && cluster.node(3).status().commit < applied {
                floors.push(cluster.node(1).compaction_floor());
            }
        }
    }
    assert!(floors.contains(&Some(applied)), "the floor was the snapshot's index during the transfer: {floors:?}");
    assert!(floors.iter().all(|floor| *floor <= Some(applied)));
    let last = cluster.node(1).log().last_index();
    assert_eq!(cluster.node(3).log().committed(), last, "node 3 caught up");
    assert_eq!(cluster.node(1).compaction_floor(), Some(last));
}

/// A 3.2 GB catch-up on a real cluster needed a second snapshot: right after
/// the first was installed the follower streamed the rest of the log, a
/// CheckQuorum round cleared its recent-activity flag, and a compaction in
/// the gap before its next answer cut the log it was reading.
#[test]
fn the_compaction_floor_holds_for_a_follower_heard_within_an_election_timeout_across_a_check_quorum_round() {
    let mut cluster = cluster_with(ElectionMode::Raft, 16, 2);
    cluster.isolated.insert(3);
    for command in 0..10 {
        cluster.propose(1, format!("c{command}").as_bytes());
    }
    cluster.deliver_all();
    let behind = cluster.node(3).log().last_index();
    assert!(behind < cluster.node(1).log().last_index(), "node 3 is behind");
    cluster.isolated.clear();
    // Node 3 answers one heartbeat and is heard; nothing else is delivered
    // for an election timeout, across the leader's next CheckQuorum round.
    let heard_at = cluster.now_ms + HEARTBEAT_MS;
    cluster.tick_all(heard_at);
    while let Some(message) = cluster.queue.pop_front() {
        let carries_entries = matches!(&message.body, Body::AppendEntries { entries, .. } if !entries.is_empty());
        if (message.to == 3 || message.from == 3) && !carries_entries {
            let _ = cluster.deliver(message);
        }
    }
    let floor = cluster.node(1).compaction_floor();
    assert!(floor.is_some_and(|floor| floor < cluster.node(1).log().last_index()), "node 3 holds the log: {floor:?}");
    for now in heard_at..=heard_at + ELECTION_TIMEOUT_MS {
        let _ = cluster.node_mut(1).tick(now);
        cluster.queue.clear();
        assert_eq!(cluster.node(1).compaction_floor(), floor, "at {now} ms");
    }
}
