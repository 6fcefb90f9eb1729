//! Closed-loop write load for `bench/compare`: `--clients` tasks, each with its
//! own connection and one request in flight, writing `--value-bytes` values to
//! keys drawn at random from `--keyspace` keys, against etcd (a gRPC `Put`) or
//! Conclave (a RESP2 `SET`). The same loop, timer and histogram serve both.
//! Prints one JSON object.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

struct Args {
    system: String,
    endpoint: String,
    clients: usize,
    duration: Duration,
    warm_up: Duration,
    value_bytes: usize,
    keyspace: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        system: String::new(),
        endpoint: String::new(),
        clients: 1,
        duration: Duration::from_secs(20),
        warm_up: Duration::from_secs(2),
        value_bytes: 256,
        keyspace: 1_000_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|_| format!("{flag}: not a number: {value}"));
        match flag.as_str() {
            "--system" => args.system = value.clone(),
            "--endpoint" => args.endpoint = value.clone(),
            "--clients" => args.clients = number()? as usize,
            "--duration-secs" => args.duration = Duration::from_secs(number()?),
            "--warm-up-secs" => args.warm_up = Duration::from_secs(number()?),
            "--value-bytes" => args.value_bytes = number()? as usize,
            "--keyspace" => args.keyspace = number()?.max(1),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.system != "etcd" && args.system != "conclave" {
        return Err("--system must be etcd or conclave".into());
    }
    if args.endpoint.is_empty() || args.clients == 0 {
        return Err("--endpoint and --clients (at least 1) are needed".into());
    }
    Ok(args)
}

/// A small PRNG (splitmix64) for key choice; no dependency needed.
struct Keys(u64);
impl Keys {
    fn next(&mut self, keyspace: u64) -> String {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        format!("compare:{:010}", z % keyspace)
    }
}

enum Conn {
    Etcd(etcd_client::KvClient),
    Resp(BufReader<TcpStream>, Vec<u8>),
}

async fn connect(system: &str, endpoint: &str) -> Result<Conn, String> {
    if system == "etcd" {
        let client = etcd_client::Client::connect([format!("http://{endpoint}")], None)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        Ok(Conn::Etcd(client.kv_client()))
    } else {
        let stream = TcpStream::connect(endpoint).await.map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Conn::Resp(BufReader::new(stream), Vec::new()))
    }
}

/// One write; `Err(text, connection_lost)`.
async fn write(conn: &mut Conn, key: String, value: &[u8]) -> Result<(), (String, bool)> {
    match conn {
        Conn::Etcd(kv) => match tokio::time::timeout(REPLY_TIMEOUT, kv.put(key, value.to_vec(), None)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err((format!("put: {e}"), false)),
            Err(_) => Err(("put: timed out".into(), true)),
        },
        Conn::Resp(stream, line) => {
            let mut out = format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n", key.len(), value.len()).into_bytes();
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
            let io = async {
                stream.get_mut().write_all(&out).await?;
                line.clear();
                let n = stream.read_until(b'\n', line).await?;
                Ok::<usize, std::io::Error>(n)
            };
            match tokio::time::timeout(REPLY_TIMEOUT, io).await {
                Ok(Ok(0)) => Err(("the server closed the connection".into(), true)),
                Ok(Ok(_)) if line.starts_with(b"+OK") => Ok(()),
                Ok(Ok(_)) => Err((String::from_utf8_lossy(line).trim_end().to_string(), false)),
                Ok(Err(e)) => Err((format!("io: {e}"), true)),
                Err(_) => Err(("SET: timed out".into(), true)),
            }
        }
    }
}

struct Outcome {
    histogram: Histogram<u64>,
    ops: u64,
    errors: u64,
    first_error: Option<String>,
}

async fn client(number: usize, args: std::sync::Arc<Args>, measure_from: Instant, end: Instant) -> Outcome {
    let mut out = Outcome {
        histogram: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
        ops: 0,
        errors: 0,
        first_error: None,
    };
    let value: Vec<u8> = (0..args.value_bytes).map(|i| b'a' + (i % 26) as u8).collect();
    let mut keys = Keys(number as u64 * 0x1234_5678_9abc_def1 + 1);
    let mut conn = None;
    while Instant::now() < end {
        if conn.is_none() {
            match connect(&args.system, &args.endpoint).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    if Instant::now() >= measure_from {
                        out.errors += 1;
                        out.first_error.get_or_insert(e);
                    }
                    // A reconnect backoff inside the run's bounded window (a
                    // refused dial must not spin a core the servers need),
                    // not a wait for a condition: the loop ends at `end`.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let started = Instant::now();
        let result = write(conn.as_mut().expect("connected"), keys.next(args.keyspace), &value).await;
        let micros = started.elapsed().as_micros() as u64;
        let counted = started >= measure_from && started < end;
        match result {
            Ok(()) if counted => {
                out.ops += 1;
                out.histogram.saturating_record(micros.max(1));
            }
            Ok(()) => {}
            Err((text, lost)) => {
                if counted {
                    out.errors += 1;
                    out.first_error.get_or_insert(text);
                }
                if lost {
                    conn = None;
                }
            }
        }
    }
    out
}

/// `text` as a JSON string.
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => std::sync::Arc::new(args),
        Err(e) => {
            eprintln!("compare-client: {e}");
            std::process::exit(2);
        }
    };
    let measure_from = Instant::now() + args.warm_up;
    let end = measure_from + args.duration;
    let tasks: Vec<_> =
        (0..args.clients).map(|number| tokio::spawn(client(number, args.clone(), measure_from, end))).collect();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds");
    let (mut ops, mut errors, mut first_error) = (0u64, 0u64, None);
    for task in tasks {
        let outcome = task.await.expect("client task");
        histogram.add(&outcome.histogram).expect("same bounds");
        ops += outcome.ops;
        errors += outcome.errors;
        if first_error.is_none() {
            first_error = outcome.first_error;
        }
    }
    let seconds = args.duration.as_secs_f64();
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{{\"system\":\"{}\",\"clients\":{},\"duration_s\":{},\"value_bytes\":{},\"ops\":{},\"ops_per_s\":{:.1},\
\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\"errors\":{},\"first_error\":{}}}",
        args.system,
        args.clients,
        seconds,
        args.value_bytes,
        ops,
        ops as f64 / seconds,
        ms(0.5),
        ms(0.99),
        histogram.max() as f64 / 1000.0,
        errors,
        first_error.map_or("null".to_string(), |e: String| json_string(&e)),
    );
}
