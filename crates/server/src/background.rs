//! Threads that do bulk work (applying committed entries, writing snapshots,
//! staging a leader's snapshot, the engines' writeback, flushes and merges)
//! run at a lower CPU priority than the driver's thread and the connections'
//! workers. When every core is busy, the kernel then runs the driver first
//! when its timer fires, so heartbeats leave on time however much bulk work
//! is queued (docs/decisions/0096). Bulk work only waits when the CPU is
//! short; on an idle core it runs at full speed.

/// How much lower than the process's the priority of a background thread is
/// (added to its nice value; 19 at most).
pub const BACKGROUND_NICE: i32 = 5;

/// The threads the LSM engine starts for itself.
pub const LSM_ENGINE_THREADS: &[&str] = &["flusher", "compactor", "monitor"];

/// Lowers the calling thread to the background priority. Best effort: a
/// system that refuses is left as it is, and the node runs as before.
pub fn lower_this_thread() {
    if let Some(thread) = this_thread_id() {
        lower(thread);
    }
}

/// Lowers this process's threads named one of `names` to the background
/// priority: threads an engine starts itself. Returns how many it lowered.
pub fn lower_threads_named(names: &[&str]) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    let mut lowered = 0;
    for task in tasks.flatten() {
        let Ok(name) = std::fs::read_to_string(task.path().join("comm")) else { continue };
        if !names.contains(&name.trim_end()) {
            continue;
        }
        if let Some(thread) = task.file_name().to_str().and_then(|id| id.parse().ok()) {
            lowered += usize::from(lower(thread));
        }
    }
    lowered
}

/// The nice value of thread `thread` of this process, from its stat line.
fn nice_of(thread: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{thread}/stat")).ok()?;
    // The name (field 2) is in parentheses and may hold spaces: count the
    // fields after its closing one. Nice is field 19, the 17th after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(16)?.parse().ok()
}

/// The calling thread's id, as `/proc/thread-self` names it.
fn this_thread_id() -> Option<i32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Sets thread `thread` to the process's nice value plus
/// [`BACKGROUND_NICE`]: the same value however often it is called.
#[allow(unsafe_code)]
fn lower(thread: i32) -> bool {
    let process = std::process::id() as i32;
    let Some(base) = nice_of(process) else { return false };
    let target = (base + BACKGROUND_NICE).min(19);
    if nice_of(thread) == Some(target) {
        return true;
    }
    // SAFETY: `setpriority` takes three integers and no pointer; on Linux,
    // `PRIO_PROCESS` with a thread id changes that one thread's nice value.
    // Raising a nice value needs no privilege, and a failure only returns -1.
    // No memory is read or written on our side.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, thread as libc::id_t, target) };
    result == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_background_thread_runs_at_a_lower_priority_than_the_process() {
        let base = nice_of(std::process::id() as i32).expect("this process's nice value");
        let (before, after) = std::thread::spawn(|| {
            let me = this_thread_id().expect("this thread's id");
            let before = nice_of(me);
            lower_this_thread();
            lower_this_thread(); // the same value, not lower again
            (before, nice_of(me))
        })
        .join()
        .unwrap();
        assert_eq!(before, Some(base), "a new thread starts at the process's priority");
        assert_eq!(after, Some((base + BACKGROUND_NICE).min(19)));
        assert_eq!(nice_of(std::process::id() as i32), Some(base), "the rest of the process is untouched");
    }

    #[test]
    fn threads_are_lowered_by_name() {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bg-test-named".into())
            .spawn(move || {
                ready_tx.send(this_thread_id().unwrap()).unwrap();
                let _ = done_rx.recv();
            })
            .unwrap();
        let id = ready_rx.recv().unwrap();
        assert_eq!(lower_threads_named(&["bg-test-named"]), 1);
        let base = nice_of(std::process::id() as i32).unwrap();
        assert_eq!(nice_of(id), Some((base + BACKGROUND_NICE).min(19)));
        drop(done_tx);
        thread.join().unwrap();
    }
}
