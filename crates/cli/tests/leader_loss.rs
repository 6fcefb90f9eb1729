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

#[test]
fn a_transaction_is_applied_whole_or_not_at_all_across_a_leader_kill() {
    const TRANSACTIONS: usize = 300;
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(&[1, 2, 3]);
    let follower = if leader == 1 { 2 } else { 1 };
    cluster.write_acked(&[1, 2, 3], "settled", "yes");
    let mut client = Client::connect(cluster.address(follower)).unwrap();
    client.set_read_timeout(Duration::from_secs(30)).unwrap();
    let keys = |t: usize| [format!("tx{t}-a"), format!("tx{t}-b"), format!("tx{t}-c")];
    for t in 0..TRANSACTIONS {
        client.send(&["MULTI"]).unwrap();
        for key in keys(t) {
            client.send(&["SET", &key, &t.to_string()]).unwrap();
        }
        client.send(&["EXEC"]).unwrap();
    }
    // The leader dies while the transactions are on their way.
    cluster.kill(leader);
    let mut committed = 0;
    let mut acknowledged = vec![false; TRANSACTIONS];
    for acked in acknowledged.iter_mut() {
        assert_eq!(client.read_reply().unwrap(), Reply::Simple("OK".into()));
        for _ in 0..3 {
            assert_eq!(client.read_reply().unwrap(), Reply::Simple("QUEUED".into()));
        }
        let exec = client.read_reply().unwrap();
        if exec == Reply::Array(Some(vec![Reply::Simple("OK".into()); 3])) {
            committed += 1;
            *acked = true;
        } else {
            assert!(exec.is_error(), "EXEC answers its replies or an error: {exec:?}");
        }
    }
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    cluster.wait_for_leader(&survivors);
    cluster.write_acked(&survivors, "after", "the kill");
    let mut all_or_nothing = 0;
    for (t, &acked) in acknowledged.iter().enumerate().take(TRANSACTIONS) {
        let values = cluster.mget(follower, &keys(t));
        let whole = values.iter().all(|value| value.as_deref() == Some(t.to_string().as_str()));
        let none = values.iter().all(Option::is_none);
        assert!(whole || none, "transaction {t} is partly applied: {values:?}");
        assert!(whole || !acked, "acknowledged transaction {t} is lost: {values:?}");
        all_or_nothing += 1;
    }
    println!("{committed} of {TRANSACTIONS} EXECs acknowledged; {all_or_nothing} checked whole or absent");
    assert_eq!(all_or_nothing, TRANSACTIONS);
}
