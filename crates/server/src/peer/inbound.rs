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
                tokio::spawn(async move {
                    if let Err(error) = serve(stream, address, settings, to_driver, shutdown).await {
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
        Err(reason) => {
            warn!(%address, %reason, "refused peer");
            let reply =
                frame::encode(&HandshakeReply::Refused(reason.clone()), HANDSHAKE_LIMIT).map_err(io::Error::other)?;
            stream.write_all(&reply).await?;
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, reason));
        }
    };
    let reply = frame::encode(&HandshakeReply::Accepted, HANDSHAKE_LIMIT).map_err(io::Error::other)?;
    stream.write_all(&reply).await?;
    info!(peer, %address, "peer connected");
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

/// Why a handshake is refused, or the peer's id.
fn check(handshake: &Handshake, settings: &PeerSettings) -> Result<NodeId, String> {
    if handshake.magic != HANDSHAKE_MAGIC {
        return Err(format!("bad magic {:#x}", handshake.magic));
    }
    if handshake.cluster_id != settings.cluster_id {
        return Err(format!("wrong cluster id {} (this is cluster {})", handshake.cluster_id, settings.cluster_id));
    }
    if handshake.to != settings.node_id {
        return Err(format!("addressed to node {} but this is node {}", handshake.to, settings.node_id));
    }
    if handshake.from == settings.node_id || !settings.members.contains(&handshake.from) {
        return Err(format!("node {} is not a member of cluster {}", handshake.from, settings.cluster_id));
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
