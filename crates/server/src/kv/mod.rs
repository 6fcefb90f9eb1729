//! The replicated key-value state machine and its commands.

pub mod command;
pub mod snapshot;
pub mod store;

pub use command::{Envelope, KvCommand, KvReply, SetCondition};
pub use snapshot::SnapshotDecodeError;
pub use store::KvStore;
