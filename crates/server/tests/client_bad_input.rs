//! Bad input on the client port: every case gets an error and/or a
//! closed connection, and the server keeps serving everyone else.

mod support;

use std::time::Duration;

use support::node::TestNode;
use support::resp::{wait_until, Client, Reply};

fn node() -> TestNode {
    TestNode::start_leader(|config| {
        config.limits.max_bulk_bytes = 1024;
        config.limits.max_array_len = 64;
        config.limits.max_inline_bytes = 4096;
        config.timing.client_read_timeout_ms = 300;
    })
}

/// Others are unaffected: a fresh client can still write and read.
fn assert_serving(node: &TestNode) {
    let mut client = node.client();
    assert_eq!(client.command(&["SET", "alive", "yes"]).unwrap(), Reply::Simple("OK".into()));
    assert_eq!(client.command(&["GET", "alive"]).unwrap(), Reply::bulk("yes"));
}

/// Sends `input`, expects one error reply containing `expected`, then a close.
fn assert_refused(node: &TestNode, input: &[u8], expected: &str) {
    let mut client = node.client();
    client.send_raw(input).unwrap();
    match client.read_reply().unwrap() {
        Reply::Error(message) => assert!(message.contains(expected), "{message:?} lacks {expected:?}"),
        other => panic!("expected an error for {input:?}, got {other:?}"),
    }
    assert!(client.is_closed(), "the connection stays open after {input:?}");
    assert_serving(node);
}

#[test]
fn negative_multibulk_length_is_an_empty_request() {
    let node = node();
    let mut client = node.client();
    client.send_raw(b"*-10\r\n").unwrap();
    assert_eq!(client.command(&["PING"]).unwrap(), Reply::Simple("PONG".into()));
}

#[test]
fn out_of_range_multibulk_length_is_refused() {
    assert_refused(&node(), b"*3000000000\r\n", "invalid multibulk length");
}

#[test]
fn negative_bulk_length_is_refused() {
    assert_refused(&node(), b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n", "invalid bulk length");
}

#[test]
fn out_of_range_bulk_length_is_refused() {
    assert_refused(&node(), b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n", "invalid bulk length");
}

#[test]
fn non_numeric_bulk_length_is_refused() {
    assert_refused(&node(), b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n", "invalid bulk length");
}

#[test]
fn a_nul_where_a_type_byte_belongs_is_refused() {
    let node = node();
    assert_refused(&node, b"\0\r\n", "unexpected byte 0x00");
    assert_refused(&node, b"*1\r\n\0\0\0\r\n", "expected '$'");
}

#[test]
fn malformed_inline_commands_are_refused() {
    let node = node();
    assert_refused(&node, b"SET \"k v\r\n", "unbalanced quotes");
    assert_refused(&node, b"SET \"k\"v x\r\n", "unbalanced quotes");
    assert_refused(&node, &[b'a'; 5000], "too big inline request");
    // A well-formed inline command works.
    let mut client = node.client();
    client.send_raw(b"SET inline \"a b\"\r\nGET inline\r\n").unwrap();
    assert_eq!(client.read_reply().unwrap(), Reply::Simple("OK".into()));
    assert_eq!(client.read_reply().unwrap(), Reply::bulk("a b"));
}

#[test]
fn oversized_bulk_and_array_are_refused_before_they_arrive() {
    let node = node();
    assert_refused(&node, b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$1025\r\n", "invalid bulk length");
    assert_refused(&node, b"*65\r\n", "invalid multibulk length");
}

#[test]
fn a_client_that_stalls_mid_request_is_closed() {
    let node = node();
    let mut client = node.client();
    client.send_raw(b"*2\r\n$3\r\nGET\r\n$5\r\nab").unwrap();
    match client.read_reply().unwrap() {
        Reply::Error(message) => assert!(message.contains("incomplete request timed out"), "{message}"),
        other => panic!("expected a timeout error, got {other:?}"),
    }
    assert!(client.is_closed());
    assert_serving(&node);
}

#[test]
fn unknown_commands_and_wrong_arity_get_redis_style_errors() {
    let node = node();
    let mut client = node.client();
    let reply = client.command(&["FLUSHALL"]).unwrap();
    assert!(
        matches!(&reply, Reply::Error(message) if message.starts_with("ERR unknown command 'flushall'")),
        "{reply:?}"
    );
    let reply = client.command(&["GET"]).unwrap();
    assert!(
        matches!(&reply, Reply::Error(message) if message.starts_with("ERR wrong number of arguments")),
        "{reply:?}"
    );
    // The connection survives ordinary errors.
    assert_eq!(client.command(&["PING"]).unwrap(), Reply::Simple("PONG".into()));
}

/// The soft limit on open files of this process (from /proc), if known.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[test]
fn thousands_of_idle_connections_are_bounded_and_harmless() {
    // Both ends live in this process: each client costs two descriptors, and
    // other tests of this binary run alongside.
    let budget = open_file_limit().map_or(2000, |limit| limit.saturating_sub(400) / 2);
    let clients = budget.min(2000);
    if clients < 2000 {
        println!("note: open-file limit allows {clients} idle clients instead of 2000");
    }
    assert!(clients >= 100, "the open-file limit is too low for this test: {budget}");
    let node = TestNode::start_leader(|config| config.limits.max_clients = clients);
    let mut idle: Vec<Client> = (0..clients - 1).map(|_| node.client()).collect();
    // The server has accepted them all once the last one answers.
    assert_eq!(idle.last_mut().unwrap().command(&["PING"]).unwrap(), Reply::Simple("PONG".into()));
    // The last slot is free for one more; the one after it is told and closed.
    let mut last = node.client();
    assert_eq!(last.command(&["PING"]).unwrap(), Reply::Simple("PONG".into()));
    let mut refused = node.client();
    match refused.read_reply() {
        Ok(Reply::Error(message)) => assert!(message.contains("max number of clients"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(refused.is_closed());
    // Idle clients still work, and closing some frees slots.
    assert_eq!(idle[0].command(&["SET", "k", "v"]).unwrap(), Reply::Simple("OK".into()));
    idle.truncate(clients / 2);
    let mut fresh = wait_until("a freed client slot", Duration::from_secs(10), || {
        let mut client = node.client();
        client.set_read_timeout(Duration::from_secs(2)).ok()?;
        (client.command(&["PING"]).ok()? == Reply::Simple("PONG".into())).then_some(client)
    });
    assert_eq!(fresh.command(&["GET", "k"]).unwrap(), Reply::bulk("v"));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let node = node();
    let mut client = node.client();
    let mut batch = Vec::new();
    for index in 0..200 {
        batch.extend_from_slice(
            format!("*3\r\n$3\r\nSET\r\n$1\r\nn\r\n${}\r\n{index}\r\n", index.to_string().len()).as_bytes(),
        );
        batch.extend_from_slice(b"*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n");
    }
    client.send_raw(&batch).unwrap();
    for index in 0..200 {
        assert_eq!(client.read_reply().unwrap(), Reply::Simple("OK".into()));
        assert_eq!(client.read_reply().unwrap(), Reply::Integer(index + 1));
    }
}
