//! `conclave serve`: run one node from a config file until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use conclave_server::{logging, ServerConfig, ServerError};
use tracing::level_filters::LevelFilter;
use tracing::{error, info, warn};

/// Flags of `conclave serve`. Every flag also reads the environment variable
/// named beside it; `--set` reaches any key of the config file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The node's config file (TOML; keys in crates/server/README.md).
    #[arg(long, env = "CONCLAVE_CONFIG")]
    pub config: PathBuf,
    /// Override `node_id`.
    #[arg(long, env = "CONCLAVE_NODE_ID")]
    pub node_id: Option<u64>,
    /// Override `cluster_id`.
    #[arg(long, env = "CONCLAVE_CLUSTER_ID")]
    pub cluster_id: Option<u64>,
    /// Override `data_dir`.
    #[arg(long, env = "CONCLAVE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Override this node's `peer_address` in `members`.
    #[arg(long, env = "CONCLAVE_PEER_ADDRESS")]
    pub peer_address: Option<SocketAddr>,
    /// Override this node's `client_address` in `members`.
    #[arg(long, env = "CONCLAVE_CLIENT_ADDRESS")]
    pub client_address: Option<SocketAddr>,
    /// Override this node's `http_address` in `members`.
    #[arg(long, env = "CONCLAVE_HTTP_ADDRESS")]
    pub http_address: Option<SocketAddr>,
    /// Override `election_mode`.
    #[arg(long, env = "CONCLAVE_ELECTION_MODE")]
    pub election_mode: Option<String>,
    /// Start as a new, empty node that waits for the cluster's leader to add
    /// it (`conclave admin add-learner`) instead of bootstrapping a cluster
    /// of the config's `members` (which then need list only this node).
    #[arg(long, env = "CONCLAVE_JOIN")]
    pub join: bool,
    /// Override `password` (clients must AUTH with it).
    #[arg(long, env = "CONCLAVE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Override any key: `--set timing.heartbeat_interval_ms=20` (repeatable;
    /// in the environment, separate several with `;`).
    #[arg(long = "set", value_name = "KEY=VALUE", env = "CONCLAVE_SET", value_delimiter = ';')]
    pub sets: Vec<String>,
    /// Log one JSON object per line instead of human-readable lines.
    #[arg(long, env = "CONCLAVE_LOG_JSON")]
    pub log_json: bool,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, env = "CONCLAVE_LOG_LEVEL", default_value = "info")]
    pub log_level: LevelFilter,
    /// Also shut down when standard input closes (`conclave local` uses it so
    /// that its nodes never outlive it).
    #[arg(long, hide = true)]
    pub exit_on_stdin_close: bool,
}

/// Applies the flags on top of the file.
pub fn load_config(args: &ServeArgs) -> Result<ServerConfig, ServerError> {
    let mut config = ServerConfig::load_with(&args.config, &args.sets)?;
    if let Some(node_id) = args.node_id {
        config.node_id = node_id;
    }
    if let Some(cluster_id) = args.cluster_id {
        config.cluster_id = cluster_id;
    }
    if let Some(data_dir) = &args.data_dir {
        config.data_dir = data_dir.clone();
    }
    if let Some(mode) = &args.election_mode {
        config.election_mode = Some(mode.clone());
    }
    if let Some(password) = &args.password {
        config.password = Some(password.clone());
    }
    if args.join {
        config.join = true;
    }
    let node_id = config.node_id;
    if let Some(me) = config.members.iter_mut().find(|member| member.id == node_id) {
        if let Some(address) = args.peer_address {
            me.peer_address = address;
        }
        if let Some(address) = args.client_address {
            me.client_address = address;
        }
        if let Some(address) = args.http_address {
            me.http_address = Some(address);
        }
    }
    config.validate()?;
    Ok(config)
}

/// Runs `conclave serve`.
pub fn run(args: ServeArgs) -> ExitCode {
    logging::init(args.log_json, args.log_level);
    let config = match load_config(&args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("conclave serve: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("conclave serve: {}", ServerError::Runtime(error));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, args.exit_on_stdin_close)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!(%error, "stopped");
            eprintln!("conclave serve: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: ServerConfig, exit_on_stdin_close: bool) -> Result<(), ServerError> {
    let mut server = conclave_server::start(config).await?;
    let stdin_closed = stdin_closed(exit_on_stdin_close);
    tokio::select! {
        signal = shutdown_signal() => {
            info!(signal, "signal received");
            if signal == "SIGTERM" {
                hand_over_if_leading(&server).await;
            }
        }
        _ = stdin_closed => info!("standard input closed"),
        result = server.stopped() => return result,
    }
    server.shutdown().await
}

/// A leader stopped by SIGTERM (a service manager, a rolling restart) hands
/// its leadership to the most up-to-date member first: the cluster waits out
/// no election timeout (docs/decisions/0099). Bounded by two election
/// timeouts; on failure it stops anyway and the others elect as after a crash.
async fn hand_over_if_leading(server: &conclave_server::RunningServer) {
    let status = server.status();
    if status.role != conclave_core::Role::Leader {
        return;
    }
    match server.hand_over(None).await {
        Ok(done) => info!(leader = done.leader, term = done.term, "leadership handed over before stopping"),
        Err(error) => warn!(%error, "leadership not handed over before stopping; the others elect a leader"),
    }
}

/// Completes when standard input reaches its end, if asked to watch it.
async fn stdin_closed(watch: bool) {
    if !watch {
        return std::future::pending().await;
    }
    let (closed, on_closed) = tokio::sync::oneshot::channel::<()>();
    // A plain thread: blocking reads of stdin have no place on the runtime.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = closed.send(());
    });
    let _ = on_closed.await;
}

/// Completes on SIGINT or SIGTERM, naming it.
pub async fn shutdown_signal() -> &'static str {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}
