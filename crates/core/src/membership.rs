//! The membership: who votes, who only learns, where each is reached, and
//! which ids were removed (docs/design/membership.md).
//!
//! It lives in the log (`Payload::Membership`) and in every snapshot; a node
//! acts on the latest one in its log, committed or not (Raft thesis §4.1).
//! Changes go one at a time and move at most one voter, so every majority of
//! the old voters meets every majority of the new ones.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::types::NodeId;

/// Priority of a member that names none: every member leads as readily.
pub const DEFAULT_PRIORITY: u32 = 1;

/// Where a member is reached. The core never reads these: they travel with
/// the membership so that every node (a new one included) learns them from the
/// log. Empty means "as the node's own configuration says".
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberAddresses {
    /// The peer (replication) address.
    pub peer: String,
    /// The client (RESP) address.
    pub client: String,
    /// The HTTP (status, metrics) address.
    pub http: String,
}

/// One member.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// A voter counts in every quorum; a learner only receives the log.
    pub voter: bool,
    /// Breaks ties between equal data versions in elections and picks a
    /// transfer's target; 0 = lead only when no one else can.
    pub priority: u32,
    /// Where it is reached.
    pub addresses: MemberAddresses,
}

/// The members of a cluster at some log index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Membership {
    /// Every member by id.
    pub members: BTreeMap<NodeId, Member>,
    /// Ids removed since and not added back: their messages are dropped, so a
    /// removed node that never heard of its removal cannot disturb the cluster.
    pub removed: BTreeSet<NodeId>,
}

/// One change, as an operator asks for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MembershipChange {
    /// A new member that receives the log and never votes.
    AddLearner {
        /// Its id: new, or one removed earlier (a replaced node).
        id: NodeId,
        /// Where it is reached.
        addresses: MemberAddresses,
    },
    /// A learner becomes a voter.
    Promote {
        /// The learner.
        id: NodeId,
    },
    /// A member leaves.
    Remove {
        /// The member.
        id: NodeId,
    },
    /// A member's priority.
    SetPriority {
        /// The member.
        id: NodeId,
        /// Its new priority.
        priority: u32,
    },
}

impl MembershipChange {
    /// The member the change is about.
    pub fn id(&self) -> NodeId {
        match self {
            MembershipChange::AddLearner { id, .. }
            | MembershipChange::Promote { id }
            | MembershipChange::Remove { id }
            | MembershipChange::SetPriority { id, .. } => *id,
        }
    }
}

/// Why a change is impossible on a given membership.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidChange {
    /// Adding an id that is already a member.
    #[error("node {0} is already a member")]
    AlreadyMember(NodeId),
    /// Adding a node at an address another member has.
    #[error("address {address} is already node {holder}'s")]
    AddressInUse {
        /// The address.
        address: String,
        /// Who has it.
        holder: NodeId,
    },
    /// The id names no member.
    #[error("node {0} is not a member")]
    UnknownNode(NodeId),
    /// Promoting a voter.
    #[error("node {0} is already a voter")]
    AlreadyVoter(NodeId),
    /// Removing the only voter.
    #[error("removing node {0} would leave no voter")]
    LastVoter(NodeId),
    /// The reserved id 0.
    #[error("node id 0 is reserved for \"nobody\"")]
    ReservedId,
    /// A learner without a peer address could never be reached.
    #[error("node {0} needs a peer address")]
    NoPeerAddress(NodeId),
}

impl Membership {
    /// The membership of a brand-new cluster: `voters` at the default
    /// priority, with what `known` says about each.
    pub fn bootstrap(voters: &[NodeId], known: &BTreeMap<NodeId, Member>) -> Membership {
        let members = voters
            .iter()
            .map(|id| {
                let member = known.get(id).cloned().map_or_else(
                    || Member { voter: true, priority: DEFAULT_PRIORITY, addresses: MemberAddresses::default() },
                    |member| Member { voter: true, ..member },
                );
                (*id, member)
            })
            .collect();
        Membership { members, removed: BTreeSet::new() }
    }

    /// The voters, ascending.
    pub fn voters(&self) -> Vec<NodeId> {
        self.members.iter().filter(|(_, member)| member.voter).map(|(id, _)| *id).collect()
    }

    /// The learners, ascending.
    pub fn learners(&self) -> Vec<NodeId> {
        self.members.iter().filter(|(_, member)| !member.voter).map(|(id, _)| *id).collect()
    }

    /// Whether `id` votes.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.members.get(&id).is_some_and(|member| member.voter)
    }

    /// Whether `id` is a member, voter or learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.members.contains_key(&id)
    }

    /// `id`'s priority; the default for a non-member.
    pub fn priority(&self, id: NodeId) -> u32 {
        self.members.get(&id).map_or(DEFAULT_PRIORITY, |member| member.priority)
    }

    /// What a membership must hold to be acted on; the error says what is
    /// wrong. The empty membership is a node's that waits to join (it knows
    /// none yet, and may compact entries that came before its first).
    pub fn check(&self) -> Result<(), String> {
        if self.members.is_empty() && self.removed.is_empty() {
            return Ok(());
        }
        if !self.members.values().any(|member| member.voter) {
            return Err(format!("membership {:?} has no voter", self.members.keys().collect::<Vec<_>>()));
        }
        if self.members.contains_key(&0) || self.removed.contains(&0) {
            return Err("membership names node 0, which is reserved".into());
        }
        if let Some(id) = self.removed.iter().find(|id| self.members.contains_key(id)) {
            return Err(format!("node {id} is both a member and removed"));
        }
        Ok(())
    }

    /// The membership after `change`, or why it cannot be made.
    pub fn apply(&self, change: &MembershipChange) -> Result<Membership, InvalidChange> {
        let mut next = self.clone();
        match change {
            MembershipChange::AddLearner { id, addresses } => {
                if *id == 0 {
                    return Err(InvalidChange::ReservedId);
                }
                if self.contains(*id) {
                    return Err(InvalidChange::AlreadyMember(*id));
                }
                if addresses.peer.is_empty() {
                    return Err(InvalidChange::NoPeerAddress(*id));
                }
                for (holder, member) in &self.members {
                    let theirs = [&member.addresses.peer, &member.addresses.client, &member.addresses.http];
                    let ours = [&addresses.peer, &addresses.client, &addresses.http];
                    if let Some(address) = ours.iter().find(|ours| !ours.is_empty() && theirs.contains(ours)) {
                        return Err(InvalidChange::AddressInUse { address: address.to_string(), holder: *holder });
                    }
                }
                next.removed.remove(id);
                let member = Member { voter: false, priority: DEFAULT_PRIORITY, addresses: addresses.clone() };
                next.members.insert(*id, member);
            }
            MembershipChange::Promote { id } => {
                let member = next.members.get_mut(id).ok_or(InvalidChange::UnknownNode(*id))?;
                if member.voter {
                    return Err(InvalidChange::AlreadyVoter(*id));
                }
                member.voter = true;
            }
            MembershipChange::Remove { id } => {
                let member = self.members.get(id).ok_or(InvalidChange::UnknownNode(*id))?;
                if member.voter && self.voters().len() == 1 {
                    return Err(InvalidChange::LastVoter(*id));
                }
                next.members.remove(id);
                next.removed.insert(*id);
            }
            MembershipChange::SetPriority { id, priority } => {
                next.members.get_mut(id).ok_or(InvalidChange::UnknownNode(*id))?.priority = *priority;
            }
        }
        debug_assert!(next.check().is_ok(), "a valid change keeps a membership valid");
        debug_assert!(moves_at_most_one_voter(self, &next), "single-server changes only");
        Ok(next)
    }
}

/// Whether `next`'s voters differ from `previous`'s by at most one id: the
/// condition under which any majority of either meets any majority of the
/// other (Raft thesis §4.1).
pub fn moves_at_most_one_voter(previous: &Membership, next: &Membership) -> bool {
    let (before, after): (BTreeSet<NodeId>, BTreeSet<NodeId>) =
        (previous.voters().into_iter().collect(), next.voters().into_iter().collect());
    before.symmetric_difference(&after).count() <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Membership {
        Membership::bootstrap(&[1, 2, 3], &BTreeMap::new())
    }

    fn addresses(port: u16) -> MemberAddresses {
        MemberAddresses {
            peer: format!("127.0.0.1:{port}"),
            client: format!("127.0.0.1:{}", port + 1),
            http: String::new(),
        }
    }

    #[test]
    fn a_learner_is_added_promoted_and_removed() {
        let added = three().apply(&MembershipChange::AddLearner { id: 4, addresses: addresses(9000) }).unwrap();
        assert_eq!(added.voters(), vec![1, 2, 3]);
        assert_eq!(added.learners(), vec![4]);
        let promoted = added.apply(&MembershipChange::Promote { id: 4 }).unwrap();
        assert_eq!(promoted.voters(), vec![1, 2, 3, 4]);
        let removed = promoted.apply(&MembershipChange::Remove { id: 1 }).unwrap();
        assert_eq!(removed.voters(), vec![2, 3, 4]);
        assert!(removed.removed.contains(&1));
        // Added back after removal (a replaced node): no longer a tombstone.
        let back = removed.apply(&MembershipChange::AddLearner { id: 1, addresses: addresses(9100) }).unwrap();
        assert!(!back.removed.contains(&1));
        assert_eq!(back.learners(), vec![1]);
    }

    #[test]
    fn impossible_changes_say_why() {
        let base = three().apply(&MembershipChange::AddLearner { id: 4, addresses: addresses(9000) }).unwrap();
        assert_eq!(
            base.apply(&MembershipChange::AddLearner { id: 2, addresses: addresses(9200) }),
            Err(InvalidChange::AlreadyMember(2))
        );
        assert_eq!(
            base.apply(&MembershipChange::AddLearner { id: 5, addresses: addresses(9000) }),
            Err(InvalidChange::AddressInUse { address: "127.0.0.1:9000".into(), holder: 4 })
        );
        assert_eq!(base.apply(&MembershipChange::Promote { id: 9 }), Err(InvalidChange::UnknownNode(9)));
        assert_eq!(base.apply(&MembershipChange::Promote { id: 1 }), Err(InvalidChange::AlreadyVoter(1)));
        let single = Membership::bootstrap(&[1], &BTreeMap::new());
        assert_eq!(single.apply(&MembershipChange::Remove { id: 1 }), Err(InvalidChange::LastVoter(1)));
        assert_eq!(
            base.apply(&MembershipChange::AddLearner { id: 0, addresses: addresses(9300) }),
            Err(InvalidChange::ReservedId)
        );
        let no_peer = MemberAddresses::default();
        assert_eq!(
            base.apply(&MembershipChange::AddLearner { id: 5, addresses: no_peer }),
            Err(InvalidChange::NoPeerAddress(5))
        );
    }

    #[test]
    fn every_change_moves_at_most_one_voter() {
        let base = three();
        let mut two_moved = base.clone();
        two_moved.members.remove(&1);
        two_moved.members.remove(&2);
        assert!(!moves_at_most_one_voter(&base, &two_moved));
        let removed = base.apply(&MembershipChange::Remove { id: 3 }).unwrap();
        assert!(moves_at_most_one_voter(&base, &removed));
    }
}
