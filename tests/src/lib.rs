//! Shared pieces of the workspace-level tests: the key and value scheme the worker process and
//! the tests agree on, and a file barrier that lines processes up.

use std::path::Path;
use std::time::{Duration, Instant};

/// The key of entry `index` written by the writer called `writer`.
pub fn worker_key(writer: &str, index: usize) -> Vec<u8> {
    format!("{writer}:{index:06}").into_bytes()
}

/// The value of entry `index` written by `writer`: distinct per entry, so that a value read under
/// the wrong key is caught.
pub fn worker_value(writer: &str, index: usize) -> Vec<u8> {
    format!("value of {writer} #{index} {}", "x".repeat(index % 97)).into_bytes()
}

/// Creates `<dir>/<me>` and waits until `<dir>/<other>` exists, or `limit` passes.
pub fn barrier(dir: &Path, me: &str, other: &str, limit: Duration) -> anyhow::Result<()> {
    std::fs::write(dir.join(me), b"")?;
    let started = Instant::now();
    while !dir.join(other).exists() {
        if started.elapsed() > limit {
            anyhow::bail!("barrier: {other} did not arrive within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}
