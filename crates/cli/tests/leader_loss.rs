//! What a client meets when its leader is lost: a read already forwarded to
//! a leader that stops answering (paused by SIGSTOP) is sent again to the new
//! leader as soon as the follower learns of it, and answers with the value
//! rather than a timeout.

mod support;

use std::time::Duration;

use support::cluster::Cluster;
use support::resp::{Client, Reply};

#[test]
fn reads_forwarded_to_a_paused_leader_are_answered_by_the_next_one() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(&[1, 2, 3]);
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    cluster.write_acked(&[1, 2, 3], "kept", "before the pause");
    // Every follower must know the value is committed before the pause.
    for &node in &followers {
        let mut client = Client::connect(cluster.address(node)).unwrap();
        assert_eq!(client.command(&["GET", "kept"]).unwrap(), Reply::bulk("before the pause"));
    }
    let mut clients: Vec<Client> = followers.iter().map(|id| Client::connect(cluster.address(*id)).unwrap()).collect();
    cluster.send_signal(leader, "STOP");
    // The followers still believe in the paused leader for a moment: these
    // reads are forwarded to it and would wait out the request timeout.
    for client in &mut clients {
        client.set_read_timeout(Duration::from_secs(30)).unwrap();
        for _ in 0..20 {
            client.send(&["GET", "kept"]).unwrap();
        }
    }
    let mut answers = Vec::new();
    for client in &mut clients {
        for _ in 0..20 {
            answers.push(client.read_reply().unwrap());
        }
    }
    cluster.send_signal(leader, "CONT");
    let timed_out = answers.iter().filter(|reply| **reply != Reply::bulk("before the pause")).count();
    assert_eq!(timed_out, 0, "every read gets the value from the new leader: {answers:?}");
    let new_leader = cluster.wait_for_leader(&[1, 2, 3]);
    println!("leader {leader} paused; {} reads answered by the next leader {new_leader}", answers.len());
    cluster.kill(leader);
}
