//! Injected disk faults, for tests only (docs/decisions/0069-disk-faults-stop-the-node.md).
//!
//! Every durable write of a node passes a named [`Point`] first:
//! [`check`] returns `Ok(())` there, always, unless the crate is built with
//! the feature `disk-faults` (never in a shipped binary: only the workspace's
//! tests turn it on). In such a build, the environment variable
//! `CONCLAVE_DISK_FAULTS` names an *arming file*; while that file exists and
//! lists a point, every pass of that point fails with the listed error, as
//! the operating system would have failed the real call. The file is read
//! again at each pass, so a test arms a running node by writing it and
//! disarms it by deleting it.
//!
//! The arming file holds `point:error` items separated by commas, spaces or
//! new lines, for example `wal-fsync:eio`: points are named by
//! [`Point::name`], errors are `eio` (an I/O error, as a failed `fsync`
//! reports) and `enospc` (no space left on the device).

use std::io;

/// A place where a node makes something durable, and an injected fault can hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// The `write` of a WAL group commit's bytes to its segment.
    WalWrite,
    /// The `fdatasync` of a WAL segment after that write.
    WalFsync,
    /// Applied entries written into the state machine file's open write
    /// transaction, and its commits without an fsync.
    StateApply,
    /// The durable (synced) commit of the state machine file.
    StateFlush,
}

impl Point {
    /// Every point, in the order of a write's life.
    pub const ALL: [Point; 4] = [Point::WalWrite, Point::WalFsync, Point::StateApply, Point::StateFlush];

    /// Its name in the arming file.
    pub fn name(self) -> &'static str {
        match self {
            Point::WalWrite => "wal-write",
            Point::WalFsync => "wal-fsync",
            Point::StateApply => "state-apply",
            Point::StateFlush => "state-flush",
        }
    }
}

/// The environment variable naming the arming file.
pub const ENV: &str = "CONCLAVE_DISK_FAULTS";

/// Whether this build can inject faults (the feature `disk-faults`).
pub const ENABLED: bool = cfg!(feature = "disk-faults");

/// The error an armed `point` fails with, if any; `Ok(())` otherwise (and
/// always in a build without the feature `disk-faults`).
#[inline]
pub fn check(point: Point) -> io::Result<()> {
    #[cfg(feature = "disk-faults")]
    {
        armed::check(point)
    }
    #[cfg(not(feature = "disk-faults"))]
    {
        let _ = point;
        Ok(())
    }
}

/// Parses an arming file's text: the error `point` fails with, if listed.
/// A malformed item is an error of its own (so a typo in a test fails loudly,
/// rather than injecting nothing).
pub fn parse(text: &str, point: Point) -> Result<Option<io::Error>, String> {
    let mut found = None;
    for item in text.split([',', ' ', '\n', '\t', '\r']).filter(|item| !item.is_empty()) {
        let (name, error) = item.split_once(':').ok_or_else(|| format!("{item:?} is not point:error"))?;
        let listed = Point::ALL
            .into_iter()
            .find(|point| point.name() == name)
            .ok_or_else(|| format!("unknown point {name:?} in {item:?}"))?;
        let code = match error {
            "eio" => 5,
            "enospc" => 28,
            other => return Err(format!("unknown error {other:?} in {item:?}: eio or enospc")),
        };
        if listed == point && found.is_none() {
            found = Some(io::Error::from_raw_os_error(code));
        }
    }
    Ok(found)
}

#[cfg(feature = "disk-faults")]
mod armed {
    use std::io;
    use std::path::PathBuf;
    use std::sync::OnceLock;

    use super::{parse, Point, ENV};

    fn arming_file() -> Option<&'static PathBuf> {
        static FILE: OnceLock<Option<PathBuf>> = OnceLock::new();
        FILE.get_or_init(|| std::env::var_os(ENV).filter(|value| !value.is_empty()).map(PathBuf::from)).as_ref()
    }

    pub(super) fn check(point: Point) -> io::Result<()> {
        let Some(file) = arming_file() else { return Ok(()) };
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(io::Error::other(format!("cannot read {ENV} file {}: {error}", file.display()))),
        };
        match parse(&text, point) {
            Ok(Some(error)) => {
                tracing::warn!(point = point.name(), %error, "injected disk fault ({ENV})");
                Err(error)
            }
            Ok(None) => Ok(()),
            Err(reason) => Err(io::Error::other(format!("bad {ENV} file {}: {reason}", file.display()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arming_file_names_points_and_errors() {
        let text = "wal-fsync:eio, state-flush:enospc\n";
        assert_eq!(parse(text, Point::WalFsync).unwrap().unwrap().raw_os_error(), Some(5));
        assert_eq!(parse(text, Point::StateFlush).unwrap().unwrap().raw_os_error(), Some(28));
        assert!(parse(text, Point::WalWrite).unwrap().is_none());
        assert!(parse("", Point::WalWrite).unwrap().is_none());
        assert!(parse("wal-sync:eio", Point::WalFsync).unwrap_err().contains("unknown point"));
        assert!(parse("wal-fsync:efault", Point::WalFsync).unwrap_err().contains("unknown error"));
        assert!(parse("wal-fsync", Point::WalFsync).unwrap_err().contains("not point:error"));
    }

    #[test]
    fn without_the_feature_nothing_is_ever_injected() {
        if !ENABLED {
            for point in Point::ALL {
                assert!(check(point).is_ok());
            }
        }
    }
}
