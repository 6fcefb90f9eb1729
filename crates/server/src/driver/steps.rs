//! What the driver loop spends its time on, so that a late timer can be
//! explained: each wake-up of the loop (a step) is timed, and a timer that
//! fires late is logged with the longest step since the timer before it. A
//! late timer behind a short step means the task waited for a thread (other
//! tasks, or the machine), not for its own work.

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
        }
    }
}

/// The longest step since the last timer, and the rate limit of warnings.
#[derive(Debug, Default)]
pub(crate) struct StepWatch {
    longest: Option<(Wake, Duration, usize)>,
    last_warning: Option<Instant>,
    unlogged: u64,
}

impl StepWatch {
    /// Records one step: what woke it, how long it took, how many inputs it took.
    pub(crate) fn step(&mut self, wake: Wake, took: Duration, inputs: usize) {
        if self.longest.is_none_or(|(_, longest, _)| took > longest) {
            self.longest = Some((wake, took, inputs));
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
        let (step, step_ms, inputs) = match longest {
            Some((wake, took, inputs)) => (wake.name(), took.as_millis() as u64, inputs),
            None => ("none", 0, 0),
        };
        let cause = if step_ms * 2 >= late.as_millis() as u64 {
            "a long step of the driver"
        } else {
            "waiting for a thread (the driver's own steps were short)"
        };
        warn!(
            node,
            late_ms = late.as_millis() as u64,
            longest_step = step,
            longest_step_ms = step_ms,
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
        let mut watch = StepWatch::default();
        watch.step(Wake::Peers, Duration::from_millis(3), 10);
        watch.step(Wake::Clients, Duration::from_millis(30), 900);
        watch.step(Wake::Peers, Duration::from_millis(5), 2);
        assert_eq!(watch.longest, Some((Wake::Clients, Duration::from_millis(30), 900)));
        watch.timer_fired(1, Duration::from_millis(1), Instant::now());
        assert_eq!(watch.longest, None, "each timer starts a new window");
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
