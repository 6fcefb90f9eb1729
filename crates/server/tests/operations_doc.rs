//! `docs/operations.md` keeps up with the code: its error table lists every
//! error string a client can get from the server, and its configuration tables
//! list every config key.
//!
//! The error strings are collected from the source, not from a hand-kept list:
//! every `#[error("…")]` of `RequestError` (the answers of the driver) and of the
//! RESP parser, every RESP error literal of the client layer (`ERR …`,
//! `NOAUTH …`, `WRONGPASS …`, `TRYAGAIN …`), every error of the KV store, every
//! reason a forwarded request is refused, and the core's `ProposeError`s, which
//! reach a client as `ERR …`. Format arguments (`{…}`) are shown as `…` in the
//! table. A new error in any of those places fails this test until the table
//! has it; a row whose error the code no longer produces fails it too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// The source of `path` without its unit tests (everything from `#[cfg(test)]` on).
fn source_without_tests(relative: &str) -> String {
    let text = read(&crate_dir().join(relative));
    match text.find("#[cfg(test)]") {
        Some(tests) => text[..tests].to_string(),
        None => text,
    }
}

/// Reads the Rust string literal whose opening quote is at `start`; returns its
/// value (escapes resolved, line continuations joined) and the index after it.
fn string_literal(text: &str, start: usize) -> (String, usize) {
    let bytes = text.as_bytes();
    assert_eq!(bytes[start], b'"');
    let mut value = String::new();
    let index = start + 1;
    let mut chars = text[index..].char_indices().peekable();
    while let Some((offset, c)) = chars.next() {
        match c {
            '"' => return (value, index + offset + 1),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, 'r')) => value.push('\r'),
                Some((_, 't')) => value.push('\t'),
                Some((_, '\n')) => {
                    // A line continuation: the newline and the next line's indent go.
                    while chars.peek().is_some_and(|(_, next)| next.is_whitespace()) {
                        chars.next();
                    }
                }
                Some((_, other)) => value.push(other),
                None => break,
            },
            other => value.push(other),
        }
    }
    panic!("unterminated string literal from byte {start}");
}

/// Every string literal (byte strings included) in Rust source, skipping
/// comments and character literals.
fn string_literals(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut literals = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'/' if bytes.get(index + 1) == Some(&b'/') => {
                index = text[index..].find('\n').map_or(bytes.len(), |end| index + end);
            }
            b'"' => {
                let (value, end) = string_literal(text, index);
                literals.push(value);
                index = end;
            }
            // A character literal such as '"' or '\'' (a lifetime has no closing quote).
            b'\'' if bytes.get(index + 2) == Some(&b'\'') => index += 3,
            b'\'' if bytes.get(index + 1) == Some(&b'\\') && bytes.get(index + 3) == Some(&b'\'') => index += 4,
            _ => index += 1,
        }
    }
    literals
}

/// The messages of every `#[error("…")]` in `text`.
fn error_attributes(text: &str) -> Vec<String> {
    let mut messages = Vec::new();
    let mut search = 0;
    while let Some(found) = text[search..].find("#[error(\"") {
        let quote = search + found + "#[error(".len();
        let (message, end) = string_literal(text, quote);
        messages.push(message);
        search = end;
    }
    messages
}

/// The first string literal of every call of an error helper (`error(`) in
/// `text`, when only `&`, `mut out,`, `format!(` and spaces come before it.
fn error_call_literals(text: &str) -> Vec<String> {
    let mut literals = Vec::new();
    for (start, _) in text.match_indices("error(") {
        let after = start + "error(".len();
        let Some(quote) = text[after..].find('"').map(|offset| after + offset) else { continue };
        let between = text[after..quote].replace("&mut out,", "").replace("format!(", "").replace('&', "");
        if between.trim().is_empty() {
            literals.push(string_literal(text, quote).0);
        }
    }
    literals
}

/// The text of `pub enum NAME { … }` in `text`.
fn enum_body<'a>(text: &'a str, name: &str) -> &'a str {
    let start = text.find(&format!("pub enum {name} ")).unwrap_or_else(|| panic!("enum {name} not found"));
    let open = start + text[start..].find('{').expect("an enum has a body");
    let mut depth = 0;
    for (offset, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[open..open + offset + 1];
                }
            }
            _ => {}
        }
    }
    panic!("enum {name} is not closed");
}

/// Replaces every format argument (`{}`, `{name}`, `{:#04x}`, …) with `…`.
fn shown(message: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in message.chars() {
        match (c, inside) {
            ('{', false) => {
                inside = true;
                out.push('…');
            }
            ('}', true) => inside = false,
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out.trim_start_matches('-').trim_end_matches("\r\n").to_string()
}

/// Every error string a client can receive, as the table shows it.
fn client_errors() -> BTreeSet<String> {
    let mut errors = BTreeSet::new();
    // The driver's answers carry their own RESP prefix (`TRYAGAIN`, `ERR`).
    for message in error_attributes(&source_without_tests("src/driver/requests.rs")) {
        errors.insert(shown(&message));
    }
    // The parser's errors go out as `ERR {error}` (`client/mod.rs`).
    for message in error_attributes(&source_without_tests("src/resp/parser.rs")) {
        errors.insert(shown(&format!("ERR {message}")));
    }
    // The client layer's literal replies: every literal passed to an error
    // helper (`error("…")`, `reply::error(&mut out, "…")`, with or without
    // `format!`), and every literal that starts like a RESP error.
    let prefixes = ["ERR ", "-ERR ", "-", "NOAUTH ", "WRONGPASS ", "TRYAGAIN ", "EXECABORT "];
    for file in ["src/client/commands.rs", "src/client/mod.rs"] {
        let text = source_without_tests(file);
        let mut found: Vec<String> = error_call_literals(&text);
        found.extend(
            string_literals(&text)
                .into_iter()
                .filter(|literal| prefixes.iter().any(|prefix| literal.starts_with(prefix)) && literal.len() > 3),
        );
        // `ERR {error}` wraps the parser's errors, collected above.
        for literal in found.into_iter().filter(|literal| literal != "ERR {error}") {
            errors.insert(shown(&literal));
        }
    }
    // The KV store's errors go out as `ERR {message}` (`resp/reply.rs`): its
    // `KvReply::Error("…")` literals and the constants it uses for them.
    let store = ["src/kv/store.rs", "src/kv/machine.rs", "src/kv/dedup.rs"]
        .into_iter()
        .filter(|file| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file).exists())
        .map(source_without_tests)
        .collect::<Vec<_>>()
        .join("\n");
    for (marker, _) in store.match_indices("KvReply::Error(\"") {
        let (message, _) = string_literal(&store, marker + "KvReply::Error(".len());
        errors.insert(shown(&format!("ERR {message}")));
    }
    // String constants, `pub` or not, their literal on the same line or the next.
    for (marker, _) in store.match_indices(": &str =") {
        let line_start = store[..marker].rfind('\n').map_or(0, |at| at + 1);
        let head = store[line_start..marker].trim_start();
        if !(head.starts_with("const ") || head.starts_with("pub const ")) {
            continue;
        }
        let quote = marker + store[marker..].find('"').expect("a string constant");
        let (message, _) = string_literal(&store, quote);
        errors.insert(shown(&format!("ERR {message}")));
    }
    // Refusals of forwarded requests, relayed as `ERR {reason}` (`RequestError::Refused`).
    for file in ["src/driver/mod.rs", "src/driver/reads.rs"] {
        let text = source_without_tests(file);
        for (marker, _) in text.match_indices("ForwardOutcome::Refused(\"") {
            let (message, _) = string_literal(&text, marker + "ForwardOutcome::Refused(".len());
            errors.insert(shown(&format!("ERR {message}")));
        }
    }
    // Operator commands' errors (`ADMIN …`): `HandOverError`'s texts, and
    // every literal that starts like an error (`ChangeFailure`, redirects).
    let admin = source_without_tests("src/driver/admin.rs");
    for (marker, _) in admin.match_indices("write!(") {
        let quote = marker + admin[marker..].find('"').expect("a format string");
        let (message, _) = string_literal(&admin, quote);
        errors.insert(shown(&message));
    }
    for literal in string_literals(&admin) {
        if ["ERR ", "TRYAGAIN ", "NOTLEADER "].iter().any(|prefix| literal.starts_with(prefix)) {
            errors.insert(shown(&literal));
        }
    }
    // The core's proposal errors, relayed the same way.
    let core = read(&crate_dir().join("../core/src/node/mod.rs"));
    for message in error_attributes(enum_body(&core, "ProposeError")) {
        errors.insert(shown(&format!("ERR {message}")));
    }
    errors
}

fn operations_doc() -> String {
    read(&crate_dir().join("../../docs/operations.md"))
}

/// The error table: the rows of the table under "## Errors a client can get",
/// first column, between backticks (a `|` inside is written `\|` in markdown).
fn table_rows(doc: &str) -> Vec<String> {
    let section = doc.split("\n## Errors a client can get").nth(1).expect("operations.md has the error section");
    let section = section.split("\n## ").next().unwrap_or_default();
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .filter_map(|line| line.split('`').nth(1).map(|cell| cell.replace("\\|", "|")))
        .collect()
}

#[test]
fn the_error_table_lists_every_error_a_client_can_get() {
    let errors = client_errors();
    // The collection itself must keep working: this many are known today.
    assert!(errors.len() >= 30, "only {} error strings collected: {errors:#?}", errors.len());
    let rows: BTreeSet<String> = table_rows(&operations_doc()).into_iter().collect();
    let missing: Vec<&String> = errors.iter().filter(|error| !rows.contains(*error)).collect();
    let stale: Vec<&String> = rows.iter().filter(|row| !errors.contains(*row)).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/operations.md, \"Errors a client can get\", is out of date.\n\
         Missing rows (add `| `<text>` | may it have taken effect? | meaning |`):\n  {}\n\
         Rows the code no longer produces:\n  {}",
        missing.iter().map(|error| format!("`{error}`")).collect::<Vec<_>>().join("\n  "),
        if stale.is_empty() {
            "(none)".to_string()
        } else {
            stale.iter().map(|row| format!("`{row}`")).collect::<Vec<_>>().join("\n  ")
        }
    );
}

/// The public fields of `pub struct NAME` in `text`.
fn struct_fields(text: &str, name: &str) -> Vec<String> {
    let start = text.find(&format!("pub struct {name} ")).unwrap_or_else(|| panic!("struct {name} not found"));
    let body = &text[start..];
    let body = &body[..body.find("\n}").expect("a struct ends")];
    body.lines()
        .filter_map(|line| line.trim().strip_prefix("pub "))
        .filter_map(|rest| rest.split_once(':').map(|(field, _)| field.trim().to_string()))
        .collect()
}

#[test]
fn the_configuration_tables_list_every_key() {
    let config = source_without_tests("src/config.rs");
    let mut keys = Vec::new();
    for field in struct_fields(&config, "ServerConfig") {
        match field.as_str() {
            "timing" | "limits" | "snapshot" | "state_machine" | "members" => {}
            _ => keys.push(field),
        }
    }
    for (section, name) in [
        ("timing", "Timing"),
        ("limits", "Limits"),
        ("snapshot", "SnapshotSettings"),
        ("state_machine", "StateMachineSettings"),
    ] {
        keys.extend(struct_fields(&config, name).into_iter().map(|field| format!("{section}.{field}")));
    }
    keys.extend(struct_fields(&config, "Member").into_iter().map(|field| format!("members[].{field}")));
    assert!(keys.len() >= 30, "only {} keys collected: {keys:?}", keys.len());
    let doc = operations_doc();
    let missing: Vec<&String> = keys.iter().filter(|key| !doc.contains(&format!("| `{key}` |"))).collect();
    assert!(
        missing.is_empty(),
        "docs/operations.md, \"Configuration\", has no row `| `<key>` | default | why |` for: {missing:?}"
    );
}

#[test]
fn format_arguments_and_continuations_are_shown_as_the_table_shows_them() {
    assert_eq!(shown("TRYAGAIN request timed out after {waited_ms} ms"), "TRYAGAIN request timed out after … ms");
    assert_eq!(shown("-ERR max number of clients reached\r\n"), "ERR max number of clients reached");
    let source = "x(\"ERR a \\\n     b '{}'\", c); let q = '\"'; // \"ERR not this\"\n";
    assert_eq!(string_literals(source), vec!["ERR a b '{}'".to_string()]);
}
