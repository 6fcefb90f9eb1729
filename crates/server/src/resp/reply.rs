//! RESP2 reply encoding.

use crate::kv::KvReply;

/// Appends `+text\r\n`.
pub fn simple(out: &mut Vec<u8>, text: &str) {
    out.push(b'+');
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `-message\r\n`; CR and LF in the message become spaces.
pub fn error(out: &mut Vec<u8>, message: &str) {
    out.push(b'-');
    out.extend(message.bytes().map(|byte| if byte == b'\r' || byte == b'\n' { b' ' } else { byte }));
    out.extend_from_slice(b"\r\n");
}

/// Appends `:n\r\n`.
pub fn integer(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(format!(":{value}\r\n").as_bytes());
}

/// Appends a bulk string.
pub fn bulk(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a nil bulk string.
pub fn nil(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// Appends an array header of `length` elements.
pub fn array_header(out: &mut Vec<u8>, length: usize) {
    out.extend_from_slice(format!("*{length}\r\n").as_bytes());
}

/// Appends the reply to a KV command.
pub fn kv(out: &mut Vec<u8>, reply: &KvReply) {
    match reply {
        KvReply::Ok => simple(out, "OK"),
        KvReply::Nil => nil(out),
        KvReply::Integer(value) => integer(out, *value),
        KvReply::Bulk(value) => bulk(out, value),
        KvReply::Array(values) => {
            array_header(out, values.len());
            for value in values {
                match value {
                    Some(value) => bulk(out, value),
                    None => nil(out),
                }
            }
        }
        KvReply::Error(message) => error(out, &format!("ERR {message}")),
        KvReply::Multi(replies) => {
            array_header(out, replies.len());
            for reply in replies {
                kv(out, reply);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_encode_as_resp2() {
        let mut out = Vec::new();
        kv(&mut out, &KvReply::Array(vec![Some(b"a".to_vec()), None]));
        integer(&mut out, -3);
        error(&mut out, "ERR bad\r\nline");
        assert_eq!(out, b"*2\r\n$1\r\na\r\n$-1\r\n:-3\r\n-ERR bad  line\r\n");
    }
}
