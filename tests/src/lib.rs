//! Shared pieces of the workspace-level tests: the key and value schemes the worker process and
//! the tests agree on, a file barrier that lines processes up, a seeded generator both sides can
//! replay, the crash writer's script, the sizes the suites read from the environment, and the
//! line files through which single-flight workers record their calls and computations, and the
//! large (blob-sized) values of the kill tests with blobs; `trees`, the generated trees of the
//! deduplication tests.

pub mod trees;

use std::collections::BTreeMap;
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
    gather(dir, me, &[other], limit)
}

/// Creates `<dir>/<me>` and waits until `<dir>/<name>` exists for every name in `everyone` (which
/// may include `me`), or `limit` passes: an N-process barrier.
pub fn gather(dir: &Path, me: &str, everyone: &[&str], limit: Duration) -> anyhow::Result<()> {
    std::fs::write(dir.join(me), b"")?;
    let started = Instant::now();
    for other in everyone {
        while !dir.join(other).exists() {
            if started.elapsed() > limit {
                anyhow::bail!("barrier: {other} did not arrive within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
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

/// A small seeded generator (splitmix64): the crash test replays the worker's exact operations
/// from the seed alone, so both sides need the same generator, and a failure names its seed.
#[derive(Clone, Debug)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0); the slight modulo bias does not matter here.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
}

/// A value that names the key it was written under, its writer and the write's sequence number,
/// padded to a length derived from them: [`check_stamped`] rebuilds it from those, so a value
/// read under the wrong key, torn, or mixed with another is caught.
pub fn stamped_value(key: &[u8], writer: &str, seq: u64) -> Vec<u8> {
    let mut value = format!("v1|{writer}|{seq}|").into_bytes();
    value.extend_from_slice(key);
    value.push(b'|');
    let fill = b'a' + (seq % 26) as u8;
    let padding = (seq.wrapping_mul(7919) % 300) as usize;
    value.extend(std::iter::repeat_n(fill, padding));
    value
}

/// Checks that `value` is exactly what [`stamped_value`] writes for `key` under the writer and
/// sequence number it names; returns those.
pub fn check_stamped(key: &[u8], value: &[u8]) -> Result<(String, u64), String> {
    let text = String::from_utf8_lossy(value);
    let mut fields = text.splitn(4, '|');
    let (Some("v1"), Some(writer), Some(seq)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(format!("value {text:?} under key {key:?} is not stamped"));
    };
    let seq: u64 = seq
        .parse()
        .map_err(|_| format!("value {text:?} has no sequence number"))?;
    if stamped_value(key, writer, seq) != value {
        return Err(format!(
            "value {text:?} read under key {:?} is not the one {writer} wrote as #{seq}",
            String::from_utf8_lossy(key)
        ));
    }
    Ok((writer.to_owned(), seq))
}

/// The value of entry `index` of the disk-full writer: stamped, then padded with a byte derived
/// from `index` to `len` bytes, so a torn or misplaced value is caught.
pub fn fill_value(key: &[u8], index: u64, len: usize) -> Vec<u8> {
    let mut value = stamped_value(key, "fill", index);
    let pad = (index % 251) as u8;
    value.resize(len.max(value.len()), pad);
    value
}

/// A blob-sized value: [`stamped_value`] for `key`, `writer` and `seq`, then padded to `len`
/// bytes with a pattern that depends on `seq` and the position, so that a torn, shortened or
/// misplaced value is caught by [`check_blob_value`].
pub fn blob_value(key: &[u8], writer: &str, seq: u64, len: usize) -> Vec<u8> {
    let mut value = stamped_value(key, writer, seq);
    let stamp_len = value.len();
    value.extend(
        (stamp_len..len.max(stamp_len))
            .map(|position| (seq.wrapping_add(position as u64) % 251) as u8),
    );
    value
}

/// Checks that `value` is exactly the [`blob_value`] of `len` bytes for `key` under the writer
/// and sequence number it names; returns those.
pub fn check_blob_value(key: &[u8], value: &[u8], len: usize) -> Result<(String, u64), String> {
    let (writer, seq) = stamp_of(key, value)?;
    if blob_value(key, &writer, seq, len) != value {
        return Err(format!(
            "a {}-byte value read under key {:?} is not the {len}-byte value {writer} wrote as #{seq}",
            value.len(),
            String::from_utf8_lossy(key)
        ));
    }
    Ok((writer, seq))
}

/// The writer and sequence number a stamped value names, unchecked.
fn stamp_of(key: &[u8], value: &[u8]) -> Result<(String, u64), String> {
    let head = String::from_utf8_lossy(&value[..value.len().min(128)]).into_owned();
    let mut fields = head.splitn(4, '|');
    let (Some("v1"), Some(writer), Some(seq)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(format!(
            "value starting {head:?} under key {:?} is not stamped",
            String::from_utf8_lossy(key)
        ));
    };
    let seq = seq
        .parse()
        .map_err(|_| format!("value starting {head:?} has no sequence number"))?;
    Ok((writer.to_owned(), seq))
}

/// The blob threshold the kill tests with blobs open their writers with: small, so that a
/// thousand blob entries take a few megabytes and a few seconds, not gigabytes.
pub const TEST_BLOB_THRESHOLD: u64 = 1024;

/// The length of the blob value the crash script stores with sequence number `seq`: between 2
/// and 8 KiB, always above [`TEST_BLOB_THRESHOLD`].
pub fn crash_blob_len(seq: u64) -> usize {
    2048 + (seq.wrapping_mul(7919) % 6144) as usize
}

/// One operation of the crash writer's script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashOp {
    /// Set key number `key` to the value stamped with `seq`.
    Set {
        /// Which of the script's keys.
        key: u64,
        /// The write's sequence number.
        seq: u64,
    },
    /// Set key number `key` to the blob-sized value stamped with `seq`
    /// ([`blob_value`] of [`crash_blob_len`] bytes). Only the blob script has these; a `seq` that
    /// repeats stores the same content again, so the same blob file.
    SetBlob {
        /// Which of the script's keys.
        key: u64,
        /// The write's sequence number.
        seq: u64,
    },
    /// Delete key number `key`.
    Delete {
        /// Which of the script's keys.
        key: u64,
    },
    /// `cleanup()`: a transaction of its own that removes nothing (no entry has a TTL).
    Cleanup,
    /// `clear()`: removes every entry, in a transaction of its own.
    Clear,
}

/// The key of the crash script's key number `index`.
pub fn crash_key(index: u64) -> Vec<u8> {
    format!("crash:{index:05}").into_bytes()
}

/// The crash writer's operations for `seed` over `keys` keys: deterministic, so the test replays
/// exactly what the killed worker did. Sequence numbers start at `seed << 32`, so that values of
/// different rounds on one root never coincide.
pub fn crash_script(seed: u64, keys: u64) -> impl Iterator<Item = CrashOp> {
    let mut rng = SeededRng::new(seed);
    (0u64..).map(move |index| match rng.below(1000) {
        0..=699 => CrashOp::Set {
            key: rng.below(keys),
            seq: (seed << 32) + index,
        },
        700..=969 => CrashOp::Delete {
            key: rng.below(keys),
        },
        970..=998 => CrashOp::Cleanup,
        _ => CrashOp::Clear,
    })
}

/// The blob crash writer's operations for `seed` over `keys` keys: small sets, blob sets (fresh
/// content, or the key's one fixed content again, which reuses its blob file), deletes, cleanups
/// and clears, so that blob-valued keys are overwritten by blobs and by small values, deleted,
/// stored again and cleared. Deterministic like [`crash_script`].
pub fn blob_crash_script(seed: u64, keys: u64) -> impl Iterator<Item = CrashOp> {
    let mut rng = SeededRng::new(seed ^ 0xB10B);
    (0u64..).map(move |index| match rng.below(1000) {
        0..=299 => CrashOp::Set {
            key: rng.below(keys),
            seq: (seed << 32) + index,
        },
        300..=549 => CrashOp::SetBlob {
            key: rng.below(keys),
            seq: (seed << 32) + index,
        },
        550..=649 => {
            // The key's fixed content: the same bytes every time, in every round.
            let key = rng.below(keys);
            CrashOp::SetBlob { key, seq: key }
        }
        650..=919 => CrashOp::Delete {
            key: rng.below(keys),
        },
        920..=979 => CrashOp::Cleanup,
        _ => CrashOp::Clear,
    })
}

/// The value a crash operation that sets stores under its key.
pub fn crash_value(op: CrashOp) -> Option<(Vec<u8>, Vec<u8>)> {
    match op {
        CrashOp::Set { key, seq } => {
            let key = crash_key(key);
            let value = stamped_value(&key, CRASH_WRITER, seq);
            Some((key, value))
        }
        CrashOp::SetBlob { key, seq } => {
            let key = crash_key(key);
            let value = blob_value(&key, CRASH_WRITER, seq, crash_blob_len(seq));
            Some((key, value))
        }
        CrashOp::Delete { .. } | CrashOp::Cleanup | CrashOp::Clear => None,
    }
}

/// Checks that `value` is exactly a value one of the crash scripts stores under `key`, small or
/// blob-sized.
pub fn check_crash_value(key: &[u8], value: &[u8]) -> Result<(String, u64), String> {
    let (_, seq) = stamp_of(key, value)?;
    if value.len() == crash_blob_len(seq) {
        check_blob_value(key, value, crash_blob_len(seq))
    } else {
        check_stamped(key, value)
    }
}

/// The writer name the crash script stamps its values with.
pub const CRASH_WRITER: &str = "crash";

/// Applies one crash operation to a model of the stored entries.
pub fn apply_crash_op(model: &mut BTreeMap<Vec<u8>, Vec<u8>>, op: CrashOp) {
    match op {
        CrashOp::Set { .. } | CrashOp::SetBlob { .. } => {
            if let Some((key, value)) = crash_value(op) {
                model.insert(key, value);
            }
        }
        CrashOp::Delete { key } => {
            model.remove(&crash_key(key));
        }
        CrashOp::Cleanup => {}
        CrashOp::Clear => model.clear(),
    }
}

/// Whether the soak variants were asked for (`CACHE_SOAK=1`, as `cargo xtask soak` sets).
pub fn soak() -> bool {
    std::env::var("CACHE_SOAK").is_ok_and(|value| value == "1")
}

/// A size a suite reads from the environment: `name` if set, else `soak_default` under
/// [`soak`], else `default`. An unparsable value is an error, not a silent default.
pub fn size_from_env(name: &str, default: u64, soak_default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={value:?} is not a number")),
        Err(_) if soak() => Ok(soak_default),
        Err(_) => Ok(default),
    }
}

/// The 300 KB value `cache-worker contain ... set` stores: a blob (above the default 256 KiB
/// threshold), the same bytes every time.
pub fn large_value() -> Vec<u8> {
    (0..300_000u32)
        .map(|index| (index % 251) as u8 ^ (index >> 11) as u8)
        .collect()
}

/// The firmware build the machines of the remote-tier scenarios ask for (`remote_builds.rs`,
/// the worker's `remote-build`).
pub fn fleet_build_inputs() -> cache_compilation::BuildInputs {
    cache_compilation::BuildInputs::new("zmkfirmware/zmk", "main", "keymap-hash", "config-hash")
        .pinned(
            "4f1c6e0d9b2a8c7e5f3d1b0a9c8e7f6d5c4b3a29",
            "zmkfirmware/zmk-build-arm@sha256:8b1a9953c4611296a827abf8c47804d7e6c49c6b2b6bd4f8e3f6a1c2b5d7e9f0",
        )
        .with_board("glove80_lh")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_values_check_exactly() {
        let value = stamped_value(b"k1", "w", 42);
        assert_eq!(check_stamped(b"k1", &value), Ok(("w".to_owned(), 42)));
        assert!(
            check_stamped(b"k2", &value).is_err(),
            "a value under the wrong key"
        );
        let mut torn = value.clone();
        torn.pop();
        assert!(check_stamped(b"k1", &torn).is_err(), "a shortened value");
        assert!(check_stamped(b"k1", b"garbage").is_err());
    }

    #[test]
    fn blob_values_check_exactly() {
        let value = blob_value(b"k1", "w", 7, 4096);
        assert_eq!(value.len(), 4096);
        assert_eq!(
            check_blob_value(b"k1", &value, 4096),
            Ok(("w".to_owned(), 7))
        );
        assert!(check_blob_value(b"k2", &value, 4096).is_err(), "wrong key");
        assert!(
            check_blob_value(b"k1", &value[..4095], 4096).is_err(),
            "torn"
        );
        let mut swapped = value.clone();
        swapped.swap(1000, 2000);
        assert!(
            check_blob_value(b"k1", &swapped, 4096).is_err(),
            "misplaced bytes"
        );
        let (key, blob) = crash_value(CrashOp::SetBlob { key: 3, seq: 99 }).unwrap();
        assert!(blob.len() as u64 > TEST_BLOB_THRESHOLD);
        assert_eq!(
            check_crash_value(&key, &blob),
            Ok((CRASH_WRITER.to_owned(), 99))
        );
        let (key, small) = crash_value(CrashOp::Set { key: 3, seq: 99 }).unwrap();
        assert_eq!(
            check_crash_value(&key, &small),
            Ok((CRASH_WRITER.to_owned(), 99))
        );
    }

    #[test]
    fn the_blob_crash_script_is_replayable_and_mixed() {
        let first: Vec<CrashOp> = blob_crash_script(7, 40).take(2000).collect();
        let again: Vec<CrashOp> = blob_crash_script(7, 40).take(2000).collect();
        assert_eq!(first, again);
        for kind in [
            |op: &CrashOp| matches!(op, CrashOp::Set { .. }),
            |op: &CrashOp| matches!(op, CrashOp::SetBlob { seq, .. } if *seq > 1 << 32),
            |op: &CrashOp| matches!(op, CrashOp::SetBlob { seq, .. } if *seq < 40),
            |op: &CrashOp| matches!(op, CrashOp::Delete { .. }),
            |op: &CrashOp| matches!(op, CrashOp::Cleanup),
            |op: &CrashOp| matches!(op, CrashOp::Clear),
        ] {
            assert!(first.iter().any(kind), "every kind of operation occurs");
        }
    }

    #[test]
    fn the_crash_script_is_replayable_and_mixed() {
        let first: Vec<CrashOp> = crash_script(7, 50).take(2000).collect();
        let again: Vec<CrashOp> = crash_script(7, 50).take(2000).collect();
        assert_eq!(first, again);
        for kind in [
            |op: &CrashOp| matches!(op, CrashOp::Set { .. }),
            |op: &CrashOp| matches!(op, CrashOp::Delete { .. }),
            |op: &CrashOp| matches!(op, CrashOp::Cleanup),
            |op: &CrashOp| matches!(op, CrashOp::Clear),
        ] {
            assert!(first.iter().any(kind), "every kind of operation occurs");
        }
    }
}
