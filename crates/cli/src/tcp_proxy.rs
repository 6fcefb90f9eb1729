//! What the nemesis's and the demo's link proxies share: a proxied
//! connection's two streams, and the copy loop of each direction. Each
//! keeps its own policy (the nemesis cuts links, the demo holds them and
//! takes them down with their node).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// One proxied connection: `inbound` (accepted) joined to a new connection
/// to `target`. Readers and writers of both directions, and a clone of each
/// stream to close it from outside.
pub struct Proxied {
    pub inbound_reader: TcpStream,
    pub outbound_writer: TcpStream,
    pub outbound_reader: TcpStream,
    pub inbound_writer: TcpStream,
    pub inbound_kept: TcpStream,
    pub outbound_kept: TcpStream,
}

/// Dials `target` for the accepted `inbound`; `None` if it cannot be reached.
pub fn connect(inbound: TcpStream, target: SocketAddr) -> Option<Proxied> {
    let outbound = TcpStream::connect_timeout(&target, Duration::from_secs(1)).ok()?;
    (|| -> io::Result<Proxied> {
        inbound.set_nodelay(true)?;
        outbound.set_nodelay(true)?;
        Ok(Proxied {
            inbound_reader: inbound.try_clone()?,
            outbound_reader: outbound.try_clone()?,
            inbound_kept: inbound.try_clone()?,
            outbound_kept: outbound.try_clone()?,
            inbound_writer: inbound,
            outbound_writer: outbound,
        })
    })()
    .ok()
}

/// Copies `from` to `to` until either side closes or `may_forward` (asked
/// before each write) says no, then closes both.
pub fn pump(mut from: TcpStream, mut to: TcpStream, may_forward: impl Fn() -> bool) {
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(read @ 1..) = from.read(&mut buffer) {
        if !may_forward() || to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
