//! One measured run: `clients` tokio tasks, each with its own TCP connection and
//! one request in flight, sending `SET`s of distinct keys; every reply's
//! latency is recorded from just before the request is written to just after
//! its reply is read.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

use crate::demo::client::{malformed, parse_reply_head, Reply, ReplyHead};

/// `SET`s each client sends before the measured phase (not counted).
pub const WARM_UP_PER_CLIENT: u64 = 10;

/// Longest wait for one reply (above the server's own request timeout, so its
/// `-TRYAGAIN` comes first); a client whose reply does not come stops.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// When a run ends.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// After this many requests in all (shared by the clients).
    Requests(u64),
    /// When this much time has passed since the measured phase began.
    After(Duration),
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct RunResult {
    /// Concurrent clients.
    pub clients: usize,
    /// Measured requests answered (`+OK` or an error reply) or failed.
    pub requests: u64,
    /// Error replies, I/O failures and timeouts, the warm-up's included.
    pub errors: u64,
    /// The first error's text.
    pub first_error: Option<String>,
    /// From the start of the measured phase to the last client's end.
    pub elapsed: Duration,
    /// Latency of every `+OK` of the measured phase, in microseconds, sorted.
    pub latencies_us: Vec<u64>,
    /// Request numbers acknowledged with `+OK`, sorted.
    pub written: Vec<u64>,
}

/// The key of request `index` of run `run`.
pub fn key(run: usize, index: u64) -> String {
    format!("bench:{run}:{index}")
}

/// The value of request `index`: exactly `bytes` bytes, starting with the
/// index in hex (its low digits when shorter), so that values differ.
pub fn value(index: u64, bytes: usize) -> Vec<u8> {
    let hex = format!("{index:016x}");
    let mut out: Vec<u8> = hex.as_bytes()[hex.len().saturating_sub(bytes)..].to_vec();
    out.extend((out.len()..bytes).map(|position| b'a' + (position % 26) as u8));
    out
}

/// A RESP2 connection sending `SET`s, one in flight.
struct Connection {
    stream: BufReader<TcpStream>,
    out: Vec<u8>,
    line: Vec<u8>,
}

impl Connection {
    async fn connect(address: SocketAddr) -> std::io::Result<Connection> {
        let stream = tokio::time::timeout(REPLY_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("connecting to {address}")))??;
        stream.set_nodelay(true)?;
        Ok(Connection { stream: BufReader::new(stream), out: Vec::new(), line: Vec::new() })
    }

    async fn set(&mut self, key: &str, value: &[u8]) -> std::io::Result<Reply> {
        self.out.clear();
        self.out.extend_from_slice(
            format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n", key.len(), value.len()).as_bytes(),
        );
        self.out.extend_from_slice(value);
        self.out.extend_from_slice(b"\r\n");
        self.stream.get_mut().write_all(&self.out).await?;
        self.read_reply().await
    }

    async fn read_line(&mut self) -> std::io::Result<String> {
        self.line.clear();
        if self.stream.read_until(b'\n', &mut self.line).await? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the connection"));
        }
        let text = String::from_utf8_lossy(&self.line);
        Ok(text.trim_end_matches(['\r', '\n']).to_string())
    }

    /// Reads a reply of one of the kinds `SET` can get (an array is refused).
    async fn read_reply(&mut self) -> std::io::Result<Reply> {
        let line = self.read_line().await?;
        Ok(match parse_reply_head(&line)? {
            ReplyHead::Done(Reply::Array(_)) | ReplyHead::Array(_) => {
                return Err(malformed(&format!("unexpected reply {line:?} to SET")))
            }
            ReplyHead::Done(reply) => reply,
            ReplyHead::Bulk(length) => {
                let mut bytes = vec![0; length + 2];
                self.stream.read_exact(&mut bytes).await?;
                bytes.truncate(length);
                Reply::Bulk(Some(bytes))
            }
        })
    }

    /// One `SET`: `Ok(())` on `+OK`, else the error's text.
    async fn checked_set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        match tokio::time::timeout(REPLY_TIMEOUT, self.set(key, value)).await {
            Ok(Ok(Reply::Simple(ok))) if ok == "OK" => Ok(()),
            Ok(Ok(Reply::Error(text))) => Err(format!("-{text}")),
            Ok(Ok(other)) => Err(format!("unexpected reply to SET: {other:?}")),
            Ok(Err(error)) => Err(format!("connection failed: {error}")),
            Err(_) => Err(format!("no reply within {} s", REPLY_TIMEOUT.as_secs())),
        }
    }
}

/// What one client saw.
#[derive(Default)]
struct ClientOutcome {
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_us: Vec<u64>,
    written: Vec<u64>,
    began: Option<Instant>,
    finished: Option<Instant>,
    /// The connection is unusable (broken, timed out, never opened).
    broken: bool,
}

impl ClientOutcome {
    fn fail(&mut self, error: String, connection_lost: bool) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
        self.broken |= connection_lost;
    }
}

/// The request numbers the clients share.
struct Shared {
    next: AtomicU64,
    stop: Stop,
    run: usize,
    value_bytes: usize,
}

async fn client(number: usize, address: SocketAddr, shared: Arc<Shared>, barrier: Arc<Barrier>) -> ClientOutcome {
    let mut outcome = ClientOutcome::default();
    let mut connection = match Connection::connect(address).await {
        Ok(connection) => Some(connection),
        Err(error) => {
            outcome.fail(format!("cannot connect to {address}: {error}"), true);
            None
        }
    };
    if let Some(connection) = connection.as_mut() {
        let value = value(0, shared.value_bytes);
        for warm_up in 0..WARM_UP_PER_CLIENT {
            let key = format!("bench-warm-up:{}:{number}:{warm_up}", shared.run);
            if let Err(error) = connection.checked_set(&key, &value).await {
                let lost = !error.starts_with('-');
                outcome.fail(format!("warm-up: {error}"), lost);
                if lost {
                    break;
                }
            }
        }
    }
    // Every client reaches the barrier, even one that failed, or the run would hang.
    barrier.wait().await;
    let began = Instant::now();
    outcome.began = Some(began);
    let deadline = match shared.stop {
        Stop::After(duration) => Some(began + duration),
        Stop::Requests(_) => None,
    };
    while let Some(connection) = connection.as_mut().filter(|_| !outcome.broken) {
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            break;
        }
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        if matches!(shared.stop, Stop::Requests(total) if index >= total) {
            break;
        }
        let key = key(shared.run, index);
        let value = value(index, shared.value_bytes);
        let sent = Instant::now();
        let result = connection.checked_set(&key, &value).await;
        outcome.requests += 1;
        match result {
            Ok(()) => {
                outcome.latencies_us.push(sent.elapsed().as_micros() as u64);
                outcome.written.push(index);
            }
            Err(error) => {
                let lost = !error.starts_with('-');
                outcome.fail(error, lost);
            }
        }
    }
    outcome.finished = Some(Instant::now());
    outcome
}

/// Runs `addresses.len()` clients, client i against `addresses[i]`, for run number `run`.
pub async fn run(run: usize, addresses: Vec<SocketAddr>, stop: Stop, value_bytes: usize) -> RunResult {
    let clients = addresses.len();
    let shared = Arc::new(Shared { next: AtomicU64::new(0), stop, run, value_bytes });
    let barrier = Arc::new(Barrier::new(clients));
    let tasks: Vec<_> = addresses
        .into_iter()
        .enumerate()
        .map(|(number, address)| tokio::spawn(client(number, address, shared.clone(), barrier.clone())))
        .collect();
    let mut result = RunResult { clients, ..RunResult::default() };
    let (mut began, mut finished): (Option<Instant>, Option<Instant>) = (None, None);
    for task in tasks {
        let outcome = match task.await {
            Ok(outcome) => outcome,
            Err(error) => {
                let mut outcome = ClientOutcome::default();
                outcome.fail(format!("a client task failed: {error}"), true);
                outcome
            }
        };
        result.requests += outcome.requests;
        result.errors += outcome.errors;
        if result.first_error.is_none() {
            result.first_error = outcome.first_error;
        }
        result.latencies_us.extend(outcome.latencies_us);
        result.written.extend(outcome.written);
        began = match (began, outcome.began) {
            (Some(earlier), Some(this)) => Some(earlier.min(this)),
            (earlier, this) => earlier.or(this),
        };
        finished = finished.max(outcome.finished);
    }
    // From the first client's start to the last one's end.
    result.elapsed = match (began, finished) {
        (Some(began), Some(finished)) => finished - began,
        _ => Duration::ZERO,
    };
    result.latencies_us.sort_unstable();
    result.written.sort_unstable();
    result
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use conclave_server::resp::{parse, ParseLimits, Request};
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn values_have_the_asked_size_and_differ() {
        assert_eq!(value(255, 128).len(), 128);
        assert_eq!(&value(255, 128)[..16], b"00000000000000ff");
        assert_eq!(value(255, 2), b"ff");
        assert_eq!(value(3, 0), b"");
        assert_ne!(value(1, 128), value(2, 128));
    }

    type Store = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

    /// A RESP server on loopback that stores every `SET` and answers `+OK`,
    /// or `refusal` for the key `refused`.
    async fn fake_server(refused: &'static str, refusal: &'static str) -> (SocketAddr, Store) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let store: Store = Arc::default();
        let shared = store.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let store = shared.clone();
                tokio::spawn(async move {
                    let limits = ParseLimits { max_bulk_bytes: 1 << 20, max_array_len: 16, max_inline_bytes: 1024 };
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Ok(Some((request, used))) = parse(&buffer, &limits) {
                            buffer.drain(..used);
                            let Request::Command(arguments) = request else { continue };
                            assert_eq!(arguments.len(), 3, "SET key value");
                            assert_eq!(arguments[0], b"SET");
                            let key = String::from_utf8(arguments[1].clone()).unwrap();
                            let reply = if key == refused {
                                refusal.as_bytes().to_vec()
                            } else {
                                store.lock().unwrap().insert(key, arguments[2].clone());
                                b"+OK\r\n".to_vec()
                            };
                            if socket.write_all(&reply).await.is_err() {
                                return;
                            }
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
                        }
                    }
                });
            }
        });
        (address, store)
    }

    #[tokio::test]
    async fn the_clients_share_exactly_the_requests_asked_and_write_distinct_keys() {
        let (address, store) = fake_server("", "").await;
        let result = run(4, vec![address; 3], Stop::Requests(50), 16).await;
        assert_eq!((result.clients, result.requests, result.errors), (3, 50, 0));
        assert_eq!(result.first_error, None);
        assert_eq!(result.written, (0..50).collect::<Vec<u64>>());
        assert_eq!(result.latencies_us.len(), 50);
        assert!(result.latencies_us.windows(2).all(|pair| pair[0] <= pair[1]), "sorted");
        let store = store.lock().unwrap();
        for index in 0..50 {
            assert_eq!(store.get(&key(4, index)), Some(&value(index, 16)), "request {index}");
        }
        let warm_ups = store.keys().filter(|key| key.starts_with("bench-warm-up:4:")).count() as u64;
        assert_eq!(warm_ups, 3 * WARM_UP_PER_CLIENT);
        assert_eq!(store.len() as u64, 50 + 3 * WARM_UP_PER_CLIENT);
    }

    #[tokio::test]
    async fn an_error_reply_is_counted_with_its_text_and_the_run_goes_on() {
        let (address, _) = fake_server("bench:0:7", "-TRYAGAIN not now\r\n").await;
        let result = run(0, vec![address; 2], Stop::Requests(30), 8).await;
        assert_eq!((result.requests, result.errors), (30, 1));
        assert_eq!(result.first_error.as_deref(), Some("-TRYAGAIN not now"));
        assert_eq!(result.written.len(), 29);
        assert!(!result.written.contains(&7));
        assert_eq!(result.latencies_us.len(), 29);
    }

    #[tokio::test]
    async fn an_unexpected_reply_breaks_the_connection_and_is_reported() {
        let (address, _) = fake_server("bench:0:3", "*1\r\n").await;
        let result = run(0, vec![address], Stop::Requests(10), 8).await;
        assert_eq!((result.requests, result.errors), (4, 1), "one client, stopped at request 3");
        assert!(result.first_error.as_deref().unwrap().contains("unexpected reply"), "{:?}", result.first_error);
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_error_not_a_hang() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let result = run(0, vec![closed; 2], Stop::Requests(10), 8).await;
        assert_eq!((result.requests, result.errors), (0, 2));
        assert!(result.first_error.as_deref().unwrap().starts_with("cannot connect"), "{:?}", result.first_error);
    }

    #[tokio::test]
    async fn a_timed_run_stops_after_its_duration() {
        let (address, _) = fake_server("", "").await;
        let result = run(0, vec![address; 2], Stop::After(Duration::from_millis(100)), 8).await;
        assert_eq!(result.errors, 0);
        assert!(result.elapsed >= Duration::from_millis(100), "{:?}", result.elapsed);
        assert_eq!(result.written.len() as u64, result.requests);
    }
}
