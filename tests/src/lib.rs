//! Shared pieces of the workspace-level tests: the key and value scheme the worker process and
//! the tests agree on, a file barrier that lines processes up, and the line files through which
//! single-flight workers record their calls and computations.

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

/// Appends `line` to the file at `path` (created if missing). One `write` of a short line to a
/// file opened for appending, so that lines of several processes never interleave.
pub fn append_line(path: &Path, line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(format!("{line}\n").as_bytes())?;
    Ok(())
}

/// The lines of the file at `path`; none when it does not exist.
pub fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Waits until the file at `path` has at least `count` lines, or `limit` passes.
pub fn until_lines(path: &Path, count: usize, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while lines_of(path).len() < count {
        if started.elapsed() > limit {
            anyhow::bail!(
                "{} did not reach {count} lines within {limit:?}",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// The value a single-flight worker computes: names the process that computed it.
pub fn computed_value(pid: u32) -> String {
    format!("computed by {pid}")
}
