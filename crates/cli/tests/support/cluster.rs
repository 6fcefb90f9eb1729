//! A cluster of real `conclave serve` processes on loopback, for tests.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use conclave_server::{Member, ServerConfig};

use super::resp::{info, wait_until, Client, Reply};

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
    children: Vec<Option<Child>>,
}

/// A free port below the kernel's ephemeral range (32768 and up), tried at
/// random: no outgoing connection can take it before the node binds it, and
/// clusters of tests running in parallel do not pick the same (CI once saw a
/// cluster never agree on a leader: a node could not bind its port).
/// The probe stays bound in `held` until the cluster's ports are all picked, so
/// none is picked twice.
fn free_address(held: &mut Vec<TcpListener>) -> SocketAddr {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new();
    let listener = (0..1_000u32)
        .find_map(|attempt| {
            let mut hasher = random.build_hasher();
            hasher.write_u32(attempt);
            TcpListener::bind(("127.0.0.1", 20_000 + (hasher.finish() % 12_000) as u16)).ok()
        })
        .unwrap_or_else(|| TcpListener::bind("127.0.0.1:0").unwrap());
    let address = listener.local_addr().unwrap();
    held.push(listener);
    address
}

impl Cluster {
    /// Writes configs for `nodes` nodes (free ports picked now) without starting any.
    pub fn new(nodes: u64) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut held = Vec::new();
        let members: Vec<Member> = (1..=nodes)
            .map(|id| Member {
                id,
                peer_address: free_address(&mut held),
                client_address: free_address(&mut held),
                http_address: None,
                priority: None,
            })
            .collect();
        drop(held);
        for member in &members {
            let mut config = ServerConfig {
                cluster_id: 7,
                node_id: member.id,
                data_dir: dir.path().join(format!("node{}", member.id)),
                election_mode: None,
                initial_leader: None,
                password: None,
                members: members.clone(),
                join: false,
                timing: Default::default(),
                limits: Default::default(),
                snapshot: Default::default(),
                state_machine: Default::default(),
            };
            // Fail fast so that clients retry soon after a crash.
            config.timing.request_timeout_ms = 2_000;
            config.timing.leader_wait_ms = 2_000;
            config.validate().unwrap();
            std::fs::write(dir.path().join(format!("node{}.toml", member.id)), config.to_toml()).unwrap();
        }
        let children = (0..nodes).map(|_| None).collect();
        Cluster { dir, members, children }
    }

    /// Configs for a cluster of `voters` (bootstrapped from them) and
    /// `joiners` more nodes, ids after them, each configured to wait to be
    /// added (`join = true`, its own entry only). None started.
    pub fn with_joiners(voters: u64, joiners: u64) -> Cluster {
        let cluster = Cluster::new(voters + joiners);
        let bootstrap: Vec<Member> = cluster.members[..voters as usize].to_vec();
        for id in 1..=voters {
            cluster.edit_config(id, |config| config.members = bootstrap.clone());
        }
        for id in voters + 1..=voters + joiners {
            cluster.make_joiner(id);
        }
        cluster
    }

    /// Rewrites node `id`'s config to join an existing cluster (its own
    /// entry only, `join = true`).
    pub fn make_joiner(&self, id: u64) {
        let own = self.members[id as usize - 1].clone();
        self.edit_config(id, |config| {
            config.members = vec![own];
            config.join = true;
        });
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}"))
    }

    /// Writes configs and starts every node.
    pub fn start(nodes: u64) -> Cluster {
        let mut cluster = Cluster::new(nodes);
        for id in 1..=nodes {
            cluster.start_node(id, &[]);
        }
        cluster
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.log"))
    }

    pub fn start_node(&mut self, id: u64, extra: &[&str]) {
        self.start_node_with_env(id, extra, &[]);
    }

    /// Starts node `id` with `env` added to its environment.
    pub fn start_node_with_env(&mut self, id: u64, extra: &[&str], env: &[(&str, &std::ffi::OsStr)]) {
        assert!(self.children[id as usize - 1].is_none(), "node {id} already runs");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(id)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_conclave"))
            .args(["serve", "--exit-on-stdin-close", "--log-level", "debug", "--config"])
            .arg(self.dir.path().join(format!("node{id}.toml")))
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[id as usize - 1] = Some(child);
    }

    /// Waits up to `timeout` for node `id` to exit on its own, and returns how.
    pub fn wait_for_exit(&mut self, id: u64, timeout: Duration) -> std::process::ExitStatus {
        let child = self.children[id as usize - 1].as_mut().expect("node runs");
        let status = wait_until(&format!("node {id} to exit"), timeout, || child.try_wait().unwrap());
        self.children[id as usize - 1] = None;
        status
    }

    /// SIGKILL: no shutdown, no flush beyond what the WAL already synced.
    pub fn kill(&mut self, id: u64) {
        let mut child = self.children[id as usize - 1].take().expect("node runs");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to node `id`'s process.
    pub fn signal(&self, id: u64, signal: &str) {
        let child = self.children[id as usize - 1].as_ref().expect("node runs");
        let status = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill -{signal} node {id}");
    }

    /// Rewrites node `id`'s config file (before it starts).
    pub fn edit_config(&self, id: u64, edit: impl FnOnce(&mut ServerConfig)) {
        let path = self.dir.path().join(format!("node{id}.toml"));
        let mut config = ServerConfig::load_with(&path, &[]).unwrap();
        edit(&mut config);
        config.validate().unwrap();
        std::fs::write(path, config.to_toml()).unwrap();
    }

    /// One `INFO` field of node `id`, if it answers.
    pub fn info_field(&self, id: u64, field: &str) -> Option<String> {
        info(self.address(id))?.into_iter().find(|(key, _)| key == field).map(|(_, value)| value)
    }

    /// Node `id`'s log so far.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.log_path(id)).unwrap_or_default()
    }

    /// Graceful stop: closing stdin makes the node drain and exit.
    pub fn stop(&mut self, id: u64) {
        let mut child = self.children[id as usize - 1].take().expect("node runs");
        drop(child.stdin.take());
        let status = wait_until("a graceful stop", Duration::from_secs(15), || child.try_wait().unwrap());
        assert!(status.success(), "node {id} exited with {status}");
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to node `id`'s process.
    pub fn send_signal(&self, id: u64, signal: &str) {
        let pid = self.children[id as usize - 1].as_ref().expect("node runs").id();
        let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap();
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    pub fn address(&self, id: u64) -> SocketAddr {
        self.members[id as usize - 1].client_address
    }

    pub fn running(&self) -> Vec<u64> {
        (1..=self.members.len() as u64).filter(|id| self.children[*id as usize - 1].is_some()).collect()
    }

    /// Waits until every node in `among` names the same leader, which says it leads.
    pub fn wait_for_leader(&self, among: &[u64]) -> u64 {
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.agreed_leader(among)));
        found.unwrap_or_else(|_| {
            // Say why: the last lines each node logged.
            let tails: Vec<String> = among
                .iter()
                .map(|id| {
                    let log = std::fs::read_to_string(self.log_path(*id)).unwrap_or_default();
                    let lines: Vec<&str> = log.lines().collect();
                    format!("--- node {id}:\n{}", lines[lines.len().saturating_sub(15)..].join("\n"))
                })
                .collect();
            panic!("no leader that {among:?} all agree on within 20 s\n{}", tails.join("\n"))
        })
    }

    fn agreed_leader(&self, among: &[u64]) -> u64 {
        wait_until("one leader all agree on", Duration::from_secs(20), || {
            let mut leaders = among.iter().map(|id| {
                let info = info(self.address(*id))?;
                info.into_iter().find(|(key, _)| key == "leader_id").and_then(|(_, value)| value.parse::<u64>().ok())
            });
            let first = leaders.next()??;
            if !leaders.all(|leader| leader == Some(first)) || !among.contains(&first) {
                return None;
            }
            let role = info(self.address(first))?.into_iter().find(|(key, _)| key == "role")?.1;
            (role == "leader").then_some(first)
        })
    }

    /// Sets `key` through any of `nodes`, retrying on errors, until acknowledged.
    pub fn write_acked(&self, nodes: &[u64], key: &str, value: &str) {
        let mut attempt = 0usize;
        wait_until(&format!("an acknowledged SET {key}"), Duration::from_secs(30), || {
            attempt += 1;
            let node = nodes[attempt % nodes.len()];
            let mut client = Client::connect(self.address(node)).ok()?;
            (client.command(&["SET", key, value]).ok()? == Reply::Simple("OK".into())).then_some(())
        });
    }

    /// `MGET keys` through `node` (a linearizable read through the log).
    pub fn mget(&self, node: u64, keys: &[String]) -> Vec<Option<String>> {
        let mut client = Client::connect(self.address(node)).unwrap();
        let mut arguments = vec!["MGET"];
        arguments.extend(keys.iter().map(String::as_str));
        match client.command(&arguments).unwrap() {
            Reply::Array(Some(items)) => items
                .into_iter()
                .map(|item| match item {
                    Reply::Bulk(value) => value.map(|bytes| String::from_utf8(bytes).unwrap()),
                    other => panic!("MGET item {other:?}"),
                })
                .collect(),
            other => panic!("MGET answered {other:?}"),
        }
    }
}

/// Lines of each node's log shown when a test fails.
const LOG_TAIL_LINES: usize = 80;

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failing test's nodes are gone with their temp dir: their logs'
        // ends go into the test's output, where CI keeps them.
        if std::thread::panicking() {
            for member in &self.members {
                let log = std::fs::read_to_string(self.log_path(member.id)).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
                eprintln!("---- node {} log, last {} lines ----\n{}", member.id, tail.len(), tail.join("\n"));
            }
        }
    }
}
