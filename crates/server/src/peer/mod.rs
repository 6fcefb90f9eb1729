//! The peer transport: TCP between nodes.
//!
//! Each node dials every other node once and uses that connection only to send
//! (one task per peer, `outbound`); what it receives arrives on connections
//! the others dialled (`inbound`). Frames are length-prefixed with a version
//! byte ([`frame`]); each peer has a two-class bounded queue ([`queue`]).

pub mod frame;
mod inbound;
mod outbound;
pub mod queue;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use conclave_core::{Body, ClusterId, Message, NodeId};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::ServerConfig;
use crate::membership::MemberTable;
use frame::PeerFrame;
use queue::PeerQueue;

/// Handshakes and their replies are small; anything larger is refused.
pub(crate) const HANDSHAKE_LIMIT: usize = 4096;

/// A frame received from a peer whose handshake was accepted.
#[derive(Debug)]
pub struct PeerInput {
    /// The authenticated sender.
    pub from: NodeId,
    /// What it sent.
    pub frame: PeerFrame,
}

/// What both directions of the transport need to know.
#[derive(Debug)]
pub(crate) struct PeerSettings {
    pub(crate) cluster_id: ClusterId,
    pub(crate) node_id: NodeId,
    /// Ids whose removal from the membership this node knows committed.
    /// While this node leads, their handshakes are refused with the reason,
    /// so a removed node says in its log that it was removed; a follower
    /// takes them (it may be behind a change that added the node back, and
    /// the core screens what it sends). Any other id is accepted: a node
    /// behind a membership change must still hear the members it does not
    /// know yet (docs/design/membership.md).
    pub(crate) removed: RwLock<BTreeSet<NodeId>>,
    /// Whether this node leads (set by the driver on every role change).
    pub(crate) leading: std::sync::atomic::AtomicBool,
    pub(crate) own_ip: IpAddr,
    /// Where this node's peer transport listens (sent in each handshake).
    pub(crate) own_address: SocketAddr,
    pub(crate) max_frame_bytes: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    /// The election timeout: a connection whose peer stays silent twice this
    /// long while spoken to is redialled, and one dial (connect and handshake)
    /// gets at most this long, so that a healed link carries the log again within
    /// about one election timeout (docs/decisions/0052).
    pub(crate) election_timeout: Duration,
    /// When each peer was last heard from.
    pub(crate) heard: HeardFrom,
    /// Where the evidence that a peer's process is gone goes (the driver), if
    /// `timing.fast_detection` is on.
    pub(crate) process_gone: Option<mpsc::Sender<NodeId>>,
}

impl PeerSettings {
    /// A peer silent this long while spoken to gets its connection redialled:
    /// two election timeouts, so that a peer that is only slow (a loaded host,
    /// a long fsync before it answers) is not cut off for it; a connection that
    /// is really stuck is found well before its link heals after any cut that
    /// outlasts TCP's own first retransmissions.
    pub(crate) fn silence_limit(&self) -> Duration {
        self.election_timeout * 2
    }

    /// The longest a dial may take: connect, then the handshake's reply.
    pub(crate) fn dial_timeout(&self) -> Duration {
        self.handshake_timeout.min(self.election_timeout)
    }
}

/// When each peer was last heard from: any frame, on any connection it dialled.
#[derive(Debug)]
pub(crate) struct HeardFrom {
    start: Instant,
    /// Peer -> milliseconds after `start` of its latest frame (0: never).
    at_ms: RwLock<HashMap<NodeId, AtomicU64>>,
}

impl HeardFrom {
    pub(crate) fn new(peers: impl IntoIterator<Item = NodeId>) -> HeardFrom {
        let at_ms = peers.into_iter().map(|id| (id, AtomicU64::new(0))).collect();
        HeardFrom { start: Instant::now(), at_ms: RwLock::new(at_ms) }
    }

    /// Starts tracking `peer` (a new member), if not yet.
    fn track(&self, peer: NodeId) {
        let mut at_ms = self.at_ms.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        at_ms.entry(peer).or_insert_with(|| AtomicU64::new(0));
    }

    /// Milliseconds since the transport started.
    pub(crate) fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    /// A frame from `peer` arrived.
    pub(crate) fn note(&self, peer: NodeId) {
        let at_ms = self.at_ms.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(at_ms) = at_ms.get(&peer) {
            at_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// When `peer` was last heard from (0: never).
    pub(crate) fn last_ms(&self, peer: NodeId) -> u64 {
        let at_ms = self.at_ms.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        at_ms.get(&peer).map_or(0, |at_ms| at_ms.load(Ordering::Relaxed))
    }
}

/// One peer this node dials: its queue, where it listens, and how to stop
/// the task that writes to it.
#[derive(Debug)]
struct PeerLink {
    queue: Arc<PeerQueue>,
    address: SocketAddr,
    stop: watch::Sender<bool>,
}

/// The sending side, used by the driver.
#[derive(Debug, Clone)]
pub struct Transport {
    links: Arc<RwLock<HashMap<NodeId, PeerLink>>>,
    settings: Arc<PeerSettings>,
    queue_frames: usize,
    shutdown: watch::Receiver<bool>,
    max_frame_bytes: usize,
}

impl Transport {
    /// Starts listening on `listener` and dialling every other member of
    /// `members`. A peer whose process is found gone (a lost connection, then
    /// a refused redial) is named on `process_gone`, if `timing.fast_detection`
    /// is on.
    pub(crate) fn start(
        config: &ServerConfig,
        members: &MemberTable,
        listener: TcpListener,
        to_driver: mpsc::Sender<PeerInput>,
        process_gone: mpsc::Sender<NodeId>,
        shutdown: watch::Receiver<bool>,
    ) -> Transport {
        let me = config.me().expect("validated: the node is a member");
        let settings = Arc::new(PeerSettings {
            cluster_id: config.cluster_id,
            node_id: config.node_id,
            removed: RwLock::new(BTreeSet::new()),
            leading: std::sync::atomic::AtomicBool::new(false),
            own_ip: me.peer_address.ip(),
            // The configured address is the one others can reach; port 0
            // (tests) means "the port bound".
            own_address: match me.peer_address.port() {
                0 => listener.local_addr().unwrap_or(me.peer_address),
                _ => me.peer_address,
            },
            max_frame_bytes: config.limits.max_frame_bytes,
            handshake_timeout: Duration::from_millis(config.timing.peer_handshake_timeout_ms),
            reconnect_min: Duration::from_millis(config.timing.reconnect_min_ms),
            reconnect_max: Duration::from_millis(config.timing.reconnect_max_ms),
            election_timeout: Duration::from_millis(config.election_timeout_ms()),
            heard: HeardFrom::new(std::iter::empty()),
            process_gone: config.timing.fast_detection.then_some(process_gone),
        });
        let transport = Transport {
            links: Arc::new(RwLock::new(HashMap::new())),
            settings: settings.clone(),
            queue_frames: config.limits.peer_queue_frames,
            shutdown: shutdown.clone(),
            max_frame_bytes: config.limits.max_frame_bytes,
        };
        transport.set_members(members);
        // On shutdown every peer task stops, those started later included
        // (`set_members` starts none once it is set).
        let (links, mut stopping) = (transport.links.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _ = stopping.changed().await;
            for link in links.read().unwrap_or_else(|poisoned| poisoned.into_inner()).values() {
                let _ = link.stop.send(true);
            }
        });
        tokio::spawn(inbound::run_listener(listener, settings, to_driver, shutdown, transport.clone()));
        transport
    }

    /// A peer this node does not dial reached it: dial it back at the
    /// address its handshake gave, so that answers reach it. The next
    /// membership change keeps the link or drops it.
    pub(crate) fn dial_back(&self, peer: NodeId, address: SocketAddr) {
        if self.links.read().unwrap_or_else(|poisoned| poisoned.into_inner()).contains_key(&peer) {
            return;
        }
        let mut links = self.links.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Checked under the lock: the shutdown task stops the links it finds
        // under it, so none is added after it ran.
        if links.contains_key(&peer) || *self.shutdown.borrow() {
            return;
        }
        info!(peer, %address, "dialling back a peer outside this node's membership");
        self.settings.heard.track(peer);
        let queue = Arc::new(PeerQueue::new(self.queue_frames));
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(outbound::run(self.settings.clone(), peer, address, queue.clone(), stopped));
        links.insert(peer, PeerLink { queue, address, stop });
    }

    /// Dials the members of `members` it does not dial yet (or dials again
    /// at a new address), and stops dialling a peer that is no member and
    /// has been silent for two election timeouts: a node dialled back (a
    /// leader this node does not know as a member yet) stays reachable while
    /// it talks to this node. Committed removals are refused at the handshake
    /// while this node leads.
    pub(crate) fn set_members(&self, members: &MemberTable) {
        if members.committed {
            *self.settings.removed.write().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                members.removed.iter().copied().collect();
        }
        let wanted: HashMap<NodeId, SocketAddr> = members.peers(self.settings.node_id).into_iter().collect();
        let now_ms = self.settings.heard.now_ms();
        let silence_ms = self.settings.silence_limit().as_millis() as u64;
        let mut links = self.links.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        links.retain(|id, link| {
            let keep = match wanted.get(id) {
                Some(address) => *address == link.address,
                None => now_ms.saturating_sub(self.settings.heard.last_ms(*id)) < silence_ms,
            };
            if !keep {
                info!(peer = id, address = %link.address, "no longer dialling peer");
                let _ = link.stop.send(true);
            }
            keep
        });
        if *self.shutdown.borrow() {
            return;
        }
        for (id, address) in wanted {
            if links.contains_key(&id) {
                continue;
            }
            self.settings.heard.track(id);
            let queue = Arc::new(PeerQueue::new(self.queue_frames));
            let (stop, stopped) = watch::channel(false);
            tokio::spawn(outbound::run(self.settings.clone(), id, address, queue.clone(), stopped));
            links.insert(id, PeerLink { queue, address, stop });
        }
    }

    /// Whether this node leads: only a leader refuses a removed node.
    pub(crate) fn set_leading(&self, leading: bool) {
        self.settings.leading.store(leading, Ordering::Relaxed);
    }

    fn queue(&self, to: NodeId) -> Option<Arc<PeerQueue>> {
        self.links.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&to).map(|link| link.queue.clone())
    }

    /// Queues `frame` for `to`. Never blocks; an unencodable frame is logged and dropped
    /// (the protocol re-sends, a forward times out into `-TRYAGAIN`).
    pub fn send(&self, to: NodeId, frame: &PeerFrame) {
        let Some(queue) = self.queue(to) else {
            warn!(to, "no such peer; frame dropped");
            return;
        };
        if let PeerFrame::Raft(Message { body: Body::InstallSnapshot { .. }, .. }) = frame {
            // A snapshot chunk is a slice of a mapped file whose pages may
            // have to come from disk: encoding it reads them, so it happens on
            // a blocking thread, not on the task that drives the node. Chunks
            // may overtake other frames: the protocol takes any order.
            let (queue, frame, limit) = (queue.clone(), frame.clone(), self.max_frame_bytes);
            tokio::task::spawn_blocking(move || match frame::encode(&frame, limit) {
                Ok(bytes) => queue.push_bulk(bytes, None),
                Err(error) => warn!(to, %error, "frame not sent"),
            });
            return;
        }
        let bytes = match frame::encode(frame, self.max_frame_bytes) {
            Ok(bytes) => bytes,
            Err(error) => return warn!(to, %error, "frame not sent"),
        };
        match frame {
            PeerFrame::Forward { request_id, .. } | PeerFrame::ForwardRead { request_id, .. } => {
                queue.push_bulk(bytes, Some(*request_id))
            }
            frame if frame.is_urgent() => queue.push_urgent(bytes),
            _ => queue.push_bulk(bytes, None),
        }
    }

    /// Takes back the forwards queued for every peer but `keep` that were never
    /// written (the peer is down or no longer the leader): they can be re-sent.
    pub fn take_unsent_forwards(&self, keep: Option<NodeId>) -> Vec<u64> {
        let links = self.links.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        links
            .iter()
            .filter(|(id, _)| Some(**id) != keep)
            .flat_map(|(_, link)| link.queue.take_unsent_forwards())
            .collect()
    }

    /// Frames dropped from full queues, over all peers.
    pub fn dropped_frames(&self) -> u64 {
        let links = self.links.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        links.values().map(|link| link.queue.dropped()).sum()
    }
}
