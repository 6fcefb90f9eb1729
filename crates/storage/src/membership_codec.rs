//! The binary form of a membership, shared by the WAL (a `Membership` entry)
//! and the snapshot file. All integers little-endian:
//!
//! ```text
//! member_count u32, then per member (ids ascending):
//!   id u64, voter u8 (0 or 1), priority u32,
//!   peer, client, http: each len u32 + UTF-8 bytes
//! removed_count u32, removed ids u64 × removed_count (ascending)
//! ```
//! A decode must consume every byte and yield a membership that passes
//! `Membership::check`; anything else is corruption.

use conclave_core::{Member, MemberAddresses, Membership, NodeId};

/// Longest address accepted: a host name and a port, with room to spare.
const MAX_ADDRESS_BYTES: usize = 1024;

/// Appends `membership`'s binary form to `out`.
pub fn encode(membership: &Membership, out: &mut Vec<u8>) {
    out.extend_from_slice(&(membership.members.len() as u32).to_le_bytes());
    for (id, member) in &membership.members {
        out.extend_from_slice(&id.to_le_bytes());
        out.push(u8::from(member.voter));
        out.extend_from_slice(&member.priority.to_le_bytes());
        for address in [&member.addresses.peer, &member.addresses.client, &member.addresses.http] {
            out.extend_from_slice(&(address.len() as u32).to_le_bytes());
            out.extend_from_slice(address.as_bytes());
        }
    }
    out.extend_from_slice(&(membership.removed.len() as u32).to_le_bytes());
    for id in &membership.removed {
        out.extend_from_slice(&id.to_le_bytes());
    }
}

/// The encoded form as a new buffer.
pub fn to_bytes(membership: &Membership) -> Vec<u8> {
    let mut out = Vec::new();
    encode(membership, &mut out);
    out
}

/// Decodes exactly `bytes`; the error names the field that is wrong.
pub fn decode(bytes: &[u8]) -> Result<Membership, String> {
    let mut cursor = Cursor { bytes, position: 0 };
    let mut membership = Membership::default();
    let members = cursor.u32("member count")?;
    let mut previous: Option<NodeId> = None;
    for _ in 0..members {
        let id = cursor.u64("member id")?;
        if previous.is_some_and(|previous| previous >= id) {
            return Err(format!("member {id} out of order"));
        }
        previous = Some(id);
        let voter = match cursor.u8("voter flag")? {
            0 => false,
            1 => true,
            other => return Err(format!("member {id}: voter flag is {other}, not 0 or 1")),
        };
        let priority = cursor.u32("priority")?;
        let mut address = || -> Result<String, String> {
            let len = cursor.u32("address length")? as usize;
            if len > MAX_ADDRESS_BYTES {
                return Err(format!("member {id}: an address of {len} bytes"));
            }
            String::from_utf8(cursor.take(len, "address")?.to_vec())
                .map_err(|_| format!("member {id}: an address that is not UTF-8"))
        };
        let addresses = MemberAddresses { peer: address()?, client: address()?, http: address()? };
        membership.members.insert(id, Member { voter, priority, addresses });
    }
    let removed = cursor.u32("removed count")?;
    for _ in 0..removed {
        let id = cursor.u64("removed id")?;
        if !membership.removed.insert(id) {
            return Err(format!("removed node {id} listed twice"));
        }
    }
    if cursor.position != bytes.len() {
        return Err(format!("{} bytes after the membership", bytes.len() - cursor.position));
    }
    membership.check()?;
    Ok(membership)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize, field: &str) -> Result<&'a [u8], String> {
        let left = self.bytes.len() - self.position;
        if len > left {
            return Err(format!("membership ends inside {field}: needs {len} bytes, {left} left"));
        }
        let slice = &self.bytes[self.position..self.position + len];
        self.position += len;
        Ok(slice)
    }

    fn u8(&mut self, field: &str) -> Result<u8, String> {
        Ok(self.take(1, field)?[0])
    }

    fn u32(&mut self, field: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4, field)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, field: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8, field)?.try_into().expect("8 bytes")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_core::MembershipChange;

    fn sample() -> Membership {
        let base = Membership::bootstrap(&[1, 2, 3], &Default::default());
        let addresses = MemberAddresses {
            peer: "127.0.0.1:7103".into(),
            client: "127.0.0.1:7003".into(),
            http: "127.0.0.1:7203".into(),
        };
        let added = base.apply(&MembershipChange::AddLearner { id: 4, addresses }).unwrap();
        let mut removed = added.apply(&MembershipChange::Remove { id: 2 }).unwrap();
        removed.members.get_mut(&3).unwrap().priority = 0;
        removed
    }

    #[test]
    fn a_membership_round_trips() {
        let membership = sample();
        assert_eq!(decode(&to_bytes(&membership)).unwrap(), membership);
    }

    #[test]
    fn every_truncation_and_a_trailing_byte_are_refused() {
        let bytes = to_bytes(&sample());
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "a membership cut at {len} bytes decoded");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().contains("after the membership"));
    }

    #[test]
    fn a_membership_without_a_voter_is_refused() {
        let mut membership = sample();
        for member in membership.members.values_mut() {
            member.voter = false;
        }
        assert!(decode(&to_bytes(&membership)).unwrap_err().contains("no voter"));
    }
}
