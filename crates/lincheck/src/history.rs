//! The history format: JSON lines, one event per line, as Jepsen records them.
//!
//! ```text
//! {"process": 3, "type": "invoke", "f": "write", "key": "k1", "value": 17, "time": 120400}
//! {"process": 3, "type": "ok", "f": "write", "key": "k1", "value": 17, "time": 131250}
//! {"process": 4, "type": "invoke", "f": "cas", "key": "k1", "value": [17, 18], "time": 131900}
//! {"process": 4, "type": "info", "f": "cas", "key": "k1", "value": [17, 18], "time": 1131900}
//! {"process": "nemesis", "type": "info", "f": "kill", "key": null, "value": "node 2", "time": 1200000}
//! ```
//!
//! * `process`: a client's number (one operation in flight at a time), or
//!   `"nemesis"` for a fault event;
//! * `type`: `invoke` when a client sends, then one of `ok` (done), `fail`
//!   (did not take effect; for a `cas`, also a comparison that failed) or
//!   `info` (unknown: may or may not have taken effect); a fault is `info`;
//! * `f`: `read`, `write` (a `null` value is a delete) or `cas` (`value` is
//!   `[expected, new]`); a fault's kind for the nemesis;
//! * `value`: for a read's `ok`, the value read (`null`: no such key); on an
//!   invoke, what is written; for the nemesis, what it did;
//! * `time`: nanoseconds since the start of the run.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use thiserror::Error;

use crate::model::{OpKind, Operation, Value};

/// Who recorded an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Process {
    /// A client.
    Client(u64),
    /// The fault injector (`"nemesis"`), or any other named process.
    Named(String),
}

/// An event's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The client sent the operation.
    Invoke,
    /// It took effect (for a read: it saw `value`).
    Ok,
    /// It did not take effect.
    Fail,
    /// Unknown whether it took effect; a fault event.
    Info,
}

/// One line of a history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Who.
    pub process: Process,
    /// What kind of event.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The operation (`read`, `write`, `cas`) or the fault.
    pub f: String,
    /// The key (`null` for the nemesis).
    pub key: Option<String>,
    /// See the module's doc.
    pub value: Json,
    /// Nanoseconds since the start of the run.
    pub time: u64,
}

impl Event {
    /// The event as one line of JSON (no newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("an event always serializes")
    }
}

/// Why a history cannot be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HistoryError {
    /// A line is not an event.
    #[error("line {line}: not a history event: {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Events that cannot follow each other.
    #[error("event {event}: {reason}")]
    Inconsistent {
        /// 1-based index of the event.
        event: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Reads JSON lines (blank lines are skipped).
pub fn parse_json_lines(text: &str) -> Result<Vec<Event>, HistoryError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line)
                .map_err(|error| HistoryError::Malformed { line: index + 1, reason: error.to_string() })
        })
        .collect()
}

fn value_of(json: &Json) -> Result<Option<Value>, String> {
    match json {
        Json::Null => Ok(None),
        other => other.as_u64().map(Some).ok_or_else(|| format!("{other} is not a non-negative integer or null")),
    }
}

fn kind_of(f: &str, value: &Json) -> Result<OpKind, String> {
    match f {
        "read" => Ok(OpKind::Read(None)),
        "write" => Ok(OpKind::Write(value_of(value)?)),
        "cas" => match value.as_array().map(Vec::as_slice) {
            Some([expected, new]) => match (value_of(expected)?, value_of(new)?) {
                (Some(expected), Some(new)) => Ok(OpKind::Cas { expected, new }),
                _ => Err("a cas compares and writes values, not null".into()),
            },
            _ => Err(format!("a cas value is [expected, new], not {value}")),
        },
        other => Err(format!("unknown operation {other:?}")),
    }
}

/// Pairs each client's invocations with their completions: `ok` gives an
/// operation, `info` (or no completion at all) an indeterminate one, `fail`
/// nothing. Events of named processes (the nemesis) are skipped.
pub fn operations(events: &[Event]) -> Result<Vec<Operation>, HistoryError> {
    let mut open: HashMap<u64, (usize, String, Operation)> = HashMap::new();
    let mut done: Vec<(usize, Operation)> = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let inconsistent = |reason: String| HistoryError::Inconsistent { event: index + 1, reason };
        let Process::Client(process) = event.process else { continue };
        let key = event.key.clone().ok_or_else(|| inconsistent("a client's event names no key".into()))?;
        match event.kind {
            EventType::Invoke => {
                let kind = kind_of(&event.f, &event.value).map_err(&inconsistent)?;
                if open.contains_key(&process) {
                    return Err(inconsistent(format!("process {process} invokes with an operation still open")));
                }
                open.insert(
                    process,
                    (index, event.f.clone(), Operation { process, key, kind, call: event.time, ret: None }),
                );
            }
            completion => {
                let Some((position, f, mut operation)) = open.remove(&process) else {
                    return Err(inconsistent(format!("process {process} completes an operation it never invoked")));
                };
                if operation.key != key || f != event.f {
                    return Err(inconsistent(format!("process {process} completes another operation than it invoked")));
                }
                if event.time < operation.call {
                    return Err(inconsistent("an operation completes before it is invoked".into()));
                }
                match completion {
                    EventType::Ok => {
                        if let OpKind::Read(_) = operation.kind {
                            operation.kind = OpKind::Read(value_of(&event.value).map_err(&inconsistent)?);
                        }
                        operation.ret = Some(event.time);
                        done.push((position, operation));
                    }
                    EventType::Info => done.push((position, operation)),
                    EventType::Fail | EventType::Invoke => {}
                }
            }
        }
    }
    done.extend(open.into_values().map(|(position, _, operation)| (position, operation)));
    done.sort_by_key(|(position, _)| *position);
    Ok(done.into_iter().map(|(_, operation)| operation).collect())
}
