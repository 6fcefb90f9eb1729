//! The verdict: the check of the history, the operation counts, the faults,
//! the failover times and the longest gap, printed; and the exit code.

use std::process::ExitCode;
use std::time::Instant;

use conclave_lincheck::history::{operations, Event, EventType, Process};
use conclave_lincheck::{check, KeyVerdict, Limits, OpKind, Operation, Verdict};
use serde_json::Value as Json;

use super::Recorded;

fn seconds(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

fn describe(kind: &OpKind) -> String {
    let value = |value: &Option<u64>| value.map_or("nil".to_string(), |value| value.to_string());
    match kind {
        OpKind::Read(seen) => format!("read -> {}", value(seen)),
        OpKind::Write(None) => "delete".into(),
        OpKind::Write(written) => format!("write {}", value(written)),
        OpKind::Cas { expected, new } => format!("cas {expected} -> {new}"),
    }
}

fn print_operation(operation: &Operation) {
    let end = operation.ret.map_or("?        ".to_string(), seconds);
    let outcome = if operation.is_indeterminate() { "unknown outcome" } else { "ok" };
    println!(
        "    process {:<4} {:<24} invoked {}  completed {end}  {outcome}",
        operation.process,
        describe(&operation.kind),
        seconds(operation.call)
    );
}

/// Of a witness, the operations a reader needs first: the blocked one, those
/// overlapping it, those that wrote the value it read or compared with, and
/// the last three writes that completed before it was invoked.
fn highlights<'a>(witness: &'a [Operation], blocked: &Operation) -> Vec<&'a Operation> {
    let looked_for = match blocked.kind {
        OpKind::Read(seen) => seen,
        OpKind::Cas { expected, .. } => Some(expected),
        OpKind::Write(_) => None,
    };
    let writes = |operation: &Operation| match operation.kind {
        OpKind::Write(value) => value,
        OpKind::Cas { new, .. } => Some(new),
        OpKind::Read(_) => None,
    };
    let overlaps = |operation: &Operation| {
        operation.call <= blocked.ret_or_infinity() && operation.ret_or_infinity() >= blocked.call
    };
    let mut before: Vec<&Operation> = witness
        .iter()
        .filter(|operation| !operation.kind.is_read() && operation.ret.is_some_and(|ret| ret < blocked.call))
        .collect();
    before.sort_by_key(|operation| operation.ret);
    let recent = &before[before.len().saturating_sub(3)..];
    let mut shown: Vec<&Operation> = witness
        .iter()
        .filter(|operation| {
            *operation == blocked
                || overlaps(operation)
                || (looked_for.is_some() && writes(operation) == looked_for)
                || recent.contains(operation)
        })
        .take(16)
        .collect();
    shown.sort_by_key(|operation| operation.call);
    shown
}

fn is_client(event: &Event) -> bool {
    matches!(event.process, Process::Client(_))
}

fn nemesis_events(events: &[Event]) -> impl Iterator<Item = &Event> {
    events.iter().filter(|event| !is_client(event))
}

fn what(event: &Event) -> String {
    match &event.value {
        Json::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Checks `events`, prints the verdict and the figures, and returns the exit
/// code: 0 linearizable, 1 not, 2 unknown or unreadable.
pub fn check_and_print(events: &[Event], recorded: Option<&Recorded>, limits: &Limits) -> ExitCode {
    let history = match operations(events) {
        Ok(history) => history,
        Err(error) => {
            eprintln!("conclave nemesis: the history is inconsistent: {error}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let report = check(&history, limits);
    let check_seconds = started.elapsed().as_secs_f64();
    let keys = report.keys.len();
    let verdict = report.verdict();
    match verdict {
        Verdict::Linearizable => println!(
            "verdict: linearizable ({} operations on {keys} keys checked in {check_seconds:.2} s)",
            history.len()
        ),
        Verdict::NotLinearizable => println!(
            "verdict: NOT linearizable (keys {}; checked in {check_seconds:.2} s)",
            report.witnesses.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        Verdict::Unknown => println!("verdict: unknown (checked for {check_seconds:.2} s)"),
    }
    for (key, verdict) in &report.keys {
        match verdict {
            KeyVerdict::Unknown { reason, operations, .. } => {
                println!("  key {key}: unknown, {reason} ({operations} operations)")
            }
            KeyVerdict::NotLinearizable { blocked, longest_prefix, .. } => {
                println!(
                    "  key {key}: after {longest_prefix} operations in order, no order places this one before it completed:"
                );
                print_operation(blocked);
                let witness = &report.witnesses[key];
                let shown = highlights(witness, blocked);
                println!(
                    "  witness: {} operations that cannot be ordered; the ones that matter most ({} omitted):",
                    witness.len(),
                    witness.len() - shown.len()
                );
                for operation in &shown {
                    print_operation(operation);
                }
                let from =
                    shown.iter().map(|operation| operation.call).min().unwrap_or(0).saturating_sub(2_000_000_000);
                let to = shown
                    .iter()
                    .map(|operation| operation.ret_or_infinity())
                    .filter(|&ret| ret != u64::MAX)
                    .max()
                    .unwrap_or(0);
                let around: Vec<&Event> =
                    nemesis_events(events).filter(|event| event.time >= from && event.time <= to).collect();
                println!("  faults around it:{}", if around.is_empty() { " none" } else { "" });
                for event in around {
                    println!("    {}  {} {}", seconds(event.time), event.f, what(event));
                }
            }
            KeyVerdict::Linearizable { .. } => {}
        }
    }
    print_figures(events, recorded);
    match verdict {
        Verdict::Linearizable => ExitCode::SUCCESS,
        Verdict::NotLinearizable => ExitCode::FAILURE,
        Verdict::Unknown => ExitCode::from(2),
    }
}

fn print_figures(events: &[Event], recorded: Option<&Recorded>) {
    let count = |kind: EventType| events.iter().filter(|event| is_client(event) && event.kind == kind).count();
    let ok = count(EventType::Ok);
    let rate = recorded.map_or(String::new(), |recorded| {
        format!(" ({:.0} ok/s over {:.0} s)", ok as f64 / recorded.load_seconds.max(1e-9), recorded.load_seconds)
    });
    println!("operations: {ok} ok, {} fail, {} info{rate}", count(EventType::Fail), count(EventType::Info));

    let injected: Vec<&Event> = nemesis_events(events).filter(|event| event.f != "heal").collect();
    let healed = nemesis_events(events).filter(|event| event.f == "heal").count();
    let mut kinds: Vec<&str> = injected.iter().map(|event| event.f.as_str()).collect();
    kinds.sort_unstable();
    let mut by_kind: Vec<String> = Vec::new();
    for kind in kinds.iter().copied() {
        if !by_kind.iter().any(|seen| seen.starts_with(&format!("{kind} "))) {
            by_kind.push(format!("{kind} {}", kinds.iter().filter(|other| **other == kind).count()));
        }
    }
    println!(
        "faults: {} injected, {healed} healed{}",
        injected.len(),
        if by_kind.is_empty() { String::new() } else { format!(" ({})", by_kind.join(", ")) }
    );

    // The first acknowledged write after each fault that hit the leader.
    let acknowledged_writes: Vec<u64> = events
        .iter()
        .filter(|event| is_client(event) && event.kind == EventType::Ok && event.f != "read")
        .map(|event| event.time)
        .collect();
    let mut failovers = Vec::new();
    for event in injected.iter().filter(|event| what(event).contains("leader")) {
        let first = acknowledged_writes.iter().find(|&&time| time > event.time);
        let after = first.map_or("none acknowledged after it".to_string(), |time| {
            failovers.push(time - event.time);
            format!("first acknowledged write {:.3} s later", (time - event.time) as f64 / 1e9)
        });
        println!("  {} {} {}: {after}", seconds(event.time), event.f, what(event));
    }
    if !failovers.is_empty() {
        failovers.sort_unstable();
        let median = failovers[failovers.len() / 2];
        let worst = failovers[failovers.len() - 1];
        println!(
            "failover (fault on the leader to the first acknowledged write): {} of them, median {:.3} s, max {:.3} s",
            failovers.len(),
            median as f64 / 1e9,
            worst as f64 / 1e9
        );
    }

    let mut acknowledged: Vec<u64> =
        events.iter().filter(|event| is_client(event) && event.kind == EventType::Ok).map(|event| event.time).collect();
    acknowledged.sort_unstable();
    let gap = acknowledged.windows(2).map(|pair| (pair[1] - pair[0], pair[0])).max();
    if let Some((gap, from)) = gap {
        println!("longest gap without an acknowledged operation: {:.3} s (from {})", gap as f64 / 1e9, seconds(from));
    }
}
