//! One run of a script under a fault (`faults/tests.rs`): the cache on a fresh root with the
//! fault registered for its file, every operation checked against the model, the durability
//! check on a copy after each `flush()`, the final checks after a reopen and `cleanup()`, and
//! the sweep over every failure position.

use std::collections::BTreeSet;

use super::super::*;
use super::script::*;
use super::{FaultPlan, Injection, Persistence, inject};
use crate::config::ManualClock;
use crate::files::prepare_root;

/// The three kinds of fault the suite sweeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Case {
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
    pub(super) fn plan(self, position: u64) -> FaultPlan {
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

    pub(super) fn latches(self) -> bool {
        matches!(self, Case::LatchedWrite | Case::LatchedSync)
    }
}

pub(super) fn options() -> CacheOptions {
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
pub(super) struct Run {
    pub(super) _temp: tempfile::TempDir,
    pub(super) canonical: PathBuf,
    pub(super) injection: Option<Injection>,
    pub(super) cache: Option<Arc<RedbCache>>,
    pub(super) model: Model,
    /// Where in the script the run is, for messages.
    pub(super) label: String,
    /// Failures the fault had injected when the current operation began.
    pub(super) injected_before_op: std::cell::Cell<u64>,
}

impl Run {
    pub(super) fn start(label: String) -> Run {
        let temp = scratch_dir();
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

    pub(super) fn cache(&self) -> &RedbCache {
        self.cache.as_ref().unwrap()
    }

    pub(super) fn fault(&self) -> &super::Fault {
        &self.injection.as_ref().unwrap().fault
    }

    /// An operation (with the reads that check it) may fail only if the fault failed a call
    /// during it: a commit that met the fault, or, while a failure is latched, any call that
    /// reached the file. A handle an earlier failure latched is replaced without failing the
    /// operation that finds it, once the file works again.
    pub(super) fn expect_fault<T: std::fmt::Debug>(&self, what: &str, result: &Result<T>) {
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
    pub(super) fn begin_op(&self) {
        self.injected_before_op.set(self.fault().injected());
    }

    /// Runs one operation and updates the model by what it returned.
    pub(super) fn apply(&mut self, op: &Op) {
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

    pub(super) fn record(&mut self, key: &[u8], value: Option<Vec<u8>>, ok: bool) {
        if ok {
            self.model.acknowledged(key, value);
        } else {
            self.model.failed(key, value);
        }
    }

    /// Reads `key` and checks the value against the model: a failed read is allowed only once
    /// a fault has been injected.
    pub(super) fn check_key(&self, key: &[u8]) {
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

    pub(super) fn check_every_key(&self) {
        for index in 0..KEY_COUNT {
            self.check_key(&key(index));
        }
    }

    /// After a `flush()` that returned `Ok`: the tag directory as a kill -9 would leave it now
    /// (a copy), opened without the fault, holds exactly what this process reads, and that is
    /// a value the model allows.
    pub(super) fn check_durable(&self) {
        let copy = scratch_dir();
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
    pub(super) fn finish(mut self) {
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

/// A temp directory for a run or a copy: in memory (`/dev/shm`) where there is one, since the
/// suite injects its faults itself and the disk's own `fsync` latency is not what it tests (on
/// the shared development machine it was most of the suite's time); elsewhere the usual one.
pub(super) fn scratch_dir() -> tempfile::TempDir {
    let memory = Path::new("/dev/shm");
    if memory.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(memory)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// The blobs the entries of `cache` refer to.
pub(super) fn referenced_blobs(cache: &RedbCache) -> BTreeSet<[u8; 32]> {
    let open = cache.open_database().unwrap();
    let txn = open.database.begin_read().unwrap();
    entries_with_files(&txn)
        .unwrap()
        .into_iter()
        .filter_map(|entry| entry.blob.map(|blob| blob.hash))
        .collect()
}

/// Copies the directory `from` to `to`, recursively (files and directories only).
pub(super) fn copy_tree(from: &Path, to: &Path) {
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
pub(super) fn run_script(
    ops: &[Op],
    case: Case,
    plan: Option<FaultPlan>,
    label: String,
) -> (u64, u64) {
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

pub(super) fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|value| *value > 0)
        .unwrap_or(default)
}

/// Runs the script of each seed once without a fault (counting its writes and syncs), then
/// once per fault position, every position the script reaches and one past the end.
pub(super) fn sweep(case: Case) {
    let stride = env_number("CACHE_FAULT_SWEEP_STRIDE", 1);
    let seeds = env_number("CACHE_FAULT_SWEEP_SEEDS", 1);
    let first = env_number("CACHE_FAULT_SWEEP_FIRST_SEED", SEED);
    for seed in first..first.saturating_add(seeds) {
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
