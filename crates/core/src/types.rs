//! Plain identifiers shared by every layer.

/// A member's id, unique within a cluster. Zero is reserved for "nobody".
pub type NodeId = u64;

/// Identifies a cluster; every message carries it so that two clusters sharing
/// a network cannot mix their traffic.
pub type ClusterId = u64;

/// A Raft term. docs/design/leader-terms.md calls it the *ballot*: it orders votes and log
/// entries in every election mode.
pub type Term = u64;

/// A position in the replicated log. The first entry has index 1; index 0 is the
/// empty prefix, whose term is 0.
pub type LogIndex = u64;
