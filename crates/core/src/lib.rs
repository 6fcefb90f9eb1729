//! # conclave-core
//!
//! Conclave's consensus protocol as a deterministic state machine. It does no
//! I/O, reads no clock, spawns nothing, and draws randomness only from the
//! seeded RNG it is given: the simulator, the model checker and the server all
//! drive this same code.
//!
//! A driver feeds three inputs — [`Node::tick`] with the time, [`Node::step`]
//! with a message, [`Node::propose`] with a command — and acts on the
//! [`Output`] each returns: persist, then send, then apply (see [`Output`]).
//! Once its state machine has applied an index, a driver may snapshot it and
//! call [`Node::compact`]; a follower that needs compacted entries receives the
//! leader's snapshot in chunks and hands it out in [`Output::snapshot`] (Raft §7).
//! A linearizable read skips the log: [`Node::read_index`] on the leader, then
//! serve it once [`Output::read_states`] names it and its index is applied
//! (ReadIndex, Raft thesis §6.4).
//!
//! ```
//! use conclave_core::{Config, Node, RestoredState};
//! use rand::SeedableRng;
//!
//! // A one-node cluster elects itself at its first election timeout.
//! let config = Config::new(1, 7, vec![1]);
//! let rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
//! let mut node = Node::new(config, RestoredState::default(), rng, 0).unwrap();
//! let mut now_ms = 0;
//! while node.role() != conclave_core::Role::Leader {
//!     now_ms = node.next_deadline_ms();
//!     let output = node.tick(now_ms);
//!     // A real driver persists output.hard_state and output.log_write here,
//!     // then sends output.messages, then applies output.committed_entries.
//!     assert!(output.messages.is_empty(), "nobody else to talk to");
//! }
//! let proposal = node.propose(b"set x 1".to_vec()).unwrap();
//! assert_eq!(proposal.output.committed_entries.last().unwrap().index, proposal.index);
//! // Alone, the leader is its own quorum: the read is confirmed at once, at the
//! // index just applied.
//! let read = node.read_index(99).unwrap();
//! assert_eq!(read.read_states, vec![conclave_core::ReadState { context: 99, index: proposal.index }]);
//! ```
#![deny(missing_docs)]

pub mod config;
pub mod election;
pub mod entry;
pub mod log;
pub mod message;
pub mod node;
pub mod output;
pub mod progress;
pub mod quorum;
pub mod snapshot;
pub mod status;
pub mod types;

#[cfg(feature = "bug-injection")]
pub use config::InjectedBug;
pub use config::{Config, ConfigError};
pub use election::ElectionMode;
pub use entry::{Entry, LeaderTermRecord, Payload};
pub use message::{AppendOutcome, Body, Message, PeerState, VoteChoice};
pub use node::{CompactError, Node, Proposal, ProposeError, ReadIndexError, RestoredState, StartError};
pub use output::{Detector, Event, HardState, LogWrite, Output, ReadState};
pub use snapshot::{Snapshot, SnapshotMeta};
pub use status::{DropCounters, DropReason, FollowerStatus, Role, Status};
pub use types::{ClusterId, LogIndex, NodeId, Term};
