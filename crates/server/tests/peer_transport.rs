//! The peer transport dials from the node's own peer IP and opens with a
//! handshake naming cluster, sender and addressee.

mod support;

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::Duration;

use conclave_server::peer::frame::{self, Handshake, HANDSHAKE_MAGIC};
use conclave_server::Member;
use support::node::TestNode;

use support::ports::free_address_on as free_address;

#[test]
fn outgoing_peer_connections_bind_to_the_own_peer_ip() {
    let peer_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11));
    let own_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 12));
    // Node 1 is played by this test: a bare listener on 127.0.0.11.
    let fake_peer = TcpListener::bind(SocketAddr::new(peer_ip, 0)).unwrap();
    let fake_address = fake_peer.local_addr().unwrap();
    let (accepted, on_accept) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut stream, from)) = fake_peer.accept() {
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut length = [0u8; 4];
            stream.read_exact(&mut length).unwrap();
            let mut content = vec![0; u32::from_be_bytes(length) as usize];
            stream.read_exact(&mut content).unwrap();
            let handshake: Handshake = frame::decode(&content, 4096).unwrap();
            let _ = accepted.send((from, handshake));
        }
    });
    let _node = TestNode::start(|config| {
        config.node_id = 2;
        config.members = vec![
            Member {
                id: 1,
                peer_address: fake_address,
                client_address: free_address(peer_ip),
                http_address: None,
                priority: None,
            },
            Member {
                id: 2,
                peer_address: free_address(own_ip),
                client_address: free_address(own_ip),
                http_address: None,
                priority: None,
            },
        ];
    });
    let (from, handshake) = on_accept.recv_timeout(Duration::from_secs(10)).expect("node 2 dials node 1");
    assert_eq!(from.ip(), own_ip, "the connection comes from the node's own peer IP");
    assert_eq!((handshake.magic, handshake.cluster_id, handshake.from, handshake.to), (HANDSHAKE_MAGIC, 7, 2, 1));
    assert!(handshake.reply_to.is_some_and(|address| address.ip() == own_ip), "it says where to dial it back");
}
