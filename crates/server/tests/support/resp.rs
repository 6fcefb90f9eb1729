//! A small blocking RESP2 client and a bounded wait, shared by the server's and
//! the CLI's integration tests (the CLI includes this file by path).
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub fn bulk(text: &str) -> Reply {
        Reply::Bulk(Some(text.as_bytes().to_vec()))
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
}

pub struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(address: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(15)))?;
        stream.set_write_timeout(Some(Duration::from_secs(15)))?;
        stream.set_nodelay(true)?;
        Ok(Client { writer: stream.try_clone()?, reader: BufReader::new(stream) })
    }

    pub fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.writer.set_read_timeout(Some(timeout))
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    pub fn send(&mut self, arguments: &[&str]) -> io::Result<()> {
        let mut bytes = format!("*{}\r\n", arguments.len()).into_bytes();
        for argument in arguments {
            bytes.extend_from_slice(format!("${}\r\n{argument}\r\n", argument.len()).as_bytes());
        }
        self.send_raw(&bytes)
    }

    pub fn command(&mut self, arguments: &[&str]) -> io::Result<Reply> {
        self.send(arguments)?;
        self.read_reply()
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        Ok(line.trim_end_matches("\r\n").to_string())
    }

    pub fn read_reply(&mut self) -> io::Result<Reply> {
        let line = self.line()?;
        let (kind, rest) = line.split_at(line.len().min(1));
        let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("bad reply line {line:?}"));
        match kind {
            "+" => Ok(Reply::Simple(rest.to_string())),
            "-" => Ok(Reply::Error(rest.to_string())),
            ":" => rest.parse().map(Reply::Integer).map_err(|_| bad()),
            "$" => {
                let length: i64 = rest.parse().map_err(|_| bad())?;
                if length < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let mut body = vec![0; length as usize + 2];
                self.reader.read_exact(&mut body)?;
                body.truncate(length as usize);
                Ok(Reply::Bulk(Some(body)))
            }
            "*" => {
                let length: i64 = rest.parse().map_err(|_| bad())?;
                if length < 0 {
                    return Ok(Reply::Array(None));
                }
                (0..length)
                    .map(|_| self.read_reply())
                    .collect::<io::Result<Vec<_>>>()
                    .map(|items| Reply::Array(Some(items)))
            }
            _ => Err(bad()),
        }
    }

    /// True if the server closed the connection (EOF or reset) within the read timeout.
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(error) => !matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
        }
    }
}

/// Polls `check` until it returns `Some`, for at most `timeout` (and a bounded
/// number of attempts); panics naming `what` otherwise. The pause between polls
/// only paces the polling: correctness never depends on it.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    for _attempt in 0..100_000 {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// The `INFO` fields of a node as key/value pairs.
pub fn info(address: SocketAddr) -> Option<Vec<(String, String)>> {
    info_as(address, None)
}

/// `INFO` after `AUTH password`, if given.
pub fn info_as(address: SocketAddr, password: Option<&str>) -> Option<Vec<(String, String)>> {
    let mut client = Client::connect(address).ok()?;
    client.set_read_timeout(Duration::from_secs(2)).ok()?;
    if let Some(password) = password {
        client.command(&["AUTH", password]).ok()?;
    }
    match client.command(&["INFO"]).ok()? {
        Reply::Bulk(Some(text)) => Some(
            String::from_utf8_lossy(&text)
                .lines()
                .filter_map(|line| line.split_once(':'))
                .map(|(key, value)| (key.to_string(), value.trim().to_string()))
                .collect(),
        ),
        _ => None,
    }
}

/// One `INFO` field.
pub fn info_field(address: SocketAddr, field: &str) -> Option<String> {
    info(address)?.into_iter().find(|(key, _)| key == field).map(|(_, value)| value)
}
