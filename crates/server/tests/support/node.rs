//! An in-process node on loopback with ephemeral ports, for tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use conclave_server::config::{Limits, Timing};
use conclave_server::{Member, RunningServer, ServerConfig};

use super::resp::{info_as, wait_until, Client};

pub struct TestNode {
    pub runtime: tokio::runtime::Runtime,
    pub server: Option<RunningServer>,
    pub client_address: SocketAddr,
    pub peer_address: SocketAddr,
    password: Option<String>,
    _dir: tempfile::TempDir,
}

/// A one-node cluster's config (ports chosen by the OS).
pub fn single_node_config(dir: &std::path::Path) -> ServerConfig {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    ServerConfig {
        cluster_id: 7,
        node_id: 1,
        data_dir: dir.join("node1"),
        election_mode: None,
        initial_leader: None,
        password: None,
        members: vec![Member { id: 1, peer_address: any, client_address: any, http_address: None, priority: None }],
        join: false,
        timing: Timing::default(),
        limits: Limits::default(),
        snapshot: Default::default(),
        state_machine: Default::default(),
    }
}

impl TestNode {
    pub fn start(tweak: impl FnOnce(&mut ServerConfig)) -> TestNode {
        TestNode::try_start(tweak).expect("the node starts")
    }

    /// As `start`, with the error if the node does not start.
    pub fn try_start(tweak: impl FnOnce(&mut ServerConfig)) -> Result<TestNode, conclave_server::ServerError> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = single_node_config(dir.path());
        tweak(&mut config);
        let password = config.password.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let server = runtime.block_on(conclave_server::start(config))?;
        let (client_address, peer_address) = (server.client_address, server.peer_address);
        Ok(TestNode { runtime, server: Some(server), client_address, peer_address, password, _dir: dir })
    }

    /// Starts a one-node cluster and waits until it leads.
    pub fn start_leader(tweak: impl FnOnce(&mut ServerConfig)) -> TestNode {
        let node = TestNode::start(tweak);
        node.wait_for_leadership();
        node
    }

    pub fn wait_for_leadership(&self) {
        let address = self.client_address;
        wait_until("the node to lead", Duration::from_secs(10), || {
            let info = info_as(address, self.password.as_deref())?;
            info.iter().any(|(key, value)| key == "role" && value == "leader").then_some(())
        });
    }

    pub fn client(&self) -> Client {
        Client::connect(self.client_address).expect("connect to the client port")
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = self.runtime.block_on(server.shutdown());
        }
    }
}
