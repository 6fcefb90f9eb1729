//! Snapshots end to end (issue 6 item 4): a three-node cluster that snapshots
//! every 50 entries compacts its WAL, a follower stopped meanwhile catches up
//! through InstallSnapshot and serves the data, and a full restart keeps every
//! acknowledged write.

mod support;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use conclave_server::{Member, RunningServer, ServerConfig};
use support::node::single_node_config;
use support::resp::{info, wait_until, Client, Reply};

const EVERY_ENTRIES: u64 = 50;

fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// In-process nodes on one runtime, each with its own data dir, restartable.
struct Cluster {
    runtime: tokio::runtime::Runtime,
    configs: Vec<ServerConfig>,
    servers: Vec<Option<RunningServer>>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn new(nodes: u64) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let members: Vec<Member> = (1..=nodes)
            .map(|id| Member { id, peer_address: free_address(), client_address: free_address(), http_address: None })
            .collect();
        let configs = members
            .iter()
            .map(|member| {
                let mut config = single_node_config(dir.path());
                config.node_id = member.id;
                config.data_dir = dir.path().join(format!("node{}", member.id));
                config.members = members.clone();
                config.initial_leader = Some(1);
                config.snapshot.every_entries = EVERY_ENTRIES;
                // Many chunks per transfer, and segments small enough to be deleted.
                config.snapshot.chunk_bytes = 1024;
                config.snapshot.wal_segment_bytes = 4096;
                config.validate().unwrap();
                config
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let servers = (0..nodes).map(|_| None).collect();
        Cluster { runtime, configs, servers, _dir: dir }
    }

    fn start(&mut self, id: u64) {
        let config = self.configs[id as usize - 1].clone();
        let server = self.runtime.block_on(conclave_server::start(config)).expect("the node starts");
        self.servers[id as usize - 1] = Some(server);
    }

    fn stop(&mut self, id: u64) {
        let server = self.servers[id as usize - 1].take().expect("the node runs");
        self.runtime.block_on(server.shutdown()).expect("a clean shutdown");
    }

    fn address(&self, id: u64) -> SocketAddr {
        self.configs[id as usize - 1].members[id as usize - 1].client_address
    }

    fn data_dir(&self, id: u64) -> PathBuf {
        self.configs[id as usize - 1].data_dir.clone()
    }

    fn field(&self, id: u64, name: &str) -> Option<u64> {
        let fields = info(self.address(id))?;
        fields.into_iter().find(|(key, _)| key == name)?.1.parse().ok()
    }

    /// The running node that leads and serves, if one does.
    fn leader(&self) -> Option<u64> {
        (1..=self.configs.len() as u64).filter(|&id| self.servers[id as usize - 1].is_some()).find(|&id| {
            let server = self.servers[id as usize - 1].as_ref().unwrap();
            server.status().serving
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for server in self.servers.iter_mut().filter_map(Option::take) {
            let _ = self.runtime.block_on(server.shutdown());
        }
    }
}

fn value_of(key: usize) -> String {
    format!("value-{key}-{}", "x".repeat(40))
}

/// Writes keys `range` through node `via` (a follower forwards to the leader);
/// each must be acknowledged.
fn write(cluster: &Cluster, via: u64, range: std::ops::Range<usize>, acknowledged: &mut BTreeMap<String, String>) {
    let mut client = Client::connect(cluster.address(via)).unwrap();
    for key in range {
        let (name, value) = (format!("key-{key}"), value_of(key));
        let reply = client.command(&["SET", &name, &value]).unwrap();
        assert_eq!(reply, Reply::Simple("OK".into()), "SET {name}");
        acknowledged.insert(name, value);
    }
}

/// Every acknowledged write reads back from node `via` (`stale`: from its own
/// state, with READONLY).
fn assert_reads_back(cluster: &Cluster, via: u64, stale: bool, acknowledged: &BTreeMap<String, String>) {
    let mut client = Client::connect(cluster.address(via)).unwrap();
    if stale {
        assert_eq!(client.command(&["READONLY"]).unwrap(), Reply::Simple("OK".into()));
    }
    for (key, value) in acknowledged {
        assert_eq!(client.command(&["GET", key]).unwrap(), Reply::bulk(value), "GET {key} from node {via}");
    }
}

fn wait_for_leader(cluster: &Cluster) -> u64 {
    wait_until("a serving leader", Duration::from_secs(20), || cluster.leader())
}

#[test]
fn a_lagging_follower_catches_up_by_snapshot_and_a_full_restart_keeps_every_write() {
    let mut cluster = Cluster::new(3);
    for id in 1..=3 {
        cluster.start(id);
    }
    let leader = wait_for_leader(&cluster);
    let lagging = (1..=3).find(|&id| id != leader).unwrap();
    let mut acknowledged = BTreeMap::new();
    write(&cluster, leader, 0..100, &mut acknowledged);
    // The follower goes away once it has what the cluster committed so far.
    let commit = cluster.field(leader, "commit_index").unwrap();
    wait_until("the follower to apply the first writes", Duration::from_secs(20), || {
        (cluster.field(lagging, "applied_index")? >= commit).then_some(())
    });
    let lagging_last = cluster.field(lagging, "last_index").unwrap();
    cluster.stop(lagging);

    // Written through the other follower, so that forwarding is exercised too.
    let other = (1..=3).find(|&id| id != leader && id != lagging).unwrap();
    write(&cluster, other, 100..400, &mut acknowledged);
    let leader = wait_for_leader(&cluster);
    let leader_snapshot =
        wait_until("the leader to compact past the stopped follower", Duration::from_secs(20), || {
            cluster.field(leader, "snapshot_index").filter(|&index| index > lagging_last)
        });
    assert!(cluster.field(leader, "snapshots_taken").unwrap() >= 2);
    let first_segment = cluster.data_dir(leader).join("wal-00000000000000000001.log");
    assert!(!first_segment.exists(), "compaction deleted the leader's first WAL segment");

    cluster.start(lagging);
    let target = cluster.field(leader, "commit_index").unwrap();
    wait_until("the follower to install the leader's snapshot and catch up", Duration::from_secs(30), || {
        let installed = cluster.field(lagging, "snapshots_installed")?;
        (installed >= 1 && cluster.field(lagging, "applied_index")? >= target).then_some(())
    });
    assert!(cluster.field(lagging, "snapshot_index").unwrap() >= leader_snapshot);
    assert_eq!(cluster.field(lagging, "snapshots_rejected"), Some(0));
    // It serves what was written while it was down, from its own state.
    assert_reads_back(&cluster, lagging, true, &acknowledged);
    // It keeps up from there.
    write(&cluster, lagging, 400..460, &mut acknowledged);
    assert_reads_back(&cluster, lagging, false, &acknowledged);

    for id in 1..=3 {
        cluster.stop(id);
    }
    for id in 1..=3 {
        cluster.start(id);
        wait_until("the node to report the snapshot it restarted from", Duration::from_secs(10), || {
            cluster.field(id, "snapshot_index").filter(|&index| index > 0)
        });
    }
    let leader = wait_for_leader(&cluster);
    for id in 1..=3 {
        assert_reads_back(&cluster, id, false, &acknowledged);
    }
    // Stale reads too, once each node applied what the cluster committed.
    let target = cluster.field(leader, "commit_index").unwrap();
    for id in 1..=3 {
        wait_until("every node to apply the log after the restart", Duration::from_secs(20), || {
            (cluster.field(id, "applied_index")? >= target).then_some(())
        });
        assert_reads_back(&cluster, id, true, &acknowledged);
    }
}
