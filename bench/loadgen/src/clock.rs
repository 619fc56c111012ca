//! One clock for the latency probe: `CLOCK_MONOTONIC` nanoseconds, the same
//! clock `std::time::Instant` reads on Linux, so instants str0m stamps on
//! received packets convert to probe time without a second clock read.

use std::time::Instant;

use rustix::time::{clock_gettime, ClockId};

/// `CLOCK_MONOTONIC` now, in nanoseconds.
pub fn mono_ns() -> u64 {
    now_ns(ClockId::Monotonic)
}

/// `id` now, in nanoseconds.
pub fn now_ns(id: ClockId) -> u64 {
    let t = clock_gettime(id);
    secs_nanos(t.tv_sec, t.tv_nsec)
}

/// Nanoseconds of a `timespec`'s two fields (negative ones count as 0).
pub fn secs_nanos(secs: i64, nanos: i64) -> u64 {
    u64::try_from(secs)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(nanos).unwrap_or(0))
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
