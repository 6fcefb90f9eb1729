//! Writer threads that `SET` fresh keys (value = key) through a set of nodes,
//! keeping every key acknowledged and when: the load of the real-process
//! fault tests, whose acknowledged writes must all read back afterwards.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::resp::{wait_until, Client, Reply};

/// How long a writer thread runs at most, whatever the test does.
const WRITER_DEADLINE: Duration = Duration::from_secs(120);
/// How many writes a writer thread tries at most.
const WRITER_ATTEMPTS: usize = 200_000;

/// The running writers.
pub struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, Instant)>>>,
    /// Error replies (not broken connections, whose writes are retried
    /// under a new key elsewhere).
    errors: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Writers {
    /// `threads` writers, each with its own connection, going round
    /// `addresses` whenever a connection breaks; keys are `{prefix}{thread}-{attempt}`.
    pub fn start(addresses: Vec<SocketAddr>, threads: usize, prefix: &str) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|thread| {
                let (stop, acked, addresses) = (stop.clone(), acked.clone(), addresses.clone());
                let errors = errors.clone();
                let prefix = prefix.to_string();
                std::thread::spawn(move || {
                    let deadline = Instant::now() + WRITER_DEADLINE;
                    let mut client: Option<Client> = None;
                    for attempt in 0..WRITER_ATTEMPTS {
                        if stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
                            break;
                        }
                        if client.is_none() {
                            client = Client::connect(addresses[(thread + attempt) % addresses.len()]).ok();
                            if client.is_none() {
                                // A node that is down refuses at once: pace the redials.
                                std::thread::park_timeout(Duration::from_millis(10));
                                continue;
                            }
                        }
                        let connection = client.as_mut().expect("connected");
                        let key = format!("{prefix}{thread}-{attempt}");
                        match connection.command(&["SET", &key, &key]) {
                            Ok(Reply::Simple(ok)) if ok == "OK" => acked.lock().unwrap().push((key, Instant::now())),
                            Ok(other) => errors.lock().unwrap().push(format!("SET {key}: {other:?}")),
                            Err(_) => client = None,
                        }
                    }
                })
            })
            .collect();
        Writers { stop, acked, errors, threads }
    }

    /// The error replies so far.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }

    /// Writes acknowledged so far.
    pub fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Writes acknowledged after `instant`.
    pub fn acked_after(&self, instant: Instant) -> usize {
        self.acked.lock().unwrap().iter().filter(|(_, at)| *at > instant).count()
    }

    /// When the first write after `instant` was acknowledged, if one was.
    pub fn first_after(&self, instant: Instant) -> Option<Instant> {
        self.acked.lock().unwrap().iter().find(|(_, at)| *at > instant).map(|(_, at)| *at)
    }

    /// Waits (60 s at most) until `count` of the writers reaches `target`.
    pub fn wait_for(&self, what: &str, count: impl Fn(&Writers) -> usize, target: usize) {
        wait_until(&format!("{target} {what}"), Duration::from_secs(60), || (count(self) >= target).then_some(()));
    }

    /// Stops the writers; every key acknowledged, with when.
    pub fn stop(self) -> Vec<(String, Instant)> {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().unwrap();
        }
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap()
    }
}

/// `MGET keys` through `address`, in chunks; `local` reads the node's own
/// store (`READONLY`) rather than through the leader.
pub fn read_all(address: SocketAddr, keys: &[String], local: bool) -> Vec<Option<String>> {
    let mut client = Client::connect(address).unwrap();
    if local {
        assert_eq!(client.command(&["READONLY"]).unwrap(), Reply::Simple("OK".into()));
    }
    let mut values = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(500) {
        let mut arguments = vec!["MGET"];
        arguments.extend(chunk.iter().map(String::as_str));
        match client.command(&arguments).unwrap() {
            Reply::Array(Some(items)) => values.extend(items.into_iter().map(|item| match item {
                Reply::Bulk(value) => value.map(|bytes| String::from_utf8(bytes).unwrap()),
                other => panic!("MGET item {other:?}"),
            })),
            other => panic!("MGET answered {other:?}"),
        }
    }
    values
}
