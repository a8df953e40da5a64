//! Unit tests of the store that need its private parts: commits in progress, close, panics,
//! the buffer and back-pressure, the reads file, free space. Over 600 lines as a test file: one
//! test per behaviour of private state, which no integration test can reach.

use super::*;
use crate::files::prepare_root;

/// The untyped forms of the handle's `set`, `get` and `set_many`, for tests that hold the store
/// itself (these, the fault suite's).
impl RedbCache {
    pub(crate) fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.set_with_format(key, value, ttl, ValueFormat::RAW)
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_with_format(key, ValueFormat::RAW, AnyFormat::Yes)
    }

    pub(crate) fn set_many(&self, items: &[(&[u8], &[u8])], ttl: Option<Duration>) -> Result<()> {
        self.set_many_with_format(items, ttl, ValueFormat::RAW)
    }

    /// Appends to the reads file what a process that only read would leave at its close:
    /// `reads` of each of `keys`, by this instance's access hash.
    pub(super) fn leave_reads_of(&self, keys: &[&[u8]], reads: AccessDelta) {
        let hasher = self.access.hasher();
        let mut left = ReadsBatch {
            seeds: hasher.seeds(),
            ..ReadsBatch::default()
        };
        for key in keys {
            left.access.insert(hasher.hash(key), reads);
        }
        self.reads_file.append(&left).unwrap();
    }
}

fn open_in(root: &Path, options: CacheOptions) -> Arc<RedbCache> {
    let canonical = prepare_root(root).unwrap();
    RedbCache::open(&canonical, Tag::new("t").unwrap(), options).unwrap()
}

/// How long a test lets a call that should wait run before it lets the wait end. On fixed
/// code both branches assert the same thing, so the figure only decides how likely the
/// test is to catch the old defect, never whether correct code passes.
const LET_IT_WAIT: Duration = Duration::from_secs(2);

/// Runs `call` on a thread while a commit of this instance is held in progress (its writes
/// taken from the buffer, its transaction not yet committed), lets the commit land after
/// `call` returned or after [`LET_IT_WAIT`], and returns what `call` returned.
fn during_a_commit_in_progress<T: Send + 'static>(
    cache: &Arc<RedbCache>,
    call: impl FnOnce(&RedbCache) -> T + Send + 'static,
) -> T {
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let committing = {
        let cache = Arc::clone(cache);
        std::thread::spawn(move || {
            cache
                .write(|_, _| {
                    entered_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    Ok(())
                })
                .unwrap();
        })
    };
    entered_rx.recv().unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let caller = {
        let cache = Arc::clone(cache);
        std::thread::spawn(move || done_tx.send(call(&cache)).unwrap())
    };
    let result = match done_rx.recv_timeout(LET_IT_WAIT) {
        Ok(result) => {
            release_tx.send(()).unwrap();
            result
        }
        Err(_) => {
            release_tx.send(()).unwrap();
            done_rx.recv().unwrap()
        }
    };
    caller.join().unwrap();
    committing.join().unwrap();
    result
}

/// Trust item 1: a write the commit thread has taken into its in-flight set, and not yet
/// committed, was invisible to `keys()` (it committed only what was still pending, then
/// scanned the file).
#[test]
fn trust_01_keys_and_stats_see_writes_of_a_commit_in_progress() {
    let root = tempfile::tempdir().unwrap();
    let cache = open_in(root.path(), CacheOptions::default());
    cache.set(b"in-flight", b"value", None).unwrap();
    let keys = during_a_commit_in_progress(&cache, |cache| cache.keys().unwrap());
    assert_eq!(keys, vec![b"in-flight".to_vec()]);

    cache.set(b"second", b"value", None).unwrap();
    let stats = during_a_commit_in_progress(&cache, |cache| cache.get_stats().unwrap());
    assert_eq!(stats.entries, 2, "{stats:?}");
}

/// `flush()` must not return while the commit thread is still committing this process's
/// writes (it did not before either, but only because the commit's counters were still
/// unpersisted: this keeps it so by rule).
#[test]
fn flush_returns_only_once_a_commit_in_progress_has_landed() {
    let root = tempfile::tempdir().unwrap();
    let cache = open_in(root.path(), CacheOptions::default());
    cache.set(b"in-flight", b"value", None).unwrap();
    let seen_by_a_fresh_reader = during_a_commit_in_progress(&cache, |cache| {
        cache.flush().unwrap();
        let open = cache.open_database().unwrap();
        let txn = open.database.begin_read().unwrap();
        let entries = txn.open_table(ENTRIES).unwrap();
        entries.get(b"in-flight".as_slice()).unwrap().is_some()
    });
    assert!(seen_by_a_fresh_reader, "flushed, so committed");
}

/// Trust item 4: `close()` returned while another thread (the commit thread, in the field)
/// still held the database handle, so the file stayed registered and opening the tag again
/// right after failed with `AlreadyOpenInProcess`.
#[test]
fn trust_04_close_returns_only_once_the_file_is_released() {
    let root = tempfile::tempdir().unwrap();
    let cache = open_in(root.path(), CacheOptions::default());
    cache.set(b"k", b"v", None).unwrap();
    let held = cache.open_database().unwrap();
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    let closing = {
        let cache = Arc::clone(&cache);
        std::thread::spawn(move || closed_tx.send(cache.close()).unwrap())
    };
    let closed = match closed_rx.recv_timeout(LET_IT_WAIT) {
        Ok(closed) => {
            let reopened = RedbCache::open(
                &prepare_root(root.path()).unwrap(),
                Tag::new("t").unwrap(),
                CacheOptions::default(),
            );
            assert!(
                reopened.is_ok(),
                "close returned, so the file is released: {:?}",
                reopened.err()
            );
            drop(held);
            closed
        }
        Err(_) => {
            drop(held);
            closed_rx.recv().unwrap()
        }
    };
    closing.join().unwrap();
    closed.unwrap();
    let reopened = RedbCache::open(
        &prepare_root(root.path()).unwrap(),
        Tag::new("t").unwrap(),
        CacheOptions::default(),
    )
    .unwrap();
    assert_eq!(reopened.get(b"k").unwrap(), Some(b"v".to_vec()));
}

/// The committed entry bytes of `key`, read in a fresh transaction.
fn committed(cache: &RedbCache, key: &[u8]) -> Option<Vec<u8>> {
    let open = cache.open_database().unwrap();
    let txn = open.database.begin_read().unwrap();
    let entries = txn.open_table(ENTRIES).unwrap();
    entries.get(key).unwrap().map(|row| row.value().to_vec())
}

fn blob_path(cache: &RedbCache, stored: &[u8]) -> PathBuf {
    let Owned {
        blob: Some(blob), ..
    } = Owned::of(stored)
    else {
        panic!("a blob entry")
    };
    cache.blob_files.path(&blob)
}

/// Trust item 3: a read that found an entry's blob missing removed "the entry if it still
/// refers to that blob" at once; blob names are content hashes, so an entry stored again
/// since with the same content matched and the fresh entry was removed. Now a read only
/// reports; a commit removes the entry under the write lock, and only the very version the
/// read saw, and only if its damage is still there.
#[test]
fn trust_03_a_read_never_removes_an_entry_and_a_fresh_version_survives() {
    let root = tempfile::tempdir().unwrap();
    let options = CacheOptions {
        blob_threshold_bytes: 16,
        ..CacheOptions::default()
    };
    let cache = open_in(root.path(), options);
    let value = vec![7u8; 4096];
    cache.set(b"k", &value, None).unwrap();
    cache.flush().unwrap();
    let first = committed(&cache, b"k").unwrap();
    std::fs::remove_file(blob_path(&cache, &first)).unwrap();

    assert_eq!(cache.get(b"k").unwrap(), None, "a missing blob is a miss");
    assert_eq!(
        committed(&cache, b"k"),
        Some(first.clone()),
        "the read wrote nothing"
    );

    // Stored again with the same content: the same blob name, a new version of the entry.
    // The commit that stores it also judges the suspect, which is no longer current.
    cache.set(b"k", &value, None).unwrap();
    cache.flush().unwrap();
    assert_eq!(
        cache.get(b"k").unwrap(),
        Some(value.clone()),
        "fresh entry kept"
    );

    // Damage still there at the next commit, on the very version read: removed then.
    let second = committed(&cache, b"k").unwrap();
    std::fs::remove_file(blob_path(&cache, &second)).unwrap();
    assert_eq!(cache.get(b"k").unwrap(), None);
    cache.set(b"other", b"x", None).unwrap();
    cache.flush().unwrap();
    assert_eq!(
        committed(&cache, b"k"),
        None,
        "damaged entry removed by a writer"
    );
    assert_eq!(cache.keys().unwrap(), vec![b"other".to_vec()]);
}

/// The mechanism behind the garbage-block fault test, made deterministic: a panic inside an
/// operation (as redb's on a damaged page) moves the file aside, starts a fresh 0600 file
/// with its tables, and keeps this process's buffered writes.
#[test]
fn a_panic_inside_an_operation_quarantines_the_file_and_keeps_buffered_writes() {
    let root = tempfile::tempdir().unwrap();
    let cache = open_in(
        root.path(),
        CacheOptions {
            commit_interval: Duration::from_secs(3600),
            ..CacheOptions::default()
        },
    );
    cache.set(b"flushed", b"v", None).unwrap();
    cache.flush().unwrap();
    cache.set(b"buffered", b"w", None).unwrap();
    let err = cache
        .catching_panics("get", || -> Result<()> {
            panic!("as redb asserts on a damaged page")
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            CacheError::Damaged {
                operation: "get",
                ..
            }
        ),
        "{err}"
    );
    let aside: Vec<_> = std::fs::read_dir(cache.tag_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("cache.redb.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cache.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(
        cache.get(b"flushed").unwrap(),
        None,
        "the old file's entries are gone"
    );
    assert_eq!(cache.get(b"buffered").unwrap(), Some(b"w".to_vec()));
    cache.flush().unwrap();
    assert_eq!(cache.keys().unwrap(), vec![b"buffered".to_vec()]);
    assert_eq!(cache.get_stats().unwrap().entries, 1);
}

#[test]
fn a_second_open_of_one_file_in_one_process_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let canonical = prepare_root(root.path()).unwrap();
    let tag = Tag::new("t").unwrap();
    let first = RedbCache::open(&canonical, tag.clone(), CacheOptions::default()).unwrap();
    let second = RedbCache::open(&canonical, tag.clone(), CacheOptions::default()).unwrap_err();
    assert!(
        matches!(second, CacheError::AlreadyOpenInProcess { .. }),
        "{second}"
    );
    first.close().unwrap();
    // Closing releases the registration: the file can be opened again.
    RedbCache::open(&canonical, tag, CacheOptions::default()).unwrap();
}

#[test]
fn writes_are_buffered_until_the_commit_interval_or_a_flush() {
    let root = tempfile::tempdir().unwrap();
    let options = CacheOptions {
        commit_interval: Duration::from_secs(3600),
        ..CacheOptions::default()
    };
    let cache = open_in(root.path(), options);
    cache.set(b"k", b"v", None).unwrap();
    assert_eq!(
        cache.get(b"k").unwrap(),
        Some(b"v".to_vec()),
        "a process reads its own writes at once"
    );
    assert_eq!(lock(&cache.buffer).pending_len(), 1, "not committed yet");
    cache.flush().unwrap();
    assert!(lock(&cache.buffer).pending_len() == 0);
    assert_eq!(cache.get(b"k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn the_commit_thread_commits_within_the_interval() {
    let root = tempfile::tempdir().unwrap();
    let options = CacheOptions {
        commit_interval: Duration::from_millis(5),
        ..CacheOptions::default()
    };
    let cache = open_in(root.path(), options);
    cache.set(b"k", b"v", None).unwrap();
    // Waits for an event, not a duration: the loop ends as soon as the buffer is committed,
    // and only a commit thread that never runs would exhaust it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while lock(&cache.buffer).pending_len() != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        lock(&cache.buffer).pending_len() == 0,
        "the commit thread never committed"
    );
}

/// An instance whose commit thread never wakes in a test and whose buffer holds 1 KiB: only
/// back-pressure commits.
fn open_with_a_1_kib_buffer(root: &Path) -> Arc<RedbCache> {
    open_in(
        root,
        CacheOptions {
            commit_interval: Duration::from_secs(3600),
            max_pending_bytes: 1024,
            ..CacheOptions::default()
        },
    )
}

/// The header length of an untyped entry without expiry written by `cache` now: the exact size
/// a test expects its entries to take (the created time's varint has the same length for any
/// time from 1971 to 2109).
fn untyped_header_len_now(cache: &RedbCache) -> usize {
    EntryHeader {
        kind: EntryKind::Inline,
        format: ValueFormat::RAW,
        created_ms: cache.now_ms(),
        expires_ms: None,
    }
    .encoded_len()
}

#[test]
fn back_pressure_commits_in_the_writer_when_the_buffer_is_full() {
    let root = tempfile::tempdir().unwrap();
    let cache = open_with_a_1_kib_buffer(root.path());
    for index in 0..20u8 {
        cache.set(&[b'k', index], &[0u8; 100], None).unwrap();
        assert!(lock(&cache.buffer).pending_bytes() <= 1024 + 2 + 100 + ENTRY_HEADER_MAX_LEN);
    }
    assert!(
        lock(&cache.buffer).pending_len() < 20,
        "some writes were committed by the writer itself"
    );
}

#[test]
fn set_many_with_one_invalid_item_stores_none_of_them() {
    let root = tempfile::tempdir().unwrap();
    let options = CacheOptions {
        max_value_bytes: 8,
        ..CacheOptions::default()
    };
    let cache = open_in(root.path(), options);
    let items: [(&[u8], &[u8]); 3] = [(b"a", b"ok"), (b"b", b"far too long"), (b"c", b"ok")];
    let err = cache
        .set_many_with_format(&items, None, ValueFormat::RAW)
        .unwrap_err();
    assert!(matches!(err, CacheError::ValueTooLarge { .. }), "{err}");
    assert!(lock(&cache.buffer).pending_len() == 0);
    assert_eq!(cache.keys().unwrap(), Vec::<Vec<u8>>::new());
}

#[test]
fn set_many_buffers_all_items_for_one_commit() {
    let root = tempfile::tempdir().unwrap();
    let options = CacheOptions {
        commit_interval: Duration::from_secs(3600),
        ..CacheOptions::default()
    };
    let cache = open_in(root.path(), options);
    let items: Vec<(Vec<u8>, Vec<u8>)> = (0..100u32)
        .map(|i| (i.to_be_bytes().to_vec(), vec![1u8; 10]))
        .collect();
    let borrowed: Vec<(&[u8], &[u8])> = items
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    cache
        .set_many_with_format(&borrowed, None, ValueFormat::RAW)
        .unwrap();
    assert_eq!(lock(&cache.buffer).pending_len(), 100);
    assert_eq!(
        cache.keys().unwrap().len(),
        100,
        "keys() commits the buffer and scans the file"
    );
}

#[test]
fn a_corrupt_file_is_quarantined_and_the_tag_starts_empty() {
    let root = tempfile::tempdir().unwrap();
    let canonical = prepare_root(root.path()).unwrap();
    let tag_dir = canonical.join("t");
    std::fs::create_dir(&tag_dir).unwrap();
    std::fs::write(tag_dir.join(DATABASE_FILE_NAME), vec![0xA5u8; 64 * 1024]).unwrap();
    let cache =
        RedbCache::open(&canonical, Tag::new("t").unwrap(), CacheOptions::default()).unwrap();
    assert_eq!(cache.keys().unwrap(), Vec::<Vec<u8>>::new());
    cache.set(b"k", b"v", None).unwrap();
    assert_eq!(cache.get(b"k").unwrap(), Some(b"v".to_vec()));
    let quarantined: Vec<_> = std::fs::read_dir(&tag_dir)
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(
        quarantined.len(),
        1,
        "the corrupt file is kept aside for inspection"
    );
}

/// `read.rs` calls nothing that writes (the invariant its module doc states): none of the write
/// path's entry points appears in its code (comments aside).
#[test]
fn reads_never_write_read_rs_calls_no_write_path() {
    let code: String = include_str!("read.rs")
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for name in [
        "self.write(",
        "write_counting",
        "write_holding",
        "write_in(",
        "begin_write",
        "commit_if_buffered",
        "commit_pending_in_background",
        "WriteTables",
        "buffer_writes",
        "count_read",
        "record_access",
        "update_lease",
    ] {
        assert!(!code.contains(name), "read.rs calls `{name}`, which writes");
    }
}

#[test]
fn reset_lifetime_counters_zeroes_every_count_and_keeps_the_entries() {
    let root = tempfile::tempdir().unwrap();
    let cache = open_in(root.path(), CacheOptions::default());
    cache.set(b"k", b"v", None).unwrap();
    assert_eq!(cache.get(b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(cache.get(b"absent").unwrap(), None);
    cache.flush().unwrap();
    let before = cache.get_stats().unwrap().lifetime;
    assert_eq!((before.hits, before.misses, before.sets), (1, 1, 1));

    cache.reset_lifetime_counters().unwrap();
    // Every count is zero, except the `get_stats` call itself, which counts as it starts.
    assert_eq!(
        cache.get_stats().unwrap().lifetime,
        Counters {
            operations: 1,
            ..Counters::default()
        }
    );
    // A count after the reset is persisted alone, and the entry is still there.
    assert_eq!(cache.get(b"k").unwrap(), Some(b"v".to_vec()));
    cache.flush().unwrap();
    let after = cache.get_stats().unwrap().lifetime;
    assert_eq!((after.hits, after.misses, after.sets), (1, 0, 0));
    cache.close().unwrap();

    // Another instance (as another process would) reads the reset counters from the file.
    let reopened = open_in(root.path(), CacheOptions::default());
    let persisted = reopened.get_stats().unwrap().lifetime;
    assert_eq!(
        (persisted.hits, persisted.misses, persisted.sets),
        (1, 0, 0)
    );
    reopened.close().unwrap();
}

/// Issue 15: past 50 000 distinct keys read, the commit thread committed access records on its
/// own, durably, and threw the read snapshot away each time. What the thread runs must commit
/// nothing when no write waits: the reads wait, in memory, for a write, a flush or the close.
#[test]
fn the_commit_thread_commits_no_access_records_alone_and_reads_keep_the_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let options = CacheOptions {
        commit_interval: Duration::from_secs(3600),
        ..CacheOptions::default()
    };
    let cache = open_in(root.path(), options);
    cache.set(b"k", b"v", None).unwrap();
    cache.flush().unwrap();
    assert_eq!(cache.get(b"k").unwrap(), Some(b"v".to_vec()));
    let snapshot = Arc::clone(lock(&cache.buffer).snapshot().unwrap());
    cache.commit_pending_in_background().unwrap();
    assert_eq!(cache.get(b"k").unwrap(), Some(b"v".to_vec()));
    let kept = lock(&cache.buffer)
        .snapshot()
        .is_some_and(|current| Arc::ptr_eq(current, &snapshot));
    assert!(kept, "nothing was committed: the read snapshot stays");
    let access_record = |cache: &RedbCache| {
        let open = cache.open_database().unwrap();
        let txn = open.database.begin_read().unwrap();
        let access = txn.open_table(ACCESS).unwrap();
        access
            .get(cache.access.hash(b"k"))
            .unwrap()
            .map(|row| row.value().1)
    };
    assert_eq!(access_record(&cache), None, "no access record committed");
    assert_eq!(cache.get_metadata(b"k").unwrap().unwrap().access_count, 2);
    cache.flush().unwrap();
    assert_eq!(access_record(&cache), Some(2), "a flush commits them");
}

/// Issue 15: a read-only `get` made 8 `fdatasync` calls and spawned a thread, because the
/// commit thread started at open and the close committed one access record and the counters.
/// Now: no thread until a write, no commit at close; the read still counts, through the reads
/// file, for every later process, and the next writer folds it in once.
#[test]
fn open_get_close_commits_nothing_starts_no_thread_and_the_read_still_counts() {
    let root = tempfile::tempdir().unwrap();
    let writer = open_in(root.path(), CacheOptions::default());
    writer.set(b"k", b"v", None).unwrap();
    assert!(writer.committer.is_started(), "a write starts the thread");
    writer.close().unwrap();
    drop(writer);

    let reader = open_in(root.path(), CacheOptions::default());
    assert_eq!(reader.get(b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(reader.get(b"absent").unwrap(), None);
    reader.close().unwrap();
    assert!(
        !reader.committer.is_started(),
        "no thread in a read-only process"
    );
    assert_eq!(
        reader.commits.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no commit in a read-only process"
    );
    drop(reader);

    let next = open_in(root.path(), CacheOptions::default());
    let seen = |cache: &RedbCache| {
        let meta = cache.get_metadata(b"k").unwrap().unwrap();
        let lifetime = cache.get_stats().unwrap().lifetime;
        (meta.access_count, lifetime.hits, lifetime.misses)
    };
    assert_eq!(seen(&next), (1, 1, 1), "left in the reads file");
    next.set(b"other", b"w", None).unwrap();
    next.flush().unwrap();
    assert!(
        !next.tag_dir().join(reads_file::READS_FILE_NAME).exists(),
        "folded in by the commit"
    );
    assert_eq!(seen(&next), (1, 1, 1), "counted once");
    next.close().unwrap();
    drop(next);
    let last = open_in(root.path(), CacheOptions::default());
    assert_eq!(seen(&last), (1, 1, 1), "persisted");
}

/// Issue 15: a get read the clock three times (its start, the wall time, its end). It now
/// derives the wall time from the instant it read at its start; what it derives must be the
/// system's wall time (to the millisecond either way, for the rounding of both clocks).
#[test]
fn reads_derive_the_wall_time_from_the_instant_they_read_at_their_start() {
    use crate::config::{Clock, SystemClock};
    let root = tempfile::tempdir().unwrap();
    let cache = open_in(root.path(), CacheOptions::default());
    assert!(
        cache.wall.system,
        "the default options' clock is the system's"
    );
    let before = SystemClock.now_ms();
    let derived = cache.now_ms_at(Moment::now());
    let after = SystemClock.now_ms();
    // The coarse clock moves by the kernel's tick (at most 10 ms on Linux, HZ = 100): the
    // derived time is within one tick of the wall time, either way.
    assert!(
        before.saturating_sub(11) <= derived && derived <= after + 11,
        "{before} <= {derived} <= {after}, within a tick"
    );
    let manual = Arc::new(crate::config::ManualClock::new(7000));
    let other_root = tempfile::tempdir().unwrap();
    let with_manual = open_in(
        other_root.path(),
        CacheOptions {
            clock: manual,
            ..CacheOptions::default()
        },
    );
    assert_eq!(
        with_manual.now_ms_at(Moment::now()),
        7000,
        "another clock is asked"
    );
}

#[test]
fn moments_move_forward_and_measure_only_from_earlier_to_later() {
    let first = Moment::now();
    // Bounded only against a clock that never moves; the tick is milliseconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut later = Moment::now();
    while later == first && Instant::now() < deadline {
        std::thread::yield_now();
        later = Moment::now();
    }
    assert!(later > first, "the coarse clock moved on");
    assert!(later.since(first) > Duration::ZERO);
    assert!(later.since(first) < Duration::from_secs(10));
    assert_eq!(first.since(later), Duration::ZERO, "never negative");
}

/// A disk whose free space the test sets (no test fills a real disk).
#[derive(Debug)]
struct FakeDisk {
    free: std::sync::atomic::AtomicU64,
    total: u64,
}

impl crate::config::DiskSpace for FakeDisk {
    fn space(&self, _: &Path) -> Option<crate::config::FilesystemSpace> {
        Some(crate::config::FilesystemSpace {
            free_bytes: self.free.load(std::sync::atomic::Ordering::SeqCst),
            total_bytes: self.total,
        })
    }
}

const GIB: u64 = 1024 * 1024 * 1024;

fn with_fake_disk(root: &Path, free: u64) -> (Arc<RedbCache>, Arc<FakeDisk>) {
    let disk = Arc::new(FakeDisk {
        free: std::sync::atomic::AtomicU64::new(free),
        total: 100 * GIB,
    });
    let options = CacheOptions {
        min_free_space: crate::config::MinFreeSpace::Bytes(GIB),
        disk_space: disk.clone(),
        ..CacheOptions::default()
    };
    (open_in(root, options), disk)
}

fn store_directory(cache: &RedbCache, key: &[u8], bytes: usize) -> Result<Option<CachedDirectory>> {
    let staged = cache.stage_directory()?;
    std::fs::write(staged.path().join("file"), vec![7u8; bytes]).unwrap();
    cache.set_directory(key, staged, b"meta", None)
}

/// Issue 19: a cache must never fill the disk it lives on. Below `min_free_space`, a commit
/// evicts (oldest first) until the shortfall is made up.
#[test]
fn below_min_free_space_a_commit_evicts_until_the_shortfall_is_made_up() {
    let root = tempfile::tempdir().unwrap();
    let (cache, disk) = with_fake_disk(root.path(), 10 * GIB);
    for index in 0..6u8 {
        store_directory(&cache, &[b'd', index], 64 * 1024)
            .unwrap()
            .unwrap();
    }
    cache.flush().unwrap();
    let before = cache.get_stats().unwrap();
    assert_eq!(before.entries, 6);
    assert_eq!(before.lifetime.evictions, 0);

    // 150 KiB short: more than two of the directories.
    let shortfall = 150 * 1024;
    disk.free
        .store(GIB - shortfall, std::sync::atomic::Ordering::SeqCst);
    cache.set(b"small", b"v", None).unwrap();
    cache.flush().unwrap();

    let after = cache.get_stats().unwrap();
    assert!(after.lifetime.evictions >= 3, "{after:?}");
    assert!(
        before.disk_bytes - after.disk_bytes >= shortfall,
        "{before:?} {after:?}"
    );
    assert!(!cache.exists(&[b'd', 0]).unwrap(), "the oldest went first");
    assert!(cache.exists(&[b'd', 5]).unwrap(), "the newest stays");
    assert_eq!(after.min_free_bytes, Some(GIB));
    assert_eq!(
        after.filesystem.map(|space| space.free_bytes),
        Some(GIB - shortfall)
    );
}

/// Issue 19: storing a directory when the disk is short of `min_free_space` by more than the
/// whole tag could give back is refused, naming the setting, and nothing is left behind.
#[test]
fn a_directory_store_below_min_free_space_is_refused_naming_the_setting() {
    let root = tempfile::tempdir().unwrap();
    let (cache, _disk) = with_fake_disk(root.path(), GIB / 2);
    let err = store_directory(&cache, b"dir", 4096).unwrap_err();
    assert!(
        matches!(err, CacheError::InsufficientFreeSpace { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("min_free_space"), "{err}");
    assert!(cache.keys().unwrap().is_empty());
    let staging = root.path().join("t/dirs/.staging");
    assert!(
        std::fs::read_dir(&staging).unwrap().next().is_none(),
        "the staged copy is gone"
    );
}

#[test]
fn min_free_space_in_percent_is_a_share_of_the_filesystem_and_over_100_is_refused() {
    use crate::config::MinFreeSpace;
    assert_eq!(MinFreeSpace::Percent(5).bytes_of(200), 10);
    assert_eq!(MinFreeSpace::Bytes(7).bytes_of(200), 7);
    let options = CacheOptions {
        min_free_space: MinFreeSpace::Percent(101),
        ..CacheOptions::default()
    };
    assert!(matches!(
        options.validate(),
        Err(CacheError::InvalidOption {
            option: "min_free_space",
            ..
        })
    ));
}

/// The bytes and modification time of a tag's file, to tell whether anything wrote to it.
fn file_state(path: &Path) -> (Vec<u8>, std::time::SystemTime) {
    let bytes = std::fs::read(path).unwrap();
    let modified = std::fs::metadata(path).unwrap().modified().unwrap();
    (bytes, modified)
}

#[test]
fn an_instance_that_only_reads_writes_nothing_to_the_file_and_starts_no_thread() {
    let root = tempfile::tempdir().unwrap();
    let path = {
        let cache = open_in(root.path(), CacheOptions::default());
        cache.set(b"k", b"v", None).unwrap();
        cache.close().unwrap();
        cache.path.clone()
    };
    let before = file_state(&path);
    let cache = open_in(root.path(), CacheOptions::default());
    assert!(
        matches!(cache.open_database().unwrap().database, Handle::Reading(_)),
        "an existing, sound file opens read-only"
    );
    assert_eq!(cache.get(b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(cache.get(b"missing").unwrap(), None);
    assert!(cache.get_metadata(b"k").unwrap().is_some());
    assert_eq!(cache.keys().unwrap(), [b"k".to_vec()]);
    cache.close().unwrap();
    assert!(!cache.committer.is_started(), "no commit thread");
    assert!(
        file_state(&path) == before,
        "opening, reading and closing left the file's bytes and time as they were"
    );
}

#[test]
fn the_first_write_after_reads_upgrades_the_handle_and_commits() {
    let root = tempfile::tempdir().unwrap();
    {
        let cache = open_in(root.path(), CacheOptions::default());
        cache.set(b"old", b"1", None).unwrap();
        cache.close().unwrap();
    }
    let cache = open_in(root.path(), CacheOptions::default());
    assert_eq!(cache.get(b"old").unwrap(), Some(b"1".to_vec()));
    // The read snapshot of the read-only handle is still held while the handle is upgraded.
    let snapshot = cache.open_database().unwrap();
    cache.set(b"new", b"2", None).unwrap();
    cache.flush().unwrap();
    drop(snapshot);
    assert!(matches!(
        cache.open_database().unwrap().database,
        Handle::Writing(_)
    ));
    assert_eq!(
        committed(&cache, b"new").map(|stored| stored.is_empty()),
        Some(false)
    );
    assert_eq!(cache.get(b"old").unwrap(), Some(b"1".to_vec()));
    assert_eq!(
        cache.get(b"new").unwrap(),
        Some(b"2".to_vec()),
        "the instance reads its committed write, not the read-only handle's older snapshot"
    );
    cache.close().unwrap();
    let reopened = open_in(root.path(), CacheOptions::default());
    assert_eq!(reopened.get(b"new").unwrap(), Some(b"2".to_vec()));
    assert_eq!(reopened.get(b"old").unwrap(), Some(b"1".to_vec()));
}

#[test]
fn a_commit_writes_its_entries_in_key_order_so_the_tree_leaves_are_full() {
    use redb::ReadableTableMetadata;
    let dir = tempfile::tempdir().unwrap();
    let cache = open_in(dir.path(), CacheOptions::default());
    let keys: Vec<Vec<u8>> = (0..20_000u32)
        .map(|i| format!("key-{i:06}").into_bytes())
        .collect();
    let value = [7u8; 100];
    let items: Vec<(&[u8], &[u8])> = keys
        .iter()
        .map(|key| (key.as_slice(), &value[..]))
        .collect();
    cache.set_many(&items, None).unwrap();
    cache.flush().unwrap();
    let txn = cache.begin_read_on_current().unwrap();
    let stats = txn.open_table(ENTRIES).unwrap().stats().unwrap();
    let filled = stats.stored_bytes() as f64 / (stats.leaf_pages() as f64 * 4096.0);
    // In the hash map's order the leaves were left about 65 % full (random inserts split
    // leaves in half); in key order they are over 90 % full.
    assert!(
        filled > 0.85,
        "leaves {:.0} % full ({} leaf pages for {} bytes)",
        filled * 100.0,
        stats.leaf_pages(),
        stats.stored_bytes()
    );
}

#[test]
fn a_commit_merges_access_records_in_hash_order() {
    let mut reads = AccessRecords::default();
    // Inserted in a scrambled order.
    for index in (0..1000u64).map(|i| (i * 7919) % 1000) {
        let delta = AccessDelta {
            last_ms: index,
            count: 1,
        };
        reads.insert(index << 40 | 5, delta);
    }
    let order: Vec<u64> = in_hash_order(&reads)
        .into_iter()
        .map(|(hash, _)| hash)
        .collect();
    assert_eq!(order.len(), 1000);
    assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "not sorted");
    assert_eq!(order.first().copied(), Some(5));
}

#[test]
fn writes_committed_in_key_order_land_exactly_in_one_commit() {
    let root = tempfile::tempdir().unwrap();
    let options = CacheOptions {
        commit_interval: Duration::from_secs(3600),
        ..CacheOptions::default()
    };
    let cache = open_in(root.path(), options);
    for index in (0..2000u32).map(|i| (i * 7919) % 2000) {
        cache
            .set(format!("k{index}").as_bytes(), &index.to_le_bytes(), None)
            .unwrap();
    }
    for index in (0..2000u32).step_by(3) {
        cache.delete(format!("k{index}").as_bytes()).unwrap();
    }
    let before = cache.commits.load(std::sync::atomic::Ordering::Relaxed);
    cache.flush().unwrap();
    let after = cache.commits.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        after - before,
        1,
        "2 000 sets and their deletions make one commit"
    );
    let mut keys = cache.keys().unwrap();
    keys.sort();
    let mut expected: Vec<Vec<u8>> = (0..2000u32)
        .filter(|index| index % 3 != 0)
        .map(|index| format!("k{index}").into_bytes())
        .collect();
    expected.sort();
    assert_eq!(keys, expected);
    for index in [1u32, 2, 1999] {
        assert_eq!(
            cache.get(format!("k{index}").as_bytes()).unwrap(),
            Some(index.to_le_bytes().to_vec())
        );
    }
    // Usage is exact: what the commit stored is what the entries hold.
    let usage = cache.read_usage().unwrap();
    assert_eq!(usage.get(USAGE_ENTRIES), Some(&(expected.len() as u64)));
    let header_len = untyped_header_len_now(&cache);
    let bytes: usize = expected.iter().map(|key| key.len() + header_len + 4).sum();
    assert_eq!(usage.get(USAGE_BYTES), Some(&(bytes as u64)));
}

#[test]
fn a_commit_waiting_for_another_writer_sleeps_at_most_a_millisecond() {
    let mut backoff = FIRST_WRITER_BACKOFF;
    let mut longest = backoff;
    for _ in 0..30 {
        backoff = next_writer_backoff(backoff);
        longest = longest.max(backoff);
    }
    assert_eq!(longest, Duration::from_millis(1));
    assert_eq!(backoff, MAX_WRITER_BACKOFF);
}

#[test]
fn rewriting_one_key_keeps_the_buffer_within_max_pending_bytes() {
    let root = tempfile::tempdir().unwrap();
    let cache = open_with_a_1_kib_buffer(root.path());
    let one_write = 1 + 100 + untyped_header_len_now(&cache);
    for round in 0..100u8 {
        cache.set(b"k", &[round; 100], None).unwrap();
        // A rewrite's earlier bytes stay in the buffer until a commit, and count: past the
        // bound the writer commits them itself.
        assert!(lock(&cache.buffer).pending_stored_len() <= 1024 + one_write);
    }
    assert!(cache.commits.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert_eq!(cache.get(b"k").unwrap(), Some(vec![99u8; 100]));
}

/// The access table as committed: hash -> (last read ms, reads).
fn committed_access(cache: &RedbCache) -> Vec<(u64, (u64, u64))> {
    let open = cache.open_database().unwrap();
    let txn = open.database.begin_read().unwrap();
    let access = txn.open_table(ACCESS).unwrap();
    access
        .iter()
        .unwrap()
        .map(|row| {
            let (hash, reads) = row.unwrap();
            (hash.value(), reads.value())
        })
        .collect()
}

/// Files written before the access hash keep their access records by key bytes, in a table
/// named `access`, and have no seeds. A read-only handle serves such a file as it is (the root
/// may be read-only), reading the records by key; the first commit of a writer draws the seeds,
/// folds the records into the hash-keyed table and deletes the old one; `cleanup()` drops the
/// records of entries gone.
#[test]
fn access_records_by_key_of_an_older_file_are_read_as_they_are_and_folded_in_by_a_writer() {
    let root = tempfile::tempdir().unwrap();
    let cache = open_in(root.path(), CacheOptions::default());
    cache.set(b"k", b"v", None).unwrap();
    cache.set(b"other", b"v", None).unwrap();
    cache
        .with_exclusive_database(|database| {
            let txn = database.begin_write().or_db(&cache)?;
            txn.delete_table(ACCESS).or_db(&cache)?;
            {
                let mut usage = txn.open_table(USAGE).or_db(&cache)?;
                for name in ACCESS_SEEDS {
                    usage.remove(name).or_db(&cache)?;
                }
                let mut legacy = txn.open_table(LEGACY_ACCESS).or_db(&cache)?;
                legacy.insert(b"k".as_slice(), (1234, 5)).or_db(&cache)?;
                legacy.insert(b"gone".as_slice(), (99, 1)).or_db(&cache)?;
            }
            txn.commit().or_db(&cache)
        })
        .unwrap();
    cache.close().unwrap();
    drop(cache);

    let cache = open_in(root.path(), CacheOptions::default());
    assert!(
        matches!(cache.open_database().unwrap().database, Handle::Reading(_)),
        "served as it is, read-only"
    );
    let meta = cache.get_metadata(b"k").unwrap().unwrap();
    assert_eq!(
        (meta.access_count, meta.last_accessed),
        (5, Some(system_time(1234)))
    );
    // The first write's commit migrates the file.
    cache.set(b"w", b"v", None).unwrap();
    cache.flush().unwrap();
    let open = cache.open_database().unwrap();
    let txn = open.database.begin_read().unwrap();
    assert!(
        has_every_table(&txn).unwrap(),
        "seeds drawn, old table gone"
    );
    drop((txn, open));
    let k = cache.access.hash(b"k");
    let meta = cache.get_metadata(b"k").unwrap().unwrap();
    assert_eq!(meta.access_count, 5, "found by its hash now");
    assert_eq!(committed_access(&cache).len(), 2, "k's, and the orphan's");
    cache.cleanup().unwrap();
    assert_eq!(
        committed_access(&cache),
        [(k, (1234, 5))],
        "the record of a key without an entry is dropped"
    );
    // Reads go on counting from the folded record.
    assert!(cache.get(b"k").unwrap().is_some());
    cache.flush().unwrap();
    assert_eq!(cache.get_metadata(b"k").unwrap().unwrap().access_count, 6);
}

/// A writable open of a file from before the access hash migrates it at once (`ensure_tables`).
#[test]
fn a_writable_open_of_an_older_file_migrates_it_at_once() {
    let root = tempfile::tempdir().unwrap();
    let cache = open_in(root.path(), CacheOptions::default());
    cache.set(b"k", b"v", None).unwrap();
    cache
        .with_exclusive_database(|database| {
            let txn = database.begin_write().or_db(&cache)?;
            txn.delete_table(ACCESS).or_db(&cache)?;
            txn.open_table(LEGACY_ACCESS)
                .or_db(&cache)?
                .insert(b"k".as_slice(), (1234, 5))
                .or_db(&cache)?;
            txn.commit().or_db(&cache)
        })
        .unwrap();
    // Still open with a read-write handle: `ensure_tables` runs as it does after an open that
    // had to take one (a file needing recovery, say).
    cache.ensure_tables().unwrap();
    assert_eq!(
        committed_access(&cache),
        [(cache.access.hash(b"k"), (1234, 5))]
    );
}

/// Every instance computes the access hash by the file's seeds: reads one instance committed
/// are the record the next one's reads add to, and a write forgets them.
#[test]
fn instances_of_one_file_agree_on_the_access_hash() {
    let root = tempfile::tempdir().unwrap();
    let first = open_in(root.path(), CacheOptions::default());
    first.set(b"k", b"v", None).unwrap();
    first.flush().unwrap();
    assert!(first.get(b"k").unwrap().is_some());
    assert!(first.get(b"k").unwrap().is_some());
    first.flush().unwrap();
    let seeds = first.access.hasher();
    first.close().unwrap();
    drop(first);

    let second = open_in(root.path(), CacheOptions::default());
    assert_eq!(
        second.access.hasher(),
        seeds,
        "the file's seeds, not its own"
    );
    assert_eq!(second.get_metadata(b"k").unwrap().unwrap().access_count, 2);
    assert!(second.get(b"k").unwrap().is_some());
    second.set(b"write", b"w", None).unwrap();
    second.flush().unwrap();
    assert_eq!(second.get_metadata(b"k").unwrap().unwrap().access_count, 3);
    assert_eq!(committed_access(&second).len(), 1, "one record for the key");
    second.set(b"k", b"new", None).unwrap();
    second.flush().unwrap();
    assert_eq!(second.get_metadata(b"k").unwrap().unwrap().access_count, 0);
    assert!(committed_access(&second).is_empty(), "the write dropped it");
}

/// Reads taken for a commit of an entry deleted meanwhile leave a record no entry has, which
/// `cleanup()` removes.
#[test]
fn cleanup_removes_access_records_no_entry_has() {
    let root = tempfile::tempdir().unwrap();
    let cache = open_in(root.path(), CacheOptions::default());
    cache.set(b"k", b"v", None).unwrap();
    cache.flush().unwrap();
    let hasher = cache.access.hasher();
    let orphan = hasher.hash(b"deleted by another process");
    cache
        .write(|tables, _| {
            let reads = AccessDelta {
                last_ms: 7,
                count: 2,
            };
            tables.record_reads(orphan, reads).or_db(&cache)?;
            tables.record_reads(hasher.hash(b"k"), reads).or_db(&cache)
        })
        .unwrap();
    assert_eq!(committed_access(&cache).len(), 2);
    cache.cleanup().unwrap();
    assert_eq!(
        committed_access(&cache),
        [(hasher.hash(b"k"), (7, 2))],
        "the orphan is gone, the entry's record stays"
    );
}

/// Reads recorded by other seeds than the file's were recorded for a file replaced since (by
/// another process's quarantine): a commit drops them instead of writing them under hashes
/// that mean nothing here, and records by the file's seeds from then on.
#[test]
fn a_commit_drops_reads_recorded_by_other_seeds_and_takes_the_file_s() {
    let root = tempfile::tempdir().unwrap();
    let cache = open_in(root.path(), CacheOptions::default());
    cache.set(b"k", b"v", None).unwrap();
    cache.flush().unwrap();
    let file_seeds = cache.access.hasher();
    cache.access.use_seeds([11, 12]);
    assert!(cache.get(b"k").unwrap().is_some());
    cache.flush().unwrap();
    assert!(
        committed_access(&cache).is_empty(),
        "nothing written by other seeds"
    );
    assert_eq!(cache.access.hasher(), file_seeds, "the file's seeds taken");
    assert!(cache.get(b"k").unwrap().is_some());
    cache.flush().unwrap();
    assert_eq!(cache.get_metadata(b"k").unwrap().unwrap().access_count, 1);
}

/// Reads another process left of a key that the same commit deletes go with the entry: no
/// record is left that no entry has.
#[test]
fn reads_merged_by_the_commit_that_deletes_their_key_leave_no_record() {
    let root = tempfile::tempdir().unwrap();
    let cache = open_in(root.path(), CacheOptions::default());
    cache.set(b"k", b"v", None).unwrap();
    cache.set(b"other", b"v", None).unwrap();
    cache.flush().unwrap();
    let hasher = cache.access.hasher();
    let reads = AccessDelta {
        last_ms: 5,
        count: 3,
    };
    cache.leave_reads_of(&[b"k", b"other"], reads);
    cache.delete(b"k").unwrap();
    cache.flush().unwrap();
    assert_eq!(
        committed_access(&cache),
        [(hasher.hash(b"other"), (5, 3))],
        "the deleted key's reads went with it"
    );
}

/// A read a process that only read left in the reads file is a read of the value it read: a
/// value written after it starts without it, buffered (`get_metadata`) and once committed (the
/// commit merges the file before its writes). Found by the model test at soak size.
#[test]
fn reads_left_in_the_reads_file_belong_to_the_value_read_not_to_one_written_since() {
    let root = tempfile::tempdir().unwrap();
    {
        let cache = open_in(root.path(), CacheOptions::default());
        cache.set(b"k", b"old", None).unwrap();
        cache.set(b"other", b"v", None).unwrap();
        cache.close().unwrap();
    }
    {
        // It only reads, so its reads go to the reads file when it closes.
        let cache = open_in(root.path(), CacheOptions::default());
        assert_eq!(cache.get(b"k").unwrap(), Some(b"old".to_vec()));
        assert_eq!(cache.get(b"other").unwrap(), Some(b"v".to_vec()));
        cache.close().unwrap();
        assert!(cache.tag_dir().join(reads_file::READS_FILE_NAME).exists());
    }
    let cache = open_in(root.path(), CacheOptions::default());
    cache.set(b"k", b"new", None).unwrap();
    let count = |key: &[u8]| cache.get_metadata(key).unwrap().unwrap().access_count;
    assert_eq!(count(b"k"), 0, "the new value, buffered, has not been read");
    assert_eq!(count(b"other"), 1, "the read of a value still there counts");
    cache.flush().unwrap();
    assert_eq!(
        count(b"k"),
        0,
        "the new value, committed, has not been read"
    );
    assert_eq!(count(b"other"), 1, "the commit folded the other read in");
    assert!(!cache.tag_dir().join(reads_file::READS_FILE_NAME).exists());
}
