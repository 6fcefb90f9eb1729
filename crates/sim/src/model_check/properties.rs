//! The properties, as a table of named functions over a model state
//! (docs/design/invariants.md). Adding a property is adding one function and one row.
//!
//! Properties about the past (one leader per term *ever*, what was committed or
//! applied *before*) read the state's `History`, which `observe` updates after
//! every input from what the node's state then shows.

use std::collections::BTreeMap;
use std::rc::Rc;

use conclave_core::{ElectionMode, Entry, Node, NodeId, Role};

use super::actions::Model;
use super::state::{History, ModelNode, ModelState};
use super::Log;

/// A named property over a model state.
#[derive(Clone, Copy)]
pub struct Property {
    /// The name reported in `properties`.
    pub name: &'static str,
    /// Checks one state; the error says what is wrong.
    pub(crate) check: fn(&ModelState, &Model) -> Result<(), String>,
}

/// Every property checked, in report order.
pub const PROPERTIES: &[Property] = &[
    Property { name: "election_safety", check: election_safety },
    Property { name: "log_matching", check: log_matching },
    Property { name: "leader_completeness", check: leader_completeness },
    Property { name: "state_machine_safety", check: state_machine_safety },
    Property { name: "node_invariants", check: node_invariants },
    Property { name: "gapless_terms", check: gapless_terms },
    Property { name: "committed_leader_term_monotonic", check: committed_leader_term_monotonic },
    Property { name: "committed_is_durable_on_a_majority", check: committed_is_durable_on_a_majority },
];

/// A log entry's claim that `leader_id` leads gapless leader term `leader_term`
/// (the `BecomeLeader` entry of docs/design/leader-terms.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaderClaim {
    /// The gapless leader term.
    pub leader_term: u64,
    /// The node it names.
    pub leader_id: NodeId,
}

/// Reads the leader claim an entry carries, if any.
pub type LeaderClaimFn = fn(&Entry) -> Option<LeaderClaim>;

/// The `raft` and `fast` modes' entries carry no leader claim, so the two
/// gapless properties hold vacuously there.
pub fn no_leader_claims(_entry: &Entry) -> Option<LeaderClaim> {
    None
}

/// The `gapless` and `conclave` modes' `BecomeLeader` entries.
pub fn become_leader_claims(entry: &Entry) -> Option<LeaderClaim> {
    entry.leader_term_record().map(|record| LeaderClaim { leader_term: record.leader_term, leader_id: record.leader })
}

/// How `mode`'s log entries carry leader claims. A mode with a `BecomeLeader`
/// payload returns a function that reads it.
pub fn leader_claims_for_mode(mode: ElectionMode) -> LeaderClaimFn {
    match mode {
        ElectionMode::Raft | ElectionMode::Fast => no_leader_claims,
        ElectionMode::Gapless | ElectionMode::Conclave => become_leader_claims,
    }
}

/// What makes a node the leader of a term, for election safety (invariant 1 in docs/design/invariants.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderRule {
    /// A node whose role is `Leader` in term (ballot) t leads t (raft, fast).
    ByRole,
    /// A committed leader claim `(t, id)` makes `id` the leader of leader term t
    /// (gapless, conclave: leadership is established when `BecomeLeader` commits).
    ByCommittedClaim,
}

impl LeaderRule {
    /// The rule invariant 1 in docs/design/invariants.md gives `mode`.
    pub fn for_mode(mode: ElectionMode) -> LeaderRule {
        match mode {
            ElectionMode::Raft | ElectionMode::Fast => LeaderRule::ByRole,
            ElectionMode::Gapless | ElectionMode::Conclave => LeaderRule::ByCommittedClaim,
        }
    }
}

/// Updates the history after node `index` handled an input.
pub(crate) fn observe(model: &Model, state: &mut ModelState, index: usize) {
    let node = state.nodes[index].clone();
    let Some(core) = &node.core else { return };
    let (log, commit) = node.log_and_commit();
    let committed = &log[..commit as usize];
    let claims = model.options.leader_claims;
    if !history_changes(model, &state.history, index, &node, core, committed) {
        return; // Most inputs teach the history nothing: keep sharing it.
    }
    let history = Rc::make_mut(&mut state.history);
    match model.options.leader_rule {
        LeaderRule::ByRole => {
            if core.role() == Role::Leader {
                history.leaders.entry(core.term()).or_default().insert(node.id);
            }
        }
        LeaderRule::ByCommittedClaim => {
            for claim in committed.iter().filter_map(claims) {
                history.leaders.entry(claim.leader_term).or_default().insert(claim.leader_id);
            }
        }
    }
    for entry in committed {
        let known = history.committed.entry(entry.index).or_default();
        match known.iter_mut().find(|(known_entry, _)| known_entry == entry) {
            Some((_, commit_term)) => *commit_term = (*commit_term).min(core.term()),
            None => known.push((entry.clone(), core.term())),
        }
    }
    if node.applied.len() > history.applied.len() && is_prefix(&history.applied, &node.applied) {
        history.applied = node.applied.clone();
    }
    let leader_term = committed_leader_term(committed, claims);
    let highest = &mut history.committed_leader_term[index];
    *highest = (*highest).max(leader_term);
}

/// Whether `observe` would change `history`.
fn history_changes(
    model: &Model,
    history: &History,
    position: usize,
    node: &ModelNode,
    core: &Node,
    committed: Log<'_>,
) -> bool {
    let claims = model.options.leader_claims;
    let is_known_leader = |term: u64, id: NodeId| history.leaders.get(&term).is_some_and(|ids| ids.contains(&id));
    let new_leader = match model.options.leader_rule {
        LeaderRule::ByRole => core.role() == Role::Leader && !is_known_leader(core.term(), node.id),
        LeaderRule::ByCommittedClaim => {
            committed.iter().filter_map(claims).any(|claim| !is_known_leader(claim.leader_term, claim.leader_id))
        }
    };
    let new_commit = committed.iter().any(|entry| {
        let known = history.committed.get(&entry.index).and_then(|known| known.iter().find(|(e, _)| e == entry));
        known.is_none_or(|(_, commit_term)| core.term() < *commit_term)
    });
    new_leader
        || new_commit
        || (node.applied.len() > history.applied.len() && is_prefix(&history.applied, &node.applied))
        || committed_leader_term(committed, claims) > history.committed_leader_term[position]
}

fn is_prefix(shorter: &[Entry], longer: &[Entry]) -> bool {
    shorter.len() <= longer.len() && shorter.iter().zip(longer).all(|(a, b)| a == b)
}

/// The leader term of the last claim in a committed prefix (0 if none).
fn committed_leader_term(committed: Log<'_>, claims: LeaderClaimFn) -> u64 {
    committed.iter().rev().find_map(claims).map_or(0, |claim| claim.leader_term)
}

/// Every node's log with its commit index, and the node's id.
fn logs(state: &ModelState) -> impl Iterator<Item = (NodeId, Log<'_>, u64)> {
    state.nodes.iter().map(|node| {
        let (log, commit) = node.log_and_commit();
        (node.id, log, commit)
    })
}

/// invariant 1 in docs/design/invariants.md, Raft §5.2: at most one leader per term, over the whole run.
fn election_safety(state: &ModelState, _model: &Model) -> Result<(), String> {
    for (term, leaders) in &state.history.leaders {
        if leaders.len() > 1 {
            let names: Vec<String> = leaders.iter().map(|id| format!("n{id}")).collect();
            return Err(format!("{} became leaders of term {term}", names.join(" and ")));
        }
    }
    Ok(())
}

/// invariant 3 in docs/design/invariants.md, Raft §5.3: two logs with an entry of the same (index, term)
/// are identical up to it. Checked on the highest such index of each pair.
fn log_matching(state: &ModelState, _model: &Model) -> Result<(), String> {
    let all: Vec<(NodeId, Log<'_>, u64)> = logs(state).collect();
    for (position, (first_id, first, _)) in all.iter().enumerate() {
        for (second_id, second, _) in &all[position + 1..] {
            let shared = first.len().min(second.len());
            let Some(highest) = (0..shared).rev().find(|&i| first[i].term == second[i].term) else { continue };
            if let Some(i) = (0..=highest).find(|&i| first[i] != second[i]) {
                return Err(format!(
                    "n{first_id} and n{second_id} both hold index {} term {} but differ at index {}",
                    highest + 1,
                    first[highest].term,
                    i + 1
                ));
            }
        }
    }
    Ok(())
}

/// invariant 4 in docs/design/invariants.md, Raft §5.4: an entry known committed in term t is in the log
/// of every leader of a term above t.
fn leader_completeness(state: &ModelState, _model: &Model) -> Result<(), String> {
    for node in &state.nodes {
        let Some(core) = node.core.as_ref().filter(|core| core.role() == Role::Leader) else { continue };
        let log = core.log().all();
        for (index, known) in &state.history.committed {
            for (entry, commit_term) in known {
                if *commit_term < core.term() && log.get(*index as usize - 1) != Some(entry) {
                    return Err(format!(
                        "leader n{} of term {} lacks index {index} (term {}), committed in term {commit_term}",
                        node.id,
                        core.term(),
                        entry.term
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Raft §5.4 and thesis §10.2.1: every entry ever known committed is on the
/// *disks* of enough voters that every majority meets one of them (with a
/// fixed membership: a majority of disks), for the membership in force at its
/// index and for the latest membership of each live node that holds it — the
/// ones a leader counting it could have used (docs/design/membership.md). A
/// node that lacks the entry may act on an older membership (a removed node
/// never told); whether it could still be elected without the entry is what
/// `leader_completeness` checks. A leader that persists in parallel with
/// replicating counts itself only once its write is durable; counting it
/// earlier breaks this at once, before any crash shows it.
fn committed_is_durable_on_a_majority(state: &ModelState, model: &Model) -> Result<(), String> {
    let everyone: Vec<NodeId> = (1..=model.options.nodes as NodeId).collect();
    for (index, known) in &state.history.committed {
        for (entry, _) in known {
            let on_disk = |node: &Rc<ModelNode>| node.disk.entries.get(*index as usize - 1) == Some(entry);
            let holders: Vec<NodeId> = state.nodes.iter().filter(|node| on_disk(node)).map(|node| node.id).collect();
            let mut voter_sets: Vec<Vec<NodeId>> = Vec::new();
            for node in &state.nodes {
                let Some(core) = node.core.as_ref() else { continue };
                if core.log().term_at(*index) != Some(entry.term) {
                    continue;
                }
                voter_sets.push(core.membership().voters());
                if let Some((_, at_index)) = core.log().membership_at_or_below(*index) {
                    voter_sets.push(at_index.voters());
                }
            }
            voter_sets.retain(|voters| !voters.is_empty());
            if voter_sets.is_empty() {
                voter_sets.push(everyone.clone());
            }
            for voters in &voter_sets {
                let held = voters.iter().filter(|id| holders.contains(id)).count();
                let needed = voters.len() - conclave_core::quorum::majority(voters.len()) + 1;
                if held < needed {
                    return Err(format!(
                        "index {index} (term {}) is committed but durable on {held} of {} disks of the voters \
                         {voters:?} (disks holding it: {holders:?})",
                        entry.term,
                        voters.len()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// invariant 5 in docs/design/invariants.md, Raft §5.4.3: one entry is ever committed at an index, and
/// every node's applied sequence is a prefix of the longest one applied.
fn state_machine_safety(state: &ModelState, _model: &Model) -> Result<(), String> {
    for (index, known) in &state.history.committed {
        if known.len() > 1 {
            return Err(format!(
                "index {index} was committed with term {} and with term {}",
                known[0].0.term, known[1].0.term
            ));
        }
    }
    for node in &state.nodes {
        if !is_prefix(&node.applied, &state.history.applied) {
            let at = node.applied.iter().zip(&state.history.applied).position(|(a, b)| a != b).unwrap_or(0);
            return Err(format!("n{} applied a different entry at index {} than another node", node.id, at + 1));
        }
    }
    Ok(())
}

/// The core neither panicked nor refused its own disk, and `Node::validate`
/// holds on every live node.
fn node_invariants(state: &ModelState, _model: &Model) -> Result<(), String> {
    if let Some((id, problem)) = &state.history.node_failure {
        return Err(format!("n{id} {problem}"));
    }
    for node in &state.nodes {
        if let Some(Err(problem)) = node.core.as_ref().map(|core| core.validate()) {
            return Err(format!("n{}: {problem}", node.id));
        }
    }
    Ok(())
}

/// invariant 2 in docs/design/invariants.md: the leader claims of every committed prefix carry leader
/// terms 1, 2, 3, … with no hole, and each leader term names one leader on every
/// node. Vacuous while no payload carries a claim (see [`no_leader_claims`]).
fn gapless_terms(state: &ModelState, model: &Model) -> Result<(), String> {
    let claims = model.options.leader_claims;
    let mut named: BTreeMap<u64, (NodeId, NodeId)> = BTreeMap::new();
    for (id, log, commit) in logs(state) {
        for (position, claim) in log[..commit as usize].iter().filter_map(claims).enumerate() {
            let expected = position as u64 + 1;
            if claim.leader_term != expected {
                return Err(format!(
                    "n{id}'s committed log has leader term {} where {expected} was due",
                    claim.leader_term
                ));
            }
            let (leader, seen_on) = *named.entry(claim.leader_term).or_insert((claim.leader_id, id));
            if leader != claim.leader_id {
                return Err(format!(
                    "leader term {} names n{leader} on n{seen_on} but n{} on n{id}",
                    claim.leader_term, claim.leader_id
                ));
            }
        }
    }
    Ok(())
}

/// invariant 2 in docs/design/invariants.md: no node's committed leader term ever decreases (crashes
/// included: a restarted node's committed prefix comes from its disk).
/// Vacuous while no payload carries a claim.
fn committed_leader_term_monotonic(state: &ModelState, model: &Model) -> Result<(), String> {
    for (position, (id, log, commit)) in logs(state).enumerate() {
        let now = committed_leader_term(&log[..commit as usize], model.options.leader_claims);
        let highest = state.history.committed_leader_term[position];
        if now < highest {
            return Err(format!("n{id}'s committed leader term fell from {highest} to {now}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_check::CheckOptions;

    fn fresh() -> (Model, ModelState) {
        let model = Model::new(CheckOptions::new(ElectionMode::Raft, 3, 1));
        let state = model.initial_state().expect("the model starts");
        (model, state)
    }

    #[test]
    fn every_property_holds_on_a_fresh_cluster() {
        let (model, state) = fresh();
        for property in PROPERTIES {
            assert_eq!((property.check)(&state, &model), Ok(()), "{}", property.name);
        }
    }

    #[test]
    fn election_safety_fires_on_two_leaders_of_one_term() {
        let (model, mut state) = fresh();
        Rc::make_mut(&mut state.history).leaders.insert(2, [1, 3].into());
        let problem = election_safety(&state, &model).unwrap_err();
        assert_eq!(problem, "n1 and n3 became leaders of term 2");
    }

    #[test]
    fn the_committed_leader_term_may_not_fall() {
        let (model, mut state) = fresh();
        Rc::make_mut(&mut state.history).committed_leader_term[1] = 1;
        let problem = committed_leader_term_monotonic(&state, &model).unwrap_err();
        assert_eq!(problem, "n2's committed leader term fell from 1 to 0");
    }

    #[test]
    fn two_entries_committed_at_one_index_break_state_machine_safety() {
        let (model, mut state) = fresh();
        let entry = |term| Entry { term, index: 1, payload: conclave_core::Payload::Noop };
        Rc::make_mut(&mut state.history).committed.insert(1, vec![(entry(1), 1), (entry(2), 2)]);
        assert!(state_machine_safety(&state, &model).unwrap_err().contains("index 1"));
    }
}
