//! The Wing–Gong search for one key, with Lowe's memoization, as Porcupine
//! does it.
//!
//! The history becomes a list of call and return entries in time order. The
//! search walks it from the head: at a call it tries to linearize that
//! operation now (legal on the register, and (operations linearized, value)
//! not seen before), lifting its call and return out of the list and starting
//! again from the head; at a return it has found an operation that should
//! have been linearized already and backtracks the last choice. The history is
//! linearizable when the list empties, or when what is left starts with the
//! return of an indeterminate operation: such returns are at infinity, so
//! everything left is an indeterminate operation, and those may never happen.
//!
//! The memo keeps a 128-bit Zobrist hash of each (set, value) pair tried, not
//! the set itself (16 bytes a state instead of one bit per operation): two
//! different pairs collide with odds of about 2⁻¹²⁸ per pair of states.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::model::{relevant, Operation, Value};

/// How far the search may go before it answers [`KeyVerdict::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Search steps (each a call tried or a backtrack), per key.
    pub steps: u64,
    /// Wall-clock time, for the whole check.
    pub time: Duration,
}

impl Default for Limits {
    /// Five million steps a key (a memo of at most about 160 MB), one minute.
    fn default() -> Limits {
        Limits { steps: 5_000_000, time: Duration::from_secs(60) }
    }
}

/// One key's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyVerdict {
    /// A linearization exists.
    Linearizable {
        /// Operations checked.
        operations: usize,
        /// Search steps taken.
        steps: u64,
    },
    /// None exists.
    NotLinearizable {
        /// Operations checked.
        operations: usize,
        /// Search steps taken.
        steps: u64,
        /// The operation the longest partial linearization could not place
        /// before its completion.
        blocked: Operation,
        /// How many operations that longest partial linearization had.
        longest_prefix: usize,
    },
    /// The search gave up.
    Unknown {
        /// Operations checked.
        operations: usize,
        /// Search steps taken.
        steps: u64,
        /// Why it gave up.
        reason: String,
    },
}

const NIL: usize = usize::MAX;

struct Entry {
    operation: usize,
    is_call: bool,
    /// For a call, its return's entry.
    partner: usize,
}

/// A doubly linked list of entries with a head sentinel, whose removals are
/// undone in the reverse order (dancing links).
struct List {
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
}

impl List {
    fn new(length: usize) -> List {
        let head = length;
        let mut next: Vec<usize> = (1..=length).collect();
        next.push(if length == 0 { NIL } else { 0 });
        if length > 0 {
            next[length - 1] = NIL;
        }
        let mut prev: Vec<usize> = (0..length).map(|index| if index == 0 { head } else { index - 1 }).collect();
        prev.push(NIL);
        List { next, prev, head }
    }

    fn remove(&mut self, entry: usize) {
        let (prev, next) = (self.prev[entry], self.next[entry]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    fn restore(&mut self, entry: usize) {
        let (prev, next) = (self.prev[entry], self.next[entry]);
        self.next[prev] = entry;
        if next != NIL {
            self.prev[next] = entry;
        }
    }
}

/// SplitMix64: fixed pseudo-random keys for the Zobrist hash.
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn key128(seed: u64) -> u128 {
    (u128::from(splitmix(seed.wrapping_mul(2))) << 64) | u128::from(splitmix(seed.wrapping_mul(2) + 1))
}

fn state_key(state: Option<Value>) -> u128 {
    // A different seed space from the operations' keys (which start at 0).
    match state {
        None => key128(u64::MAX),
        Some(value) => key128(value ^ 0xa5a5_a5a5_a5a5_a5a5).rotate_left(17),
    }
}

/// Checks one key's history (every operation in it on that key).
pub fn check_key(history: &[Operation], limits: &Limits) -> KeyVerdict {
    let started = Instant::now();
    let operations = relevant(history);
    let count = operations.len();
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * count);
    for (index, operation) in operations.iter().enumerate() {
        // At equal times a call sorts before a return: the two overlap, the
        // lenient reading, so a tie never makes a violation.
        order.push((operation.call, false, index));
        order.push((operation.ret_or_infinity(), true, index));
    }
    order.sort_unstable();
    let mut entries: Vec<Entry> =
        order.iter().map(|&(_, is_return, operation)| Entry { operation, is_call: !is_return, partner: NIL }).collect();
    let mut return_of = vec![NIL; count];
    for (position, entry) in entries.iter().enumerate() {
        if !entry.is_call {
            return_of[entry.operation] = position;
        }
    }
    for entry in entries.iter_mut().filter(|entry| entry.is_call) {
        entry.partner = return_of[entry.operation];
    }
    let zobrist: Vec<u128> = (0..count as u64).map(key128).collect();

    let mut list = List::new(entries.len());
    let mut memo: HashSet<u128> = HashSet::new();
    let mut stack: Vec<(usize, Option<Value>)> = Vec::new();
    let mut state: Option<Value> = None;
    let mut linearized: u128 = 0;
    let mut steps: u64 = 0;
    let mut deepest: Option<(usize, usize)> = None;
    let mut entry = list.next[list.head];
    while entry != NIL {
        steps += 1;
        if steps > limits.steps {
            return KeyVerdict::Unknown {
                operations: count,
                steps,
                reason: format!("gave up after {} search steps", limits.steps),
            };
        }
        if steps.is_multiple_of(4096) && started.elapsed() > limits.time {
            return KeyVerdict::Unknown {
                operations: count,
                steps,
                reason: format!("gave up after {:.1} s", limits.time.as_secs_f64()),
            };
        }
        let Entry { operation, is_call, partner } = entries[entry];
        if is_call {
            if let Some(next_state) = operations[operation].kind.step(state) {
                let next_linearized = linearized ^ zobrist[operation];
                if memo.insert(next_linearized ^ state_key(next_state)) {
                    stack.push((entry, state));
                    state = next_state;
                    linearized = next_linearized;
                    list.remove(entry);
                    list.remove(partner);
                    entry = list.next[list.head];
                    continue;
                }
            }
            entry = list.next[entry];
        } else if operations[operation].is_indeterminate() {
            // Everything left is indeterminate (see the module's doc).
            break;
        } else {
            if deepest.is_none_or(|(depth, _)| stack.len() >= depth) {
                deepest = Some((stack.len(), operation));
            }
            let Some((call, before)) = stack.pop() else {
                let (longest_prefix, blocked) = deepest.expect("set just above");
                return KeyVerdict::NotLinearizable {
                    operations: count,
                    steps,
                    blocked: operations[blocked].clone(),
                    longest_prefix,
                };
            };
            let undone = entries[call].operation;
            list.restore(entries[call].partner);
            list.restore(call);
            state = before;
            linearized ^= zobrist[undone];
            entry = list.next[call];
        }
    }
    KeyVerdict::Linearizable { operations: count, steps }
}
