//! Just enough RESP2 and HTTP/1.1 over a blocking `TcpStream` for the demo:
//! its own small clients, so the demo depends on nothing but the server's ports.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+…`
    Simple(String),
    /// `-…`
    Error(String),
    /// `:…`
    Integer(i64),
    /// `$…`; `None` is the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `*…`; `None` is the null array.
    Array(Option<Vec<Reply>>),
}

/// A RESP connection to one node.
pub struct RespClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

pub(crate) fn malformed(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("malformed RESP reply: {what}"))
}

/// What a reply's first line says: the whole reply, or what follows it.
pub(crate) enum ReplyHead {
    /// A reply complete in its first line (a null bulk string or array too).
    Done(Reply),
    /// A bulk string of this many bytes (and its CRLF) follows.
    Bulk(usize),
    /// This many replies follow.
    Array(usize),
}

/// Parses a reply's first line, without its CRLF; shared by the blocking
/// client here and the bench's async one.
pub(crate) fn parse_reply_head(line: &str) -> std::io::Result<ReplyHead> {
    let (kind, rest) = line.split_at_checked(1).ok_or_else(|| malformed("empty line"))?;
    let number = || rest.parse::<i64>().map_err(|_| malformed("bad length or integer"));
    Ok(match kind {
        "+" => ReplyHead::Done(Reply::Simple(rest.to_string())),
        "-" => ReplyHead::Done(Reply::Error(rest.to_string())),
        ":" => ReplyHead::Done(Reply::Integer(number()?)),
        "$" => usize::try_from(number()?).map_or(ReplyHead::Done(Reply::Bulk(None)), ReplyHead::Bulk),
        "*" => usize::try_from(number()?).map_or(ReplyHead::Done(Reply::Array(None)), ReplyHead::Array),
        _ => return Err(malformed("unknown reply type")),
    })
}

impl RespClient {
    /// Connects; every read waits at most `timeout`.
    pub fn connect(address: SocketAddr, timeout: Duration) -> std::io::Result<RespClient> {
        let stream = TcpStream::connect_timeout(&address, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(RespClient { reader: BufReader::new(stream.try_clone()?), writer: stream })
    }

    /// Sends every command, then reads one reply per command (pipelining).
    pub fn pipeline(&mut self, commands: &[Vec<String>]) -> std::io::Result<Vec<Reply>> {
        let mut out = Vec::new();
        for arguments in commands {
            out.extend_from_slice(format!("*{}\r\n", arguments.len()).as_bytes());
            for argument in arguments {
                out.extend_from_slice(format!("${}\r\n{argument}\r\n", argument.len()).as_bytes());
            }
        }
        self.writer.write_all(&out)?;
        commands.iter().map(|_| self.read_reply()).collect()
    }

    /// One command and its reply.
    pub fn command(&mut self, arguments: &[&str]) -> std::io::Result<Reply> {
        let command: Vec<String> = arguments.iter().map(|argument| argument.to_string()).collect();
        Ok(self.pipeline(&[command])?.remove(0))
    }

    fn read_line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the connection"));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    fn read_reply(&mut self) -> std::io::Result<Reply> {
        let line = self.read_line()?;
        Ok(match parse_reply_head(&line)? {
            ReplyHead::Done(reply) => reply,
            ReplyHead::Bulk(length) => {
                let mut bytes = vec![0; length + 2];
                self.reader.read_exact(&mut bytes)?;
                bytes.truncate(length);
                Reply::Bulk(Some(bytes))
            }
            ReplyHead::Array(length) => {
                Reply::Array(Some((0..length).map(|_| self.read_reply()).collect::<Result<_, _>>()?))
            }
        })
    }
}

/// `GET path` on a node's HTTP port: the status code and body.
pub fn http_get(address: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| malformed("HTTP response without a head"))?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| malformed("HTTP status line without a code"))?;
    Ok((code, body.to_string()))
}

/// `GET path` parsed as JSON.
pub fn http_json(address: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<serde_json::Value> {
    let (_, body) = http_get(address, path, timeout)?;
    serde_json::from_str(&body).map_err(|error| malformed(&format!("JSON from {path}: {error}")))
}
