//! Bad input on the peer port: a malformed or oversized frame,
//! a wrong cluster id, an unknown node id — each refused (and logged), the
//! connection closed, the node unharmed.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use conclave_server::peer::frame::{self, Handshake, HandshakeReply, HANDSHAKE_MAGIC};
use conclave_server::Member;
use support::node::TestNode;
use support::resp::Reply;

const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

use support::ports::free_address;

/// Node 1 of a three-node cluster 7 whose other members never start. A
/// multi-node config needs its ports before the node binds them, and a port
/// found free and released can be taken meanwhile by another test's
/// connection ("Address already in use", seen in CI): then new ports are
/// picked, a bounded number of times.
fn lonely_node() -> TestNode {
    for _ in 0..5 {
        let started = TestNode::try_start(|config| {
            config.members = (1..=3)
                .map(|id| Member {
                    id,
                    peer_address: free_address(),
                    client_address: free_address(),
                    http_address: None,
                    priority: None,
                })
                .collect();
            config.limits.max_frame_bytes = MAX_FRAME_BYTES;
            config.limits.max_command_bytes = 64 * 1024;
        });
        match started {
            Ok(node) => return node,
            Err(conclave_server::ServerError::Bind { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(error) => panic!("the node starts: {error:?}"),
        }
    }
    panic!("no free ports after 5 tries");
}

fn connect(node: &TestNode) -> TcpStream {
    let stream = TcpStream::connect(node.peer_address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

fn handshake(stream: &mut TcpStream, cluster_id: u64, from: u64) -> HandshakeReply {
    let bytes =
        frame::encode(&Handshake { magic: HANDSHAKE_MAGIC, cluster_id, from, to: 1, reply_to: None }, 4096).unwrap();
    stream.write_all(&bytes).unwrap();
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).unwrap();
    let mut content = vec![0; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut content).unwrap();
    frame::decode(&content, 4096).unwrap()
}

/// True once the node has closed `stream` (EOF or reset before the read timeout).
fn closed(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 64];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) => {
                return !matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
            }
        }
    }
}

/// The node still answers clients.
fn assert_unharmed(node: &TestNode) {
    let mut client = node.client();
    assert_eq!(client.command(&["PING"]).unwrap(), Reply::Simple("PONG".into()));
}

#[test]
fn a_wrong_cluster_id_is_refused() {
    let node = lonely_node();
    let mut stream = connect(&node);
    match handshake(&mut stream, 99, 2) {
        HandshakeReply::Refused(reason) => assert!(reason.contains("wrong cluster id 99"), "{reason}"),
        other => panic!("a peer of another cluster was answered {other:?}"),
    }
    assert!(closed(&mut stream));
    assert_unharmed(&node);
}

#[test]
fn a_peer_claiming_this_nodes_id_or_id_0_is_refused() {
    // Another id is taken (a node added since, or one this node is behind
    // on: docs/design/membership.md); the core screens its messages.
    let node = lonely_node();
    for claimed in [0, 1] {
        let mut stream = connect(&node);
        match handshake(&mut stream, 7, claimed) {
            HandshakeReply::Refused(reason) => {
                assert!(reason.contains(&format!("node {claimed} cannot be a peer of node 1")), "{reason}")
            }
            other => panic!("a peer claiming id {claimed} was answered {other:?}"),
        }
        assert!(closed(&mut stream));
    }
    let mut stream = connect(&node);
    assert_eq!(handshake(&mut stream, 7, 42), HandshakeReply::Accepted, "a node this one does not know yet");
    assert_unharmed(&node);
}

#[test]
fn a_malformed_handshake_or_frame_closes_the_connection() {
    let node = lonely_node();
    // Garbage instead of a handshake.
    let mut stream = connect(&node);
    stream.write_all(&[0, 0, 0, 5, 1, 0xFF, 0xFF, 0xFF, 0xFF]).unwrap();
    assert!(closed(&mut stream));
    // A good handshake, then a frame of the wrong version, then one that does not decode.
    for bad in [&[0u8, 0, 0, 3, 9, 0, 0][..], &[0, 0, 0, 4, frame::FRAME_VERSION, 0xEE, 0xEE, 0xEE]] {
        let mut stream = connect(&node);
        assert_eq!(handshake(&mut stream, 7, 2), HandshakeReply::Accepted);
        stream.write_all(bad).unwrap();
        assert!(closed(&mut stream), "{bad:?} left the connection open");
    }
    assert_unharmed(&node);
}

#[test]
fn an_oversized_frame_is_refused_before_it_is_read() {
    let node = lonely_node();
    let mut stream = connect(&node);
    assert_eq!(handshake(&mut stream, 7, 3), HandshakeReply::Accepted);
    stream.write_all(&(MAX_FRAME_BYTES as u32 + 1).to_be_bytes()).unwrap();
    assert!(closed(&mut stream));
    // An oversized handshake too.
    let mut stream = connect(&node);
    stream.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert!(closed(&mut stream));
    assert_unharmed(&node);
}
