//! The server's config parser (TOML, then `--set` overrides, then
//! validation) on arbitrary text: an error naming the problem, never a panic.
#![no_main]

use conclave_server::ServerConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The last line doubles as an override, as `--set` would pass it.
    let sets: Vec<String> = text.lines().last().map(str::to_string).into_iter().collect();
    if let Ok(config) = ServerConfig::parse_with(text, &sets) {
        if config.validate().is_ok() {
            let _ = config.core_config();
            let _ = ServerConfig::parse(&config.to_toml()).expect("a valid config's TOML parses");
        }
    }
});
