//! Rate limits: a keyed limiter (per user id, per IP, per pair of users) on
//! the `governor` crate (GCRA, no background task), whose refusals carry how
//! long to wait. Every write a client can repeat goes through one: the
//! services own their limiters and check them before touching the store.
//!
//! Per-key state stays bounded: every [`SWEEP_EVERY`] checks the limiter
//! forgets keys whose state is back to fresh (`retain_recent`), and when
//! more than `max_keys` are still live (a flood of distinct keys, e.g. IPs)
//! it refuses everyone until they expire, rather than grow.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Checks between two sweeps of stale keys.
const SWEEP_EVERY: u64 = 4096;

/// Live keys a limiter keeps by default before it refuses new work.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// A sustained rate with a burst above it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Actions per second, sustained (may be below 1: 0.1 is one per 10 s).
    pub per_sec: f64,
    /// Actions allowed at once above the sustained rate.
    pub burst: u32,
}

impl Rate {
    pub const fn new(per_sec: f64, burst: u32) -> Rate {
        Rate { per_sec, burst }
    }

    /// `n` actions per minute, all of them allowed at once.
    pub const fn per_minute(n: u32) -> Rate {
        Rate {
            per_sec: n as f64 / 60.0,
            burst: n,
        }
    }

    /// Why this rate is unusable, if it is (`name` is its config key).
    pub fn problem(&self, name: &str) -> Option<String> {
        (!(self.per_sec > 0.0 && self.per_sec.is_finite() && self.burst > 0))
            .then(|| format!("{name}: per_sec and burst must be positive"))
    }

    fn quota(&self) -> Quota {
        // Clamped: a period of at least 1 µs and at most a day.
        let period = Duration::from_secs_f64((1.0 / self.per_sec).clamp(1e-6, 86_400.0));
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst)
    }
}

/// A refused action: what was limited and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// What is limited ("messages", "reactions", …), for the error text.
    pub what: &'static str,
    /// How long until one more is allowed.
    pub retry_after: Duration,
}

impl Refusal {
    /// Whole seconds to wait, at least 1 (the `Retry-After` header's value).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limit: too many {}; retry in {} ms",
            self.what,
            self.retry_after.as_millis().max(1)
        )
    }
}

/// A rate limit per key.
pub struct Limiter<K: Hash + Eq + Clone> {
    what: &'static str,
    inner: DefaultKeyedRateLimiter<K>,
    clock: DefaultClock,
    max_keys: usize,
    checks: AtomicU64,
    /// Shortest wait told to a client refused because the table is full.
    period: Duration,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// A limiter of `what` at `rate` per key.
    pub fn new(what: &'static str, rate: Rate) -> Self {
        Self::with_max_keys(what, rate, DEFAULT_MAX_KEYS)
    }

    /// As [`Limiter::new`], keeping at most `max_keys` live keys.
    pub fn with_max_keys(what: &'static str, rate: Rate, max_keys: usize) -> Self {
        let quota = rate.quota();
        Limiter {
            what,
            period: quota.replenish_interval(),
            inner: governor::RateLimiter::hashmap(quota),
            clock: DefaultClock::default(),
            max_keys: max_keys.max(1),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one action for `key`, or says how long to wait.
    pub fn check(&self, key: &K) -> Result<(), Refusal> {
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 || self.inner.len() >= self.max_keys {
            self.sweep();
            if self.inner.len() >= self.max_keys {
                return Err(Refusal {
                    what: self.what,
                    retry_after: self.period,
                });
            }
        }
        self.inner.check_key(key).map_err(|not_until| Refusal {
            what: self.what,
            retry_after: not_until.wait_time_from(self.clock.now()),
        })
    }

    /// Forgets keys whose state is fresh again.
    pub fn sweep(&self) {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
    }

    /// Keys with live state.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

/// Turn-taking per key: at most `per_key` holders at once for one key, the
/// rest wait in order. A user's flood then queues behind itself instead of
/// in front of other users at what they all share (the database writer).
/// Keys nobody holds or waits for are forgotten.
pub struct Turns<K: Hash + Eq + Clone> {
    per_key: usize,
    keys: Mutex<HashMap<K, Arc<Semaphore>>>,
}

/// One turn of a key; ends when dropped.
pub struct Turn<'a, K: Hash + Eq + Clone> {
    turns: &'a Turns<K>,
    key: K,
    sem: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
}

impl<K: Hash + Eq + Clone> Turns<K> {
    pub fn new(per_key: usize) -> Self {
        Turns {
            per_key: per_key.max(1),
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn table(&self) -> MutexGuard<'_, HashMap<K, Arc<Semaphore>>> {
        // Every update is one insert or remove: a panic while held leaves it consistent.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a turn of `key`.
    pub async fn take(&self, key: &K) -> Turn<'_, K> {
        let sem = self
            .table()
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_key)))
            .clone();
        // Never closed, so acquiring only waits.
        let permit = sem.clone().acquire_owned().await.ok();
        Turn {
            turns: self,
            key: key.clone(),
            sem,
            permit,
        }
    }

    /// Keys with someone holding or waiting for a turn.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.table().is_empty()
    }
}

impl<K: Hash + Eq + Clone> Drop for Turn<'_, K> {
    fn drop(&mut self) {
        self.permit.take();
        let mut t = self.turns.table();
        // The table's reference and this turn's: nobody else holds or waits.
        if Arc::strong_count(&self.sem) == 2 {
            t.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_with_a_wait() {
        let l = Limiter::new("things", Rate::new(1.0, 3));
        for _ in 0..3 {
            assert!(l.check(&"a").is_ok());
        }
        let r = l.check(&"a").expect_err("over the burst");
        assert_eq!(r.what, "things");
        assert!(r.retry_after > Duration::ZERO && r.retry_after <= Duration::from_secs(1));
        assert_eq!(r.retry_after_secs(), 1);
        // Another key has its own budget.
        assert!(l.check(&"b").is_ok());
    }

    #[test]
    fn per_minute_rates_wait_long() {
        let l = Limiter::new("rings", Rate::per_minute(3));
        for _ in 0..3 {
            assert!(l.check(&1).is_ok());
        }
        let r = l.check(&1).expect_err("fourth in a minute");
        assert!(r.retry_after > Duration::from_secs(10), "{r:?}");
    }

    #[test]
    fn key_state_is_bounded() {
        let l = Limiter::with_max_keys("x", Rate::new(1.0, 1), 100);
        let mut refused = 0;
        for k in 0..1000 {
            if l.check(&k).is_err() {
                refused += 1;
            }
        }
        assert!(l.len() <= 100, "{}", l.len());
        assert!(refused >= 900);
        // Fresh keys are forgotten by a sweep once their state has expired.
        let l = Limiter::new("y", Rate::new(1000.0, 1));
        for k in 0..50 {
            assert!(l.check(&k).is_ok());
        }
        std::thread::sleep(Duration::from_millis(5));
        l.sweep();
        assert!(l.is_empty());
    }

    #[tokio::test]
    async fn turns_queue_per_key_and_are_forgotten() {
        let turns = Turns::new(2);
        let a1 = turns.take(&"a").await;
        let _a2 = turns.take(&"a").await;
        // "a" has both its turns: a third waits; "b" does not.
        let waiting = tokio::time::timeout(Duration::from_millis(50), turns.take(&"a")).await;
        assert!(waiting.is_err());
        let b = tokio::time::timeout(Duration::from_millis(50), turns.take(&"b")).await;
        assert!(b.is_ok());
        drop(b);
        drop(a1);
        let a3 = tokio::time::timeout(Duration::from_millis(50), turns.take(&"a")).await;
        assert!(a3.is_ok());
        drop(a3);
        drop(_a2);
        assert!(turns.is_empty(), "{}", turns.len());
    }

    #[test]
    fn bad_rates_are_named() {
        assert!(Rate::new(0.0, 1).problem("chat.x").is_some());
        assert!(Rate::new(1.0, 0).problem("chat.x").is_some());
        assert!(Rate::new(f64::NAN, 1).problem("chat.x").is_some());
        assert!(Rate::new(0.5, 1).problem("chat.x").is_none());
    }
}
