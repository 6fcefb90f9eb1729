//! # conclave-lincheck
//!
//! Checks that a recorded history of operations on a key-value store is
//! linearizable: that every operation can be given one instant between its
//! invocation and its completion such that, in the order of those instants,
//! every key behaves as a single register.
//!
//! * Each key is checked on its own (a register's history is linearizable
//!   exactly when each key's is: Herlihy and Wing's locality, which Lowe calls
//!   P-compositionality), by the Wing–Gong search with Lowe's memoization of
//!   (operations linearized, register value) ([`search`]), as Porcupine and
//!   Knossos do.
//! * An operation whose outcome is unknown (a timeout, a connection reset, a
//!   server saying it "may or may not have taken effect") is *indeterminate*:
//!   it may take effect at any instant after its invocation, or never. A failed
//!   one ("did not take effect") is left out: it never happened.
//! * The search is bounded in steps and in time, so it answers
//!   [`KeyVerdict::Unknown`] rather than hang.
//! * On a violation, [`witness`] shrinks the key's history (soundly: the
//!   smaller history is still not linearizable) to a few operations to print.
//!
//! [`history`] reads and writes the JSON-lines history format (one event per
//! line) and turns events into [`Operation`]s.
//!
//! ```
//! use conclave_lincheck::{check, Limits, OpKind, Operation, Verdict};
//!
//! let write = Operation::ok(0, "x", OpKind::Write(Some(1)), 0, 10);
//! let stale = Operation::ok(1, "x", OpKind::Read(None), 20, 30);
//! let report = check(&[write.clone()], &Limits::default());
//! assert!(matches!(report.verdict(), Verdict::Linearizable));
//! let report = check(&[write, stale], &Limits::default());
//! assert!(matches!(report.verdict(), Verdict::NotLinearizable));
//! ```

#![deny(missing_docs)]

pub mod brute_force;
pub mod history;
mod model;
pub mod search;
pub mod witness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use model::{OpKind, Operation, Value};
pub use search::{check_key, KeyVerdict, Limits};

/// The verdict over a whole history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's history is linearizable.
    Linearizable,
    /// At least one key's is not.
    NotLinearizable,
    /// No key is proven wrong, but the search gave up on at least one.
    Unknown,
}

/// What the checker found, per key.
#[derive(Clone, Debug)]
pub struct Report {
    /// Each key's verdict.
    pub keys: BTreeMap<String, KeyVerdict>,
    /// For each key found not linearizable, a small history that shows it.
    pub witnesses: BTreeMap<String, Vec<Operation>>,
    /// How long the check took.
    pub elapsed: Duration,
}

impl Report {
    /// The verdict over every key.
    pub fn verdict(&self) -> Verdict {
        if self.keys.values().any(|verdict| matches!(verdict, KeyVerdict::NotLinearizable { .. })) {
            Verdict::NotLinearizable
        } else if self.keys.values().any(|verdict| matches!(verdict, KeyVerdict::Unknown { .. })) {
            Verdict::Unknown
        } else {
            Verdict::Linearizable
        }
    }
}

/// Checks a history: splits it by key, checks each key within `limits`
/// (the time limit is shared by all keys), and shrinks a witness for each key
/// found not linearizable.
pub fn check(operations: &[Operation], limits: &Limits) -> Report {
    let started = Instant::now();
    let deadline = started + limits.time;
    let mut by_key: BTreeMap<String, Vec<Operation>> = BTreeMap::new();
    for operation in operations {
        by_key.entry(operation.key.clone()).or_default().push(operation.clone());
    }
    let mut keys = BTreeMap::new();
    let mut witnesses = BTreeMap::new();
    for (key, history) in by_key {
        let left = deadline.saturating_duration_since(Instant::now());
        let verdict = check_key(&history, &Limits { time: left, ..*limits });
        if matches!(verdict, KeyVerdict::NotLinearizable { .. }) {
            witnesses.insert(key.clone(), witness::shrink(&history, limits));
        }
        keys.insert(key, verdict);
    }
    Report { keys, witnesses, elapsed: started.elapsed() }
}
