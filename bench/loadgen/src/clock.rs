//! One clock for the latency probe: `CLOCK_MONOTONIC` nanoseconds, the same
//! clock `std::time::Instant` reads on Linux, so instants str0m stamps on
//! received packets convert to probe time without a second clock read.

use std::time::Instant;

use rustix::time::{clock_gettime, ClockId};

/// `CLOCK_MONOTONIC` now, in nanoseconds.
pub fn mono_ns() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

/// Maps `Instant`s to `CLOCK_MONOTONIC` nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_ns: u64,
}

impl Clock {
    pub fn new() -> Clock {
        let base = Instant::now();
        Clock {
            base,
            base_ns: mono_ns(),
        }
    }

    /// Monotonic nanoseconds of `at` (instants before the clock was made
    /// count as its start).
    pub fn ns(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.base).as_nanos();
        self.base_ns
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }
}
