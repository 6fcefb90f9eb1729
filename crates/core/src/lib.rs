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
//! ## A drive loop
//!
//! The loop below is a whole driver in miniature: three nodes in one process,
//! each with a "disk" (a `Vec`) and a state machine (the commands applied), and a
//! network that is a queue. It follows the contract every real driver follows
//! (the server in `conclave-server`, the simulator in `conclave-sim`):
//!
//! 1. **tick** every node with the time whenever the clock moved, before any
//!    step or proposal (the node reads no clock; [`Node::next_deadline_ms`] says
//!    when it next needs a tick);
//! 2. **step** each message to its addressee;
//! 3. **propose** a command on the node that serves as leader;
//! 4. for each [`Output`]: **persist** its `hard_state` and `log_write`, then
//!    **send** its `messages`, then **apply** its `committed_entries`, in that
//!    order — a vote or an acknowledgement must never leave before the state
//!    it promises is durable.
//!
//! ```
//! use std::collections::VecDeque;
//!
//! use conclave_core::{Config, Entry, HardState, Message, Node, Output, Payload, RestoredState};
//! use rand::SeedableRng;
//!
//! /// One member: its core, what its disk holds, and its state machine.
//! struct Member {
//!     node: Node,
//!     hard_state: HardState,
//!     log: Vec<Entry>,
//!     applied: Vec<Vec<u8>>,
//! }
//!
//! impl Member {
//!     /// Acts on one output in the contract's order: persist, send, apply.
//!     fn handle(&mut self, output: Output, network: &mut VecDeque<Message>) {
//!         // 1. Persist (a real driver writes and syncs here, and may cover
//!         //    several outputs with one sync: group commit).
//!         if let Some(hard_state) = output.hard_state {
//!             self.hard_state = hard_state;
//!         }
//!         if let Some(write) = output.log_write {
//!             self.log.truncate(write.first_index as usize - 1);
//!             self.log.extend(write.entries);
//!         }
//!         // 2. Send, only once the batch is durable.
//!         network.extend(output.messages);
//!         // 3. Apply what is committed, in index order.
//!         for entry in output.committed_entries {
//!             if let Payload::Command(command) = entry.payload {
//!                 self.applied.push(command.to_vec());
//!             }
//!         }
//!     }
//! }
//!
//! let voters = vec![1, 2, 3];
//! let mut members: Vec<Member> = voters
//!     .iter()
//!     .map(|&id| {
//!         // The default mode, `conclave`; cluster id 7.
//!         let config = Config::new(id, 7, voters.clone());
//!         let rng = rand_chacha::ChaCha8Rng::seed_from_u64(id);
//!         let node = Node::new(config, RestoredState::default(), rng, 0).unwrap();
//!         Member { node, hard_state: HardState::default(), log: Vec::new(), applied: Vec::new() }
//!     })
//!     .collect();
//! let mut network: VecDeque<Message> = VecDeque::new();
//! let command = b"set x 1".to_vec();
//! let mut proposed = false;
//!
//! // Virtual time, 1 ms a round; bounded so that a bug cannot hang the test.
//! for now_ms in 1..=10_000u64 {
//!     // Tick: each node fires whatever timer is due (election, heartbeat, …).
//!     for member in &mut members {
//!         let output = member.node.tick(now_ms);
//!         member.handle(output, &mut network);
//!     }
//!     // Step: deliver everything in flight (and what the answers send).
//!     for _ in 0..10_000 {
//!         let Some(message) = network.pop_front() else { break };
//!         let member = members.iter_mut().find(|member| member.node.id() == message.to).unwrap();
//!         let output = member.node.step(message);
//!         member.handle(output, &mut network);
//!     }
//!     // Propose once a leader serves (in `conclave` mode, once its
//!     // `BecomeLeader` entry committed).
//!     if !proposed {
//!         if let Some(leader) = members.iter_mut().find(|member| member.node.is_serving()) {
//!             let proposal = leader.node.propose(command.clone()).unwrap();
//!             leader.handle(proposal.output, &mut network);
//!             proposed = true;
//!         }
//!     }
//!     if members.iter().all(|member| member.applied == [command.clone()]) {
//!         break;
//!     }
//! }
//! assert!(members.iter().all(|member| member.applied == [command.clone()]), "every node applied the command");
//!
//! // What the disk holds is enough to restart: a node rebuilt from it has the
//! // same log and term.
//! let member = &members[1];
//! let restored = RestoredState { hard_state: member.hard_state, entries: member.log.clone(), snapshot: None };
//! let rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
//! let restarted = Node::new(member.node.config().clone(), restored, rng, 10_000).unwrap();
//! assert_eq!((restarted.term(), restarted.log().all()), (member.node.term(), member.node.log().all()));
//! ```
//!
//! A one-node cluster is its own quorum, which makes the read path short to
//! show: a linearizable read is confirmed at once, at the index just applied.
//!
//! ```
//! use conclave_core::{Config, Node, ReadState, RestoredState, Role};
//! use rand::SeedableRng;
//!
//! let config = Config::new(1, 7, vec![1]);
//! let rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
//! let mut node = Node::new(config, RestoredState::default(), rng, 0).unwrap();
//! for _ in 0..100 {
//!     if node.is_serving() {
//!         break;
//!     }
//!     let output = node.tick(node.next_deadline_ms());
//!     assert!(output.messages.is_empty(), "nobody else to talk to");
//! }
//! assert_eq!(node.role(), Role::Leader);
//! let proposal = node.propose(b"set x 1".to_vec()).unwrap();
//! assert_eq!(proposal.output.committed_entries.last().unwrap().index, proposal.index);
//! let read = node.read_index(99).unwrap();
//! assert_eq!(read.read_states, vec![ReadState { context: 99, index: proposal.index }]);
//! ```
//!
//! The design behind all of it, by topic, is in the repository's
//! `docs/design/` (start with `docs/design/architecture.md`).
#![deny(missing_docs)]

pub mod config;
pub mod election;
pub mod entry;
pub mod log;
pub mod membership;
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
pub use membership::{InvalidChange, Member, MemberAddresses, Membership, MembershipChange, DEFAULT_PRIORITY};
pub use message::{AppendOutcome, Body, Message, PeerState, VoteChoice};
pub use node::{
    BatchProposal, ChangeError, CompactError, Node, Proposal, ProposeError, ReadIndexError, RestoredState, StartError,
    TransferError, TransferStarted,
};
pub use output::{Detector, DurableMark, Event, HardState, LogWrite, Output, ReadState};
pub use snapshot::{Snapshot, SnapshotChunk, SnapshotMeta};
pub use status::{DropCounters, DropReason, FollowerStatus, Role, Status};
pub use types::{ClusterId, LogIndex, NodeId, Term};
