//! One test per rule of the Raft paper (§5) and of PreVote / CheckQuorum
//! (Ongaro's thesis §6.2, §9.6). Each test names the rule it proves and asserts
//! the exact messages the node emits.

mod support;

use std::collections::BTreeSet;

use conclave_core::{
    Body, Config, DropReason, DurableMark, Entry, Event, LogWrite, Message, Node, NodeId, Output, ProposeError,
    RestoredState, Role,
};
use support::*;

const VOTERS: [NodeId; 3] = [1, 2, 3];

/// A restarted follower that boots one election timeout after node 1, so that
/// node 1 times out first.
fn restored(config: Config, hard: conclave_core::HardState, terms: &[u64], seed: u64) -> Node {
    let entries = log_with_terms(terms);
    node_at(config, RestoredState { hard_state: hard, entries, snapshot: None }, seed, ELECTION_TIMEOUT_MS)
}

/// What a batch that wrote up to `index` (of `term`) asks the driver to report.
fn mark(index: u64, term: u64, rewrites: u64) -> Option<DurableMark> {
    Some(DurableMark { index, term, rewrites, hard_state_term: term })
}

/// Output of a node that only adopted `hard_state` and sent `messages`.
fn persisted_and_sent(hard: conclave_core::HardState, messages: Vec<Message>) -> Output {
    Output { hard_state: Some(hard), messages, ..Output::default() }
}

// ---------------------------------------------------------------------------
// §5.1 Terms
// ---------------------------------------------------------------------------

#[test]
fn follower_adopts_higher_term_and_forgets_its_vote() {
    // Reference: Raft §5.1 — "If one server's current term is smaller than the
    // other's, then it updates its current term to the larger value." (Figure 2:
    // "If RPC request or response contains term T > currentTerm: set currentTerm =
    // T, convert to follower")
    let mut node = restored_node(config(1, &VOTERS), hard_state(2, Some(3), 0), &[], 1);
    let output = node.step(msg(2, 1, 5, heartbeat(0, 0, 0)));
    assert_eq!(
        output,
        Output {
            hard_state: Some(hard_state(5, None, 0)),
            messages: vec![msg(1, 2, 5, accepted(0))],
            events: vec![Event::LeaderChanged { leader: Some(2), term: 5 }],
            ..Output::default()
        }
    );
    assert_eq!((node.role(), node.term(), node.leader()), (Role::Follower, 5, Some(2)));
}

#[test]
fn candidate_reverts_to_follower_on_higher_term() {
    // Reference: Raft §5.1 — "If a candidate or leader discovers that its term is
    // out of date, it immediately reverts to follower state."
    let mut config = config(1, &VOTERS);
    config.pre_vote = false;
    let mut node = node_from(config, RestoredState::default(), 1);
    let _ = node.tick(node.next_deadline_ms());
    assert_eq!((node.role(), node.term()), (Role::Candidate, 1));

    let output = node.step(msg(2, 1, 3, vote(false)));
    assert_eq!(
        output,
        Output {
            hard_state: Some(hard_state(3, None, 0)),
            events: vec![Event::RoleChanged { from: Role::Candidate, to: Role::Follower, term: 3 }],
            ..Output::default()
        }
    );
    assert_eq!((node.role(), node.term()), (Role::Follower, 3));
}

#[test]
fn pre_candidate_reverts_to_follower_on_higher_term_append() {
    // Reference: Raft §5.1 — "If a candidate or leader discovers that its term is
    // out of date, it immediately reverts to follower state." (a pre-candidate,
    // thesis §9.6, is a follower that has not yet raised its term)
    let mut node = new_node(1, &VOTERS, 1);
    let _ = node.tick(node.next_deadline_ms());
    assert_eq!((node.role(), node.term()), (Role::PreCandidate, 0));

    let output = node.step(msg(3, 1, 2, heartbeat(0, 0, 0)));
    assert_eq!(
        output,
        Output {
            hard_state: Some(hard_state(2, None, 0)),
            messages: vec![msg(1, 3, 2, accepted(0))],
            events: vec![
                Event::RoleChanged { from: Role::PreCandidate, to: Role::Follower, term: 2 },
                Event::LeaderChanged { leader: Some(3), term: 2 },
            ],
            ..Output::default()
        }
    );
}

#[test]
fn leader_reverts_to_follower_on_higher_term_response() {
    // Reference: Raft §5.1 — "If a candidate or leader discovers that its term is
    // out of date, it immediately reverts to follower state."
    let mut node = new_node(1, &VOTERS, 1);
    let _ = elect_alone(&mut node);
    assert_eq!((node.role(), node.term()), (Role::Leader, 1));

    // Node 2 moved on to term 2 and refused the leader's stale append.
    let output = node.step(msg(2, 1, 2, rejected(0, 0)));
    assert_eq!(
        output,
        Output {
            hard_state: Some(hard_state(2, None, 0)),
            events: vec![
                Event::RoleChanged { from: Role::Leader, to: Role::Follower, term: 2 },
                Event::LeaderChanged { leader: None, term: 2 },
            ],
            ..Output::default()
        }
    );
    assert!(node.status().followers.is_empty(), "leader state is gone");
    assert_eq!(node.propose(b"x".to_vec()).unwrap_err(), ProposeError::NotLeader { leader: None });
}

#[test]
fn leader_without_check_quorum_reverts_to_follower_on_higher_term_vote_request() {
    // Reference: Raft §5.1 — "If a candidate or leader discovers that its term is
    // out of date, it immediately reverts to follower state." (Without CheckQuorum
    // there is no leader lease, so a higher-term RequestVote deposes the leader.)
    let mut config = config(1, &VOTERS);
    config.check_quorum = false;
    let mut node = node_from(config, RestoredState::default(), 1);
    let _ = elect_alone(&mut node);

    let output = node.step(msg(3, 1, 2, vote_request(1, 1)));
    assert_eq!(
        output,
        Output {
            hard_state: Some(hard_state(2, Some(3), 0)),
            messages: vec![msg(1, 3, 2, vote(true))],
            events: vec![
                Event::RoleChanged { from: Role::Leader, to: Role::Follower, term: 2 },
                Event::LeaderChanged { leader: None, term: 2 },
            ],
            ..Output::default()
        }
    );
}

#[test]
fn stale_append_entries_is_rejected_with_current_term() {
    // Reference: Raft §5.1 — "If a server receives a request with a stale term
    // number, it rejects the request." (Figure 2, AppendEntries receiver: "Reply
    // false if term < currentTerm"; the reply carries currentTerm)
    let mut node = restored_node(config(1, &VOTERS), hard_state(5, None, 0), &[1, 3, 3, 3], 1);
    let output = node.step(msg(2, 1, 3, append(4, 3, vec![entry(3, 5)], 4)));
    assert_eq!(output, only_messages(vec![msg(1, 2, 5, rejected(4, 3))]));
    assert_eq!(node.status().dropped.get(DropReason::StaleTerm), 1);
    assert_eq!((node.term(), node.leader(), log_terms(&node)), (5, None, vec![1, 3, 3, 3]));
    assert_eq!(node.status().commit, 0, "a stale leader commits nothing here");
}

#[test]
fn stale_vote_requests_are_rejected_with_current_term() {
    // Reference: Raft §5.1 — "If a server receives a request with a stale term
    // number, it rejects the request." (Figure 2, RequestVote receiver: "Reply
    // false if term < currentTerm")
    let mut node = restored_node(config(1, &VOTERS), hard_state(5, None, 0), &[], 1);
    let output = node.step(msg(2, 1, 4, vote_request(0, 0)));
    assert_eq!(output, only_messages(vec![msg(1, 2, 5, vote(false))]));
    let output = node.step(msg(3, 1, 3, pre_vote_request(0, 0)));
    assert_eq!(output, only_messages(vec![msg(1, 3, 5, pre_vote(false))]));
    assert_eq!(node.status().voted_for, None, "no vote was cast");
    assert_eq!(node.status().dropped.get(DropReason::StaleTerm), 2);
}

#[test]
fn stale_responses_are_ignored() {
    // Reference: Raft §5.1 — "Terms act as a logical clock in Raft, and they allow
    // servers to detect obsolete information such as stale leaders." A response
    // from an older term answers a round that is over: it is ignored.
    let mut config = config(1, &VOTERS);
    config.pre_vote = false;
    let mut candidate =
        node_from(config, RestoredState { hard_state: hard_state(3, None, 0), entries: vec![], snapshot: None }, 2);
    let _ = candidate.tick(candidate.next_deadline_ms());
    assert_eq!((candidate.role(), candidate.term()), (Role::Candidate, 4));
    // Votes granted in term 3 do not count towards term 4.
    assert_eq!(candidate.step(msg(2, 1, 3, vote(true))), Output::default());
    assert_eq!(candidate.step(msg(3, 1, 3, vote(true))), Output::default());
    assert_eq!(candidate.step(msg(3, 1, 3, accepted(0))), Output::default());
    assert_eq!(candidate.role(), Role::Candidate);
    assert_eq!(candidate.status().dropped.get(DropReason::StaleTerm), 3);
}

// ---------------------------------------------------------------------------
// §5.2 Leader election
// ---------------------------------------------------------------------------

#[test]
fn election_timeout_starts_a_pre_vote_round() {
    // Reference: Raft §5.2 — "If a follower receives no communication over a period
    // of time called the election timeout, then it assumes there is no viable
    // leader and begins an election"; thesis §9.6 — with PreVote it first asks
    // whether it could win, at the term it would campaign in, without raising its own.
    let mut node = new_node(1, &VOTERS, 1);
    let deadline = node.next_deadline_ms();
    assert_eq!(node.tick(deadline - 1), Output::default(), "nothing before the timeout");
    let output = node.tick(deadline);
    assert_eq!(
        output,
        Output {
            messages: vec![msg(1, 2, 1, pre_vote_request(0, 0)), msg(1, 3, 1, pre_vote_request(0, 0))],
            events: vec![
                Event::RoleChanged { from: Role::Follower, to: Role::PreCandidate, term: 0 },
                Event::ElectionStarted { term: 1, pre_vote: true },
            ],
            ..Output::default()
        }
    );
    assert_eq!((node.role(), node.term(), node.status().voted_for), (Role::PreCandidate, 0, None));
}

#[test]
fn candidate_increments_term_votes_for_itself_and_requests_votes_from_all() {
    // Reference: Raft §5.2 — "To begin an election, a follower increments its
    // current term and transitions to candidate state. It then votes for itself and
    // issues RequestVote RPCs in parallel to each of the other servers."
    let mut node = new_node(1, &VOTERS, 1);
    let _ = node.tick(node.next_deadline_ms());
    let output = node.step(msg(2, 1, 1, pre_vote(true)));
    assert_eq!(
        output,
        Output {
            hard_state: Some(hard_state(1, Some(1), 0)),
            messages: vec![msg(1, 2, 1, vote_request(0, 0)), msg(1, 3, 1, vote_request(0, 0))],
            events: vec![
                Event::RoleChanged { from: Role::PreCandidate, to: Role::Candidate, term: 1 },
                Event::ElectionStarted { term: 1, pre_vote: false },
            ],
            ..Output::default()
        }
    );

    // Without PreVote the timeout campaigns at once.
    let mut config = config(1, &VOTERS);
    config.pre_vote = false;
    let mut node = node_from(config, RestoredState::default(), 1);
    let output = node.tick(node.next_deadline_ms());
    assert_eq!(
        output,
        Output {
            hard_state: Some(hard_state(1, Some(1), 0)),
            messages: vec![msg(1, 2, 1, vote_request(0, 0)), msg(1, 3, 1, vote_request(0, 0))],
            events: vec![
                Event::RoleChanged { from: Role::Follower, to: Role::Candidate, term: 1 },
                Event::ElectionStarted { term: 1, pre_vote: false },
            ],
            ..Output::default()
        }
    );
}

#[test]
fn candidate_with_majority_becomes_leader_and_appends_a_noop() {
    // Reference: Raft §5.2 — "A candidate wins an election if it receives votes
    // from a majority of the servers in the full cluster for the same term ... Once
    // a candidate wins an election, it becomes leader. It then sends heartbeat
    // messages to all of the other servers"; §5.4.2/§8 — the new leader appends a
    // no-op entry of its own term.
    let mut cluster = Cluster::new(3, 10);
    let deadline = cluster.node(1).next_deadline_ms();
    let _ = cluster.tick(1, deadline);
    cluster.deliver_all();

    // Exchanges, in delivery order.
    let steps: Vec<(Message, Output)> = cluster.trace.clone();
    let find = |from: NodeId, to: NodeId, kind: &str| -> Output {
        steps
            .iter()
            .find(|(message, _)| message.from == from && message.to == to && message.body.kind() == kind)
            .unwrap_or_else(|| panic!("no {kind} from {from} to {to}"))
            .1
            .clone()
    };
    // A voter grants a pre-vote without changing anything.
    assert_eq!(find(1, 2, "PreVote"), only_messages(vec![msg(2, 1, 1, pre_vote(true))]));
    // A voter grants its vote and persists it before answering.
    assert_eq!(
        find(1, 2, "RequestVote"),
        persisted_and_sent(hard_state(1, Some(1), 0), vec![msg(2, 1, 1, vote(true))])
    );
    // The first granted vote makes a majority (1 and 2 of 3): node 1 leads and
    // sends its no-op to every follower.
    assert_eq!(
        find(2, 1, "VoteResponse"),
        Output {
            log_write: Some(LogWrite { first_index: 1, entries: vec![noop(1, 1)] }),
            durable_mark: mark(1, 1, 0),
            messages: vec![
                msg(1, 2, 1, append(0, 0, vec![noop(1, 1)], 0)),
                msg(1, 3, 1, append(0, 0, vec![noop(1, 1)], 0)),
            ],
            events: vec![
                Event::RoleChanged { from: Role::Candidate, to: Role::Leader, term: 1 },
                Event::LeaderChanged { leader: Some(1), term: 1 },
            ],
            ..Output::default()
        }
    );
    // The follower stores the no-op and learns the leader.
    assert_eq!(
        find(1, 2, "AppendEntries"),
        Output {
            log_write: Some(LogWrite { first_index: 1, entries: vec![noop(1, 1)] }),
            durable_mark: mark(1, 1, 0),
            messages: vec![msg(2, 1, 1, accepted(1))],
            events: vec![Event::LeaderChanged { leader: Some(1), term: 1 }],
            ..Output::default()
        }
    );
    assert_eq!(cluster.leaders(), vec![1]);
    assert_eq!(cluster.node(1).status().commit, 1);
    assert_eq!(cluster.applied[&1], vec![noop(1, 1)]);
}

#[test]
fn candidate_steps_down_on_append_entries_from_leader_of_same_term() {
    // Reference: Raft §5.2 — "While waiting for votes, a candidate may receive an
    // AppendEntries RPC from another server claiming to be leader. If the leader's
    // term ... is at least as large as the candidate's current term, then the
    // candidate recognizes the leader as legitimate and returns to follower state."
    let mut config = config(1, &VOTERS);
    config.pre_vote = false;
    let mut node = node_from(config, RestoredState::default(), 1);
    let _ = node.tick(node.next_deadline_ms());
    assert_eq!((node.role(), node.term()), (Role::Candidate, 1));

    let output = node.step(msg(2, 1, 1, append(0, 0, vec![noop(1, 1)], 0)));
    assert_eq!(
        output,
        Output {
            log_write: Some(LogWrite { first_index: 1, entries: vec![noop(1, 1)] }),
            durable_mark: mark(1, 1, 0),
            messages: vec![msg(1, 2, 1, accepted(1))],
            events: vec![
                Event::RoleChanged { from: Role::Candidate, to: Role::Follower, term: 1 },
                Event::LeaderChanged { leader: Some(2), term: 1 },
            ],
            ..Output::default()
        }
    );
    assert_eq!(node.status().voted_for, Some(1), "the vote of term 1 stands");
}

#[test]
fn candidate_that_loses_returns_to_follower() {
    // Reference: Raft §5.2 — "a candidate continues in this state until ... (b)
    // another server establishes itself as leader, or (c) a period of time goes by
    // with no winner." A majority of refusals means it cannot win this term.
    let mut config = config(1, &VOTERS);
    config.pre_vote = false;
    let mut node = node_from(config, RestoredState::default(), 1);
    let _ = node.tick(node.next_deadline_ms());
    assert_eq!(node.step(msg(2, 1, 1, vote(false))), Output::default());
    assert_eq!(node.role(), Role::Candidate, "one refusal of three is not a loss");
    let output = node.step(msg(3, 1, 1, vote(false)));
    assert_eq!(
        output,
        Output {
            events: vec![Event::RoleChanged { from: Role::Candidate, to: Role::Follower, term: 1 }],
            ..Output::default()
        }
    );
    assert_eq!((node.term(), node.status().voted_for), (1, Some(1)));
}

#[test]
fn split_vote_times_out_and_starts_a_new_election_with_a_higher_term() {
    // Reference: Raft §5.2 — "When this happens [split vote], each candidate will
    // time out and start a new election by incrementing its term and initiating
    // another round of RequestVote RPCs."
    let voters = [1, 2, 3, 4, 5];
    let mut config = config(1, &voters);
    config.pre_vote = false;
    let mut node = node_from(config, RestoredState::default(), 1);
    let _ = node.tick(node.next_deadline_ms());
    // 2 grants; 3 voted for 4, which campaigns too; 5 never answers: 2 of 5
    // granted and 2 refused, so nobody has a majority.
    assert_eq!(node.step(msg(2, 1, 1, vote(true))), Output::default());
    assert_eq!(node.step(msg(3, 1, 1, vote(false))), Output::default());
    assert_eq!(node.step(msg(4, 1, 1, vote(false))), Output::default());
    assert_eq!(node.role(), Role::Candidate, "split: neither won nor lost");

    let deadline = node.next_deadline_ms();
    assert_eq!(node.tick(deadline - 1), Output::default());
    let output = node.tick(deadline);
    assert_eq!(
        output,
        Output {
            hard_state: Some(hard_state(2, Some(1), 0)),
            messages: vec![
                msg(1, 2, 2, vote_request(0, 0)),
                msg(1, 3, 2, vote_request(0, 0)),
                msg(1, 4, 2, vote_request(0, 0)),
                msg(1, 5, 2, vote_request(0, 0)),
            ],
            events: vec![Event::ElectionStarted { term: 2, pre_vote: false }],
            ..Output::default()
        }
    );
    let new_deadline = node.next_deadline_ms();
    assert!((deadline + 250..deadline + 500).contains(&new_deadline), "a fresh randomized timeout");

    // With PreVote, the timed-out candidate first probes at the next term.
    let mut node = new_node(1, &voters, 1);
    let _ = node.tick(node.next_deadline_ms());
    for peer in [2, 3] {
        let _ = node.step(msg(peer, 1, 1, pre_vote(true)));
    }
    assert_eq!((node.role(), node.term()), (Role::Candidate, 1));
    let output = node.tick(node.next_deadline_ms());
    assert_eq!(
        output,
        Output {
            messages: vec![
                msg(1, 2, 2, pre_vote_request(0, 0)),
                msg(1, 3, 2, pre_vote_request(0, 0)),
                msg(1, 4, 2, pre_vote_request(0, 0)),
                msg(1, 5, 2, pre_vote_request(0, 0)),
            ],
            events: vec![
                Event::RoleChanged { from: Role::Candidate, to: Role::PreCandidate, term: 1 },
                Event::ElectionStarted { term: 2, pre_vote: true },
            ],
            ..Output::default()
        }
    );
    for peer in [2, 3] {
        let _ = node.step(msg(peer, 1, 2, pre_vote(true)));
    }
    assert_eq!((node.role(), node.term()), (Role::Candidate, 2));
}

#[test]
fn one_vote_per_term_first_come_first_served() {
    // Reference: Raft §5.2 — "Each server will vote for at most one candidate in a
    // given term, on a first-come-first-served basis." (Figure 2: "If votedFor is
    // null or candidateId ... grant vote")
    let mut node = new_node(1, &VOTERS, 1);
    let output = node.step(msg(2, 1, 1, vote_request(0, 0)));
    assert_eq!(output, persisted_and_sent(hard_state(1, Some(2), 0), vec![msg(1, 2, 1, vote(true))]));
    // A second candidate of the same term is refused.
    let output = node.step(msg(3, 1, 1, vote_request(0, 0)));
    assert_eq!(output, only_messages(vec![msg(1, 3, 1, vote(false))]));
    // A duplicated request from the chosen candidate gets the same answer.
    let output = node.step(msg(2, 1, 1, vote_request(0, 0)));
    assert_eq!(output, only_messages(vec![msg(1, 2, 1, vote(true))]));
    // The next term frees the vote.
    let output = node.step(msg(3, 1, 2, vote_request(0, 0)));
    assert_eq!(output, persisted_and_sent(hard_state(2, Some(3), 0), vec![msg(1, 3, 2, vote(true))]));

    // The vote is part of the persisted state: after a restart it still binds.
    let mut restarted = restored_node(config(1, &VOTERS), hard_state(2, Some(3), 0), &[], 2);
    let output = restarted.step(msg(2, 1, 2, vote_request(0, 0)));
    assert_eq!(output, only_messages(vec![msg(1, 2, 2, vote(false))]));
}

#[test]
fn randomized_election_timeout_lies_in_t_to_2t_and_differs_between_seeds() {
    // Reference: Raft §5.2 — "Raft uses randomized election timeouts to ensure that
    // split votes are rare ... election timeouts are chosen randomly from a fixed
    // interval (e.g., 150–300ms)." Here the interval is [T, 2T).
    const T: u64 = ELECTION_TIMEOUT_MS;
    let mut distinct = BTreeSet::new();
    for seed in 0..200 {
        let start = 1_000;
        let mut node = Node::new(config(1, &VOTERS), RestoredState::default(), rng(seed), start).unwrap();
        let first = node.next_deadline_ms() - start;
        assert!((T..2 * T).contains(&first), "seed {seed}: timeout {first} outside [T, 2T)");
        distinct.insert(first);
        // Every re-arm draws again from [T, 2T).
        let fired_at = node.next_deadline_ms();
        let _ = node.tick(fired_at);
        let second = node.next_deadline_ms() - fired_at;
        assert!((T..2 * T).contains(&second), "seed {seed}: timeout {second} outside [T, 2T)");
    }
    assert!(distinct.len() > 100, "200 seeds gave only {} distinct timeouts", distinct.len());
    let deadline = |seed| new_node(1, &VOTERS, seed).next_deadline_ms();
    assert_eq!(deadline(5), deadline(5), "the same seed gives the same timeout");
}

#[test]
fn leader_sends_heartbeats_every_heartbeat_interval() {
    // Reference: Raft §5.2 — "Leaders send periodic heartbeats (AppendEntries RPCs
    // that carry no log entries) to all followers in order to maintain their
    // authority."
    let mut cluster = Cluster::new(3, 10);
    cluster.elect(1);
    let elected_at = cluster.now_ms;
    for beat in 1..=6 {
        let due = elected_at + beat * HEARTBEAT_MS;
        assert_eq!(cluster.tick(1, due - 1), Output::default(), "no heartbeat before {due}");
        let output = cluster.tick(1, due);
        assert_eq!(
            output,
            only_messages(vec![msg(1, 2, 1, heartbeat(1, 1, 1)), msg(1, 3, 1, heartbeat(1, 1, 1))]),
            "heartbeat {beat}"
        );
        cluster.deliver_all();
    }
    // The followers learned the commit index from the heartbeats.
    assert_eq!(cluster.node(2).status().commit, 1);
    assert_eq!(cluster.node(3).status().commit, 1);
}

#[test]
fn followers_reset_their_election_timer_on_heartbeats() {
    // Reference: Raft §5.2 — "A server remains in follower state as long as it
    // receives valid RPCs from a leader or candidate."
    let mut cluster = Cluster::new(3, 10);
    cluster.elect(1);
    let until = cluster.now_ms + 20 * ELECTION_TIMEOUT_MS;
    cluster.run_until(until, 10);
    assert_eq!(cluster.leaders(), vec![1]);
    for id in [2, 3] {
        assert_eq!((cluster.node(id).role(), cluster.node(id).term()), (Role::Follower, 1));
    }
}

// ---------------------------------------------------------------------------
// §5.4.1 Election restriction
// ---------------------------------------------------------------------------

#[test]
fn voter_rejects_candidate_whose_last_term_is_older() {
    // Reference: Raft §5.4.1 — "If the logs have last entries with different
    // terms, then the log with the later term is more up-to-date ... the voter
    // denies its vote if its own log is more up-to-date than that of the candidate."
    let mut node = restored_node(config(1, &VOTERS), hard_state(2, None, 0), &[1, 1, 2], 1);
    // A longer log that ends in an older term loses.
    let output = node.step(msg(2, 1, 3, vote_request(1, 9)));
    assert_eq!(output, persisted_and_sent(hard_state(3, None, 0), vec![msg(1, 2, 3, vote(false))]));
    // A shorter log that ends in a newer term wins.
    let output = node.step(msg(3, 1, 3, vote_request(3, 1)));
    assert_eq!(output, persisted_and_sent(hard_state(3, Some(3), 0), vec![msg(1, 3, 3, vote(true))]));
}

#[test]
fn voter_rejects_candidate_whose_log_is_shorter_in_the_same_last_term() {
    // Reference: Raft §5.4.1 — "If the logs end with the same term, then whichever
    // log is longer is more up-to-date."
    let mut node = restored_node(config(1, &VOTERS), hard_state(2, None, 0), &[1, 1, 2], 1);
    let output = node.step(msg(2, 1, 3, vote_request(2, 2)));
    assert_eq!(output, persisted_and_sent(hard_state(3, None, 0), vec![msg(1, 2, 3, vote(false))]));
    // Equal logs are "at least as up-to-date".
    let output = node.step(msg(3, 1, 3, vote_request(2, 3)));
    assert_eq!(output, persisted_and_sent(hard_state(3, Some(3), 0), vec![msg(1, 3, 3, vote(true))]));
}

#[test]
fn pre_vote_applies_the_same_up_to_date_check() {
    // Reference: Raft §5.4.1 (as applied to PreVote, thesis §9.6) — "a server would
    // only grant a pre-vote if ... the candidate's log is at least as up-to-date".
    let mut node = restored_node(config(1, &VOTERS), hard_state(2, None, 0), &[1, 1, 2], 1);
    let output = node.step(msg(2, 1, 3, pre_vote_request(2, 2)));
    assert_eq!(output, only_messages(vec![msg(1, 2, 2, pre_vote(false))]), "refused at the voter's own term");
    let output = node.step(msg(2, 1, 3, pre_vote_request(2, 3)));
    assert_eq!(output, only_messages(vec![msg(1, 2, 3, pre_vote(true))]), "granted at the asked term");
    assert_eq!((node.term(), node.status().voted_for), (2, None));
}

// ---------------------------------------------------------------------------
// §5.3 Log replication
// ---------------------------------------------------------------------------

#[test]
fn follower_rejects_append_when_previous_entry_is_missing() {
    // Reference: Raft §5.3 — "If the follower does not find an entry in its log
    // with the same index and term, then it refuses the new entries." (Figure 2:
    // "Reply false if log doesn't contain an entry at prevLogIndex ...")
    let mut node = restored_node(config(2, &VOTERS), hard_state(1, None, 0), &[1, 1], 1);
    let output = node.step(msg(1, 2, 1, append(5, 1, vec![entry(1, 6)], 0)));
    assert_eq!(
        output,
        Output {
            messages: vec![msg(2, 1, 1, rejected(5, 2))],
            events: vec![Event::LeaderChanged { leader: Some(1), term: 1 }],
            ..Output::default()
        },
        "hint: everything after the follower's last index 2 is missing"
    );
    assert_eq!(log_terms(&node), vec![1, 1]);
}

#[test]
fn follower_rejects_append_when_previous_term_mismatches() {
    // Reference: Raft §5.3 — Figure 2: "Reply false if log doesn't contain an entry
    // at prevLogIndex whose term matches prevLogTerm".
    let mut node = restored_node(config(2, &VOTERS), hard_state(3, None, 0), &[1, 2, 3, 3], 1);
    let output = node.step(msg(1, 2, 4, append(4, 2, vec![entry(4, 5)], 0)));
    assert_eq!(
        output,
        Output {
            hard_state: Some(hard_state(4, None, 0)),
            // Entries of term 3 > 2 cannot match the leader's log at or below
            // its term-2 entry at index 4, so the hint skips them.
            messages: vec![msg(2, 1, 4, rejected(4, 2))],
            events: vec![Event::LeaderChanged { leader: Some(1), term: 4 }],
            ..Output::default()
        }
    );
    assert_eq!(log_terms(&node), vec![1, 2, 3, 3], "a rejected append changes no entry");
}

#[test]
fn follower_truncates_conflicting_suffix_and_appends_new_entries() {
    // Reference: Raft §5.3 — "If an existing entry conflicts with a new one (same
    // index but different terms), delete the existing entry and all that follow it
    // ... Append any new entries not already in the log".
    let mut node = restored_node(config(2, &VOTERS), hard_state(2, None, 0), &[1, 1, 2, 2], 1);
    let new = vec![entry(3, 3), entry(3, 4), entry(3, 5)];
    let output = node.step(msg(1, 2, 3, append(2, 1, new.clone(), 0)));
    assert_eq!(
        output,
        Output {
            hard_state: Some(hard_state(3, None, 0)),
            log_write: Some(LogWrite { first_index: 3, entries: new.clone() }),
            durable_mark: mark(5, 3, 1),
            messages: vec![msg(2, 1, 3, accepted(5))],
            events: vec![Event::LeaderChanged { leader: Some(1), term: 3 }],
            ..Output::default()
        }
    );
    assert_eq!(node.log().all(), [log_with_terms(&[1, 1]), new].concat());
}

#[test]
fn follower_appends_new_entries_after_a_matching_prefix() {
    // Reference: Raft §5.3 — Figure 2: "Append any new entries not already in the
    // log".
    let mut node = restored_node(config(2, &VOTERS), hard_state(1, None, 0), &[1, 1], 1);
    let output = node.step(msg(1, 2, 1, append(2, 1, vec![entry(1, 3), entry(1, 4)], 0)));
    assert_eq!(
        output,
        Output {
            log_write: Some(LogWrite { first_index: 3, entries: vec![entry(1, 3), entry(1, 4)] }),
            durable_mark: mark(4, 1, 0),
            messages: vec![msg(2, 1, 1, accepted(4))],
            events: vec![Event::LeaderChanged { leader: Some(1), term: 1 }],
            ..Output::default()
        }
    );
    assert_eq!(log_terms(&node), vec![1, 1, 1, 1]);
}

#[test]
fn duplicate_and_reordered_appends_are_idempotent() {
    // Reference: Raft §5.3 — only an entry that *conflicts* is deleted ("If an
    // existing entry conflicts with a new one ... delete the existing entry");
    // entries already present are kept, so a duplicated or delayed AppendEntries
    // changes nothing (§5.5: "Raft RPCs are idempotent").
    let mut node = restored_node(config(2, &VOTERS), hard_state(1, None, 0), &[1, 1], 1);
    let message = msg(1, 2, 1, append(2, 1, vec![entry(1, 3), entry(1, 4), entry(1, 5)], 0));
    let first = node.step(message.clone());
    assert!(first.log_write.is_some());
    let before = node.log().all().to_vec();

    let again = node.step(message);
    assert_eq!(again, only_messages(vec![msg(2, 1, 1, accepted(5))]), "a duplicate writes nothing");
    // An older, shorter append arriving late truncates nothing.
    let late = node.step(msg(1, 2, 1, append(2, 1, vec![entry(1, 3)], 0)));
    assert_eq!(late, only_messages(vec![msg(2, 1, 1, accepted(3))]), "match only what this message proves");
    assert_eq!(node.log().all(), before.as_slice());
}

#[test]
fn follower_commit_is_min_of_leader_commit_and_last_new_entry() {
    // Reference: Raft §5.3 — Figure 2: "If leaderCommit > commitIndex, set
    // commitIndex = min(leaderCommit, index of last new entry)".
    let mut node = restored_node(config(2, &VOTERS), hard_state(1, None, 0), &[1, 1, 1, 1, 1], 1);
    // The follower holds 5 entries, but this heartbeat proves only the first 2
    // are shared with the leader: commit 2, not 5.
    let output = node.step(msg(1, 2, 1, heartbeat(2, 1, 2)));
    assert_eq!(
        output,
        Output {
            hard_state: Some(hard_state(1, None, 2)),
            messages: vec![msg(2, 1, 1, accepted(2))],
            committed_entries: log_with_terms(&[1, 1]),
            events: vec![Event::LeaderChanged { leader: Some(1), term: 1 }],
            ..Output::default()
        }
    );
    // leaderCommit below the last new entry: commit leaderCommit.
    let output = node.step(msg(1, 2, 1, append(5, 1, vec![entry(1, 6)], 4)));
    assert_eq!(
        output,
        Output {
            hard_state: Some(hard_state(1, None, 4)),
            log_write: Some(LogWrite { first_index: 6, entries: vec![entry(1, 6)] }),
            durable_mark: mark(6, 1, 0),
            messages: vec![msg(2, 1, 1, accepted(6))],
            committed_entries: vec![entry(1, 3), entry(1, 4)],
            ..Output::default()
        }
    );
    // The commit index never moves back.
    let output = node.step(msg(1, 2, 1, heartbeat(1, 1, 1)));
    assert_eq!(output, only_messages(vec![msg(2, 1, 1, accepted(1))]));
    assert_eq!(node.status().commit, 4);
    // A leaderCommit beyond what the message carries is impossible and dropped.
    let output = node.step(msg(1, 2, 1, heartbeat(2, 1, 6)));
    assert_eq!(output, Output::default());
    assert_eq!(node.status().dropped.get(DropReason::ImpossibleFields), 1);
    let output = node.step(msg(1, 2, 1, heartbeat(6, 1, 6)));
    assert_eq!(
        output,
        Output {
            hard_state: Some(hard_state(1, None, 6)),
            messages: vec![msg(2, 1, 1, accepted(6))],
            committed_entries: vec![entry(1, 5), entry(1, 6)],
            ..Output::default()
        }
    );
}

#[test]
fn leader_backs_up_after_rejections_and_repairs_a_lagging_follower() {
    // Reference: Raft §5.3 — "After a rejection, the leader decrements nextIndex and
    // retries the AppendEntries RPC. Eventually nextIndex will reach a point where
    // the leader and follower logs match ... it removes any conflicting entries in
    // the follower's log and appends entries from the leader's log". The
    // follower's hint lets the leader skip a whole term at once (§5.3, final
    // paragraphs).
    let leader_log = [1, 1, 2, 2, 4, 4];
    let leader = restored_node(config(1, &VOTERS), hard_state(4, None, 0), &leader_log, 1);
    let follower = restored(config(2, &VOTERS), hard_state(4, None, 0), &[1, 1, 3, 3, 3], 2);
    // Node 3 is not simulated: node 1 needs node 2 for every majority.
    let mut cluster = Cluster::from_nodes(vec![(leader, 0), (follower, ELECTION_TIMEOUT_MS)]);
    cluster.elect(1);
    assert_eq!(cluster.node(1).term(), 5);

    let l = |index| cluster.node(1).log().entry(index).unwrap().clone();
    let (e3, e4, e5, e6, e7) = (l(3), l(4), l(5), l(6), l(7));
    assert_eq!(e7, noop(5, 7));
    let between: Vec<Message> = cluster
        .trace
        .iter()
        .map(|(message, _)| message.clone())
        .filter(|message| matches!(message.body, Body::AppendEntries { .. } | Body::AppendResponse { .. }))
        .collect();
    assert_eq!(
        between,
        vec![
            msg(1, 2, 5, append(6, 4, vec![e7.clone()], 0)),
            msg(2, 1, 5, rejected(6, 5)),
            msg(1, 2, 5, append(5, 4, vec![e6.clone(), e7.clone()], 0)),
            // The follower holds term 3 at index 5, where the leader has 4:
            // it skips the whole run of term 3 (entries 3..5) at once.
            msg(2, 1, 5, rejected(5, 2)),
            msg(1, 2, 5, append(2, 1, vec![e3, e4, e5, e6, e7], 0)),
            msg(2, 1, 5, accepted(7)),
        ]
    );
    assert_eq!(cluster.node(2).log().all(), cluster.node(1).log().all(), "logs agree");
    assert_eq!(cluster.node(1).status().commit, 7);
    // The next heartbeat carries the commit index to the follower.
    let due = cluster.node(1).next_deadline_ms();
    let output = cluster.tick(1, due);
    assert_eq!(
        output.messages,
        // n3 is still probing: its heartbeat is the probe, without entries.
        vec![msg(1, 2, 5, heartbeat(7, 5, 7)), msg(1, 3, 5, heartbeat(6, 4, 6))]
    );
    cluster.deliver_all();
    assert_eq!(cluster.node(2).status().commit, 7);
    assert_eq!(cluster.applied[&2], cluster.node(1).log().all());
}

#[test]
fn leader_commits_an_entry_of_its_term_once_a_majority_stores_it() {
    // Reference: Raft §5.3 — "A log entry is committed once the leader that created
    // the entry has replicated it on a majority of the servers". (Figure 2: "If
    // there exists an N such that N > commitIndex, a majority of matchIndex[i] ≥ N,
    // and log[N].term == currentTerm: set commitIndex = N")
    let mut cluster = Cluster::new(5, 20);
    cluster.elect(1);
    assert_eq!(cluster.node(1).status().commit, 1);

    let proposal = cluster.node_mut(1).propose(b"x".to_vec()).unwrap();
    let e2 = conclave_core::Entry { term: 1, index: 2, payload: conclave_core::Payload::Command(b"x".to_vec().into()) };
    assert_eq!((proposal.index, proposal.term), (2, 1));
    assert_eq!(
        proposal.output,
        Output {
            log_write: Some(LogWrite { first_index: 2, entries: vec![e2.clone()] }),
            durable_mark: mark(2, 1, 0),
            messages: (2..=5).map(|to| msg(1, to, 1, append(1, 1, vec![e2.clone()], 1))).collect(),
            ..Output::default()
        }
    );
    let mut follower_outputs = Vec::new();
    for message in proposal.output.messages {
        let to = message.to;
        let output = cluster.node_mut(to).step(message);
        assert_eq!(output.messages, vec![msg(to, 1, 1, accepted(2))]);
        follower_outputs.push(output.messages[0].clone());
    }
    // Leader + node 2 = 2 of 5: not yet.
    let output = cluster.node_mut(1).step(follower_outputs[0].clone());
    assert_eq!(output, Output::default());
    assert_eq!(cluster.node(1).status().commit, 1);
    // Leader + nodes 2, 3 = 3 of 5: committed and handed out.
    let output = cluster.node_mut(1).step(follower_outputs[1].clone());
    assert_eq!(
        output,
        Output {
            hard_state: Some(hard_state(1, Some(1), 2)),
            committed_entries: vec![e2.clone()],
            ..Output::default()
        }
    );
    // Later acknowledgements change nothing.
    for message in &follower_outputs[2..] {
        assert_eq!(cluster.node_mut(1).step(message.clone()), Output::default());
    }
}

#[test]
fn leader_never_commits_a_previous_term_entry_by_counting_replicas() {
    // Reference: Raft §5.4.2 — "Raft never commits log entries from previous terms
    // by counting replicas. Only log entries from the leader's current term are
    // committed by counting replicas; once an entry from the current term has been
    // committed in this way, then all prior entries are committed indirectly"
    // (Figure 8).
    let mut leader_config = config(1, &VOTERS);
    leader_config.max_entries_per_message = 1;
    let leader = restored_node(leader_config, hard_state(2, None, 0), &[1, 2], 1);
    let follower = restored(config(2, &VOTERS), hard_state(2, None, 0), &[1], 2);
    let mut cluster = Cluster::from_nodes(vec![(leader, 0), (follower, ELECTION_TIMEOUT_MS)]);
    let deadline = cluster.node(1).next_deadline_ms();
    let _ = cluster.tick(1, deadline);
    // Deliver until the follower holds index 2 (term 2): leader + follower is a
    // majority of 3 replicas of a term-2 entry, at term 3.
    let accepted_2 = msg(2, 1, 3, accepted(2));
    loop {
        let (message, output) = cluster.deliver_one().expect("the exchange goes on");
        if message == accepted_2 {
            assert_eq!(
                output.unwrap(),
                only_messages(vec![msg(1, 2, 3, append(2, 2, vec![noop(3, 3)], 0))]),
                "replicated on a majority, yet not committed: its term is 2, not 3"
            );
            break;
        }
    }
    assert_eq!(cluster.node(1).status().followers[&2].match_index, 2);
    assert_eq!(cluster.node(1).status().commit, 0);
    assert_eq!(cluster.applied.get(&1).cloned().unwrap_or_default(), Vec::new());

    // Once the term-3 no-op is on a majority, everything before it commits too.
    let (message, output) = cluster.deliver_one().unwrap();
    assert_eq!(message, msg(1, 2, 3, append(2, 2, vec![noop(3, 3)], 0)));
    assert_eq!(output.unwrap().messages, vec![msg(2, 1, 3, accepted(3))]);
    let (_, output) = cluster.deliver_one().unwrap();
    assert_eq!(
        output.unwrap(),
        Output {
            hard_state: Some(hard_state(3, Some(1), 3)),
            committed_entries: vec![entry(1, 1), entry(2, 2), noop(3, 3)],
            ..Output::default()
        }
    );
}

#[test]
fn committed_entries_are_output_in_order_exactly_once() {
    // Reference: Raft §5.3 — "Once a follower learns that a log entry is committed,
    // it applies the entry to its local state machine (in log order)"; Figure 2: "If
    // commitIndex > lastApplied: increment lastApplied, apply log[lastApplied]".
    // Messages are reordered and duplicated; the harness checks every batch.
    let mut cluster = Cluster::new(3, 30);
    cluster.elect(1);
    let mut chaos = rng(99);
    for round in 0..40u64 {
        let _ = cluster.propose(1, format!("cmd {round}").as_bytes());
        if round % 3 == 0 {
            cluster.deliver_all_chaotic(&mut chaos, 0.3);
        }
        let now = cluster.now_ms + 20;
        cluster.tick_all(now);
    }
    let end = cluster.now_ms + 500;
    cluster.run_until(end, 10);
    assert_eq!(cluster.leaders(), vec![1]);
    let log = cluster.node(1).log().all().to_vec();
    assert_eq!(log.len(), 41);
    for id in 1..=3 {
        assert_eq!(cluster.applied[&id], log, "node {id} applied the whole log once, in order");
        assert_eq!(cluster.node(id).status().applied, 41);
    }
}

#[test]
fn leader_never_overwrites_or_deletes_its_own_entries() {
    // Reference: Raft §5.3 (Figure 3, Leader Append-Only) — "a leader never
    // overwrites or deletes entries in its log; it only appends new entries."
    let mut cluster = Cluster::new(3, 40);
    cluster.elect(1);
    let elected = cluster.trace.len();
    let first_new = cluster.node(1).log().last_index() + 1;
    for (round, index) in (0..5u8).zip(first_new..) {
        let proposal = cluster.node_mut(1).propose(vec![round]).unwrap();
        let write = proposal.output.log_write.clone().expect("the new entry is persisted");
        assert_eq!(write.first_index, index, "a pure append");
        assert_eq!(write.entries.len(), 1);
        let _ = cluster.absorb(1, proposal.output);
    }
    let before = cluster.node(1).log().all().to_vec();
    // An AppendEntries claiming to lead the leader's own term is impossible and
    // must not touch its log.
    let bogus = msg(2, 1, 1, append(0, 0, vec![entry(1, 1)], 0));
    assert_eq!(cluster.node_mut(1).step(bogus), Output::default());
    assert_eq!(cluster.node(1).status().dropped.get(DropReason::ImpossibleFields), 1);
    // A follower refusing the leader's entries does not make the leader drop them.
    let output = cluster.node_mut(1).step(msg(3, 1, 1, rejected(1, 0)));
    assert!(output.log_write.is_none());
    cluster.deliver_all();
    assert_eq!(cluster.node(1).log().all(), before.as_slice());
    for (message, output) in &cluster.trace[elected..] {
        if let (1, Some(write)) = (message.to, &output.log_write) {
            panic!("the leader rewrote its log from {} on", write.first_index);
        }
    }
    assert_eq!(cluster.node(2).log().all(), before.as_slice());
}

// ---------------------------------------------------------------------------
// PreVote (thesis §9.6)
// ---------------------------------------------------------------------------

#[test]
fn pre_candidate_does_not_increment_its_term() {
    // Reference: thesis §9.6 — "in the PreVote algorithm, a candidate only
    // increments its term if it first learns from a majority of the cluster that
    // they would be willing to grant the candidate their votes".
    let mut node = restored_node(config(1, &VOTERS), hard_state(4, Some(2), 0), &[1, 4], 1);
    for _ in 0..5 {
        let output = node.tick(node.next_deadline_ms());
        assert_eq!(output.hard_state, None, "nothing to persist: the term did not move");
        assert_eq!(output.messages, vec![msg(1, 2, 5, pre_vote_request(4, 2)), msg(1, 3, 5, pre_vote_request(4, 2))]);
        assert_eq!((node.role(), node.term(), node.status().voted_for), (Role::PreCandidate, 4, Some(2)));
    }
    // A majority of refusals (at the voters' own term) ends the round, still at term 4.
    assert_eq!(node.step(msg(2, 1, 4, pre_vote(false))), Output::default());
    let output = node.step(msg(3, 1, 4, pre_vote(false)));
    assert_eq!(
        output,
        Output {
            events: vec![Event::RoleChanged { from: Role::PreCandidate, to: Role::Follower, term: 4 }],
            ..Output::default()
        }
    );
    assert_eq!(node.term(), 4);
}

#[test]
fn voter_grants_pre_vote_without_changing_its_term_or_vote() {
    // Reference: thesis §9.6 — the pre-vote asks "would you vote for me?"; granting
    // it changes no state, so the voter remains free to vote in the real election.
    let mut node = restored_node(config(2, &VOTERS), hard_state(3, Some(3), 0), &[], 1);
    let output = node.step(msg(1, 2, 4, pre_vote_request(0, 0)));
    assert_eq!(output, only_messages(vec![msg(2, 1, 4, pre_vote(true))]));
    assert_eq!((node.term(), node.status().voted_for, node.role()), (3, Some(3), Role::Follower));
    // A pre-vote at the voter's own term means the asker is behind: refused.
    let output = node.step(msg(1, 2, 3, pre_vote_request(0, 0)));
    assert_eq!(output, only_messages(vec![msg(2, 1, 3, pre_vote(false))]));
    // The real vote in term 4 is still available.
    let output = node.step(msg(3, 2, 4, vote_request(0, 0)));
    assert_eq!(output, persisted_and_sent(hard_state(4, Some(3), 0), vec![msg(2, 3, 4, vote(true))]));
}

#[test]
fn partitioned_pre_candidate_never_disrupts_the_cluster_term() {
    // Reference: thesis §9.6 — "the PreVote algorithm ... solves the issue of a
    // partitioned server disrupting the cluster when it rejoins": a server that
    // cannot reach a majority keeps its term, so rejoining deposes nobody.
    let mut cluster = Cluster::new(3, 50);
    cluster.elect(1);
    let end = cluster.now_ms + 100;
    cluster.run_until(end, 10);
    cluster.isolated.insert(3);
    let isolated_from = cluster.trace.len();
    for round in 0..5u8 {
        let _ = cluster.propose(1, &[round]);
        let end = cluster.now_ms + 600;
        cluster.run_until(end, 10);
    }
    let attempts: Vec<Message> = cluster.lost.iter().filter(|m| m.from == 3).cloned().collect();
    assert!(attempts.len() >= 10, "node 3 kept trying: {} messages", attempts.len());
    for message in &attempts {
        assert_eq!(message.body, pre_vote_request(1, 1), "only pre-votes, always from the same log");
        assert_eq!(message.term, 2, "always at term + 1 = 2, never higher");
    }
    assert_eq!(cluster.node(3).term(), 1, "the isolated node kept its term");
    let received: Vec<&Message> =
        cluster.trace[isolated_from..].iter().map(|(message, _)| message).filter(|message| message.to == 3).collect();
    assert!(received.is_empty(), "node 3 was isolated but received {received:?}");

    // Its pre-votes reach the others after the partition heals: the follower that
    // hears from its leader and the leader itself ignore them (CheckQuorum lease).
    cluster.isolated.clear();
    let stale = attempts.last().unwrap().clone();
    for to in [1, 2] {
        let before = cluster.node(to).status().dropped.get(DropReason::LeaderLease);
        let output = cluster.deliver(Message { to, ..stale.clone() }).unwrap();
        assert_eq!(output, Output::default());
        assert_eq!(cluster.node(to).status().dropped.get(DropReason::LeaderLease), before + 1);
    }
    let end = cluster.now_ms + 1_000;
    cluster.run_until(end, 10);
    assert_eq!(cluster.leaders(), vec![1], "the leader was never deposed");
    for id in 1..=3 {
        assert_eq!(cluster.node(id).term(), 1, "node {id} is still in term 1");
    }
    assert_eq!(cluster.node(3).log().all(), cluster.node(1).log().all(), "node 3 caught up");
}

#[test]
fn pre_candidate_with_a_stale_log_is_refused_and_keeps_everyone_s_term() {
    // Reference: thesis §9.6 — "A server would only grant a pre-vote if ... the
    // candidate's log is at least as up-to-date"; a pre-candidate that cannot get
    // a majority changes no term, even without CheckQuorum.
    let mut cluster = Cluster::with_config(3, 60, |config| config.check_quorum = false);
    cluster.elect(1);
    cluster.isolated.insert(3);
    let _ = cluster.propose(1, b"x");
    cluster.deliver_all();
    cluster.isolated.clear();
    let deadline = cluster.node(3).next_deadline_ms().max(cluster.now_ms);
    let output = cluster.tick(3, deadline);
    assert_eq!(output.messages, vec![msg(3, 1, 2, pre_vote_request(1, 1)), msg(3, 2, 2, pre_vote_request(1, 1))]);
    let mut answers = Vec::new();
    for _ in 0..2 {
        let (message, output) = cluster.deliver_one().unwrap();
        assert_eq!(output.as_ref().unwrap().hard_state, None, "node {} kept its term", message.to);
        answers.extend(output.unwrap().messages);
    }
    assert_eq!(answers, vec![msg(1, 3, 1, pre_vote(false)), msg(2, 3, 1, pre_vote(false))]);
    cluster.deliver_all();
    assert_eq!(cluster.leaders(), vec![1]);
    for id in 1..=3 {
        assert_eq!(cluster.node(id).term(), 1);
    }
    assert_eq!(cluster.node(3).role(), Role::Follower, "it lost its pre-vote");
}

#[test]
fn follower_in_leader_lease_ignores_vote_requests() {
    // Reference: thesis §9.6 (with §4.2.3) — "if a server receives a RequestVote
    // request within the minimum election timeout of hearing from a current
    // leader, it does not update its term or grant its vote".
    let mut node = new_node(2, &VOTERS, 3);
    let _ = node.step(msg(1, 2, 1, heartbeat(0, 0, 0)));
    assert_eq!(node.leader(), Some(1));
    assert!(node.next_deadline_ms() > ELECTION_TIMEOUT_MS, "test setup: the timer will not fire at T");

    for body in [vote_request(0, 0), pre_vote_request(0, 0)] {
        assert_eq!(node.step(msg(3, 2, 2, body)), Output::default());
    }
    assert_eq!(node.tick(ELECTION_TIMEOUT_MS - 1), Output::default());
    assert_eq!(node.step(msg(3, 2, 2, vote_request(0, 0))), Output::default());
    assert_eq!(node.status().dropped.get(DropReason::LeaderLease), 3);
    assert_eq!((node.term(), node.status().voted_for, node.leader()), (1, None, Some(1)));

    // An election timeout after the last contact, the lease is over.
    assert_eq!(node.tick(ELECTION_TIMEOUT_MS), Output::default());
    let output = node.step(msg(3, 2, 2, vote_request(0, 0)));
    assert_eq!(
        output,
        Output {
            hard_state: Some(hard_state(2, Some(3), 0)),
            messages: vec![msg(2, 3, 2, vote(true))],
            events: vec![Event::LeaderChanged { leader: None, term: 2 }],
            ..Output::default()
        }
    );
}

#[test]
fn leader_with_check_quorum_ignores_vote_requests() {
    // Reference: thesis §9.6 — a leader that knows itself alive treats a vote
    // request as disruption: "a leader ... ignores RequestVote" while its lease holds.
    let mut node = new_node(1, &VOTERS, 1);
    let _ = elect_alone(&mut node);
    for body in [vote_request(1, 1), pre_vote_request(1, 1)] {
        assert_eq!(node.step(msg(3, 1, 2, body)), Output::default());
    }
    assert_eq!((node.role(), node.term()), (Role::Leader, 1));
    assert_eq!(node.status().dropped.get(DropReason::LeaderLease), 2);
}

#[test]
fn without_check_quorum_a_follower_votes_despite_a_recent_leader() {
    // Reference: thesis §9.6 — the lease is part of CheckQuorum; without it, Raft
    // §5.1/§5.2 apply unchanged and a higher-term RequestVote is honoured.
    let mut config = config(2, &VOTERS);
    config.check_quorum = false;
    let mut node = node_from(config, RestoredState::default(), 3);
    let _ = node.step(msg(1, 2, 1, heartbeat(0, 0, 0)));
    let output = node.step(msg(3, 2, 2, vote_request(0, 0)));
    assert_eq!(output.messages, vec![msg(2, 3, 2, vote(true))]);
    assert_eq!(node.term(), 2);
}

// ---------------------------------------------------------------------------
// CheckQuorum (thesis §6.2, §9.6)
// ---------------------------------------------------------------------------

#[test]
fn leader_steps_down_when_no_majority_answers_for_an_election_timeout() {
    // Reference: thesis §6.2 — "a leader steps down if an election timeout elapses
    // without a successful round of heartbeats to a majority of its cluster".
    let mut node = new_node(1, &VOTERS, 1);
    let _ = elect_alone(&mut node);
    let start = node.next_deadline_ms() - HEARTBEAT_MS; // time of election
    for beat in 1..5 {
        let output = node.tick(start + beat * HEARTBEAT_MS);
        // Unanswered probes are re-sent with every heartbeat, as heartbeats:
        // without entries (followers count missed heartbeats, docs/design/detection.md).
        assert_eq!(output, only_messages(vec![msg(1, 2, 1, heartbeat(0, 0, 0)), msg(1, 3, 1, heartbeat(0, 0, 0))]));
        assert_eq!(node.role(), Role::Leader);
    }
    let output = node.tick(start + ELECTION_TIMEOUT_MS);
    assert_eq!(
        output,
        Output {
            events: vec![
                Event::QuorumLost { term: 1 },
                Event::RoleChanged { from: Role::Leader, to: Role::Follower, term: 1 },
                Event::LeaderChanged { leader: None, term: 1 },
            ],
            ..Output::default()
        }
    );
    assert_eq!((node.role(), node.term()), (Role::Follower, 1));
    assert_eq!(node.propose(b"x".to_vec()).unwrap_err(), ProposeError::NotLeader { leader: None });
}

#[test]
fn leader_keeps_leading_while_a_majority_answers_and_steps_down_when_it_stops() {
    // Reference: thesis §6.2 — CheckQuorum counts, per election timeout, the
    // followers heard from; one follower plus the leader is a majority of three.
    let follower = node_at(config(2, &VOTERS), RestoredState::default(), 2, ELECTION_TIMEOUT_MS);
    let mut cluster = Cluster::from_nodes(vec![(new_node(1, &VOTERS, 1), 0), (follower, ELECTION_TIMEOUT_MS)]);
    cluster.elect(1);
    let start = cluster.now_ms;
    let mut now = start;
    while now < start + 3 * ELECTION_TIMEOUT_MS {
        now += HEARTBEAT_MS;
        let _ = cluster.tick(1, now);
        cluster.deliver_all();
        assert_eq!(cluster.node(1).role(), Role::Leader, "at {now}");
    }
    // Node 2 goes silent: within two check periods the leader steps down.
    cluster.isolated.insert(2);
    let mut stepped_down_at = None;
    while stepped_down_at.is_none() {
        now += HEARTBEAT_MS;
        let output = cluster.tick(1, now);
        if output.events.contains(&Event::QuorumLost { term: 1 }) {
            assert!(output.messages.is_empty());
            stepped_down_at = Some(now);
        }
        assert!(now <= start + 6 * ELECTION_TIMEOUT_MS, "never stepped down");
    }
    assert_eq!(cluster.node(1).role(), Role::Follower);
    assert!(stepped_down_at.unwrap() - (start + 3 * ELECTION_TIMEOUT_MS) <= 2 * ELECTION_TIMEOUT_MS);
}

// ---------------------------------------------------------------------------
// Proposals
// ---------------------------------------------------------------------------

#[test]
fn proposal_on_a_non_leader_fails_with_not_leader_and_the_leader_hint() {
    // Reference: Raft §8 — "If the client's first choice is not the leader, that
    // server will reject the client's request and supply information about the
    // most recent leader it has heard from".
    let mut node = new_node(2, &VOTERS, 1);
    assert_eq!(node.propose(b"x".to_vec()).unwrap_err(), ProposeError::NotLeader { leader: None });
    let _ = node.step(msg(1, 2, 1, heartbeat(0, 0, 0)));
    assert_eq!(node.propose(b"x".to_vec()).unwrap_err(), ProposeError::NotLeader { leader: Some(1) });
    let _ = node.tick(node.next_deadline_ms());
    assert_eq!(node.role(), Role::PreCandidate);
    assert_eq!(node.propose(b"x".to_vec()).unwrap_err(), ProposeError::NotLeader { leader: None });
    assert_eq!(node.log().last_index(), 0, "nothing was appended");
}

#[test]
fn oversized_proposal_fails_with_too_large() {
    // Reference: Config::max_command_bytes — "Largest command `propose` accepts."
    let mut config = config(1, &VOTERS);
    config.max_command_bytes = 8;
    let mut node = node_from(config, RestoredState::default(), 1);
    let _ = elect_alone(&mut node);
    assert_eq!(node.propose(vec![0; 9]).unwrap_err(), ProposeError::TooLarge { size: 9, limit: 8 });
    assert_eq!(node.log().last_index(), 1, "nothing appended after the no-op");
    let proposal = node.propose(vec![0; 8]).expect("at the limit is fine");
    assert_eq!(proposal.index, 2);
}

#[test]
fn single_node_cluster_elects_itself_and_commits_alone() {
    // Reference: Raft §5.2/§5.3 — a majority of one is the node itself.
    let mut node = Node::new(config(1, &[1]), RestoredState::default(), rng(1), 0).unwrap();
    let output = node.tick(node.next_deadline_ms());
    assert!(output.messages.is_empty());
    assert_eq!(node.role(), Role::Leader);
    assert_eq!(output.committed_entries, vec![noop(1, 1)]);
    let proposal = node.propose(b"x".to_vec()).unwrap();
    assert_eq!(proposal.output.committed_entries.len(), 1);
}

#[test]
fn a_catch_up_is_cut_into_appends_of_at_most_max_bytes_per_message() {
    // A follower that missed many large entries gets them in messages of at
    // most `max_bytes_per_message` of payload, and an entry larger than the
    // bound still goes, alone: replication never stalls on the bound.
    const MAX_BYTES: usize = 250;
    let mut cluster = Cluster::with_config(3, 41, |config| config.max_bytes_per_message = MAX_BYTES);
    cluster.elect(1);
    cluster.isolated.insert(3);
    let mut last = 0;
    for round in 0..30u8 {
        let size = if round == 17 { 400 } else { 100 };
        last = cluster.propose(1, &vec![round; size]);
        cluster.deliver_all();
    }
    cluster.isolated.clear();
    let end = cluster.now_ms + 2_000;
    cluster.run_until(end, 10);
    assert_eq!(cluster.node(3).status().commit, last, "the follower caught up");
    let appends: Vec<Vec<Entry>> = cluster
        .trace
        .iter()
        .filter(|(message, _)| message.from == 1 && message.to == 3)
        .filter_map(|(message, _)| match &message.body {
            Body::AppendEntries { entries, .. } if !entries.is_empty() => Some(entries.clone()),
            _ => None,
        })
        .collect();
    for entries in &appends {
        let bytes: usize = entries.iter().map(Entry::payload_len).sum();
        assert!(bytes <= MAX_BYTES || entries.len() == 1, "{} entries of {bytes} bytes in one append", entries.len());
    }
    assert!(appends.iter().any(|entries| entries.len() > 1), "the catch-up batches entries up to the bound");
    assert!(
        appends.iter().any(|entries| entries.len() == 1 && entries[0].payload_len() > MAX_BYTES),
        "the oversized entry went alone"
    );
}

#[test]
fn a_batch_of_proposals_goes_to_each_follower_in_one_append() {
    // A pipelined client's burst: the entries of one batch leave together,
    // not one AppendEntries per command.
    let mut config = config(1, &VOTERS);
    config.max_command_bytes = 8;
    let mut node = node_from(config, RestoredState::default(), 1);
    let _ = elect_alone(&mut node);
    for follower in [2, 3] {
        let _ = node.step(msg(follower, 1, 1, accepted(1)));
    }
    let base = node.log().last_index();
    let commands: Vec<bytes::Bytes> =
        vec![b"a".to_vec().into(), vec![0; 9].into(), b"b".to_vec().into(), b"c".to_vec().into()];
    let batch = node.propose_batch(commands);
    assert_eq!(
        batch.results,
        vec![Ok(base + 1), Err(ProposeError::TooLarge { size: 9, limit: 8 }), Ok(base + 2), Ok(base + 3)],
        "the oversized command alone is refused"
    );
    let appends: Vec<(NodeId, usize)> = batch
        .output
        .early_messages
        .iter()
        .chain(&batch.output.messages)
        .filter_map(|message| match &message.body {
            Body::AppendEntries { entries, .. } if !entries.is_empty() => Some((message.to, entries.len())),
            _ => None,
        })
        .collect();
    assert_eq!(appends, vec![(2, 3), (3, 3)], "one append of three entries to each follower");
    // A node that cannot take proposals refuses them all and appends nothing.
    let mut follower = new_node(2, &VOTERS, 1);
    let refused = follower.propose_batch(vec![bytes::Bytes::from_static(b"x"), bytes::Bytes::from_static(b"y")]);
    assert_eq!(refused.results, vec![Err(ProposeError::NotLeader { leader: None }); 2]);
    assert_eq!(follower.log().last_index(), 0);
}
