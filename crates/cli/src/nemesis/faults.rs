//! The faults the nemesis injects, and how each is healed.

use std::fmt;
use std::str::FromStr;

use rand::seq::SliceRandom;
use rand::Rng;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGKILL a node; start it again when healed.
    Kill,
    /// Stop a node gracefully (stdin closed); start it again when healed.
    Restart,
    /// SIGSTOP a node; SIGCONT when healed.
    Pause,
    /// Cut the cluster into groups; reconnect when healed.
    Partition,
    /// SIGKILL a node and empty its data dir; start it again when healed.
    Wipe,
    /// Fail a node's WAL write or fsync, or its state machine's commit or
    /// flush, with EIO or ENOSPC (test builds only: feature `disk-faults`):
    /// the node stops itself; it is started again, the fault disarmed, when
    /// healed.
    Disk,
}

impl FaultKind {
    /// Every kind, in the order `all` lists them (`disk` only in a build that
    /// can inject it).
    pub const ALL: [FaultKind; 6] =
        [FaultKind::Kill, FaultKind::Restart, FaultKind::Pause, FaultKind::Partition, FaultKind::Wipe, FaultKind::Disk];

    /// Its name on the command line and in the history.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Restart => "restart",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Wipe => "wipe",
            FaultKind::Disk => "disk",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// The `--faults` list: names separated by commas, `all`, or `none`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultList(pub Vec<FaultKind>);

impl FromStr for FaultList {
    type Err = String;

    fn from_str(text: &str) -> Result<FaultList, String> {
        FaultList::parse(text, conclave_server::disk_fault::ENABLED)
    }
}

impl FaultList {
    /// Parses a `--faults` list; `disk_faults`: whether this build can inject
    /// disk faults. Without it `disk` is refused, and `all` leaves it out.
    pub fn parse(text: &str, disk_faults: bool) -> Result<FaultList, String> {
        let mut kinds = Vec::new();
        for name in text.split(',').map(str::trim).filter(|name| !name.is_empty()) {
            match name {
                "all" => {
                    kinds.extend(FaultKind::ALL.into_iter().filter(|kind| disk_faults || *kind != FaultKind::Disk))
                }
                "none" => {}
                "disk" if !disk_faults => return Err(DISK_NOT_BUILT.into()),
                _ => match FaultKind::ALL.iter().find(|kind| kind.name() == name) {
                    Some(kind) => kinds.push(*kind),
                    None => {
                        return Err(format!(
                            "unknown fault {name:?}: choose from kill, restart, pause, partition, wipe, disk, all, none"
                        ))
                    }
                },
            }
        }
        kinds.sort_unstable();
        kinds.dedup();
        Ok(FaultList(kinds))
    }
}

/// Why `disk` is refused by a build without the hook.
pub const DISK_NOT_BUILT: &str = "the disk fault needs a conclave built with the test-only feature disk-faults \
     (cargo build --release -p conclave --features disk-faults); this build cannot inject it";

/// The disk faults the nemesis arms (an arming file's text, see
/// `conclave_storage::fault`): each point with the error it most likely meets.
pub const DISK_FAULTS: [&str; 4] = ["wal-fsync:eio", "wal-write:enospc", "state-apply:enospc", "state-flush:eio"];

/// How nodes are grouped: two nodes are connected when some group holds both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// The groups (a bridge node is in two).
    pub groups: Vec<Vec<u64>>,
    /// What it is, for people.
    pub shape: &'static str,
}

impl Partition {
    /// True if `a` and `b` can talk.
    pub fn connected(&self, a: u64, b: u64) -> bool {
        self.groups.iter().any(|group| group.contains(&a) && group.contains(&b))
    }

    /// A random partition of `ids`: the leader alone in a minority (if known),
    /// a random majority and minority, or a bridge (one node in both halves).
    pub fn random(ids: &[u64], leader: Option<u64>, rng: &mut impl Rng) -> Partition {
        let mut shuffled = ids.to_vec();
        shuffled.shuffle(rng);
        let minority = (ids.len() - 1) / 2;
        match (rng.gen_range(0..3), leader) {
            (0, Some(leader)) => {
                // The leader and up to minority-1 others on the small side.
                shuffled.retain(|&id| id != leader);
                let mut small = vec![leader];
                small.extend(shuffled.drain(..minority.saturating_sub(1)));
                Partition { groups: sorted(vec![small, shuffled]), shape: "minority leader" }
            }
            (1, _) if ids.len() >= 3 => {
                let bridge = shuffled[0];
                let rest = &shuffled[1..];
                let half = rest.len() / 2;
                let mut left = rest[..half].to_vec();
                let mut right = rest[half..].to_vec();
                left.push(bridge);
                right.push(bridge);
                Partition { groups: sorted(vec![left, right]), shape: "bridge" }
            }
            _ => {
                let small = shuffled.drain(..minority.max(1)).collect();
                Partition { groups: sorted(vec![small, shuffled]), shape: "majority and minority" }
            }
        }
    }
}

fn sorted(mut groups: Vec<Vec<u64>>) -> Vec<Vec<u64>> {
    for group in &mut groups {
        group.sort_unstable();
    }
    groups
}

impl fmt::Display for Partition {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups: Vec<String> = self
            .groups
            .iter()
            .map(|group| format!("{{{}}}", group.iter().map(u64::to_string).collect::<Vec<_>>().join(",")))
            .collect();
        write!(formatter, "{} ({})", groups.join(" | "), self.shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn fault_lists_parse_and_bad_names_are_refused() {
        assert_eq!("kill,pause".parse(), Ok(FaultList(vec![FaultKind::Kill, FaultKind::Pause])));
        assert_eq!("none".parse(), Ok(FaultList(vec![])));
        assert!("kill,fire".parse::<FaultList>().unwrap_err().contains("unknown fault \"fire\""));
        // A build with the hook injects disk faults, also under `all`; one
        // without refuses `disk` by name and leaves it out of `all`.
        assert_eq!(FaultList::parse("all", true).unwrap().0.len(), 6);
        assert_eq!(FaultList::parse("disk", true), Ok(FaultList(vec![FaultKind::Disk])));
        assert_eq!(FaultList::parse("all", false).unwrap().0.len(), 5);
        assert!(!FaultList::parse("all", false).unwrap().0.contains(&FaultKind::Disk));
        assert_eq!(FaultList::parse("kill,disk", false), Err(DISK_NOT_BUILT.to_string()));
        assert_eq!("disk".parse::<FaultList>().is_ok(), conclave_server::disk_fault::ENABLED);
    }

    #[test]
    fn partitions_cut_the_cluster_and_a_bridge_sees_both_sides() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let ids = [1, 2, 3, 4, 5];
        for _ in 0..200 {
            let partition = Partition::random(&ids, Some(3), &mut rng);
            let everyone: Vec<u64> = ids.to_vec();
            // Someone is cut off from someone.
            assert!(everyone.iter().any(|&a| everyone.iter().any(|&b| !partition.connected(a, b))), "{partition}");
            // Every node is in some group.
            assert!(ids.iter().all(|id| partition.groups.iter().any(|group| group.contains(id))));
            if partition.shape == "bridge" {
                let bridge = partition.groups[0].iter().find(|id| partition.groups[1].contains(id)).unwrap();
                assert!(ids.iter().all(|&other| partition.connected(*bridge, other)));
            }
            if partition.shape == "minority leader" {
                let side = partition.groups.iter().find(|group| group.contains(&3)).unwrap();
                assert!(side.len() <= 2, "{partition}");
            }
        }
    }
}
