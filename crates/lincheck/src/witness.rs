//! Shrinking a key's non-linearizable history to a few operations that show
//! the violation. Only steps that keep "not linearizable" true of the
//! *original* history are used:
//! * cutting at a time `T`: operations invoked after `T` go, operations still
//!   running at `T` become indeterminate (reads among them go). A
//!   linearization of the whole history, cut at `T`, would be one of the cut
//!   history, so if the cut one has none, the whole one has none;
//! * removing reads: they change no register, so a linearization of the whole
//!   history minus its reads is one of the history without them;
//! * removing a write whose value nobody reads or compares with (see
//!   `removable`).
//!
//! The smallest cut is found by bisection (a cut history that is not
//! linearizable stays so when cut later), then removable operations go, in
//! halves, quarters, … down to one at a time, while the history stays not
//! linearizable, within a time budget.

use std::time::{Duration, Instant};

use crate::model::{relevant, OpKind, Operation};
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

    // Then remove what may be removed, in halves, quarters, … (delta debugging).
    let mut chunk = current.len().div_ceil(2);
    while chunk >= 1 && started.elapsed() < budget {
        let candidates: Vec<usize> = (0..current.len()).filter(|&index| removable(&current, index)).collect();
        let mut removed_any = false;
        for group in candidates.chunks(chunk) {
            if started.elapsed() >= budget {
                break;
            }
            let candidate: Vec<Operation> = current
                .iter()
                .enumerate()
                .filter(|(index, _)| !group.contains(index))
                .map(|(_, operation)| operation.clone())
                .collect();
            if violates(&candidate) {
                current = candidate;
                removed_any = true;
                break;
            }
        }
        if !removed_any {
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        } else {
            chunk = chunk.min(current.len().div_ceil(2)).max(1);
        }
    }
    current
}

/// True if removing `history[index]` keeps "not linearizable" true of the
/// original: a read (it changes nothing), or a write or compare-and-set whose
/// value no operation left reads or compares with (in a linearization, the
/// next operation that depends on the register after it is a write, so it can
/// go). Values are unique per write in the nemesis's histories; a delete is
/// never removed, as its "value" (none) is read often.
fn removable(history: &[Operation], index: usize) -> bool {
    let written = match history[index].kind {
        OpKind::Read(_) => return true,
        OpKind::Write(None) => return false,
        OpKind::Write(Some(value)) | OpKind::Cas { new: value, .. } => value,
    };
    !history.iter().any(|operation| match operation.kind {
        OpKind::Read(seen) => seen == Some(written),
        OpKind::Cas { expected, .. } => expected == written,
        OpKind::Write(_) => false,
    })
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
