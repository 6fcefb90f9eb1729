//! The server's configuration file (TOML), its defaults and its validation.
//!
//! Every key, its default and the reason for it are in `docs/operations.md`.
//! Unknown keys are refused by the parser (`deny_unknown_fields`); everything
//! else is checked by
//! [`ServerConfig::validate`], whose errors name the key and say what is wrong.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use conclave_core::{ClusterId, ElectionMode, NodeId};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One cluster member as every node's config lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The member's id (non-zero, unique).
    pub id: NodeId,
    /// Where its peer transport listens; its outgoing peer connections bind to this IP.
    pub peer_address: SocketAddr,
    /// Where its RESP2 client API listens.
    pub client_address: SocketAddr,
    /// Where its HTTP status endpoint listens (optional).
    #[serde(default)]
    pub http_address: Option<SocketAddr>,
    /// Breaks ties between equal data in elections; 0 = lead only when no
    /// one else can (docs/design/membership.md). Default 1.
    #[serde(default)]
    pub priority: Option<u32>,
}

/// Every timing, in milliseconds (docs/operations.md for the protocol ones).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    /// A leader sends a heartbeat at least this often.
    pub heartbeat_interval_ms: u64,
    /// A follower counts one miss per heartbeat timeout without its leader.
    pub heartbeat_timeout_ms: u64,
    /// Misses after which the leader is down; election timeout = miss_limit × heartbeat timeout.
    pub miss_limit: u32,
    /// `fast` mode: quiet window before a vote is final.
    pub finalize_wait_ms: u64,
    /// Vote lease of the gapless rules (docs/design/leader-terms.md); must be below the election
    /// timeout. Default: 0.8 × election timeout.
    pub vote_lease_ms: Option<u64>,
    /// With `initial_leader`: how long a brand-new member waits for the initial
    /// leader's cold start before it may campaign (docs/design/cold-start.md).
    pub cold_start_wait_ms: u64,
    /// Longest a client request waits for its answer before `-TRYAGAIN`.
    pub request_timeout_ms: u64,
    /// Longest a request waits for a leader to be known (during an election).
    pub leader_wait_ms: u64,
    /// First delay before redialling a peer; doubles up to `reconnect_max_ms`.
    /// A connection that was up and is lost is redialled at once.
    pub reconnect_min_ms: u64,
    /// Largest delay between redials. Kept well below the election timeout, so
    /// that a healed link is dialled again soon (docs/decisions/0052).
    pub reconnect_max_ms: u64,
    /// Act on the transport's evidence that the leader's process is gone (a
    /// lost connection, then a refused redial: docs/decisions/0050) at once,
    /// instead of counting `miss_limit` missed heartbeats. Off: misses only.
    pub fast_detection: bool,
    /// The leader sends its appends and heartbeats while its own fsync runs,
    /// and counts itself toward a commit once that fsync completes (Raft
    /// thesis §10.2.1, docs/decisions/0068). Off: it persists, then sends.
    pub parallel_persist: bool,
    /// A client that sent part of a request and then nothing for this long is closed.
    pub client_read_timeout_ms: u64,
    /// A client idle (between requests) this long is closed; 0 keeps idle clients forever.
    pub client_idle_timeout_ms: u64,
    /// A peer must finish its handshake within this time.
    pub peer_handshake_timeout_ms: u64,
    /// On SIGTERM/SIGINT, in-flight work gets this long to finish.
    pub shutdown_grace_ms: u64,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            heartbeat_interval_ms: 50,
            heartbeat_timeout_ms: 50,
            miss_limit: 5,
            finalize_wait_ms: 100,
            vote_lease_ms: None,
            cold_start_wait_ms: 5_000,
            request_timeout_ms: 5_000,
            leader_wait_ms: 3_000,
            reconnect_min_ms: 50,
            reconnect_max_ms: 100,
            fast_detection: true,
            parallel_persist: true,
            client_read_timeout_ms: 10_000,
            client_idle_timeout_ms: 0,
            peer_handshake_timeout_ms: 5_000,
            shutdown_grace_ms: 3_000,
        }
    }
}

/// Sizes and counts that bound memory use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most client connections open at once; one more is told so and closed.
    pub max_clients: usize,
    /// Largest RESP bulk string a client may send.
    pub max_bulk_bytes: usize,
    /// Most elements in one RESP array (arguments of one command).
    pub max_array_len: usize,
    /// Longest inline command line.
    pub max_inline_bytes: usize,
    /// Largest encoded command the log accepts.
    pub max_command_bytes: usize,
    /// Most entries in one AppendEntries.
    pub max_entries_per_message: usize,
    /// Most payload bytes in one AppendEntries (one entry always goes).
    pub max_append_bytes: usize,
    /// Largest peer frame sent or accepted.
    pub max_frame_bytes: usize,
    /// Frames queued per peer and priority class before the oldest is dropped.
    pub peer_queue_frames: usize,
    /// A learner is promoted only when it is at most this many entries
    /// behind the leader's last index (docs/design/membership.md).
    pub max_promotion_lag: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_clients: 10_000,
            max_bulk_bytes: 512 * 1024,
            max_array_len: 65_536,
            max_inline_bytes: 64 * 1024,
            max_command_bytes: 1024 * 1024,
            max_entries_per_message: 64,
            max_append_bytes: 1024 * 1024,
            max_frame_bytes: 80 * 1024 * 1024,
            peer_queue_frames: 4_096,
            max_promotion_lag: 1_000,
        }
    }
}

/// When the KV store is snapshotted and the log compacted, and how snapshots
/// travel (Raft §7). A snapshot is taken when any trigger fires; with every
/// trigger at 0 the node never snapshots (the WAL grows forever).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotSettings {
    /// Snapshot after this many entries applied since the last snapshot (0: no
    /// count trigger). Exact: nodes with this trigger compact at the same index.
    pub every_entries: u64,
    /// Snapshot once the log since the last snapshot holds this many bytes of
    /// commands, or as many as the last snapshot held if that is more (so the
    /// cost of snapshots per write stays constant as the data grows); each node
    /// adds its own jitter of up to a fifth, so nodes compact at different
    /// indexes (0: no size trigger).
    pub log_bytes: u64,
    /// Snapshot this many seconds after the last one if anything was applied
    /// since (0: no time trigger); jittered per node as `log_bytes`.
    pub interval_secs: u64,
    /// A lagging follower gets the snapshot in `InstallSnapshot` chunks of at
    /// most this many bytes.
    pub chunk_bytes: usize,
    /// The WAL rolls to a new segment file at this size; compaction deletes
    /// whole segments that the snapshot covers.
    pub wal_segment_bytes: u64,
}

impl Default for SnapshotSettings {
    fn default() -> SnapshotSettings {
        SnapshotSettings {
            every_entries: 0,
            log_bytes: 64 << 20,
            interval_secs: 3600,
            chunk_bytes: 1 << 20,
            wal_segment_bytes: conclave_storage::DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// Which store holds the KV data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// The embedded B-tree file `state.redb` in the data dir: restart and
    /// compaction costs do not grow with the data.
    Redb,
    /// A map in memory, rebuilt from the snapshot file at every start.
    Memory,
    /// The log-structured engine in the directory `state.fjall` of the data
    /// dir (the default for a new data dir): a write's cost barely grows with
    /// the data (docs/decisions/0093, 0094).
    Fjall,
}

impl EngineKind {
    /// The engine of a new data dir when `state_machine.engine` is unset
    /// (docs/decisions/0094).
    pub const FOR_NEW_DATA_DIR: EngineKind = EngineKind::Fjall;

    /// The engine named `name` in the config.
    pub fn from_name(name: &str) -> Option<EngineKind> {
        [EngineKind::Redb, EngineKind::Fjall, EngineKind::Memory].into_iter().find(|kind| kind.name() == name)
    }

    /// The name in the config file.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Redb => "redb",
            EngineKind::Memory => "memory",
            EngineKind::Fjall => "fjall",
        }
    }

    /// True for the engines that keep the data on disk, beyond memory.
    pub fn is_on_disk(self) -> bool {
        matches!(self, EngineKind::Redb | EngineKind::Fjall)
    }
}

/// How the LSM engine compresses its tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// LZ4 blocks: cheap, and values that repeat themselves shrink.
    #[default]
    Lz4,
    /// Stored as written: for values that are already compressed or
    /// encrypted, where LZ4 would spend CPU for nothing.
    None,
}

impl StateMachineSettings {
    /// The engine this node runs. The server settles an unset engine from
    /// the data dir before it starts (`kv::engine_choice`); until then an
    /// unset one reads as [`EngineKind::FOR_NEW_DATA_DIR`], which keeps its
    /// data on disk like any engine a data dir can hold.
    pub fn engine(&self) -> EngineKind {
        self.engine.unwrap_or(EngineKind::FOR_NEW_DATA_DIR)
    }

    /// The memory bound on the store's data: the cache for the engine, 0 (none)
    /// for the in-memory store.
    pub fn cache_bytes_bound(&self) -> u64 {
        match self.engine() {
            EngineKind::Redb | EngineKind::Fjall => self.cache_bytes,
            EngineKind::Memory => 0,
        }
    }
}

/// The state machine's store and its apply loop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateMachineSettings {
    /// Where the data lives. Unset: the engine the data dir holds, or
    /// [`EngineKind::FOR_NEW_DATA_DIR`] in a new one.
    pub engine: Option<EngineKind>,
    /// How the LSM engine (`fjall`) compresses a new store's tables; a
    /// store keeps the choice it was made with. redb does not compress.
    pub compression: Compression,
    /// The engine's page cache in bytes: the memory its data may take.
    pub cache_bytes: u64,
    /// Applied batches commit without an fsync; a durable commit follows at
    /// least this often (milliseconds)…
    pub flush_interval_ms: u64,
    /// …and after this many bytes of commands applied since the last one.
    pub flush_bytes: u64,
}

impl Default for StateMachineSettings {
    fn default() -> StateMachineSettings {
        StateMachineSettings {
            engine: None,
            compression: Compression::Lz4,
            cache_bytes: 256 << 20,
            flush_interval_ms: 1000,
            flush_bytes: 64 << 20,
        }
    }
}

/// Smallest accepted `state_machine.cache_bytes`.
pub const MIN_CACHE_BYTES: u64 = 1 << 20;

/// Smallest accepted `snapshot.wal_segment_bytes`.
pub const MIN_WAL_SEGMENT_BYTES: u64 = 4096;

/// The whole configuration of one `conclave serve` process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Shared by every member; peers of another cluster are refused.
    pub cluster_id: ClusterId,
    /// This node's id; must be one of `members`.
    pub node_id: NodeId,
    /// Where the WAL lives.
    pub data_dir: PathBuf,
    /// Election mode name (`raft`, `fast`, …); default: the core's default.
    #[serde(default)]
    pub election_mode: Option<String>,
    /// The node that leads the first term of a brand-new cluster (docs/design/cold-start.md).
    #[serde(default)]
    pub initial_leader: Option<NodeId>,
    /// When set, clients must `AUTH` with it before any other command.
    #[serde(default)]
    pub password: Option<String>,
    /// The members of a brand-new cluster, this node included
    /// (docs/design/membership.md): once the log holds a membership, the
    /// log's is used and a disagreement here is only reported. With `join`,
    /// only this node's own entry (its addresses).
    pub members: Vec<Member>,
    /// Start as a new, empty node that waits for a leader to add it
    /// (`conclave admin add-learner`), instead of bootstrapping a cluster of
    /// `members` (`conclave serve --join`).
    #[serde(default)]
    pub join: bool,
    /// Timings.
    #[serde(default)]
    pub timing: Timing,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// Snapshots and compaction.
    #[serde(default)]
    pub snapshot: SnapshotSettings,
    /// The state machine's store.
    #[serde(default)]
    pub state_machine: StateMachineSettings,
}

/// Why a configuration is refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown keys land here, named).
    #[error("cannot parse config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key holds a value that cannot work.
    #[error("invalid config `{key}`: {reason}")]
    Invalid {
        /// The offending key.
        key: String,
        /// Why.
        reason: String,
    },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), reason: reason.into() }
}

impl ServerConfig {
    /// Reads and parses `path` (not yet validated: overrides come first).
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        ServerConfig::parse(&text).map_err(|message| ConfigError::Parse { path: path.to_path_buf(), message })
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<ServerConfig, String> {
        ServerConfig::parse_with(text, &[])
    }

    /// Reads `path` and applies `sets` (`dotted.key=value`, the value in TOML
    /// syntax or else a plain string) before parsing, so that every key can be
    /// overridden from the command line or the environment.
    pub fn load_with(path: &Path, sets: &[String]) -> Result<ServerConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        ServerConfig::parse_with(&text, sets)
            .map_err(|message| ConfigError::Parse { path: path.to_path_buf(), message })
    }

    /// Parses TOML text after applying `sets` (see [`ServerConfig::load_with`]).
    pub fn parse_with(text: &str, sets: &[String]) -> Result<ServerConfig, String> {
        let mut table: toml::Table = toml::from_str(text).map_err(|error| error.to_string())?;
        for set in sets {
            apply_set(&mut table, set)?;
        }
        table.try_into().map_err(|error: toml::de::Error| error.to_string())
    }

    /// Renders as TOML (used by `conclave local` to write configs).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a config always serializes")
    }

    /// The election mode, parsed.
    pub fn election_mode(&self) -> Result<ElectionMode, ConfigError> {
        match &self.election_mode {
            None => Ok(ElectionMode::default()),
            Some(name) => name.parse().map_err(|reason: String| invalid("election_mode", reason)),
        }
    }

    /// This node's own member entry.
    pub fn me(&self) -> Option<&Member> {
        self.members.iter().find(|member| member.id == self.node_id)
    }

    /// The election timeout in milliseconds.
    pub fn election_timeout_ms(&self) -> u64 {
        self.timing.heartbeat_timeout_ms.saturating_mul(u64::from(self.timing.miss_limit))
    }

    /// The vote lease in milliseconds (explicit or 0.8 × election timeout).
    pub fn vote_lease_ms(&self) -> u64 {
        self.timing.vote_lease_ms.unwrap_or(self.election_timeout_ms() * 4 / 5)
    }

    /// Checks every key; the error names the key and says what is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster_id == 0 {
            return Err(invalid("cluster_id", "must be greater than 0"));
        }
        if self.node_id == 0 {
            return Err(invalid("node_id", "0 is reserved for \"nobody\""));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        self.validate_members()?;
        if self.me().is_none() {
            let ids: Vec<NodeId> = self.members.iter().map(|member| member.id).collect();
            return Err(invalid("node_id", format!("node {} is not among the members {ids:?}", self.node_id)));
        }
        self.election_mode()?;
        if self.join && self.initial_leader.is_some() {
            return Err(invalid("initial_leader", "a node that joins a cluster leads no first term"));
        }
        if let Some(leader) = self.initial_leader {
            if !self.members.iter().any(|member| member.id == leader) {
                return Err(invalid("initial_leader", format!("node {leader} is not a member")));
            }
        }
        if matches!(&self.password, Some(password) if password.is_empty()) {
            return Err(invalid("password", "must not be empty (leave it out to disable AUTH)"));
        }
        self.validate_timing()?;
        self.validate_limits()?;
        self.validate_snapshot()?;
        // The core re-checks its own part and names the field it dislikes.
        self.core_config().validate().map_err(|error| invalid("timing", error.to_string()))
    }

    fn validate_members(&self) -> Result<(), ConfigError> {
        if self.members.is_empty() {
            return Err(invalid("members", "must list at least one member"));
        }
        let mut ids = HashSet::new();
        let mut addresses = HashSet::new();
        for (position, member) in self.members.iter().enumerate() {
            if member.id == 0 {
                return Err(invalid(format!("members[{position}].id"), "0 is reserved for \"nobody\""));
            }
            if !ids.insert(member.id) {
                return Err(invalid(format!("members[{position}].id"), format!("id {} is listed twice", member.id)));
            }
            let named = [("peer_address", Some(member.peer_address)), ("client_address", Some(member.client_address))];
            let http = [("http_address", member.http_address)];
            for (name, address) in named.into_iter().chain(http) {
                let Some(address) = address else { continue };
                // Port 0 (any free port) is allowed only for a single-node cluster,
                // where nobody needs to know the port in advance.
                if address.port() == 0 && self.members.len() > 1 {
                    return Err(invalid(
                        format!("members[{position}].{name}"),
                        "port 0 only works in a one-node cluster: peers must know the port",
                    ));
                }
                if address.port() != 0 && !addresses.insert(address) {
                    return Err(invalid(format!("members[{position}].{name}"), format!("{address} is used twice")));
                }
            }
        }
        Ok(())
    }

    fn validate_timing(&self) -> Result<(), ConfigError> {
        let timing = &self.timing;
        let nonzero = [
            ("timing.heartbeat_interval_ms", timing.heartbeat_interval_ms),
            ("timing.heartbeat_timeout_ms", timing.heartbeat_timeout_ms),
            ("timing.finalize_wait_ms", timing.finalize_wait_ms),
            ("timing.request_timeout_ms", timing.request_timeout_ms),
            ("timing.leader_wait_ms", timing.leader_wait_ms),
            ("timing.reconnect_min_ms", timing.reconnect_min_ms),
            ("timing.reconnect_max_ms", timing.reconnect_max_ms),
            ("timing.client_read_timeout_ms", timing.client_read_timeout_ms),
            ("timing.peer_handshake_timeout_ms", timing.peer_handshake_timeout_ms),
            ("timing.shutdown_grace_ms", timing.shutdown_grace_ms),
        ];
        if let Some((key, _)) = nonzero.iter().find(|(_, value)| *value == 0) {
            return Err(invalid(*key, "must be greater than 0"));
        }
        if timing.heartbeat_timeout_ms < timing.heartbeat_interval_ms {
            return Err(invalid(
                "timing.heartbeat_timeout_ms",
                format!(
                    "{} ms is below timing.heartbeat_interval_ms ({} ms)",
                    timing.heartbeat_timeout_ms, timing.heartbeat_interval_ms
                ),
            ));
        }
        if timing.miss_limit < 2 {
            return Err(invalid("timing.miss_limit", "must be at least 2"));
        }
        if timing.reconnect_max_ms < timing.reconnect_min_ms {
            return Err(invalid("timing.reconnect_max_ms", "must not be below timing.reconnect_min_ms"));
        }
        let election_timeout_ms = self.election_timeout_ms();
        if timing.vote_lease_ms == Some(0) {
            return Err(invalid("timing.vote_lease_ms", "must be greater than 0"));
        }
        if self.vote_lease_ms() >= election_timeout_ms {
            return Err(invalid(
                "timing.vote_lease_ms",
                format!(
                    "{} ms must be below the election timeout ({} ms = miss_limit × heartbeat_timeout_ms)",
                    self.vote_lease_ms(),
                    election_timeout_ms
                ),
            ));
        }
        if timing.leader_wait_ms > timing.request_timeout_ms {
            return Err(invalid("timing.leader_wait_ms", "must not exceed timing.request_timeout_ms"));
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        let nonzero = [
            ("limits.max_clients", limits.max_clients),
            ("limits.max_bulk_bytes", limits.max_bulk_bytes),
            ("limits.max_array_len", limits.max_array_len),
            ("limits.max_inline_bytes", limits.max_inline_bytes),
            ("limits.max_command_bytes", limits.max_command_bytes),
            ("limits.max_entries_per_message", limits.max_entries_per_message),
            ("limits.max_append_bytes", limits.max_append_bytes),
            ("limits.max_frame_bytes", limits.max_frame_bytes),
            ("limits.peer_queue_frames", limits.peer_queue_frames),
        ];
        if let Some((key, _)) = nonzero.iter().find(|(_, value)| *value == 0) {
            return Err(invalid(*key, "must be greater than 0"));
        }
        if limits.max_frame_bytes > u32::MAX as usize {
            return Err(invalid("limits.max_frame_bytes", "must fit the 32-bit frame length"));
        }
        // A full AppendEntries must fit one frame, or replication would stall.
        let largest_append = limits.max_entries_per_message.saturating_mul(limits.max_command_bytes + 64) + 4096;
        if limits.max_frame_bytes < largest_append {
            return Err(invalid(
                "limits.max_frame_bytes",
                format!(
                    "{} bytes cannot carry a full AppendEntries ({largest_append} bytes = \
                     max_entries_per_message × max_command_bytes + overhead)",
                    limits.max_frame_bytes
                ),
            ));
        }
        Ok(())
    }

    fn validate_snapshot(&self) -> Result<(), ConfigError> {
        let snapshot = &self.snapshot;
        if snapshot.chunk_bytes == 0 {
            return Err(invalid("snapshot.chunk_bytes", "must be greater than 0: a snapshot could never be sent"));
        }
        // A chunk travels in one peer frame, with its metadata around it.
        let largest_chunk = snapshot.chunk_bytes.saturating_add(4096);
        if largest_chunk > self.limits.max_frame_bytes {
            return Err(invalid(
                "snapshot.chunk_bytes",
                format!(
                    "{} bytes plus overhead do not fit one peer frame (limits.max_frame_bytes = {})",
                    snapshot.chunk_bytes, self.limits.max_frame_bytes
                ),
            ));
        }
        let machine = &self.state_machine;
        if machine.cache_bytes < MIN_CACHE_BYTES {
            return Err(invalid(
                "state_machine.cache_bytes",
                format!("{} is below the minimum of {MIN_CACHE_BYTES} bytes", machine.cache_bytes),
            ));
        }
        if machine.flush_interval_ms == 0 || machine.flush_bytes == 0 {
            return Err(invalid(
                if machine.flush_interval_ms == 0 {
                    "state_machine.flush_interval_ms"
                } else {
                    "state_machine.flush_bytes"
                },
                "must be greater than 0: the WAL could never be compacted",
            ));
        }
        if snapshot.wal_segment_bytes < MIN_WAL_SEGMENT_BYTES {
            return Err(invalid(
                "snapshot.wal_segment_bytes",
                format!("{} is below the minimum of {MIN_WAL_SEGMENT_BYTES} bytes", snapshot.wal_segment_bytes),
            ));
        }
        Ok(())
    }

    /// The core's configuration derived from this one.
    pub fn core_config(&self) -> conclave_core::Config {
        // A joining node knows no voter: it waits for a leader to add it.
        let voters = if self.join { Vec::new() } else { self.members.iter().map(|member| member.id).collect() };
        let mut core = conclave_core::Config::new(self.node_id, self.cluster_id, voters);
        core.bootstrap_members = self
            .members
            .iter()
            .map(|member| {
                let addresses = conclave_core::MemberAddresses {
                    peer: member.peer_address.to_string(),
                    client: member.client_address.to_string(),
                    http: member.http_address.map(|address| address.to_string()).unwrap_or_default(),
                };
                let priority = member.priority.unwrap_or(conclave_core::DEFAULT_PRIORITY);
                (member.id, conclave_core::Member { voter: true, priority, addresses })
            })
            .collect();
        core.election_mode = self.election_mode().unwrap_or_default();
        core.heartbeat_interval_ms = self.timing.heartbeat_interval_ms;
        core.heartbeat_timeout_ms = self.timing.heartbeat_timeout_ms;
        core.miss_limit = self.timing.miss_limit;
        core.finalize_wait_ms = self.timing.finalize_wait_ms;
        core.vote_lease_ms = self.vote_lease_ms();
        core.initial_leader = self.initial_leader;
        core.cold_start_wait_ms = self.timing.cold_start_wait_ms;
        core.max_entries_per_message = self.limits.max_entries_per_message;
        core.max_bytes_per_message = self.limits.max_append_bytes;
        core.max_command_bytes = self.limits.max_command_bytes;
        core.max_promotion_lag = self.limits.max_promotion_lag;
        core.snapshot_chunk_bytes = self.snapshot.chunk_bytes;
        core.fast_detection = self.timing.fast_detection;
        core.parallel_persist = self.timing.parallel_persist;
        // A state machine that may outgrow memory takes a leader's snapshot
        // chunk by chunk, on disk (docs/decisions/0090).
        core.stage_snapshot_chunks = self.state_machine.engine().is_on_disk();
        #[cfg(feature = "bug-injection")]
        inject_bugs(&mut core);
        core
    }
}

/// Test builds only (feature `bug-injection`): breaks the rules named in
/// `CONCLAVE_INJECTED_BUGS` (comma-separated), so the nemesis can prove its
/// checker catches a server that breaks them:
/// * `read-without-leadership-check`: reads released without a quorum
///   confirming the leadership (the core's `ReadWithoutLeadershipCheck`);
/// * `no-check-quorum`: a leader that hears from no majority keeps leading
///   (without it, a deposed leader steps down within an election timeout,
///   which leaves the first bug a narrow window).
#[cfg(feature = "bug-injection")]
fn inject_bugs(core: &mut conclave_core::Config) {
    let Ok(names) = std::env::var("CONCLAVE_INJECTED_BUGS") else { return };
    for name in names.split(',').map(str::trim).filter(|name| !name.is_empty()) {
        match name {
            "read-without-leadership-check" => {
                core.injected_bug = Some(conclave_core::InjectedBug::ReadWithoutLeadershipCheck)
            }
            "no-check-quorum" => core.check_quorum = false,
            other => panic!("CONCLAVE_INJECTED_BUGS: unknown bug {other:?}"),
        }
    }
}

/// Applies one `dotted.key=value` override to a parsed TOML table.
fn apply_set(table: &mut toml::Table, set: &str) -> Result<(), String> {
    let (key, value) = set.split_once('=').ok_or_else(|| format!("override `{set}` is not KEY=VALUE"))?;
    let key = key.trim();
    let value = value.trim();
    let parsed: toml::Value = match toml::from_str::<toml::Table>(&format!("value = {value}")) {
        Ok(mut wrapper) => wrapper.remove("value").unwrap_or_else(|| toml::Value::String(value.to_string())),
        Err(_) => toml::Value::String(value.to_string()),
    };
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().filter(|last| !last.is_empty()).ok_or_else(|| format!("override `{set}` has no key"))?;
    let mut current = table;
    for part in parts {
        let entry = current.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| format!("override `{key}`: `{part}` is not a table"))?;
    }
    current.insert(last.to_string(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_nodes() -> String {
        let mut text = String::from("cluster_id = 7\nnode_id = 1\ndata_dir = \"data\"\n");
        for id in 1..=3 {
            text.push_str(&format!(
                "[[members]]\nid = {id}\npeer_address = \"127.0.0.1:{}\"\nclient_address = \"127.0.0.1:{}\"\n",
                7100 + id,
                6370 + id
            ));
        }
        text
    }

    fn error_key(config: &ServerConfig) -> String {
        match config.validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    #[test]
    fn a_minimal_config_is_valid_with_defaults() {
        let config = ServerConfig::parse(&three_nodes()).unwrap();
        config.validate().unwrap();
        assert_eq!(config.timing, Timing::default());
        assert_eq!(config.vote_lease_ms(), 200);
        let core = config.core_config();
        assert_eq!((core.election_mode, core.vote_lease_ms), (conclave_core::ElectionMode::Conclave, 200));
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let error = ServerConfig::parse(&format!("colour = 1\n{}", three_nodes())).unwrap_err();
        assert!(error.contains("colour"), "{error}");
        let text = three_nodes() + "[timing]\nheartbeat_ms = 5\n";
        let error = ServerConfig::parse(&text).unwrap_err();
        assert!(error.contains("heartbeat_ms"), "{error}");
    }

    #[test]
    fn each_bad_value_names_its_key() {
        let base = ServerConfig::parse(&three_nodes()).unwrap();
        let mut config = base.clone();
        config.node_id = 9;
        assert_eq!(error_key(&config), "node_id");
        let mut config = base.clone();
        config.members[2].id = 1;
        assert_eq!(error_key(&config), "members[2].id");
        let mut config = base.clone();
        config.members[1].client_address = config.members[0].peer_address;
        assert_eq!(error_key(&config), "members[1].client_address");
        let mut config = base.clone();
        config.timing.heartbeat_interval_ms = 0;
        assert_eq!(error_key(&config), "timing.heartbeat_interval_ms");
        let mut config = base.clone();
        config.timing.vote_lease_ms = Some(250);
        assert_eq!(error_key(&config), "timing.vote_lease_ms");
        let mut config = base.clone();
        config.election_mode = Some("paxos".into());
        assert_eq!(error_key(&config), "election_mode");
        let mut config = base.clone();
        config.initial_leader = Some(4);
        assert_eq!(error_key(&config), "initial_leader");
        let mut config = base.clone();
        config.limits.max_frame_bytes = 1024;
        assert_eq!(error_key(&config), "limits.max_frame_bytes");
        let mut config = base.clone();
        config.members[0].peer_address.set_port(0);
        assert_eq!(error_key(&config), "members[0].peer_address");
        let mut config = base.clone();
        config.snapshot.chunk_bytes = 0;
        assert_eq!(error_key(&config), "snapshot.chunk_bytes");
        let mut config = base.clone();
        config.snapshot.chunk_bytes = config.limits.max_frame_bytes;
        assert_eq!(error_key(&config), "snapshot.chunk_bytes");
        let mut config = base;
        config.snapshot.wal_segment_bytes = 100;
        assert_eq!(error_key(&config), "snapshot.wal_segment_bytes");
    }

    #[test]
    fn the_snapshot_section_has_defaults_and_refuses_unknown_keys() {
        let config = ServerConfig::parse(&three_nodes()).unwrap();
        assert_eq!(config.snapshot, SnapshotSettings::default());
        assert_eq!((config.snapshot.every_entries, config.snapshot.log_bytes), (0, 64 << 20));
        assert_eq!(config.core_config().snapshot_chunk_bytes, 1 << 20);
        let text = three_nodes() + "[snapshot]\nevery_entries = 0\nchunk_bytes = 4096\n";
        let config = ServerConfig::parse(&text).unwrap();
        config.validate().unwrap();
        assert_eq!((config.snapshot.every_entries, config.snapshot.chunk_bytes), (0, 4096));
        let error = ServerConfig::parse(&(three_nodes() + "[snapshot]\nevery = 5\n")).unwrap_err();
        assert!(error.contains("every"), "{error}");
        let error = ServerConfig::parse(&(three_nodes() + "[snapshot]\nevery_entries = -1\n")).unwrap_err();
        assert!(error.contains("every_entries") || error.contains("invalid value"), "{error}");
    }

    #[test]
    fn the_engine_is_unset_by_default_and_engine_and_compression_take_their_names_only() {
        let config = ServerConfig::parse(&three_nodes()).unwrap();
        assert_eq!(config.state_machine.engine, None, "unset: the data dir decides");
        assert_eq!(config.state_machine.engine(), EngineKind::FOR_NEW_DATA_DIR);
        assert_eq!(config.state_machine.compression, Compression::Lz4);
        let text = three_nodes() + "[state_machine]\nengine = \"redb\"\ncompression = \"none\"\n";
        let config = ServerConfig::parse(&text).unwrap();
        assert_eq!(
            (config.state_machine.engine, config.state_machine.compression),
            (Some(EngineKind::Redb), Compression::None)
        );
        for bad in ["engine = \"rocksdb\"", "compression = \"zstd\""] {
            let error = ServerConfig::parse(&(three_nodes() + "[state_machine]\n" + bad + "\n")).unwrap_err();
            let value = bad.split('"').nth(1).unwrap();
            assert!(error.contains(value), "{error}");
        }
    }

    #[test]
    fn overrides_set_any_key_and_unknown_ones_are_refused() {
        let sets = ["node_id=2".to_string(), "timing.heartbeat_interval_ms = 20".into(), "data_dir=other/dir".into()];
        let config = ServerConfig::parse_with(&three_nodes(), &sets).unwrap();
        assert_eq!((config.node_id, config.timing.heartbeat_interval_ms), (2, 20));
        assert_eq!(config.data_dir, PathBuf::from("other/dir"));
        let error = ServerConfig::parse_with(&three_nodes(), &["timing.bogus=1".to_string()]).unwrap_err();
        assert!(error.contains("bogus"), "{error}");
    }

    #[test]
    fn a_config_survives_a_toml_round_trip() {
        let config = ServerConfig::parse(&three_nodes()).unwrap();
        assert_eq!(ServerConfig::parse(&config.to_toml()).unwrap(), config);
    }
}
