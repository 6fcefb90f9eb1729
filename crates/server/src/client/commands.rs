//! What each client command means: answered at once (PING, INFO, AUTH, …) or a
//! [`KvCommand`] for the replicated store.

use conclave_core::{MemberAddresses, MembershipChange};

use crate::driver::admin::AdminCommand;
use crate::kv::{KvCommand, SetCondition};
use crate::resp::reply;
use crate::status::NodeStatus;

/// One connection's state.
#[derive(Debug, Default)]
pub struct Session {
    /// Connection number, for `CLIENT ID`.
    pub id: u64,
    /// True once `AUTH` succeeded (or if no password is set).
    pub authenticated: bool,
    /// `READONLY` mode: reads are served from this node's state, possibly stale.
    pub stale_reads: bool,
    /// `CLIENT SETNAME`.
    pub name: Option<Vec<u8>>,
    /// Between `MULTI` and `EXEC`/`DISCARD`: the commands queued so far.
    pub transaction: Option<Transaction>,
}

/// A `MULTI` block being queued.
#[derive(Debug, Default)]
pub struct Transaction {
    /// The queued commands, in order.
    pub commands: Vec<KvCommand>,
    /// A command was refused while queueing: `EXEC` discards the whole block.
    pub aborted: bool,
}

/// Most commands one transaction may queue (its log entry is also bounded by
/// `limits.max_command_bytes`).
pub const MAX_TRANSACTION_COMMANDS: usize = 10_000;

/// What to do with one command.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send these reply bytes.
    Reply(Vec<u8>),
    /// Run through the replicated store.
    Kv(KvCommand),
    /// Send these reply bytes, then close the connection.
    Close(Vec<u8>),
    /// An operator's command for the node (`ADMIN …`).
    Admin(AdminCommand),
}

/// What commands need from the server.
pub struct Context<'a> {
    /// The `password` key of the config.
    pub password: Option<&'a str>,
    /// The node's latest status, read only by the commands that show it: a
    /// status holds maps, and copying it for every command cost a share of a
    /// loaded leader's CPU.
    pub status: &'a (dyn Fn() -> NodeStatus + Sync),
}

fn error(message: &str) -> Action {
    let mut out = Vec::new();
    reply::error(&mut out, message);
    Action::Reply(out)
}

fn ok() -> Action {
    Action::Reply(b"+OK\r\n".to_vec())
}

fn bulk(value: &[u8]) -> Action {
    let mut out = Vec::new();
    reply::bulk(&mut out, value);
    Action::Reply(out)
}

fn wrong_arity(name: &str) -> Action {
    error(&format!("ERR wrong number of arguments for '{name}' command"))
}

fn integer_argument(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Interprets one command (`arguments` is never empty).
pub fn interpret(arguments: &[Vec<u8>], session: &mut Session, context: &Context<'_>) -> Action {
    let name = String::from_utf8_lossy(&arguments[0]).to_ascii_lowercase();
    let rest = &arguments[1..];
    if !session.authenticated && !matches!(name.as_str(), "auth" | "quit") {
        return error("NOAUTH Authentication required.");
    }
    if session.transaction.is_some() {
        return in_transaction(&name, rest, session);
    }
    match name.as_str() {
        "multi" => {
            session.transaction = Some(Transaction::default());
            ok()
        }
        "exec" => error("ERR EXEC without MULTI"),
        "discard" => error("ERR DISCARD without MULTI"),
        "watch" => error(WATCH_UNSUPPORTED),
        "unwatch" => ok(), // Nothing is ever watched.
        "ping" => match rest {
            [] => Action::Reply(b"+PONG\r\n".to_vec()),
            [message] => bulk(message),
            _ => wrong_arity(&name),
        },
        "echo" => match rest {
            [message] => bulk(message),
            _ => wrong_arity(&name),
        },
        "quit" => Action::Close(b"+OK\r\n".to_vec()),
        "auth" => auth(rest, session, context),
        "select" => match rest {
            [index] if integer_argument(index) == Some(0) => ok(),
            [_] => error("ERR DB index is out of range (conclave has only database 0)"),
            _ => wrong_arity(&name),
        },
        "readonly" => {
            session.stale_reads = true;
            ok()
        }
        "readwrite" => {
            session.stale_reads = false;
            ok()
        }
        "info" => bulk(info(&(context.status)()).as_bytes()),
        "command" => command(rest),
        "config" => config(rest),
        "client" => client(rest, session),
        "admin" => admin(rest),
        _ => kv(&name, rest).unwrap_or_else(|| unknown(&name, rest)),
    }
}

const WATCH_UNSUPPORTED: &str =
    "ERR WATCH is not supported by conclave: make the update conditional with CAS, or queue it in MULTI/EXEC";

/// A command between `MULTI` and `EXEC`: KV commands are queued (`+QUEUED`) and
/// run together as one log entry at `EXEC`; a command refused here (wrong
/// arity, unknown, not a KV command) makes `EXEC` discard the block, as in Redis.
fn in_transaction(name: &str, rest: &[Vec<u8>], session: &mut Session) -> Action {
    let transaction = session.transaction.as_mut().expect("called inside MULTI");
    match name {
        "exec" => {
            let transaction = session.transaction.take().expect("inside MULTI");
            if transaction.aborted {
                return error("EXECABORT Transaction discarded because of previous errors.");
            }
            if transaction.commands.is_empty() {
                return Action::Reply(b"*0\r\n".to_vec());
            }
            Action::Kv(KvCommand::Transaction(transaction.commands))
        }
        "discard" => {
            session.transaction = None;
            ok()
        }
        "multi" => error("ERR MULTI calls can not be nested"),
        "watch" => error("ERR WATCH inside MULTI is not allowed"),
        "quit" => Action::Close(b"+OK\r\n".to_vec()),
        _ => {
            let refused = |transaction: &mut Transaction, action: Action| {
                transaction.aborted = true;
                action
            };
            match kv(name, rest) {
                Some(Action::Kv(_)) if transaction.commands.len() >= MAX_TRANSACTION_COMMANDS => refused(
                    transaction,
                    error(&format!("ERR a transaction holds at most {MAX_TRANSACTION_COMMANDS} commands")),
                ),
                Some(Action::Kv(command)) => {
                    transaction.commands.push(command);
                    Action::Reply(b"+QUEUED\r\n".to_vec())
                }
                Some(refusal) => refused(transaction, refusal),
                None if is_direct(name) => refused(
                    transaction,
                    error(&format!("ERR '{name}' cannot be queued in a transaction: only data commands can")),
                ),
                None => refused(transaction, unknown(name, rest)),
            }
        }
    }
}

/// Commands answered by the node itself, never queued in a transaction.
fn is_direct(name: &str) -> bool {
    matches!(
        name,
        "ping"
            | "echo"
            | "auth"
            | "select"
            | "readonly"
            | "readwrite"
            | "info"
            | "command"
            | "config"
            | "client"
            | "unwatch"
            | "admin"
    )
}

/// `ADMIN …` (docs/operations.md, "Leader transfer" and "Membership changes"):
/// `MEMBERS`; `TRANSFER [ID]`; `ADD-LEARNER ID PEER CLIENT [HTTP]`;
/// `PROMOTE ID`; `REMOVE ID`; `SET-PRIORITY ID P`.
fn admin(rest: &[Vec<u8>]) -> Action {
    let Some(subcommand) = rest.first().map(|word| String::from_utf8_lossy(word).to_ascii_lowercase()) else {
        return wrong_arity("admin");
    };
    let arguments = &rest[1..];
    let parsed = match (subcommand.as_str(), arguments) {
        ("members", []) => Ok(AdminCommand::Members),
        ("transfer", []) => Ok(AdminCommand::Transfer { target: None }),
        ("transfer", [id]) => member_id("TRANSFER", id).map(|id| AdminCommand::Transfer { target: Some(id) }),
        ("add-learner", [id, peer, client, http @ ..]) if http.len() <= 1 => (|| {
            let id = member_id("ADD-LEARNER", id)?;
            let peer = address("ADD-LEARNER", peer)?;
            let client = address("ADD-LEARNER", client)?;
            let http = http.first().map(|http| address("ADD-LEARNER", http)).transpose()?.unwrap_or_default();
            let addresses = MemberAddresses { peer, client, http };
            Ok(AdminCommand::Change(MembershipChange::AddLearner { id, addresses }))
        })(),
        ("promote", [id]) => member_id("PROMOTE", id).map(|id| AdminCommand::Change(MembershipChange::Promote { id })),
        ("remove", [id]) => member_id("REMOVE", id).map(|id| AdminCommand::Change(MembershipChange::Remove { id })),
        ("set-priority", [id, priority]) => (|| {
            let id = member_id("SET-PRIORITY", id)?;
            let priority = std::str::from_utf8(priority).ok().and_then(|text| text.parse::<u32>().ok()).ok_or_else(
                || {
                    format!(
                        "ERR ADMIN SET-PRIORITY: '{}' is not a priority (an integer from 0 to 4294967295)",
                        String::from_utf8_lossy(priority)
                    )
                },
            )?;
            Ok(AdminCommand::Change(MembershipChange::SetPriority { id, priority }))
        })(),
        (known, _) if ADMIN_USAGE.iter().any(|(name, _)| *name == known) => {
            let usage = ADMIN_USAGE.iter().find(|(name, _)| *name == known).map_or("", |(_, usage)| usage);
            Err(format!("ERR wrong number of arguments for 'admin {known}': {usage}"))
        }
        (other, _) => Err(format!(
            "ERR unknown ADMIN subcommand '{other}' (known: MEMBERS, TRANSFER, ADD-LEARNER, PROMOTE, REMOVE, SET-PRIORITY)"
        )),
    };
    match parsed {
        Ok(command) => Action::Admin(command),
        Err(message) => error(&message),
    }
}

/// Each `ADMIN` subcommand and its arguments, for arity errors.
const ADMIN_USAGE: [(&str, &str); 6] = [
    ("members", "ADMIN MEMBERS"),
    ("transfer", "ADMIN TRANSFER [ID]"),
    ("add-learner", "ADMIN ADD-LEARNER ID PEER_ADDRESS CLIENT_ADDRESS [HTTP_ADDRESS]"),
    ("promote", "ADMIN PROMOTE ID"),
    ("remove", "ADMIN REMOVE ID"),
    ("set-priority", "ADMIN SET-PRIORITY ID PRIORITY"),
];

fn member_id(subcommand: &str, word: &[u8]) -> Result<u64, String> {
    match std::str::from_utf8(word).ok().and_then(|id| id.parse::<u64>().ok()) {
        Some(id) if id > 0 => Ok(id),
        _ => Err(format!(
            "ERR ADMIN {subcommand}: '{}' is not a member id (a positive integer)",
            String::from_utf8_lossy(word)
        )),
    }
}

fn address(subcommand: &str, word: &[u8]) -> Result<String, String> {
    match std::str::from_utf8(word).ok().and_then(|text| text.parse::<std::net::SocketAddr>().ok()) {
        Some(address) => Ok(address.to_string()),
        None => Err(format!("ERR ADMIN {subcommand}: '{}' is not an IP:PORT address", String::from_utf8_lossy(word))),
    }
}

fn unknown(name: &str, rest: &[Vec<u8>]) -> Action {
    let arguments: Vec<String> =
        rest.iter().take(3).map(|argument| format!("'{}'", String::from_utf8_lossy(argument))).collect();
    error(&format!("ERR unknown command '{name}', with args beginning with: {}", arguments.join(" ")))
}

fn auth(rest: &[Vec<u8>], session: &mut Session, context: &Context<'_>) -> Action {
    let Some(password) = context.password else {
        return error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        );
    };
    let given = match rest {
        [given] => given,
        [user, given] if user == b"default" => given,
        [_, _] => return error("WRONGPASS invalid username-password pair or user is disabled."),
        _ => return wrong_arity("auth"),
    };
    if given == password.as_bytes() {
        session.authenticated = true;
        ok()
    } else {
        error("WRONGPASS invalid username-password pair or user is disabled.")
    }
}

/// The KV commands; `None` if `name` is not one.
fn kv(name: &str, rest: &[Vec<u8>]) -> Option<Action> {
    let keys = || rest.to_vec();
    let command = match (name, rest) {
        ("get", [key]) => KvCommand::Get(key.clone()),
        ("mget", [_, ..]) => KvCommand::MGet(keys()),
        ("exists", [_, ..]) => KvCommand::Exists(keys()),
        ("del", [_, ..]) => KvCommand::Del(keys()),
        ("dbsize", []) => KvCommand::DbSize,
        ("set", [key, value, options @ ..]) => match set_condition(options) {
            Ok(condition) => KvCommand::Set { key: key.clone(), value: value.clone(), condition },
            Err(action) => return Some(action),
        },
        ("mset", pairs) if !pairs.is_empty() && pairs.len() % 2 == 0 => {
            KvCommand::MSet(pairs.chunks(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect())
        }
        ("incr", [key]) => KvCommand::IncrBy { key: key.clone(), delta: 1 },
        ("decr", [key]) => KvCommand::IncrBy { key: key.clone(), delta: -1 },
        ("incrby" | "decrby", [key, amount]) => {
            let Some(amount) = integer_argument(amount) else {
                return Some(error("ERR value is not an integer or out of range"));
            };
            let delta = if name == "incrby" { Some(amount) } else { amount.checked_neg() };
            let Some(delta) = delta else { return Some(error("ERR decrement would overflow")) };
            KvCommand::IncrBy { key: key.clone(), delta }
        }
        ("cas", [key, expected, new]) => {
            KvCommand::Cas { key: key.clone(), expected: expected.clone(), new: new.clone() }
        }
        (
            "get" | "mget" | "exists" | "del" | "dbsize" | "set" | "mset" | "incr" | "decr" | "incrby" | "decrby"
            | "cas",
            _,
        ) => return Some(wrong_arity(name)),
        _ => return None,
    };
    Some(Action::Kv(command))
}

fn set_condition(options: &[Vec<u8>]) -> Result<SetCondition, Action> {
    let mut condition = SetCondition::Always;
    for option in options {
        let option = String::from_utf8_lossy(option).to_ascii_lowercase();
        condition = match (option.as_str(), condition) {
            ("nx", SetCondition::Always) => SetCondition::IfAbsent,
            ("xx", SetCondition::Always) => SetCondition::IfPresent,
            ("ex" | "px" | "exat" | "pxat" | "keepttl", _) => {
                return Err(error("ERR SET expiry options are not supported: conclave keys do not expire"))
            }
            _ => return Err(error("ERR syntax error")),
        };
    }
    Ok(condition)
}

fn command(rest: &[Vec<u8>]) -> Action {
    let subcommand = rest.first().map(|word| String::from_utf8_lossy(word).to_ascii_lowercase());
    match subcommand.as_deref() {
        // No command table: clients (redis-cli hints) treat an empty one as "no docs".
        None | Some("docs") | Some("info") | Some("list") => Action::Reply(b"*0\r\n".to_vec()),
        Some("count") => Action::Reply(b":0\r\n".to_vec()),
        Some(other) => error(&format!("ERR unknown subcommand '{other}'. Try COMMAND HELP.")),
    }
}

fn config(rest: &[Vec<u8>]) -> Action {
    let subcommand = rest.first().map(|word| String::from_utf8_lossy(word).to_ascii_lowercase());
    match subcommand.as_deref() {
        Some("get") if rest.len() >= 2 => {
            // redis-benchmark asks for these two; the answers describe conclave truthfully:
            // no RDB snapshots, and durability through the WAL rather than an AOF.
            let known: [(&[u8], &[u8]); 2] = [(b"save", b""), (b"appendonly", b"no")];
            let mut out = Vec::new();
            let matches: Vec<_> =
                known.iter().filter(|(name, _)| rest[1..].iter().any(|asked| asked == name)).collect();
            reply::array_header(&mut out, matches.len() * 2);
            for (name, value) in matches {
                reply::bulk(&mut out, name);
                reply::bulk(&mut out, value);
            }
            Action::Reply(out)
        }
        Some("resetstat") => ok(),
        Some("get") => wrong_arity("config|get"),
        Some(other) => error(&format!("ERR CONFIG {} is not supported", other.to_ascii_uppercase())),
        None => wrong_arity("config"),
    }
}

fn client(rest: &[Vec<u8>], session: &mut Session) -> Action {
    let subcommand = rest.first().map(|word| String::from_utf8_lossy(word).to_ascii_lowercase());
    match (subcommand.as_deref(), &rest[rest.len().min(1)..]) {
        (Some("setname"), [name]) => {
            session.name = Some(name.clone());
            ok()
        }
        (Some("getname"), []) => match &session.name {
            Some(name) => bulk(name),
            None => Action::Reply(b"$-1\r\n".to_vec()),
        },
        (Some("id"), []) => Action::Reply(format!(":{}\r\n", session.id).into_bytes()),
        (Some("setinfo"), [_, _]) => ok(),
        (Some("info"), []) => {
            let name = session.name.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            bulk(format!("id={} name={name} db=0\n", session.id).as_bytes())
        }
        (Some(other), _) => error(&format!("ERR unknown subcommand or wrong number of arguments for 'client|{other}'")),
        (None, _) => wrong_arity("client"),
    }
}

/// The `INFO` text.
pub fn info(status: &NodeStatus) -> String {
    let leader = status.leader.map_or_else(|| "none".to_string(), |leader| leader.to_string());
    let mut text = String::new();
    text.push_str("# Server\r\nredis_version:7.0.0\r\nconclave_version:");
    text.push_str(env!("CARGO_PKG_VERSION"));
    text.push_str("\r\nredis_mode:standalone\r\n\r\n# Conclave\r\n");
    text.push_str(&format!(
        "node_id:{}\r\ncluster_id:{}\r\nrole:{}\r\nterm:{}\r\nleader_id:{leader}\r\ncommit_index:{}\r\n\
         applied_index:{}\r\nlast_index:{}\r\nelection_mode:{}\r\npending_requests:{}\r\ndropped_peer_frames:{}\r\nwal_syncs:{}\r\n\
         snapshot_index:{}\r\nsnapshots_taken:{}\r\nsnapshots_installed:{}\r\nsnapshots_rejected:{}\r\n\r\n",
        status.node_id,
        status.cluster_id,
        status.role_name(),
        status.term,
        status.commit_index,
        status.applied_index,
        status.last_index,
        status.election_mode,
        status.pending_requests,
        status.dropped_peer_frames,
        status.wal_syncs,
        status.snapshot_index,
        status.snapshots_taken,
        status.snapshots_installed,
        status.snapshots_rejected,
    ));
    let resident = crate::observe::metrics::resident_bytes().unwrap_or(0);
    text.push_str(&format!(
        "# Memory\r\nused_memory_rss:{resident}\r\nmaxmemory:{}\r\nstate_machine_engine:{}\r\n\
         state_machine_cache_bytes:{}\r\ndurable_applied_index:{}\r\ndriver_lateness_ms_max:{}\r\n\r\n",
        status.state_machine_cache_bytes,
        status.state_machine_engine,
        status.state_machine_cache_bytes,
        status.durable_applied_index,
        status.driver_lateness_ms_max,
    ));
    text.push_str(&format!("# Keyspace\r\ndb0:keys={},expires=0,avg_ttl=0\r\n", status.keys));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<Vec<u8>> {
        text.split(' ').map(|word| word.as_bytes().to_vec()).collect()
    }

    fn run(text: &str, password: Option<&str>, session: &mut Session) -> Action {
        let status = NodeStatus::example();
        interpret(&words(text), session, &Context { password, status: &|| status.clone() })
    }

    fn reply_text(action: Action) -> String {
        match action {
            Action::Reply(bytes) | Action::Close(bytes) => String::from_utf8(bytes).unwrap(),
            Action::Kv(command) => format!("{command:?}"),
            Action::Admin(command) => format!("{command:?}"),
        }
    }

    #[test]
    fn admin_commands_parse_or_are_refused_with_the_reason() {
        let mut session = Session { authenticated: true, ..Session::default() };
        assert_eq!(run("ADMIN transfer", None, &mut session), Action::Admin(AdminCommand::Transfer { target: None }));
        assert_eq!(
            run("admin TRANSFER 3", None, &mut session),
            Action::Admin(AdminCommand::Transfer { target: Some(3) })
        );
        assert!(reply_text(run("ADMIN", None, &mut session)).contains("wrong number of arguments"));
        assert!(reply_text(run("ADMIN transfer x", None, &mut session)).contains("'x' is not a member id"));
        assert!(reply_text(run("ADMIN transfer -1", None, &mut session)).contains("'-1' is not a member id"));
        assert_eq!(run("admin Members", None, &mut session), Action::Admin(AdminCommand::Members));
        assert!(reply_text(run("ADMIN members now", None, &mut session)).contains("ADMIN MEMBERS"));
        assert!(reply_text(run("ADMIN evict 2", None, &mut session)).contains("unknown ADMIN subcommand 'evict'"));
        // Membership changes.
        let add = run("ADMIN add-learner 4 127.0.0.1:7103 127.0.0.1:7003", None, &mut session);
        let addresses =
            MemberAddresses { peer: "127.0.0.1:7103".into(), client: "127.0.0.1:7003".into(), http: String::new() };
        assert_eq!(add, Action::Admin(AdminCommand::Change(MembershipChange::AddLearner { id: 4, addresses })));
        let with_http = run("ADMIN ADD-LEARNER 4 127.0.0.1:7103 127.0.0.1:7003 127.0.0.1:7203", None, &mut session);
        assert!(matches!(with_http, Action::Admin(AdminCommand::Change(MembershipChange::AddLearner { .. }))));
        assert_eq!(
            run("ADMIN promote 4", None, &mut session),
            Action::Admin(AdminCommand::Change(MembershipChange::Promote { id: 4 }))
        );
        assert_eq!(
            run("ADMIN remove 2", None, &mut session),
            Action::Admin(AdminCommand::Change(MembershipChange::Remove { id: 2 }))
        );
        assert_eq!(
            run("ADMIN set-priority 3 0", None, &mut session),
            Action::Admin(AdminCommand::Change(MembershipChange::SetPriority { id: 3, priority: 0 }))
        );
        let refused = |line: &str, words: &str, session: &mut Session| {
            let text = reply_text(run(line, None, session));
            assert!(text.contains(words), "{line}: {text}");
        };
        refused("ADMIN add-learner 4 nowhere 127.0.0.1:7003", "'nowhere' is not an IP:PORT address", &mut session);
        refused("ADMIN add-learner 0 127.0.0.1:1 127.0.0.1:2", "'0' is not a member id", &mut session);
        refused("ADMIN add-learner 4 127.0.0.1:1", "ADMIN ADD-LEARNER ID PEER_ADDRESS", &mut session);
        refused("ADMIN promote", "ADMIN PROMOTE ID", &mut session);
        refused("ADMIN promote four", "'four' is not a member id", &mut session);
        refused("ADMIN remove 1 2", "ADMIN REMOVE ID", &mut session);
        refused("ADMIN set-priority 3 high", "'high' is not a priority", &mut session);
        refused("ADMIN set-priority 3 -1", "'-1' is not a priority", &mut session);
        // Not queued in a transaction, and not before AUTH.
        assert_eq!(reply_text(run("MULTI", None, &mut session)), "+OK\r\n");
        assert!(reply_text(run("ADMIN transfer", None, &mut session)).contains("cannot be queued"));
        let mut stranger = Session::default();
        assert!(reply_text(run("ADMIN transfer", Some("secret"), &mut stranger)).contains("NOAUTH"));
    }

    #[test]
    fn commands_map_to_kv_commands_or_direct_replies() {
        let mut session = Session { authenticated: true, ..Session::default() };
        assert_eq!(reply_text(run("PING", None, &mut session)), "+PONG\r\n");
        assert_eq!(
            run("set k v NX", None, &mut session),
            Action::Kv(KvCommand::Set { key: b"k".to_vec(), value: b"v".to_vec(), condition: SetCondition::IfAbsent })
        );
        assert_eq!(
            run("decrby k 5", None, &mut session),
            Action::Kv(KvCommand::IncrBy { key: b"k".to_vec(), delta: -5 })
        );
        assert!(reply_text(run("get", None, &mut session)).starts_with("-ERR wrong number of arguments for 'get'"));
        assert!(reply_text(run("mset a", None, &mut session)).starts_with("-ERR wrong number"));
        assert!(reply_text(run("set k v EX 10", None, &mut session)).starts_with("-ERR SET expiry"));
        assert!(reply_text(run("flushall x", None, &mut session)).starts_with("-ERR unknown command 'flushall'"));
        assert!(reply_text(run("select 1", None, &mut session)).starts_with("-ERR DB index"));
        assert_eq!(reply_text(run("config get save", None, &mut session)), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
        assert_eq!(reply_text(run("QUIT", None, &mut session)), "+OK\r\n");
        assert!(reply_text(run("info", None, &mut session)).contains("role:follower"));
        let info = reply_text(run("info", None, &mut session));
        assert!(info.contains("# Memory\r\nused_memory_rss:"), "{info}");
        assert!(info.contains("state_machine_cache_bytes:268435456\r\n"), "{info}");
    }

    #[test]
    fn a_password_gates_every_command_until_auth() {
        let mut session = Session::default();
        assert!(reply_text(run("GET k", Some("s3cret"), &mut session)).starts_with("-NOAUTH"));
        assert!(reply_text(run("AUTH wrong", Some("s3cret"), &mut session)).starts_with("-WRONGPASS"));
        assert_eq!(reply_text(run("AUTH s3cret", Some("s3cret"), &mut session)), "+OK\r\n");
        assert!(matches!(run("GET k", Some("s3cret"), &mut session), Action::Kv(_)));
    }

    #[test]
    fn multi_queues_data_commands_and_exec_runs_them_as_one() {
        let mut session = Session { authenticated: true, ..Session::default() };
        assert_eq!(reply_text(run("EXEC", None, &mut session)), "-ERR EXEC without MULTI\r\n");
        assert_eq!(reply_text(run("MULTI", None, &mut session)), "+OK\r\n");
        assert_eq!(reply_text(run("SET k v", None, &mut session)), "+QUEUED\r\n");
        assert_eq!(reply_text(run("INCR n", None, &mut session)), "+QUEUED\r\n");
        assert!(reply_text(run("MULTI", None, &mut session)).starts_with("-ERR MULTI calls can not be nested"));
        assert_eq!(
            run("EXEC", None, &mut session),
            Action::Kv(KvCommand::Transaction(vec![
                KvCommand::Set { key: b"k".to_vec(), value: b"v".to_vec(), condition: SetCondition::Always },
                KvCommand::IncrBy { key: b"n".to_vec(), delta: 1 },
            ]))
        );
        assert!(session.transaction.is_none());
        // An empty block answers an empty array without touching the log.
        run("MULTI", None, &mut session);
        assert_eq!(reply_text(run("EXEC", None, &mut session)), "*0\r\n");
        // A refused command dooms the block.
        run("MULTI", None, &mut session);
        assert!(reply_text(run("PING", None, &mut session)).starts_with("-ERR 'ping' cannot be queued"));
        assert!(reply_text(run("NOSUCH x", None, &mut session)).starts_with("-ERR unknown command"));
        assert!(reply_text(run("EXEC", None, &mut session)).starts_with("-EXECABORT"));
        assert!(reply_text(run("WATCH k", None, &mut session)).contains("WATCH is not supported"));
        run("MULTI", None, &mut session);
        assert_eq!(reply_text(run("DISCARD", None, &mut session)), "+OK\r\n");
        assert_eq!(reply_text(run("DISCARD", None, &mut session)), "-ERR DISCARD without MULTI\r\n");
    }

    #[test]
    fn readonly_switches_the_connection_to_stale_reads() {
        let mut session = Session { authenticated: true, ..Session::default() };
        run("READONLY", None, &mut session);
        assert!(session.stale_reads);
        run("READWRITE", None, &mut session);
        assert!(!session.stale_reads);
    }
}
