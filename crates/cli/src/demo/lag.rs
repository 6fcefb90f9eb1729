//! Before each kill, survivors fall behind by different amounts, so that the
//! election has data versions to choose between: the links from the leader to
//! three of its followers are held one after another ([`super::links`]), while
//! the writes go on.
//!
//! - the first held follower misses the most entries;
//! - the second misses fewer;
//! - the third is held last, leaving the leader with one follower, so the last
//!   appends reach that follower only and are *not committed*.
//!
//! The fourth follower then holds the newest data, including uncommitted
//! entries. Last, its link is held too, so that the versions the demo reads
//! before the kill are the ones the survivors hold when it comes (a read after
//! the kill would race with the next leader, elected within milliseconds). A rule that elects the newest data keeps them; Raft may elect the
//! third follower (it is as up to date as a majority of the survivors) and
//! throw them away. The holds are short (tens of milliseconds), well within an
//! election timeout, so no follower suspects the leader before the kill.

use std::time::{Duration, Instant};

use super::cluster::DemoCluster;
use super::load::Ledger;

/// Writes acknowledged between two holds: the lag of the earlier held node.
const WRITES_BETWEEN_HOLDS: usize = 20;

/// Who was made to fall behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lag {
    /// Followers whose link from the leader was held, first held first.
    pub held: Vec<u64>,
    /// The follower that kept receiving: the newest data.
    pub kept_up: Option<u64>,
    /// The kept-up follower held entries the others had not (uncommitted).
    pub uncommitted_tail: bool,
}

/// Holds the links from `leader` to three of its followers, one after another
/// (which three turns with `number`), and returns who lags. Does nothing
/// without the demo's proxies or with fewer than four followers.
///
/// Each step lasts at most one heartbeat interval (`heartbeat`), also on a
/// slow machine: the first held follower misses about three heartbeats before
/// the kill, fewer than the miss limit, so no follower suspects the leader
/// early, and the leader, which keeps only one follower for the last step,
/// does not step down for want of a quorum.
pub fn fall_behind(cluster: &DemoCluster, ledger: &Ledger, leader: u64, number: usize, heartbeat: Duration) -> Lag {
    let Some(links) = &cluster.links else { return Lag::default() };
    let mut followers: Vec<u64> = cluster.live().into_iter().filter(|id| *id != leader).collect();
    if followers.len() < 4 {
        return Lag::default();
    }
    let turn = number % followers.len();
    followers.rotate_left(turn);
    let (held, kept_up) = (followers[..3].to_vec(), followers[3]);
    for &node in &held[..2] {
        links.hold(leader, node);
        let target = ledger.count() + WRITES_BETWEEN_HOLDS;
        let deadline = Instant::now() + heartbeat;
        while ledger.count() < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // The last hold leaves the leader one follower: what it appends now stays
    // uncommitted, on the kept-up follower only.
    links.hold(leader, held[2]);
    let deadline = Instant::now() + heartbeat;
    let mut uncommitted_tail = false;
    while !uncommitted_tail && Instant::now() < deadline {
        uncommitted_tail = match (cluster.view(kept_up), cluster.view(held[2])) {
            (Some(ahead), Some(behind)) => ahead.data_version.1 > behind.data_version.1,
            _ => false,
        };
        std::thread::sleep(Duration::from_millis(1));
    }
    links.hold(leader, kept_up);
    Lag { held, kept_up: Some(kept_up), uncommitted_tail }
}
