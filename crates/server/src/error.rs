//! Errors that stop a server (start-up failures and fatal runtime errors).

use std::net::SocketAddr;

use thiserror::Error;

use crate::config::ConfigError;

/// Why a server could not start or had to stop.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The WAL could not be opened, recovered or written.
    #[error("storage: {0}")]
    Storage(#[from] conclave_storage::StorageError),
    /// The core refused the restored state or the configuration.
    #[error("cannot start the protocol core: {0}")]
    Core(#[from] conclave_core::StartError),
    /// A listening socket could not be bound.
    #[error("cannot listen on {address} for {purpose}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Which listener (peer, client, http).
        purpose: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The blocking persist task died (a bug or a panic inside the WAL).
    #[error("the persist task failed: {0}")]
    PersistTask(String),
    /// The driver task died (a bug: a panic in the driver or the core).
    #[error("the driver task failed: {0}")]
    DriverTask(String),
    /// A saved snapshot holds no usable KV state.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// The configured engine is not the one the data dir holds, or the data
    /// dir holds two.
    #[error("state machine engine: {0}")]
    Engine(String),
    /// The state machine's store could not be opened, read or written.
    #[error("state machine: {0}")]
    Machine(#[from] crate::kv::MachineError),
    /// The tokio runtime could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}
