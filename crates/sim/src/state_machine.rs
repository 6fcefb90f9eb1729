//! The simulated state machine: the sequence of entries a node applied, kept as
//! the applied index, a chained fingerprint of every applied entry, and the ids
//! of the applied commands. Its snapshot is exactly that, serialized, so a node
//! that installs or restores a snapshot resumes with a state the checkers can
//! compare against the one applied sequence (invariant 5 in docs/design/invariants.md).

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
    /// Ids of the applied commands, in order.
    pub commands: Vec<u64>,
}

/// The chained fingerprint after applying an entry with `fingerprint`.
pub fn chain_step(previous: u64, fingerprint: u64) -> u64 {
    let mut hash = Fnv64::new();
    hash.write_u64(previous);
    hash.write_u64(fingerprint);
    hash.finish()
}

impl SimStateMachine {
    /// Applies `entries`, which must follow the applied index.
    pub fn apply(&mut self, entries: &[Entry]) {
        for entry in entries {
            assert_eq!(entry.index, self.index + 1, "entries are applied in order");
            self.index = entry.index;
            self.chain = chain_step(self.chain, entry_fingerprint(entry));
            if let Payload::Command(bytes) = &entry.payload {
                self.commands.push(command_id(bytes));
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
        Ok(SimStateMachine { index: words[0], chain: words[1], commands: words[3..].to_vec() })
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
            Entry { term: 1, index: 2, payload: Payload::Command(7u64.to_le_bytes().to_vec()) },
        ]);
        assert_eq!(machine.commands, vec![7]);
        assert_eq!(SimStateMachine::decode(&machine.encode()), Ok(machine.clone()));
        assert!(SimStateMachine::decode(&machine.encode()[..20]).is_err());
    }
}
