//! The clients: each worker has its own connection to one node, one request
//! in flight, no retries, a timeout per operation; every invocation and
//! outcome goes into the history.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclave_lincheck::history::{Event, EventType, Process};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value as Json};

use crate::demo::client::{Reply, RespClient};

/// The history being recorded, shared by the workers and the nemesis.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    events: Arc<Mutex<Vec<Event>>>,
    /// Completions so far: ok, fail, info.
    counts: Arc<[AtomicU64; 3]>,
}

impl Recorder {
    /// A recorder whose times count from now.
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            events: Arc::new(Mutex::new(Vec::new())),
            counts: Arc::new(Default::default()),
        }
    }

    /// Nanoseconds since the start.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Records an event now; returns its time.
    pub fn record(&self, process: Process, kind: EventType, f: &str, key: Option<&str>, value: Json) -> u64 {
        let mut events = self.events.lock().expect("no thread panics holding it");
        // The time is taken under the lock, so the events are in time order.
        let time = self.now();
        if let Process::Client(_) = process {
            let slot = match kind {
                EventType::Invoke => None,
                EventType::Ok => Some(0),
                EventType::Fail => Some(1),
                EventType::Info => Some(2),
            };
            if let Some(slot) = slot {
                self.counts[slot].fetch_add(1, Ordering::Relaxed);
            }
        }
        events.push(Event { process, kind, f: f.to_string(), key: key.map(str::to_string), value, time });
        time
    }

    /// A nemesis event.
    pub fn nemesis(&self, f: &str, what: String) -> u64 {
        self.record(Process::Named("nemesis".into()), EventType::Info, f, None, Json::String(what))
    }

    /// Completions so far: (ok, fail, info).
    pub fn counts(&self) -> (u64, u64, u64) {
        let count = |slot: usize| self.counts[slot].load(Ordering::Relaxed);
        (count(0), count(1), count(2))
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("no thread panics holding it").clone()
    }
}

/// One operation a worker sends.
#[derive(Clone, Debug)]
pub enum Request {
    /// `GET`.
    Read,
    /// `SET` (`Some`) or `DEL` (`None`).
    Write(Option<u64>),
    /// `CAS key expected new`.
    Cas(u64, u64),
}

impl Request {
    fn f(&self) -> &'static str {
        match self {
            Request::Read => "read",
            Request::Write(_) => "write",
            Request::Cas(..) => "cas",
        }
    }

    fn value(&self) -> Json {
        match self {
            Request::Read => Json::Null,
            Request::Write(value) => json!(value),
            Request::Cas(expected, new) => json!([expected, new]),
        }
    }

    fn arguments(&self, key: &str) -> Vec<String> {
        match self {
            Request::Read => vec!["GET".into(), key.into()],
            Request::Write(Some(value)) => vec!["SET".into(), key.into(), value.to_string()],
            Request::Write(None) => vec!["DEL".into(), key.into()],
            Request::Cas(expected, new) => vec!["CAS".into(), key.into(), expected.to_string(), new.to_string()],
        }
    }
}

/// How an operation ended, and for a read what it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It took effect (a read: it saw this; `u64::MAX`: something no worker wrote).
    Ok(Option<u64>),
    /// It did not take effect.
    Fail,
    /// Unknown.
    Info,
}

/// The outcome a reply means (see the server's `RequestError`: each error
/// says whether the command may have taken effect).
pub fn outcome(request: &Request, reply: std::io::Result<Reply>) -> Outcome {
    let reply = match reply {
        Ok(reply) => reply,
        Err(_) => return Outcome::Info, // A timeout or a reset: unknown.
    };
    match (request, reply) {
        (Request::Read, Reply::Bulk(None)) => Outcome::Ok(None),
        (Request::Read, Reply::Bulk(Some(bytes))) => {
            Outcome::Ok(Some(std::str::from_utf8(&bytes).ok().and_then(|text| text.parse().ok()).unwrap_or(u64::MAX)))
        }
        (Request::Write(Some(_)), Reply::Simple(ok)) if ok == "OK" => Outcome::Ok(None),
        (Request::Write(None), Reply::Integer(_)) => Outcome::Ok(None),
        (Request::Cas(..), Reply::Integer(1)) => Outcome::Ok(None),
        // The comparison failed: nothing changed.
        (Request::Cas(..), Reply::Integer(0)) => Outcome::Fail,
        (_, Reply::Error(message)) if message.contains("did not take effect") => Outcome::Fail,
        _ => Outcome::Info,
    }
}

/// Sends one request on `client` and records it as `process`.
pub fn perform(recorder: &Recorder, process: u64, client: &mut RespClient, key: &str, request: &Request) -> Outcome {
    let invoked = Process::Client(process);
    recorder.record(invoked.clone(), EventType::Invoke, request.f(), Some(key), request.value());
    let arguments = request.arguments(key);
    let reply = client.pipeline(std::slice::from_ref(&arguments)).map(|mut replies| replies.remove(0));
    let outcome = outcome(request, reply);
    let (kind, value) = match &outcome {
        Outcome::Ok(seen) => (EventType::Ok, if let Request::Read = request { json!(seen) } else { request.value() }),
        Outcome::Fail => (EventType::Fail, request.value()),
        Outcome::Info => (EventType::Info, request.value()),
    };
    recorder.record(invoked, kind, request.f(), Some(key), value);
    outcome
}

/// What the workers share.
pub struct Load {
    /// Client addresses of the nodes.
    pub nodes: Vec<SocketAddr>,
    /// The keys.
    pub keys: Vec<String>,
    /// Per-operation timeout.
    pub timeout: Duration,
    /// Set when the workers must stop.
    pub stop: Arc<AtomicBool>,
    /// Next value to write (unique across the run).
    pub next_value: Arc<AtomicU64>,
    /// Where events go.
    pub recorder: Recorder,
}

/// Runs worker `process` until `load.stop` is set.
pub fn worker(load: &Load, process: u64, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ process.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut client: Option<RespClient> = None;
    // The last value this worker saw per key: what its CAS expects.
    let mut seen: Vec<Option<u64>> = vec![None; load.keys.len()];
    while !load.stop.load(Ordering::SeqCst) {
        let mut connected = match client.take() {
            Some(connected) => connected,
            None => {
                let node = load.nodes[rng.gen_range(0..load.nodes.len())];
                match RespClient::connect(node, load.timeout) {
                    Ok(connected) => connected,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                }
            }
        };
        let index = rng.gen_range(0..load.keys.len());
        let fresh = || load.next_value.fetch_add(1, Ordering::SeqCst);
        let request = match rng.gen_range(0..20) {
            0..=7 => Request::Read,
            8..=13 => Request::Write(Some(fresh())),
            14 => Request::Write(None),
            _ => Request::Cas(seen[index].unwrap_or(0), fresh()),
        };
        match perform(&load.recorder, process, &mut connected, &load.keys[index], &request) {
            Outcome::Ok(read) => {
                seen[index] = match request {
                    Request::Read => read,
                    Request::Write(value) => value,
                    Request::Cas(_, new) => Some(new),
                };
                client = Some(connected);
            }
            Outcome::Fail => client = Some(connected),
            // The connection may hold a late reply: a new one for the next request.
            Outcome::Info => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(message: &str) -> std::io::Result<Reply> {
        Ok(Reply::Error(message.into()))
    }

    #[test]
    fn replies_map_to_ok_fail_or_unknown_as_the_server_words_them() {
        let write = Request::Write(Some(7));
        assert_eq!(outcome(&write, Ok(Reply::Simple("OK".into()))), Outcome::Ok(None));
        assert_eq!(outcome(&Request::Write(None), Ok(Reply::Integer(0))), Outcome::Ok(None));
        assert_eq!(outcome(&Request::Read, Ok(Reply::Bulk(None))), Outcome::Ok(None));
        assert_eq!(outcome(&Request::Read, Ok(Reply::Bulk(Some(b"42".to_vec())))), Outcome::Ok(Some(42)));
        // Something no worker wrote reads as a value no one wrote.
        assert_eq!(outcome(&Request::Read, Ok(Reply::Bulk(Some(b"x".to_vec())))), Outcome::Ok(Some(u64::MAX)));
        assert_eq!(outcome(&Request::Cas(1, 2), Ok(Reply::Integer(1))), Outcome::Ok(None));
        assert_eq!(outcome(&Request::Cas(1, 2), Ok(Reply::Integer(0))), Outcome::Fail);
        let not_done = "TRYAGAIN no leader elected within 1000 ms; the command did not take effect, retry";
        assert_eq!(outcome(&write, error(not_done)), Outcome::Fail);
        let maybe = "TRYAGAIN request timed out after 1500 ms; it may or may not have taken effect";
        assert_eq!(outcome(&write, error(maybe)), Outcome::Info);
        assert_eq!(outcome(&write, error("ERR something new")), Outcome::Info);
        let timeout = std::io::Error::new(std::io::ErrorKind::WouldBlock, "timed out");
        assert_eq!(outcome(&write, Err(timeout)), Outcome::Info);
        assert_eq!(outcome(&write, Ok(Reply::Integer(3))), Outcome::Info);
    }
}
