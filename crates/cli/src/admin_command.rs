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
    /// A node's client address (HOST:PORT). Every command but `members` is
    /// the leader's to run: a follower's redirect is followed.
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
    /// Add node ID as a learner: it receives the log and a snapshot, and
    /// never votes until promoted. Start it first with `conclave serve --join`.
    AddLearner {
        /// Its id: new, or the id of a node removed earlier.
        id: u64,
        /// Its peer address (IP:PORT).
        #[arg(long)]
        peer: SocketAddr,
        /// Its client address (IP:PORT).
        #[arg(long)]
        client: SocketAddr,
        /// Its HTTP address (IP:PORT), if it serves one.
        #[arg(long)]
        http: Option<SocketAddr>,
    },
    /// Make learner ID a voter; refused until it has caught up.
    Promote {
        /// The learner.
        id: u64,
    },
    /// Remove member ID (the leader hands over first if it is the one).
    Remove {
        /// The member.
        id: u64,
    },
    /// Set member ID's priority: among members with equal data the highest
    /// leads; 0 = only when no one else can.
    SetPriority {
        /// The member.
        id: u64,
        /// Its priority.
        priority: u32,
    },
}

/// Redirects followed before giving up (a leader that hands over as it is
/// asked, then a second change of leader).
const MAX_REDIRECTS: usize = 3;

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
    let command = resp_command(&args.command);
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let mut endpoint = args.endpoint.clone();
    for _ in 0..=MAX_REDIRECTS {
        match ask(args, &endpoint, &command)? {
            Reply::Simple(answer) => return Ok(answer),
            Reply::Bulk(Some(json)) if matches!(args.command, AdminCommand::Members { json: true }) => {
                return Ok(String::from_utf8_lossy(&json).into_owned())
            }
            Reply::Bulk(Some(json)) => return members_table(&json),
            // `members` is answered by the leader only, but a follower's
            // answer names it: every command follows the redirect.
            Reply::Error(error) => match redirect(&error) {
                Some(leader) => {
                    eprintln!("conclave admin: {endpoint} does not lead; asking {leader}");
                    endpoint = leader;
                }
                None => return Err(error),
            },
            other => return Err(format!("unexpected answer: {other:?}")),
        }
    }
    Err(format!("still redirected after {MAX_REDIRECTS} redirects; the leader keeps changing"))
}

/// The RESP command for `command`.
fn resp_command(command: &AdminCommand) -> Vec<String> {
    let words: Vec<String> = match command {
        AdminCommand::Members { .. } => vec!["MEMBERS".into()],
        AdminCommand::Transfer { id: None } => vec!["TRANSFER".into()],
        AdminCommand::Transfer { id: Some(target) } => vec!["TRANSFER".into(), target.to_string()],
        AdminCommand::AddLearner { id, peer, client, http } => {
            let mut words = vec!["ADD-LEARNER".into(), id.to_string(), peer.to_string(), client.to_string()];
            words.extend(http.map(|http| http.to_string()));
            words
        }
        AdminCommand::Promote { id } => vec!["PROMOTE".into(), id.to_string()],
        AdminCommand::Remove { id } => vec!["REMOVE".into(), id.to_string()],
        AdminCommand::SetPriority { id, priority } => vec!["SET-PRIORITY".into(), id.to_string(), priority.to_string()],
    };
    std::iter::once("ADMIN".to_string()).chain(words).collect()
}

/// Sends `command` to `endpoint` (after `AUTH` if there is a password).
fn ask(args: &AdminArgs, endpoint: &str, command: &[&str]) -> Result<Reply, String> {
    let address = resolve(endpoint)?;
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let mut client = RespClient::connect(address, timeout).map_err(|error| format!("{address}: {error}"))?;
    if let Some(password) = &args.password {
        match client.command(&["AUTH", password]).map_err(|error| format!("{address}: {error}"))? {
            Reply::Simple(_) => {}
            Reply::Error(error) => return Err(format!("{address}: {error}")),
            other => return Err(format!("{address}: unexpected answer to AUTH: {other:?}")),
        }
    }
    client.command(command).map_err(|error| format!("{address}: {error}"))
}

/// The leader's client address in a `NOTLEADER … node N does at HOST:PORT: …`
/// redirect.
fn redirect(error: &str) -> Option<String> {
    let rest = error.strip_prefix("NOTLEADER ")?;
    let (_, after) = rest.split_once(" does at ")?;
    let (address, _) = after.split_once(": ")?;
    Some(address.to_string())
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
        "{:>4}  {:<7}  {:>8}  {:<21}  {:<21}  {:<21}  {:>10}  {:>8}  {:>8}",
        "ID", "ROLE", "PRIORITY", "PEER", "CLIENT", "HTTP", "MATCH", "LAG", "HEARD_MS"
    ));
    for row in answer["members"].as_array().into_iter().flatten() {
        let role =
            if row["leader"] == serde_json::Value::Bool(true) { "leader".to_string() } else { field(row, "role") };
        lines.push(format!(
            "{:>4}  {:<7}  {:>8}  {:<21}  {:<21}  {:<21}  {:>10}  {:>8}  {:>8}",
            field(row, "id"),
            role,
            field(row, "priority"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_names_the_leaders_address() {
        let error = "NOTLEADER this node does not lead; node 2 does at 127.0.0.1:7001: send it there";
        assert_eq!(redirect(error).as_deref(), Some("127.0.0.1:7001"));
        assert_eq!(redirect("NOTLEADER this node does not lead; node 2 does: send it there"), None);
        assert_eq!(redirect("ERR membership change refused: node 4 is already a member"), None);
    }
}
