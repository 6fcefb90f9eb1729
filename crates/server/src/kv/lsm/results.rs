//! Where the LSM store keeps the exactly-once table's saved results: in
//! slots, a key per `(origin, slot)` that is overwritten in place and never
//! removed. A result dropped from the table only frees its slot in memory;
//! what stays on disk is recognised as dropped at the next open, because the
//! table drops results only below its origin's floor or of an older
//! incarnation, both of which the origin's session says.
//!
//! Why not a key per `(origin, incarnation, id)`, removed when dropped: every
//! write saves a result and drops an older one, so that key range carried a
//! tombstone per write until merges pushed them to the last level, and the
//! open, which loads the table, walked them all. A restart's time followed
//! the write history instead of the live data (docs/decisions/0098). With
//! slots the range holds at most [`MAX_RESULTS_PER_ORIGIN`] + 1 keys per
//! origin, at any write count.
//!
//! A slot's value: the incarnation and id (8 bytes each, big-endian), then
//! the reply as [`encode_reply`] writes it. The layout is named in the
//! metadata ([`LAYOUT`]); a store without it keeps the first layout and is
//! rewritten into slots once, at open, in one atomic batch.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use conclave_core::NodeId;
use fjall::{Batch, PersistMode};

use super::{be_u64, engine_error, Tables};
use crate::kv::command::KvReply;
use crate::kv::dedup::{decode_reply, encode_reply, DedupMap, MAX_RESULTS_PER_ORIGIN};
use crate::kv::engine::decode_saved;
use crate::kv::machine::MachineError;

/// The metadata key naming the layout of the results.
pub(super) const LAYOUT: &str = "results_layout";
/// Results in slots. A store without [`LAYOUT`] has them by id (the first
/// layout).
pub(super) const LAYOUT_SLOTS: u64 = 2;

/// The most slots an origin uses: its results, plus the one saved before the
/// oldest is dropped when the table is full.
const MAX_SLOTS: u32 = MAX_RESULTS_PER_ORIGIN as u32 + 1;

/// The slot of each saved result, and the free slots, per origin.
#[derive(Debug, Default)]
pub(super) struct ResultSlots {
    slot_of: HashMap<(NodeId, u64, u64), u32>,
    origins: HashMap<NodeId, OriginSlots>,
}

#[derive(Debug, Default)]
struct OriginSlots {
    /// Slots `0..used` have been written.
    used: u32,
    /// Written slots whose result was dropped.
    free: Vec<u32>,
}

impl ResultSlots {
    /// The slot the result of `(node, incarnation, id)` goes to.
    fn take(&mut self, node: NodeId, incarnation: u64, id: u64) -> u32 {
        let origin = self.origins.entry(node).or_default();
        let slot = origin.free.pop().unwrap_or_else(|| {
            origin.used += 1;
            origin.used - 1
        });
        assert!(origin.used <= MAX_SLOTS, "origin {node} holds more results than the table keeps");
        let previous = self.slot_of.insert((node, incarnation, id), slot);
        assert!(previous.is_none(), "the result of ({node}, {incarnation}, {id}) is saved once");
        slot
    }

    /// Drops a result: its slot is free; the bytes stay until it is reused.
    pub(super) fn release(&mut self, node: NodeId, incarnation: u64, id: u64) {
        let slot = self.slot_of.remove(&(node, incarnation, id)).expect("a dropped result had a slot");
        self.origins.get_mut(&node).expect("an origin with a slot").free.push(slot);
    }

    /// Saves a result into `batch`.
    pub(super) fn put(
        &mut self,
        batch: &mut Batch,
        tables: &Tables,
        (node, incarnation, id): (NodeId, u64, u64),
        reply: &[u8],
    ) {
        let slot = self.take(node, incarnation, id);
        tables.results.insert(batch, &slot_key(node, slot), &slot_value(incarnation, id, reply));
    }

    /// Slots written, over all origins (what the key range holds).
    #[cfg(test)]
    pub(super) fn written(&self) -> u64 {
        self.origins.values().map(|origin| u64::from(origin.used)).sum()
    }
}

fn slot_key(node: NodeId, slot: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&node.to_be_bytes());
    key[8..].copy_from_slice(&slot.to_be_bytes());
    key
}

fn slot_value(incarnation: u64, id: u64, reply: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(16 + reply.len());
    value.extend_from_slice(&incarnation.to_be_bytes());
    value.extend_from_slice(&id.to_be_bytes());
    value.extend_from_slice(reply);
    value
}

/// Loads the saved results of `map`'s sessions into `map`, and where they
/// are. A store of the first layout is rewritten into slots first.
pub(super) fn load(tables: &Tables, path: &Path, map: &mut DedupMap) -> Result<ResultSlots, MachineError> {
    let layout = match tables.meta.get(LAYOUT.as_bytes()).map_err(|error| engine_error(path, error))? {
        Some(value) => Some(be_u64(path, &value, LAYOUT)?),
        None => None,
    };
    let slots = match layout {
        Some(LAYOUT_SLOTS) => load_slots(tables, path, map)?,
        None => migrate(tables, path, map)?,
        Some(other) => {
            return Err(engine_error(
                path,
                format!(
                    "its deduplication results are in layout {other}, this build reads {LAYOUT_SLOTS} and the first"
                ),
            ));
        }
    };
    for (&node, session) in &map.sessions {
        let held = map.results.range((node, session.incarnation, 0)..=(node, session.incarnation, u64::MAX)).count();
        if held as u64 != session.results {
            return Err(engine_error(
                path,
                format!(
                    "the deduplication table holds {held} results of node {node}, its session says {} (damaged?)",
                    session.results
                ),
            ));
        }
    }
    Ok(slots)
}

fn load_slots(tables: &Tables, path: &Path, map: &mut DedupMap) -> Result<ResultSlots, MachineError> {
    let mut slots = ResultSlots::default();
    let mut live: HashMap<NodeId, Vec<bool>> = HashMap::new();
    for pair in tables.results.iter() {
        let (key, value) = pair.map_err(|error| engine_error(path, error))?;
        let key = tables.results.unprefixed(&key);
        if key.len() != 12 {
            return Err(engine_error(path, format!("a result slot's key of {} bytes, not 12", key.len())));
        }
        let node = u64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
        let slot = u32::from_be_bytes(key[8..].try_into().expect("4 bytes"));
        if slot >= MAX_SLOTS {
            return Err(engine_error(path, format!("result slot {slot} of node {node}: past the table's bound")));
        }
        let (Some(incarnation), Some(id), Some(reply)) = (
            value.get(..8).map(|word| u64::from_be_bytes(word.try_into().expect("8 bytes"))),
            value.get(8..16).map(|word| u64::from_be_bytes(word.try_into().expect("8 bytes"))),
            value.get(16..),
        ) else {
            return Err(engine_error(path, format!("result slot {slot} of node {node} holds {} bytes", value.len())));
        };
        let origin = slots.origins.entry(node).or_default();
        origin.used = origin.used.max(slot + 1);
        let in_use =
            map.sessions.get(&node).is_some_and(|session| session.incarnation == incarnation && id >= session.floor);
        if in_use {
            let reply = decode_reply(reply)
                .ok_or_else(|| engine_error(path, "a saved result in the deduplication table does not decode"))?;
            if map.results.insert((node, incarnation, id), reply).is_some() {
                return Err(engine_error(path, format!("the result of ({node}, {incarnation}, {id}) is saved twice")));
            }
            slots.slot_of.insert((node, incarnation, id), slot);
            let flags = live.entry(node).or_default();
            flags.resize(flags.len().max(slot as usize + 1), false);
            flags[slot as usize] = true;
        }
    }
    for (node, origin) in &mut slots.origins {
        let flags = live.get(node).map(Vec::as_slice).unwrap_or_default();
        origin.free = (0..origin.used).filter(|&slot| !flags.get(slot as usize).copied().unwrap_or(false)).collect();
    }
    Ok(slots)
}

/// Rewrites results saved by id into slots, in one batch with the layout's
/// name: a crash leaves either layout whole.
fn migrate(tables: &Tables, path: &Path, map: &mut DedupMap) -> Result<ResultSlots, MachineError> {
    let error = |error: fjall::Error| engine_error(path, error);
    let mut batch = tables.keyspace.batch();
    let mut saved: BTreeMap<(NodeId, u64, u64), KvReply> = BTreeMap::new();
    for pair in tables.results.iter() {
        let (full, value) = pair.map_err(error)?;
        let key = tables.results.unprefixed(&full);
        if key.len() != 24 {
            return Err(engine_error(path, "a result key is not 24 bytes"));
        }
        let word = |at: usize| u64::from_be_bytes(key[at..at + 8].try_into().expect("8 bytes"));
        saved.insert((word(0), word(8), word(16)), decode_saved(path, &value)?);
        tables.results.remove(&mut batch, key);
    }
    let mut slots = ResultSlots::default();
    for (&key, reply) in &saved {
        slots.put(&mut batch, tables, key, &encode_reply(reply));
    }
    map.results = saved;
    tables.meta.insert(&mut batch, LAYOUT.as_bytes(), &LAYOUT_SLOTS.to_be_bytes());
    batch.commit().map_err(error)?;
    tables.keyspace.persist(PersistMode::SyncAll).map_err(error)?;
    tracing::info!(path = %path.display(), results = map.results.len(), "deduplication results rewritten into slots");
    Ok(slots)
}
