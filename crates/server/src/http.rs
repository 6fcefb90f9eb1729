//! A minimal HTTP endpoint, one request per connection:
//! - `GET /status`: the node's [`NodeStatus`] as JSON;
//! - `GET /health`: 200 when the node knows a serving leader, else 503;
//! - `GET /metrics`: Prometheus text format ([`crate::observe::metrics`]);
//! - `GET /events`: the election event log as a JSON array, oldest first.
//!
//! Anything else is a 404.

use std::sync::Arc;
use std::time::Duration;

use conclave_core::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::debug;

use crate::observe::Observability;
use crate::status::NodeStatus;

/// A request head larger than this is refused.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves HTTP requests until shutdown.
pub(crate) async fn run(
    listener: TcpListener,
    status: watch::Receiver<NodeStatus>,
    observe: Arc<Observability>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let status = status.clone();
        let observe = observe.clone();
        tokio::spawn(async move {
            if let Err(error) = answer(stream, status, observe).await {
                debug!(%error, "http connection ended");
            }
        });
    }
}

/// Healthy: a leader is known and serving — this node if it leads, else the
/// leader it follows (a follower only learns of a leader from its appends).
pub fn is_healthy(status: &NodeStatus) -> bool {
    match status.role {
        Role::Leader => status.serving,
        _ => status.leader.is_some_and(|leader| leader != status.node_id),
    }
}

fn respond(code: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {code}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn route(path: &[u8], status: &NodeStatus, observe: &Observability) -> String {
    const JSON: &str = "application/json";
    match path {
        b"/status" => respond("200 OK", JSON, &serde_json::to_string(status).expect("a status always serializes")),
        b"/health" => {
            let healthy = is_healthy(status);
            let body = serde_json::json!({ "healthy": healthy, "role": status.role, "leader": status.leader });
            respond(if healthy { "200 OK" } else { "503 Service Unavailable" }, JSON, &body.to_string())
        }
        b"/metrics" => respond("200 OK", "text/plain; version=0.0.4; charset=utf-8", &observe.metrics.render(status)),
        b"/events" => {
            let events = observe.events.snapshot();
            respond("200 OK", JSON, &serde_json::to_string(&events).expect("events always serialize"))
        }
        _ => respond("404 Not Found", "text/plain", ""),
    }
}

async fn answer(
    mut stream: TcpStream,
    status: watch::Receiver<NodeStatus>,
    observe: Arc<Observability>,
) -> std::io::Result<()> {
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
    let mut parts = request_line.split(|&byte| byte == b' ');
    let response = match (parts.next(), parts.next()) {
        (Some(b"GET"), Some(target)) => {
            // The query string does not matter to any route.
            let path = target.split(|&byte| byte == b'?').next().unwrap_or_default();
            let status = status.borrow().clone();
            route(path, &status, &observe)
        }
        _ => respond("405 Method Not Allowed", "text/plain", ""),
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
