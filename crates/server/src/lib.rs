//! # conclave-server
//!
//! The Conclave server: one process runs one core [`conclave_core::Node`] and
//! drives it with a real monotonic clock, a TCP peer transport and the storage
//! crate's WAL, applies committed entries to a replicated key-value store, and
//! speaks RESP2 to clients so that `redis-cli`, `redis-benchmark` and Redis
//! client libraries work unchanged. Usage and every config key are in the
//! crate's `README.md`.
//!
//! | module | job |
//! |---|---|
//! | [`config`] | the TOML config, its defaults and validation |
//! | [`server`] | start-up (restore from the WAL, bind) and graceful shutdown |
//! | `driver` | the loop around the core: clock, group commit, send, apply, requests |
//! | [`peer`] | TCP peer transport: frames, handshake, per-peer queues, reconnects |
//! | [`kv`] | the replicated state machine and its commands |
//! | [`resp`] | RESP2 parsing (with limits) and reply encoding |
//! | `client` | client connections and what each command means |
//! | [`status`] | the node status behind `INFO` and `GET /status` |
//! | [`background`] | a lower CPU priority for the threads of bulk work |
//! | [`observe`] | metrics (`GET /metrics`) and the election event log (`GET /events`) |
//! | `http` | `GET /status`, `/health`, `/metrics`, `/events` |
#![deny(missing_docs)]

pub mod background;
mod client;
pub mod config;
mod driver;
pub mod error;
mod http;
pub mod kv;
pub mod logging;
pub mod membership;
pub mod observe;
pub mod peer;
pub mod resp;
pub mod server;
pub mod status;

/// Injected disk faults (test builds only, feature `disk-faults`).
pub use conclave_storage::fault as disk_fault;
pub use config::{ConfigError, Member, ServerConfig};
pub use driver::admin::{AdminCommand, HandOverError, HandedOver};
pub use driver::requests::RequestError;
pub use error::ServerError;
pub use server::{start, RunningServer};
pub use status::NodeStatus;
