//! A connection's commands take effect in the order sent, as Redis executes
//! them: in a pipeline, a read sees the writes sent before it on the same
//! connection and none sent after it — through the leader and through each
//! follower, with the stock `redis` crate's pipelines too. And `MULTI`/`EXEC`
//! applies its queued commands as one log entry.

mod support;

use std::time::Duration;

use support::cluster::Cluster;
use support::resp::{Client, Reply};

/// Iterations per node; each is one pipelined batch of mixed commands.
const ITERATIONS: usize = 1000;
/// Iterations sent in one pipeline before their replies are read.
const PIPELINE: usize = 25;

/// One iteration's commands and the reply each must get.
fn iteration(node: u64, i: usize) -> Vec<(Vec<String>, Reply)> {
    let key = format!("n{node}-k{i}");
    let counter = format!("n{node}-c{i}");
    let value = format!("v{i}");
    let swapped = format!("w{i}");
    let ok = || Reply::Simple("OK".into());
    let command = |words: &[&str]| words.iter().map(|word| word.to_string()).collect::<Vec<_>>();
    vec![
        (command(&["SET", &key, &value]), ok()),
        (command(&["GET", &key]), Reply::bulk(&value)),
        (command(&["CAS", &key, &value, &swapped]), Reply::Integer(1)),
        (command(&["GET", &key]), Reply::bulk(&swapped)),
        (command(&["DEL", &key]), Reply::Integer(1)),
        (command(&["GET", &key]), Reply::Bulk(None)),
        (command(&["EXISTS", &key]), Reply::Integer(0)),
        (command(&["SET", &key, &value]), ok()),
        (command(&["MGET", &key]), Reply::Array(Some(vec![Reply::bulk(&value)]))),
        // A read right before a write must not see it.
        (command(&["SET", &key, "after"]), ok()),
        (command(&["GET", &key]), Reply::bulk("after")),
        (command(&["INCR", &counter]), Reply::Integer(0)), // Checked separately: see below.
        (command(&["GET", &counter]), Reply::Integer(0)),
        (command(&["INCR", &counter]), Reply::Integer(0)),
        (command(&["GET", &counter]), Reply::Integer(0)),
    ]
}

/// A `TRYAGAIN` answer: the command did not run, or may not have (a leader
/// change under a loaded machine); what follows in its iteration is unknown.
fn is_retryable(reply: &Reply) -> bool {
    matches!(reply, Reply::Error(message) if message.starts_with("TRYAGAIN"))
}

/// What pipelining every iteration through one node gave.
struct Outcome {
    /// Replies that differ from in-order execution.
    wrong: usize,
    /// The first few of them.
    examples: Vec<String>,
    /// Iterations cut short by a `TRYAGAIN` answer (not checked further).
    interrupted: usize,
}

/// Pipelines every iteration through `node` and compares each reply with what
/// in-order execution gives.
fn wrong_replies(cluster: &Cluster, node: u64) -> Outcome {
    let mut client = Client::connect(cluster.address(node)).unwrap();
    let mut counters = std::collections::HashMap::<String, i64>::new();
    let mut wrong = 0;
    let mut interrupted = 0;
    let mut examples = Vec::new();
    for start in (0..ITERATIONS).step_by(PIPELINE) {
        let mut expected = Vec::new();
        for i in start..(start + PIPELINE).min(ITERATIONS) {
            for (words, reply) in iteration(node, i) {
                let words: Vec<String> = words;
                let arguments: Vec<&str> = words.iter().map(String::as_str).collect();
                client.send(&arguments).unwrap();
                // The counter's value follows from the INCRs sent before it.
                let reply = match (words[0].as_str(), reply) {
                    ("INCR", _) => {
                        let count = counters.entry(words[1].clone()).or_default();
                        *count += 1;
                        Reply::Integer(*count)
                    }
                    ("GET", Reply::Integer(_)) => Reply::bulk(&counters[&words[1]].to_string()),
                    (_, reply) => reply,
                };
                expected.push((i, words, reply));
            }
        }
        let mut cut_short = None;
        for (i, words, want) in expected {
            let got = client.read_reply().unwrap();
            if cut_short == Some(i) {
                continue;
            }
            if is_retryable(&got) {
                cut_short = Some(i);
                interrupted += 1;
                continue;
            }
            if got != want {
                wrong += 1;
                if examples.len() < 5 {
                    examples.push(format!("{words:?}: got {got:?}, want {want:?}"));
                }
            }
        }
    }
    Outcome { wrong, examples, interrupted }
}

#[test]
fn a_pipelined_read_sees_the_writes_before_it_and_none_after_it_on_every_node() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(&[1, 2, 3]);
    let mut report = Vec::new();
    for node in 1..=3 {
        let Outcome { wrong, examples, interrupted } = wrong_replies(&cluster, node);
        let role = if node == leader { "leader" } else { "follower" };
        println!(
            "node {node} ({role}): {wrong} wrong replies of {} commands; {interrupted} iterations cut short by TRYAGAIN",
            ITERATIONS * 15
        );
        if wrong > 0 {
            report.push(format!("node {node} ({role}): {wrong} wrong, e.g. {examples:#?}"));
        }
        // A leader change may cut a few iterations short; most must be checked.
        assert!(interrupted * 10 < ITERATIONS, "node {node}: {interrupted} of {ITERATIONS} iterations cut short");
    }
    assert!(report.is_empty(), "out-of-order replies:\n{}", report.join("\n"));
}

#[test]
fn the_redis_crate_pipeline_reads_its_own_writes_through_every_node() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(&[1, 2, 3]);
    for node in 1..=3 {
        let client = redis::Client::open(format!("redis://{}/", cluster.address(node))).unwrap();
        let mut connection = client.get_connection_with_timeout(Duration::from_secs(5)).unwrap();
        for i in 0..200 {
            let key = format!("crate-{node}-{i}");
            // A TRYAGAIN (a leader change on a loaded machine) retries the
            // whole pipeline under a fresh key; an out-of-order answer fails.
            let mut attempt = 0;
            let replies = loop {
                attempt += 1;
                let key = format!("{key}-{attempt}");
                let result: redis::RedisResult<(String, String, i64, i64, Option<String>)> = redis::pipe()
                    .cmd("SET")
                    .arg(&key)
                    .arg(i)
                    .cmd("GET")
                    .arg(&key)
                    .cmd("INCR")
                    .arg(&key)
                    .cmd("DEL")
                    .arg(&key)
                    .cmd("GET")
                    .arg(&key)
                    .query(&mut connection);
                match result {
                    Ok(replies) => break replies,
                    Err(error) if error.to_string().contains("TryAgain") && attempt < 5 => continue,
                    Err(error) => panic!("node {node}: {error}"),
                }
            };
            let (set, read, count, deleted, gone) = replies;
            assert_eq!(
                (set.as_str(), read, count, deleted, gone),
                ("OK", i.to_string(), i + 1, 1, None),
                "node {node}"
            );
        }
    }
}

#[test]
fn multi_exec_applies_its_commands_together_and_reports_errors_as_redis_does() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(&[1, 2, 3]);
    let follower = if leader == 1 { 2 } else { 1 };
    // Settle the cluster first: a leader change under a loaded machine would
    // answer TRYAGAIN, which this test is not about.
    cluster.write_acked(&[1, 2, 3], "settled", "yes");
    for node in [leader, follower] {
        let mut client = Client::connect(cluster.address(node)).unwrap();
        let key = format!("tx{node}");
        assert_eq!(client.command(&["MULTI"]).unwrap(), Reply::Simple("OK".into()));
        assert_eq!(client.command(&["SET", &key, "1"]).unwrap(), Reply::Simple("QUEUED".into()));
        assert_eq!(client.command(&["INCR", &key]).unwrap(), Reply::Simple("QUEUED".into()));
        assert_eq!(client.command(&["GET", &key]).unwrap(), Reply::Simple("QUEUED".into()));
        assert_eq!(client.command(&["MULTI"]).unwrap(), Reply::Error("ERR MULTI calls can not be nested".into()));
        let exec = client.command(&["EXEC"]).unwrap();
        assert_eq!(
            exec,
            Reply::Array(Some(vec![Reply::Simple("OK".into()), Reply::Integer(2), Reply::bulk("2")])),
            "node {node}"
        );
        // A runtime error fails only its own command, as in Redis.
        client.command(&["MULTI"]).unwrap();
        client.command(&["SET", "text", "abc"]).unwrap();
        client.command(&["INCR", "text"]).unwrap();
        client.command(&["INCR", &key]).unwrap();
        let exec = client.command(&["EXEC"]).unwrap();
        let Reply::Array(Some(replies)) = exec else { panic!("EXEC answers an array: {exec:?}") };
        assert_eq!(replies[0], Reply::Simple("OK".into()));
        assert!(replies[1].is_error(), "{replies:?}");
        assert_eq!(replies[2], Reply::Integer(3));
        // A command refused while queueing aborts the whole transaction.
        client.command(&["MULTI"]).unwrap();
        client.command(&["SET", &key, "100"]).unwrap();
        assert!(client.command(&["GET"]).unwrap().is_error(), "wrong arity is refused at once");
        let Reply::Error(aborted) = client.command(&["EXEC"]).unwrap() else { panic!("EXEC must fail") };
        assert!(aborted.starts_with("EXECABORT"), "{aborted}");
        assert_eq!(client.command(&["GET", &key]).unwrap(), Reply::bulk("3"), "nothing of it applied");
        // DISCARD drops the queue; EXEC and DISCARD without MULTI are errors.
        client.command(&["MULTI"]).unwrap();
        client.command(&["SET", &key, "discarded"]).unwrap();
        assert_eq!(client.command(&["DISCARD"]).unwrap(), Reply::Simple("OK".into()));
        assert_eq!(client.command(&["GET", &key]).unwrap(), Reply::bulk("3"));
        assert_eq!(client.command(&["EXEC"]).unwrap(), Reply::Error("ERR EXEC without MULTI".into()));
        assert_eq!(client.command(&["DISCARD"]).unwrap(), Reply::Error("ERR DISCARD without MULTI".into()));
        let Reply::Error(watch) = client.command(&["WATCH", &key]).unwrap() else { panic!("WATCH is refused") };
        assert!(watch.contains("WATCH is not supported"), "{watch}");
    }
}

#[test]
fn a_readonly_connection_still_reads_its_own_pipelined_writes() {
    // A stale read serves the local state, but only once the connection's
    // earlier write is applied on this node.
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(&[1, 2, 3]);
    for node in [1, 2, 3] {
        let mut client = Client::connect(cluster.address(node)).unwrap();
        assert_eq!(client.command(&["READONLY"]).unwrap(), Reply::Simple("OK".into()));
        let mut wrong = Vec::new();
        let mut interrupted = 0;
        for round in 0..20 {
            let mut expected = Vec::new();
            for i in 0..25 {
                let key = format!("ro{node}-{round}-{i}");
                client.send(&["SET", &key, &i.to_string()]).unwrap();
                client.send(&["GET", &key]).unwrap();
                expected.push(Reply::Simple("OK".into()));
                expected.push(Reply::bulk(&i.to_string()));
            }
            let mut cut_short = None;
            for (pair, want) in expected.into_iter().enumerate().map(|(index, want)| (index / 2, want)) {
                let got = client.read_reply().unwrap();
                if cut_short == Some(pair) {
                    continue;
                }
                if is_retryable(&got) {
                    cut_short = Some(pair); // Its GET may not see it: not checked.
                    interrupted += 1;
                    continue;
                }
                if got != want {
                    wrong.push(format!("got {got:?}, want {want:?}"));
                }
            }
        }
        let role = if node == leader { "leader" } else { "follower" };
        assert!(interrupted < 50, "node {node}: {interrupted} of 500 pairs cut short by TRYAGAIN");
        assert!(
            wrong.is_empty(),
            "node {node} ({role}): {} wrong, e.g. {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(3)]
        );
    }
}
