//! The membership as the server uses it: the core's latest membership
//! (docs/design/membership.md) with every address resolved, published to the
//! transport (whom to dial), the client API (`ADMIN MEMBERS`, where a
//! redirect points) and the HTTP status.

use std::net::SocketAddr;

use conclave_core::{LogIndex, Membership, NodeId};
use serde::Serialize;

use crate::config::ServerConfig;

/// One member with its addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberRow {
    /// Its id.
    pub id: NodeId,
    /// `voter` or `learner`.
    pub role: &'static str,
    /// Its priority (docs/design/membership.md).
    pub priority: u32,
    /// Where its peer transport listens, if known.
    pub peer_address: Option<SocketAddr>,
    /// Where its clients connect, if known.
    pub client_address: Option<String>,
    /// Where its HTTP status listens, if known.
    pub http_address: Option<String>,
}

/// The membership a node acts on, resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemberTable {
    /// Where it sits in the log (0: the configuration's bootstrap membership).
    pub index: LogIndex,
    /// Whether this node knows it committed.
    pub committed: bool,
    /// Every member, by id.
    pub members: Vec<MemberRow>,
    /// Ids removed and not added back.
    pub removed: Vec<NodeId>,
}

impl MemberTable {
    /// Resolves `membership` (at `index`): an address the log leaves empty
    /// (a bootstrap member's) comes from the configuration file's
    /// `[[members]]`.
    pub fn resolve(
        membership: &Membership,
        (index, committed): (LogIndex, bool),
        config: &ServerConfig,
    ) -> MemberTable {
        let members = membership
            .members
            .iter()
            .map(|(id, member)| {
                let configured = config.members.iter().find(|configured| configured.id == *id);
                let text = |logged: &str| (!logged.is_empty()).then(|| logged.to_string());
                MemberRow {
                    id: *id,
                    role: if member.voter { "voter" } else { "learner" },
                    priority: member.priority,
                    peer_address: member
                        .addresses
                        .peer
                        .parse()
                        .ok()
                        .or_else(|| configured.map(|configured| configured.peer_address)),
                    client_address: text(&member.addresses.client)
                        .or_else(|| configured.map(|configured| configured.client_address.to_string())),
                    http_address: text(&member.addresses.http)
                        .or_else(|| configured.and_then(|configured| configured.http_address.map(|a| a.to_string()))),
                }
            })
            .collect();
        MemberTable { index, committed, members, removed: membership.removed.iter().copied().collect() }
    }

    /// The member `id`, if it is one.
    pub fn get(&self, id: NodeId) -> Option<&MemberRow> {
        self.members.iter().find(|member| member.id == id)
    }

    /// Where clients of member `id` connect, if known.
    pub fn client_address(&self, id: NodeId) -> Option<&str> {
        self.get(id).and_then(|member| member.client_address.as_deref())
    }

    /// Every member but `me` whose peer address is known: whom to dial.
    pub fn peers(&self, me: NodeId) -> Vec<(NodeId, SocketAddr)> {
        self.members
            .iter()
            .filter(|member| member.id != me)
            .filter_map(|member| member.peer_address.map(|address| (member.id, address)))
            .collect()
    }
}

/// How the configuration file's `[[members]]` differ from the membership in
/// the log, if they do and the log has its own (index above 0): the log wins,
/// and the difference is worth a line in the node's log.
pub fn config_disagreement(table: &MemberTable, config: &ServerConfig) -> Option<String> {
    if table.index == 0 || config.join {
        return None;
    }
    let logged: Vec<NodeId> =
        table.members.iter().filter(|member| member.role == "voter").map(|member| member.id).collect();
    let mut configured: Vec<NodeId> = config.members.iter().map(|member| member.id).collect();
    configured.sort_unstable();
    (logged != configured).then(|| {
        format!(
            "the config file lists members {configured:?}, the log's membership (index {}) has voters {logged:?} \
             and learners {:?}: the log's is used",
            table.index,
            table.members.iter().filter(|member| member.role == "learner").map(|member| member.id).collect::<Vec<_>>()
        )
    })
}
