//! An incremental RESP2 request parser with limits: multibulk arrays of bulk
//! strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and inline commands (`GET k\r\n`).
//!
//! It follows Redis's behaviour on bad input (its `tests/unit/protocol.tcl`):
//! a count of zero or below is an empty request, anything else malformed is a
//! [`ProtocolError`] after which the connection is answered and closed.

use thiserror::Error;

/// Longest count line (`*…` or `$…`) accepted before its CRLF.
const MAX_COUNT_LINE: usize = 32;

/// Parser limits (from the config's `limits` table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest bulk string.
    pub max_bulk_bytes: usize,
    /// Most elements in one array.
    pub max_array_len: usize,
    /// Longest inline command line.
    pub max_inline_bytes: usize,
}

/// What one complete request parsed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A command and its arguments (never empty).
    Command(Vec<Vec<u8>>),
    /// A request with nothing in it (an empty line, `*0`, `*-10`): no reply.
    Empty,
}

/// Malformed input; the message is what the client gets after `-ERR `.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// The `*` count is not a number or is too large.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A `$` length is not a number, negative, or too large.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// Something other than `$` where a bulk string must start.
    #[error("Protocol error: expected '$', got '{}'", printable(*.0))]
    ExpectedBulk(u8),
    /// A bulk string not followed by CRLF.
    #[error("Protocol error: expected CRLF after a bulk string")]
    MissingCrlf,
    /// A count line without CRLF within its maximum length.
    #[error("Protocol error: too big count string")]
    TooBigCount,
    /// An inline line longer than the limit.
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    /// Quotes in an inline command do not close.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A control byte where a request must start.
    #[error("Protocol error: unexpected byte {:#04x} where a request starts", .0)]
    UnexpectedByte(u8),
}

fn printable(byte: u8) -> String {
    if byte.is_ascii_graphic() || byte == b' ' {
        (byte as char).to_string()
    } else {
        format!("\\x{byte:02x}")
    }
}

/// Parses one request from the front of `buffer`. `Ok(None)`: incomplete, read
/// more. `Ok(Some((request, used)))`: `used` bytes form one request.
pub fn parse(buffer: &[u8], limits: &ParseLimits) -> Result<Option<(Request, usize)>, ProtocolError> {
    match buffer.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buffer, limits),
        Some(&byte) if byte < 0x20 && !matches!(byte, b'\r' | b'\n' | b'\t') => {
            Err(ProtocolError::UnexpectedByte(byte))
        }
        Some(_) => parse_inline(buffer, limits),
    }
}

/// Finds a CRLF-terminated line starting at `from`; returns (line, index after CRLF).
fn line(
    buffer: &[u8],
    from: usize,
    max: usize,
    too_long: ProtocolError,
) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let window = &buffer[from..buffer.len().min(from + max + 2)];
    match window.windows(2).position(|pair| pair == b"\r\n") {
        Some(end) => Ok(Some((&window[..end], from + end + 2))),
        None if window.len() >= max + 2 => Err(too_long),
        None => Ok(None),
    }
}

/// A strict decimal: optional '-', then digits only.
fn number(text: &[u8]) -> Option<i64> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn parse_multibulk(buffer: &[u8], limits: &ParseLimits) -> Result<Option<(Request, usize)>, ProtocolError> {
    let Some((count_text, mut position)) = line(buffer, 1, MAX_COUNT_LINE, ProtocolError::TooBigCount)? else {
        return Ok(None);
    };
    let count = number(count_text).ok_or(ProtocolError::InvalidMultibulkLength)?;
    if count <= 0 {
        return Ok(Some((Request::Empty, position)));
    }
    if count as u64 > limits.max_array_len as u64 {
        return Err(ProtocolError::InvalidMultibulkLength);
    }
    let mut arguments = Vec::with_capacity((count as usize).min(1024));
    for _ in 0..count {
        let Some(&marker) = buffer.get(position) else { return Ok(None) };
        if marker != b'$' {
            return Err(ProtocolError::ExpectedBulk(marker));
        }
        let Some((length_text, start)) = line(buffer, position + 1, MAX_COUNT_LINE, ProtocolError::TooBigCount)? else {
            return Ok(None);
        };
        let length = number(length_text).ok_or(ProtocolError::InvalidBulkLength)?;
        if length < 0 || length as u64 > limits.max_bulk_bytes as u64 {
            return Err(ProtocolError::InvalidBulkLength);
        }
        let end = start + length as usize;
        if buffer.len() < end + 2 {
            return Ok(None);
        }
        if &buffer[end..end + 2] != b"\r\n" {
            return Err(ProtocolError::MissingCrlf);
        }
        arguments.push(buffer[start..end].to_vec());
        position = end + 2;
    }
    Ok(Some((Request::Command(arguments), position)))
}

fn parse_inline(buffer: &[u8], limits: &ParseLimits) -> Result<Option<(Request, usize)>, ProtocolError> {
    let window = &buffer[..buffer.len().min(limits.max_inline_bytes + 1)];
    let Some(newline) = window.iter().position(|&byte| byte == b'\n') else {
        if window.len() > limits.max_inline_bytes {
            return Err(ProtocolError::TooBigInline);
        }
        return Ok(None);
    };
    let text = buffer[..newline].strip_suffix(b"\r").unwrap_or(&buffer[..newline]);
    let arguments = split_arguments(text)?;
    let request = if arguments.is_empty() { Request::Empty } else { Request::Command(arguments) };
    Ok(Some((request, newline + 1)))
}

/// Splits an inline line like Redis's `sdssplitargs`: whitespace separates,
/// "double quotes" take backslash escapes, 'single quotes' take only \'.
fn split_arguments(text: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut arguments = Vec::new();
    let mut position = 0;
    loop {
        while position < text.len() && text[position].is_ascii_whitespace() {
            position += 1;
        }
        if position == text.len() {
            return Ok(arguments);
        }
        let mut argument = Vec::new();
        match text[position] {
            quote @ (b'"' | b'\'') => {
                position += 1;
                loop {
                    let Some(&byte) = text.get(position) else { return Err(ProtocolError::UnbalancedQuotes) };
                    position += 1;
                    if byte == quote {
                        break;
                    }
                    if byte == b'\\' && position < text.len() {
                        let (unescaped, used) = unescape(&text[position..], quote);
                        argument.push(unescaped);
                        position += used;
                    } else {
                        argument.push(byte);
                    }
                }
                // A closing quote must end the argument.
                if text.get(position).is_some_and(|byte| !byte.is_ascii_whitespace()) {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
            }
            _ => {
                while position < text.len() && !text[position].is_ascii_whitespace() {
                    argument.push(text[position]);
                    position += 1;
                }
            }
        }
        arguments.push(argument);
    }
}

/// The byte an escape after a backslash stands for, and how many bytes it used.
fn unescape(rest: &[u8], quote: u8) -> (u8, usize) {
    if quote == b'\'' {
        return if rest[0] == b'\'' { (b'\'', 1) } else { (b'\\', 0) };
    }
    match rest[0] {
        b'n' => (b'\n', 1),
        b'r' => (b'\r', 1),
        b't' => (b'\t', 1),
        b'b' => (0x08, 1),
        b'a' => (0x07, 1),
        b'x' if rest.len() >= 3 => match u8::from_str_radix(std::str::from_utf8(&rest[1..3]).unwrap_or("zz"), 16) {
            Ok(byte) => (byte, 3),
            Err(_) => (b'x', 1),
        },
        other => (other, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ParseLimits = ParseLimits { max_bulk_bytes: 1024, max_array_len: 16, max_inline_bytes: 64 };

    fn parse_all(input: &[u8]) -> Result<Option<(Request, usize)>, ProtocolError> {
        parse(input, &LIMITS)
    }

    fn command(words: &[&str]) -> Request {
        Request::Command(words.iter().map(|word| word.as_bytes().to_vec()).collect())
    }

    #[test]
    fn a_multibulk_request_parses_and_reports_its_length() {
        let input = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n";
        assert_eq!(parse_all(input), Ok(Some((command(&["GET", "k"]), 20))));
        assert_eq!(parse_all(&input[20..]), Ok(Some((command(&["PING"]), 6))));
    }

    #[test]
    fn every_prefix_of_a_request_is_incomplete() {
        let input = b"*2\r\n$3\r\nSET\r\n$5\r\nvalue\r\n";
        for end in 0..input.len() {
            assert_eq!(parse_all(&input[..end]), Ok(None), "prefix of {end} bytes");
        }
    }

    #[test]
    fn redis_protocol_test_cases_are_handled_like_redis() {
        assert_eq!(parse_all(b"*-10\r\n"), Ok(Some((Request::Empty, 6))));
        assert_eq!(parse_all(b"*3000000000\r\n"), Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(parse_all(b"*1\r\n$-10\r\n"), Err(ProtocolError::InvalidBulkLength));
        assert_eq!(parse_all(b"*1\r\n$2000000000\r\n"), Err(ProtocolError::InvalidBulkLength));
        assert_eq!(parse_all(b"*1\r\n$blabla\r\n"), Err(ProtocolError::InvalidBulkLength));
        assert_eq!(parse_all(b"*1\r\nfoo\r\n"), Err(ProtocolError::ExpectedBulk(b'f')));
        assert_eq!(parse_all(b"*1\r\n\0"), Err(ProtocolError::ExpectedBulk(0)));
        assert_eq!(parse_all(b"\0PING\r\n"), Err(ProtocolError::UnexpectedByte(0)));
        assert_eq!(parse_all(b"*abc\r\n"), Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(parse_all(b"*1\r\n$1\r\nab\r\n"), Err(ProtocolError::MissingCrlf));
        assert_eq!(parse_all(b"*99999999999999999999999999999999999"), Err(ProtocolError::TooBigCount));
    }

    #[test]
    fn limits_refuse_oversized_input_before_it_arrives() {
        assert_eq!(parse_all(b"*17\r\n"), Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(parse_all(b"*1\r\n$1025\r\n"), Err(ProtocolError::InvalidBulkLength));
        assert_eq!(parse_all(&[b'a'; 65]), Err(ProtocolError::TooBigInline));
        assert_eq!(parse_all(&[b'a'; 64]), Ok(None));
    }

    #[test]
    fn inline_commands_split_like_redis() {
        assert_eq!(parse_all(b"SET k \"a b\\n\"\r\n"), Ok(Some((command(&["SET", "k", "a b\n"]), 15))));
        assert_eq!(parse_all(b"ECHO 'it\\'s'\n"), Ok(Some((command(&["ECHO", "it's"]), 13))));
        assert_eq!(parse_all(b"\r\n"), Ok(Some((Request::Empty, 2))));
        assert_eq!(parse_all(b"GET \"k\n"), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(parse_all(b"GET \"k\"x\n"), Err(ProtocolError::UnbalancedQuotes));
    }
}
