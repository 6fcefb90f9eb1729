//! The repository's documentation stands on its own: no file refers to
//! anything outside the repository, every link and every file path the docs
//! name exists, and every decision record is in the index
//! (`docs/decisions/README.md`).
//!
//! Each test lists everything it found wrong at once, with the file and line.

use std::fs;
use std::path::{Component, Path, PathBuf};

/// The repository's root (this crate is `crates/cli`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository root exists")
}

/// Every text file of the repository, build output and git's data left out.
fn text_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    for _ in 0..100_000 {
        let Some(directory) = pending.pop() else { break };
        let mut entries: Vec<_> = fs::read_dir(&directory).expect("readable directory").flatten().collect();
        entries.sort_by_key(|entry| entry.path());
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let file_type = entry.file_type().expect("file type");
            if name == ".git" {
                continue; // git's data (a directory, or in a worktree a file naming it)
            }
            if file_type.is_dir() {
                if name != "target" {
                    pending.push(path);
                }
            } else if file_type.is_file() && fs::read_to_string(&path).is_ok() {
                files.push(path);
            }
        }
    }
    files
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

fn report(problems: &[String], what: &str) {
    assert!(problems.is_empty(), "{} {what}:\n  {}", problems.len(), problems.join("\n  "));
}

#[test]
fn no_file_refers_to_anything_outside_the_repository() {
    let root = root();
    // Built from pieces, so that this file does not match itself.
    let forbidden = [
        ["..", "/shared"].concat(),
        ["DESIGN", ".md"].concat(),
        ["STYLE", ".md"].concat(),
        ["seeds/", "000_"].concat(),
        ["seeds/", "003_"].concat(),
        ["/work", "/"].concat(),
    ];
    let mut problems = Vec::new();
    for file in text_files(&root) {
        let text = fs::read_to_string(&file).expect("text file");
        for (number, line) in text.lines().enumerate() {
            for pattern in &forbidden {
                if line.contains(pattern.as_str()) {
                    problems.push(format!(
                        "{}:{}: refers to `{pattern}`, which is not in this repository: {}",
                        relative(&root, &file),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    report(&problems, "references to files outside the repository (point them at docs/ instead)");
}

/// The targets of the markdown links `[text](target)` on one line.
fn link_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = line;
    for _ in 0..1_000 {
        let Some(start) = rest.find("](") else { break };
        let after = &rest[start + 2..];
        let Some(end) = after.find(')') else { break };
        targets.push(after[..end].trim().to_string());
        rest = &after[end..];
    }
    targets
}

/// Resolves `target` (a path relative to `from`'s directory) without touching
/// the file system, so that a link out of the repository is seen as such.
fn resolve(root: &Path, from: &Path, target: &str) -> Option<PathBuf> {
    let mut resolved = from.parent().expect("a file has a directory").to_path_buf();
    for component in Path::new(target).components() {
        match component {
            Component::ParentDir => {
                if !resolved.pop() {
                    return None;
                }
            }
            Component::Normal(part) => resolved.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    resolved.starts_with(root).then_some(resolved)
}

/// The anchors GitHub gives the headings of a markdown file: lower case,
/// punctuation dropped, spaces as hyphens, `-1`, `-2`, … for repeats.
fn heading_anchors(text: &str) -> Vec<String> {
    let mut anchors: Vec<String> = Vec::new();
    let mut slugs: Vec<String> = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        let Some(title) = line.strip_prefix('#').filter(|_| !in_code) else { continue };
        let title = title.trim_start_matches('#').trim();
        let slug: String = title
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                '-' | '_' => Some(c),
                c if c.is_alphanumeric() => Some(c.to_lowercase().next().unwrap_or(c)),
                _ => None,
            })
            .collect();
        let repeats = slugs.iter().filter(|known| **known == slug).count();
        anchors.push(if repeats == 0 { slug.clone() } else { format!("{slug}-{repeats}") });
        slugs.push(slug);
    }
    anchors
}

#[test]
fn markdown_links_point_at_files_in_the_repository() {
    let root = root();
    let mut problems = Vec::new();
    for file in text_files(&root).into_iter().filter(|file| file.extension().is_some_and(|ext| ext == "md")) {
        let text = fs::read_to_string(&file).expect("text file");
        let is_readme = file == root.join("README.md");
        for (number, line) in text.lines().enumerate() {
            for target in link_targets(line) {
                let place = format!("{}:{}", relative(&root, &file), number + 1);
                if target.starts_with("http://") || target.starts_with("https://") {
                    if is_readme {
                        problems.push(format!("{place}: the README links only to files in the repository: {target}"));
                    }
                    continue;
                }
                let (path, anchor) = target.split_once('#').unwrap_or((target.as_str(), ""));
                let resolved = if path.is_empty() { Some(file.clone()) } else { resolve(&root, &file, path) };
                match resolved {
                    None => problems.push(format!("{place}: link `{target}` leaves the repository")),
                    Some(resolved) if !resolved.exists() => {
                        problems.push(format!("{place}: link `{target}` names a file that does not exist"))
                    }
                    Some(resolved) if !anchor.is_empty() && resolved.extension().is_some_and(|ext| ext == "md") => {
                        let text = fs::read_to_string(&resolved).expect("a linked markdown file is text");
                        if !heading_anchors(&text).iter().any(|known| known == anchor) {
                            problems.push(format!("{place}: link `{target}` names no heading of that file"));
                        }
                    }
                    Some(_) => {}
                }
            }
        }
    }
    report(&problems, "broken links");
}

/// Paths such as `crates/core/src/node/inbound.rs` or `docs/design/reads.md`
/// mentioned in one line of text.
fn mentioned_paths(line: &str) -> Vec<String> {
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.');
    let mut paths = Vec::new();
    for prefix in ["crates/", "docs/", "examples/"] {
        let mut search = 0;
        for _ in 0..1_000 {
            let Some(found) = line[search..].find(prefix) else { break };
            let start = search + found;
            search = start + prefix.len();
            // A path starts at a word boundary (not inside `../docs/` or `my_docs/`).
            if line[..start].chars().next_back().is_some_and(is_path_char) {
                continue;
            }
            let candidate: String = line[start..].chars().take_while(|c| is_path_char(*c)).collect();
            let candidate = candidate.trim_end_matches('.').to_string();
            let named_file = [".rs", ".md", ".toml", ".svg"].iter().any(|ext| candidate.ends_with(ext));
            // `NNNN-slug.md` and the like are templates, not files.
            if named_file && !candidate.contains('*') && !candidate.contains("NNNN") {
                paths.push(candidate);
            }
        }
    }
    paths
}

#[test]
fn every_file_the_documentation_names_exists() {
    let root = root();
    let mut problems = Vec::new();
    for file in text_files(&root) {
        let is_doc = file.extension().is_some_and(|ext| ext == "md" || ext == "rs");
        if !is_doc {
            continue;
        }
        let text = fs::read_to_string(&file).expect("text file");
        for (number, line) in text.lines().enumerate() {
            for path in mentioned_paths(line) {
                if !root.join(&path).exists() {
                    problems.push(format!(
                        "{}:{}: names `{path}`, which does not exist",
                        relative(&root, &file),
                        number + 1
                    ));
                }
            }
        }
    }
    report(&problems, "mentions of files that do not exist (renamed or removed? update the docs)");
}

#[test]
fn every_decision_record_is_in_the_index() {
    let root = root();
    let directory = root.join("docs/decisions");
    let index = fs::read_to_string(directory.join("README.md")).expect("docs/decisions/README.md exists");
    let mut problems = Vec::new();
    let mut names: Vec<String> = fs::read_dir(&directory)
        .expect("docs/decisions exists")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "README.md")
        .collect();
    names.sort();
    let mut numbers = std::collections::BTreeMap::new();
    for name in &names {
        let Some(number) = name.get(..4).filter(|number| number.chars().all(|c| c.is_ascii_digit())) else {
            problems.push(format!("docs/decisions/{name}: a record's name is `NNNN-slug.md`"));
            continue;
        };
        if !name.ends_with(".md") || name.as_bytes().get(4) != Some(&b'-') {
            problems.push(format!("docs/decisions/{name}: a record's name is `NNNN-slug.md`"));
            continue;
        }
        if let Some(other) = numbers.insert(number.to_string(), name.clone()) {
            problems.push(format!("docs/decisions/{name}: number {number} is taken by {other} as well"));
        }
        let text = fs::read_to_string(directory.join(name)).expect("readable record");
        let first = text.lines().next().unwrap_or_default();
        let Some(heading) = first.strip_prefix("# ") else {
            problems
                .push(format!("docs/decisions/{name}: the first line must be `# {number}. Title`, found `{first}`"));
            continue;
        };
        // `# 0040. Title` is the form; `# 0040: Title` and `# Title` are read too.
        let title = heading.strip_prefix(number).unwrap_or(heading).trim_start_matches(['.', ':', ' ', '—', '-']);
        for section in ["## context", "## decision", "## consequences", "## proof"] {
            if !text.lines().any(|line| line.trim().to_lowercase().starts_with(section)) {
                problems.push(format!("docs/decisions/{name}: has no `{section}` section (heading level 2)"));
            }
        }
        if !index.contains(&format!("]({name})")) {
            problems.push(format!(
                "docs/decisions/{name} is not in docs/decisions/README.md; add the row: | {number} | [{title}]({name}) |"
            ));
        }
    }
    for line in index.lines() {
        for target in link_targets(line) {
            if !target.contains('/') && target.ends_with(".md") && !names.contains(&target) {
                problems.push(format!("docs/decisions/README.md lists `{target}`, which is not a record here"));
            }
        }
    }
    report(&problems, "problems with the decision records");
}
