//! Durable commits (Raft §5.4, thesis §10.2.1): an entry a leader counts as
//! committed is on the *disks* of a majority, not only in their memory. A
//! leader that sends its appends before its own write is durable counts itself
//! only once that write is reported; counting it earlier lets one power loss
//! take a committed entry from the only majority that held it.

use conclave_core::{LogIndex, NodeId, Term};

use super::Broken;

/// Checks each commit of a leader against what the disks hold.
#[derive(Debug, Default)]
pub struct DurableCommits {
    checked: u64,
}

impl DurableCommits {
    /// The property checked.
    pub const PROPERTY: &'static str = "durable_commits";

    /// Leader `node` committed up to `index` (of `term`), which `holders` of
    /// the `members` hold durably.
    pub fn on_leader_commit(
        &mut self,
        node: NodeId,
        index: LogIndex,
        term: Term,
        holders: usize,
        members: usize,
    ) -> Result<(), Broken> {
        self.checked += 1;
        if holders > members / 2 {
            return Ok(());
        }
        Err(Broken {
            property: Self::PROPERTY,
            detail: format!(
                "leader n{node} committed index {index} (term {term}), durable on {holders} of {members} disks"
            ),
        })
    }

    /// Commits checked so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_when_a_minority_of_disks_holds_a_commit() {
        let mut checker = DurableCommits::default();
        checker.on_leader_commit(1, 5, 2, 2, 3).unwrap();
        checker.on_leader_commit(1, 6, 2, 3, 5).unwrap();
        let broken = checker.on_leader_commit(1, 7, 2, 1, 3).unwrap_err();
        assert_eq!(broken.detail, "leader n1 committed index 7 (term 2), durable on 1 of 3 disks");
        assert!(checker.on_leader_commit(1, 8, 2, 2, 5).is_err());
        assert_eq!(checker.checked(), 4);
    }
}
