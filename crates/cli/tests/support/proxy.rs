//! A userspace TCP proxy that a test can cut and heal, standing in for a
//! firewall rule on one link.
//!
//! A cut freezes every connection open at that moment, and every connection
//! accepted while it lasts, *for good*: nothing more crosses them, their bytes
//! are swallowed and their closes are not passed on — a black hole whose
//! retransmissions never get through. Only connections accepted after the heal
//! carry bytes again. So a node gets its link back only by dialling anew, which
//! is what a real connection stuck in TCP's retransmission backoff needs too.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a pump looks at the stop flag while waiting for bytes.
const POLL: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    cut: AtomicBool,
    /// The frozen flag of every connection accepted so far.
    connections: Mutex<Vec<Arc<AtomicBool>>>,
    /// Sockets of frozen connections whose other end closed: held open so
    /// that the close does not cross the cut.
    held: Mutex<Vec<TcpStream>>,
}

/// Forwards connections made to [`Proxy::address`] to a target address.
pub struct Proxy {
    pub address: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = shared.clone();
            std::thread::spawn(move || accept_loop(listener, target, shared))
        };
        Proxy { address, shared, acceptor: Some(acceptor) }
    }

    /// From now on nothing crosses: every open connection freezes for good.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        for frozen in self.shared.connections.lock().unwrap().iter() {
            frozen.store(true, Ordering::SeqCst);
        }
    }

    /// New connections carry bytes again; the frozen ones stay frozen.
    pub fn heal(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.shared.held.lock().unwrap().clear();
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    let mut pumps = Vec::new();
    // Bounded: a test's proxy lives for well under this many polls.
    for _ in 0..1_000_000u32 {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        match listener.accept() {
            Ok((client, _)) => {
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else { continue };
                let frozen = Arc::new(AtomicBool::new(shared.cut.load(Ordering::SeqCst)));
                shared.connections.lock().unwrap().push(frozen.clone());
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (from, to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    let (shared, frozen) = (shared.clone(), frozen.clone());
                    pumps.push(std::thread::spawn(move || pump(from, to, &shared, &frozen)));
                }
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
    }
    for pump in pumps {
        let _ = pump.join();
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared, frozen: &AtomicBool) {
    from.set_read_timeout(Some(POLL)).unwrap();
    let mut buffer = [0u8; 64 * 1024];
    for _ in 0..100_000_000u64 {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let read = match from.read(&mut buffer) {
            Err(error) if is_timeout(&error) => continue,
            read => read.unwrap_or(0),
        };
        if frozen.load(Ordering::SeqCst) {
            if read == 0 {
                // Closed or reset on this side: the other side must not learn it.
                shared.held.lock().unwrap().push(to);
                return;
            }
            continue; // Swallowed.
        }
        if read == 0 || to.write_all(&buffer[..read]).is_err() {
            let _ = to.shutdown(Shutdown::Write);
            return;
        }
    }
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}
