//! Dialling one peer: connect from our own peer IP, handshake, then write its
//! queue in batches; on any error, redial with exponential backoff.
//!
//! A connection that was up and is lost (closed or reset) is redialled at once.
//! If that redial is *refused* — or, when it raced the peer's listener going
//! away, one of the quick redials that follow it is — the peer's host answered
//! and nothing listens on its port: its process is gone, and the driver is told
//! (docs/decisions/0050, 0072). A timeout, an unreachable host, or a redial that
//! succeeds is no such evidence: the counted misses judge those.
//!
//! A connection on which the peer stays silent for two election timeouts while
//! this node speaks to it (heartbeats, or anything the peer answers) is closed
//! and redialled, and the kernel gives up on unacknowledged data as fast (TCP
//! user timeout): a link that was cut and healed carries frames again within
//! about one election timeout instead of waiting out TCP's retransmission
//! backoff (docs/decisions/0052).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use conclave_core::NodeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::frame::{self, Handshake, HandshakeReply, HANDSHAKE_MAGIC};
use super::queue::PeerQueue;
use super::{PeerSettings, HANDSHAKE_LIMIT};

/// Bytes gathered into one write.
const BATCH_BYTES: usize = 256 * 1024;
/// Pause between the redials after a lost connection while each one connects
/// but is reset before its handshake reply (the peer's listener is closing: a
/// dying process's sockets close one by one). Short, since each pause is part
/// of the failover (docs/decisions/0072).
const QUICK_REDIAL_PAUSE: Duration = Duration::from_millis(1);
/// Redials after a lost connection, at most; they end at the first that is
/// refused, connects, or fails otherwise.
const QUICK_REDIALS: u32 = 20;

/// Why a connection ended.
#[derive(Debug)]
enum Ended {
    /// Closed or reset by the peer's side, or a write failed.
    Lost(io::Error),
    /// The peer stayed silent while spoken to (`PeerSettings::silence_limit`).
    Silent,
}

/// What the redial right after a lost connection found.
#[derive(Debug)]
enum Redial {
    /// Connected again: the peer is alive (a link flap, or it restarted).
    Connected(TcpStream),
    /// Refused: the peer's process is gone.
    Refused,
    /// Anything else (a timeout, an unreachable host): no evidence either way.
    Failed(io::Error),
}

/// How often a removed node dials a peer that refused it as removed.
const REMOVED_REDIAL: Duration = Duration::from_secs(2);

/// A peer refused the handshake: this node was removed from the membership.
#[derive(Debug)]
struct Removed(String);

impl std::fmt::Display for Removed {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for Removed {}

fn removed(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<Removed>())
}

/// Keeps a connection to `peer` alive until shutdown, writing `queue` to it.
pub(crate) async fn run(
    settings: Arc<PeerSettings>,
    peer: NodeId,
    address: SocketAddr,
    queue: Arc<PeerQueue>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = settings.reconnect_min;
    let mut ready: Option<TcpStream> = None;
    let mut told_removed = false;
    loop {
        let attempt = match ready.take() {
            Some(stream) => Ok(stream),
            None => tokio::select! {
                _ = shutdown.changed() => return,
                attempt = connect(&settings, peer, address) => attempt,
            },
        };
        match attempt {
            Ok(stream) => {
                info!(peer, %address, "connected to peer");
                backoff = settings.reconnect_min;
                let ended = tokio::select! {
                    _ = shutdown.changed() => return,
                    ended = write_queue(stream, &queue, &settings, peer) => ended,
                };
                match ended {
                    Ended::Lost(error) => {
                        warn!(peer, %address, %error, "peer connection lost; redialling at once");
                        let redial = tokio::select! {
                            _ = shutdown.changed() => return,
                            redial = redial_after_loss(&settings, peer, address) => redial,
                        };
                        match redial {
                            Redial::Connected(stream) => ready = Some(stream),
                            Redial::Refused => report_process_gone(&settings, peer, address),
                            Redial::Failed(error) => {
                                debug!(peer, %address, %error, "redial failed: no evidence either way")
                            }
                        }
                    }
                    Ended::Silent => {
                        warn!(
                            peer,
                            %address,
                            silent_ms = settings.silence_limit().as_millis() as u64,
                            "peer silent while spoken to; redialling"
                        );
                    }
                }
                // A connection that was up: the next dial goes at once.
                continue;
            }
            Err(error) if removed(&error) => {
                // Told once per peer task; dialled again slowly, so that a
                // node added back hears its peers again (docs/design/membership.md).
                if !told_removed {
                    warn!(peer, %address, %error, "this node was removed from the cluster: it takes no part until added back");
                    told_removed = true;
                }
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(REMOVED_REDIAL) => {}
                }
                continue;
            }
            Err(error) => {
                debug!(peer, %address, %error, retry_in_ms = backoff.as_millis() as u64, "cannot reach peer");
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(settings.reconnect_max);
    }
}

/// The redial right after a lost connection: refused means the peer's process
/// is gone. A redial that connected but was reset before its handshake reply
/// raced the peer's listener closing: another one, a millisecond later,
/// decides (at most `QUICK_REDIALS` in all).
async fn redial_after_loss(settings: &PeerSettings, peer: NodeId, address: SocketAddr) -> Redial {
    for attempt in 1..=QUICK_REDIALS {
        match connect(settings, peer, address).await {
            Ok(stream) => return Redial::Connected(stream),
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => return Redial::Refused,
            Err(error) if attempt < QUICK_REDIALS && is_reset(&error) => tokio::time::sleep(QUICK_REDIAL_PAUSE).await,
            Err(error) => return Redial::Failed(error),
        }
    }
    Redial::Failed(io::Error::new(io::ErrorKind::ConnectionReset, "every quick redial was reset"))
}

fn is_reset(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::UnexpectedEof
    )
}

fn report_process_gone(settings: &PeerSettings, peer: NodeId, address: SocketAddr) {
    let Some(process_gone) = &settings.process_gone else {
        return info!(peer, %address, "peer refused our redial (fast detection is off)");
    };
    warn!(peer, %address, "peer refused our redial: its process is gone");
    // A full channel means the driver has plenty of the same news already.
    let _ = process_gone.try_send(peer);
}

async fn connect(settings: &PeerSettings, peer: NodeId, address: SocketAddr) -> io::Result<TcpStream> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // Bind to our own peer IP so that each node's traffic has its own source
    // address (127.0.0.11, .12, …) and one link can be cut by a firewall rule.
    if !settings.own_ip.is_unspecified() && same_family(settings.own_ip, address.ip()) {
        socket.bind(SocketAddr::new(settings.own_ip, 0))?;
    }
    let dial_timeout = settings.dial_timeout();
    let mut stream = tokio::time::timeout(dial_timeout, socket.connect(address))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    set_user_timeout(&stream, settings.election_timeout * 2);
    let handshake = Handshake {
        magic: HANDSHAKE_MAGIC,
        cluster_id: settings.cluster_id,
        from: settings.node_id,
        to: peer,
        reply_to: Some(settings.own_address),
    };
    let bytes = frame::encode(&handshake, HANDSHAKE_LIMIT).map_err(io::Error::other)?;
    stream.write_all(&bytes).await?;
    let reply = tokio::time::timeout(dial_timeout, read_reply(&mut stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no handshake reply"))??;
    match reply {
        HandshakeReply::Accepted => Ok(stream),
        HandshakeReply::Refused(reason) => {
            warn!(peer, %address, %reason, "peer refused our handshake");
            Err(io::Error::new(io::ErrorKind::PermissionDenied, reason))
        }
        HandshakeReply::Removed(reason) => Err(io::Error::other(Removed(reason))),
    }
}

async fn read_reply(stream: &mut TcpStream) -> io::Result<HandshakeReply> {
    let length = frame::check_length(stream.read_u32().await?, HANDSHAKE_LIMIT).map_err(io::Error::other)?;
    let mut content = vec![0; length];
    stream.read_exact(&mut content).await?;
    frame::decode(&content, HANDSHAKE_LIMIT).map_err(io::Error::other)
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// The kernel gives up on data left unacknowledged this long (instead of
/// retransmitting for many minutes), and on an idle connection whose peer is
/// gone (keepalive): the connection fails, and is redialled.
fn set_user_timeout(stream: &TcpStream, timeout: Duration) {
    let socket = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(1))
        .with_interval(Duration::from_secs(1))
        .with_retries(3);
    if let Err(error) = socket.set_tcp_keepalive(&keepalive).and_then(|()| socket.set_tcp_user_timeout(Some(timeout))) {
        debug!(%error, "cannot set the peer connection's keepalive and user timeout");
    }
}

/// Writes the queue until the connection fails or the peer falls silent.
async fn write_queue(stream: TcpStream, queue: &PeerQueue, settings: &PeerSettings, peer: NodeId) -> Ended {
    let (mut reader, writer) = stream.into_split();
    let mut writer = BufWriter::with_capacity(BATCH_BYTES, writer);
    let mut scratch = [0u8; 64];
    let mut silence = Silence { peer, spoken_at_ms: None };
    let mut check = tokio::time::interval(settings.election_timeout / 4);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = queue.wait() => {}
            // The acceptor never writes after the handshake: a read that returns
            // means it closed the connection.
            read = reader.read(&mut scratch) => {
                return Ended::Lost(match read {
                    Ok(_) => io::Error::new(io::ErrorKind::ConnectionReset, "peer closed the connection"),
                    Err(error) => error,
                });
            }
            _ = check.tick() => {
                if silence.is_stale(settings) {
                    return Ended::Silent;
                }
                continue;
            }
        }
        loop {
            let batch = queue.take_batch(BATCH_BYTES);
            if batch.is_empty() {
                break;
            }
            for frame in &batch {
                if let Err(error) = writer.write_all(frame).await {
                    return Ended::Lost(error);
                }
            }
            silence.spoke(settings);
        }
        if let Err(error) = writer.flush().await {
            return Ended::Lost(error);
        }
    }
}

/// Whether the peer stays silent while spoken to: the first frame written
/// after the peer was last heard starts the clock; hearing it stops it.
struct Silence {
    peer: NodeId,
    /// When the first frame since the peer was last heard was written.
    spoken_at_ms: Option<u64>,
}

impl Silence {
    fn spoke(&mut self, settings: &PeerSettings) {
        let heard_ms = settings.heard.last_ms(self.peer);
        if self.spoken_at_ms.is_none_or(|at_ms| heard_ms >= at_ms) {
            self.spoken_at_ms = Some(settings.heard.now_ms());
        }
    }

    fn is_stale(&mut self, settings: &PeerSettings) -> bool {
        let Some(spoken_at_ms) = self.spoken_at_ms else { return false };
        if settings.heard.last_ms(self.peer) >= spoken_at_ms {
            self.spoken_at_ms = None;
            return false;
        }
        settings.heard.now_ms() >= spoken_at_ms + settings.silence_limit().as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PeerSettings {
        PeerSettings {
            cluster_id: 1,
            node_id: 1,
            removed: Default::default(),
            leading: Default::default(),
            own_ip: IpAddr::from([127, 0, 0, 1]),
            own_address: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_frame_bytes: 1 << 20,
            handshake_timeout: Duration::from_secs(2),
            reconnect_min: Duration::from_millis(10),
            reconnect_max: Duration::from_millis(100),
            election_timeout: Duration::from_secs(2),
            heard: super::super::HeardFrom::new([1, 2]),
            process_gone: None,
        }
    }

    /// A dying process's listener can take several connections into its
    /// backlog and reset them before it closes. The redials go on, a
    /// millisecond apart, until one is refused: evidence. (With one quick
    /// redial after the first, three resets ended as no evidence at all.)
    #[test]
    fn a_listener_that_resets_several_redials_before_closing_is_found_gone() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let closer = std::thread::spawn({
            let done = done.clone();
            move || {
                let mut resets = 0;
                // Ends once the redials are over, whatever they found.
                while resets < 3 && !done.load(std::sync::atomic::Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).unwrap();
                            drop(stream); // A reset, before any handshake reply.
                            resets += 1;
                        }
                        Err(_) => std::thread::park_timeout(Duration::from_micros(200)),
                    }
                }
                // Dropping the listener resets what its backlog still holds.
            }
        });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let redial = runtime.block_on(redial_after_loss(&settings(), 2, address));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        closer.join().unwrap();
        assert!(matches!(redial, Redial::Refused), "{redial:?}");
    }

    /// A peer that answers its handshake is alive: no evidence.
    #[test]
    fn a_redial_that_is_answered_is_no_evidence() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let acceptor = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut stream, _) = listener.accept().unwrap();
            let mut length = [0u8; 4];
            stream.read_exact(&mut length).unwrap();
            let mut handshake = vec![0u8; u32::from_be_bytes(length) as usize];
            stream.read_exact(&mut handshake).unwrap();
            let reply = frame::encode(&HandshakeReply::Accepted, HANDSHAKE_LIMIT).unwrap();
            stream.write_all(&reply).unwrap();
            stream
        });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let redial = runtime.block_on(redial_after_loss(&settings(), 2, address));
        drop(acceptor.join().unwrap());
        assert!(matches!(redial, Redial::Connected(_)), "{redial:?}");
    }
}
