//! Which engine a node's state machine runs on. An explicit
//! `state_machine.engine` is obeyed; unset, the node runs the engine its data
//! dir already holds, and [`EngineKind::FOR_NEW_DATA_DIR`] in a new one. A
//! data dir is never opened with an engine other than the one that holds its
//! state: that would start the node empty, or refuse it later with a less
//! clear reason (docs/decisions/0094).

use std::path::{Path, PathBuf};

use crate::config::EngineKind;

use super::engine::{ENGINE_FILE, INSTALLING_FILE};
use super::lsm::LSM_DIR;

/// How the engine was chosen, for the start-up log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    /// `state_machine.engine` named it.
    Configured,
    /// The data dir holds its files.
    FoundInDataDir,
    /// Unset, and the data dir holds no engine: the default for a new one.
    NewDataDir,
}

impl EngineChoice {
    /// For the log.
    pub fn describe(self) -> &'static str {
        match self {
            EngineChoice::Configured => "set in the config",
            EngineChoice::FoundInDataDir => "found in the data dir",
            EngineChoice::NewDataDir => "the default for a new data dir",
        }
    }
}

/// The on-disk engine whose files `data_dir` holds, with the file that shows
/// it; `None` when it holds neither. Both at once is an error: no node writes
/// both, so the directory was assembled by hand.
pub fn engine_in_data_dir(data_dir: &Path) -> Result<Option<(EngineKind, PathBuf)>, String> {
    let present = |name: &str| {
        let path = data_dir.join(name);
        match path.try_exists() {
            Ok(exists) => Ok(exists.then_some(path)),
            Err(error) => Err(format!("cannot look for {}: {error}", path.display())),
        }
    };
    let redb = match present(ENGINE_FILE)? {
        Some(path) => Some(path),
        None => present(INSTALLING_FILE)?,
    };
    let fjall = present(LSM_DIR)?;
    match (redb, fjall) {
        (Some(redb), Some(fjall)) => Err(format!(
            "the data dir {} holds two state machines, {} (redb) and {} (fjall); a node writes only one: remove \
             the one that is not this node's",
            data_dir.display(),
            redb.display(),
            fjall.display()
        )),
        (Some(redb), None) => Ok(Some((EngineKind::Redb, redb))),
        (None, Some(fjall)) => Ok(Some((EngineKind::Fjall, fjall))),
        (None, None) => Ok(None),
    }
}

/// The engine to run on `data_dir`, given `configured`
/// (`state_machine.engine`, if set) and the base of the log the WAL restored
/// (its index, and whether the snapshot there is empty).
///
/// A log compacted with no snapshot data behind it was compacted behind an
/// engine's durable index (docs/decisions/0086): if no engine's files are
/// there, they were lost, and the entries they held are gone. That is
/// refused before any engine is created, so a new empty one is never
/// mistaken for the lost one.
pub fn resolve_engine(
    data_dir: &Path,
    configured: Option<EngineKind>,
    log_base: Option<(u64, bool)>,
) -> Result<(EngineKind, EngineChoice), String> {
    let found = engine_in_data_dir(data_dir)?;
    if let (None, Some((index, true))) = (&found, log_base) {
        if index > 0 && configured.is_none_or(EngineKind::is_on_disk) {
            return Err(format!(
                "the data dir {} holds a log that begins after index {index}, compacted behind a state machine \
                 engine, but neither {ENGINE_FILE} nor {LSM_DIR} is there: the entries up to {index} are gone \
                 (restore the engine's files, or wipe the data dir to rejoin as a new node)",
                data_dir.display()
            ));
        }
    }
    match (configured, found) {
        (Some(configured), Some((found, path))) if configured != found => Err(format!(
            "state_machine.engine = \"{}\", but the data dir holds a {} state machine ({}); a node's engine cannot \
             be changed in place: remove the setting to run the engine the data dir holds, or wipe the data dir \
             and let the node catch up from the leader",
            configured.name(),
            found.name(),
            path.display()
        )),
        (Some(configured), _) => Ok((configured, EngineChoice::Configured)),
        (None, Some((found, _))) => Ok((found, EngineChoice::FoundInDataDir)),
        (None, None) => Ok((EngineKind::FOR_NEW_DATA_DIR, EngineChoice::NewDataDir)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unset_engine_is_what_the_data_dir_holds_and_fjall_in_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resolve_engine(dir.path(), None, None).unwrap(), (EngineKind::Fjall, EngineChoice::NewDataDir));
        std::fs::write(dir.path().join(ENGINE_FILE), b"").unwrap();
        assert_eq!(resolve_engine(dir.path(), None, None).unwrap(), (EngineKind::Redb, EngineChoice::FoundInDataDir));
        assert_eq!(
            resolve_engine(dir.path(), Some(EngineKind::Redb), None).unwrap(),
            (EngineKind::Redb, EngineChoice::Configured)
        );

        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(LSM_DIR)).unwrap();
        assert_eq!(resolve_engine(dir.path(), None, None).unwrap(), (EngineKind::Fjall, EngineChoice::FoundInDataDir));

        // A crash mid-install can leave only the file being built.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(INSTALLING_FILE), b"").unwrap();
        assert_eq!(resolve_engine(dir.path(), None, None).unwrap(), (EngineKind::Redb, EngineChoice::FoundInDataDir));
    }

    #[test]
    fn a_configured_engine_that_is_not_the_data_dirs_is_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ENGINE_FILE), b"").unwrap();
        for configured in [EngineKind::Fjall, EngineKind::Memory] {
            let error = resolve_engine(dir.path(), Some(configured), None).unwrap_err();
            assert!(error.contains(&format!("state_machine.engine = \"{}\"", configured.name())), "{error}");
            assert!(error.contains("holds a redb state machine"), "{error}");
            assert!(error.contains(ENGINE_FILE), "{error}");
        }
        std::fs::create_dir(dir.path().join(LSM_DIR)).unwrap();
        let error = resolve_engine(dir.path(), None, None).unwrap_err();
        assert!(error.contains("holds two state machines"), "{error}");
    }

    #[test]
    fn a_log_compacted_behind_an_engine_that_is_gone_is_refused_before_a_new_one_is_made() {
        let dir = tempfile::tempdir().unwrap();
        for configured in [None, Some(EngineKind::Fjall), Some(EngineKind::Redb)] {
            let error = resolve_engine(dir.path(), configured, Some((40, true))).unwrap_err();
            assert!(error.contains("begins after index 40") && error.contains("entries up to 40 are gone"), "{error}");
        }
        assert!(!dir.path().join(LSM_DIR).exists() && !dir.path().join(ENGINE_FILE).exists());
        // A snapshot with its data (the memory engine's) rebuilds any engine.
        assert_eq!(
            resolve_engine(dir.path(), None, Some((40, false))).unwrap(),
            (EngineKind::Fjall, EngineChoice::NewDataDir)
        );
        // The memory engine keeps its data in the snapshot: nothing to lose.
        assert_eq!(
            resolve_engine(dir.path(), Some(EngineKind::Memory), Some((40, true))).unwrap(),
            (EngineKind::Memory, EngineChoice::Configured)
        );
    }
}
