//! Capacity: size and entry limits, eviction, blobs, entry-owned directories, cleanup of what
//! nothing owns, compaction, and the root budget.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its location"
)]

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cache_core::{CacheError, CacheOptions, Compaction, Coordinator, EvictionPolicy, ManualClock};
use rstest::rstest;
use tempfile::TempDir;

use crate::{clock, coordinator, dead_temp_name, open, options_with, root, temp_name_of};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// `len` deterministic pseudo-random bytes, produced as they are read: nothing holds them all.
struct PatternReader {
    remaining: u64,
    state: u64,
}

impl PatternReader {
    fn new(len: u64, seed: u64) -> Self {
        PatternReader {
            remaining: len,
            state: seed | 1,
        }
    }
}

impl Read for PatternReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let len = buffer.len().min(self.remaining as usize);
        for chunk in buffer[..len].chunks_mut(8) {
            // xorshift64
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            chunk.copy_from_slice(&self.state.to_le_bytes()[..chunk.len()]);
        }
        self.remaining -= len as u64;
        Ok(len)
    }
}

fn pattern(len: u64, seed: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    PatternReader::new(len, seed)
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

/// Hashes and counts what is written to it, keeping none of it.
#[derive(Default)]
struct HashSink {
    hasher: blake3::Hasher,
    len: u64,
}

impl Write for HashSink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// The blob files of `tag` (temp files aside).
fn blob_files(root: &TempDir, tag: &str) -> Vec<PathBuf> {
    let blobs = root.path().join(tag).join("blobs");
    files_under(&blobs)
        .into_iter()
        .filter(|path| !path.starts_with(blobs.join("tmp")))
        .collect()
}

fn bytes_on_disk(paths: &[PathBuf]) -> u64 {
    paths
        .iter()
        .map(|path| fs::metadata(path).unwrap().len())
        .sum()
}

#[rstest]
#[case::least_recently_stored(EvictionPolicy::LeastRecentlyStored)]
#[case::least_recently_used(EvictionPolicy::LeastRecentlyUsed)]
fn a_tag_under_a_1_mib_limit_receiving_10_mib_ends_under_it(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
    #[case] policy: EvictionPolicy,
) {
    // Half of the values are blobs (over the 32 KiB threshold), half inline.
    let options = CacheOptions {
        max_size_bytes: MIB,
        blob_threshold_bytes: 32 * KIB,
        eviction_policy: policy,
        ..options_with(&clock)
    };
    let cache = open(&coordinator, &root, "t", options);
    cache
        .set(b"favourite", &pattern(20 * KIB, 99), None)
        .unwrap();
    let writes = 10 * MIB / (40 * KIB);
    for index in 0..writes {
        let len = if index % 2 == 0 { 40 * KIB } else { 20 * KIB };
        let mut value = pattern(len, index + 1);
        value.resize(40 * KIB as usize, 0);
        cache
            .set(format!("k{index:04}").as_bytes(), &value, None)
            .unwrap();
        if policy == EvictionPolicy::LeastRecentlyUsed {
            assert!(cache.get(b"favourite").unwrap().is_some());
        }
        clock.advance(Duration::from_millis(10));
    }
    cache.flush().unwrap();

    let stats = cache.get_stats().unwrap();
    assert!(stats.disk_bytes <= MIB, "{} bytes", stats.disk_bytes);
    assert!(
        bytes_on_disk(&blob_files(&root, "t")) <= MIB,
        "the blob files themselves are under the limit"
    );
    assert!(stats.counters.evictions > 0);
    assert_eq!(
        stats.counters.evictions,
        writes + 1 - stats.entries,
        "every entry that is gone was evicted, and counted"
    );
    let last = format!("k{:04}", writes - 1);
    assert!(cache.exists(last.as_bytes()).unwrap(), "the newest stays");
    assert!(!cache.exists(b"k0000").unwrap(), "the oldest went");
    assert_eq!(
        cache.exists(b"favourite").unwrap(),
        policy == EvictionPolicy::LeastRecentlyUsed,
        "kept only when recency of use counts"
    );
}

#[rstest]
#[case::empty(0)]
#[case::just_under(32 * KIB - 1)]
#[case::at(32 * KIB)]
#[case::just_over(32 * KIB + 1)]
#[case::well_over(300 * KIB)]
fn values_round_trip_on_both_sides_of_the_blob_threshold(
    root: TempDir,
    coordinator: Coordinator,
    #[case] len: u64,
) {
    let options = CacheOptions {
        blob_threshold_bytes: 32 * KIB,
        ..CacheOptions::default()
    };
    let cache = open(&coordinator, &root, "t", options);
    let value = pattern(len, 7);
    cache.set(b"bytes", &value, None).unwrap();
    assert_eq!(cache.get(b"bytes").unwrap(), Some(value.clone()));
    let stored = cache
        .set_from_reader(b"streamed", &mut PatternReader::new(len, 7), None)
        .unwrap();
    assert_eq!(stored, len);
    let mut out = Vec::new();
    assert_eq!(
        cache.get_to_writer(b"streamed", &mut out).unwrap(),
        Some(len)
    );
    assert_eq!(out, value);
    let metadata = cache.get_metadata(b"streamed").unwrap().unwrap();
    assert_eq!(metadata.size_bytes, len);
    cache.flush().unwrap();
    let blobs = blob_files(&root, "t");
    if len > 32 * KIB {
        assert_eq!(blobs.len(), 1, "one blob, shared by both entries");
        assert_eq!(bytes_on_disk(&blobs), len);
    } else {
        assert!(blobs.is_empty(), "stored inline");
    }
}

#[rstest]
fn a_256_mib_value_streams_in_and_out(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    let len = 256 * MIB;
    let mut expected = HashSink::default();
    io::copy(&mut PatternReader::new(len, 42), &mut expected).unwrap();
    assert_eq!(
        cache
            .set_from_reader(b"firmware", &mut PatternReader::new(len, 42), None)
            .unwrap(),
        len
    );
    let mut sink = HashSink::default();
    assert_eq!(
        cache.get_to_writer(b"firmware", &mut sink).unwrap(),
        Some(len)
    );
    assert_eq!(sink.len, len);
    assert_eq!(sink.hasher.finalize(), expected.hasher.finalize());

    let out = root.path().join("restored.bin");
    assert_eq!(cache.get_to_path(b"firmware", &out).unwrap(), Some(len));
    assert_eq!(fs::metadata(&out).unwrap().len(), len);
    assert!(cache.delete(b"firmware").unwrap());
    cache.flush().unwrap();
    assert!(blob_files(&root, "t").is_empty(), "its blob went with it");
}

#[rstest]
fn a_corrupted_blob_reads_as_a_miss_and_is_removed(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    cache.set(b"k", &pattern(MIB, 1), None).unwrap();
    let blob = blob_files(&root, "t").pop().unwrap();
    let mut damaged = fs::read(&blob).unwrap();
    damaged[1000] ^= 0xff;
    fs::write(&blob, damaged).unwrap();

    assert_eq!(cache.get(b"k").unwrap(), None);
    assert!(
        !cache.exists(b"k").unwrap(),
        "hidden from this process at once"
    );
    assert!(blob.exists(), "a read never writes: nothing removed yet");
    // The next commit judges the damage under the write lock and removes the entry, then the
    // blob file its entry no longer refers to.
    cache.flush().unwrap();
    assert!(!blob.exists(), "the damaged blob is removed");
    assert!(cache.keys().unwrap().is_empty(), "and its entry");
    let mut sink = Vec::new();
    assert_eq!(cache.get_to_writer(b"k", &mut sink).unwrap(), None);
    let stats = cache.get_stats().unwrap();
    assert!(stats.counters.errors >= 1, "logged and counted as an error");
    assert_eq!(stats.disk_bytes, 0);
}

#[rstest]
fn a_damaged_blob_never_reaches_a_writer(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    cache.set(b"k", &pattern(MIB, 1), None).unwrap();
    let blob = blob_files(&root, "t").pop().unwrap();
    let mut damaged = fs::read(&blob).unwrap();
    damaged[MIB as usize - 1] ^= 1;
    fs::write(&blob, damaged).unwrap();
    let mut sink = Vec::new();
    assert_eq!(cache.get_to_writer(b"k", &mut sink).unwrap(), None);
    assert!(sink.is_empty());
    let out = root.path().join("out.bin");
    fs::write(&out, b"previous").unwrap();
    assert_eq!(cache.get_to_path(b"k", &out).unwrap(), None);
    assert_eq!(fs::read(&out).unwrap(), b"previous", "left as it was");
}

#[rstest]
fn a_missing_blob_reads_as_a_miss(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    cache.set(b"k", &pattern(MIB, 1), None).unwrap();
    fs::remove_file(blob_files(&root, "t").pop().unwrap()).unwrap();
    assert_eq!(cache.get(b"k").unwrap(), None);
    assert!(!cache.exists(b"k").unwrap());
    cache.set(b"k", &pattern(MIB, 1), None).unwrap();
    assert_eq!(
        cache.get(b"k").unwrap(),
        Some(pattern(MIB, 1)),
        "the same content stored again brings its blob back"
    );
}

#[rstest]
fn identical_values_share_one_blob_until_the_last_entry_goes(
    root: TempDir,
    coordinator: Coordinator,
) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    let value = pattern(MIB, 3);
    cache.set(b"a", &value, None).unwrap();
    cache.set(b"b", &value, None).unwrap();
    assert_eq!(blob_files(&root, "t").len(), 1);
    let stats = cache.get_stats().unwrap();
    assert!(
        stats.disk_bytes < 2 * MIB,
        "the shared blob counts once in the limit: {}",
        stats.disk_bytes
    );
    cache.delete(b"a").unwrap();
    cache.flush().unwrap();
    assert_eq!(blob_files(&root, "t").len(), 1);
    assert_eq!(cache.get(b"b").unwrap(), Some(value));
    cache.set(b"b", b"small now", None).unwrap();
    cache.flush().unwrap();
    assert!(blob_files(&root, "t").is_empty(), "replaced: the blob went");
}

#[rstest]
fn cleanup_removes_orphans_and_entries_without_their_files(
    root: TempDir,
    coordinator: Coordinator,
) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    cache.set(b"kept", &pattern(MIB, 1), None).unwrap();
    cache.set(b"lost", &pattern(MIB, 2), None).unwrap();
    let lost_blob = {
        let mut sink = HashSink::default();
        sink.write_all(&pattern(MIB, 2)).unwrap();
        sink.hasher.finalize().to_hex().to_string()
    };
    fs::remove_file(
        root.path()
            .join("t/blobs")
            .join(&lost_blob[..2])
            .join(&lost_blob),
    )
    .unwrap();
    let orphan = root.path().join("t/blobs/ab").join("ab".repeat(32));
    fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    fs::write(&orphan, b"nobody's").unwrap();
    let stray = root.path().join("t/blobs/ab/not-a-blob.txt");
    fs::write(&stray, b"not ours").unwrap();
    let orphan_dir = root.path().join("t/dirs").join("cd".repeat(16));
    fs::create_dir_all(&orphan_dir).unwrap();

    let report = cache.cleanup().unwrap();
    assert_eq!(report.missing_files, 1);
    assert_eq!(report.orphan_files, 2);
    assert!(!orphan.exists() && !orphan_dir.exists());
    assert!(stray.exists(), "a file that is not ours is never touched");
    assert!(cache.exists(b"kept").unwrap());
    assert!(!cache.exists(b"lost").unwrap());
    assert_eq!(
        cache.cleanup().unwrap(),
        Default::default(),
        "nothing left to do"
    );
}

/// What `dir` occupies on disk, as `du` counts it: the allocated blocks of the directory and of
/// everything below it (files, directories, symlinks), found without following a symlink.
fn allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = fs::symlink_metadata(dir).unwrap().blocks() * 512;
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        total += if meta.is_dir() {
            allocated(&path)
        } else {
            meta.blocks() * 512
        };
    }
    total
}

/// Fills a staged directory with a small fake tree of `files` files of `len` bytes.
fn fill(dir: &Path, files: usize, len: usize) {
    fs::create_dir_all(dir.join("zmk/app")).unwrap();
    for index in 0..files {
        fs::write(dir.join(format!("zmk/app/f{index}")), vec![b'x'; len]).unwrap();
    }
}

#[rstest]
fn an_owned_directory_is_counted_and_goes_with_its_entry(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "compilation", CacheOptions::default());
    let staged = cache.stage_directory().unwrap();
    fill(staged.path(), 4, 1000);
    let stored = cache
        .set_directory(b"ws", staged, b"metadata", None)
        .unwrap()
        .unwrap();
    // Charged what it occupies on disk (issue 13, item 13), at least the files' 4000 bytes.
    assert_eq!(stored.size_bytes, allocated(&stored.path));
    assert!(stored.size_bytes >= 4000);
    assert!(stored.path.join("zmk/app/f3").is_file());
    assert!(cache.get_stats().unwrap().disk_bytes >= stored.size_bytes);
    let found = cache.get_directory(b"ws").unwrap().unwrap();
    assert_eq!(found, stored);
    assert_eq!(cache.get(b"ws").unwrap(), Some(b"metadata".to_vec()));
    assert_eq!(
        cache.get_metadata(b"ws").unwrap().unwrap().size_bytes,
        stored.size_bytes + 8
    );

    assert!(cache.delete(b"ws").unwrap());
    cache.flush().unwrap();
    assert!(!stored.path.exists(), "removed with its entry");
    assert_eq!(cache.get_stats().unwrap().disk_bytes, 0);
}

/// Issue 13, item 13: an owned directory of many one-byte files and empty directories is
/// charged what it occupies on disk (its allocated blocks), in the size limit and the stats,
/// not the few hundred bytes its files hold.
#[rstest]
fn trust_13_an_owned_directory_is_charged_its_allocated_size(
    root: TempDir,
    coordinator: Coordinator,
) {
    let cache = open(&coordinator, &root, "compilation", CacheOptions::default());
    let staged = cache.stage_directory().unwrap();
    for index in 0..300 {
        fs::write(staged.path().join(format!("one-{index}")), b"1").unwrap();
    }
    for index in 0..200 {
        fs::create_dir(staged.path().join(format!("empty-{index}"))).unwrap();
    }
    let on_disk = allocated(staged.path());
    let stored = cache
        .set_directory(b"ws", staged, b"", None)
        .unwrap()
        .unwrap();
    assert_eq!(stored.size_bytes, on_disk);
    assert!(
        stored.size_bytes >= 300 * 512,
        "every one-byte file takes a block at least: {}",
        stored.size_bytes
    );
    assert!(cache.get_stats().unwrap().disk_bytes >= on_disk);
    // A limit between the files' lengths and what they occupy refuses the directory.
    let small = open(
        &coordinator,
        &root,
        "small",
        CacheOptions {
            max_size_bytes: 64 * KIB,
            ..CacheOptions::default()
        },
    );
    let staged = small.stage_directory().unwrap();
    for index in 0..300 {
        fs::write(staged.path().join(format!("one-{index}")), b"1").unwrap();
    }
    let err = small.set_directory(b"ws", staged, b"", None).unwrap_err();
    assert!(matches!(err, CacheError::ValueTooLarge { .. }), "{err}");
}

#[rstest]
fn a_directory_whose_files_went_missing_is_a_miss(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "compilation", CacheOptions::default());
    let staged = cache.stage_directory().unwrap();
    fill(staged.path(), 1, 10);
    let stored = cache
        .set_directory(b"ws", staged, b"", None)
        .unwrap()
        .unwrap();
    fs::remove_dir_all(&stored.path).unwrap();
    assert_eq!(cache.get_directory(b"ws").unwrap(), None);
    assert!(!cache.exists(b"ws").unwrap(), "the entry went too");
}

#[rstest]
fn eviction_removes_owned_directories(root: TempDir, coordinator: Coordinator) {
    // Room for three of the five directories (each charged its allocated size).
    let sample = root.path().join("sample");
    fill(&sample, 3, 1000);
    let one = allocated(&sample);
    fs::remove_dir_all(&sample).unwrap();
    let options = CacheOptions {
        max_size_bytes: 3 * one + KIB,
        ..CacheOptions::default()
    };
    let cache = open(&coordinator, &root, "compilation", options);
    let mut paths = Vec::new();
    for index in 0..5u8 {
        let staged = cache.stage_directory().unwrap();
        fill(staged.path(), 3, 1000);
        let stored = cache
            .set_directory(&[index], staged, b"", None)
            .unwrap()
            .unwrap();
        paths.push(stored.path);
    }
    let stats = cache.get_stats().unwrap();
    assert!(stats.disk_bytes <= 3 * one + KIB);
    assert!(stats.counters.evictions >= 2);
    assert!(
        !paths[0].exists(),
        "the oldest directory was evicted with its entry"
    );
    assert!(paths[4].exists());
    let on_disk = files_under(&root.path().join("compilation/dirs"));
    assert_eq!(on_disk.len() as u64, 3 * stats.entries);
}

#[rstest]
fn a_directory_larger_than_the_limit_is_refused_and_nothing_is_evicted_for_it(
    root: TempDir,
    coordinator: Coordinator,
) {
    let options = CacheOptions {
        max_size_bytes: 10 * KIB,
        ..CacheOptions::default()
    };
    let cache = open(&coordinator, &root, "compilation", options);
    cache.set(b"small", b"kept", None).unwrap();
    let staged = cache.stage_directory().unwrap();
    fill(staged.path(), 11, 1000);
    let staged_path = staged.path().to_owned();
    let err = cache.set_directory(b"ws", staged, b"", None).unwrap_err();
    assert!(matches!(err, CacheError::ValueTooLarge { .. }), "{err}");
    assert!(
        !staged_path.exists(),
        "the refused directory is not left behind"
    );
    assert!(cache.exists(b"small").unwrap());
    assert_eq!(cache.get_stats().unwrap().counters.evictions, 0);
}

#[rstest]
fn a_directory_staged_by_another_tag_is_refused(root: TempDir, coordinator: Coordinator) {
    let one = open(&coordinator, &root, "one", CacheOptions::default());
    let two = open(&coordinator, &root, "two", CacheOptions::default());
    let staged = one.stage_directory().unwrap();
    let err = two.set_directory(b"k", staged, b"", None).unwrap_err();
    assert!(
        matches!(err, CacheError::ForeignStagedDirectory { .. }),
        "{err}"
    );
}

#[rstest]
fn a_value_larger_than_the_limit_is_refused_when_streamed_too(
    root: TempDir,
    coordinator: Coordinator,
) {
    let options = CacheOptions {
        max_size_bytes: MIB,
        ..CacheOptions::default()
    };
    let cache = open(&coordinator, &root, "t", options);
    cache.set(b"small", b"kept", None).unwrap();
    let err = cache
        .set_from_reader(b"big", &mut PatternReader::new(2 * MIB, 1), None)
        .unwrap_err();
    assert!(matches!(err, CacheError::ValueTooLarge { .. }), "{err}");
    assert!(cache.exists(b"small").unwrap());
    assert!(!cache.exists(b"big").unwrap());
    assert!(
        files_under(&root.path().join("t/blobs")).is_empty(),
        "no temp file left"
    );
}

#[rstest]
fn a_failing_source_stores_nothing(root: TempDir, coordinator: Coordinator) {
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("network went away"))
        }
    }
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    let err = cache.set_from_reader(b"k", &mut Failing, None).unwrap_err();
    assert!(matches!(err, CacheError::Source { .. }), "{err}");
    // The cause is the error's source, shown once by a chain printer.
    let shown = cache_core::ErrorChain(&err).to_string();
    assert!(shown.contains("network went away"), "{shown}");
    assert!(!cache.exists(b"k").unwrap());
}

#[rstest]
fn cleanup_compacts_a_file_that_is_mostly_dead_space(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    // 40 MiB of inline values (under the blob threshold), then all deleted.
    for index in 0..200u32 {
        cache
            .set(
                &index.to_be_bytes(),
                &pattern(200 * KIB, u64::from(index)),
                None,
            )
            .unwrap();
    }
    cache.flush().unwrap();
    cache.clear().unwrap();
    let report = cache.cleanup().unwrap();
    match report.compaction {
        Compaction::Compacted { before, after } => {
            assert!(after < before / 2, "{before} -> {after}")
        }
        other => panic!("expected a compaction, got {other:?}"),
    }
    cache.set(b"after", b"works", None).unwrap();
    assert_eq!(cache.get(b"after").unwrap(), Some(b"works".to_vec()));
    assert_eq!(cache.cleanup().unwrap().compaction, Compaction::NotNeeded);
}

#[rstest]
fn a_root_budget_is_shared_fairly_between_tags(root: TempDir, coordinator: Coordinator) {
    let options = CacheOptions {
        root_max_size_bytes: Some(MIB),
        ..CacheOptions::default()
    };
    let small = open(&coordinator, &root, "small", options.clone());
    let big = open(&coordinator, &root, "big", options);
    for index in 0..10u32 {
        small
            .set(&index.to_be_bytes(), &pattern(20 * KIB, 1), None)
            .unwrap();
    }
    small.flush().unwrap();
    // The big tag writes 3 MiB: it is cut to what the small one leaves.
    for index in 0..150u32 {
        big.set(&index.to_be_bytes(), &pattern(20 * KIB, 2), None)
            .unwrap();
        big.flush().unwrap();
    }
    let (small_stats, big_stats) = (small.get_stats().unwrap(), big.get_stats().unwrap());
    assert_eq!(small_stats.entries, 10, "the small tag lost nothing");
    assert_eq!(small_stats.counters.evictions, 0);
    assert!(big_stats.counters.evictions > 0);
    assert!(
        small_stats.disk_bytes + big_stats.disk_bytes <= MIB,
        "{} + {}",
        small_stats.disk_bytes,
        big_stats.disk_bytes
    );

    // The small tag grows, still under half the budget (its fair share against a tag that
    // wants more): it keeps its writes, and the big tag, now over the fair level, gives way at
    // its next commit.
    for index in 10..20u32 {
        small
            .set(&index.to_be_bytes(), &pattern(20 * KIB, 1), None)
            .unwrap();
    }
    small.flush().unwrap();
    assert_eq!(small.get_stats().unwrap().entries, 20);
    big.cleanup().unwrap();
    let (small_stats, big_stats) = (small.get_stats().unwrap(), big.get_stats().unwrap());
    assert!(small_stats.disk_bytes + big_stats.disk_bytes <= MIB);
    assert_eq!(small_stats.counters.evictions, 0);
}

#[rstest]
fn cleanup_removes_temp_files_of_dead_processes_and_keeps_live_ones(
    root: TempDir,
    coordinator: Coordinator,
) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    cache.set(b"k", &pattern(MIB, 1), None).unwrap();
    cache.stage_directory().unwrap(); // creates dirs/.staging, removed again at once
    let dead_temp = root.path().join("t/blobs/tmp").join(dead_temp_name("0"));
    let dead_staging = root
        .path()
        .join("t/dirs/.staging")
        .join(dead_temp_name("ab"));
    fs::write(&dead_temp, b"half a blob").unwrap();
    fs::create_dir_all(dead_staging.join("zmk")).unwrap();
    let live_staging = cache.stage_directory().unwrap();

    let report = cache.cleanup().unwrap();
    assert_eq!(report.temp_files, 2);
    assert!(!dead_temp.exists() && !dead_staging.exists());
    assert!(live_staging.path().is_dir(), "this process's staging stays");
    let last = cache.get_stats().unwrap().last_cleanup.unwrap();
    assert!(last.elapsed().unwrap_or_default() < Duration::from_secs(3600));
}

/// Issue 13, item 11: a temp file or staging directory whose writer cannot be judged here (it
/// belongs to another pid namespace: a container sharing the root, whose pids mean nothing in
/// this process table) is kept by cleanup until it is a day old, then removed.
#[rstest]
fn trust_11_cleanup_keeps_temps_of_another_pid_namespace_until_they_are_old(
    root: TempDir,
    coordinator: Coordinator,
) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    cache.set(b"k", &pattern(MIB, 1), None).unwrap();
    cache.stage_directory().unwrap(); // creates dirs/.staging, removed again at once
    // A pid that does not exist here, of another namespace (its own container, where it runs).
    let namespace = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let other_namespace: u64 = namespace
        .to_str()
        .and_then(|text| text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok())
        .map(|own: u64| own + 1)
        .unwrap();
    let foreign_temp = root.path().join("t/blobs/tmp").join(temp_name_of(
        4_000_000_000,
        Some(other_namespace),
        "0",
    ));
    let foreign_staging = root.path().join("t/dirs/.staging").join(temp_name_of(
        4_000_000_000,
        Some(other_namespace),
        "ab",
    ));
    fs::write(&foreign_temp, b"half a blob").unwrap();
    fs::create_dir_all(foreign_staging.join("zmk")).unwrap();
    fs::write(foreign_staging.join("zmk/file"), b"being imported").unwrap();

    assert_eq!(cache.cleanup().unwrap().temp_files, 0);
    assert!(foreign_temp.is_file() && foreign_staging.join("zmk/file").is_file());

    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(48 * 3600);
    for path in [&foreign_temp, &foreign_staging] {
        fs::File::open(path)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
    }
    assert_eq!(cache.cleanup().unwrap().temp_files, 2);
    assert!(!foreign_temp.exists() && !foreign_staging.exists());
}

/// Issue 13, item 15: another tag's usage file claiming an implausible size (garbage, or
/// stale: `u64::MAX` bytes in one entry) is ignored with a warning, so it cannot make this tag
/// evict under the root budget.
#[rstest]
fn trust_15_an_implausible_usage_file_of_another_tag_is_ignored(
    root: TempDir,
    coordinator: Coordinator,
) {
    let other = root.path().join("b");
    fs::create_dir(&other).unwrap();
    fs::write(other.join(cache_core::DATABASE_FILE_NAME), b"").unwrap();
    fs::write(other.join("usage"), b"18446744073709551615 1").unwrap();
    let options = CacheOptions {
        root_max_size_bytes: Some(8 * MIB),
        ..CacheOptions::default()
    };
    let cache = open(&coordinator, &root, "a", options);
    for index in 0..60u32 {
        cache
            .set(
                &index.to_be_bytes(),
                &pattern(100 * KIB, u64::from(index)),
                None,
            )
            .unwrap();
        cache.flush().unwrap();
    }
    let stats = cache.get_stats().unwrap();
    assert_eq!(stats.counters.evictions, 0);
    assert_eq!(stats.entries, 60);
    assert_eq!(
        fs::read(other.join("usage")).unwrap(),
        b"18446744073709551615 1",
        "another tag's file is only read"
    );
}

#[rstest]
fn files_round_trip_through_paths(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    let source = root.path().join("firmware.uf2");
    fs::write(&source, pattern(MIB, 5)).unwrap();
    assert_eq!(cache.set_from_path(b"uf2", &source, None).unwrap(), MIB);
    let target = root.path().join("restored.uf2");
    assert_eq!(cache.get_to_path(b"uf2", &target).unwrap(), Some(MIB));
    assert_eq!(fs::read(&target).unwrap(), pattern(MIB, 5));
    let err = cache
        .set_from_path(b"missing", &root.path().join("nope"), None)
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[rstest]
fn a_healthy_tag_passes_the_integrity_check(root: TempDir) {
    let cache = Coordinator::new()
        .get_shared_cache_instance(root.path(), "t", CacheOptions::default())
        .unwrap();
    cache.set(b"k", b"v", None).unwrap();
    assert!(cache.check_integrity().unwrap());
    assert_eq!(
        cache.get(b"k").unwrap(),
        Some(b"v".to_vec()),
        "usable after"
    );
}
