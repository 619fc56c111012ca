//! Helpers shared by the STUN and TURN fuzz tests (`fuzz_stun_turn.rs`,
//! `fuzz_turn_actor.rs`): case counts and the proptest configuration, a
//! runner that gives each case a fresh runtime and a deadline and fails it on
//! any panic (a panic hook counts them, including those in spawned tasks),
//! and the splitting of a stream into arbitrary reads.

use std::future::Future;
use std::time::Duration;

use proptest::prelude::*;

/// The case runner of the signaling fuzz tests (case counts, proptest
/// configuration, the panic watch), shared by path.
#[path = "../../signaling/tests/fuzz_common/runner.rs"]
mod runner;

#[allow(unused_imports)]
pub use runner::{cases, config, watch_panics};

/// Runs one case on a fresh runtime within 20 s; fails on any panic in the
/// case's tasks.
pub fn run_case<F: Future<Output = Result<(), String>>>(f: F) -> Result<(), TestCaseError> {
    runner::run_case(Duration::from_secs(20), f)
}

/// Splits `data` at cut points (arbitrary read boundaries).
pub fn chunks(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    at.extend([0, data.len()]);
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| data[w[0]..w[1]].to_vec()).collect()
}
