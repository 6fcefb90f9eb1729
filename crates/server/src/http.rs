//! A minimal HTTP status endpoint: `GET /status` answers the node's
//! [`NodeStatus`] as JSON; anything else is a 404. One request per connection.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::debug;

use crate::status::NodeStatus;

/// A request head larger than this is refused.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves status requests until shutdown.
pub(crate) async fn run(
    listener: TcpListener,
    status: watch::Receiver<NodeStatus>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let status = status.clone();
        tokio::spawn(async move {
            if let Err(error) = answer(stream, status).await {
                debug!(%error, "http connection ended");
            }
        });
    }
}

async fn answer(mut stream: TcpStream, status: watch::Receiver<NodeStatus>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST_BYTES {
            return stream
                .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n")
                .await;
        }
        let read = tokio::time::timeout(READ_TIMEOUT, stream.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "slow http client"))??;
        if read == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..read]);
    }
    let request_line = head.split(|&byte| byte == b'\r').next().unwrap_or_default();
    let response = if request_line.starts_with(b"GET /status ") {
        let body = serde_json::to_string(&*status.borrow()).expect("a status always serializes");
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
