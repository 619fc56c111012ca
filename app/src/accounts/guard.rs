//! What keeps sign-in cheap to refuse and costly to abuse:
//!
//! - [`Hasher`]: argon2 runs on `hash_concurrency` threads of its own, each
//!   reusing one memory area, with at most `hash_queue` more requests waiting
//!   for one; past that a request is refused at once (429 with `Retry-After`)
//!   instead of queueing without bound.
//! - [`Throttle`]: failed password checks counted per username and per client
//!   address. After the free failures, each next attempt waits twice as long
//!   as the last (1 s, 2 s, 4 s … up to `max_backoff_secs`); after
//!   `lockout` failures the key is locked for `lockout_secs`. Failures are
//!   forgotten `lockout_secs` after the last one. An attempt counts as a
//!   failure from the moment it starts (so parallel guesses are throttled
//!   too) and is given back when the password was right.
//! - registrations per client address go through a [`Limiter`].
//!
//! Per-key state is bounded: a full table forgets expired keys, then the
//! tenth of keys least recently failed.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::mpsc::TrySendError;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use argon2::Block;

use crate::error::Error;
use crate::limits::Refusal;

/// How long a client refused by a full hash queue is told to wait.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// Work for a hasher thread; it lends the thread's argon2 memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The bounded pool password hashes run in: `concurrency` threads of its
/// own, each with one argon2 memory area (19 MiB by default) reused for every
/// hash, so memory stays `concurrency` times that however many requests
/// come; a queue of `queue` jobs in front of them.
pub struct Hasher {
    jobs: std::sync::mpsc::SyncSender<Job>,
}

impl Hasher {
    /// `concurrency` hashes at once (0: one per CPU core), `queue` more waiting.
    pub fn new(concurrency: usize, queue: usize) -> Hasher {
        let concurrency = if concurrency == 0 {
            std::thread::available_parallelism().map_or(2, usize::from)
        } else {
            concurrency
        };
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..concurrency {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        // One thread waits for the next job; the others wait for it.
                        let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        match job {
                            Ok(job) => job(&mut memory),
                            Err(_) => return, // the Hasher is gone
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a password hashing thread: {e}");
            }
        }
        Hasher { jobs }
    }

    /// Runs `f` (a hash or a verification, given the thread's argon2 memory)
    /// on a hasher thread; refuses at once when the queue is full. A job
    /// runs to its end even if the request is dropped meanwhile.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = tx.send(f(memory));
        });
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => Error::RateLimited(busy()),
            TrySendError::Disconnected(_) => Error::ShuttingDown,
        })?;
        rx.await.map_err(|_| Error::ShuttingDown)
    }
}

fn busy() -> Refusal {
    Refusal {
        what: "password checks at once (the node is busy)",
        retry_after: BUSY_RETRY,
    }
}

/// How a [`Throttle`] treats one kind of key.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failures allowed without waiting.
    pub free: u32,
    /// Failures that lock the key.
    pub lockout: u32,
    /// How long a lock lasts, and how long failures are remembered.
    pub lockout_for: Duration,
    /// Longest wait between two attempts before the lock.
    pub max_backoff: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failed attempts per key, bounded.
pub struct Throttle<K> {
    what: &'static str,
    policy: Policy,
    max_keys: usize,
    keys: Mutex<HashMap<K, Failures>>,
}

impl<K: Hash + Eq + Clone> Throttle<K> {
    pub fn new(what: &'static str, policy: Policy, max_keys: usize) -> Throttle<K> {
        Throttle {
            what,
            policy,
            max_keys: max_keys.max(10),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The table. A panic while it was held (a bug) leaves it usable: every
    /// update is one entry's change.
    fn keys(&self) -> MutexGuard<'_, HashMap<K, Failures>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long `f` must wait before its next attempt, if at all.
    fn wait(&self, f: &Failures, now: Instant) -> Option<Duration> {
        let p = &self.policy;
        let since = now.saturating_duration_since(f.last);
        let needed = if f.count >= p.lockout {
            p.lockout_for
        } else if f.count >= p.free {
            let doublings = (f.count - p.free).min(30);
            Duration::from_secs(1u64 << doublings).min(p.max_backoff)
        } else {
            return None;
        };
        (since < needed).then(|| needed - since)
    }

    /// Takes an attempt for `key`: counted as a failure until
    /// [`Throttle::succeeded`] gives it back; refused with the wait when the
    /// key must wait or is locked.
    pub fn attempt(&self, key: &K) -> Result<(), Refusal> {
        let now = Instant::now();
        let mut keys = self.keys();
        let forget = self.policy.lockout_for;
        if let Some(f) = keys.get_mut(key) {
            if now.saturating_duration_since(f.last) >= forget {
                *f = Failures {
                    count: 0,
                    last: now,
                };
            }
            if let Some(wait) = self.wait(f, now) {
                return Err(Refusal {
                    what: self.what,
                    retry_after: wait,
                });
            }
            f.count = f.count.saturating_add(1);
            f.last = now;
            return Ok(());
        }
        if keys.len() >= self.max_keys {
            Self::shrink(&mut keys, now, forget, self.max_keys);
        }
        keys.insert(
            key.clone(),
            Failures {
                count: 1,
                last: now,
            },
        );
        Ok(())
    }

    /// The attempt was right: give it back (`reset`: forget every failure of the key).
    pub fn succeeded(&self, key: &K, reset: bool) {
        let mut keys = self.keys();
        if reset {
            keys.remove(key);
        } else if let Some(f) = keys.get_mut(key) {
            f.count = f.count.saturating_sub(1);
            if f.count == 0 {
                keys.remove(key);
            }
        }
    }

    /// Forgets expired keys, then the tenth least recently failed.
    fn shrink(keys: &mut HashMap<K, Failures>, now: Instant, forget: Duration, max: usize) {
        keys.retain(|_, f| now.saturating_duration_since(f.last) < forget);
        if keys.len() < max {
            return;
        }
        let mut lasts: Vec<Instant> = keys.values().map(|f| f.last).collect();
        let cut = lasts.len() / 10;
        let (_, nth, _) = lasts.select_nth_unstable(cut);
        let nth = *nth;
        keys.retain(|_, f| f.last > nth);
    }

    /// Keys with state.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys().len()
    }
}

/// A client address as limits see it: IPv4 as is, IPv6 by its /64 (one
/// host usually holds a whole /64), IPv4-mapped IPv6 as IPv4.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

/// An address range (`10.0.0.0/8`, `fd00::/8`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bits: u128, width: u8, prefix: u8) -> u128 {
            let keep = u32::from(prefix.min(width));
            if keep == 0 {
                0
            } else {
                bits >> (u32::from(width) - keep)
            }
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                masked(u32::from(n).into(), 32, self.prefix)
                    == masked(u32::from(a).into(), 32, self.prefix)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                masked(n.into(), 128, self.prefix) == masked(a.into(), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// Parses `addr` or `addr/prefix`.
pub fn parse_cidr(s: &str) -> Option<Cidr> {
    let (addr, prefix) = match s.trim().split_once('/') {
        Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
        None => (s.trim(), None),
    };
    let net: IpAddr = addr.parse().ok()?;
    let width = if net.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(width);
    (prefix <= width).then_some(Cidr { net, prefix })
}

/// The client of a request: the TCP peer, unless the peer is a trusted
/// proxy; then the right-most `X-Forwarded-For` entry that is not a trusted
/// proxy (entries further left are whatever the client claimed).
pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded: Option<&str>,
    trusted: &[Cidr],
) -> Option<IpAddr> {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let mut client = peer?;
    if !is_trusted(client) {
        return Some(client);
    }
    for hop in forwarded.unwrap_or("").rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let trusted = [
            parse_cidr("10.0.0.0/8").expect("cidr"),
            parse_cidr("::1").expect("cidr"),
        ];
        // Not through a trusted proxy: the header is ignored.
        assert_eq!(
            client_ip(Some(ip("203.0.113.5")), Some("1.2.3.4"), &trusted),
            Some(ip("203.0.113.5"))
        );
        assert_eq!(
            client_ip(Some(ip("127.0.0.1")), Some("1.2.3.4"), &[]),
            Some(ip("127.0.0.1"))
        );
        // Through one: the right-most untrusted hop, whatever the client prepended.
        assert_eq!(
            client_ip(
                Some(ip("10.1.2.3")),
                Some("6.6.6.6, 198.51.100.7, 10.9.9.9"),
                &trusted
            ),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            client_ip(Some(ip("::1")), Some("198.51.100.7"), &trusted),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            client_ip(Some(ip("10.1.2.3")), None, &trusted),
            Some(ip("10.1.2.3"))
        );
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("nope").is_none());
        assert!(parse_cidr("::ffff:0:0/96").is_some());
    }

    fn policy() -> Policy {
        Policy {
            free: 3,
            lockout: 6,
            lockout_for: Duration::from_secs(900),
            max_backoff: Duration::from_secs(60),
        }
    }

    #[test]
    fn free_failures_then_backoff() {
        let t = Throttle::new("login attempts", policy(), 100);
        for _ in 0..3 {
            t.attempt(&"ana").expect("free");
        }
        let r = t.attempt(&"ana").expect_err("backoff");
        assert_eq!(r.what, "login attempts");
        assert!(r.retry_after <= Duration::from_secs(1) && r.retry_after > Duration::ZERO);
        // Another key is not affected.
        t.attempt(&"bob").expect("other key");
        // A right password gives the attempt back and resets the key.
        t.succeeded(&"ana", true);
        t.attempt(&"ana").expect("reset");
    }

    #[test]
    fn lockout_after_enough_failures() {
        let t = Throttle::new("x", policy(), 100);
        let now = Instant::now();
        // Simulate failures spread out so each passes its backoff.
        t.keys().insert(
            "ana",
            Failures {
                count: 6,
                last: now,
            },
        );
        let r = t.attempt(&"ana").expect_err("locked");
        assert!(r.retry_after > Duration::from_secs(800), "{r:?}");
        let f = Failures {
            count: 5,
            last: now - Duration::from_secs(3),
        };
        // 5 failures, free 3: the wait is 4 s after the last.
        assert_eq!(t.wait(&f, now), Some(Duration::from_secs(1)));
        let f = Failures {
            count: 5,
            last: now - Duration::from_secs(5),
        };
        assert_eq!(t.wait(&f, now), None);
    }

    #[test]
    fn state_is_bounded() {
        let t = Throttle::new("x", policy(), 1000);
        for k in 0..50_000u32 {
            let _ = t.attempt(&k);
        }
        assert!(t.len() <= 1000, "{}", t.len());
    }

    #[test]
    fn ipv6_by_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let m: IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
        assert_eq!(client_key(m), "10.1.2.3".parse::<IpAddr>().expect("ip"));
    }

    #[tokio::test]
    async fn a_full_hash_queue_refuses_at_once() {
        let h = Arc::new(Hasher::new(1, 1));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(Mutex::new(rx));
        let block = |rx: Arc<Mutex<std::sync::mpsc::Receiver<()>>>| {
            move |_: &mut Vec<Block>| {
                let _ = rx.lock().map(|r| r.recv());
            }
        };
        let h1 = h.clone();
        let r1 = rx.clone();
        let first = tokio::spawn(async move { h1.run(block(r1)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let h2 = h.clone();
        let r2 = rx.clone();
        let second = tokio::spawn(async move { h2.run(block(r2)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let third = h.run(|_| ()).await;
        assert!(
            matches!(third, Err(Error::RateLimited(r)) if r.retry_after == BUSY_RETRY),
            "{third:?}"
        );
        tx.send(()).expect("release");
        tx.send(()).expect("release");
        first.await.expect("join").expect("first ran");
        second.await.expect("join").expect("second ran");
        h.run(|_| ()).await.expect("free again");
    }
}
