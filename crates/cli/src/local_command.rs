//! `conclave local`: a local cluster of real `conclave serve` processes on
//! loopback, in the foreground, until Ctrl-C or SIGTERM.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use clap::Args;
use conclave_server::config::{EngineKind, Limits, StateMachineSettings, Timing};
use conclave_server::{Member, ServerConfig};
use tokio::process::{Child, Command};

/// Flags of `conclave local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Node i (from 1) gets client port P+i-1, peer port P+100+i-1 and HTTP port
    /// P+200+i-1; without it, free ports are picked.
    #[arg(long)]
    pub base_port: Option<u16>,
    /// Where configs, data dirs and logs go (default: a new directory under the
    /// system's temporary directory, kept afterwards).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Give node i the address 127.0.0.(10+i) instead of 127.0.0.1, so that one
    /// link can be cut with a firewall rule.
    #[arg(long)]
    pub distinct_addresses: bool,
    /// Election mode for every node.
    #[arg(long)]
    pub election_mode: Option<String>,
    /// Password clients must AUTH with.
    #[arg(long)]
    pub password: Option<String>,
    /// Cluster id.
    #[arg(long, default_value_t = 1)]
    pub cluster_id: u64,
    /// Where every node keeps its KV data: `redb`, `fjall` or `memory`
    /// (`state_machine.engine` in the config; default: what each node's data
    /// dir holds, `fjall` for a new one).
    #[arg(long, value_parser = parse_engine)]
    pub engine: Option<EngineKind>,
}

/// An engine by its config name.
pub fn parse_engine(name: &str) -> Result<EngineKind, String> {
    EngineKind::from_name(name).ok_or_else(|| format!("unknown engine {name:?}: redb, fjall or memory"))
}

/// A port that is free now, below the kernel's ephemeral range (32768 and up
/// on Linux): between now and the node binding it, no outgoing connection — a
/// peer dialling, a client — can be given it. Tried at random, so that clusters
/// started at the same time (parallel tests) do not pick the same ports. The
/// probe stays bound in `held` until every port of the cluster is picked, so
/// no port is picked twice.
fn free_port(ip: IpAddr, held: &mut Vec<TcpListener>) -> std::io::Result<u16> {
    use std::hash::{BuildHasher, Hasher};
    const FIRST: u16 = 20_000;
    const COUNT: u16 = 12_000;
    let random = std::collections::hash_map::RandomState::new();
    for attempt in 0..1_000u32 {
        let mut hasher = random.build_hasher();
        hasher.write_u32(attempt);
        let port = FIRST + (hasher.finish() % u64::from(COUNT)) as u16;
        if let Ok(listener) = TcpListener::bind(SocketAddr::new(ip, port)) {
            held.push(listener);
            return Ok(port);
        }
    }
    // Everything tried is taken: fall back to one the kernel picks.
    let listener = TcpListener::bind(SocketAddr::new(ip, 0))?;
    let port = listener.local_addr()?.port();
    held.push(listener);
    Ok(port)
}

fn address(
    ip: IpAddr,
    base: Option<u16>,
    offset: u16,
    index: u64,
    held: &mut Vec<TcpListener>,
) -> std::io::Result<SocketAddr> {
    let port = match base {
        Some(base) => base
            .checked_add(offset + index as u16 - 1)
            .ok_or_else(|| std::io::Error::other("--base-port leaves no room for every node's ports"))?,
        None => free_port(ip, held)?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// Builds the members of a local cluster.
pub fn members(args: &LocalArgs) -> std::io::Result<Vec<Member>> {
    // Probes of the ports picked, released when every port is picked.
    let mut held = Vec::new();
    (1..=args.nodes)
        .map(|id| {
            let ip = if args.distinct_addresses {
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + id as u8))
            } else {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            };
            Ok(Member {
                id,
                client_address: address(ip, args.base_port, 0, id, &mut held)?,
                peer_address: address(ip, args.base_port, 100, id, &mut held)?,
                http_address: Some(address(ip, args.base_port, 200, id, &mut held)?),
                priority: None,
            })
        })
        .collect()
}

/// The config of node `id` of a local cluster, its data in `dir/node<id>`.
pub fn node_config(args: &LocalArgs, members: &[Member], id: u64, dir: &Path, timing: Timing) -> ServerConfig {
    ServerConfig {
        cluster_id: args.cluster_id,
        node_id: id,
        data_dir: dir.join(format!("node{id}")),
        election_mode: args.election_mode.clone(),
        initial_leader: Some(1),
        password: args.password.clone(),
        members: members.to_vec(),
        join: false,
        timing,
        limits: Limits::default(),
        snapshot: Default::default(),
        state_machine: StateMachineSettings { engine: args.engine, ..Default::default() },
    }
}

/// The command that starts one node from its config; it stops when its stdin closes.
pub fn serve_command(executable: &Path, config: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(executable);
    command
        .args(["serve", "--exit-on-stdin-close", "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    command
}

fn write_configs(args: &LocalArgs, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let members = members(args)?;
    let mut paths = Vec::new();
    for member in &members {
        let config = node_config(args, &members, member.id, dir, Timing::default());
        config.validate().map_err(std::io::Error::other)?;
        let path = dir.join(format!("node{}.toml", member.id));
        std::fs::write(&path, config.to_toml())?;
        println!(
            "node {}: client {}  peer {}  http {}  (config {}, log {})",
            member.id,
            member.client_address,
            member.peer_address,
            member.http_address.map_or_else(String::new, |address| address.to_string()),
            path.display(),
            dir.join(format!("node{}.log", member.id)).display()
        );
        paths.push(path);
    }
    Ok(paths)
}

/// Runs `conclave local`.
pub fn run(args: LocalArgs) -> ExitCode {
    if args.nodes == 0 || args.nodes > 99 {
        eprintln!("conclave local: --nodes must be between 1 and 99");
        return ExitCode::from(2);
    }
    let dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("conclave-local-{}", std::process::id())),
    };
    let prepared = std::fs::create_dir_all(&dir).and_then(|()| write_configs(&args, &dir));
    let paths = match prepared {
        Ok(paths) => paths,
        Err(error) => {
            eprintln!("conclave local: cannot prepare {}: {error}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("conclave local: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(supervise(&dir, &paths))
}

async fn supervise(dir: &Path, paths: &[PathBuf]) -> ExitCode {
    let executable = match std::env::current_exe() {
        Ok(executable) => executable,
        Err(error) => {
            eprintln!("conclave local: cannot find my own executable: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut children: Vec<(u64, Child)> = Vec::new();
    for (position, path) in paths.iter().enumerate() {
        let id = position as u64 + 1;
        let spawned = std::fs::File::create(dir.join(format!("node{id}.log"))).and_then(|log| {
            let mut command = serve_command(&executable, path);
            command.stderr(log);
            Command::from(command).spawn()
        });
        match spawned {
            Ok(child) => children.push((id, child)),
            Err(error) => {
                eprintln!("conclave local: cannot start node {id}: {error}");
                stop_all(&mut children).await;
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{} nodes running; Ctrl-C or SIGTERM stops them all", children.len());
    let signal = crate::serve_command::shutdown_signal().await;
    println!("{signal}: stopping every node");
    stop_all(&mut children).await;
    ExitCode::SUCCESS
}

/// Closes each child's stdin (a graceful shutdown), then kills any that lingers.
async fn stop_all(children: &mut [(u64, Child)]) {
    for (_, child) in children.iter_mut() {
        drop(child.stdin.take());
    }
    for (id, child) in children.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
            Ok(Ok(status)) => println!("node {id} stopped ({status})"),
            _ => {
                eprintln!("node {id} did not stop in time; killing it");
                let _ = child.kill().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_ports_are_distinct_and_below_the_ephemeral_range() {
        // A port picked twice made the demo refuse its own config once in CI
        // ("127.0.0.1:21158 is used twice").
        let args = LocalArgs {
            nodes: 30,
            base_port: None,
            data_dir: None,
            distinct_addresses: false,
            election_mode: None,
            password: None,
            cluster_id: 1,
            engine: None,
        };
        for _round in 0..5 {
            let members = members(&args).unwrap();
            let mut ports: Vec<u16> = members
                .iter()
                .flat_map(|member| [member.client_address, member.peer_address, member.http_address.unwrap()])
                .map(|address| address.port())
                .collect();
            assert!(ports.iter().all(|port| (20_000..32_000).contains(port)), "{ports:?}");
            ports.sort_unstable();
            ports.dedup();
            assert_eq!(ports.len(), 90, "every port picked once");
        }
    }
}
