//! The register model: what one operation on one key does.

use serde::{Deserialize, Serialize};

/// A register's value; a key that does not exist holds `None`.
pub type Value = u64;

/// What an operation did (for a read, what it saw).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OpKind {
    /// A read that returned this value (`None`: the key did not exist).
    Read(Option<Value>),
    /// A write of this value (`None`: a delete).
    Write(Option<Value>),
    /// A compare-and-set that succeeded (or, if indeterminate, may have):
    /// the value was `expected` and became `new`. A compare-and-set whose
    /// comparison failed changed nothing and is left out of the history.
    Cas {
        /// The value it required.
        expected: Value,
        /// The value it wrote.
        new: Value,
    },
}

impl OpKind {
    /// The register after this operation on `state`, or `None` if the operation
    /// cannot have happened on `state` (a read of another value, a compare on
    /// another value).
    pub fn step(self, state: Option<Value>) -> Option<Option<Value>> {
        match self {
            OpKind::Read(seen) => (seen == state).then_some(state),
            OpKind::Write(value) => Some(value),
            OpKind::Cas { expected, new } => (state == Some(expected)).then_some(Some(new)),
        }
    }

    /// True for a read.
    pub fn is_read(self) -> bool {
        matches!(self, OpKind::Read(_))
    }
}

/// One operation of a history, on one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Who ran it (one operation at a time per process).
    pub process: u64,
    /// The key (the register).
    pub key: String,
    /// What it did.
    pub kind: OpKind,
    /// When it was invoked (ns from any fixed origin).
    pub call: u64,
    /// When it completed; `None` if its outcome is unknown (indeterminate: it
    /// may take effect at any time after `call`, or never).
    pub ret: Option<u64>,
}

impl Operation {
    /// A completed operation.
    pub fn ok(process: u64, key: &str, kind: OpKind, call: u64, ret: u64) -> Operation {
        assert!(call <= ret, "an operation completes after it is invoked");
        Operation { process, key: key.to_string(), kind, call, ret: Some(ret) }
    }

    /// An operation whose outcome is unknown.
    pub fn info(process: u64, key: &str, kind: OpKind, call: u64) -> Operation {
        Operation { process, key: key.to_string(), kind, call, ret: None }
    }

    /// True if its outcome is unknown.
    pub fn is_indeterminate(&self) -> bool {
        self.ret.is_none()
    }

    /// Its completion time, infinite if indeterminate.
    pub fn ret_or_infinity(&self) -> u64 {
        self.ret.unwrap_or(u64::MAX)
    }
}

/// The operations of `history` that matter to the check: an indeterminate read
/// neither changed the register nor told anything, so it is left out.
pub(crate) fn relevant(history: &[Operation]) -> Vec<&Operation> {
    history.iter().filter(|operation| !(operation.kind.is_read() && operation.is_indeterminate())).collect()
}
