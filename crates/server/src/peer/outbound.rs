//! Dialling one peer: connect from our own peer IP, handshake, then write its
//! queue in batches; on any error, redial with exponential backoff.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

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

/// Keeps a connection to `peer` alive until shutdown, writing `queue` to it.
pub(crate) async fn run(
    settings: Arc<PeerSettings>,
    peer: NodeId,
    address: SocketAddr,
    queue: Arc<PeerQueue>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = settings.reconnect_min;
    loop {
        let attempt = tokio::select! {
            _ = shutdown.changed() => return,
            attempt = connect(&settings, peer, address) => attempt,
        };
        match attempt {
            Ok(stream) => {
                info!(peer, %address, "connected to peer");
                backoff = settings.reconnect_min;
                tokio::select! {
                    _ = shutdown.changed() => return,
                    error = write_queue(stream, &queue) => {
                        warn!(peer, %address, %error, "peer connection lost; redialling");
                    }
                }
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

async fn connect(settings: &PeerSettings, peer: NodeId, address: SocketAddr) -> io::Result<TcpStream> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // Bind to our own peer IP so that each node's traffic has its own source
    // address (127.0.0.11, .12, …) and one link can be cut by a firewall rule.
    if !settings.own_ip.is_unspecified() && same_family(settings.own_ip, address.ip()) {
        socket.bind(SocketAddr::new(settings.own_ip, 0))?;
    }
    let mut stream = tokio::time::timeout(settings.handshake_timeout, socket.connect(address))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    let handshake =
        Handshake { magic: HANDSHAKE_MAGIC, cluster_id: settings.cluster_id, from: settings.node_id, to: peer };
    let bytes = frame::encode(&handshake, HANDSHAKE_LIMIT).map_err(io::Error::other)?;
    stream.write_all(&bytes).await?;
    let reply = tokio::time::timeout(settings.handshake_timeout, read_reply(&mut stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no handshake reply"))??;
    match reply {
        HandshakeReply::Accepted => Ok(stream),
        HandshakeReply::Refused(reason) => {
            warn!(peer, %address, %reason, "peer refused our handshake");
            Err(io::Error::new(io::ErrorKind::PermissionDenied, reason))
        }
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

/// Writes the queue until the connection fails; returns the error.
async fn write_queue(stream: TcpStream, queue: &PeerQueue) -> io::Error {
    let (mut reader, writer) = stream.into_split();
    let mut writer = BufWriter::with_capacity(BATCH_BYTES, writer);
    let mut scratch = [0u8; 64];
    loop {
        tokio::select! {
            _ = queue.wait() => {}
            // The acceptor never writes after the handshake: a read that returns
            // means it closed the connection.
            read = reader.read(&mut scratch) => {
                return match read {
                    Ok(_) => io::Error::new(io::ErrorKind::ConnectionReset, "peer closed the connection"),
                    Err(error) => error,
                };
            }
        }
        loop {
            let batch = queue.take_batch(BATCH_BYTES);
            if batch.is_empty() {
                break;
            }
            for frame in &batch {
                if let Err(error) = writer.write_all(frame).await {
                    return error;
                }
            }
        }
        if let Err(error) = writer.flush().await {
            return error;
        }
    }
}
