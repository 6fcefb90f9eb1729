//! Log output: human-readable by default, one JSON object per line on request.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;

/// Installs the global subscriber. `level` is `error`, `warn`, `info`, `debug` or
/// `trace`. Calling it twice is harmless (the second call does nothing).
pub fn init(json: bool, level: LevelFilter) {
    // Colours only on a terminal: `conclave local` writes logs to files.
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
