//! Real `conclave serve` processes on loopback: replication across
//! nodes, failover after SIGKILL with no acknowledged write lost, catch-up of a
//! restarted node, recovery of the whole cluster from its data dirs, a node of
//! another cluster refused, and redis-cli / redis-benchmark against the cluster.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::cluster::Cluster;
use support::resp::{info, wait_until, Client, Reply};

/// A client thread that writes `liveN = value-of-liveN` in a loop through the
/// given nodes, keeping the keys whose SET was acknowledged.
struct LiveWriter {
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl LiveWriter {
    fn start(addresses: Vec<SocketAddr>) -> LiveWriter {
        let acked = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (acked_count, stop_flag) = (acked.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(90);
            let mut acknowledged = Vec::new();
            let mut clients: Vec<Option<Client>> = addresses.iter().map(|_| None).collect();
            for attempt in 0..20_000usize {
                if stop_flag.load(Ordering::SeqCst) || Instant::now() >= deadline {
                    break;
                }
                let slot = attempt % addresses.len();
                if clients[slot].is_none() {
                    clients[slot] = Client::connect(addresses[slot]).ok();
                }
                let Some(client) = clients[slot].as_mut() else { continue };
                let key = format!("live{attempt}");
                match client.command(&["SET", &key, &value(&key)]) {
                    Ok(Reply::Simple(ok)) if ok == "OK" => {
                        acknowledged.push(key);
                        acked_count.store(acknowledged.len(), Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(_) => clients[slot] = None,
                }
            }
            acknowledged
        });
        LiveWriter { acked, stop, thread }
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    fn wait_for(&self, count: usize) {
        wait_until(&format!("{count} acknowledged live writes"), Duration::from_secs(60), || {
            (self.acked() >= count).then_some(())
        });
    }

    fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

fn keys(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|index| format!("key{index}")).collect()
}

fn value(key: &str) -> String {
    format!("value-of-{key}")
}

fn assert_all_present(cluster: &Cluster, node: u64, keys: &[String]) {
    let values = cluster.mget(node, keys);
    for (key, found) in keys.iter().zip(values) {
        assert_eq!(found.as_deref(), Some(value(key).as_str()), "{key} through node {node}");
    }
}

#[test]
fn three_nodes_replicate_fail_over_catch_up_and_recover() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(&[1, 2, 3]);
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();

    // A write through one follower is read through the other.
    let mut client = Client::connect(cluster.address(followers[0])).unwrap();
    assert_eq!(client.command(&["SET", "greeting", "hello"]).unwrap(), Reply::Simple("OK".into()));
    let mut other = Client::connect(cluster.address(followers[1])).unwrap();
    assert_eq!(other.command(&["GET", "greeting"]).unwrap(), Reply::bulk("hello"));

    let before = keys(0..40);
    for key in &before {
        cluster.write_acked(&[1, 2, 3], key, &value(key));
    }
    // A client keeps writing through the followers while the leader is SIGKILLed.
    let writer = LiveWriter::start(followers.iter().map(|id| cluster.address(*id)).collect());
    writer.wait_for(20);
    cluster.kill(leader);
    let acked_at_kill = writer.acked();
    writer.wait_for(acked_at_kill + 20);
    let live = writer.stop();
    // And writes retried until acknowledged go through the survivors.
    let after = keys(40..80);
    for key in &after {
        cluster.write_acked(&followers, key, &value(key));
    }
    let new_leader = cluster.wait_for_leader(&followers);
    assert_ne!(new_leader, leader);
    let acknowledged: Vec<String> = before.iter().chain(&after).chain(&live).cloned().collect();
    for chunk in acknowledged.chunks(200) {
        assert_all_present(&cluster, followers[0], chunk);
    }

    // The killed node restarts from its data dir and catches up.
    cluster.start_node(leader, &[]);
    let target = info(cluster.address(new_leader)).unwrap();
    let commit: u64 = target.iter().find(|(key, _)| key == "commit_index").unwrap().1.parse().unwrap();
    wait_until("the restarted node to catch up", Duration::from_secs(20), || {
        let applied: u64 =
            info(cluster.address(leader))?.into_iter().find(|(key, _)| key == "applied_index")?.1.parse().ok()?;
        (applied >= commit).then_some(())
    });
    let mut stale = Client::connect(cluster.address(leader)).unwrap();
    assert_eq!(stale.command(&["READONLY"]).unwrap(), Reply::Simple("OK".into()));
    assert_eq!(stale.command(&["GET", "key79"]).unwrap(), Reply::bulk(&value("key79")));

    // Stop everything gracefully, start again: the data survived.
    for id in 1..=3 {
        cluster.stop(id);
    }
    for id in 1..=3 {
        cluster.start_node(id, &[]);
    }
    cluster.wait_for_leader(&[1, 2, 3]);
    assert_all_present(&cluster, 2, &acknowledged);
    let mut client = Client::connect(cluster.address(3)).unwrap();
    assert_eq!(client.command(&["GET", "greeting"]).unwrap(), Reply::bulk("hello"));
}

#[test]
fn five_nodes_survive_two_failures() {
    let mut cluster = Cluster::start(5);
    let leader = cluster.wait_for_leader(&[1, 2, 3, 4, 5]);
    let first = keys(0..10);
    for key in &first {
        cluster.write_acked(&[1, 2, 3, 4, 5], key, &value(key));
    }
    let other = if leader == 5 { 4 } else { 5 };
    cluster.kill(leader);
    cluster.kill(other);
    let alive = cluster.running();
    let second = keys(10..20);
    for key in &second {
        cluster.write_acked(&alive, key, &value(key));
    }
    cluster.wait_for_leader(&alive);
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    for node in alive {
        assert_all_present(&cluster, node, &all);
    }
}

#[test]
fn a_node_of_another_cluster_is_refused() {
    let mut cluster = Cluster::new(3);
    cluster.start_node(1, &[]);
    cluster.start_node(2, &[]);
    cluster.start_node(3, &["--cluster-id", "99"]);
    let leader = cluster.wait_for_leader(&[1, 2]);
    cluster.write_acked(&[1, 2], "k", "v");
    let log = cluster.log_path(leader);
    wait_until("the refusal in the log", Duration::from_secs(20), || {
        std::fs::read_to_string(&log).ok()?.contains("wrong cluster id 99").then_some(())
    });
    let stranger = info(cluster.address(3)).unwrap();
    assert!(stranger.contains(&("leader_id".to_string(), "none".to_string())), "{stranger:?}");
    assert!(stranger.contains(&("applied_index".to_string(), "0".to_string())), "{stranger:?}");
}

fn installed(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

#[test]
fn redis_cli_and_redis_benchmark_work_against_the_cluster() {
    if !installed("redis-cli") || !installed("redis-benchmark") {
        println!("skipped: redis-cli/redis-benchmark not installed (Debian package redis-tools)");
        return;
    }
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(&[1, 2, 3]);
    let port = |id: u64| cluster.address(id).port().to_string();
    let run = |program: &str, arguments: &[&str]| {
        let output = Command::new(program).args(arguments).output().unwrap();
        assert!(output.status.success(), "{program} {arguments:?} failed: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(run("redis-cli", &["-p", &port(1), "SET", "smoke", "42"]).trim(), "OK");
    assert_eq!(run("redis-cli", &["-p", &port(2), "GET", "smoke"]).trim(), "42");
    assert_eq!(run("redis-cli", &["-p", &port(3), "INCR", "smoke"]).trim(), "43");
    assert!(run("redis-cli", &["-p", &port(1), "INFO"]).contains("election_mode:"));
    let benchmark = run("redis-benchmark", &["-p", &port(1), "-t", "set,get", "-n", "2000", "-c", "10", "-q"]);
    println!("{benchmark}");
    assert!(benchmark.contains("SET") && benchmark.contains("GET"), "{benchmark}");
    assert!(!benchmark.contains("ERR"), "{benchmark}");
}

#[test]
fn the_redis_crate_talks_to_the_cluster() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(&[1, 2, 3]);
    let connect = |id: u64| {
        let client = redis::Client::open(format!("redis://{}/", cluster.address(id))).unwrap();
        client.get_connection_with_timeout(Duration::from_secs(5)).unwrap()
    };
    let mut first = connect(1);
    let mut second = connect(2);
    let reply: String = redis::cmd("SET").arg("crate").arg("redis-rs").query(&mut first).unwrap();
    assert_eq!(reply, "OK");
    let value: String = redis::cmd("GET").arg("crate").query(&mut second).unwrap();
    assert_eq!(value, "redis-rs");
    let (count, values): (i64, Vec<Option<String>>) = redis::pipe()
        .cmd("INCRBY")
        .arg("counter")
        .arg(5)
        .cmd("MGET")
        .arg("crate")
        .arg("missing")
        .query(&mut second)
        .unwrap();
    assert_eq!((count, values), (5, vec![Some("redis-rs".to_string()), None]));
    let swapped: i64 = redis::cmd("CAS").arg("counter").arg("5").arg("6").query(&mut connect(3)).unwrap();
    assert_eq!(swapped, 1);
    let error = redis::cmd("NOSUCHCOMMAND").query::<String>(&mut first).unwrap_err();
    assert!(error.to_string().contains("unknown command"), "{error}");
}
