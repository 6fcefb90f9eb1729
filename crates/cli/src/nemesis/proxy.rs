//! The links between nodes, each through a TCP proxy the nemesis controls, so
//! that a partition needs no privileges (no firewall rules to add and, above
//! all, none to forget on Ctrl-C: the proxies die with the nemesis).
//!
//! Each node dials every other node and sends on that connection only, so
//! the link `from → to` is one proxy: node `from`'s config names the proxy's
//! address as node `to`'s peer address. Cutting a link closes its connections
//! and refuses new ones (the dialler sees a reset, as after a peer's crash,
//! and redials with backoff); healing lets connections through again.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use conclave_server::Member;

struct Link {
    cut: AtomicBool,
    target: SocketAddr,
    /// Open connections (both sides of each), with a flag set once closed.
    connections: Mutex<Vec<(Arc<AtomicBool>, TcpStream)>>,
}

impl Link {
    fn close_all(&self) {
        for (_, stream) in self.connections.lock().expect("no thread panics holding it").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Every link of a cluster.
pub struct Links {
    links: HashMap<(u64, u64), Arc<Link>>,
    addresses: HashMap<(u64, u64), SocketAddr>,
}

impl Links {
    /// Starts one proxy for each ordered pair of members, on 127.0.0.1.
    pub fn start(members: &[Member]) -> io::Result<Links> {
        let mut links = HashMap::new();
        let mut addresses = HashMap::new();
        for from in members {
            for to in members.iter().filter(|to| to.id != from.id) {
                let listener = TcpListener::bind("127.0.0.1:0")?;
                addresses.insert((from.id, to.id), listener.local_addr()?);
                let link = Arc::new(Link {
                    cut: AtomicBool::new(false),
                    target: to.peer_address,
                    connections: Mutex::new(Vec::new()),
                });
                links.insert((from.id, to.id), link.clone());
                std::thread::Builder::new()
                    .name(format!("link {}->{}", from.id, to.id))
                    .spawn(move || accept(listener, link))?;
            }
        }
        Ok(Links { links, addresses })
    }

    /// Where node `from` dials node `to`.
    pub fn address(&self, from: u64, to: u64) -> SocketAddr {
        self.addresses[&(from, to)]
    }

    /// Cuts every link for which `connected(from, to)` is false, heals the others.
    pub fn set(&self, connected: impl Fn(u64, u64) -> bool) {
        for (&(from, to), link) in &self.links {
            let cut = !connected(from, to);
            link.cut.store(cut, Ordering::SeqCst);
            if cut {
                link.close_all();
            }
        }
    }

    /// Heals every link.
    pub fn heal(&self) {
        self.set(|_, _| true);
    }
}

fn accept(listener: TcpListener, link: Arc<Link>) {
    for incoming in listener.incoming() {
        let Ok(inbound) = incoming else { continue };
        if link.cut.load(Ordering::SeqCst) {
            continue; // Dropped: closed at once.
        }
        let Some(proxied) = crate::tcp_proxy::connect(inbound, link.target) else { continue };
        let closed = Arc::new(AtomicBool::new(false));
        {
            let mut connections = link.connections.lock().expect("no thread panics holding it");
            // A cut between the check above and here must not miss this pair.
            if link.cut.load(Ordering::SeqCst) {
                continue;
            }
            connections.retain(|(closed, _)| !closed.load(Ordering::SeqCst));
            connections.push((closed.clone(), proxied.inbound_kept));
            connections.push((closed.clone(), proxied.outbound_kept));
        }
        let other = closed.clone();
        let (inbound_reader, outbound) = (proxied.inbound_reader, proxied.outbound_writer);
        let (outbound_reader, inbound) = (proxied.outbound_reader, proxied.inbound_writer);
        let _ = std::thread::Builder::new().spawn(move || {
            crate::tcp_proxy::pump(inbound_reader, outbound, || true);
            closed.store(true, Ordering::SeqCst);
        });
        let _ = std::thread::Builder::new().spawn(move || {
            crate::tcp_proxy::pump(outbound_reader, inbound, || true);
            other.store(true, Ordering::SeqCst);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use super::*;

    /// An echo server standing in for node 2's peer port.
    fn echo() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut reader = stream.try_clone().unwrap();
                    let mut writer = stream;
                    let _ = std::io::copy(&mut reader, &mut writer);
                });
            }
        });
        address
    }

    fn member(id: u64, peer_address: SocketAddr) -> Member {
        Member { id, peer_address, client_address: peer_address, http_address: None, priority: None }
    }

    fn round_trip(address: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"ping")?;
        let mut reply = [0u8; 4];
        stream.read_exact(&mut reply)?;
        Ok(reply.to_vec())
    }

    #[test]
    fn a_cut_link_closes_its_connections_and_refuses_new_ones_until_healed() {
        let unused = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap();
        let links = Links::start(&[member(1, unused), member(2, echo())]).unwrap();
        let one_to_two = links.address(1, 2);
        assert_eq!(round_trip(one_to_two).unwrap(), b"ping");

        let mut open = TcpStream::connect(one_to_two).unwrap();
        open.write_all(b"ping").unwrap();
        let mut reply = [0u8; 4];
        open.read_exact(&mut reply).unwrap();
        links.set(|from, to| !(from == 1 && to == 2));
        // The open connection ends (EOF or reset) within a bounded time.
        open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let ended = loop {
            match open.read(&mut reply) {
                Ok(0) | Err(_) => break true,
                Ok(_) if Instant::now() < deadline => continue,
                Ok(_) => break false,
            }
        };
        assert!(ended, "the cut did not close the open connection");
        assert!(round_trip(one_to_two).is_err(), "a new connection went through a cut link");

        links.heal();
        assert_eq!(round_trip(one_to_two).unwrap(), b"ping");
    }
}
