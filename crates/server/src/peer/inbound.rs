//! Accepting peers: check the handshake (cluster id, known member, addressed
//! to us), then hand every frame to the driver. Anything malformed closes the
//! connection with a log line saying why; nothing a peer sends can crash the node.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use conclave_core::NodeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::frame::{self, Handshake, HandshakeReply, PeerFrame, HANDSHAKE_MAGIC};
use super::{PeerInput, PeerSettings, HANDSHAKE_LIMIT};

/// Accepts peer connections until shutdown.
pub(crate) async fn run_listener(
    listener: TcpListener,
    settings: Arc<PeerSettings>,
    to_driver: mpsc::Sender<PeerInput>,
    mut shutdown: watch::Receiver<bool>,
    transport: super::Transport,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, address)) => {
                let settings = settings.clone();
                let to_driver = to_driver.clone();
                let shutdown = shutdown.clone();
                let transport = transport.clone();
                tokio::spawn(async move {
                    if let Err(error) = serve(stream, address, settings, to_driver, shutdown, transport).await {
                        debug!(%address, %error, "peer connection closed");
                    }
                });
            }
            Err(error) => warn!(%error, "peer accept failed"),
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    address: SocketAddr,
    settings: Arc<PeerSettings>,
    to_driver: mpsc::Sender<PeerInput>,
    mut shutdown: watch::Receiver<bool>,
    transport: super::Transport,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let handshake =
        tokio::time::timeout(settings.handshake_timeout, read_frame::<Handshake>(&mut stream, HANDSHAKE_LIMIT))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no handshake in time"))?;
    let handshake = match handshake {
        Ok(handshake) => handshake,
        Err(error) => {
            warn!(%address, %error, "refused peer: malformed handshake");
            return Err(error);
        }
    };
    let peer = match check(&handshake, &settings) {
        Ok(peer) => peer,
        Err(refusal) => {
            let reason = match &refusal {
                // Expected after a removal: the removed node says so itself.
                HandshakeReply::Removed(reason) => {
                    debug!(%address, %reason, "refused a removed peer");
                    reason.clone()
                }
                HandshakeReply::Refused(reason) => {
                    warn!(%address, %reason, "refused peer");
                    reason.clone()
                }
                HandshakeReply::Accepted => unreachable!("a refusal"),
            };
            let reply = frame::encode(&refusal, HANDSHAKE_LIMIT).map_err(io::Error::other)?;
            stream.write_all(&reply).await?;
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, reason));
        }
    };
    let reply = frame::encode(&HandshakeReply::Accepted, HANDSHAKE_LIMIT).map_err(io::Error::other)?;
    stream.write_all(&reply).await?;
    info!(peer, %address, "peer connected");
    if let Some(reply_to) = handshake.reply_to {
        transport.dial_back(peer, reply_to);
    }
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    loop {
        let frame = tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            frame = read_frame::<PeerFrame>(&mut reader, settings.max_frame_bytes) => frame,
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Err(error),
            Err(error) => {
                warn!(peer, %address, %error, "closing peer connection: bad frame");
                return Err(error);
            }
        };
        if let PeerFrame::Raft(message) = &frame {
            // The core drops a forged sender too, but a link that lies about who
            // it is has no business staying open.
            if message.from != peer {
                warn!(peer, claimed = message.from, "closing peer connection: message from another sender");
                return Err(io::Error::new(io::ErrorKind::InvalidData, "sender mismatch"));
            }
        }
        settings.heard.note(peer);
        if to_driver.send(PeerInput { from: peer, frame }).await.is_err() {
            return Ok(()); // The driver stopped.
        }
    }
}

/// The peer's id, or the refusal to send back.
fn check(handshake: &Handshake, settings: &PeerSettings) -> Result<NodeId, HandshakeReply> {
    let refuse = |reason: String| Err(HandshakeReply::Refused(reason));
    if handshake.magic != HANDSHAKE_MAGIC {
        return refuse(format!("bad magic {:#x}", handshake.magic));
    }
    if handshake.cluster_id != settings.cluster_id {
        return refuse(format!("wrong cluster id {} (this is cluster {})", handshake.cluster_id, settings.cluster_id));
    }
    if handshake.to != settings.node_id {
        return refuse(format!("addressed to node {} but this is node {}", handshake.to, settings.node_id));
    }
    if handshake.from == 0 || handshake.from == settings.node_id {
        return refuse(format!("node {} cannot be a peer of node {}", handshake.from, settings.node_id));
    }
    let leading = settings.leading.load(std::sync::atomic::Ordering::Relaxed);
    if leading && settings.removed.read().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(&handshake.from) {
        return Err(HandshakeReply::Removed(format!(
            "node {} was removed from cluster {}: add it back as a learner (conclave admin add-learner) to rejoin",
            handshake.from, settings.cluster_id
        )));
    }
    Ok(handshake.from)
}

async fn read_frame<T: for<'de> serde::Deserialize<'de>>(
    reader: &mut (impl AsyncReadExt + Unpin),
    limit: usize,
) -> io::Result<T> {
    let length = frame::check_length(reader.read_u32().await?, limit)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
    let mut content = vec![0; length];
    reader.read_exact(&mut content).await?;
    frame::decode(&content, limit).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}
