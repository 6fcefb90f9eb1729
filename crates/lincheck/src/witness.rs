//! Shrinking a key's non-linearizable history to a few operations that show
//! the violation. Only steps that keep "not linearizable" true of the
//! *original* history are used:
//! * cutting at a time `T`: operations invoked after `T` go, operations still
//!   running at `T` become indeterminate (reads among them go). A
//!   linearization of the whole history, cut at `T`, would be one of the cut
//!   history, so if the cut one has none, the whole one has none;
//! * removing reads: they change no register, so a linearization of the whole
//!   history minus its reads is one of the history without them.
//!
//! The smallest cut is found by bisection (a cut history that is not
//! linearizable stays so when cut later), then reads are removed one at a
//! time while the history stays not linearizable, within a time budget.

use std::time::{Duration, Instant};

use crate::model::{relevant, Operation};
use crate::search::{check_key, KeyVerdict, Limits};

/// A smaller history, still not linearizable, that shows why `history` (one
/// key's, found not linearizable) is not. Sorted by invocation.
pub fn shrink(history: &[Operation], limits: &Limits) -> Vec<Operation> {
    let started = Instant::now();
    let budget = limits.time.min(Duration::from_secs(10));
    let probe = Limits { steps: limits.steps, time: budget / 4 };
    let violates = |candidate: &[Operation]| matches!(check_key(candidate, &probe), KeyVerdict::NotLinearizable { .. });
    let mut current: Vec<Operation> = relevant(history).into_iter().cloned().collect();
    current.sort_by_key(|operation| (operation.call, operation.ret_or_infinity()));

    // The earliest cut that still violates.
    let mut cuts: Vec<u64> = current.iter().filter_map(|operation| operation.ret).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let (mut low, mut high) = (0usize, cuts.len());
    while low < high && started.elapsed() < budget {
        let middle = (low + high) / 2;
        if violates(&cut(&current, cuts[middle])) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    if high < cuts.len() {
        current = cut(&current, cuts[high]);
    }

    // The reads, except the ones completing last (the ones the cut exposed).
    let last = current.iter().filter_map(|operation| operation.ret).max();
    let removable = |operation: &Operation| operation.kind.is_read() && operation.ret != last;
    let without_reads: Vec<Operation> = current.iter().filter(|operation| !removable(operation)).cloned().collect();
    if violates(&without_reads) {
        return without_reads;
    }
    let mut index = 0;
    while index < current.len() && started.elapsed() < budget {
        if removable(&current[index]) {
            let mut candidate = current.clone();
            candidate.remove(index);
            if violates(&candidate) {
                current = candidate;
                continue;
            }
        }
        index += 1;
    }
    current
}

/// The history cut at `time` (see the module's doc).
fn cut(history: &[Operation], time: u64) -> Vec<Operation> {
    history
        .iter()
        .filter(|operation| operation.call <= time)
        .filter_map(|operation| match operation.ret {
            Some(ret) if ret <= time => Some(operation.clone()),
            _ if operation.kind.is_read() => None,
            _ => Some(Operation { ret: None, ..operation.clone() }),
        })
        .collect()
}
