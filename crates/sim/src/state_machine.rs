//! The simulated state machine: the sequence of entries a node applied, kept as
//! the applied index, a chained fingerprint of every applied entry, and the ids
//! of the applied commands. A command's id is its request id, as the server's
//! envelope carries one: an entry whose id was applied before takes no effect
//! (exactly-once writes, docs/decisions/0060-exactly-once-writes.md), so the
//! client may propose an id again after losing its leader. Its snapshot is exactly that, serialized, so a node
//! that installs or restores a snapshot resumes with a state the checkers can
//! compare against the one applied sequence (invariant 5 in docs/design/invariants.md).

use std::collections::BTreeSet;

use conclave_core::{Entry, LogIndex, Payload};

use crate::invariants::entry_fingerprint;
use crate::trace::Fnv64;

/// One node's applied state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStateMachine {
    /// Last index applied.
    pub index: LogIndex,
    /// `chain_step` over the fingerprints of entries 1..=index.
    pub chain: u64,
    /// Ids of the commands that took effect, in order (each once).
    pub commands: Vec<u64>,
    /// The same ids, to find a duplicate (derived from `commands`).
    seen: BTreeSet<u64>,
    /// Bug injection for the `exactly_once` checker: apply a command whose id
    /// was applied before again (no deduplication).
    pub apply_duplicates: bool,
}

/// The chained fingerprint after applying an entry with `fingerprint`.
pub fn chain_step(previous: u64, fingerprint: u64) -> u64 {
    let mut hash = Fnv64::new();
    hash.write_u64(previous);
    hash.write_u64(fingerprint);
    hash.finish()
}

impl SimStateMachine {
    /// An empty state; `apply_duplicates` injects the bug the `exactly_once`
    /// checker must catch.
    pub fn new(apply_duplicates: bool) -> SimStateMachine {
        SimStateMachine { apply_duplicates, ..SimStateMachine::default() }
    }

    /// This state, applying duplicates from now on or not.
    pub fn with_apply_duplicates(mut self, apply_duplicates: bool) -> SimStateMachine {
        self.apply_duplicates = apply_duplicates;
        self
    }

    /// Applies `entries`, which must follow the applied index.
    pub fn apply(&mut self, entries: &[Entry]) {
        for entry in entries {
            assert_eq!(entry.index, self.index + 1, "entries are applied in order");
            self.index = entry.index;
            self.chain = chain_step(self.chain, entry_fingerprint(entry));
            if let Payload::Command(bytes) = &entry.payload {
                let id = command_id(bytes);
                if self.seen.insert(id) || self.apply_duplicates {
                    self.commands.push(id);
                }
            }
        }
    }

    /// The snapshot data: index, chain, command count, commands (little-endian u64s).
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(24 + 8 * self.commands.len());
        for field in [self.index, self.chain, self.commands.len() as u64] {
            bytes.extend_from_slice(&field.to_le_bytes());
        }
        for command in &self.commands {
            bytes.extend_from_slice(&command.to_le_bytes());
        }
        bytes
    }

    /// Reads snapshot data written by [`SimStateMachine::encode`].
    pub fn decode(bytes: &[u8]) -> Result<SimStateMachine, String> {
        let words: Vec<u64> = bytes
            .chunks(8)
            .map(|chunk| <[u8; 8]>::try_from(chunk).map(u64::from_le_bytes))
            .collect::<Result<_, _>>()
            .map_err(|_| format!("snapshot data of {} bytes is not a whole number of words", bytes.len()))?;
        if words.len() < 3 || words[2] as usize != words.len() - 3 {
            return Err(format!("snapshot data of {} words does not hold its command list", words.len()));
        }
        let commands = words[3..].to_vec();
        let seen = commands.iter().copied().collect();
        Ok(SimStateMachine { index: words[0], chain: words[1], commands, seen, apply_duplicates: false })
    }
}

/// The command id the simulator's client put in a command's bytes.
pub fn command_id(bytes: &[u8]) -> u64 {
    let mut id = [0u8; 8];
    let length = bytes.len().min(8);
    id[..length].copy_from_slice(&bytes[..length]);
    u64::from_le_bytes(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_round_trips_through_its_snapshot_data() {
        let mut machine = SimStateMachine::default();
        machine.apply(&[
            Entry { term: 1, index: 1, payload: Payload::Noop },
            Entry { term: 1, index: 2, payload: Payload::Command(7u64.to_le_bytes().to_vec().into()) },
        ]);
        assert_eq!(machine.commands, vec![7]);
        assert_eq!(SimStateMachine::decode(&machine.encode()), Ok(machine.clone()));
        assert!(SimStateMachine::decode(&machine.encode()[..20]).is_err());
    }

    #[test]
    fn a_command_id_applied_before_takes_no_effect_unless_the_bug_is_injected() {
        let command =
            |index, id: u64| Entry { term: 1, index, payload: Payload::Command(id.to_le_bytes().to_vec().into()) };
        let entries = [command(1, 7), command(2, 8), command(3, 7)];
        let mut machine = SimStateMachine::default();
        machine.apply(&entries);
        assert_eq!((machine.index, &machine.commands), (3, &vec![7, 8]));
        // Restored from its snapshot, it still knows id 7.
        let mut restored = SimStateMachine::decode(&machine.encode()).unwrap();
        restored.apply(&[command(4, 7)]);
        assert_eq!(restored.commands, vec![7, 8]);
        let mut broken = SimStateMachine::new(true);
        broken.apply(&entries);
        assert_eq!(broken.commands, vec![7, 8, 7]);
    }
}
