//! What the driver loop spends its time on, so that a late timer can be
//! explained: each wake-up of the loop (a step) is timed, on the wall clock
//! and in the CPU time of the thread that ran it, and a timer that fires late
//! is logged with the longest step since the timer before it. A late timer
//! behind a short step means the task waited for a thread; a long step that
//! used little CPU was preempted (an overloaded machine); a long step that
//! used its time is the driver's own work.

use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

/// A step or a lateness this long is worth a line in the log: well under the
/// default heartbeat interval (50 ms), well over a normal step.
pub(crate) const SLOW: Duration = Duration::from_millis(20);

/// At most one warning per this long, the rest counted in the next one.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// What woke the driver loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    Shutdown,
    Persisted,
    Peers,
    ProcessGone,
    Screened,
    Clients,
    Applied,
    Timer,
    Sweep,
    /// The loop's own work before it waits: starting the next persist,
    /// publishing the status.
    Housekeeping,
}

impl Wake {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Wake::Shutdown => "shutdown",
            Wake::Persisted => "persisted",
            Wake::Peers => "peer frames",
            Wake::ProcessGone => "process gone",
            Wake::Screened => "snapshot screened",
            Wake::Clients => "client commands",
            Wake::Applied => "apply reports",
            Wake::Timer => "timer",
            Wake::Sweep => "request sweep",
            Wake::Housekeeping => "housekeeping",
        }
    }
}

/// One step as measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) wake: Wake,
    /// Wall-clock time.
    pub(crate) took: Duration,
    /// CPU time of the thread that ran it.
    pub(crate) cpu: Duration,
    /// Inputs it took (peer frames, client commands, reports).
    pub(crate) inputs: usize,
}

/// The start of a step: wall clock and thread CPU time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StepStart {
    wall: Instant,
    cpu: Duration,
}

impl StepStart {
    pub(crate) fn now() -> StepStart {
        StepStart { wall: Instant::now(), cpu: thread_cpu_time() }
    }

    /// The step from this start until now, and now as the start of what
    /// follows (one reading of the clocks, not two). A step runs within one
    /// poll of the driver (no await inside), so on one thread.
    pub(crate) fn finish(self, wake: Wake, inputs: usize) -> (Step, StepStart) {
        let now = StepStart::now();
        let took = now.wall.saturating_duration_since(self.wall);
        let cpu = now.cpu.saturating_sub(self.cpu);
        (Step { wake, took, cpu, inputs }, now)
    }
}

/// CPU time the calling thread has used.
#[allow(unsafe_code)]
fn thread_cpu_time() -> Duration {
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `clock_gettime` writes one `timespec` through the pointer,
    // which points to a live, aligned, writable local of that type; the
    // clock id is a constant the kernel knows. Nothing else is touched.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    if result != 0 {
        return Duration::ZERO; // Not measurable here: steps read as preempted.
    }
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

/// The longest step since the last timer, and the rate limit of warnings.
#[derive(Debug, Default)]
pub(crate) struct StepWatch {
    longest: Option<Step>,
    last_warning: Option<Instant>,
    unlogged: u64,
}

impl StepWatch {
    /// Records one step.
    pub(crate) fn step(&mut self, step: Step) {
        if self.longest.is_none_or(|longest| step.took > longest.took) {
            self.longest = Some(step);
        }
    }

    /// A timer fired `late`: the longest step since the previous timer is
    /// reported with it when it is late enough to matter.
    pub(crate) fn timer_fired(&mut self, node: u64, late: Duration, now: Instant) {
        let longest = self.longest.take();
        if late < SLOW {
            return;
        }
        if self.last_warning.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
            self.unlogged += 1;
            return;
        }
        self.last_warning = Some(now);
        let unlogged = std::mem::take(&mut self.unlogged);
        let (step, step_ms, cpu_ms, inputs) = match longest {
            Some(step) => (step.wake.name(), step.took.as_millis() as u64, step.cpu.as_millis() as u64, step.inputs),
            None => ("none", 0, 0, 0),
        };
        let cause = if step_ms * 2 < late.as_millis() as u64 {
            "waiting for a thread (the driver's own steps were short)"
        } else if cpu_ms * 2 < step_ms {
            "a step of the driver that lost its CPU (an overloaded machine)"
        } else {
            "a long step of the driver"
        };
        warn!(
            node,
            late_ms = late.as_millis() as u64,
            longest_step = step,
            longest_step_ms = step_ms,
            longest_step_cpu_ms = cpu_ms,
            longest_step_inputs = inputs,
            earlier_late_timers_not_logged = unlogged,
            "driver timer fired late: {cause}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_longest_step_until_a_timer_takes_it() {
        let step = |wake, ms, inputs| Step { wake, took: Duration::from_millis(ms), cpu: Duration::ZERO, inputs };
        let mut watch = StepWatch::default();
        watch.step(step(Wake::Peers, 3, 10));
        watch.step(step(Wake::Clients, 30, 900));
        watch.step(step(Wake::Peers, 5, 2));
        assert_eq!(watch.longest, Some(step(Wake::Clients, 30, 900)));
        watch.timer_fired(1, Duration::from_millis(1), Instant::now());
        assert_eq!(watch.longest, None, "each timer starts a new window");
    }

    #[test]
    fn a_step_counts_the_cpu_time_its_thread_used() {
        let start = StepStart::now();
        let mut spin = 0u64;
        // Until the thread has used 5 ms of CPU; a clock that never moves
        // fails at the bound.
        while thread_cpu_time().saturating_sub(start.cpu) < Duration::from_millis(5)
            && start.wall.elapsed() < Duration::from_secs(10)
        {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let (busy, _) = start.finish(Wake::Timer, 1);
        assert!(busy.cpu >= Duration::from_millis(5) && busy.took >= busy.cpu, "spinning uses CPU: {busy:?}");
        // Blocked while another thread works: wall time passes, CPU does not.
        let start = StepStart::now();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let own = thread_cpu_time();
            let mut spin = 0u64;
            while thread_cpu_time().saturating_sub(own) < Duration::from_millis(20) {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
            let _ = done.send(spin);
        });
        finished.recv_timeout(Duration::from_secs(10)).expect("the worker used 20 ms of CPU");
        let (idle, _) = start.finish(Wake::Timer, 1);
        assert!(idle.took >= Duration::from_millis(20) && idle.cpu < Duration::from_millis(5), "{idle:?}");
    }

    #[test]
    fn late_timers_are_logged_at_most_once_a_second_and_the_rest_counted() {
        let mut watch = StepWatch::default();
        let start = Instant::now();
        watch.timer_fired(1, Duration::from_millis(40), start);
        assert_eq!(watch.last_warning, Some(start));
        watch.timer_fired(1, Duration::from_millis(40), start + Duration::from_millis(500));
        watch.timer_fired(1, Duration::from_millis(5), start + Duration::from_millis(600));
        assert_eq!(watch.unlogged, 1, "a timer on time is not counted");
        watch.timer_fired(1, Duration::from_millis(40), start + Duration::from_millis(1500));
        assert_eq!((watch.unlogged, watch.last_warning), (0, Some(start + Duration::from_millis(1500))));
    }
}
