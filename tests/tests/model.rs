//! Model-based property test: random sequences of operations (set, set_many, get, exists,
//! get_metadata, delete, delete_many, clock advances past TTLs, cleanup, clear, flush, keys,
//! stats, and reopening through `close` + open or a fresh `Coordinator`) run against the real
//! cache and against an in-memory `BTreeMap` model; every result must match the model's.
//!
//! Expiry follows the contract, not one schedule: an expired entry may be swept by any commit
//! (every commit sweeps a batch) and is then counted as an expiration, or it may still be there
//! when `cleanup` runs or a write replaces it. The model therefore keeps, besides the exact live
//! view, a range for the lifetime expiration count and the set of expired entries not yet known
//! to be gone; a cleanup report may count any number of those, and no other.
//!
//! Deterministic: a `ManualClock`, and a commit interval long enough that every commit happens in
//! the calling thread (flush, keys, stats, cleanup, clear, close, or back-pressure, which some
//! cases force with a tiny `max_pending_bytes`), so a failure shrinks and replays exactly. The
//! commit thread's own timing is the business of the multi-process and crash suites.
//!
//! Cases: `PROPTEST_CASES` if set (`cargo xtask soak` sets it), else 64. A failing sequence is
//! shrunk and kept in `tests/proptest-regressions/model.txt`, replayed first by every run.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its location"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use cache_core::{Cache, CacheOptions, Coordinator, Environment, ManualClock};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};

const START_MS: u64 = 1_767_225_600_000;
const KEYS: u8 = 8;
/// Bytes of the entry header the store puts in front of `entry`'s value: kind, codec, schema
/// (0, one byte), created and expires (0 = never) as LEB128 varints, and the checksum.
fn entry_header_bytes(entry: &ModelEntry) -> u64 {
    let varint = |value: u64| u64::from((u64::BITS - value.leading_zeros()).max(1)).div_ceil(7);
    let expires = entry.expires_ms.map_or(0, |ms| ms.max(1));
    1 + 1 + 1 + varint(entry.created_ms) + varint(expires) + 4
}

#[derive(Clone, Debug)]
enum Op {
    Set {
        key: u8,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    },
    SetMany {
        items: Vec<(u8, Vec<u8>)>,
        ttl_ms: Option<u64>,
    },
    Get(u8),
    Exists(u8),
    Metadata(u8),
    Delete(u8),
    DeleteMany(Vec<u8>),
    Advance(u64),
    Cleanup,
    Clear,
    Flush,
    Keys,
    Stats,
    CloseAndOpen,
    FreshCoordinator,
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..40)
}

fn ttl() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![2 => Just(None), 1 => (0u64..5_000).prop_map(Some)]
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS;
    prop_oneof![
        8 => (key.clone(), value(), ttl()).prop_map(|(key, value, ttl_ms)| Op::Set { key, value, ttl_ms }),
        2 => (proptest::collection::vec((key.clone(), value()), 0..5), ttl())
            .prop_map(|(items, ttl_ms)| Op::SetMany { items, ttl_ms }),
        8 => key.clone().prop_map(Op::Get),
        2 => key.clone().prop_map(Op::Exists),
        3 => key.clone().prop_map(Op::Metadata),
        3 => key.clone().prop_map(Op::Delete),
        1 => proptest::collection::vec(key, 0..5).prop_map(Op::DeleteMany),
        3 => (0u64..3_000).prop_map(Op::Advance),
        2 => Just(Op::Cleanup),
        1 => Just(Op::Clear),
        2 => Just(Op::Flush),
        1 => Just(Op::Keys),
        1 => Just(Op::Stats),
        1 => Just(Op::CloseAndOpen),
        1 => Just(Op::FreshCoordinator),
    ]
}

/// One case: whether back-pressure is forced, and the operations.
fn case() -> impl Strategy<Value = (bool, Vec<Op>)> {
    (any::<bool>(), proptest::collection::vec(op(), 1..48))
}

fn key_bytes(key: u8) -> Vec<u8> {
    format!("k{key}").into_bytes()
}

#[derive(Clone, Debug)]
struct ModelEntry {
    value: Vec<u8>,
    created_ms: u64,
    expires_ms: Option<u64>,
    access_count: u64,
    last_access_ms: Option<u64>,
}

/// What the cache must look like: every entry still stored (expired ones too, until removed),
/// the clock, and the lifetime counters.
#[derive(Debug, Default)]
struct Model {
    entries: BTreeMap<Vec<u8>, ModelEntry>,
    now_ms: u64,
    sets: u64,
    hits: u64,
    misses: u64,
    deletes: u64,
    /// Expirations certainly counted (expired entries removed by `cleanup`, whether it or an
    /// earlier sweep removed them).
    expirations_at_least: u64,
    /// Expired entries that left the model another way (replaced, deleted, cleared): a sweep may
    /// or may not have counted each before.
    expirations_maybe: u64,
}

impl Model {
    fn live(&self, key: &[u8]) -> Option<&ModelEntry> {
        self.entries
            .get(key)
            .filter(|entry| entry.expires_ms.is_none_or(|expires| expires > self.now_ms))
    }

    fn is_expired(&self, entry: &ModelEntry) -> bool {
        entry
            .expires_ms
            .is_some_and(|expires| expires <= self.now_ms)
    }

    /// Removes `key` by a write (set, delete, clear): if it had expired, a sweep may have counted
    /// it already.
    fn remove(&mut self, key: &[u8]) {
        if let Some(entry) = self.entries.remove(key)
            && self.is_expired(&entry)
        {
            self.expirations_maybe += 1;
        }
    }

    /// Expired entries still in the model: each may or may not have been swept yet.
    fn expired_pending(&self) -> u64 {
        self.entries
            .values()
            .filter(|entry| self.is_expired(entry))
            .count() as u64
    }

    /// The range the lifetime expiration count must be in.
    fn expirations(&self) -> std::ops::RangeInclusive<u64> {
        self.expirations_at_least
            ..=self.expirations_at_least + self.expirations_maybe + self.expired_pending()
    }

    fn set(&mut self, key: u8, value: &[u8], ttl_ms: Option<u64>) {
        self.remove(&key_bytes(key));
        self.entries.insert(
            key_bytes(key),
            ModelEntry {
                value: value.to_vec(),
                created_ms: self.now_ms,
                expires_ms: ttl_ms.map(|ttl| self.now_ms + ttl),
                access_count: 0,
                last_access_ms: None,
            },
        );
        self.sets += 1;
    }

    fn live_keys(&self) -> Vec<Vec<u8>> {
        self.entries
            .keys()
            .filter(|key| self.live(key).is_some())
            .cloned()
            .collect()
    }
}

/// The cache under test and what it needs to reopen itself.
struct Subject<'a> {
    root: &'a Path,
    options: CacheOptions,
    coordinator: Coordinator,
    cache: Cache,
}

impl Subject<'_> {
    fn open(coordinator: &Coordinator, root: &Path, options: &CacheOptions) -> Cache {
        coordinator
            .get_shared_cache_instance(root, "model", options.clone())
            .unwrap()
    }
}

fn coordinator() -> Coordinator {
    Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]))
}

fn run_case(
    force_back_pressure: bool,
    ops: &[Op],
    ops_run: &AtomicU64,
) -> Result<(), TestCaseError> {
    let root = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let options = CacheOptions {
        clock: clock.clone(),
        commit_interval: Duration::from_secs(3600),
        max_pending_bytes: if force_back_pressure {
            128
        } else {
            CacheOptions::default().max_pending_bytes
        },
        ..CacheOptions::default()
    };
    let coordinator = coordinator();
    let cache = Subject::open(&coordinator, root.path(), &options);
    let mut subject = Subject {
        root: root.path(),
        options,
        coordinator,
        cache,
    };
    let mut model = Model {
        now_ms: START_MS,
        ..Model::default()
    };
    for (step, op) in ops.iter().enumerate() {
        ops_run.fetch_add(1, Ordering::Relaxed);
        apply(&mut subject, &mut model, &clock, op)
            .map_err(|err| TestCaseError::fail(format!("step {step}, {op:?}: {err}")))?;
    }
    subject.coordinator.reset().unwrap();
    Ok(())
}

fn apply(
    subject: &mut Subject<'_>,
    model: &mut Model,
    clock: &ManualClock,
    op: &Op,
) -> Result<(), TestCaseError> {
    let cache = subject.cache.clone();
    match op {
        Op::Set { key, value, ttl_ms } => {
            cache
                .set(&key_bytes(*key), value, ttl_ms.map(Duration::from_millis))
                .unwrap();
            model.set(*key, value, *ttl_ms);
        }
        Op::SetMany { items, ttl_ms } => {
            let keys: Vec<Vec<u8>> = items.iter().map(|(key, _)| key_bytes(*key)).collect();
            let borrowed: Vec<(&[u8], &[u8])> = keys
                .iter()
                .zip(items)
                .map(|(key, (_, value))| (key.as_slice(), value.as_slice()))
                .collect();
            cache
                .set_many(&borrowed, ttl_ms.map(Duration::from_millis))
                .unwrap();
            for (key, value) in items {
                model.set(*key, value, *ttl_ms);
            }
        }
        Op::Get(key) => {
            let key = key_bytes(*key);
            let got = cache.get(&key).unwrap();
            let expected = model.live(&key).map(|entry| entry.value.clone());
            prop_assert_eq!(&got, &expected);
            if expected.is_some() {
                model.hits += 1;
                let now = model.now_ms;
                let entry = model.entries.get_mut(&key).unwrap();
                entry.access_count += 1;
                entry.last_access_ms = Some(now);
            } else {
                model.misses += 1;
            }
        }
        Op::Exists(key) => {
            let key = key_bytes(*key);
            prop_assert_eq!(cache.exists(&key).unwrap(), model.live(&key).is_some());
        }
        Op::Metadata(key) => {
            let key = key_bytes(*key);
            let got = cache.get_metadata(&key).unwrap();
            match (got, model.live(&key)) {
                (None, None) => {}
                (Some(meta), Some(entry)) => {
                    prop_assert_eq!(meta.size_bytes, entry.value.len() as u64);
                    prop_assert_eq!(
                        meta.created,
                        UNIX_EPOCH + Duration::from_millis(entry.created_ms)
                    );
                    prop_assert_eq!(
                        meta.expires_at,
                        entry
                            .expires_ms
                            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
                    );
                    prop_assert_eq!(
                        meta.ttl,
                        entry
                            .expires_ms
                            .map(|ms| Duration::from_millis(ms - entry.created_ms))
                    );
                    prop_assert_eq!(meta.access_count, entry.access_count, "access count");
                    prop_assert_eq!(
                        meta.last_accessed,
                        entry
                            .last_access_ms
                            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
                        "last access"
                    );
                }
                (got, expected) => {
                    prop_assert!(false, "metadata {:?}, model {:?}", got, expected);
                }
            }
        }
        Op::Delete(key) => {
            let key = key_bytes(*key);
            let existed = model.live(&key).is_some();
            prop_assert_eq!(cache.delete(&key).unwrap(), existed);
            model.remove(&key);
            model.deletes += u64::from(existed);
        }
        Op::DeleteMany(keys) => {
            let keys: Vec<Vec<u8>> = keys.iter().map(|key| key_bytes(*key)).collect();
            let borrowed: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            // Every occurrence of a live key counts, repeated ones too: the store judges them all
            // against the state before the call.
            let existed = keys.iter().filter(|key| model.live(key).is_some()).count();
            prop_assert_eq!(cache.delete_many(&borrowed).unwrap(), existed);
            for key in &keys {
                model.remove(key);
            }
            model.deletes += existed as u64;
        }
        Op::Advance(ms) => {
            clock.advance(Duration::from_millis(*ms));
            model.now_ms += ms;
        }
        Op::Cleanup => {
            let report = cache.cleanup().unwrap();
            let now = model.now_ms;
            let pending = model.expired_pending();
            // Those a sweep has not removed yet are cleanup's to count.
            prop_assert!(
                report.expired <= pending,
                "cleanup expired {} entries, the model has {} expired",
                report.expired,
                pending
            );
            prop_assert_eq!((report.evicted, report.unreadable), (0, 0));
            model
                .entries
                .retain(|_, entry| entry.expires_ms.is_none_or(|expires| expires > now));
            model.expirations_at_least += pending;
        }
        Op::Clear => {
            cache.clear().unwrap();
            let keys: Vec<Vec<u8>> = model.entries.keys().cloned().collect();
            for key in &keys {
                model.remove(key);
            }
        }
        Op::Flush => cache.flush().unwrap(),
        Op::Keys => {
            let mut keys = cache.keys().unwrap();
            keys.sort();
            prop_assert_eq!(keys, model.live_keys());
        }
        Op::Stats => {
            let stats = cache.get_stats().unwrap();
            let live = model.live_keys();
            let bytes: u64 = live
                .iter()
                .map(|key| {
                    let entry = &model.entries[key];
                    key.len() as u64 + entry_header_bytes(entry) + entry.value.len() as u64
                })
                .sum();
            prop_assert_eq!((stats.entries, stats.bytes), (live.len() as u64, bytes));
            let lifetime = stats.lifetime;
            prop_assert_eq!(
                (
                    lifetime.sets,
                    lifetime.hits,
                    lifetime.misses,
                    lifetime.deletes,
                    lifetime.errors
                ),
                (model.sets, model.hits, model.misses, model.deletes, 0),
                "lifetime (sets, hits, misses, deletes, errors)"
            );
            let expected = model.expirations();
            prop_assert!(
                expected.contains(&lifetime.expirations),
                "lifetime expirations {}, the model allows {:?}",
                lifetime.expirations,
                expected
            );
        }
        Op::CloseAndOpen => {
            cache.close().unwrap();
            subject.cache = Subject::open(&subject.coordinator, subject.root, &subject.options);
        }
        Op::FreshCoordinator => {
            subject.coordinator.reset().unwrap();
            subject.coordinator = coordinator();
            subject.cache = Subject::open(&subject.coordinator, subject.root, &subject.options);
        }
    }
    Ok(())
}

#[test]
fn random_operation_sequences_match_a_btreemap_model() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/model.txt",
        ))),
        ..Config::default()
    });
    let ops_run = AtomicU64::new(0);
    let result = runner.run(&case(), |(force_back_pressure, ops)| {
        run_case(force_back_pressure, &ops, &ops_run)
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    eprintln!(
        "model: {cases} random sequences, {} operations checked against the BTreeMap model \
         (shrinking included): 0 mismatches",
        ops_run.into_inner()
    );
}

/// Regression (was a known defect): the entry format stores "never expires" as an expiry of
/// 0 ms, so an entry whose TTL ended exactly at the Unix epoch (a clock at the epoch, as
/// `SystemClock` reports for a clock set before 1970, plus a TTL under 1 ms) never expired. Such
/// an expiry is now stored as 1 ms.
#[test]
fn an_entry_whose_ttl_ends_at_the_epoch_still_expires() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = coordinator();
    let clock = Arc::new(ManualClock::new(0));
    let options = CacheOptions {
        clock: clock.clone(),
        ..CacheOptions::default()
    };
    let cache = coordinator
        .get_shared_cache_instance(root.path(), "model", options)
        .unwrap();
    cache.set(b"k", b"v", Some(Duration::ZERO)).unwrap();
    clock.advance(Duration::from_secs(3600));
    assert_eq!(cache.get(b"k").unwrap(), None, "an hour past its TTL");
    cache.flush().unwrap();
    assert_eq!(
        cache.get(b"k").unwrap(),
        None,
        "an hour past its TTL, committed"
    );
}
