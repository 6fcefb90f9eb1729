//! The whole-node invariant check, run after every input in debug builds and by
//! the simulator after every step in any build.

use super::Node;
use crate::status::Role;

impl Node {
    /// Checks every invariant of the node's state; the error says which broke.
    pub fn validate(&self) -> Result<(), String> {
        self.log.validate()?;
        self.validate_reads()?;
        if let Some(kept) = &self.snapshot {
            // The bytes kept to send: the log's base, or a snapshot offered
            // at an applied index above a base compacted without bytes.
            let index = kept.meta.last_included_index;
            let reaches_base = match self.log.snapshot() {
                Some(base) if base.last_included_index == index => *base == kept.meta,
                Some(base) => index > base.last_included_index,
                None => true,
            };
            if !reaches_base || index > self.log.committed() || kept.data.is_empty() {
                return Err(format!(
                    "the snapshot kept ({:?}, {} bytes) does not continue the log (base {:?}, commit {})",
                    kept.meta,
                    kept.data.len(),
                    self.log.snapshot(),
                    self.log.committed()
                ));
            }
        }
        if self.log.last_term() > self.term {
            return Err(format!("last log term {} beyond current term {}", self.log.last_term(), self.term));
        }
        if self.durable_index > self.log.last_index() {
            return Err(format!(
                "durable index {} beyond the last index {}",
                self.durable_index,
                self.log.last_index()
            ));
        }
        if self.persisted_hard_state.term > self.term {
            return Err("persisted term ahead of current term".into());
        }
        match self.role {
            Role::Leader => {
                if self.leader != Some(self.config.id) || self.voted_for != Some(self.config.id) {
                    return Err(format!("leader with leader {:?} and vote {:?}", self.leader, self.voted_for));
                }
                if !self.is_voter() || self.progress.len() != self.membership.members.len() - 1 {
                    return Err(format!("leader tracks {} followers", self.progress.len()));
                }
                if self.config.election_mode.has_leader_terms() {
                    // A leader-elect has a deadline; a serving leader's own
                    // `BecomeLeader` of this ballot is committed (docs/design/leader-terms.md).
                    let own = self.log.committed_leader_term_record();
                    let established = own.is_some_and(|r| r.leader == self.config.id && r.ballot == self.term);
                    if self.serving != established {
                        return Err(format!("leader serving={} but committed BecomeLeader is {own:?}", self.serving));
                    }
                    if !self.serving && self.terms.leader_elect_deadline_ms.is_none() {
                        return Err("leader-elect without a deadline".into());
                    }
                }
                let last_index = self.log.last_index();
                for (id, progress) in &self.progress {
                    if let crate::progress::ProgressState::Snapshot { last_included_index, offset, in_flight, .. } =
                        progress.state
                    {
                        if in_flight > crate::progress::MAX_INFLIGHT_CHUNKS {
                            return Err(format!("{in_flight} snapshot chunks in flight to {id}"));
                        }
                        let sending = self.outgoing_snapshots.get(id);
                        if sending.map(|snapshot| snapshot.meta.last_included_index) != Some(last_included_index)
                            || sending.is_some_and(|snapshot| offset > snapshot.data.len() as u64)
                        {
                            return Err(format!(
                                "snapshot transfer to {id} at {last_included_index} without its snapshot"
                            ));
                        }
                    }
                    if progress.match_index > last_index {
                        return Err(format!(
                            "match index {} of {id} beyond last index {last_index}",
                            progress.match_index
                        ));
                    }
                    if progress.next_index <= progress.match_index || progress.next_index > last_index + 1 {
                        return Err(format!(
                            "next index {} of {id} outside (match {}, last + 1 = {}]",
                            progress.next_index,
                            progress.match_index,
                            last_index + 1
                        ));
                    }
                }
            }
            _ if self.serving => return Err(format!("{:?} marked serving", self.role)),
            Role::Candidate => {
                if self.voted_for != Some(self.config.id) {
                    return Err(format!("candidate voted for {:?}", self.voted_for));
                }
                if !self.progress.is_empty() || self.leader.is_some() {
                    return Err("candidate with leader state".into());
                }
            }
            Role::Follower | Role::PreCandidate | Role::Looking => {
                if !self.progress.is_empty() {
                    return Err("non-leader with replication progress".into());
                }
                if self.leader == Some(self.config.id) {
                    return Err("non-leader believes it leads".into());
                }
            }
        }
        Ok(())
    }
}
