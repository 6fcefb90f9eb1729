//! Bytes of a mapped scratch file whose name is already unlinked, released
//! off the thread that drops them.
//!
//! When the last reference to such a mapping goes, the kernel frees the
//! file's blocks inside `munmap`: for a snapshot of gigabytes that took 1.6 s
//! on the project's machine, and the last reference may be dropped by the core
//! on the driver task that sends heartbeats (a transfer that finished), which
//! then stalled for as long and cost the cluster its leader. The mapping is
//! handed to a short-lived thread to unmap instead.

use bytes::Bytes;
use memmap2::Mmap;

struct UnmapOffThread(Option<Mmap>);

impl AsRef<[u8]> for UnmapOffThread {
    fn as_ref(&self) -> &[u8] {
        self.0.as_deref().expect("unmapped only when dropped")
    }
}

impl Drop for UnmapOffThread {
    fn drop(&mut self) {
        let Some(map) = self.0.take() else { return };
        let spawned = std::thread::Builder::new().name("unmap".into()).spawn(move || drop(map));
        // Without a thread, unmap here: slow, but nothing is lost.
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start a thread to release a snapshot's scratch file");
        }
    }
}

/// `map` as bytes that unmap on a thread of their own.
pub(crate) fn bytes_unmapped_off_thread(map: Mmap) -> Bytes {
    Bytes::from_owner(UnmapOffThread(Some(map)))
}
