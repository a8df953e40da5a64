//! The remote tier's extension point ([`RemoteStore`]), through a fake remote shared by two
//! roots that stand for two machines: a commit publishes what it landed, and only once it has
//! landed; a local miss reads through and backfills, without publishing the value back; what
//! the remote returns is checked for expiry and format; a failing remote is a miss.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_core::{
    Cache, CacheKey, CacheOptions, Clock, Coordinator, DirectoryItem, Environment, ManualClock,
    PublishedEntry, PublishedValue, RemoteCounters, RemoteEntry, RemoteError, RemoteStore,
    RemoteValue, Tag, ValueFormat,
};
use rstest::rstest;
use tempfile::TempDir;

use crate::{clock, options_with};

/// What the fake remote holds of one entry.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Held {
    pub(crate) format: ValueFormat,
    pub(crate) expires_at: Option<SystemTime>,
    /// The value (a directory's: the value stored with it).
    pub(crate) bytes: Vec<u8>,
    /// A directory's items and its files' contents, concatenated in list order.
    pub(crate) directory: Option<(Vec<DirectoryItem>, Vec<u8>)>,
}

/// One publish: tag, key, what was published, whether it came as a blob file.
pub(crate) type Publish = (String, Vec<u8>, Held, bool);

/// A remote in memory. `publish` reads the value at once (a real one queues it) and keeps it
/// where `fetch` finds it, as a shared engine would.
#[derive(Debug, Default)]
pub(crate) struct FakeRemote {
    held: Mutex<HashMap<(String, Vec<u8>), Held>>,
    /// Every publish, in order.
    published: Mutex<Vec<Publish>>,
    pub(crate) fetches: AtomicUsize,
    failing: AtomicBool,
    /// Serve values as streams instead of in memory.
    streaming: AtomicBool,
    /// Stream values with one byte flipped, under the digest of the right bytes.
    tampering: AtomicBool,
    /// What it counted and has not handed over (`take_counters`).
    counted: Mutex<RemoteCounters>,
}

impl FakeRemote {
    pub(crate) fn put(&self, tag: &str, key: &[u8], held: Held) {
        self.held
            .lock()
            .expect("the fake's lock")
            .insert((tag.to_owned(), key.to_vec()), held);
    }

    pub(crate) fn forget_everything(&self) {
        self.held.lock().expect("the fake's lock").clear();
    }

    pub(crate) fn published(&self) -> Vec<Publish> {
        self.published.lock().expect("the fake's lock").clone()
    }
}

impl RemoteStore for FakeRemote {
    fn fetch(&self, tag: &Tag, key: &[u8]) -> Result<Option<RemoteEntry>, RemoteError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(RemoteError::new("fetch", "connection refused"));
        }
        let held = self
            .held
            .lock()
            .expect("the fake's lock")
            .get(&(tag.to_string(), key.to_vec()))
            .cloned();
        {
            let mut counted = self.counted.lock().expect("the fake's lock");
            match &held {
                Some(_) => counted.hits += 1,
                None => counted.misses += 1,
            }
        }
        Ok(held.map(|held| RemoteEntry {
            format: held.format,
            expires_at: held.expires_at,
            value: if let Some((items, contents)) = held.directory {
                RemoteValue::Directory {
                    value: held.bytes,
                    items,
                    contents: Box::new(std::io::Cursor::new(contents)),
                }
            } else if self.streaming.load(Ordering::SeqCst) {
                let digest = *blake3::hash(&held.bytes).as_bytes();
                let mut bytes = held.bytes;
                if self.tampering.load(Ordering::SeqCst)
                    && let Some(last) = bytes.last_mut()
                {
                    *last ^= 1;
                }
                RemoteValue::Stream {
                    len: bytes.len() as u64,
                    digest,
                    reader: Box::new(std::io::Cursor::new(bytes)),
                }
            } else {
                RemoteValue::Bytes(held.bytes)
            },
        }))
    }

    fn publish(&self, entry: PublishedEntry) {
        let mut directory = None;
        let (bytes, as_blob) = match entry.value {
            PublishedValue::Bytes(bytes) => (bytes, false),
            PublishedValue::Directory(published) => {
                let mut contents = Vec::new();
                published
                    .contents()
                    .expect("the published directory opens")
                    .read_to_end(&mut contents)
                    .expect("the published directory reads");
                assert_eq!(contents.len() as u64, published.contents_len());
                directory = Some((published.items.clone(), contents));
                (published.value, false)
            }
            PublishedValue::Blob {
                mut file,
                len,
                hash,
            } => {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes)
                    .expect("the published blob reads");
                assert_eq!(bytes.len() as u64, len);
                assert_eq!(
                    blake3::hash(&bytes).as_bytes(),
                    &hash,
                    "the blob's named hash"
                );
                (bytes, true)
            }
        };
        let held = Held {
            format: entry.format,
            expires_at: entry.expires_at,
            bytes,
            directory,
        };
        self.put(entry.tag.as_str(), &entry.key, held.clone());
        self.counted.lock().expect("the fake's lock").published += 1;
        self.published.lock().expect("the fake's lock").push((
            entry.tag.to_string(),
            entry.key,
            held,
            as_blob,
        ));
    }

    fn take_counters(&self) -> RemoteCounters {
        std::mem::take(&mut *self.counted.lock().expect("the fake's lock"))
    }
}

/// One machine: its own root and coordinator, sharing `remote`.
pub(crate) struct Machine {
    pub(crate) root: TempDir,
    pub(crate) cache: Cache,
}

pub(crate) fn machine(remote: &Arc<FakeRemote>, options: CacheOptions) -> Machine {
    let root = tempfile::tempdir().expect("temp dir");
    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]))
        .with_remote(Arc::clone(remote) as Arc<dyn RemoteStore>);
    let cache = coordinator
        .get_shared_cache_instance(root.path(), "t", options)
        .expect("open the machine's cache");
    Machine { root, cache }
}

/// Options whose commit thread never commits on its own within a test: a commit happens when
/// the test flushes.
pub(crate) fn manual_commits(clock: &Arc<ManualClock>) -> CacheOptions {
    CacheOptions {
        commit_interval: Duration::from_secs(3600),
        blob_threshold_bytes: 1024,
        ..options_with(clock)
    }
}

#[rstest]
fn a_value_is_published_once_its_commit_has_landed_and_not_before(clock: Arc<ManualClock>) {
    let remote = Arc::new(FakeRemote::default());
    let a = machine(&remote, manual_commits(&clock));
    a.cache
        .set(b"k", b"v", Some(Duration::from_secs(100)))
        .unwrap();
    assert!(remote.published().is_empty(), "published before its commit");
    a.cache.flush().unwrap();
    let published = remote.published();
    assert_eq!(published.len(), 1);
    let (tag, key, held, as_blob) = &published[0];
    assert_eq!(
        (tag.as_str(), key.as_slice(), !as_blob),
        ("t", &b"k"[..], true)
    );
    assert_eq!(held.bytes, b"v");
    assert_eq!(held.format, ValueFormat::RAW);
    let expected_expiry = UNIX_EPOCH + Duration::from_millis(clock.now_ms() + 100_000);
    assert_eq!(held.expires_at, Some(expected_expiry));
    // A deletion publishes nothing.
    a.cache.delete(b"k").unwrap();
    a.cache.flush().unwrap();
    assert_eq!(remote.published().len(), 1);
}

#[rstest]
fn a_miss_reads_through_and_backfills_with_the_time_left_and_does_not_publish_back(
    clock: Arc<ManualClock>,
) {
    let remote = Arc::new(FakeRemote::default());
    let a = machine(&remote, manual_commits(&clock));
    let b = machine(&remote, manual_commits(&clock));
    a.cache
        .set(b"k", b"from a", Some(Duration::from_secs(100)))
        .unwrap();
    a.cache.flush().unwrap();
    clock.advance(Duration::from_secs(40));

    assert_eq!(b.cache.get(b"k").unwrap(), Some(b"from a".to_vec()));
    assert_eq!(remote.fetches.load(Ordering::SeqCst), 1);
    b.cache.flush().unwrap();
    assert_eq!(
        remote.published().len(),
        1,
        "the backfill was published back"
    );

    // Stored locally, with the expiry it had: the remote is no longer needed.
    remote.forget_everything();
    assert_eq!(b.cache.get(b"k").unwrap(), Some(b"from a".to_vec()));
    assert_eq!(
        remote.fetches.load(Ordering::SeqCst),
        1,
        "a local hit asked the remote"
    );
    let metadata = b.cache.get_metadata(b"k").unwrap().unwrap();
    let expected_expiry = UNIX_EPOCH + Duration::from_millis(clock.now_ms() + 60_000);
    assert_eq!(metadata.expires_at, Some(expected_expiry));
}

#[rstest]
fn a_local_write_after_a_backfill_is_published(clock: Arc<ManualClock>) {
    let remote = Arc::new(FakeRemote::default());
    let b = machine(&remote, manual_commits(&clock));
    remote.put(
        "t",
        b"k",
        Held {
            format: ValueFormat::RAW,
            expires_at: None,
            bytes: b"old".to_vec(),
            directory: None,
        },
    );
    assert_eq!(b.cache.get(b"k").unwrap(), Some(b"old".to_vec()));
    b.cache.set(b"k", b"new", None).unwrap();
    b.cache.flush().unwrap();
    let published = remote.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].2.bytes, b"new");
}

#[rstest]
fn large_values_are_published_as_their_verified_blob_files_and_stream_back(
    clock: Arc<ManualClock>,
    #[values(false, true)] streaming: bool,
) {
    let remote = Arc::new(FakeRemote::default());
    remote.streaming.store(streaming, Ordering::SeqCst);
    let a = machine(&remote, manual_commits(&clock));
    let b = machine(&remote, manual_commits(&clock));
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let other: Vec<u8> = big.iter().rev().copied().collect();
    a.cache
        .set_from_reader(b"streamed", &mut &big[..], None)
        .unwrap();
    a.cache.set(b"set", &other, None).unwrap();
    let published = remote.published();
    assert_eq!(
        published.len(),
        2,
        "blob writes commit, then publish, before they return"
    );
    assert!(published.iter().all(|(_, _, _, as_blob)| *as_blob));

    let mut sink = Vec::new();
    assert_eq!(
        b.cache.get_to_writer(b"streamed", &mut sink).unwrap(),
        Some(big.len() as u64)
    );
    assert_eq!(sink, big);
    assert_eq!(b.cache.get(b"set").unwrap(), Some(other.clone()));
    remote.forget_everything();
    assert_eq!(b.cache.get(b"streamed").unwrap(), Some(big));
    assert_eq!(b.cache.get(b"set").unwrap(), Some(other));
    assert_eq!(remote.published().len(), 2, "backfills were published back");
}

#[rstest]
fn a_stream_whose_bytes_do_not_match_its_digest_is_a_miss_counted_rejected_and_not_stored(
    clock: Arc<ManualClock>,
) {
    let remote = Arc::new(FakeRemote::default());
    remote.streaming.store(true, Ordering::SeqCst);
    remote.tampering.store(true, Ordering::SeqCst);
    let b = machine(&remote, manual_commits(&clock));
    // A blob (over the 1024-byte threshold) and a value stored inline.
    let large: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let small = b"small, streamed anyway".to_vec();
    for (key, bytes) in [(&b"large"[..], &large), (&b"small"[..], &small)] {
        remote.put(
            "t",
            key,
            Held {
                format: ValueFormat::RAW,
                expires_at: None,
                bytes: bytes.clone(),
                directory: None,
            },
        );
        let mut sink = Vec::new();
        assert_eq!(b.cache.get_to_writer(key, &mut sink).unwrap(), None);
        assert!(sink.is_empty(), "bytes reached the sink");
        assert_eq!(b.cache.get(key).unwrap(), None);
    }
    assert!(
        b.cache.keys().unwrap().is_empty(),
        "a bad stream was stored"
    );
    let counters = b.cache.get_stats().unwrap().counters.remote;
    assert_eq!((counters.rejected, counters.backfills), (4, 0));

    // The same streams, untampered, are stored and served.
    remote.tampering.store(false, Ordering::SeqCst);
    let mut sink = Vec::new();
    assert_eq!(
        b.cache.get_to_writer(b"large", &mut sink).unwrap(),
        Some(large.len() as u64)
    );
    assert_eq!(sink, large);
    assert_eq!(b.cache.get(b"small").unwrap(), Some(small));
    remote.forget_everything();
    assert_eq!(b.cache.get(b"large").unwrap(), Some(large));
}

#[derive(Debug)]
struct Note(&'static str);

impl CacheKey for Note {
    type Value = String;
    const TAG: &'static str = "t";
    const SCHEMA_VERSION: u32 = 2;
    fn default_ttl(&self) -> Option<Duration> {
        None
    }
    fn key_bytes(&self) -> Vec<u8> {
        self.0.as_bytes().to_vec()
    }
}

#[rstest]
fn an_expired_or_other_schema_remote_entry_is_a_miss_and_is_not_stored(clock: Arc<ManualClock>) {
    let remote = Arc::new(FakeRemote::default());
    let b = machine(&remote, manual_commits(&clock));
    let now = UNIX_EPOCH + Duration::from_millis(clock.now_ms());
    remote.put(
        "t",
        b"expired",
        Held {
            format: ValueFormat::RAW,
            expires_at: Some(now),
            bytes: b"stale".to_vec(),
            directory: None,
        },
    );
    assert_eq!(b.cache.get(b"expired").unwrap(), None);
    // A typed value of schema 1 where the key type is at 2.
    let old = cache_core_codec_bytes("an old note");
    remote.put(
        "t",
        b"note",
        Held {
            format: ValueFormat::typed(1),
            expires_at: None,
            bytes: old,
            directory: None,
        },
    );
    assert_eq!(b.cache.get_typed(&Note("note")).unwrap(), None);
    remote.forget_everything();
    assert_eq!(b.cache.keys().unwrap(), Vec::<Vec<u8>>::new());
}

/// Some bytes standing for an encoded value (their content does not matter: the format check
/// comes first).
fn cache_core_codec_bytes(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

#[rstest]
fn a_failing_remote_is_a_miss_not_an_error(clock: Arc<ManualClock>) {
    let remote = Arc::new(FakeRemote::default());
    remote.failing.store(true, Ordering::SeqCst);
    let b = machine(&remote, manual_commits(&clock));
    assert_eq!(b.cache.get(b"k").unwrap(), None);
    let mut sink = Vec::new();
    assert_eq!(b.cache.get_to_writer(b"k", &mut sink).unwrap(), None);
    assert!(sink.is_empty());
    assert_eq!(remote.fetches.load(Ordering::SeqCst), 2);
}

#[rstest]
fn a_cache_without_a_remote_and_a_disabled_one_never_ask(clock: Arc<ManualClock>) {
    let remote = Arc::new(FakeRemote::default());
    let root = tempfile::tempdir().unwrap();
    let plain = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]))
        .get_shared_cache_instance(root.path(), "t", manual_commits(&clock))
        .unwrap();
    assert_eq!(plain.get(b"k").unwrap(), None);
    let disabled_options = CacheOptions {
        enabled: false,
        ..manual_commits(&clock)
    };
    let disabled = machine(&remote, disabled_options);
    assert!(!disabled.cache.is_enabled());
    assert_eq!(disabled.cache.get(b"k").unwrap(), None);
    disabled.cache.set(b"k", b"v", None).unwrap();
    assert_eq!(remote.fetches.load(Ordering::SeqCst), 0);
    assert!(remote.published().is_empty());
}

#[rstest]
fn keys_the_sharing_policy_keeps_local_are_never_fetched_published_or_leased(
    clock: Arc<ManualClock>,
) {
    use cache_core::SharingRule;
    const RULES: &[SharingRule] = &[
        SharingRule {
            tag: "t",
            key_prefix: "private:",
            share: false,
            reason: "one user's",
        },
        SharingRule {
            tag: "t",
            key_prefix: "private:but-public:",
            share: true,
            reason: "the longer prefix decides",
        },
    ];
    let remote = Arc::new(FakeRemote::default());
    let root = tempfile::tempdir().expect("temp dir");
    let cache = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]))
        .with_remote(Arc::clone(&remote) as Arc<dyn RemoteStore>)
        .with_sharing(RULES)
        .get_shared_cache_instance(root.path(), "t", manual_commits(&clock))
        .expect("open");
    for key in [&b"private:mine"[..], b"private:but-public:x", b"plain"] {
        remote.put(
            "t",
            key,
            Held {
                format: ValueFormat::RAW,
                expires_at: None,
                bytes: b"remote".to_vec(),
                directory: None,
            },
        );
    }
    assert_eq!(cache.get(b"private:mine").unwrap(), None);
    assert_eq!(
        remote.fetches.load(Ordering::SeqCst),
        0,
        "a kept key was fetched"
    );
    assert_eq!(
        cache.get(b"private:but-public:x").unwrap(),
        Some(b"remote".to_vec())
    );
    assert_eq!(cache.get(b"plain").unwrap(), Some(b"remote".to_vec()));
    assert_eq!(remote.fetches.load(Ordering::SeqCst), 2);

    cache.set(b"private:new", b"v", None).unwrap();
    cache.set(b"shared:new", b"v", None).unwrap();
    cache.flush().unwrap();
    let published: Vec<Vec<u8>> = remote.published().into_iter().map(|p| p.1).collect();
    assert_eq!(published, vec![b"shared:new".to_vec()]);
}

#[rstest]
fn the_remote_s_counts_and_backfills_are_persisted_with_the_tag_s_counters_once(
    clock: Arc<ManualClock>,
) {
    let remote = Arc::new(FakeRemote::default());
    let (root_a, root_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let open = |root: &TempDir, remote: Option<&Arc<FakeRemote>>| {
        let mut coordinator =
            Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
        if let Some(remote) = remote {
            coordinator = coordinator.with_remote(Arc::clone(remote) as Arc<dyn RemoteStore>);
        }
        coordinator
            .get_shared_cache_instance(root.path(), "t", manual_commits(&clock))
            .unwrap()
    };
    let a = open(&root_a, Some(&remote));
    a.set(b"k", b"v", None).unwrap();
    a.close().unwrap();
    let b = open(&root_b, Some(&remote));
    assert_eq!(b.get(b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(b.get(b"absent").unwrap(), None);
    let live = b.get_stats().unwrap().lifetime.remote;
    assert_eq!((live.hits, live.misses, live.backfills), (1, 1, 1));
    // Asked again: nothing counted twice.
    assert_eq!(b.get_stats().unwrap().lifetime.remote, live);
    b.close().unwrap();

    // Persisted: opened without a remote, each root has what its process counted.
    let a = open(&root_a, None).get_stats().unwrap().lifetime.remote;
    assert_eq!(
        a,
        RemoteCounters {
            published: 1,
            ..RemoteCounters::default()
        }
    );
    let b = open(&root_b, None).get_stats().unwrap().lifetime.remote;
    assert_eq!((b.hits, b.misses, b.backfills, b.published), (1, 1, 1, 0));
}

#[rstest]
fn a_reading_process_leaves_the_remote_s_counts_in_the_reads_file_without_a_commit(
    clock: Arc<ManualClock>,
) {
    let remote = Arc::new(FakeRemote::default());
    let root = tempfile::tempdir().unwrap();
    let open = |remote: Option<&Arc<FakeRemote>>| {
        let mut coordinator =
            Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
        if let Some(remote) = remote {
            coordinator = coordinator.with_remote(Arc::clone(remote) as Arc<dyn RemoteStore>);
        }
        coordinator
            .get_shared_cache_instance(root.path(), "t", manual_commits(&clock))
            .unwrap()
    };
    // The tag exists (a first process wrote); a second only misses.
    let writer = open(None);
    writer.set(b"other", b"v", None).unwrap();
    writer.close().unwrap();
    let reader = open(Some(&remote));
    assert_eq!(reader.get(b"absent").unwrap(), None);
    reader.close().unwrap();
    assert!(
        root.path().join("t").join("reads").exists(),
        "the reader appended its counts instead of committing"
    );
    let lifetime = open(None).get_stats().unwrap().lifetime.remote;
    assert_eq!(lifetime.misses, 1);
}

/// A program opts a domain's kept prefix in with a rule of its own, added after the domain's:
/// of two rules with the same prefix, the later decides.
#[rstest]
fn a_later_rule_with_the_same_prefix_decides(clock: Arc<ManualClock>) {
    use cache_core::SharingRule;
    const DOMAIN: &[SharingRule] = &[SharingRule {
        tag: "t",
        key_prefix: "big:",
        share: false,
        reason: "opt-in",
    }];
    const PROGRAM: &[SharingRule] = &[SharingRule {
        tag: "t",
        key_prefix: "big:",
        share: true,
        reason: "this program opts in",
    }];
    let remote = Arc::new(FakeRemote::default());
    remote.put(
        "t",
        b"big:1",
        Held {
            format: ValueFormat::RAW,
            expires_at: None,
            bytes: b"remote".to_vec(),
            directory: None,
        },
    );
    let open = |rules: [&'static [SharingRule]; 2]| {
        let root = tempfile::tempdir().expect("temp dir");
        let cache = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]))
            .with_remote(Arc::clone(&remote) as Arc<dyn RemoteStore>)
            .with_sharing(rules[0])
            .with_sharing(rules[1])
            .get_shared_cache_instance(root.path(), "t", manual_commits(&clock))
            .expect("open");
        (root, cache)
    };
    let (_kept_root, kept) = open([PROGRAM, DOMAIN]);
    assert_eq!(kept.get(b"big:1").unwrap(), None);
    let (_shared_root, shared) = open([DOMAIN, PROGRAM]);
    assert_eq!(shared.get(b"big:1").unwrap(), Some(b"remote".to_vec()));
}
