//! The demo's cluster (also `conclave bench`'s): `conclave serve` child
//! processes on loopback, configured and started by `conclave local`'s launcher
//! code, which the demo can kill (SIGKILL), pause (SIGSTOP) and resume, restart,
//! and query over HTTP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use conclave_server::config::Timing;
use conclave_server::Member;
use serde_json::Value;

use super::client::http_json;
use super::links::Links;
use crate::local_command::{self, LocalArgs};

/// Longest wait for one HTTP answer.
pub const HTTP_TIMEOUT: Duration = Duration::from_millis(500);

/// A node's view as its `/status` tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// Its id.
    pub id: u64,
    /// `Leader`, `Follower`, …
    pub role: String,
    /// Leads and serves.
    pub serving: bool,
    /// Its ballot.
    pub term: u64,
    /// The leader it knows.
    pub leader: Option<u64>,
    /// Newest committed leader term.
    pub leader_term: Option<u64>,
    /// Data version: (last log term, last index).
    pub data_version: (u64, u64),
    /// Commit index.
    pub commit_index: u64,
}

impl NodeView {
    /// Reads a `/status` answer.
    pub fn parse(status: &Value) -> Option<NodeView> {
        Some(NodeView {
            id: status["node_id"].as_u64()?,
            role: status["role"].as_str()?.to_string(),
            serving: status["serving"].as_bool()?,
            term: status["term"].as_u64()?,
            leader: status["leader"].as_u64(),
            leader_term: status["leader_term"].as_u64(),
            data_version: (status["last_term"].as_u64()?, status["last_index"].as_u64()?),
            commit_index: status["commit_index"].as_u64()?,
        })
    }

    /// A serving leader.
    pub fn is_serving_leader(&self) -> bool {
        self.role == "Leader" && self.serving
    }
}

/// The running cluster.
pub struct DemoCluster {
    /// Configs, data dirs, logs and the report.
    pub dir: PathBuf,
    /// Every member.
    pub members: Vec<Member>,
    args: LocalArgs,
    timing: Timing,
    executable: PathBuf,
    children: Vec<Option<Child>>,
    /// Stopped with SIGSTOP: running, but silent (and left out of `live`).
    paused: Vec<bool>,
    /// Peer links through the demo's proxies, when it starts them.
    pub links: Option<Links>,
}

impl DemoCluster {
    /// Writes the configs of `nodes` nodes into `dir` and starts them all.
    pub fn start(dir: &Path, nodes: u64, timing: Timing) -> std::io::Result<DemoCluster> {
        DemoCluster::start_with(dir, nodes, timing, None, false)
    }

    /// As [`DemoCluster::start`], in election mode `election_mode` (the
    /// shipped default if `None`), and with every peer link through a proxy
    /// the demo controls if `proxied` (see [`Links`]).
    pub fn start_with(
        dir: &Path,
        nodes: u64,
        timing: Timing,
        election_mode: Option<String>,
        proxied: bool,
    ) -> std::io::Result<DemoCluster> {
        std::fs::create_dir_all(dir)?;
        let args = LocalArgs {
            nodes,
            base_port: None,
            data_dir: Some(dir.to_path_buf()),
            distinct_addresses: false,
            election_mode,
            password: None,
            cluster_id: 1,
            engine: None,
        };
        let members = local_command::members(&args)?;
        let links = if proxied { Some(Links::start(&members)?) } else { None };
        let executable = std::env::current_exe()?;
        let mut cluster = DemoCluster {
            dir: dir.to_path_buf(),
            members,
            args,
            timing,
            executable,
            children: (0..nodes).map(|_| None).collect(),
            paused: vec![false; nodes as usize],
            links,
        };
        for id in 1..=nodes {
            cluster.write_config(id, Some(1))?;
            cluster.spawn(id)?;
        }
        Ok(cluster)
    }

    fn config_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}.toml"))
    }

    fn write_config(&self, id: u64, initial_leader: Option<u64>) -> std::io::Result<()> {
        // Through the proxies, node `id` reaches node j at the link id → j.
        let seen: Vec<Member> = self
            .members
            .iter()
            .map(|other| match &self.links {
                Some(links) if other.id != id => Member { peer_address: links.address(id, other.id), ..other.clone() },
                _ => other.clone(),
            })
            .collect();
        let mut config = local_command::node_config(&self.args, &seen, id, &self.dir, self.timing.clone());
        config.initial_leader = initial_leader;
        config.validate().map_err(std::io::Error::other)?;
        std::fs::write(self.config_path(id), config.to_toml())
    }

    fn spawn(&mut self, id: u64) -> std::io::Result<()> {
        if let Some(links) = &self.links {
            links.node_up(id)?;
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(format!("node{id}.log")))?;
        let mut command = local_command::serve_command(&self.executable, &self.config_path(id));
        command.stderr(log);
        self.children[id as usize - 1] = Some(command.spawn()?);
        Ok(())
    }

    /// SIGKILL (`Child::kill` on Unix): no shutdown, no final sync.
    pub fn kill(&mut self, id: u64) -> std::io::Result<()> {
        self.paused[id as usize - 1] = false;
        if let Some(links) = &self.links {
            // As the node's host would: refuse redials, then reset connections
            // once the process is gone (not before: it would redial).
            links.refuse_dials_to(id);
        }
        if let Some(mut child) = self.children[id as usize - 1].take() {
            child.kill()?;
            child.wait()?;
        }
        if let Some(links) = &self.links {
            links.node_gone(id);
        }
        Ok(())
    }

    /// SIGSTOP: the process keeps its sockets open and says nothing more, as a
    /// host that hangs or loses power looks to its peers (no refused redial).
    pub fn pause(&mut self, id: u64) -> std::io::Result<()> {
        self.signal(id, "-STOP")?;
        self.paused[id as usize - 1] = true;
        if let Some(links) = &self.links {
            // What a held link kept back never arrives.
            links.drop_held_from(id);
        }
        Ok(())
    }

    /// SIGCONT after [`DemoCluster::pause`].
    pub fn resume(&mut self, id: u64) -> std::io::Result<()> {
        if self.paused[id as usize - 1] {
            self.signal(id, "-CONT")?;
            self.paused[id as usize - 1] = false;
        }
        Ok(())
    }

    fn signal(&self, id: u64, signal: &str) -> std::io::Result<()> {
        let Some(child) = &self.children[id as usize - 1] else {
            return Err(std::io::Error::other(format!("node {id} is not running")));
        };
        let status = std::process::Command::new("kill").args([signal, &child.id().to_string()]).status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("kill {signal} node {id}: {status}")))
        }
    }

    /// Starts a killed node again from its data dir.
    pub fn restart(&mut self, id: u64) -> std::io::Result<()> {
        self.spawn(id)
    }

    /// Starts a killed node with an empty data dir and a config naming itself the
    /// initial leader: it believes it leads term 1 until corrected (docs/design/cold-start.md).
    pub fn restart_as_stale_leader(&mut self, id: u64) -> std::io::Result<()> {
        let data_dir = self.dir.join(format!("node{id}"));
        if data_dir.exists() {
            std::fs::remove_dir_all(&data_dir)?;
        }
        self.write_config(id, Some(id))?;
        self.spawn(id)
    }

    /// Ids of the nodes running and not paused.
    pub fn live(&self) -> Vec<u64> {
        (1..=self.members.len() as u64)
            .filter(|&id| self.children[id as usize - 1].is_some() && !self.paused[id as usize - 1])
            .collect()
    }

    /// Node `id`'s member entry.
    pub fn member(&self, id: u64) -> &Member {
        &self.members[id as usize - 1]
    }

    fn http(&self, id: u64) -> SocketAddr {
        self.member(id).http_address.expect("the demo gives every node an HTTP address")
    }

    /// Node `id`'s status, if it answers.
    pub fn view(&self, id: u64) -> Option<NodeView> {
        NodeView::parse(&http_json(self.http(id), "/status", HTTP_TIMEOUT).ok()?)
    }

    /// Node `id`'s event log (empty if it does not answer).
    pub fn events(&self, id: u64) -> Vec<Value> {
        match http_json(self.http(id), "/events", HTTP_TIMEOUT) {
            Ok(Value::Array(events)) => events,
            _ => Vec::new(),
        }
    }

    /// Polls every live node until `done` holds for the views, or `timeout` passes.
    pub fn wait_for<T>(&self, timeout: Duration, mut done: impl FnMut(&[NodeView]) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let views: Vec<NodeView> = self.live().into_iter().filter_map(|id| self.view(id)).collect();
            if let Some(found) = done(&views) {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops every node: closes stdins (graceful), then kills what lingers.
    pub fn stop(&mut self) {
        for id in 1..=self.members.len() as u64 {
            let _ = self.resume(id);
        }
        for child in self.children.iter_mut().flatten() {
            drop(child.stdin.take());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for child in self.children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DemoCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
