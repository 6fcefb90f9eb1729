//! The example configs in the repository parse and validate.

use std::path::PathBuf;

use conclave_server::ServerConfig;

#[test]
fn every_example_config_is_valid() {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for cluster in ["cluster3", "cluster5"] {
        let size: u64 = cluster.trim_start_matches("cluster").parse().unwrap();
        for node in 1..=size {
            let path = examples.join(cluster).join(format!("node{node}.toml"));
            let config = ServerConfig::load(&path).unwrap_or_else(|error| panic!("{error}"));
            config.validate().unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            assert_eq!((config.node_id, config.members.len() as u64), (node, size));
            checked += 1;
        }
    }
    assert_eq!(checked, 8);
}
