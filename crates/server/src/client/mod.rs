//! The RESP2 client API: one task per connection, bounded in number, each
//! reading pipelined requests, answering them strictly in order.

pub mod commands;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use conclave_core::{MembershipChange, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tracing::{debug, warn};

use crate::config::ServerConfig;
use crate::driver::admin::{self, AdminCommand, AdminRequest};
use crate::driver::requests::RequestError;
use crate::driver::ClientRequest;
use crate::kv::KvReply;
use crate::membership::MemberTable;
use crate::observe::metrics::increment;
use crate::observe::Observability;
use crate::resp::{self, reply, ParseLimits, Request};
use crate::status::NodeStatus;
use commands::{Action, Context, Session};

/// Most requests taken from one read before their replies are written.
const MAX_PIPELINE: usize = 1024;

/// Shared by every connection.
pub(crate) struct ClientSettings {
    pub(crate) password: Option<String>,
    pub(crate) limits: ParseLimits,
    /// Largest incomplete request held in a connection's buffer.
    pub(crate) max_request_bytes: usize,
    pub(crate) read_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_clients: usize,
    pub(crate) to_driver: mpsc::Sender<ClientRequest>,
    /// `ADMIN …` requests.
    pub(crate) admin: mpsc::Sender<AdminRequest>,
    /// How long `ADMIN TRANSFER` waits for the new leader: two election timeouts.
    pub(crate) hand_over_wait: Duration,
    /// How long a membership change may take to commit.
    pub(crate) change_wait: Duration,
    /// The membership, resolved, for `ADMIN MEMBERS` and redirects.
    pub(crate) members: watch::Receiver<Arc<MemberTable>>,
    pub(crate) status: watch::Receiver<NodeStatus>,
    pub(crate) observe: Arc<Observability>,
}

impl ClientSettings {
    pub(crate) fn new(
        config: &ServerConfig,
        to_driver: mpsc::Sender<ClientRequest>,
        admin: mpsc::Sender<AdminRequest>,
        status: watch::Receiver<NodeStatus>,
        members: watch::Receiver<Arc<MemberTable>>,
        observe: Arc<Observability>,
    ) -> ClientSettings {
        let limits = &config.limits;
        ClientSettings {
            password: config.password.clone(),
            limits: ParseLimits {
                max_bulk_bytes: limits.max_bulk_bytes,
                max_array_len: limits.max_array_len,
                max_inline_bytes: limits.max_inline_bytes,
            },
            max_request_bytes: limits.max_command_bytes + limits.max_inline_bytes,
            read_timeout: Duration::from_millis(config.timing.client_read_timeout_ms),
            idle_timeout: match config.timing.client_idle_timeout_ms {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
            max_clients: limits.max_clients,
            to_driver,
            admin,
            hand_over_wait: Duration::from_millis(2 * config.election_timeout_ms()),
            // A change commits in a round trip; a slow disk or a catch-up
            // may take longer, never an election timeout's worth of waits.
            change_wait: Duration::from_millis((4 * config.election_timeout_ms()).max(5_000)),
            members,
            status,
            observe,
        }
    }
}

/// Accepts clients until shutdown.
pub(crate) async fn run_listener(
    listener: TcpListener,
    settings: Arc<ClientSettings>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(settings.max_clients));
    let next_id = AtomicU64::new(1);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let (mut stream, address) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, most likely: back off instead of spinning.
                warn!(%error, "client accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%address, "refused client: max_clients reached");
            tokio::spawn(async move {
                let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
            });
            continue;
        };
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let settings = settings.clone();
        let shutdown = shutdown.clone();
        let metrics = &settings.observe.metrics;
        increment(&metrics.client_connections);
        increment(&metrics.client_connections_open);
        tokio::spawn(async move {
            if let Err(error) = serve(stream, address, id, &settings, shutdown).await {
                debug!(%address, %error, "client connection ended");
            }
            settings.observe.metrics.client_connections_open.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
}

enum Pending {
    Ready(Vec<u8>),
    Waiting(oneshot::Receiver<Result<KvReply, RequestError>>),
}

async fn serve(
    stream: TcpStream,
    address: SocketAddr,
    id: u64,
    settings: &ClientSettings,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (mut reader, mut writer) = stream.into_split();
    let mut buffer = BytesMut::with_capacity(16 * 1024);
    let mut session = Session { id, authenticated: settings.password.is_none(), ..Session::default() };
    let mut out = Vec::with_capacity(16 * 1024);
    loop {
        let mut pending = Vec::new();
        let mut close = false;
        let mut protocol_error = None;
        while pending.len() < MAX_PIPELINE {
            match resp::parse(&buffer, &settings.limits) {
                Ok(Some((request, used))) => {
                    buffer.advance(used);
                    let Request::Command(arguments) = request else { continue };
                    let status = || settings.status.borrow().clone();
                    let context = Context { password: settings.password.as_deref(), status: &status };
                    match commands::interpret(&arguments, &mut session, &context) {
                        Action::Reply(bytes) => pending.push(Pending::Ready(bytes)),
                        Action::Close(bytes) => {
                            pending.push(Pending::Ready(bytes));
                            close = true;
                            break;
                        }
                        Action::Admin(command) => {
                            // Waits here: an operator's command, one at a time.
                            pending.push(Pending::Ready(run_admin(settings, command).await));
                        }
                        Action::Kv(_) if *shutdown.borrow() => {
                            // Draining: requests read before it are answered;
                            // this one is not taken, and the connection closes
                            // without an answer, so the client sends it again
                            // to another node (it never reached this one's log).
                            close = true;
                            break;
                        }
                        Action::Kv(command) => {
                            let (reply, answer) = oneshot::channel();
                            let request =
                                ClientRequest { command, stale_read: session.stale_reads, connection: id, reply };
                            if settings.to_driver.send(request).await.is_err() {
                                pending.push(Pending::Ready(error_bytes(&RequestError::ShuttingDown)));
                            } else {
                                pending.push(Pending::Waiting(answer));
                            }
                        }
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    protocol_error = Some(error);
                    break;
                }
            }
        }
        let more_buffered = pending.len() >= MAX_PIPELINE;
        out.clear();
        let client_errors = &settings.observe.metrics.client_errors;
        for item in pending {
            match item {
                Pending::Ready(bytes) => {
                    // Each ready item is one reply; a RESP error starts with '-'.
                    if bytes.first() == Some(&b'-') {
                        increment(client_errors);
                    }
                    out.extend_from_slice(&bytes)
                }
                Pending::Waiting(answer) => match answer.await {
                    Ok(Ok(kv_reply)) => reply::kv(&mut out, &kv_reply),
                    Ok(Err(error)) => {
                        increment(client_errors);
                        out.extend_from_slice(&error_bytes(&error))
                    }
                    Err(_) => {
                        increment(client_errors);
                        out.extend_from_slice(&error_bytes(&RequestError::ShuttingDown))
                    }
                },
            }
        }
        if let Some(error) = &protocol_error {
            increment(client_errors);
            debug!(%address, %error, "closing client: protocol error");
            reply::error(&mut out, &format!("ERR {error}"));
        }
        if !out.is_empty() {
            writer.write_all(&out).await?;
        }
        if close || protocol_error.is_some() {
            return writer.shutdown().await;
        }
        if more_buffered {
            continue;
        }
        if buffer.len() > settings.max_request_bytes {
            let mut out = Vec::new();
            reply::error(&mut out, "ERR Protocol error: request exceeds limits.max_command_bytes");
            writer.write_all(&out).await?;
            return writer.shutdown().await;
        }
        // A half-sent request gets the read timeout; an idle client the idle timeout.
        let timeout = if buffer.is_empty() { settings.idle_timeout } else { Some(settings.read_timeout) };
        buffer.reserve(16 * 1024);
        let read = tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            read = read_with_timeout(&mut reader, &mut buffer, timeout) => read,
        };
        match read {
            Some(Ok(0)) => return Ok(()),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error),
            None if buffer.is_empty() => return Ok(()),
            None => {
                let mut out = Vec::new();
                reply::error(&mut out, "ERR Protocol error: incomplete request timed out");
                writer.write_all(&out).await?;
                return writer.shutdown().await;
            }
        }
    }
}

/// Reads more input; `None` when the timeout passes first.
async fn read_with_timeout(
    reader: &mut (impl AsyncReadExt + Unpin),
    buffer: &mut BytesMut,
    timeout: Option<Duration>,
) -> Option<io::Result<usize>> {
    match timeout {
        Some(timeout) => tokio::time::timeout(timeout, reader.read_buf(buffer)).await.ok(),
        None => Some(reader.read_buf(buffer).await),
    }
}

/// The answer to a finished `ADMIN TRANSFER`.
/// Runs an `ADMIN` command and returns its reply.
async fn run_admin(settings: &ClientSettings, command: AdminCommand) -> Vec<u8> {
    let mut bytes = Vec::new();
    let members = settings.members.borrow().clone();
    match command {
        AdminCommand::Members => {
            let status = settings.status.borrow().clone();
            match admin::members_json(&status, &members) {
                Some(json) => reply::bulk(&mut bytes, json.as_bytes()),
                None => reply::error(&mut bytes, &admin::not_leader_at(status.leader, &members)),
            }
        }
        AdminCommand::Transfer { target } => {
            let outcome =
                admin::hand_over(&settings.admin, settings.status.clone(), target, settings.hand_over_wait).await;
            match outcome {
                Ok(done) => reply::simple(&mut bytes, &transfer_done(&done)),
                Err(admin::HandOverError::Refused(conclave_core::TransferError::NotLeader { leader })) => {
                    reply::error(&mut bytes, &admin::not_leader_at(leader, &members))
                }
                Err(error) => reply::error(&mut bytes, &error.to_string()),
            }
        }
        AdminCommand::Change(MembershipChange::Remove { id })
            if is_leading(settings, id)
                && members.members.iter().filter(|member| member.role == "voter").count() == 1 =>
        {
            let error = conclave_core::ChangeError::Invalid(conclave_core::InvalidChange::LastVoter(id));
            reply::error(&mut bytes, &admin::ChangeFailure::Refused(error).describe(&members));
        }
        AdminCommand::Change(MembershipChange::Remove { id }) if is_leading(settings, id) => {
            // The leader hands over first (docs/design/membership.md); the
            // new leader removes it, and the redirect says where that is.
            let outcome =
                admin::hand_over(&settings.admin, settings.status.clone(), None, settings.hand_over_wait).await;
            match outcome {
                Ok(done) => reply::error(&mut bytes, &admin::not_leader_at(Some(done.leader), &members)),
                Err(error) => reply::error(&mut bytes, &error.to_string()),
            }
        }
        AdminCommand::Change(change) => {
            let summary = describe_change(&change);
            let outcome =
                admin::change_membership(&settings.admin, settings.status.clone(), change, settings.change_wait).await;
            match outcome {
                Ok(done) => reply::simple(&mut bytes, &format!("OK {summary}: committed at index {}", done.index)),
                Err(failure) => reply::error(&mut bytes, &failure.describe(&settings.members.borrow())),
            }
        }
    }
    bytes
}

/// Whether this node leads and is member `id`.
fn is_leading(settings: &ClientSettings, id: NodeId) -> bool {
    let status = settings.status.borrow();
    status.node_id == id && status.role == conclave_core::Role::Leader
}

fn describe_change(change: &MembershipChange) -> String {
    match change {
        MembershipChange::AddLearner { id, .. } => format!("node {id} added as a learner"),
        MembershipChange::Promote { id } => format!("node {id} promoted to voter"),
        MembershipChange::Remove { id } => format!("node {id} removed"),
        MembershipChange::SetPriority { id, priority } => format!("node {id} has priority {priority}"),
    }
}

fn transfer_done(done: &admin::HandedOver) -> String {
    match done.leader_term {
        Some(leader_term) => format!("OK node {} leads term {} (leader term {leader_term})", done.leader, done.term),
        None => format!("OK node {} leads term {}", done.leader, done.term),
    }
}

fn error_bytes(error: &RequestError) -> Vec<u8> {
    let mut out = Vec::new();
    reply::error(&mut out, &error.to_string());
    out
}
