//! The write load: a few threads, each with its own RESP connection, writing
//! unique keys with `SET`; every `+OK` is an acknowledged write, recorded with
//! the moment its request was sent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::client::{Reply, RespClient};

/// One acknowledged write.
#[derive(Clone, Debug)]
pub struct Acknowledged {
    /// Its key (unique per write).
    pub key: String,
    /// The value written.
    pub value: String,
    /// When the `SET` was sent.
    pub sent_at: Instant,
    /// When `+OK` arrived.
    pub acknowledged_at: Instant,
}

/// What the writers share with the demo.
#[derive(Default)]
pub struct Ledger {
    /// Every acknowledged write, in the order the acknowledgements arrived.
    pub acknowledged: Mutex<Vec<Acknowledged>>,
    /// Writes that failed or timed out (they may or may not have taken effect).
    pub failed: Mutex<u64>,
    stop: AtomicBool,
}

impl Ledger {
    /// Acknowledged writes so far.
    pub fn count(&self) -> usize {
        self.acknowledged.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// The first write sent after `instant` and acknowledged, if any yet.
    pub fn first_sent_after(&self, instant: Instant) -> Option<Acknowledged> {
        let acknowledged = self.acknowledged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        acknowledged.iter().filter(|write| write.sent_at > instant).min_by_key(|write| write.acknowledged_at).cloned()
    }
}

/// The running writers.
pub struct Load {
    /// Their shared record.
    pub ledger: Arc<Ledger>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts one writer per address (writer i starts at node i and moves to the
    /// next node when a write fails).
    pub fn start(addresses: Vec<SocketAddr>, request_timeout: Duration) -> Load {
        let ledger = Arc::new(Ledger::default());
        let threads = (0..addresses.len())
            .map(|writer| {
                let ledger = ledger.clone();
                let addresses = addresses.clone();
                std::thread::spawn(move || write_loop(writer, &addresses, &ledger, request_timeout))
            })
            .collect();
        Load { ledger, threads }
    }

    /// Stops the writers and waits for them.
    pub fn stop(self) -> Arc<Ledger> {
        self.ledger.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
        self.ledger
    }
}

fn write_loop(writer: usize, addresses: &[SocketAddr], ledger: &Ledger, request_timeout: Duration) {
    let mut target = writer;
    let mut sequence = 0u64;
    let mut connection: Option<RespClient> = None;
    while !ledger.stop.load(Ordering::Relaxed) {
        if connection.is_none() {
            // Slightly above the server's request timeout: its own error comes first.
            match RespClient::connect(addresses[target % addresses.len()], request_timeout + Duration::from_secs(1)) {
                Ok(client) => connection = Some(client),
                Err(_) => {
                    target += 1;
                    // A dead node refuses at once; do not spin through the list.
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            }
        }
        let client = connection.as_mut().expect("connected above");
        sequence += 1;
        let key = format!("w{writer}-{sequence}");
        let value = format!("v{sequence}");
        let sent_at = Instant::now();
        match client.command(&["SET", &key, &value]) {
            Ok(Reply::Simple(ok)) if ok == "OK" => {
                let write = Acknowledged { key, value, sent_at, acknowledged_at: Instant::now() };
                ledger.acknowledged.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(write);
            }
            outcome => {
                *ledger.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
                // A refused write (no leader yet) is retried on the same node;
                // a broken connection moves to the next node.
                if outcome.is_err() {
                    connection = None;
                    target += 1;
                }
            }
        }
    }
}
