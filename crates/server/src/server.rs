//! Starting and stopping one node: open the WAL, restore the core, bind the
//! listeners, spawn the driver, the transport, the client API and the HTTP
//! endpoint; on shutdown stop accepting, let in-flight requests finish (within
//! the grace period), flush the WAL and close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conclave_core::{LogIndex, Node, NodeId};
use conclave_storage::{LogStore, Wal, WalOptions};
use rand::SeedableRng;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::client::{self, ClientSettings};
use crate::config::{EngineKind, ServerConfig};
use crate::driver::admin::{self, AdminRequest, HandOverError, HandedOver};
use crate::driver::{restore_store, Driver, Published, Restored};
use crate::error::ServerError;
use crate::kv::engine::ENGINE_FILE;
use crate::kv::{EngineIdentity, EngineStore, LsmStore, StateMachine};
use crate::membership::MemberTable;
use crate::observe::Observability;
use crate::peer::Transport;
use crate::status::NodeStatus;

/// A started node.
pub struct RunningServer {
    /// Where the client API listens (the bound port if the config said 0).
    pub client_address: SocketAddr,
    /// Where the peer transport listens.
    pub peer_address: SocketAddr,
    /// Where the HTTP status endpoint listens, if configured.
    pub http_address: Option<SocketAddr>,
    status: watch::Receiver<NodeStatus>,
    /// Tells listeners and client connections to stop and the driver to drain.
    drain: watch::Sender<bool>,
    /// Tells the peer transport to stop, once the driver is done.
    stop_peers: watch::Sender<bool>,
    /// The driver thread's result: dropped unsent if it panicked.
    driver: oneshot::Receiver<Result<(), ServerError>>,
    /// Operator requests to the driver.
    admin: mpsc::Sender<AdminRequest>,
    /// How long a hand-over may take: two election timeouts.
    hand_over_wait: Duration,
}

async fn bind(address: SocketAddr, purpose: &'static str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(address).await.map_err(|source| ServerError::Bind { address, purpose, source })
}

fn local_address(listener: &TcpListener, fallback: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(fallback)
}

/// The file in the data dir that holds the node's latest incarnation.
pub const INCARNATION_FILE: &str = "incarnation";

/// This start's incarnation, greater than every earlier start's of the node
/// from this data dir: the latest one is kept durably in
/// [`INCARNATION_FILE`] and this one is the greater of the next number and
/// the wall clock in nanoseconds (so a node whose data dir was wiped still
/// gets a greater one, unless its clock went back). The state machine keeps
/// request ids by incarnation and refuses an older incarnation's entries
/// (docs/decisions/0060-exactly-once-writes.md), so it must never repeat.
/// Called with the data dir locked (the WAL is open).
pub fn next_incarnation(data_dir: &std::path::Path) -> Result<u64, ServerError> {
    let path = data_dir.join(INCARNATION_FILE);
    let io = |path: &std::path::Path, source| conclave_storage::StorageError::io(path, source);
    let previous = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text.trim().parse::<u64>().map_err(|_| {
            let reason = format!("not an incarnation number: {:?}", text.trim());
            io(&path, std::io::Error::new(std::io::ErrorKind::InvalidData, reason))
        })?),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(io(&path, source).into()),
    };
    let clock = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos() as u64);
    let incarnation = previous.map_or(clock, |previous| clock.max(previous.saturating_add(1)));
    let temporary = data_dir.join(format!("{INCARNATION_FILE}.tmp"));
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&temporary).map_err(|source| io(&temporary, source))?;
        file.write_all(format!("{incarnation}\n").as_bytes()).map_err(|source| io(&temporary, source))?;
        file.sync_all().map_err(|source| io(&temporary, source))?;
    }
    std::fs::rename(&temporary, &path).map_err(|source| io(&path, source))?;
    std::fs::File::open(data_dir).and_then(|dir| dir.sync_all()).map_err(|source| io(data_dir, source))?;
    Ok(incarnation)
}

/// Validates `config`, restores the node from its data dir and starts serving.
pub async fn start(mut config: ServerConfig) -> Result<RunningServer, ServerError> {
    config.validate()?;
    let me = config.me().expect("validated: the node is a member").clone();
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| conclave_storage::StorageError::io(config.data_dir.clone(), source))?;
    let options =
        WalOptions::new(config.cluster_id, config.node_id).with_segment_bytes(config.snapshot.wal_segment_bytes);
    let wal = Wal::open(&config.data_dir, options)?;
    let restored = wal.restored_state()?;
    info!(
        node = config.node_id,
        term = restored.hard_state.term,
        entries = restored.entries.len(),
        commit = restored.hard_state.commit,
        snapshot_index = restored.snapshot.as_ref().map_or(0, |snapshot| snapshot.meta.last_included_index),
        data_dir = %config.data_dir.display(),
        "restored from the WAL"
    );
    // Settled once, before the state machine opens: everything after reads
    // the one engine this node runs.
    let log_base =
        restored.snapshot.as_ref().map(|snapshot| (snapshot.meta.last_included_index, snapshot.data.is_empty()));
    let (engine, choice) =
        crate::kv::engine_choice::resolve_engine(&config.data_dir, config.state_machine.engine, log_base)
            .map_err(ServerError::Engine)?;
    config.state_machine.engine = Some(engine);
    info!(node = config.node_id, engine = engine.name(), chosen = choice.describe(), "state machine engine");
    let observe = Observability::new(config.node_id);
    let incarnation = next_incarnation(&config.data_dir)?;
    // Elections need randomness; determinism is the simulator's business, not a live node's.
    let rng = rand_chacha::ChaCha8Rng::seed_from_u64(incarnation ^ config.node_id.rotate_left(32));
    // The store first: one that cannot be opened, or a snapshot that is not a
    // KV store, stops the start before anything listens.
    let saved = restored.snapshot.as_ref().map(|snapshot| (snapshot.meta.last_included_index, &snapshot.data[..]));
    let (machine, applied_index) = open_machine(&config, saved, &observe)?;
    let mut restored = restored;
    if config.state_machine.engine().is_on_disk() {
        // The engine holds the state at or beyond the saved snapshot: the
        // core keeps none of its bytes, and makes a fresh snapshot from the
        // engine when a follower needs one (docs/decisions/0086). Start-up
        // reads nothing that grows with the data.
        if let Some(snapshot) = restored.snapshot.as_mut() {
            snapshot.data = bytes::Bytes::new();
        }
        conclave_storage::snapshot::remove_outgoing(&config.data_dir)?;
    }
    let incoming = match config.state_machine.engine() {
        EngineKind::Redb | EngineKind::Fjall => {
            Some(conclave_storage::incoming::IncomingSnapshotFile::new(&config.data_dir)?)
        }
        EngineKind::Memory => None,
    };
    let node = Node::new(config.core_config(), restored, rng, 0)?;
    let members = MemberTable::resolve(node.membership(), node.membership_index(), &config);
    if let Some(disagreement) = crate::membership::config_disagreement(&members, &config) {
        warn!(node = config.node_id, "{disagreement}");
    }
    if config.join && !node.status().voter && members.members.is_empty() {
        info!(node = config.node_id, "waiting to be added to a cluster (conclave admin add-learner)");
    }
    let restored = Restored { node, machine, applied_index, incoming };

    let peer_listener = bind(me.peer_address, "peers").await?;
    let client_listener = bind(me.client_address, "clients").await?;
    let http_listener = match me.http_address {
        Some(address) => Some(bind(address, "http").await?),
        None => None,
    };
    let peer_address = local_address(&peer_listener, me.peer_address);
    let client_address = local_address(&client_listener, me.client_address);
    let http_address =
        http_listener.as_ref().zip(me.http_address).map(|(listener, address)| local_address(listener, address));

    let (drain, drain_rx) = watch::channel(false);
    let (stop_peers, stop_peers_rx) = watch::channel(false);
    let (status_tx, status) = watch::channel(Driver::initial_status(&config));
    let (peer_tx, peer_rx) = mpsc::channel(8192);
    let (gone_tx, gone_rx) = mpsc::channel(64);
    let (client_tx, client_rx) = mpsc::channel(65_536);
    let (admin_tx, admin_rx) = mpsc::channel(16);

    let transport = Transport::start(&config, &members, peer_listener, peer_tx, gone_tx, stop_peers_rx);
    let (members_tx, members_rx) = watch::channel(Arc::new(members));
    let published = Published { status: status_tx, members: members_tx };
    let driver = Driver::new(&config, restored, wal, transport, published, incarnation, observe.clone());
    let grace = Duration::from_millis(config.timing.shutdown_grace_ms);
    let driver =
        spawn_driver(config.node_id, driver.run(peer_rx, gone_rx, client_rx, admin_rx, drain_rx.clone(), grace))?;
    let hand_over_wait = Duration::from_millis(2 * config.election_timeout_ms());
    let settings = Arc::new(ClientSettings::new(
        &config,
        client_tx,
        admin_tx.clone(),
        status.clone(),
        members_rx,
        observe.clone(),
    ));
    tokio::spawn(client::run_listener(client_listener, settings, drain_rx.clone()));
    if let Some(listener) = http_listener {
        tokio::spawn(crate::http::run(listener, status.clone(), observe, drain_rx));
    }
    info!(node = config.node_id, %client_address, %peer_address, ?http_address, "serving");
    Ok(RunningServer {
        client_address,
        peer_address,
        http_address,
        status,
        drain,
        stop_peers,
        driver,
        admin: admin_tx,
        hand_over_wait,
    })
}

/// The state machine of `config`, at its applied index. The engine opens at
/// the index its file records; if that is behind the saved snapshot (the node
/// crashed after saving a leader's snapshot, before the engine switched to
/// it, or the file is new), the snapshot is installed into it first.
fn open_machine(
    config: &ServerConfig,
    saved: Option<(LogIndex, &[u8])>,
    observe: &Observability,
) -> Result<(Box<dyn StateMachine>, LogIndex), ServerError> {
    match config.state_machine.engine() {
        EngineKind::Memory => {
            let (store, applied_index) = restore_store(saved)?;
            Ok((Box::new(store), applied_index))
        }
        EngineKind::Redb | EngineKind::Fjall => {
            let identity = EngineIdentity { cluster_id: config.cluster_id, node_id: config.node_id };
            let cache_bytes = config.state_machine.cache_bytes;
            observe.metrics.state_machine_cache_bytes.store(cache_bytes, std::sync::atomic::Ordering::Relaxed);
            let (mut engine, path): (Box<dyn StateMachine>, _) = match config.state_machine.engine() {
                EngineKind::Fjall => {
                    // A rebuild cut short by a crash is removed when it opens.
                    let path = config.data_dir.join(crate::kv::lsm::LSM_DIR);
                    {
                        let compress = config.state_machine.compression == crate::config::Compression::Lz4;
                        let options =
                            crate::kv::lsm::LsmOptions { compress, ..crate::kv::lsm::LsmOptions::new(cache_bytes) };
                        (Box::new(LsmStore::open_with(&path, identity, options)?), path)
                    }
                }
                _ => {
                    // A rebuild from a leader's snapshot that a crash cut
                    // short: the switch to it (a rename) never happened.
                    let installing = config.data_dir.join(crate::kv::engine::INSTALLING_FILE);
                    match std::fs::remove_file(&installing) {
                        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                            return Err(ServerError::Storage(conclave_storage::StorageError::io(&installing, error)));
                        }
                        _ => {}
                    }
                    let path = config.data_dir.join(ENGINE_FILE);
                    (Box::new(EngineStore::open(&path, identity, cache_bytes)?), path)
                }
            };
            if let Some((covered, data)) = saved {
                if engine.applied_index() < covered && data.is_empty() {
                    // The log was compacted behind the engine's durable index,
                    // so the engine cannot be behind it unless its file was
                    // replaced or lost: the entries between are gone.
                    return Err(ServerError::Snapshot(format!(
                        "the state machine file {} holds the state at index {}, behind the log, which begins after \
                         index {covered}; the entries between are gone (restore the file, or wipe the data \
                         directory to rejoin as a new node)",
                        path.display(),
                        engine.applied_index()
                    )));
                }
                if engine.applied_index() < covered {
                    // A leader's snapshot saved before the engine switched to
                    // it: one that is not a KV state stops the start.
                    check_saved_snapshot(covered, data)?;
                    warn!(
                        node = config.node_id,
                        engine_index = engine.applied_index(),
                        snapshot_index = covered,
                        path = %path.display(),
                        "the state machine file is behind the saved snapshot; installing the snapshot into it"
                    );
                    let index = engine.install_snapshot(data).map_err(|error| {
                        ServerError::Snapshot(format!("the saved snapshot up to index {covered}: {error}"))
                    })?;
                    if index != covered {
                        return Err(ServerError::Snapshot(format!(
                            "the saved snapshot up to index {covered} holds the KV state at index {index}"
                        )));
                    }
                }
            }
            let applied_index = engine.applied_index();
            info!(node = config.node_id, applied_index, path = %path.display(), "state machine opened");
            Ok((engine, applied_index))
        }
    }
}

fn check_saved_snapshot(covered: LogIndex, data: &[u8]) -> Result<(), ServerError> {
    let checked =
        crate::kv::snapshot::visit_snapshot(data, |_, _| Ok::<_, crate::kv::SnapshotDecodeError>(()), |_| Ok(()));
    match checked {
        Ok((index, _)) if index == covered => Ok(()),
        Ok((index, _)) => Err(ServerError::Snapshot(format!(
            "the saved snapshot up to index {covered} holds the KV state at index {index}"
        ))),
        Err(error) => Err(ServerError::Snapshot(format!("the saved snapshot up to index {covered}: {error}"))),
    }
}

impl RunningServer {
    /// The node's latest status.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// A receiver of status updates.
    pub fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    /// Hands leadership over to `target` (or the most up-to-date member) and
    /// waits, at most two election timeouts, until another member leads a
    /// later term. `conclave serve` does this on SIGTERM when it leads, so a
    /// rolling restart waits out no election timeout (docs/decisions/0099).
    pub async fn hand_over(&self, target: Option<NodeId>) -> Result<HandedOver, HandOverError> {
        admin::hand_over(&self.admin, self.status.clone(), target, self.hand_over_wait).await
    }

    /// Completes if the driver stops on its own (a fatal storage error).
    pub async fn stopped(&mut self) -> Result<(), ServerError> {
        let result = (&mut self.driver).await;
        flatten(result)
    }

    /// Stops accepting, drains in-flight requests, flushes and closes.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        info!("shutting down");
        let _ = self.drain.send(true);
        let result = flatten(self.driver.await);
        let _ = self.stop_peers.send(true);
        if let Err(error) = &result {
            warn!(%error, "the driver stopped with an error");
        }
        result
    }
}

fn flatten(joined: Result<Result<(), ServerError>, oneshot::error::RecvError>) -> Result<(), ServerError> {
    joined.map_err(|_| ServerError::DriverTask("the driver thread ended without a result (it panicked)".into()))?
}

/// Runs the driver on a thread of its own, in a single-threaded runtime: its
/// timers and steps never wait behind client or peer connections' tasks for
/// one of the shared workers, and its thread keeps the process's priority
/// while the threads of bulk work run below it (docs/decisions/0096). The
/// blocking work it starts (WAL writes) runs on its runtime's blocking pool.
fn spawn_driver(
    node: NodeId,
    run: impl std::future::Future<Output = Result<(), ServerError>> + Send + 'static,
) -> Result<oneshot::Receiver<Result<(), ServerError>>, ServerError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ServerError::Runtime)?;
    let (done, result) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("driver-{node}"))
        .spawn(move || {
            let _ = done.send(runtime.block_on(run));
        })
        .map_err(ServerError::Runtime)?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_start_gets_a_greater_incarnation_even_if_the_clock_is_behind() {
        let dir = tempfile::tempdir().unwrap();
        let first = next_incarnation(dir.path()).unwrap();
        let second = next_incarnation(dir.path()).unwrap();
        assert!(second > first, "{second} after {first}");
        // A clock far behind the saved number: the number still grows.
        std::fs::write(dir.path().join(INCARNATION_FILE), format!("{}\n", u64::MAX - 5)).unwrap();
        assert_eq!(next_incarnation(dir.path()).unwrap(), u64::MAX - 4);
        std::fs::write(dir.path().join(INCARNATION_FILE), "garbage").unwrap();
        let error = next_incarnation(dir.path()).unwrap_err().to_string();
        assert!(error.contains(INCARNATION_FILE), "{error}");
    }
}
