//! Faults injected from outside: a full disk (a file-size limit on a worker process), a read-only
//! root, a root that is a file, and a tag file truncated or overwritten with garbage. Each must
//! give a clear error or a quarantine-and-recover: never a panic, never a wrong value. (A write
//! lock held past `timeout` is `lock_timeout.rs`.)
//!
//! The tests named as regressions reproduced defects these suites found; each says what was wrong
//! and what fixed it, and `docs/reliability.md` lists them.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its location"
)]

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use redb::ReadableDatabase;

use cache_core::{
    Cache, CacheError, CacheOptions, Coordinator, DATABASE_FILE_NAME, Environment, ManualClock,
};
use cache_tests::{SeededRng, check_stamped, fill_value, stamped_value, worker_key};
use rstest::rstest;

const WORKER: &str = env!("CARGO_BIN_EXE_cache-worker");

/// A fixed clock, so that every file these tests corrupt has the same bytes on every run but
/// the access hash's two seeds, drawn at random (in the `usage` table, the same place every run).
fn fixed_options() -> CacheOptions {
    CacheOptions {
        clock: Arc::new(ManualClock::new(1_767_225_600_000)),
        commit_interval: Duration::from_secs(3600),
        ..CacheOptions::default()
    }
}

fn coordinator() -> Coordinator {
    Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]))
}

const ENTRIES: u64 = 400;

fn entry_key(index: u64) -> Vec<u8> {
    format!("entry:{index:04}").into_bytes()
}

/// Writes `ENTRIES` stamped entries to tag `t` under `root` in a few flushed groups, closes it,
/// and returns the database file.
fn populated_tag(root: &Path) -> PathBuf {
    let coordinator = coordinator();
    let cache = coordinator
        .get_shared_cache_instance(root, "t", fixed_options())
        .unwrap();
    for index in 0..ENTRIES {
        let key = entry_key(index);
        cache
            .set(&key, &stamped_value(&key, "w", index), None)
            .unwrap();
        if index % 100 == 99 {
            cache.flush().unwrap();
        }
    }
    let path = cache.database_path().unwrap().to_owned();
    coordinator.reset().unwrap();
    path
}

/// What reading every entry of a damaged tag gave.
#[derive(Debug, Default)]
struct Readback {
    exact: u64,
    missing: u64,
    errors: u64,
    wrong: Vec<String>,
    /// Whether the file was moved aside (at open or after a panic in an operation).
    quarantined: bool,
}

/// Reads every entry through `cache`, sorting each outcome; a wrong value is recorded, not
/// asserted, so that callers can report every one.
fn read_back(cache: &Cache) -> Readback {
    let mut readback = Readback::default();
    for index in 0..ENTRIES {
        let key = entry_key(index);
        match cache.get(&key) {
            Ok(Some(value)) => match check_stamped(&key, &value) {
                Ok((_, seq)) if seq == index => readback.exact += 1,
                Ok((_, seq)) => readback
                    .wrong
                    .push(format!("entry {index} reads as write #{seq}")),
                Err(wrong) => readback.wrong.push(wrong),
            },
            Ok(None) => readback.missing += 1,
            Err(_) => readback.errors += 1,
        }
    }
    readback
}

fn quarantined_files(tag_dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(tag_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().contains(".corrupt-"))
        .collect();
    found.sort();
    found
}

fn assert_redb_integrity(database: &Path) {
    let mut handle = redb::Database::builder()
        .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
        .create(database)
        .unwrap();
    assert!(handle.check_integrity().unwrap(), "redb found damage");
}

/// How a test damages the tag file.
#[derive(Clone, Copy, Debug)]
enum Damage {
    TruncateToZero,
    TruncateToHalf,
    TruncateTo512Bytes,
    /// The last 16 KiB cut off: a tail a read-only open's checks (the table tree) do not reach.
    TruncateTheTail,
    GarbageEverywhere,
    GarbageOverTheHeader,
}

fn damage(path: &Path, how: Damage) {
    let len = fs::metadata(path).unwrap().len();
    let mut file = fs::OpenOptions::new().write(true).open(path).unwrap();
    let mut rng = SeededRng::new(len);
    let mut garbage =
        |count: u64| -> Vec<u8> { (0..count).map(|_| rng.next_u64() as u8).collect() };
    match how {
        Damage::TruncateToZero => file.set_len(0).unwrap(),
        Damage::TruncateToHalf => file.set_len(len / 2).unwrap(),
        Damage::TruncateTo512Bytes => file.set_len(512).unwrap(),
        Damage::TruncateTheTail => file.set_len(len - 16 * 1024).unwrap(),
        Damage::GarbageEverywhere => file.write_all(&garbage(len)).unwrap(),
        Damage::GarbageOverTheHeader => file.write_all(&garbage(4096)).unwrap(),
    }
    file.sync_all().unwrap();
}

/// A tag file truncated or overwritten with garbage opens: the damaged file is moved aside intact
/// (for inspection) and the tag then works, or (a zero-length file, which redb defines as a new
/// database) the tag simply starts empty. Never a panic, never an error, never a wrong value.
/// Where the damage is found: at the open, or (a file whose table tree is intact, opened by the
/// read-only handle, which does not run redb's recovery checks) at the first read that meets a
/// missing page; entries read before that come from intact pages and are checked by their
/// checksums, so they are right, and are counted as such.
#[rstest]
#[case::truncated_to_zero(Damage::TruncateToZero, false)]
#[case::truncated_to_half(Damage::TruncateToHalf, true)]
#[case::truncated_to_512_bytes(Damage::TruncateTo512Bytes, true)]
#[case::truncated_by_its_tail(Damage::TruncateTheTail, true)]
#[case::garbage_everywhere(Damage::GarbageEverywhere, true)]
#[case::garbage_over_the_header(Damage::GarbageOverTheHeader, true)]
fn a_damaged_tag_file_is_quarantined_and_the_tag_recovers(
    #[case] how: Damage,
    #[case] quarantined: bool,
) {
    let root = tempfile::tempdir().unwrap();
    let database = populated_tag(root.path());
    damage(&database, how);
    let damaged = fs::read(&database).unwrap();

    let coordinator = coordinator();
    let cache = coordinator
        .get_shared_cache_instance(root.path(), "t", fixed_options())
        .unwrap_or_else(|err| panic!("{how:?}: the tag does not open: {err}"));
    let readback = read_back(&cache);
    assert!(readback.wrong.is_empty(), "{how:?}: {:?}", readback.wrong);
    assert_eq!(readback.errors, 0, "{how:?}: no read fails");
    if !quarantined {
        assert_eq!(readback.exact, 0, "{how:?}: the tag starts empty");
    }
    cache.set(b"after", b"recovered", None).unwrap();
    cache.flush().unwrap();
    assert_eq!(cache.get(b"after").unwrap(), Some(b"recovered".to_vec()));
    coordinator.reset().unwrap();
    assert_redb_integrity(&database);

    let aside = quarantined_files(database.parent().unwrap());
    if quarantined {
        assert_eq!(aside.len(), 1, "{how:?}: one file moved aside");
        assert_eq!(
            fs::read(&aside[0]).unwrap(),
            damaged,
            "{how:?}: the damaged file is kept as it was found"
        );
    } else {
        assert!(aside.is_empty(), "{how:?}: nothing to move aside");
    }
    eprintln!(
        "faults: tag file {how:?}: opened, {} entries missing, 0 wrong, quarantined: {}",
        readback.missing,
        !aside.is_empty()
    );
}

/// A root that is a file, a root below a file, a tag directory that is a file, and a database
/// path that is a directory: each is a clear error naming the path, and nothing is changed.
#[test]
fn a_root_or_tag_path_of_the_wrong_kind_is_a_clear_error() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("a-file");
    fs::write(&file, b"not a directory").unwrap();
    let coordinator = coordinator();
    let open = |root: &Path| {
        coordinator
            .get_shared_cache_instance(root, "t", CacheOptions::default())
            .map(drop)
    };

    let err = open(&file).unwrap_err();
    assert!(
        matches!(&err, CacheError::InvalidRoot { path, .. } if *path == file),
        "{err}"
    );
    assert!(err.to_string().contains("is not a directory"), "{err}");
    assert_eq!(fs::read(&file).unwrap(), b"not a directory");

    let below = file.join("sub");
    let err = open(&below).unwrap_err();
    assert!(err.to_string().contains(&*below.to_string_lossy()), "{err}");

    let root = scratch.path().join("root");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("t"), b"a file where the tag directory goes").unwrap();
    let err = open(&root).unwrap_err();
    assert!(
        matches!(&err, CacheError::InvalidRoot { reason, .. } if reason.contains("not a directory")),
        "{err}"
    );
    fs::remove_file(root.join("t")).unwrap();

    fs::create_dir_all(root.join("t").join(DATABASE_FILE_NAME)).unwrap();
    let err = open(&root).unwrap_err();
    assert!(
        matches!(&err, CacheError::InvalidRoot { reason, .. } if reason.contains("not a regular file")),
        "{err}"
    );
    assert!(
        fs::read_dir(root.join("t").join(DATABASE_FILE_NAME))
            .unwrap()
            .next()
            .is_none(),
        "the directory in the database's place is left alone"
    );
    eprintln!(
        "faults: 4 wrong-kind paths (root is a file, root below a file, tag dir is a file, database is a directory): 4 clear errors"
    );
}

/// Runs the worker with `args`, under a file-size limit of `blocks` (`ulimit -f`, in the shell's
/// units) with `SIGXFSZ` ignored, so that writes past it fail with `EFBIG` as on a full disk
/// instead of killing the process.
fn worker_with_file_size_limit(blocks: u64, args: &[&std::ffi::OsStr]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(r#"trap "" XFSZ; ulimit -f "$1" || exit 97; shift; exec "$@""#)
        .arg("sh")
        .arg(blocks.to_string())
        .arg(WORKER)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run sh")
}

/// The lines of a worker's report that start with `prefix`, without it.
fn lines_after<'a>(stdout: &'a str, prefix: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix(prefix))
        .collect()
}

const FILL_VALUE_BYTES: usize = 8192;

/// Runs the `fill` worker on `root` under a 4 MiB file-size limit and checks the common part of
/// the outcome: a clean exit, at least one flushed group, a clear error naming the file. Returns
/// the worker's stdout and how many entries it flushed.
fn fill_until_disk_full(root: &Path) -> (String, u64) {
    let output = worker_with_file_size_limit(
        8192,
        &[
            "fill".as_ref(),
            root.as_os_str(),
            "full".as_ref(),
            FILL_VALUE_BYTES.to_string().as_ref(),
            "16".as_ref(),
            "100000".as_ref(),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && !stderr.contains("panicked"),
        "the worker failed ({}): {stderr}\nstdout: {stdout}",
        output.status
    );
    let flushed: u64 = lines_after(&stdout, "flushed ")
        .last()
        .map_or(0, |n| n.parse().unwrap());
    assert!(flushed > 0, "some writes fit before the limit: {stdout}");
    let error = lines_after(&stdout, "error ");
    let database = root.join("full").join(DATABASE_FILE_NAME);
    assert!(
        error.len() == 1
            && error[0].contains(&*database.to_string_lossy())
            && error[0].contains("File too large"),
        "one clear error naming the file and the cause: {stdout}"
    );
    (stdout, flushed)
}

/// Disk full: a commit fails with a clear error naming the file; the process keeps running, a
/// fresh instance of the tag (close, open again) reads every flushed entry back exactly, and once
/// there is room again the file passes redb's integrity check, holds every flushed entry exactly
/// (and nothing wrong), and takes new writes.
#[test]
fn disk_full_is_a_clear_error_and_loses_nothing_flushed() {
    let root = tempfile::tempdir().unwrap();
    let (stdout, flushed) = fill_until_disk_full(root.path());
    assert_eq!(
        lines_after(&stdout, "reopen reread "),
        [format!("ok {flushed}")],
        "a reopened instance reads every flushed entry: {stdout}"
    );

    let database = root.path().join("full").join(DATABASE_FILE_NAME);
    assert_redb_integrity(&database);
    let coordinator = coordinator();
    let cache = coordinator
        .get_shared_cache_instance(root.path(), "full", CacheOptions::default())
        .unwrap();
    let mut unflushed_kept = 0;
    for index in 0..flushed + 64 {
        let key = worker_key("fill", index as usize);
        let value = cache.get(&key).unwrap();
        if index < flushed {
            assert_eq!(
                value,
                Some(fill_value(&key, index, FILL_VALUE_BYTES)),
                "flushed entry {index}"
            );
        } else if let Some(value) = value {
            assert_eq!(value, fill_value(&key, index, FILL_VALUE_BYTES));
            unflushed_kept += 1;
        }
    }
    cache.set(b"after", b"room again", None).unwrap();
    cache.flush().unwrap();
    coordinator.reset().unwrap();
    eprintln!(
        "faults: disk full (4 MiB file-size limit) after {flushed} flushed entries of \
         {FILL_VALUE_BYTES} B: clear error, {flushed} flushed entries exact, {unflushed_kept} \
         unflushed kept, 0 wrong, integrity ok, writable again"
    );
}

/// Regression (was a known defect): after one failed commit (here a full disk), redb latches the
/// I/O error, and every later operation on that handle, even a `get` of an entry flushed long
/// before, failed with "Previous I/O error occurred" until the caller closed the instance. The
/// store now replaces a latched handle with a new one on the same file, keeping its buffer.
#[test]
fn after_a_failed_commit_the_instance_still_serves_flushed_entries() {
    let root = tempfile::tempdir().unwrap();
    let (stdout, flushed) = fill_until_disk_full(root.path());
    assert_eq!(
        lines_after(&stdout, "reread "),
        [format!("ok {flushed}")],
        "the same instance reads every flushed entry after the failure: {stdout}"
    );
}

/// Whether this process can write into a directory whose mode forbids it: true for root (or
/// anyone with `CAP_DAC_OVERRIDE`), for whom permission bits do not bite.
fn permissions_do_not_bite(read_only_dir: &Path) -> bool {
    let probe = read_only_dir.join(".write-probe");
    let wrote = fs::write(&probe, b"").is_ok();
    let _ = fs::remove_file(&probe);
    wrote
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The program and leading arguments that run the worker as a process permission bits apply to:
/// the worker itself, or, when this process is privileged, the worker as `nobody` through
/// `setpriv` (util-linux). `None` when no such process can be made here.
fn unprivileged_worker(privileged: bool) -> Option<Vec<std::ffi::OsString>> {
    if !privileged {
        return Some(vec![WORKER.into()]);
    }
    let drop_to_nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let works = Command::new("setpriv")
        .args(drop_to_nobody)
        .arg("true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    let mut command: Vec<std::ffi::OsString> = vec!["setpriv".into()];
    command.extend(drop_to_nobody.map(Into::into));
    command.push(WORKER.into());
    works.then_some(command)
}

/// Stores `k` in tag `t` under `root` and closes it; the tag's database file.
fn tag_t_holding_k(root: &Path) -> PathBuf {
    let coordinator = coordinator();
    let cache = coordinator
        .get_shared_cache_instance(root, "t", CacheOptions::default())
        .unwrap();
    cache.set(b"k", b"v", None).unwrap();
    let path = cache.database_path().unwrap().to_owned();
    coordinator.reset().unwrap();
    path
}

/// Makes the root holding `database` (in `scratch/root/<tag>/`) readable and traversable by
/// anyone (a probe may run as `nobody`), writable by no one.
fn make_read_only(scratch: &Path, database: &Path) {
    let tag = database.parent().unwrap();
    set_mode(scratch, 0o755);
    set_mode(database, 0o444);
    set_mode(tag, 0o555);
    set_mode(tag.parent().unwrap(), 0o555);
}

/// A read-only root: a tag with a database already in it opens read-only and reads, and a write
/// to it is a clear error naming the file, refused at once (not accepted and lost at the
/// commit); opening a new tag is a clear error naming the path; nothing in the root changes.
/// Run by a process permission bits apply to (as `nobody` through `setpriv` when the tests run
/// as root).
#[test]
fn a_read_only_root_reads_refuses_writes_clearly_and_changes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    let database = tag_t_holding_k(&root);
    let before = fs::read(&database).unwrap();
    make_read_only(scratch.path(), &database);
    let privileged = permissions_do_not_bite(&root);
    let Some(worker) = unprivileged_worker(privileged) else {
        set_mode(&root, 0o700);
        set_mode(database.parent().unwrap(), 0o700);
        eprintln!(
            "faults: SKIPPED read-only root: this process ignores permission bits (root) and \
             `setpriv` cannot drop to nobody here"
        );
        return;
    };

    let mut outcomes = Vec::new();
    for tag in ["t", "new"] {
        let output = Command::new(&worker[0])
            .args(&worker[1..])
            .args(["probe".as_ref(), root.as_os_str(), tag.as_ref()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "probe of {tag} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        outcomes.push(stdout);
    }
    let existing: Vec<&str> = outcomes[0].lines().collect();
    assert_eq!(
        existing[..2],
        ["open ok", "get ok false"],
        "the existing tag opens read-only and reads: {existing:?}"
    );
    assert!(
        existing[2].starts_with("set error ")
            && existing[2].contains(&*database.to_string_lossy())
            && existing[2].contains("Permission denied"),
        "the write is refused at once, naming the database: {existing:?}"
    );
    assert_eq!(
        existing[3..],
        ["flush ok", "close ok"],
        "nothing was accepted, so nothing is left to fail: {existing:?}"
    );
    let new_tag = &outcomes[1];
    assert!(
        new_tag.starts_with("open error ")
            && new_tag.contains(&*root.join("new").to_string_lossy())
            && new_tag.contains("Permission denied"),
        "a clear error naming the tag directory: {new_tag}"
    );

    set_mode(&root, 0o700);
    set_mode(database.parent().unwrap(), 0o700);
    assert_eq!(
        fs::read(&database).unwrap(),
        before,
        "the file is unchanged"
    );
    let names: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, ["t"], "nothing was created in the root");
    eprintln!(
        "faults: read-only root ({}): an existing tag reads and refuses a write clearly, a new tag \
         is a clear error, file unchanged",
        if privileged {
            "probed as nobody via setpriv"
        } else {
            "probed as this user"
        }
    );
}

/// Turns the database at `path` into what a version from before the access hash left: access
/// records by key bytes in a table named `access` (`key` read `count` times, last at
/// `last_ms`), no hash-keyed table, no seeds.
fn make_pre_access_hash(path: &Path, key: &[u8], last_ms: u64, count: u64) {
    const BY_HASH: redb::TableDefinition<u64, (u64, u64)> =
        redb::TableDefinition::new("access_by_hash");
    const BY_KEY: redb::TableDefinition<&[u8], (u64, u64)> = redb::TableDefinition::new("access");
    const USAGE: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("usage");
    let database = redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
        .open(path)
        .unwrap();
    let txn = database.begin_write().unwrap();
    assert!(
        txn.delete_table(BY_HASH).unwrap(),
        "the file has the hash-keyed table"
    );
    {
        let mut usage = txn.open_table(USAGE).unwrap();
        for seed in ["access_hash_seed_0", "access_hash_seed_1"] {
            assert!(usage.remove(seed).unwrap().is_some(), "the file has seeds");
        }
        txn.open_table(BY_KEY)
            .unwrap()
            .insert(key, (last_ms, count))
            .unwrap();
    }
    txn.commit().unwrap();
}

/// Upgrading over a shared root: a file written before the access hash (its access records by
/// key bytes) in a read-only root opens read-only, and its records read as they are; the file
/// is left unchanged. The first writer's commit then moves the records to the hash-keyed table,
/// where other processes find them. Real processes, the reader as `nobody` when the tests run
/// as root.
#[test]
fn a_file_from_before_the_access_hash_reads_in_a_read_only_root_and_a_writer_migrates_it() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    let database = tag_t_holding_k(&root);
    make_pre_access_hash(&database, b"k", 1_234, 5);
    let metadata = |worker: &[std::ffi::OsString]| {
        let output = Command::new(&worker[0])
            .args(&worker[1..])
            .args([
                "metadata".as_ref(),
                root.as_os_str(),
                "t".as_ref(),
                "k".as_ref(),
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };

    let before = fs::read(&database).unwrap();
    make_read_only(scratch.path(), &database);
    let privileged = permissions_do_not_bite(&root);
    let reader = unprivileged_worker(privileged);
    if let Some(reader) = &reader {
        assert_eq!(metadata(reader), "reads 5 1234", "read by key, as it is");
    }
    set_mode(&root, 0o700);
    set_mode(database.parent().unwrap(), 0o700);
    set_mode(&database, 0o600);
    assert_eq!(
        fs::read(&database).unwrap(),
        before,
        "the file is unchanged"
    );

    let writer = [std::ffi::OsString::from(WORKER)];
    let output = Command::new(WORKER)
        .args(["probe".as_ref(), root.as_os_str(), "t".as_ref()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("flush ok"),
        "the writer committed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(
        metadata(&writer),
        "reads 5 1234",
        "moved by the writer's commit"
    );
    let database = redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
        .open(&database)
        .unwrap();
    let names: Vec<String> = database
        .begin_read()
        .unwrap()
        .list_tables()
        .unwrap()
        .map(|table| redb::TableHandle::name(&table).to_owned())
        .collect();
    assert!(
        names.iter().any(|name| name == "access_by_hash")
            && !names.iter().any(|name| name == "access"),
        "migrated: {names:?}"
    );
    eprintln!(
        "faults: a file from before the access hash: {}; a writer migrated it",
        match (&reader, privileged) {
            (None, _) => "SKIPPED the read-only part (root, and no setpriv)",
            (Some(_), true) => "read in a read-only root as nobody via setpriv",
            (Some(_), false) => "read in a read-only root as this user",
        }
    );
}

/// Copies the clean file of a populated tag into a fresh root, lets `damage` change its bytes,
/// opens the tag, and reads everything back, catching a panic. Returns what happened.
fn open_damaged_copy(clean: &[u8], damage: impl FnOnce(&mut fs::File)) -> Result<Readback, String> {
    let root = tempfile::tempdir().unwrap();
    let tag_dir = root.path().join("t");
    fs::create_dir(&tag_dir).unwrap();
    let database = tag_dir.join(DATABASE_FILE_NAME);
    fs::write(&database, clean).unwrap();
    let mut file = fs::OpenOptions::new().write(true).open(&database).unwrap();
    damage(&mut file);
    drop(file);
    let coordinator = coordinator();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let cache = coordinator
            .get_shared_cache_instance(root.path(), "t", fixed_options())
            .map_err(|err| format!("open failed: {err}"))?;
        let mut readback = read_back(&cache);
        if cache.keys().is_err() {
            readback.errors += 1;
        }
        readback.quarantined = fs::read_dir(&tag_dir).unwrap().any(|entry| {
            entry
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".corrupt-")
        });
        Ok(readback)
    }));
    let _ = coordinator.reset();
    outcome.unwrap_or_else(|_| Err("panicked".to_owned()))
}

/// Regression (was a known defect): redb trusts a file that was shut down cleanly and does not
/// verify page checksums on reads, so a byte changed on disk inside a stored value (bit rot, a
/// stray write) was returned as the value. Every entry now carries a CRC-32 over its key, header
/// and value, checked on every read: the damaged entry is a miss, and is removed.
#[test]
fn a_byte_changed_on_disk_inside_a_value_never_reads_back() {
    let root = tempfile::tempdir().unwrap();
    let database = populated_tag(root.path());
    let clean = fs::read(&database).unwrap();
    let key = entry_key(123);
    let value = stamped_value(&key, "w", 123);
    let at = clean
        .windows(value.len())
        .position(|window| window == value.as_slice())
        .expect("the value is stored verbatim in the file");
    let readback = open_damaged_copy(&clean, |file| {
        // The last byte of the value's padding, which no structure of redb's depends on.
        file.seek(SeekFrom::Start((at + value.len() - 1) as u64))
            .unwrap();
        file.write_all(&[value[value.len() - 1] ^ 0x01]).unwrap();
    })
    .unwrap();
    assert!(
        readback.wrong.is_empty(),
        "values read back wrong: {:?}",
        readback.wrong
    );
}

/// Regression (was a known defect): 512 bytes of the file overwritten with garbage, while the
/// file looks cleanly shut down, made redb panic inside a read (`keys()`, `get`), and the panic
/// reached the caller; or, landing in a value, read back as the value; or failed the open with an
/// I/O error ("failed to fill whole buffer") instead of quarantining the file. Each 512-byte
/// block after the header is overwritten in turn. Now: a panic inside an operation is caught and
/// the file quarantined (`CacheError::Damaged`), entry checksums turn damaged values into misses,
/// and a page pointer past the end of the file counts as damage at open.
#[test]
fn a_garbage_block_never_panics_a_read_nor_fails_the_open_nor_reads_back_wrong() {
    const BLOCK: u64 = 512;
    let root = tempfile::tempdir().unwrap();
    let database = populated_tag(root.path());
    let clean = fs::read(&database).unwrap();
    let blocks = clean.len() as u64 / BLOCK;
    let (mut failed, mut wrong) = (Vec::new(), Vec::new());
    let (mut with_errors, mut quarantined) = (0, 0);
    for block in 8..blocks {
        let mut rng = SeededRng::new(block);
        let garbage: Vec<u8> = (0..BLOCK).map(|_| rng.next_u64() as u8).collect();
        match open_damaged_copy(&clean, |file| {
            file.seek(SeekFrom::Start(block * BLOCK)).unwrap();
            file.write_all(&garbage).unwrap();
        }) {
            Ok(readback) if readback.wrong.is_empty() => {
                with_errors += usize::from(readback.errors > 0);
                quarantined += usize::from(readback.quarantined);
            }
            Ok(readback) => wrong.push((block, readback.wrong.len())),
            Err(outcome) => failed.push((block, outcome)),
        }
    }
    eprintln!(
        "faults: {} blocks of {BLOCK} B overwritten with garbage one at a time: {quarantined} \
         files quarantined, {with_errors} with clear read errors, {} panics or failed opens, {} \
         read back wrong values",
        blocks - 8,
        failed.len(),
        wrong.len()
    );
    assert!(
        failed.is_empty() && wrong.is_empty(),
        "blocks whose garbage panicked or failed the open: {failed:?}; (block, wrong values): \
         {wrong:?}"
    );
}
