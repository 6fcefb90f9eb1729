//! Exhaustive breadth-first search with a visited set of state hashes.
//!
//! Breadth-first order plus one parent pointer per state makes every reported
//! counterexample a shortest trace. The search stops at the first state that
//! breaks a checked property.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use super::model::{Action, Bounds, Notes, SeedVariant, State, LEADER_TERM_SLOTS, MAX_LOG, MAX_MESSAGES};
use super::properties::Property;

/// What a search found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    /// Distinct states reached.
    pub states: usize,
    /// Depth (trace length) of the deepest state reached.
    pub depth_reached: usize,
    /// Every state within the bounds was explored: neither the depth bound, the
    /// state bound nor a violation cut the search short.
    pub complete: bool,
    /// The first violation found, a shortest one: property name and trace, one line per action.
    pub violation: Option<(&'static str, Vec<String>)>,
    /// The nodes in the violating state, one line each (empty without a violation).
    pub final_state: Vec<String>,
}

/// A fast, fixed-key 64-bit hash: fields are packed eight bytes to a word (numbers
/// as LEB128, so the stream stays unambiguous), each word mixed FxHash-style,
/// then a final avalanche.
#[derive(Default)]
struct Fingerprint {
    hash: u64,
    word: u64,
    bytes: u32,
}

impl Fingerprint {
    fn push(&mut self, byte: u8) {
        self.word = (self.word << 8) | u64::from(byte);
        self.bytes += 1;
        if self.bytes == 8 {
            self.mix();
        }
    }

    fn mix(&mut self) {
        self.hash = (self.hash.rotate_left(5) ^ self.word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        self.word = 0;
        self.bytes = 0;
    }
}

impl Hasher for Fingerprint {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.push(byte);
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.push(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.write_u64(value as u64);
    }

    fn write_isize(&mut self, value: isize) {
        self.write_u64(value as u64);
    }

    fn write_u64(&mut self, mut value: u64) {
        // LEB128: at most ten bytes, fewer for the small numbers a state holds.
        for _ in 0..10 {
            let low = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                self.push(low);
                return;
            }
            self.push(low | 0x80);
        }
    }

    fn finish(&self) -> u64 {
        // splitmix64's finalizer: the visited set hashes these bits again with the identity.
        let tail = (self.word ^ (u64::from(self.bytes) << 56)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut x = (self.hash.rotate_left(5) ^ tail).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
}

/// The visited set's hasher: its keys are fingerprints already.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8) | u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn fingerprint(state: &State) -> u64 {
    let mut hasher = Fingerprint::default();
    state.hash(&mut hasher);
    hasher.finish()
}

/// Checks every property of [`Property::ALL`]; see [`check_properties`].
pub fn check(variant: SeedVariant, bounds: Bounds) -> CheckResult {
    check_properties(variant, bounds, &Property::ALL)
}

/// Explores every state reachable within `bounds`, breadth first, until a state
/// breaks one of `properties` or nothing is left to explore.
///
/// # Panics
/// If `bounds` exceed the model's fixed capacities.
pub fn check_properties(variant: SeedVariant, bounds: Bounds, properties: &[Property]) -> CheckResult {
    search(variant, bounds, |state| {
        properties.iter().find(|property| !property.holds(state)).map(|property| property.name())
    })
}

/// Finds a shortest trace to a state where `goal` holds (reported as a
/// violation named `"goal"`), e.g. to show that the bounds reach a re-election
/// and a clean result is not vacuous.
///
/// # Panics
/// If `bounds` exceed the model's fixed capacities.
pub fn find(variant: SeedVariant, bounds: Bounds, goal: impl Fn(&State) -> bool) -> CheckResult {
    search(variant, bounds, |state| goal(state).then_some("goal"))
}

/// The search: stops at the first state for which `stop` names a reason.
fn search(variant: SeedVariant, bounds: Bounds, stop: impl Fn(&State) -> Option<&'static str>) -> CheckResult {
    assert!(usize::from(bounds.max_term) < LEADER_TERM_SLOTS, "max_term must stay below {LEADER_TERM_SLOTS}");
    assert!(bounds.max_log <= MAX_LOG, "max_log must be at most {MAX_LOG}");
    assert!(bounds.max_messages <= MAX_MESSAGES, "max_messages must be at most {MAX_MESSAGES}");
    let initial = State::initial();
    // Sized up front: growing a table of millions of hashes costs more than the memory.
    let capacity = bounds.max_states.min(1 << 20);
    let mut visited: HashSet<u64, BuildHasherDefault<Identity>> =
        HashSet::with_capacity_and_hasher(capacity, BuildHasherDefault::default());
    visited.insert(fingerprint(&initial));
    // parents[i] = (parent index, action); entry 0 is the initial state.
    let mut parents: Vec<(u32, Option<Action>)> = vec![(0, None)];
    let mut queue: VecDeque<(State, u32, usize)> = VecDeque::from([(initial, 0, 0)]);
    let mut depth_reached = 0;
    let mut complete = true;
    let mut actions = Vec::new();

    'search: while let Some((state, index, depth)) = queue.pop_front() {
        // Breadth first: everything left is at the depth bound too, and one new successor already showed it cuts.
        if depth == bounds.max_depth && !complete {
            break;
        }
        state.actions(&bounds, &mut actions);
        for &action in &actions {
            let Some(next) = state.apply(variant, &bounds, action, &mut Notes::quiet()) else { continue };
            let hash = fingerprint(&next);
            if depth == bounds.max_depth {
                if !visited.contains(&hash) {
                    complete = false;
                    break;
                }
                continue;
            }
            if !visited.insert(hash) {
                continue;
            }
            if parents.len() >= bounds.max_states {
                complete = false;
                break 'search;
            }
            let child = parents.len() as u32;
            parents.push((index, Some(action)));
            depth_reached = depth_reached.max(depth + 1);
            let Some(broken) = stop(&next) else {
                queue.push_back((next, child, depth + 1));
                continue;
            };
            let (trace, final_state) = replay(variant, &bounds, &parents, child);
            let states = parents.len();
            return CheckResult {
                states,
                depth_reached,
                complete: false,
                violation: Some((broken, trace)),
                final_state,
            };
        }
    }
    CheckResult { states: parents.len(), depth_reached, complete, violation: None, final_state: Vec::new() }
}

/// Rebuilds the trace to state `index` by replaying its actions from the initial state.
fn replay(
    variant: SeedVariant,
    bounds: &Bounds,
    parents: &[(u32, Option<Action>)],
    index: u32,
) -> (Vec<String>, Vec<String>) {
    let mut path = Vec::new();
    let mut at = index;
    // Each parent index is smaller than its child's, so this ends at 0.
    while let (parent, Some(action)) = parents[at as usize] {
        path.push(action);
        at = parent;
    }
    path.reverse();
    let mut state = State::initial();
    let mut trace = Vec::with_capacity(path.len());
    for (step, action) in path.into_iter().enumerate() {
        let mut notes = Notes::recording();
        let next = state.apply(variant, bounds, action, &mut notes).expect("a recorded action changes its state");
        trace.push(format!("{:>2}. {}", step + 1, notes.take()));
        state = next;
    }
    (trace, state.summary())
}
