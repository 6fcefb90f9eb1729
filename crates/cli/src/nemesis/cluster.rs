//! The nemesis's cluster: `conclave serve` processes started by `conclave
//! local`'s launcher code, each on its own loopback address, every link
//! between two nodes through a proxy ([`super::proxy`]), and each process
//! killable, stoppable, pausable and wipeable, and (in a build with the
//! test-only feature `disk-faults`) its disk faults armed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use conclave_server::config::{EngineKind, Timing};
use conclave_server::disk_fault;
use conclave_server::Member;

use super::proxy::Links;
use crate::demo::client::http_json;
use crate::demo::cluster::{NodeView, HTTP_TIMEOUT};
use crate::local_command::{self, LocalArgs};

struct Node {
    child: Option<Child>,
    paused: bool,
}

/// The running cluster.
pub struct Cluster {
    /// Configs, data dirs and logs.
    pub dir: PathBuf,
    /// Every member, with its real addresses.
    pub members: Vec<Member>,
    /// The links between nodes.
    pub links: Links,
    executable: PathBuf,
    nodes: Vec<Node>,
}

impl Cluster {
    /// Writes the configs of `count` nodes into `dir` and starts them all.
    pub fn start(dir: &Path, count: u64, timing: Timing, engine: Option<EngineKind>) -> std::io::Result<Cluster> {
        std::fs::create_dir_all(dir)?;
        let args = LocalArgs {
            nodes: count,
            base_port: None,
            data_dir: Some(dir.to_path_buf()),
            distinct_addresses: true,
            election_mode: None,
            password: None,
            cluster_id: 1,
            engine,
        };
        let members = local_command::members(&args)?;
        let links = Links::start(&members)?;
        for member in &members {
            // Node i reaches node j through the proxy of the link i → j.
            let seen: Vec<Member> = members
                .iter()
                .map(|other| match other.id == member.id {
                    true => other.clone(),
                    false => Member { peer_address: links.address(member.id, other.id), ..other.clone() },
                })
                .collect();
            let config = local_command::node_config(&args, &seen, member.id, dir, timing.clone());
            config.validate().map_err(std::io::Error::other)?;
            std::fs::write(dir.join(format!("node{}.toml", member.id)), config.to_toml())?;
        }
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            members,
            links,
            executable: std::env::current_exe()?,
            nodes: (0..count).map(|_| Node { child: None, paused: false }).collect(),
        };
        for id in 1..=count {
            cluster.spawn(id)?;
        }
        Ok(cluster)
    }

    fn node(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    /// Ids of every node.
    pub fn ids(&self) -> Vec<u64> {
        (1..=self.nodes.len() as u64).collect()
    }

    /// Starts node `id` from its data dir (if it is not running).
    pub fn spawn(&mut self, id: u64) -> std::io::Result<()> {
        if self.exited(id)?.is_none() && self.node(id).child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(format!("node{id}.log")))?;
        let mut command = local_command::serve_command(&self.executable, &self.dir.join(format!("node{id}.toml")));
        command.stderr(log);
        if disk_fault::ENABLED {
            command.env(disk_fault::ENV, self.arming_file(id));
        }
        let child = command.spawn()?;
        *self.node(id) = Node { child: Some(child), paused: false };
        Ok(())
    }

    /// If node `id` exited on its own (a disk fault stops it), how; the node
    /// then counts as not running.
    pub fn exited(&mut self, id: u64) -> std::io::Result<Option<ExitStatus>> {
        let Some(child) = self.node(id).child.as_mut() else { return Ok(None) };
        let status = child.try_wait()?;
        if status.is_some() {
            *self.node(id) = Node { child: None, paused: false };
        }
        Ok(status)
    }

    /// The file that arms node `id`'s disk faults (`conclave_storage::fault`).
    fn arming_file(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}.disk-faults"))
    }

    /// Arms `fault` (an arming file's text) on node `id`: its next durable
    /// write at that point fails, and the node stops itself.
    pub fn arm_disk_fault(&mut self, id: u64, fault: &str) -> std::io::Result<()> {
        if !disk_fault::ENABLED {
            return Err(std::io::Error::other(super::faults::DISK_NOT_BUILT));
        }
        std::fs::write(self.arming_file(id), fault)
    }

    /// Disarms node `id`'s disk faults.
    fn disarm_disk_faults(&self, id: u64) -> std::io::Result<()> {
        match std::fs::remove_file(self.arming_file(id)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// SIGKILL: no shutdown, no final sync.
    pub fn kill(&mut self, id: u64) -> std::io::Result<()> {
        self.resume(id)?;
        self.exited(id)?;
        if let Some(mut child) = self.node(id).child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// A graceful stop: stdin closed, then SIGKILL if it lingers past `grace`.
    pub fn stop(&mut self, id: u64, grace: Duration) -> std::io::Result<()> {
        self.resume(id)?;
        self.exited(id)?;
        let Some(mut child) = self.node(id).child.take() else { return Ok(()) };
        drop(child.stdin.take());
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Empties node `id`'s data dir (it must not be running).
    pub fn wipe(&mut self, id: u64) -> std::io::Result<()> {
        assert!(self.node(id).child.is_none(), "a running node's data dir is not wiped");
        let data = self.dir.join(format!("node{id}"));
        if data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        Ok(())
    }

    fn signal(&mut self, id: u64, signal: &str) -> std::io::Result<()> {
        let Some(child) = &self.node(id).child else { return Ok(()) };
        let status = Command::new("kill").args([signal, &child.id().to_string()]).status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("kill {signal} node {id}: {status}")))
        }
    }

    /// SIGSTOP.
    pub fn pause(&mut self, id: u64) -> std::io::Result<()> {
        if self.node(id).child.is_some() && !self.node(id).paused {
            self.signal(id, "-STOP")?;
            self.node(id).paused = true;
        }
        Ok(())
    }

    /// SIGCONT, if paused.
    pub fn resume(&mut self, id: u64) -> std::io::Result<()> {
        if self.node(id).paused {
            self.signal(id, "-CONT")?;
            self.node(id).paused = false;
        }
        Ok(())
    }

    /// Running and not paused.
    pub fn is_up(&self, id: u64) -> bool {
        let node = &self.nodes[id as usize - 1];
        node.child.is_some() && !node.paused
    }

    /// Node `id`'s status, if it answers.
    pub fn view(&self, id: u64) -> Option<NodeView> {
        let address = self.members[id as usize - 1].http_address?;
        NodeView::parse(&http_json(address, "/status", HTTP_TIMEOUT).ok()?)
    }

    /// The serving leader of the highest term among the nodes that answer.
    pub fn leader(&self) -> Option<u64> {
        self.ids()
            .into_iter()
            .filter(|&id| self.is_up(id))
            .filter_map(|id| self.view(id))
            .filter(NodeView::is_serving_leader)
            .max_by_key(|view| view.term)
            .map(|view| view.id)
    }

    /// Heals everything: every link, every paused node resumed, every disk
    /// fault disarmed, every stopped node started again.
    pub fn heal(&mut self) -> std::io::Result<()> {
        self.links.heal();
        for id in self.ids() {
            self.disarm_disk_faults(id)?;
            self.resume(id)?;
            self.spawn(id)?;
        }
        Ok(())
    }

    /// Stops every node (gracefully, then SIGKILL).
    pub fn shutdown(&mut self) {
        for id in self.ids() {
            let _ = self.resume(id);
            if let Some(child) = self.node(id).child.as_mut() {
                drop(child.stdin.take());
            }
        }
        for id in self.ids() {
            let _ = self.stop(id, Duration::from_secs(10));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}
