//! The demo's peer links, each through a small TCP proxy the demo controls, so
//! that it can make a follower fall behind: holding the link `leader → node`
//! stops the leader's appends from reaching that node while its connection
//! stays open and silent. At the kill the held bytes are thrown away, so the
//! node keeps the data version it had (a paused process would instead read the
//! dead leader's last appends from its socket when resumed).
//!
//! Each node dials every other node and sends on that connection only, so the
//! link `from → to` is one proxy (as in the nemesis, docs/decisions/0056). A
//! proxy listens on `127.0.0.(100 + to)`, an address nothing else binds: while
//! node `to` is down its proxies stop listening, so a redial is refused as it
//! would be by the node's own host, and the `process_gone` detector still works.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use conclave_server::Member;

/// The longest a held byte waits: the demo always releases or drops a hold
/// well within this; past it the connection is closed rather than left hanging.
const LONGEST_HOLD: Duration = Duration::from_secs(30);

struct Link {
    /// Node `to` is down: no connection is accepted or kept.
    down: AtomicBool,
    /// Bytes from `from` are read but not forwarded.
    held: Mutex<bool>,
    /// Signalled when a hold ends.
    released: Condvar,
    target: SocketAddr,
    /// Open connections (both sides of each).
    connections: Mutex<Vec<TcpStream>>,
}

impl Link {
    fn held(&self) -> MutexGuard<'_, bool> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close_all(&self) {
        for stream in self.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Every peer link of the demo's cluster.
pub struct Links {
    links: HashMap<(u64, u64), Arc<Link>>,
    addresses: HashMap<(u64, u64), SocketAddr>,
}

impl Links {
    /// Starts one proxy for each ordered pair of members.
    pub fn start(members: &[Member]) -> io::Result<Links> {
        let mut links = Links { links: HashMap::new(), addresses: HashMap::new() };
        for from in members {
            for to in members.iter().filter(|to| to.id != from.id) {
                let link = Arc::new(Link {
                    down: AtomicBool::new(false),
                    held: Mutex::new(false),
                    released: Condvar::new(),
                    target: to.peer_address,
                    connections: Mutex::new(Vec::new()),
                });
                let listener = TcpListener::bind((proxy_ip(to.id), 0))?;
                links.addresses.insert((from.id, to.id), listener.local_addr()?);
                links.links.insert((from.id, to.id), link.clone());
                spawn_accept(listener, link)?;
            }
        }
        Ok(links)
    }

    /// Where node `from` dials node `to`.
    pub fn address(&self, from: u64, to: u64) -> SocketAddr {
        self.addresses[&(from, to)]
    }

    /// Holds the link `from → to`: what `from` sends is kept back.
    pub fn hold(&self, from: u64, to: u64) {
        *self.links[&(from, to)].held() = true;
    }

    /// Drops what the links from `from` hold: their connections close (the held
    /// bytes with them) and the links carry new connections again.
    pub fn drop_held_from(&self, from: u64) {
        for (&(sender, _), link) in &self.links {
            if sender == from {
                let mut held = link.held();
                if *held {
                    link.close_all();
                    *held = false;
                    link.released.notify_all();
                }
            }
        }
    }

    /// Node `node` is about to go down: its proxies stop listening, so a
    /// peer's redial is refused as by the node's own host. Its connections stay
    /// until [`Links::node_gone`]: a node still alive must not redial past a
    /// hold and deliver what the hold kept back.
    pub fn refuse_dials_to(&self, node: u64) {
        for (&(from, to), link) in &self.links {
            if to == node {
                link.down.store(true, Ordering::SeqCst);
                // Wake the accept loop, which then closes its listener.
                let _ = TcpStream::connect_timeout(&self.addresses[&(from, to)], Duration::from_millis(200));
            }
        }
        // Bounded: each accept loop exits at its wake-up connection.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline
            && self
                .links
                .keys()
                .any(|&(from, to)| to == node && TcpStream::connect(self.addresses[&(from, to)]).is_ok())
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Node `node` is down: every connection to or from it closes, and what
    /// the links from it held is thrown away.
    pub fn node_gone(&self, node: u64) {
        self.drop_held_from(node);
        for (&(from, to), link) in &self.links {
            if to == node || from == node {
                link.close_all();
            }
        }
    }

    /// Node `node` comes back: its proxies listen again on the same addresses.
    pub fn node_up(&self, node: u64) -> io::Result<()> {
        for (&(from, to), link) in &self.links {
            if to == node && link.down.swap(false, Ordering::SeqCst) {
                let listener = TcpListener::bind(self.addresses[&(from, to)])?;
                spawn_accept(listener, link.clone())?;
            }
        }
        Ok(())
    }
}

/// The loopback address node `id`'s proxies listen on.
fn proxy_ip(id: u64) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 100 + id as u8)
}

fn spawn_accept(listener: TcpListener, link: Arc<Link>) -> io::Result<()> {
    std::thread::Builder::new().name("demo link".into()).spawn(move || accept(listener, link)).map(drop)
}

/// Accepts until the link goes down; the listener closes with the loop.
fn accept(listener: TcpListener, link: Arc<Link>) {
    for incoming in listener.incoming() {
        if link.down.load(Ordering::SeqCst) {
            return;
        }
        let Ok(inbound) = incoming else { continue };
        let Some(proxied) = crate::tcp_proxy::connect(inbound, link.target) else { continue };
        {
            let mut connections = link.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            connections.push(proxied.inbound_kept);
            connections.push(proxied.outbound_kept);
        }
        let forward = link.clone();
        let (inbound_reader, outbound) = (proxied.inbound_reader, proxied.outbound_writer);
        let (outbound_reader, inbound) = (proxied.outbound_reader, proxied.inbound_writer);
        let _ = std::thread::Builder::new()
            .spawn(move || crate::tcp_proxy::pump(inbound_reader, outbound, || wait_while_held(&forward)));
        let _ = std::thread::Builder::new().spawn(move || crate::tcp_proxy::pump(outbound_reader, inbound, || true));
    }
}

/// The forward direction (`from`'s messages) waits while its link is held;
/// false past [`LONGEST_HOLD`], which closes the connection rather than
/// leave it hanging.
fn wait_while_held(link: &Link) -> bool {
    let held = link.held();
    let (held, _) =
        link.released.wait_timeout_while(held, LONGEST_HOLD, |held| *held).unwrap_or_else(PoisonError::into_inner);
    !*held
}
