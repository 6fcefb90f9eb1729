//! `conclave admin`: an operator's commands to a running node, over its
//! client port (RESP `ADMIN …`). Each waits until the change took effect or
//! failed, prints the node's answer, and exits non-zero on failure.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::demo::client::{Reply, RespClient};

/// `conclave admin` arguments.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// A node's client address (HOST:PORT); `transfer` must reach the leader.
    #[arg(long)]
    endpoint: String,
    /// The cluster's password, if it has one (`AUTH` is sent first).
    #[arg(long, env = "CONCLAVE_PASSWORD")]
    password: Option<String>,
    /// How long to wait for the node's answer, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// The members as the leader sees them: id, role, addresses, match index,
    /// lag, last heard (ask the leader).
    Members {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Hand leadership over to member ID, or to the most up-to-date member;
    /// waits until the new leader serves.
    Transfer {
        /// The member that is to lead.
        id: Option<u64>,
    },
}

pub fn run(args: AdminArgs) -> ExitCode {
    match execute(&args) {
        Ok(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("conclave admin: {error}");
            ExitCode::FAILURE
        }
    }
}

fn execute(args: &AdminArgs) -> Result<String, String> {
    let address = resolve(&args.endpoint)?;
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let mut client = RespClient::connect(address, timeout).map_err(|error| format!("{address}: {error}"))?;
    if let Some(password) = &args.password {
        match client.command(&["AUTH", password]).map_err(|error| format!("{address}: {error}"))? {
            Reply::Simple(_) => {}
            Reply::Error(error) => return Err(format!("{address}: {error}")),
            other => return Err(format!("{address}: unexpected answer to AUTH: {other:?}")),
        }
    }
    let id;
    let command: Vec<&str> = match &args.command {
        AdminCommand::Members { .. } => vec!["ADMIN", "MEMBERS"],
        AdminCommand::Transfer { id: None } => vec!["ADMIN", "TRANSFER"],
        AdminCommand::Transfer { id: Some(target) } => {
            id = target.to_string();
            vec!["ADMIN", "TRANSFER", &id]
        }
    };
    match client.command(&command).map_err(|error| format!("{address}: {error}"))? {
        Reply::Simple(answer) => Ok(answer),
        Reply::Bulk(Some(json)) if matches!(args.command, AdminCommand::Members { json: true }) => {
            Ok(String::from_utf8_lossy(&json).into_owned())
        }
        Reply::Bulk(Some(json)) => members_table(&json),
        Reply::Error(error) => Err(error),
        other => Err(format!("unexpected answer: {other:?}")),
    }
}

/// `ADMIN MEMBERS`' JSON as a table.
fn members_table(json: &[u8]) -> Result<String, String> {
    let answer: serde_json::Value =
        serde_json::from_slice(json).map_err(|error| format!("unexpected answer to ADMIN MEMBERS: {error}"))?;
    let field = |row: &serde_json::Value, key: &str| match &row[key] {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let mut lines = vec![format!(
        "leader {} term {} leader term {} last index {} commit index {}",
        field(&answer, "leader"),
        field(&answer, "term"),
        field(&answer, "leader_term"),
        field(&answer, "last_index"),
        field(&answer, "commit_index")
    )];
    lines.push(format!(
        "{:>4}  {:<6}  {:<21}  {:<21}  {:<21}  {:>10}  {:>8}  {:>8}",
        "ID", "ROLE", "PEER", "CLIENT", "HTTP", "MATCH", "LAG", "HEARD_MS"
    ));
    for row in answer["members"].as_array().into_iter().flatten() {
        let role =
            if row["leader"] == serde_json::Value::Bool(true) { "leader".to_string() } else { field(row, "role") };
        lines.push(format!(
            "{:>4}  {:<6}  {:<21}  {:<21}  {:<21}  {:>10}  {:>8}  {:>8}",
            field(row, "id"),
            role,
            field(row, "peer_address"),
            field(row, "client_address"),
            field(row, "http_address"),
            field(row, "match_index"),
            field(row, "lag"),
            field(row, "heard_ms_ago")
        ));
    }
    Ok(lines.join("\n"))
}

fn resolve(endpoint: &str) -> Result<SocketAddr, String> {
    endpoint
        .to_socket_addrs()
        .map_err(|error| format!("--endpoint {endpoint}: {error} (expected HOST:PORT)"))?
        .next()
        .ok_or_else(|| format!("--endpoint {endpoint}: no address"))
}
