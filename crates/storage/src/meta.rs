//! The `meta` file: which cluster and node a data directory belongs to.
//!
//! # File format
//! 32 bytes, little-endian: magic `"CNCLMETA"` (8), version `u32` (1),
//! `cluster_id: u64`, `node_id: u64`, `crc32c: u32` of the preceding 28 bytes.
//! Written once, atomically, when the directory is created.

use std::path::Path;

use conclave_core::{ClusterId, NodeId};

use crate::error::StorageError;
use crate::fs_util::{self, FieldReader};

/// Name of the meta file in the data directory.
pub const META_FILE: &str = "meta";
const MAGIC: &[u8; 8] = b"CNCLMETA";
const VERSION: u32 = 1;

/// The identity recorded in a data directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The cluster the directory belongs to.
    pub cluster_id: ClusterId,
    /// The node the directory belongs to.
    pub node_id: NodeId,
}

impl Meta {
    /// Encodes the file.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(32);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&self.cluster_id.to_le_bytes());
        bytes.extend_from_slice(&self.node_id.to_le_bytes());
        let checksum = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&checksum.to_le_bytes());
        bytes
    }

    /// Decodes the file; on failure, the offset and what is wrong there.
    pub fn decode(bytes: &[u8]) -> Result<Meta, (u64, String)> {
        let mut reader = FieldReader::new(bytes);
        if reader.take(MAGIC.len(), "magic")? != MAGIC {
            return Err((0, "bad magic: not a Conclave meta file".into()));
        }
        let version = reader.u32("version")?;
        if version != VERSION {
            return Err((8, format!("unsupported meta version {version} (this build reads {VERSION})")));
        }
        let cluster_id = reader.u64("cluster id")?;
        let node_id = reader.u64("node id")?;
        let checksum_offset = reader.position();
        let stored = reader.u32("checksum")?;
        let computed = crc32c::crc32c(&bytes[..checksum_offset as usize]);
        if stored != computed {
            return Err((
                checksum_offset,
                format!("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"),
            ));
        }
        if reader.remaining() != 0 {
            return Err((reader.position(), format!("{} trailing bytes", reader.remaining())));
        }
        Ok(Meta { cluster_id, node_id })
    }

    /// Reads the meta file of `dir`, if it exists.
    pub fn load(dir: &Path) -> Result<Option<Meta>, StorageError> {
        let path = dir.join(META_FILE);
        let Some(bytes) = fs_util::read_if_exists(&path)? else { return Ok(None) };
        Meta::decode(&bytes).map(Some).map_err(|(offset, reason)| StorageError::corrupt(&path, offset, reason))
    }

    /// Writes the meta file of `dir` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), StorageError> {
        fs_util::write_atomically(dir, META_FILE, &self.encode())
    }

    /// Refuses a directory recorded for another cluster or node.
    pub fn check(&self, expected: &Meta, dir: &Path) -> Result<(), StorageError> {
        let path = dir.join(META_FILE);
        if self.cluster_id != expected.cluster_id {
            return Err(StorageError::WrongCluster { path, expected: expected.cluster_id, found: self.cluster_id });
        }
        if self.node_id != expected.node_id {
            return Err(StorageError::WrongNode { path, expected: expected.node_id, found: self.node_id });
        }
        Ok(())
    }
}
