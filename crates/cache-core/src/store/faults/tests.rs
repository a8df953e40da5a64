//! The deterministic in-process fault suite: a seeded script of cache operations run against a
//! `BTreeMap` model while [`FaultBackend`](super::FaultBackend) fails the file's writes or syncs
//! at one position, swept over every position the script reaches.
//!
//! What is checked, after every operation (the contract in `docs/caching-system.md`, "Ordering
//! rules" and "What a caller may rely on"):
//!
//! - an operation that returned `Ok` is visible to every later read of the process;
//! - an operation that returned an error leaves each key it touched at its old or its new value,
//!   never a third one, never a damaged entry, and nothing panics;
//! - after `flush()` returned `Ok`, the file is durable: a copy of the tag directory taken at
//!   that moment (what a kill -9 would leave) opens, without the fault, to exactly what the
//!   process reads;
//! - an operation fails only if the fault failed a call during it: a handle an earlier failure
//!   latched is replaced by the operation that finds it, without failing it, once the file
//!   works again;
//! - at the end (fault cleared): the cache commits again, and after `close()` and a fresh open
//!   without the fault every key holds a modelled value, every blob an entry refers to exists,
//!   and `cleanup()` leaves exactly the referenced blob files (no orphan, no temp file).
//!
//! The cases: (a) one failed write (a commit that fails part way), (b) one failed `sync_data`
//! (a commit whose data may or may not have reached the file), (c) a latched device error
//! (every read, write and sync fails from the countdown on) that is cleared a few operations
//! later, after which the cache must replace its handle (`handle.rs`, `reopen_if_latched`) and
//! go on with acknowledged writes intact.
//!
//! Deterministic: the script comes from a fixed seed, time from a `ManualClock`, and the commit
//! thread never wakes (a `commit_interval` of an hour), so the file sees the same calls in the
//! same order on every run and a countdown position means the same call each time. The sweep
//! covers every position by default; `CACHE_FAULT_SWEEP_STRIDE=<n>` tests every n-th only,
//! and `CACHE_FAULT_SWEEP_SEEDS=<n>` runs n scripts instead of one (for `--release` runs).

use std::collections::{BTreeMap, BTreeSet};

use super::super::*;
use super::{FaultPlan, Injection, Persistence, inject};
use crate::config::ManualClock;
use crate::files::prepare_root;
use redb::StorageBackend as _;

/// The tag every run stores.
const TAG: &str = "faults";
/// Keys the scripts use: few, so that writes overwrite, delete and release each other's blobs.
const KEY_COUNT: u64 = 6;
/// Values above this go to blob files.
const BLOB_THRESHOLD: u64 = 512;
/// Operations per script.
const SCRIPT_LEN: usize = 36;
/// The script every default run uses.
const SEED: u64 = 0x5EED_FA17_2026;
/// A latched fault is cleared this many operations after its first failure.
const LATCHED_FOR_OPS: usize = 4;

/// xorshift64*: a tiny deterministic generator, enough to pick operations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// One operation of a script. Values are fixed by the script, so every run writes the same.
#[derive(Clone)]
enum Op {
    Set(Vec<u8>, Vec<u8>),
    SetMany(Vec<(Vec<u8>, Vec<u8>)>),
    Delete(Vec<u8>),
    Clear,
    Get(Vec<u8>),
    Keys,
    Flush,
}

/// Keys by name and values by length, for messages.
impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = |key: &[u8]| String::from_utf8_lossy(key).into_owned();
        match self {
            Op::Set(k, value) => write!(f, "set {} ({} bytes)", key(k), value.len()),
            Op::SetMany(items) => {
                let items: Vec<String> = items
                    .iter()
                    .map(|(k, value)| format!("{} ({} bytes)", key(k), value.len()))
                    .collect();
                write!(f, "set_many {}", items.join(", "))
            }
            Op::Delete(k) => write!(f, "delete {}", key(k)),
            Op::Clear => f.write_str("clear"),
            Op::Get(k) => write!(f, "get {}", key(k)),
            Op::Keys => f.write_str("keys"),
            Op::Flush => f.write_str("flush"),
        }
    }
}

fn key(index: u64) -> Vec<u8> {
    format!("key-{index}").into_bytes()
}

/// A small (inline) value, distinct for every operation and key.
fn small_value(op: usize, key: u64, rng: &mut Rng) -> Vec<u8> {
    let len = 8 + rng.below(300) as usize;
    let mut value = format!("op{op}-key{key}-").into_bytes();
    value.resize(len, b'a' + (op % 26) as u8);
    value
}

/// A large value (a blob file), one of a few contents, so that keys share blobs.
fn large_value(rng: &mut Rng) -> Vec<u8> {
    let content = rng.below(4);
    let len = BLOB_THRESHOLD as usize + 1 + content as usize * 700;
    (0..len)
        .map(|index| (index as u64 * 31 + content * 7) as u8)
        .collect()
}

/// The operations of the script of `seed`.
fn script(seed: u64, len: usize) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    (0..len)
        .map(|op| {
            let index = rng.below(KEY_COUNT);
            match rng.below(100) {
                0..=24 => Op::Set(key(index), small_value(op, index, &mut rng)),
                25..=39 => Op::Set(key(index), large_value(&mut rng)),
                40..=49 => {
                    let mut items = Vec::new();
                    for offset in 0..2 + rng.below(2) {
                        let index = (index + offset) % KEY_COUNT;
                        let value = if rng.below(3) == 0 {
                            large_value(&mut rng)
                        } else {
                            small_value(op, index, &mut rng)
                        };
                        items.push((key(index), value));
                    }
                    Op::SetMany(items)
                }
                50..=62 => Op::Delete(key(index)),
                63..=65 => Op::Clear,
                66..=77 => Op::Get(key(index)),
                78..=83 => Op::Keys,
                _ => Op::Flush,
            }
        })
        .collect()
}

/// What a key may read as: the value of its last acknowledged write, and the values of writes
/// that failed since (each may or may not have happened).
#[derive(Clone, Debug)]
struct Model {
    allowed: BTreeMap<Vec<u8>, Vec<Option<Vec<u8>>>>,
}

impl Model {
    fn new() -> Model {
        Model {
            allowed: (0..KEY_COUNT)
                .map(|index| (key(index), vec![None]))
                .collect(),
        }
    }

    fn acknowledged(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        self.allowed.insert(key.to_vec(), vec![value]);
    }

    fn failed(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        let allowed = self.allowed.entry(key.to_vec()).or_default();
        if !allowed.contains(&value) {
            allowed.push(value);
        }
    }

    fn allows(&self, key: &[u8], value: &Option<Vec<u8>>) -> bool {
        self.allowed
            .get(key)
            .is_some_and(|allowed| allowed.contains(value))
    }

    fn may_be_present(&self, key: &[u8]) -> bool {
        self.allowed
            .get(key)
            .is_some_and(|allowed| allowed.iter().any(Option::is_some))
    }

    fn may_be_absent(&self, key: &[u8]) -> bool {
        self.allows(key, &None)
    }
}

fn describe(value: &Option<Vec<u8>>) -> String {
    match value {
        None => "absent".to_owned(),
        Some(bytes) => format!(
            "{} bytes starting {:?}",
            bytes.len(),
            &bytes[..bytes.len().min(12)]
        ),
    }
}

/// The three kinds of fault the suite sweeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    /// One `write`/`set_len` fails.
    FailedWrite,
    /// One `sync_data` fails.
    FailedSync,
    /// From one `write` on, every read, write and sync fails, until cleared.
    LatchedWrite,
    /// From one `sync_data` on, every read, write and sync fails, until cleared.
    LatchedSync,
}

impl Case {
    fn plan(self, position: u64) -> FaultPlan {
        let (writes, syncs) = match self {
            Case::FailedWrite | Case::LatchedWrite => (Some(position), None),
            Case::FailedSync | Case::LatchedSync => (None, Some(position)),
        };
        FaultPlan {
            writes_before_failure: writes,
            syncs_before_failure: syncs,
            persistence: match self {
                Case::FailedWrite | Case::FailedSync => Persistence::Once,
                Case::LatchedWrite | Case::LatchedSync => Persistence::Latched,
            },
        }
    }

    fn latches(self) -> bool {
        matches!(self, Case::LatchedWrite | Case::LatchedSync)
    }
}

fn options() -> CacheOptions {
    CacheOptions {
        blob_threshold_bytes: BLOB_THRESHOLD,
        // The commit thread never wakes: every commit is one the script asks for (a flush, a
        // listing, a clear, a large value, or a full buffer), so runs are alike.
        commit_interval: Duration::from_secs(3600),
        // Small, so that some sets commit by themselves (and can fail).
        max_pending_bytes: 2048,
        // Bounds a wait that should not happen (a lock a failed handle kept) without asserting
        // anything about time.
        timeout: Duration::from_secs(10),
        clock: Arc::new(ManualClock::new(1_700_000_000_000)),
        ..CacheOptions::default()
    }
}

/// One run of a script: a fresh root, the fault registered for its file, the open cache.
struct Run {
    _temp: tempfile::TempDir,
    canonical: PathBuf,
    injection: Option<Injection>,
    cache: Option<Arc<RedbCache>>,
    model: Model,
    /// Where in the script the run is, for messages.
    label: String,
    /// Failures the fault had injected when the current operation began.
    injected_before_op: std::cell::Cell<u64>,
}

impl Run {
    fn start(label: String) -> Run {
        let temp = tempfile::tempdir().unwrap();
        let canonical = prepare_root(temp.path()).unwrap();
        let database = canonical.join(TAG).join(DATABASE_FILE_NAME);
        let injection = inject(&database);
        let cache = RedbCache::open(&canonical, Tag::new(TAG).unwrap(), options()).unwrap();
        Run {
            _temp: temp,
            canonical,
            injection: Some(injection),
            cache: Some(cache),
            model: Model::new(),
            label,
            injected_before_op: std::cell::Cell::new(0),
        }
    }

    fn cache(&self) -> &RedbCache {
        self.cache.as_ref().unwrap()
    }

    fn fault(&self) -> &super::Fault {
        &self.injection.as_ref().unwrap().fault
    }

    /// An operation (with the reads that check it) may fail only if the fault failed a call
    /// during it: a commit that met the fault, or, while a failure is latched, any call that
    /// reached the file. A handle an earlier failure latched is replaced without failing the
    /// operation that finds it, once the file works again.
    fn expect_fault<T: std::fmt::Debug>(&self, what: &str, result: &Result<T>) {
        if let Err(err) = result {
            assert!(
                self.fault().injected() > self.injected_before_op.get(),
                "{}: {what} failed though no fault was injected during it: {}",
                self.label,
                crate::error::ErrorChain(err)
            );
        }
    }

    /// Marks the start of an operation, for [`Run::expect_fault`].
    fn begin_op(&self) {
        self.injected_before_op.set(self.fault().injected());
    }

    /// Runs one operation and updates the model by what it returned.
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Set(key, value) => {
                let result = self.cache().set(key, value, None);
                self.expect_fault("set", &result);
                self.record(key, Some(value.clone()), result.is_ok());
            }
            Op::SetMany(items) => {
                let pairs: Vec<(&[u8], &[u8])> = items
                    .iter()
                    .map(|(key, value)| (key.as_slice(), value.as_slice()))
                    .collect();
                let result = self.cache().set_many(&pairs, None);
                self.expect_fault("set_many", &result);
                // Later items overwrite earlier ones of the same key, as in the buffer.
                for (key, value) in items {
                    self.record(key, Some(value.clone()), result.is_ok());
                }
            }
            Op::Delete(key) => {
                let result = self.cache().delete(key);
                self.expect_fault("delete", &result);
                match result {
                    Ok(existed) => {
                        assert!(
                            if existed {
                                self.model.may_be_present(key)
                            } else {
                                self.model.may_be_absent(key)
                            },
                            "{}: delete said existed={existed}, the model allows {:?}",
                            self.label,
                            self.model.allowed[key]
                                .iter()
                                .map(describe)
                                .collect::<Vec<_>>()
                        );
                        self.model.acknowledged(key, None);
                    }
                    Err(_) => self.model.failed(key, None),
                }
            }
            Op::Clear => {
                let result = self.cache().clear();
                self.expect_fault("clear", &result);
                for index in 0..KEY_COUNT {
                    self.record(&key(index), None, result.is_ok());
                }
            }
            Op::Get(key) => self.check_key(key),
            Op::Keys => {
                let result = self.cache().keys();
                self.expect_fault("keys", &result);
                if let Ok(listed) = result {
                    let listed: BTreeSet<Vec<u8>> = listed.into_iter().collect();
                    for index in 0..KEY_COUNT {
                        let key = key(index);
                        let fits = if listed.contains(&key) {
                            self.model.may_be_present(&key)
                        } else {
                            self.model.may_be_absent(&key)
                        };
                        assert!(
                            fits,
                            "{}: keys() listed={listed:?}, model {:?}",
                            self.label, self.model.allowed
                        );
                    }
                }
            }
            Op::Flush => {
                let result = self.cache().flush();
                self.expect_fault("flush", &result);
                if result.is_ok() {
                    self.check_durable();
                }
            }
        }
    }

    fn record(&mut self, key: &[u8], value: Option<Vec<u8>>, ok: bool) {
        if ok {
            self.model.acknowledged(key, value);
        } else {
            self.model.failed(key, value);
        }
    }

    /// Reads `key` and checks the value against the model: a failed read is allowed only once
    /// a fault has been injected.
    fn check_key(&self, key: &[u8]) {
        let result = self.cache().get(key);
        self.expect_fault("get", &result);
        if let Ok(value) = result {
            assert!(
                self.model.allows(key, &value),
                "{}: {} reads as {}, the model allows {:?}",
                self.label,
                String::from_utf8_lossy(key),
                describe(&value),
                self.model.allowed[key]
                    .iter()
                    .map(describe)
                    .collect::<Vec<_>>()
            );
        }
    }

    fn check_every_key(&self) {
        for index in 0..KEY_COUNT {
            self.check_key(&key(index));
        }
    }

    /// After a `flush()` that returned `Ok`: the tag directory as a kill -9 would leave it now
    /// (a copy), opened without the fault, holds exactly what this process reads, and that is
    /// a value the model allows.
    fn check_durable(&self) {
        let copy = tempfile::tempdir().unwrap();
        copy_tree(&self.canonical.join(TAG), &copy.path().join(TAG));
        let copy_root = prepare_root(copy.path()).unwrap();
        let reopened = RedbCache::open(&copy_root, Tag::new(TAG).unwrap(), options()).unwrap();
        for index in 0..KEY_COUNT {
            let key = key(index);
            let durable = reopened.get(&key).unwrap();
            assert!(
                self.model.allows(&key, &durable),
                "{}: after flush, {} is durable as {}, the model allows {:?}",
                self.label,
                String::from_utf8_lossy(&key),
                describe(&durable),
                self.model.allowed[&key]
                    .iter()
                    .map(describe)
                    .collect::<Vec<_>>()
            );
            if let Ok(here) = self.cache().get(&key) {
                assert_eq!(
                    here,
                    durable,
                    "{}: after flush, {} reads differently here and in the file",
                    self.label,
                    String::from_utf8_lossy(&key)
                );
            }
        }
        reopened.close().unwrap();
    }

    /// The end of a run: the fault cleared, the cache commits at once (replacing a handle a
    /// latched error left), closes, and a fresh open without the fault finds every key as
    /// modelled and the blob files matching the entries.
    fn finish(mut self) {
        self.fault().clear();
        self.begin_op();
        let flushed = self.cache().flush();
        self.expect_fault("the flush after the fault was cleared", &flushed);
        self.check_every_key();
        self.check_durable();
        let seen: Vec<Option<Vec<u8>>> = (0..KEY_COUNT)
            .map(|index| self.cache().get(&key(index)).unwrap())
            .collect();
        self.cache.take().unwrap().close().unwrap();
        drop(self.injection.take());

        let cache = RedbCache::open(&self.canonical, Tag::new(TAG).unwrap(), options()).unwrap();
        for (index, before) in seen.iter().enumerate() {
            let after = cache.get(&key(index as u64)).unwrap();
            assert_eq!(
                &after, before,
                "{}: key-{index} changed across close and open",
                self.label
            );
        }
        let referenced = referenced_blobs(&cache);
        let listed: BTreeSet<[u8; 32]> = cache
            .blob_files
            .list()
            .unwrap()
            .into_iter()
            .map(|(hash, _)| hash)
            .collect();
        let missing: Vec<_> = referenced.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "{}: entries refer to missing blobs {missing:?}",
            self.label
        );
        cache.cleanup().unwrap();
        let listed: BTreeSet<[u8; 32]> = cache
            .blob_files
            .list()
            .unwrap()
            .into_iter()
            .map(|(hash, _)| hash)
            .collect();
        assert_eq!(
            listed, referenced,
            "{}: blob files after cleanup",
            self.label
        );
        let temps = self.canonical.join(TAG).join("blobs").join("tmp");
        let left: Vec<_> = std::fs::read_dir(&temps)
            .map(|entries| entries.map(|entry| entry.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "{}: temp files left behind: {left:?}",
            self.label
        );
        for (index, before) in seen.iter().enumerate() {
            let after = cache.get(&key(index as u64)).unwrap();
            assert_eq!(
                &after, before,
                "{}: key-{index} changed by cleanup",
                self.label
            );
        }
        cache.close().unwrap();
    }
}

/// The blobs the entries of `cache` refer to.
fn referenced_blobs(cache: &RedbCache) -> BTreeSet<[u8; 32]> {
    let open = cache.open_database().unwrap();
    let txn = open.database.begin_read().unwrap();
    entries_with_files(&txn)
        .unwrap()
        .into_iter()
        .filter_map(|entry| entry.blob.map(|blob| blob.hash))
        .collect()
}

/// Copies the directory `from` to `to`, recursively (files and directories only).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Runs `ops` with `plan` armed (none: nothing fails) and every check; returns the writes and
/// syncs the script made.
fn run_script(ops: &[Op], case: Case, plan: Option<FaultPlan>, label: String) -> (u64, u64) {
    let mut run = Run::start(label);
    let (writes_before, syncs_before) = (run.fault().writes_seen(), run.fault().syncs_seen());
    if let Some(plan) = plan {
        run.fault().arm(plan);
    }
    let mut failed_at: Option<usize> = None;
    for (index, op) in ops.iter().enumerate() {
        run.label = format!(
            "{} op {index} {op:?}",
            run.label.split(" op ").next().unwrap_or("")
        );
        run.begin_op();
        run.apply(op);
        run.check_every_key();
        if failed_at.is_none() && run.fault().injected() > 0 {
            failed_at = Some(index);
        }
        if case.latches() && failed_at.is_some_and(|at| index == at + LATCHED_FOR_OPS) {
            run.fault().clear();
        }
    }
    let counts = (
        run.fault().writes_seen() - writes_before,
        run.fault().syncs_seen() - syncs_before,
    );
    if let Some(plan) = plan {
        let reached = match case {
            Case::FailedWrite | Case::LatchedWrite => plan.writes_before_failure < Some(counts.0),
            Case::FailedSync | Case::LatchedSync => plan.syncs_before_failure < Some(counts.1),
        };
        assert_eq!(
            failed_at.is_some(),
            reached,
            "{}: the fault fired at op {failed_at:?}; a position the script reaches must fire, \
             one past it must not",
            run.label
        );
    }
    run.finish();
    counts
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|value| *value > 0)
        .unwrap_or(default)
}

/// Runs the script of each seed once without a fault (counting its writes and syncs), then
/// once per fault position, every position the script reaches and one past the end.
fn sweep(case: Case) {
    let stride = env_number("CACHE_FAULT_SWEEP_STRIDE", 1);
    let seeds = env_number("CACHE_FAULT_SWEEP_SEEDS", 1);
    for seed in SEED..SEED + seeds {
        let ops = script(seed, SCRIPT_LEN);
        let (writes, syncs) =
            run_script(&ops, case, None, format!("{case:?} seed {seed} no fault"));
        let positions = match case {
            Case::FailedWrite | Case::LatchedWrite => writes,
            Case::FailedSync | Case::LatchedSync => syncs,
        };
        assert!(
            positions > 0,
            "the script of seed {seed} never reached the file"
        );
        for position in (0..=positions).step_by(stride as usize) {
            run_script(
                &ops,
                case,
                Some(case.plan(position)),
                format!("{case:?} seed {seed} position {position}/{positions}"),
            );
        }
    }
}

/// Case (a): a commit whose write fails part way, at every write of the script.
#[test]
fn fault_suite_a_failed_write_at_every_position_keeps_the_model() {
    sweep(Case::FailedWrite);
}

/// Case (b): a commit whose `sync_data` fails, at every sync of the script.
#[test]
fn fault_suite_b_failed_sync_at_every_position_keeps_the_model() {
    sweep(Case::FailedSync);
}

/// Case (c): a latched device error from a write on, cleared later: the cache replaces its
/// handle and goes on, acknowledged writes intact.
#[test]
fn fault_suite_c_latched_error_from_a_write_then_cleared_keeps_the_model() {
    sweep(Case::LatchedWrite);
}

/// Case (c), starting at a sync instead of a write.
#[test]
fn fault_suite_c_latched_error_from_a_sync_then_cleared_keeps_the_model() {
    sweep(Case::LatchedSync);
}

/// A commit that meets a handle an earlier I/O error latched, once the device works again,
/// replaces the handle and commits on the new one, as a read does (`read.rs`,
/// `current_snapshot`). Before, that commit failed ("previous I/O error") and only the one
/// after it succeeded: the first write after the disk recovered failed for nothing.
#[test]
fn fault_a_commit_after_the_device_recovered_succeeds_on_a_new_handle() {
    let mut run = Run::start("recovered device".to_owned());
    run.begin_op();
    run.apply(&Op::Set(key(1), b"before the fault".to_vec()));
    run.apply(&Op::Flush);
    run.fault().arm(FaultPlan {
        writes_before_failure: Some(0),
        syncs_before_failure: None,
        persistence: Persistence::Latched,
    });
    run.cache().set(&key(2), b"while failing", None).unwrap();
    assert!(
        run.cache().flush().is_err(),
        "the device fails: the commit must fail"
    );
    assert!(
        run.cache().flush().is_err(),
        "still failing: the reopen fails too"
    );
    run.fault().clear();
    run.cache()
        .flush()
        .expect("the device works again: the commit replaces the latched handle and lands");
    run.model
        .acknowledged(&key(2), Some(b"while failing".to_vec()));
    run.check_durable();
    run.finish();
}

/// The backend itself: a countdown lets that many calls through, fails the next, and then
/// (once) lets calls through again or (latched) fails everything until cleared.
#[test]
fn fault_backend_fails_on_its_countdown_once_or_latched() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("file");
    std::fs::write(&path, b"").unwrap();
    let injection = inject(&path);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let backend =
        super::FaultBackend::for_path(&path, redb::backends::FileBackend::new(file).unwrap());
    injection.fault.arm(FaultPlan {
        writes_before_failure: Some(2),
        syncs_before_failure: Some(0),
        persistence: Persistence::Once,
    });
    assert!(backend.write(0, b"a").is_ok());
    assert!(backend.write(1, b"b").is_ok());
    assert!(backend.write(2, b"c").is_err());
    assert!(
        backend.write(2, b"c").is_ok(),
        "a single fault fails one call"
    );
    assert!(backend.sync_data().is_err());
    assert!(backend.sync_data().is_ok());
    let mut out = [0u8; 3];
    backend.read(0, &mut out).unwrap();
    assert_eq!(&out, b"abc");

    injection.fault.arm(FaultPlan {
        writes_before_failure: Some(0),
        syncs_before_failure: None,
        persistence: Persistence::Latched,
    });
    assert!(backend.write(3, b"d").is_err());
    assert!(
        backend.sync_data().is_err(),
        "a latched fault fails syncs too"
    );
    assert!(backend.read(0, &mut out).is_err(), "and reads");
    assert_eq!(injection.fault.injected(), 5);
    injection.fault.clear();
    assert!(backend.write(3, b"d").is_ok());
    assert!(backend.read(0, &mut out).is_ok());
    assert_eq!(
        (injection.fault.writes_seen(), injection.fault.syncs_seen()),
        (6, 3)
    );

    let elsewhere = temp.path().join("other");
    std::fs::write(&elsewhere, b"").unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&elsewhere)
        .unwrap();
    let untouched =
        super::FaultBackend::for_path(&elsewhere, redb::backends::FileBackend::new(file).unwrap());
    injection.fault.arm(FaultPlan {
        writes_before_failure: Some(0),
        syncs_before_failure: Some(0),
        persistence: Persistence::Latched,
    });
    assert!(
        untouched.write(0, b"x").is_ok(),
        "a fault is armed for its own path only"
    );
    assert!(untouched.sync_data().is_ok());
}
