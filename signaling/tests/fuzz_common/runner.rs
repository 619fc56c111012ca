//! Running fuzz cases: case counts and the proptest configuration, and a
//! runner that gives each case a fresh runtime and a deadline and fails it
//! on any panic, also one in a spawned task (a panic hook counts them).
//! Shared by the signaling fuzz tests and, by path, the root crate's.
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, PoisonError};
use std::time::Duration;

use proptest::prelude::*;

/// Cases per property: `PROPTEST_CASES`, else `default` times `FUZZ_SCALE`
/// (1 when unset; `scripts/fuzz` raises it).
pub fn cases(default: u32) -> u32 {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
    env("PROPTEST_CASES").unwrap_or_else(|| default.saturating_mul(env("FUZZ_SCALE").unwrap_or(1)))
}

/// The proptest configuration of a property: `PROPTEST_CASES` cases, else
/// `default`; no regression files written into the tree (a failure prints
/// its input and `scripts/fuzz` its seed).
pub fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Names of the case threads that panicked (one entry per panic).
static PANICKED: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// The prefix of the names of the threads that run a case's tasks.
const CASE_THREAD: &str = "fuzz-case-";

/// Counts every panic in this process, also those tokio catches in spawned
/// tasks (room actors, WebSocket sessions), which would otherwise only print.
pub fn watch_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Only the cases' runtime threads: other tests in this binary
            // run (and fail, by panicking) on their own threads meanwhile.
            if let Some(name) = std::thread::current().name() {
                if name.starts_with(CASE_THREAD) {
                    PANICKED
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(name.to_string());
                }
            }
            previous(info);
        }));
    });
}

/// Runs one case on a fresh multi-threaded runtime (its tasks die with it)
/// within `limit`; fails on any panic, anywhere, during the case.
pub fn run_case<F: Future<Output = Result<(), String>>>(
    limit: Duration,
    f: F,
) -> Result<(), TestCaseError> {
    watch_panics();
    static CASES: AtomicUsize = AtomicUsize::new(0);
    let name = format!("{CASE_THREAD}{}", CASES.fetch_add(1, Ordering::SeqCst));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name.clone())
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let out = rt.block_on(async {
        tokio::time::timeout(limit, f)
            .await
            .unwrap_or_else(|_| Err(format!("the case took longer than {limit:?}")))
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    let panics = {
        let mut all = PANICKED.lock().unwrap_or_else(PoisonError::into_inner);
        let before = all.len();
        all.retain(|n| *n != name);
        before - all.len()
    };
    if panics > 0 {
        return Err(TestCaseError::fail(format!(
            "{panics} panic(s) during the case"
        )));
    }
    out.map_err(TestCaseError::fail)
}
