//! The RESP command set against a one-node cluster.

mod support;

use support::node::TestNode;
use support::resp::Reply;

fn ok() -> Reply {
    Reply::Simple("OK".into())
}

#[test]
fn the_kv_commands_behave_like_redis() {
    let node = TestNode::start_leader(|_| {});
    let mut client = node.client();
    assert_eq!(client.command(&["GET", "a"]).unwrap(), Reply::Bulk(None));
    assert_eq!(client.command(&["SET", "a", "1"]).unwrap(), ok());
    assert_eq!(client.command(&["SET", "a", "2", "NX"]).unwrap(), Reply::Bulk(None));
    assert_eq!(client.command(&["SET", "b", "2", "XX"]).unwrap(), Reply::Bulk(None));
    assert_eq!(client.command(&["SET", "a", "3", "XX"]).unwrap(), ok());
    assert_eq!(client.command(&["INCR", "a"]).unwrap(), Reply::Integer(4));
    assert_eq!(client.command(&["INCRBY", "a", "10"]).unwrap(), Reply::Integer(14));
    assert_eq!(client.command(&["DECR", "a"]).unwrap(), Reply::Integer(13));
    assert_eq!(client.command(&["MSET", "x", "1", "y", "2"]).unwrap(), ok());
    assert_eq!(
        client.command(&["MGET", "x", "nope", "y"]).unwrap(),
        Reply::Array(Some(vec![Reply::bulk("1"), Reply::Bulk(None), Reply::bulk("2")]))
    );
    assert_eq!(client.command(&["EXISTS", "x", "y", "nope"]).unwrap(), Reply::Integer(2));
    assert_eq!(client.command(&["DBSIZE"]).unwrap(), Reply::Integer(3));
    assert_eq!(client.command(&["CAS", "x", "9", "5"]).unwrap(), Reply::Integer(0));
    assert_eq!(client.command(&["CAS", "x", "1", "5"]).unwrap(), Reply::Integer(1));
    assert_eq!(client.command(&["GET", "x"]).unwrap(), Reply::bulk("5"));
    assert_eq!(client.command(&["DEL", "x", "y", "nope"]).unwrap(), Reply::Integer(2));
    assert!(client.command(&["INCR", "missing-but-text"]).unwrap() == Reply::Integer(1));
    assert_eq!(client.command(&["SET", "t", "text"]).unwrap(), ok());
    assert!(client.command(&["INCR", "t"]).unwrap().is_error());
    assert_eq!(client.command(&["ECHO", "hi"]).unwrap(), Reply::bulk("hi"));
    assert_eq!(client.command(&["SELECT", "0"]).unwrap(), ok());
    assert_eq!(client.command(&["CLIENT", "SETNAME", "tester"]).unwrap(), ok());
    assert_eq!(client.command(&["CLIENT", "GETNAME"]).unwrap(), Reply::bulk("tester"));
    assert_eq!(client.command(&["READONLY"]).unwrap(), ok());
    assert_eq!(client.command(&["GET", "a"]).unwrap(), Reply::bulk("13"));
    let Reply::Bulk(Some(info)) = client.command(&["INFO"]).unwrap() else { panic!("INFO is a bulk string") };
    let info = String::from_utf8(info).unwrap();
    for field in ["role:leader", "leader_id:1", "election_mode:", "commit_index:", "applied_index:", "term:"] {
        assert!(info.contains(field), "INFO lacks {field}: {info}");
    }
    assert_eq!(client.command(&["QUIT"]).unwrap(), ok());
    assert!(client.is_closed());
}

#[test]
fn auth_gates_every_command_when_a_password_is_set() {
    let node = TestNode::start_leader(|config| config.password = Some("s3cret".into()));
    let mut client = node.client();
    assert!(matches!(client.command(&["GET", "a"]).unwrap(), Reply::Error(message) if message.starts_with("NOAUTH")));
    assert!(
        matches!(client.command(&["AUTH", "nope"]).unwrap(), Reply::Error(message) if message.starts_with("WRONGPASS"))
    );
    assert_eq!(client.command(&["AUTH", "s3cret"]).unwrap(), ok());
    assert_eq!(client.command(&["SET", "a", "1"]).unwrap(), ok());
}

#[test]
fn data_survives_a_restart_from_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    for round in 0..2 {
        let data_dir = data_dir.clone();
        let node = TestNode::start_leader(move |config| config.data_dir = data_dir);
        let mut client = node.client();
        if round == 0 {
            assert_eq!(client.command(&["SET", "durable", "yes"]).unwrap(), ok());
            assert_eq!(client.command(&["INCR", "counter"]).unwrap(), Reply::Integer(1));
        } else {
            assert_eq!(client.command(&["GET", "durable"]).unwrap(), Reply::bulk("yes"));
            assert_eq!(client.command(&["INCR", "counter"]).unwrap(), Reply::Integer(2));
        }
    }
}

#[test]
fn the_http_endpoint_serves_the_status_as_json() {
    use std::io::{Read, Write};
    let node = TestNode::start_leader(|config| config.members[0].http_address = Some("127.0.0.1:0".parse().unwrap()));
    let address = node.server.as_ref().unwrap().http_address.expect("http is configured");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    stream.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    let status: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(status["role"], "Leader");
    assert_eq!(status["node_id"], 1);
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(b"GET /nope HTTP/1.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
}

#[test]
fn without_a_leader_a_request_waits_then_fails_with_tryagain() {
    let free = support::ports::free_address;
    // Node 1 of three whose peers never start: no quorum, no leader.
    let node = TestNode::start(|config| {
        config.members = (1..=3)
            .map(|id| conclave_server::Member {
                id,
                peer_address: free(),
                client_address: free(),
                http_address: None,
                priority: None,
            })
            .collect();
        config.timing.leader_wait_ms = 300;
        config.timing.request_timeout_ms = 1_000;
    });
    let mut client = node.client();
    let started = std::time::Instant::now();
    match client.command(&["SET", "k", "v"]).unwrap() {
        Reply::Error(message) => assert!(message.starts_with("TRYAGAIN no leader elected within"), "{message}"),
        other => panic!("expected -TRYAGAIN, got {other:?}"),
    }
    assert!(started.elapsed() >= std::time::Duration::from_millis(300), "it waited for a leader first");
    // Local commands still answer at once.
    assert_eq!(client.command(&["PING"]).unwrap(), Reply::Simple("PONG".into()));
}
