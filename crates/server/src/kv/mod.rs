//! The replicated key-value state machine and its commands.

pub mod command;
pub mod dedup;
pub mod engine;
pub mod engine_choice;
pub mod lsm;
pub mod machine;
pub mod snapshot;
pub mod store;
mod writeback;

pub use command::{Envelope, KvCommand, KvReply, SetCondition};
pub use engine::{EngineIdentity, EngineStore};
pub use lsm::LsmStore;
pub use machine::{MachineError, StateMachine};
pub use snapshot::SnapshotDecodeError;
pub use store::KvStore;
