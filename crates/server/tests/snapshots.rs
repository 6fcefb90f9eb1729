//! Snapshots end to end: a three-node cluster that snapshots
//! every 50 entries compacts its WAL, a follower stopped meanwhile catches up
//! through InstallSnapshot and serves the data, and a full restart keeps every
//! acknowledged write.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use conclave_server::config::EngineKind;
use conclave_server::{Member, RunningServer, ServerConfig};
use support::node::single_node_config;
use support::resp::{info, wait_until, Client, Reply};

const EVERY_ENTRIES: u64 = 50;

use support::ports::free_address;

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
            .map(|id| Member {
                id,
                peer_address: free_address(),
                client_address: free_address(),
                http_address: None,
                priority: None,
            })
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
        let reply = retrying(&mut client, &["SET", &name, &value]);
        assert_eq!(reply, Reply::Simple("OK".into()), "SET {name}");
        acknowledged.insert(name, value);
    }
}

/// Sends `command` until it is not answered `-TRYAGAIN` (a leader change on a
/// loaded machine), for a bounded time. Every command here is idempotent.
fn retrying(client: &mut Client, command: &[&str]) -> Reply {
    wait_until("an answer other than TRYAGAIN", Duration::from_secs(30), || {
        let reply = client.command(command).unwrap();
        match &reply {
            Reply::Error(message) if message.starts_with("TRYAGAIN") => None,
            _ => Some(reply),
        }
    })
}

/// Every acknowledged write reads back from node `via` (`stale`: from its own
/// state, with READONLY).
fn assert_reads_back(cluster: &Cluster, via: u64, stale: bool, acknowledged: &BTreeMap<String, String>) {
    let mut client = Client::connect(cluster.address(via)).unwrap();
    if stale {
        assert_eq!(client.command(&["READONLY"]).unwrap(), Reply::Simple("OK".into()));
    }
    for (key, value) in acknowledged {
        assert_eq!(retrying(&mut client, &["GET", key]), Reply::bulk(value), "GET {key} from node {via}");
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
    assert!(cluster.field(leader, "snapshots_taken").unwrap() >= 1);
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

// ----- a leader played by the test ----------------------------------------------

mod fake_leader {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use conclave_core::{Body, Message, SnapshotMeta};
    use conclave_server::peer::frame::{self, Handshake, HandshakeReply, PeerFrame, HANDSHAKE_MAGIC};

    /// A peer connection to node 2 as node 1 of cluster 7.
    pub fn connect(peer_address: std::net::SocketAddr) -> TcpStream {
        let mut stream = TcpStream::connect(peer_address).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let bytes =
            frame::encode(&Handshake { magic: HANDSHAKE_MAGIC, cluster_id: 7, from: 1, to: 2, reply_to: None }, 4096)
                .unwrap();
        stream.write_all(&bytes).unwrap();
        let mut length = [0u8; 4];
        stream.read_exact(&mut length).unwrap();
        let mut content = vec![0; u32::from_be_bytes(length) as usize];
        stream.read_exact(&mut content).unwrap();
        assert_eq!(frame::decode::<HandshakeReply>(&content, 4096).unwrap(), HandshakeReply::Accepted);
        stream
    }

    /// Sends a whole snapshot up to `index` in one chunk, as the leader of term 5.
    pub fn send_snapshot(stream: &mut TcpStream, index: u64, data: Vec<u8>) {
        let total_bytes = data.len() as u64;
        send_chunk(stream, index, total_bytes, 0, data);
    }

    /// Sends the chunk of the snapshot up to `index` (`total_bytes` long) at
    /// `offset`, as the leader of term 5.
    pub fn send_chunk(stream: &mut TcpStream, index: u64, total_bytes: u64, offset: u64, data: Vec<u8>) {
        let meta = SnapshotMeta {
            last_included_index: index,
            last_included_term: 5,
            membership: conclave_core::Membership::bootstrap(&[1, 2], &Default::default()),
            last_leader_term: None,
        };
        let done = offset + data.len() as u64 == total_bytes;
        let body = Body::InstallSnapshot { meta, total_bytes, offset, data: data.into(), done };
        let message = Message { cluster_id: 7, from: 1, to: 2, term: 5, body };
        stream.write_all(&frame::encode(&PeerFrame::Raft(message), 1 << 20).unwrap()).unwrap();
    }
}

fn store_with(pairs: &[(&str, &str)]) -> conclave_server::kv::KvStore {
    let mut store = conclave_server::kv::KvStore::default();
    for (key, value) in pairs {
        let condition = conclave_server::kv::SetCondition::Always;
        store.apply(&conclave_server::kv::KvCommand::Set {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            condition,
        });
    }
    store
}

fn stale_get(address: SocketAddr, key: &str) -> Reply {
    let mut client = Client::connect(address).unwrap();
    assert_eq!(client.command(&["READONLY"]).unwrap(), Reply::Simple("OK".into()));
    client.command(&["GET", key]).unwrap()
}

fn info_number(address: SocketAddr, name: &str) -> Option<u64> {
    info(address)?.into_iter().find(|(key, _)| key == name)?.1.parse().ok()
}

/// Node 2 of a two-node cluster whose node 1 (never started) the test plays.
fn follower_of_a_fake_leader(data_dir: PathBuf) -> support::node::TestNode {
    follower_of_a_fake_leader_on(data_dir, None)
}

/// [`follower_of_a_fake_leader`] on `engine` (unset: the default's choice).
fn follower_of_a_fake_leader_on(data_dir: PathBuf, engine: Option<EngineKind>) -> support::node::TestNode {
    let members: Vec<Member> = (1..=2)
        .map(|id| Member {
            id,
            peer_address: free_address(),
            client_address: free_address(),
            http_address: None,
            priority: None,
        })
        .collect();
    support::node::TestNode::start(move |config| {
        config.node_id = 2;
        config.members = members;
        config.data_dir = data_dir;
        config.state_machine.engine = engine;
    })
}

#[test]
fn a_snapshot_from_the_leader_is_installed_and_a_corrupt_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("node2");
    let node = follower_of_a_fake_leader(data_dir.clone());
    let mut leader = fake_leader::connect(node.peer_address);
    fake_leader::send_snapshot(&mut leader, 10, store_with(&[("k", "v"), ("n", "1")]).encode_snapshot(10));
    wait_until("the snapshot to be installed", Duration::from_secs(10), || {
        (info_number(node.client_address, "snapshots_installed")? == 1).then_some(())
    });
    assert_eq!(stale_get(node.client_address, "k"), Reply::bulk("v"));
    assert_eq!(info_number(node.client_address, "snapshot_index"), Some(10));
    assert!(data_dir.join("snapshot").exists(), "the installed snapshot was saved");

    // Damaged bytes, and good bytes of another index than the snapshot covers.
    let mut damaged = store_with(&[("k", "bad")]).encode_snapshot(20);
    damaged[30] ^= 0x01;
    fake_leader::send_snapshot(&mut leader, 20, damaged);
    wait_until("the damaged snapshot to be refused", Duration::from_secs(10), || {
        (info_number(node.client_address, "snapshots_rejected")? == 1).then_some(())
    });
    fake_leader::send_snapshot(&mut leader, 30, store_with(&[("k", "bad")]).encode_snapshot(29));
    wait_until("the mislabelled snapshot to be refused", Duration::from_secs(10), || {
        (info_number(node.client_address, "snapshots_rejected")? == 2).then_some(())
    });
    assert_eq!(stale_get(node.client_address, "k"), Reply::bulk("v"), "nothing of a refused snapshot applied");
    assert_eq!(info_number(node.client_address, "snapshot_index"), Some(10), "nor saved");
    assert_eq!(info_number(node.client_address, "snapshots_installed"), Some(1));
    let mut client = node.client();
    assert_eq!(client.command(&["PING"]).unwrap(), Reply::Simple("PONG".into()));

    // A restart finds the installed snapshot, not the refused ones.
    drop(leader);
    drop(node);
    let node = follower_of_a_fake_leader(data_dir);
    wait_until("the restarted node to report its snapshot", Duration::from_secs(10), || {
        (info_number(node.client_address, "snapshot_index")? == 10).then_some(())
    });
    assert_eq!(stale_get(node.client_address, "k"), Reply::bulk("v"));
    assert_eq!(stale_get(node.client_address, "n"), Reply::bulk("1"));
}

#[test]
fn a_snapshot_stream_that_breaks_off_or_fails_its_checksum_is_discarded_and_the_old_state_kept() {
    // docs/decisions/0090: the follower stages chunks on disk as they arrive.
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("node2");
    let node = follower_of_a_fake_leader_on(data_dir.clone(), Some(EngineKind::Redb));
    let mut leader = fake_leader::connect(node.peer_address);
    let first = store_with(&[("k", "v"), ("n", "1")]).encode_snapshot(10);
    let half = first.len() / 2;
    fake_leader::send_chunk(&mut leader, 10, first.len() as u64, 0, first[..half].to_vec());
    fake_leader::send_chunk(&mut leader, 10, first.len() as u64, half as u64, first[half..].to_vec());
    wait_until("the snapshot sent in two chunks to be installed", Duration::from_secs(10), || {
        (info_number(node.client_address, "snapshots_installed")? == 1).then_some(())
    });
    assert_eq!(stale_get(node.client_address, "n"), Reply::bulk("1"));
    let incoming = data_dir.join(conclave_storage::incoming::INCOMING_FILE);
    assert!(!incoming.exists(), "the staged bytes are gone once installed");

    // A transfer that breaks off halfway, then one whose bytes are damaged.
    let broken = store_with(&[("k", "broken")]).encode_snapshot(20);
    fake_leader::send_chunk(&mut leader, 20, broken.len() as u64, 0, broken[..broken.len() / 2].to_vec());
    wait_until("the first half to be staged", Duration::from_secs(10), || incoming.exists().then_some(()));
    let mut damaged = store_with(&[("k", "bad")]).encode_snapshot(30);
    let half = damaged.len() / 2;
    damaged[half + 3] ^= 0x01;
    fake_leader::send_chunk(&mut leader, 30, damaged.len() as u64, 0, damaged[..half].to_vec());
    fake_leader::send_chunk(&mut leader, 30, damaged.len() as u64, half as u64, damaged[half..].to_vec());
    wait_until("the damaged snapshot to be refused", Duration::from_secs(10), || {
        (info_number(node.client_address, "snapshots_rejected")? == 1).then_some(())
    });
    assert_eq!(stale_get(node.client_address, "k"), Reply::bulk("v"), "the old state is kept");
    assert_eq!(info_number(node.client_address, "snapshot_index"), Some(10));
    assert!(!incoming.exists(), "the refused bytes are gone");

    // The next whole transfer installs.
    let good = store_with(&[("k", "new")]).encode_snapshot(40);
    fake_leader::send_chunk(&mut leader, 40, good.len() as u64, 0, good[..7].to_vec());
    fake_leader::send_chunk(&mut leader, 40, good.len() as u64, 7, good[7..].to_vec());
    wait_until("the next snapshot to be installed", Duration::from_secs(10), || {
        (info_number(node.client_address, "snapshots_installed")? == 2).then_some(())
    });
    assert_eq!(stale_get(node.client_address, "k"), Reply::bulk("new"));

    // A restart starts from it, and a partial transfer left behind is cleared.
    fake_leader::send_chunk(&mut leader, 50, broken.len() as u64, 0, broken[..5].to_vec());
    wait_until("a partial transfer to be staged", Duration::from_secs(10), || incoming.exists().then_some(()));
    drop(leader);
    drop(node);
    // As a crash during a rebuild of the state would leave it.
    let installing = data_dir.join("state.redb.installing");
    std::fs::write(&installing, b"half a state").unwrap();
    let node = follower_of_a_fake_leader_on(data_dir, Some(EngineKind::Redb));
    wait_until("the restarted node to serve", Duration::from_secs(10), || {
        (info_number(node.client_address, "snapshot_index")? == 40).then_some(())
    });
    assert_eq!(stale_get(node.client_address, "k"), Reply::bulk("new"));
    assert!(!incoming.exists(), "a partial transfer is removed at start");
    assert!(!installing.exists(), "so is a partial rebuild");
}

// ----- crashes between the steps of a snapshot -----------------------------------

/// The snapshot up to `upto` of the KV state in a stopped node's WAL, built
/// offline from its entries (an independent replay of the committed commands).
fn offline_snapshot(data_dir: &std::path::Path, upto: u64) -> conclave_storage::Snapshot {
    use conclave_server::kv::{Envelope, KvStore};
    use conclave_storage::LogStore;
    let wal = conclave_storage::Wal::open(data_dir, conclave_storage::WalOptions::new(7, 1)).unwrap();
    let restored = wal.restored_state().unwrap();
    let (mut store, mut last_leader_term) = match &restored.snapshot {
        Some(snapshot) => (KvStore::decode_snapshot(&snapshot.data).unwrap().0, snapshot.meta.last_leader_term),
        None => (KvStore::default(), None),
    };
    let mut term = None;
    for entry in restored.entries.iter().filter(|entry| entry.index <= upto) {
        last_leader_term = entry.leader_term_record().or(last_leader_term);
        if let conclave_core::Payload::Command(bytes) = &entry.payload {
            store.apply(&Envelope::decode(bytes).expect("the server's own envelopes").command);
        }
        term = Some(entry.term);
    }
    conclave_storage::Snapshot {
        last_included_index: upto,
        last_included_term: term.expect("the WAL holds the entry at `upto`"),
        membership: conclave_core::Membership::bootstrap(&[1], &Default::default()),
        last_leader_term,
        data: store.encode_snapshot(upto).into(),
    }
}

fn single_node(data_dir: &std::path::Path) -> support::node::TestNode {
    single_node_on(data_dir, None)
}

/// [`single_node`] on `engine` (unset: the default's choice).
fn single_node_on(data_dir: &std::path::Path, engine: Option<EngineKind>) -> support::node::TestNode {
    let data_dir = data_dir.to_path_buf();
    support::node::TestNode::start_leader(move |config| {
        config.data_dir = data_dir;
        config.snapshot.every_entries = 0;
        config.state_machine.engine = engine;
    })
}

#[test]
fn a_crash_between_the_steps_of_a_snapshot_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("node1");
    let mut acknowledged = BTreeMap::new();
    let write =
        |node: &support::node::TestNode, range: std::ops::Range<usize>, acknowledged: &mut BTreeMap<String, String>| {
            let mut client = node.client();
            for key in range {
                let (name, value) = (format!("key-{key}"), value_of(key));
                assert_eq!(retrying(&mut client, &["SET", &name, &value]), Reply::Simple("OK".into()));
                acknowledged.insert(name, value);
            }
            info_number(node.client_address, "commit_index").unwrap()
        };
    let reads_back = |node: &support::node::TestNode, acknowledged: &BTreeMap<String, String>| {
        let mut client = node.client();
        for (key, value) in acknowledged {
            assert_eq!(retrying(&mut client, &["GET", key]), Reply::bulk(value), "GET {key}");
        }
    };
    let node = single_node(&data_dir);
    let commit = write(&node, 0..120, &mut acknowledged);
    drop(node);

    // The snapshot file is durable, its WAL record is not (nor any deletion).
    let first = commit - 20;
    conclave_storage::snapshot::save(&data_dir, &offline_snapshot(&data_dir, first)).unwrap();
    let node = single_node(&data_dir);
    wait_until("the node to report the snapshot", Duration::from_secs(10), || {
        (info_number(node.client_address, "snapshot_index")? == first).then_some(())
    });
    reads_back(&node, &acknowledged);
    let commit = write(&node, 120..130, &mut acknowledged);
    drop(node);

    // File and WAL record durable, the covered segments not yet deleted.
    {
        use conclave_storage::LogStore;
        let snapshot = offline_snapshot(&data_dir, commit - 5);
        let mut wal = conclave_storage::Wal::open(&data_dir, conclave_storage::WalOptions::new(7, 1)).unwrap();
        wal.save_snapshot(snapshot).unwrap();
    }
    let node = single_node(&data_dir);
    wait_until("the node to report the second snapshot", Duration::from_secs(10), || {
        (info_number(node.client_address, "snapshot_index")? == commit - 5).then_some(())
    });
    reads_back(&node, &acknowledged);
    write(&node, 130..140, &mut acknowledged);
    reads_back(&node, &acknowledged);
}

#[test]
fn a_saved_snapshot_whose_data_is_not_a_kv_store_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("node1");
    let node = single_node_on(&data_dir, Some(EngineKind::Redb));
    let mut client = node.client();
    assert_eq!(client.command(&["SET", "k", "v"]).unwrap(), Reply::Simple("OK".into()));
    let commit = info_number(node.client_address, "commit_index").unwrap();
    drop(node);
    let mut snapshot = offline_snapshot(&data_dir, commit);
    snapshot.data = b"not a KV snapshot, though long enough for its header".to_vec().into();
    conclave_storage::snapshot::save(&data_dir, &snapshot).unwrap();
    let saved = std::fs::read(data_dir.join("snapshot")).unwrap();
    // The engine holds the state past a saved snapshot and never reads it;
    // without its file (a crash before it switched to a leader's snapshot),
    // the snapshot is what the node starts from, and is checked.
    std::fs::remove_file(data_dir.join("state.redb")).unwrap();

    let mut config = single_node_config(dir.path());
    config.data_dir = data_dir.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let error = match runtime.block_on(conclave_server::start(config)) {
        Ok(_) => panic!("a node started from a snapshot that is not a KV store"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains(&format!("snapshot up to index {commit}")), "{error}");
    assert!(error.contains("bad magic"), "{error}");
    assert_eq!(std::fs::read(data_dir.join("snapshot")).unwrap(), saved, "the file is left as it was");
}

#[test]
fn a_lost_engine_file_behind_a_log_compacted_without_a_snapshot_stops_the_start_with_a_clear_error() {
    // docs/decisions/0086: the log is compacted behind the engine's durable
    // index without a snapshot; without the engine's files the entries
    // between are gone, and the node must say so rather than start empty,
    // and create no new engine in their place (docs/decisions/0094).
    for (engine, files) in [(EngineKind::Redb, "state.redb"), (EngineKind::Fjall, "state.fjall")] {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("node1");
        let settings = data_dir.clone();
        let node = support::node::TestNode::start_leader(move |config| {
            config.data_dir = settings;
            config.snapshot.every_entries = 5;
            config.state_machine.flush_interval_ms = 20;
            config.state_machine.engine = Some(engine);
        });
        let mut client = node.client();
        for key in 0..20 {
            assert_eq!(client.command(&["SET", &format!("k{key}"), "v"]).unwrap(), Reply::Simple("OK".into()));
        }
        wait_until("the log to be compacted", Duration::from_secs(10), || {
            info_number(node.client_address, "snapshot_index").filter(|&index| index > 0)
        });
        drop(client);
        drop(node);
        let saved = conclave_storage::snapshot::load(&data_dir).unwrap().expect("the log's base is saved");
        assert!(saved.data.is_empty(), "the base is recorded without a snapshot's data");
        let lost = data_dir.join(files);
        if lost.is_dir() {
            std::fs::remove_dir_all(&lost).unwrap();
        } else {
            std::fs::remove_file(&lost).unwrap();
        }

        // Unset, the engine would be the data dir's; set, the one named.
        for configured in [None, Some(engine)] {
            let mut config = single_node_config(dir.path());
            config.data_dir = data_dir.clone();
            config.state_machine.engine = configured;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let error = match runtime.block_on(conclave_server::start(config)) {
                Ok(_) => panic!("a node started without the state its log was compacted behind"),
                Err(error) => error.to_string(),
            };
            let base = saved.meta().last_included_index;
            assert!(error.contains(&format!("the entries up to {base} are gone")), "{error}");
            assert!(error.contains("neither state.redb nor state.fjall"), "{error}");
            assert!(!data_dir.join("state.redb").exists() && !data_dir.join("state.fjall").exists(), "no engine made");
        }
    }
}
