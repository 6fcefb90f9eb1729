//! A checker that tries every order: exponential, for tiny histories only,
//! and written independently of [`crate::search`] so that tests can
//! cross-check the two.

use crate::model::{relevant, Operation, Value};

/// True if `history` (all on one key, at most about 10 operations) is
/// linearizable: some order of its determinate operations and some of its
/// indeterminate ones respects real time and is legal on a register.
pub fn is_linearizable(history: &[Operation]) -> bool {
    let operations = relevant(history);
    assert!(operations.len() <= 12, "the brute-force checker is for tiny histories");
    let mut placed = vec![false; operations.len()];
    extend(&operations, &mut placed, None)
}

fn extend(operations: &[&Operation], placed: &mut [bool], state: Option<Value>) -> bool {
    let all_determinate_placed =
        operations.iter().zip(placed.iter()).all(|(operation, &done)| done || operation.is_indeterminate());
    if all_determinate_placed {
        return true;
    }
    for candidate in 0..operations.len() {
        if placed[candidate] {
            continue;
        }
        // Every operation still unplaced that completed before this one was
        // invoked must come first.
        let must_wait = (0..operations.len())
            .any(|other| !placed[other] && operations[other].ret.is_some_and(|ret| ret < operations[candidate].call));
        if must_wait {
            continue;
        }
        if let Some(next) = operations[candidate].kind.step(state) {
            placed[candidate] = true;
            let found = extend(operations, placed, next);
            placed[candidate] = false;
            if found {
                return true;
            }
        }
    }
    false
}
