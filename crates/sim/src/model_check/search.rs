//! Breadth-first search with a fingerprint set and parent pointers, so that the
//! first violation found of a property is one with the fewest actions.

use std::collections::BTreeMap;
use std::time::Instant;

use conclave_core::Role;

use super::actions::{Action, Model};
use super::fingerprint::Visited;
use super::properties::PROPERTIES;
use super::state::ModelState;
use super::{CheckOptions, CheckReport, Counterexample};

/// No parent: the initial state.
const ROOT: u32 = u32::MAX;

/// Explores every state reachable within `options.depth` actions and the
/// bounds, checking every property on every new state.
pub fn check(options: CheckOptions) -> Result<CheckReport, String> {
    if options.nodes == 0 || options.nodes + options.joiners > 7 {
        return Err(format!(
            "--nodes {} with --joiners {} is out of range: the checker runs 1 to 7 nodes",
            options.nodes, options.joiners
        ));
    }
    if let Some(leader) = options.initial_leader {
        if !options.mode.exchanges_votes() {
            return Err(format!(
                "--initial-leader needs a mode with the cold start (fast, conclave), not {}",
                options.mode
            ));
        }
        if leader == 0 || leader > options.nodes as u64 {
            return Err(format!("--initial-leader {leader} is not a node: the nodes are 1 to {}", options.nodes));
        }
    }
    let started = Instant::now();
    let model = Model::new(options);
    let options = &model.options;
    let initial = model.initial_state()?;
    // parents[id] = (parent id, action that led here); visited maps fingerprints to ids.
    let mut parents: Vec<(u32, Option<Action>)> = vec![(ROOT, None)];
    let mut visited = Visited::default();
    visited.insert(initial.fingerprint(), 0);
    let mut violated: Vec<(usize, u32, String)> = Vec::new();
    record_violations(&initial, &model, 0, &mut violated);
    let mut frontier: Vec<(ModelState, u32)> = vec![(initial, 0)];
    let mut states_per_depth = vec![1u64];
    let mut level_states;
    let mut milestones = BTreeMap::new();
    // The first state that completed the cycle, to show the path to it.
    let mut cycle_state = None;
    let mut stopped_early = !violated.is_empty();
    let mut depth = 0;
    'levels: while depth < options.depth && !frontier.is_empty() && !stopped_early {
        let mut next = Vec::new();
        level_states = 0;
        for (state, id) in frontier.drain(..) {
            let (term, log_length) = state.max_term_and_log_length();
            if term > options.max_term || log_length > options.max_log_length {
                continue; // Out of bounds: checked, not expanded.
            }
            for action in model.actions(&state) {
                let successor = model.apply(&state, action);
                let fingerprint = successor.fingerprint();
                if visited.contains_key(&fingerprint) {
                    continue;
                }
                let successor_id =
                    u32::try_from(parents.len()).map_err(|_| "more than 4 billion states".to_string())?;
                visited.insert(fingerprint, successor_id);
                parents.push((id, Some(action)));
                level_states += 1;
                if note_milestones(&successor, depth + 1, &mut milestones) {
                    cycle_state.get_or_insert(successor_id);
                }
                let before = violated.len();
                record_violations(&successor, &model, successor_id, &mut violated);
                // The last level is only checked: keeping it would double the memory.
                if violated.len() == before && depth + 1 < options.depth {
                    next.push((successor, successor_id));
                }
                let out_of_budget = parents.len() >= options.max_states
                    || (parents.len().is_multiple_of(4096) && started.elapsed().as_secs_f64() > options.max_seconds);
                if out_of_budget {
                    stopped_early = true;
                    states_per_depth.push(level_states);
                    break 'levels;
                }
            }
        }
        depth += 1;
        states_per_depth.push(level_states);
        // Finish the level of the first violation (every violation found at it is
        // as short as possible), then stop.
        stopped_early = !violated.is_empty() && depth < options.depth && !next.is_empty();
        frontier = next;
    }
    while states_per_depth.last() == Some(&0) && states_per_depth.len() > 1 {
        states_per_depth.pop();
    }
    let counterexamples = violated
        .iter()
        .map(|(property, id, detail)| counterexample(&model, &parents, *property, *id, detail))
        .collect::<Result<Vec<_>, String>>()?;
    let properties = PROPERTIES
        .iter()
        .enumerate()
        .map(|(position, property)| (property.name, !violated.iter().any(|(p, _, _)| *p == position)))
        .collect();
    Ok(CheckReport {
        bounds: options.bounds(),
        mode: options.mode,
        process_gone: options.process_gone_action,
        states: parents.len() as u64,
        depth: states_per_depth.len() - 1,
        complete: !stopped_early,
        properties,
        counterexamples,
        elapsed_seconds: started.elapsed().as_secs_f64(),
        states_per_depth,
        milestones,
        cycle_trace: cycle_state.map(|id| replay(&model, &parents, id)).transpose()?.map(|(_, trace)| trace),
    })
}

/// The milestone of a full elect → commit → crash → re-elect cycle.
pub(crate) const CYCLE_MILESTONE: &str = "leader_crashed_and_replaced";

/// Records the first depth at which the search reached each milestone, so a
/// reader sees how far into the protocol a depth goes. True if `state`
/// completes the cycle ([`CYCLE_MILESTONE`]).
fn note_milestones(state: &ModelState, depth: usize, milestones: &mut BTreeMap<&'static str, usize>) -> bool {
    let leader = state.nodes.iter().any(|node| node.core.as_ref().is_some_and(|core| core.role() == Role::Leader));
    let history = &state.history;
    let first_commit_term = history.committed.values().flatten().map(|(_, term)| *term).min();
    let last_leader_term = history.leaders.keys().next_back().copied();
    // A leader of a term above one in which an entry was known committed came
    // after that commit: with a crash on the way, that is a full cycle.
    let reelected = matches!((first_commit_term, last_leader_term), (Some(commit), Some(leader)) if leader > commit);
    // Membership changes committed in some node's log, in order: the voter
    // counts of its committed memberships, and whether a learner was in one.
    let (mut learner_added, mut grew, mut grew_and_shrank) = (false, false, false);
    for core in state.nodes.iter().filter_map(|node| node.core.as_ref()) {
        let committed = core.log().committed();
        let mut most = 0;
        for entry in core.log().all().iter().filter(|entry| entry.index <= committed) {
            if let conclave_core::Payload::Membership(membership) = &entry.payload {
                let voters = membership.voters().len();
                learner_added |= !membership.learners().is_empty();
                grew |= most > 0 && voters > most;
                grew_and_shrank |= grew && voters < most;
                most = most.max(voters);
            }
        }
    }
    let reached = [
        ("learner_added", learner_added),
        ("voter_added", grew),
        ("voter_added_then_removed", grew_and_shrank),
        ("leader_elected", leader),
        ("entry_committed", first_commit_term.is_some()),
        ("reelected_after_commit", reelected),
        ("crash_and_reelected_after_commit", reelected && state.crashes > 0),
        // The full cycle: the established leader of the highest term crashed, and
        // a leader of a later term was established after it.
        (
            CYCLE_MILESTONE,
            reelected
                && matches!((history.crashed_leader_term, last_leader_term), (Some(crashed), Some(last)) if last > crashed),
        ),
    ];
    for (name, reached) in reached.iter().copied() {
        if reached {
            milestones.entry(name).or_insert(depth);
        }
    }
    reached.iter().any(|(name, reached)| *name == CYCLE_MILESTONE && *reached)
}

/// Checks every property not yet violated on `state`.
fn record_violations(state: &ModelState, model: &Model, id: u32, violated: &mut Vec<(usize, u32, String)>) {
    for (position, property) in PROPERTIES.iter().enumerate() {
        if violated.iter().any(|(p, _, _)| *p == position) {
            continue;
        }
        if let Err(detail) = (property.check)(state, model) {
            violated.push((position, id, detail));
        }
    }
}

/// Rebuilds the path to state `id` by replaying its actions from the start
/// (the core is deterministic, so the replay reaches the very states explored).
fn counterexample(
    model: &Model,
    parents: &[(u32, Option<Action>)],
    property: usize,
    id: u32,
    detail: &str,
) -> Result<Counterexample, String> {
    let (state, mut trace) = replay(model, parents, id)?;
    let name = PROPERTIES[property].name;
    // The replay must reach the violating state again, or the trace would lie.
    if (PROPERTIES[property].check)(&state, model).is_ok() {
        return Err(format!("replaying the {} actions to the {name} violation did not reproduce it", trace.len()));
    }
    trace.push(format!("=> {name} violated: {detail}"));
    Ok(Counterexample { property: name, detail: detail.to_string(), trace })
}

/// Rebuilds the path to state `id` by replaying its actions from the start
/// (the core is deterministic, so the replay reaches the very states explored):
/// the final state and one line per action.
fn replay(model: &Model, parents: &[(u32, Option<Action>)], id: u32) -> Result<(ModelState, Vec<String>), String> {
    let mut actions = Vec::new();
    let mut cursor = id;
    while cursor != ROOT {
        let (parent, action) = parents[cursor as usize];
        actions.extend(action);
        cursor = parent;
    }
    actions.reverse();
    let mut state = model.initial_state()?;
    let mut trace = Vec::with_capacity(actions.len() + 1);
    for (step, action) in actions.iter().enumerate() {
        let next = model.apply(&state, *action);
        trace.push(format!("{:>2}. {}", step + 1, model.describe(&state, *action, &next)));
        state = next;
    }
    Ok((state, trace))
}
