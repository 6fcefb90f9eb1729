//! Membership changes on real processes (docs/design/membership.md), each
//! step through `conclave admin`: a learner added while the cluster works
//! catches up through a snapshot and is promoted, a voter is removed, the
//! rest fail over and every acknowledged write reads back; a wiped node is
//! replaced; a rolling restart under load loses nothing; bad requests get
//! their reasons.

#[path = "support/process.rs"]
mod process;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use process::output_within;
use support::cluster::Cluster;
use support::resp::{wait_until, Client, Reply};
use support::writers::{read_all, Writers};

fn admin(cluster: &Cluster, node: u64, arguments: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_conclave"));
    command.args(["admin", "--endpoint", &cluster.address(node).to_string()]).args(arguments);
    output_within(command, "conclave admin", Duration::from_secs(60))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `conclave admin` at `node` and requires success; returns its stdout.
fn admin_ok(cluster: &Cluster, node: u64, arguments: &[&str]) -> String {
    let output = admin(cluster, node, arguments);
    assert!(output.status.success(), "admin {arguments:?}: {}{}", text(&output.stdout), text(&output.stderr));
    text(&output.stdout)
}

/// Runs `conclave admin` at `node`, requires failure, returns its stderr.
fn admin_fails(cluster: &Cluster, node: u64, arguments: &[&str]) -> String {
    let output = admin(cluster, node, arguments);
    assert!(!output.status.success(), "admin {arguments:?} succeeded: {}", text(&output.stdout));
    text(&output.stderr)
}

/// `add-learner ID` with the addresses of its config.
fn add_learner(cluster: &Cluster, at: u64, id: u64) -> String {
    let member = &cluster.members[id as usize - 1];
    let (peer, client) = (member.peer_address.to_string(), member.client_address.to_string());
    admin_ok(cluster, at, &["add-learner", &id.to_string(), "--peer", &peer, "--client", &client])
}

/// The members as the leader reports them (`members --json`), asked at `at`.
fn members(cluster: &Cluster, at: u64) -> serde_json::Value {
    serde_json::from_str(&admin_ok(cluster, at, &["members", "--json"])).unwrap()
}

/// Waits until the leader reports member `id` with no lag.
fn wait_caught_up(cluster: &Cluster, at: u64, id: u64) {
    wait_until(&format!("node {id} caught up"), Duration::from_secs(30), || {
        let json = members(cluster, at);
        let row = json["members"].as_array()?.iter().find(|row| row["id"] == id)?.clone();
        (row["lag"] == 0 && row["match_index"].as_u64() > Some(0)).then_some(())
    });
}

fn write_keys(cluster: &Cluster, nodes: &[u64], prefix: &str, count: usize) -> Vec<String> {
    let mut client = Client::connect(cluster.address(nodes[0])).unwrap();
    let keys: Vec<String> = (0..count).map(|index| format!("{prefix}{index}")).collect();
    for key in &keys {
        match client.command(&["SET", key, key]) {
            Ok(Reply::Simple(ok)) if ok == "OK" => {}
            _ => cluster.write_acked(nodes, key, key),
        }
    }
    keys
}

fn assert_all_read_back(cluster: &Cluster, node: u64, keys: &[String]) {
    let values = read_all(cluster.address(node), keys, false);
    let missing: Vec<&String> =
        keys.iter().zip(&values).filter(|(key, value)| value.as_ref() != Some(*key)).map(|(key, _)| key).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        keys.len(),
        &missing[..missing.len().min(5)]
    );
}

#[test]
fn a_learner_catches_up_through_a_snapshot_is_promoted_and_the_cluster_fails_over_without_node_1() {
    let mut cluster = Cluster::with_joiners(3, 1);
    for id in 1..=3 {
        // Compact often, so that the new node needs a snapshot.
        cluster.edit_config(id, |config| config.snapshot.every_entries = 100);
    }
    for id in 1..=3 {
        cluster.start_node(id, &[]);
    }
    let leader = cluster.wait_for_leader(&[1, 2, 3]);
    let mut keys = write_keys(&cluster, &[1, 2, 3], "before-", 400);
    // The leader compacted its log: what node 4 needs is gone from it.
    wait_until("the leader compacts its log", Duration::from_secs(30), || {
        let index: u64 = cluster.info_field(leader, "snapshot_index")?.parse().ok()?;
        (index > 0).then_some(())
    });

    // Node 4 waits; added as a learner, it is sent a snapshot.
    cluster.start_node(4, &[]);
    let added = add_learner(&cluster, 2, 4);
    assert!(added.contains("node 4 added as a learner"), "{added}");
    wait_until("node 4 installs a snapshot", Duration::from_secs(30), || {
        cluster.log(4).contains("installed the leader's snapshot").then_some(())
    });
    wait_caught_up(&cluster, 1, 4);
    let json = members(&cluster, 3);
    let row = |json: &serde_json::Value, id: u64| {
        json["members"].as_array().unwrap().iter().find(|row| row["id"] == id).cloned()
    };
    assert_eq!(row(&json, 4).unwrap()["role"], "learner");
    let promoted = admin_ok(&cluster, 1, &["promote", "4"]);
    assert!(promoted.contains("node 4 promoted to voter"), "{promoted}");
    keys.extend(write_keys(&cluster, &[1, 2, 3, 4], "four-voters-", 100));

    // Node 1 leaves (if it leads, it hands over first and the CLI follows).
    let removed = admin_ok(&cluster, 1, &["remove", "1"]);
    assert!(removed.contains("node 1 removed"), "{removed}");
    let leader = cluster.wait_for_leader(&[2, 3, 4]);
    let json = members(&cluster, leader);
    assert!(row(&json, 1).is_none(), "node 1 left: {json}");
    assert_eq!(json["removed"], serde_json::json!([1]));
    keys.extend(write_keys(&cluster, &[2, 3, 4], "three-voters-", 100));
    wait_until("node 1 says it was removed", Duration::from_secs(20), || {
        cluster.log(1).contains("this node was removed from the cluster").then_some(())
    });

    // The leader dies: the others elect one of them, and nothing is lost.
    cluster.kill(leader);
    let survivors: Vec<u64> = [2, 3, 4].into_iter().filter(|id| *id != leader).collect();
    let new_leader = cluster.wait_for_leader(&survivors);
    keys.extend(write_keys(&cluster, &survivors, "after-failover-", 50));
    assert_all_read_back(&cluster, new_leader, &keys);
}

#[test]
fn a_node_whose_data_was_wiped_is_removed_added_back_and_promoted() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(&[1, 2, 3]);
    let mut keys = write_keys(&cluster, &[1, 2, 3], "kept-", 200);
    let lost = if leader == 3 { 2 } else { 3 };
    let others: Vec<u64> = (1..=3).filter(|id| *id != lost).collect();

    // Its disk dies: stop it, remove it, wipe it, start it empty.
    cluster.kill(lost);
    admin_ok(&cluster, others[0], &["remove", &lost.to_string()]);
    std::fs::remove_dir_all(cluster.data_dir(lost)).unwrap();
    cluster.make_joiner(lost);
    cluster.start_node(lost, &[]);
    add_learner(&cluster, others[1], lost);
    wait_caught_up(&cluster, others[0], lost);
    admin_ok(&cluster, others[0], &["promote", &lost.to_string()]);
    keys.extend(write_keys(&cluster, &[1, 2, 3], "replaced-", 50));
    // Back to three voters: the replaced node counts again, and holds it all.
    let json = members(&cluster, others[0]);
    assert!(json["members"].as_array().unwrap().iter().all(|row| row["role"] == "voter"), "{json}");
    wait_caught_up(&cluster, others[0], lost);
    // Its own store: replicated is not yet applied, so wait for the apply.
    wait_until("the replaced node's own store holds every key", Duration::from_secs(30), || {
        let local = read_all(cluster.address(lost), &keys, true);
        keys.iter().zip(&local).all(|(key, value)| value.as_ref() == Some(key)).then_some(())
    });
    assert_all_read_back(&cluster, lost, &keys);
}

#[test]
fn a_rolling_restart_under_load_loses_and_fails_nothing() {
    let mut cluster = Cluster::start(3);
    let first_leader = cluster.wait_for_leader(&[1, 2, 3]);
    let addresses: Vec<_> = (1..=3).map(|id| cluster.address(id)).collect();
    let writers = Writers::start(addresses, 4, "rolling-");
    writers.wait_for("writes before the restarts", Writers::count, 200);
    // Followers first, the leader last: each SIGTERM, restart, catch up.
    let mut order: Vec<u64> = (1..=3).filter(|id| *id != first_leader).collect();
    order.push(first_leader);
    for id in order {
        cluster.send_signal(id, "TERM");
        let status = cluster.wait_for_exit(id, Duration::from_secs(20));
        assert!(status.success(), "node {id} exited with {status}");
        cluster.start_node(id, &[]);
        let leader = cluster.wait_for_leader(&[1, 2, 3]);
        wait_caught_up(&cluster, leader, id);
        let before = writers.count();
        writers.wait_for("writes after the restart", Writers::count, before + 100);
    }
    let errors = writers.errors();
    let acked = writers.stop();
    assert!(errors.is_empty(), "{} writes failed, e.g. {:?}", errors.len(), &errors[..errors.len().min(3)]);
    let mut times: Vec<Instant> = acked.iter().map(|(_, at)| *at).collect();
    times.sort();
    let longest = times.windows(2).map(|pair| pair[1] - pair[0]).max().unwrap_or_default();
    eprintln!("rolling restart: {} writes acknowledged, longest gap between acknowledgements {longest:?}", acked.len());
    let keys: Vec<String> = acked.into_iter().map(|(key, _)| key).collect();
    let leader = cluster.wait_for_leader(&[1, 2, 3]);
    assert_all_read_back(&cluster, leader, &keys);
}

#[test]
fn bad_membership_requests_are_refused_with_the_reason() {
    let mut cluster = Cluster::with_joiners(3, 1);
    for id in 1..=3 {
        cluster.start_node(id, &[]);
    }
    let leader = cluster.wait_for_leader(&[1, 2, 3]);
    let follower = if leader == 1 { 2 } else { 1 };
    let members_now = cluster.members.clone();
    let own = |id: u64| members_now[id as usize - 1].clone();

    // An existing id, an existing address, an unknown node, the command line.
    let (peer2, client4) = (own(2).peer_address.to_string(), own(4).client_address.to_string());
    let error = admin_fails(
        &cluster,
        follower,
        &["add-learner", "2", "--peer", &own(4).peer_address.to_string(), "--client", &client4],
    );
    assert!(error.contains("node 2 is already a member"), "{error}");
    let error = admin_fails(&cluster, leader, &["add-learner", "4", "--peer", &peer2, "--client", &client4]);
    assert!(error.contains(&format!("address {peer2} is already node 2's")), "{error}");
    let error = admin_fails(&cluster, leader, &["promote", "9"]);
    assert!(error.contains("node 9 is not a member"), "{error}");
    let error = admin_fails(&cluster, leader, &["promote", "2"]);
    assert!(error.contains("node 2 is already a voter"), "{error}");
    let error = admin_fails(&cluster, leader, &["set-priority", "2", "high"]);
    assert!(error.contains("invalid value 'high'"), "{error}");
    let error = admin_fails(&cluster, leader, &["add-learner", "4", "--peer", "nowhere", "--client", &client4]);
    assert!(error.contains("invalid value 'nowhere'"), "{error}");

    // Straight over RESP: malformed arguments, a follower, before AUTH.
    let mut client = Client::connect(cluster.address(leader)).unwrap();
    let mut refused = |arguments: &[&str]| match client.command(arguments).unwrap() {
        Reply::Error(text) => text,
        other => panic!("{arguments:?} answered {other:?}"),
    };
    assert!(refused(&["ADMIN", "PROMOTE"]).contains("ADMIN PROMOTE ID"));
    assert!(refused(&["ADMIN", "REMOVE", "x"]).contains("'x' is not a member id"));
    assert!(refused(&["ADMIN", "ADD-LEARNER", "4", "a:b", "127.0.0.1:1"]).contains("'a:b' is not an IP:PORT address"));
    assert!(refused(&["ADMIN", "SET-PRIORITY", "1", "-1"]).contains("'-1' is not a priority"));
    let mut at_follower = Client::connect(cluster.address(follower)).unwrap();
    match at_follower.command(&["ADMIN", "PROMOTE", "4"]).unwrap() {
        Reply::Error(text) => {
            assert!(text.starts_with("NOTLEADER") && text.contains(&format!("node {leader} does at")), "{text}")
        }
        other => panic!("a follower answered {other:?}"),
    }

    // A change that cannot commit (the other two voters are paused) holds
    // the next one back, until the leader gives up its leadership.
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    for id in &followers {
        cluster.signal(*id, "STOP");
    }
    let address = cluster.address(leader);
    let peer4 = own(4).peer_address.to_string();
    let last_index = |cluster: &Cluster| -> Option<u64> { cluster.info_field(leader, "last_index")?.parse().ok() };
    let before = last_index(&cluster).expect("the leader answers INFO");
    let first = std::thread::spawn(move || {
        let mut client = Client::connect(address).unwrap();
        client.command(&["ADMIN", "ADD-LEARNER", "4", &peer4, &client4]).unwrap()
    });
    // The first change is in the leader's log (not committed: no quorum).
    wait_until("the first change is proposed", Duration::from_secs(10), || {
        (last_index(&cluster)? > before).then_some(())
    });
    let mut second = Client::connect(cluster.address(leader)).unwrap();
    let refusal = second.command(&["ADMIN", "SET-PRIORITY", "1", "2"]).unwrap();
    assert!(
        matches!(&refusal, Reply::Error(text) if text.contains("a membership change is in progress")),
        "{refusal:?}"
    );
    match first.join().unwrap() {
        Reply::Error(text) => assert!(
            text.contains("did not commit within") || text.contains("leadership changed before the change"),
            "{text}"
        ),
        other => panic!("a change without a quorum answered {other:?}"),
    }
    for id in &followers {
        cluster.signal(*id, "CONT");
    }
}

#[test]
fn membership_commands_need_auth_and_the_last_voter_stays() {
    let mut cluster = Cluster::new(1);
    cluster.edit_config(1, |config| config.password = Some("secret".into()));
    cluster.start_node(1, &[]);
    let mut client = wait_until("node 1 listens", Duration::from_secs(20), || Client::connect(cluster.address(1)).ok());
    match client.command(&["ADMIN", "REMOVE", "1"]).unwrap() {
        Reply::Error(text) => assert!(text.starts_with("NOAUTH"), "{text}"),
        other => panic!("before AUTH: {other:?}"),
    }
    assert_eq!(client.command(&["AUTH", "secret"]).unwrap(), Reply::Simple("OK".into()));
    wait_until("node 1 leads", Duration::from_secs(20), || {
        matches!(client.command(&["ADMIN", "MEMBERS"]).ok()?, Reply::Bulk(Some(_))).then_some(())
    });
    let mut command = Command::new(env!("CARGO_BIN_EXE_conclave"));
    command.args(["admin", "--endpoint", &cluster.address(1).to_string(), "--password", "secret", "remove", "1"]);
    let output = output_within(command, "conclave admin", Duration::from_secs(30));
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("removing node 1 would leave no voter"), "{}", text(&output.stderr));
}
