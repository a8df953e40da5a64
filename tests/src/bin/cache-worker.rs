//! A worker process for multi-process tests, with one subcommand per scenario.
//!
//! - `pair ROOT TAG ME OTHER COUNT BARRIER_DIR`: writes COUNT entries while a partner worker
//!   writes its own, flushes, then reads both sets back. Prints `read N` and exits 0 when every
//!   entry reads back exactly; exits 1 with a message otherwise.
//! - `write-until-killed ROOT TAG FLUSH_EVERY`: writes entries `crash:000000`, `crash:000001`, ...
//!   forever, calling `flush()` after every FLUSH_EVERY writes and then printing `flushed N`
//!   (every entry below N is durable). The test kills it with SIGKILL.
//! - `same-blob ROOT TAG ME OTHER LEN BARRIER_DIR`: stores the same LEN-byte value (a blob) under
//!   its own key `blob:ME` at the same moment as its partner, flushes, then reads both keys back.
//!   Prints `read 2` and exits 0 when both read back exactly.
//! - `hold-write-lock DATABASE_FILE`: opens the file with redb directly (`MultiWriter`, as the
//!   cache does), begins a write transaction, prints `locked`, and holds it until killed.
//! - `hold-mid-commit DATABASE_FILE`: opens the file with redb directly (`MultiWriter`) on a
//!   backend that, once armed, blocks inside the first write of the header: it writes a row,
//!   arms, commits, and prints `holding` from inside that write, where the commit holds the
//!   write lock and the header lock exclusively (what a process stopped mid-commit holds). It
//!   stays there until killed.
//! - `open-and-read ROOT TAG TIMEOUT_MS [wait]`: opens the tag with a TIMEOUT_MS lock timeout
//!   (`open ok`, or `open error <kind> <message>` and exit), with `wait` reads one line from
//!   stdin first, then lists the keys (`read ok N` or `read error <kind> <message>`) and closes
//!   (`close ok` or `close error <kind> <message>`). `<kind>` is `LockTimeout` or `other`. Exits
//!   0 whatever the outcome: the test judges the lines.
//! - `crash-writer ROOT TAG SEED FLUSH_EVERY KEYS`: runs the seeded crash script
//!   (`cache_tests::crash_script`: sets, deletes, cleanups, clears over KEYS keys) forever,
//!   flushing after every FLUSH_EVERY operations and then printing `flushed N` (the first N
//!   operations are durable). The test kills it with SIGKILL at a random moment.
//! - `load ROOT TAG ME SEED OPS BARRIER_DIR REPORT_FILE EVERYONE`: one of several processes
//!   running OPS mixed operations (get, set, set_many, delete, cleanup, flush) on one tag: its own
//!   keys, keys shared by everyone, other workers' keys, and short-TTL keys. Every read is checked
//!   (its own keys against its model, others' values must be stamped for their key); only a
//!   `LockTimeout` is tolerated (counted). Writes its final model to REPORT_FILE (`own K SEQ|-`,
//!   `shared K SEQ|-`) and prints one `key=value` summary line. EVERYONE is the comma-separated
//!   list of worker names, for the start barrier and the other workers' keys.
//! - `fill ROOT TAG VALUE_BYTES FLUSH_EVERY MAX_ENTRIES`: writes VALUE_BYTES-byte entries until
//!   an operation fails (run under a file-size limit: disk full), printing `flushed N` after each
//!   flush, then `error <message>`, then rereads every flushed entry (`reread N`) and closes
//!   (`close ok` or `close error <message>`). Exits 1 if nothing failed within MAX_ENTRIES.
//! - `probe ROOT TAG`: opens the tag, then reads, writes and flushes one entry, printing one line
//!   per step (`open ok`, `open error <message>`, ...). Exits 0 whatever the outcome: the test
//!   judges the lines (a panic would still exit 101).
//! - `compute ROOT TAG KEY COUNT_FILE CALLS_FILE CALLERS HOLD_MS ok|fail`: appends its pid to
//!   CALLS_FILE, then asks for KEY with `get_or_compute`. Its computation appends its pid to
//!   COUNT_FILE, waits until CALLS_FILE has CALLERS lines (every caller has asked), holds for
//!   HOLD_MS, then returns `computed by <pid>` (`ok`) or fails (`fail`). Prints `value <value>`
//!   and `counters computations=N waits=N takeovers=N`, exits 0; exits 1 with the error.
//! - `contain ROOT TAG set|cleanup|doctor|repair`: one maintenance or write step on a root an
//!   attacker prepared (`security.rs`). `set` stores a 300 KB blob value (the same bytes every
//!   time: `cache_tests::large_value`) and a staged directory holding one file, then flushes;
//!   `cleanup` runs the tag's cleanup; `doctor` and `repair` run its checks without and with
//!   repair. Prints `ok ...` or `error <message>` for `set` and `cleanup`, and one
//!   `check <name> <status> <detail>` line per doctor check. Exits 0 whatever the outcome.
//! - `blob-overwriter ROOT TAG KEYS LEN FIRST_SEQ`: overwrites keys `blob:00` .. `blob:<KEYS-1>`
//!   in turn, forever, with LEN-byte values (`cache_tests::blob_value`, writer `overwriter`,
//!   sequence numbers from FIRST_SEQ up), default options (so LEN above 256 KiB is a blob),
//!   flushing after each and then printing `acked <key> <seq>`. The test kills it with SIGKILL.
//! - `blob-fill-then ROOT TAG COUNT LEN clear|cleanup`: stores COUNT LEN-byte blob values
//!   (`fill:000000` ..., blob threshold `cache_tests::TEST_BLOB_THRESHOLD`), flushes, prints
//!   `flushed COUNT`; then either prints `clearing` and runs `clear()`, or closes, reopens the tag
//!   with a limit of COUNT / 2 entries, prints `cleaning` and runs `cleanup()` (which evicts
//!   down to the limit); then prints `done`. The test kills it with SIGKILL in between.
//! - `blob-crash-writer ROOT TAG SEED FLUSH_EVERY KEYS`: `crash-writer` with
//!   `cache_tests::blob_crash_script` (small and blob sets, blob overwrites, deletes, cleanups,
//!   clears) and the test blob threshold.
//! - `blob-restorer ROOT TAG KEYS LEN ROUNDS DONE_FILE`: ROUNDS times, deletes the KEYS blob
//!   entries `restore:000` ... and flushes, then stores each again with the same LEN-byte
//!   content (so the same blob file) and flushes; before each round's deletes it lists the keys
//!   and prints `round N missing M` (M entries it stored in round N were gone: nobody else
//!   deletes); then creates DONE_FILE.
//! - `dir-store ROOT TAG KEY FILES ME OTHER BARRIER_DIR`: generates the tree
//!   `cache_tests::trees` makes for FILES files (seed 1, variant 0) in a staged directory,
//!   waits at the barrier for its partner, stores it under KEY with `set_directory`, prints
//!   `stored` and exits 0.
//! - `dir-store-until-killed ROOT TAG FILES`: stores generated trees (variant `N % 3`) under
//!   `dir:N` for N = 0, 1, ..., printing `stored N` after each, forever. The test kills it with
//!   SIGKILL in the middle of a store.
//! - `generate-tree DIR FILES MEAN_LEN VARIANT`: writes the tree `cache_tests::trees` makes
//!   (seed 1) into the existing directory DIR: for `cargo xtask bench workspace`.
//! - `blob-reader ROOT TAG KEYS LEN DONE_FILE PASSES_AFTER`: reads the restorer's keys in a
//!   loop, checking every value found is exact, until DONE_FILE exists and PASSES_AFTER more
//!   passes are done; prints `reads N hits N`.
//! - `remote-build ROOT MARKERS TARGET`: one machine of a fleet asking for a firmware build
//!   through the remote its environment configures (`cache-worker/remote_build.rs`, which says
//!   what it prints).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a test helper program reports on its streams"
)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use cache_core::{Cache, CacheError, CacheOptions, Coordinator, ErrorChain};
use cache_tests::trees::{TreeSpec, generate_tree};
use cache_tests::{
    CrashOp, SeededRng, TEST_BLOB_THRESHOLD, append_line, barrier, blob_crash_script, blob_value,
    check_blob_value, check_stamped, computed_value, crash_key, crash_script, crash_value,
    fill_value, gather, stamped_value, until_lines, worker_key, worker_value,
};

#[path = "cache-worker/remote_build.rs"]
mod remote_build;

fn main() {
    if let Err(err) = run() {
        eprintln!("cache-worker: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((command, rest)) if command == "pair" => pair(rest),
        Some((command, rest)) if command == "write-until-killed" => write_until_killed(rest),
        Some((command, rest)) if command == "same-blob" => same_blob(rest),
        Some((command, [path])) if command == "hold-write-lock" => hold_write_lock(path),
        Some((command, [path])) if command == "hold-mid-commit" => hold_mid_commit(path),
        Some((command, rest)) if command == "open-and-read" => open_and_read(rest),
        Some((command, rest)) if command == "only-read" => only_read(rest),
        Some((command, rest)) if command == "crash-writer" => crash_writer(rest),
        Some((command, rest)) if command == "load" => load(rest),
        Some((command, rest)) if command == "fill" => fill(rest),
        Some((command, [root, tag])) if command == "probe" => probe(root, tag),
        Some((command, [root, tag, key])) if command == "metadata" => metadata(root, tag, key),
        Some((command, rest)) if command == "compute" => compute(rest),
        Some((command, [root, tag, step])) if command == "contain" => contain(root, tag, step),
        Some((command, rest)) if command == "blob-overwriter" => blob_overwriter(rest),
        Some((command, rest)) if command == "blob-fill-then" => blob_fill_then(rest),
        Some((command, rest)) if command == "blob-crash-writer" => blob_crash_writer(rest),
        Some((command, rest)) if command == "blob-restorer" => blob_restorer(rest),
        Some((command, rest)) if command == "blob-reader" => blob_reader(rest),
        Some((command, rest)) if command == "remote-build" => remote_build::remote_build(rest),
        Some((command, rest)) if command == "dir-store" => dir_store(rest),
        Some((command, [dir, files, mean_len, variant])) if command == "generate-tree" => {
            generate_tree(
                &PathBuf::from(dir),
                TreeSpec {
                    files: files.parse().context("while reading FILES")?,
                    mean_len: mean_len.parse().context("while reading MEAN_LEN")?,
                    seed: 1,
                    variant: variant.parse().context("while reading VARIANT")?,
                },
            )
        }
        Some((command, [root, tag, files])) if command == "dir-store-until-killed" => {
            dir_store_until_killed(root, tag, files)
        }
        _ => bail!(
            "usage: cache-worker (pair ROOT TAG ME OTHER COUNT BARRIER_DIR | \
             write-until-killed ROOT TAG FLUSH_EVERY | same-blob ROOT TAG ME OTHER LEN BARRIER_DIR | \
             hold-write-lock DATABASE_FILE | hold-mid-commit DATABASE_FILE | \
             open-and-read ROOT TAG TIMEOUT_MS [wait] | only-read ROOT TAG WRITER COUNT ROUNDS | \
             metadata ROOT TAG KEY | \
             crash-writer ROOT TAG SEED FLUSH_EVERY KEYS | \
             load ROOT TAG ME SEED OPS BARRIER_DIR REPORT_FILE EVERYONE | \
             fill ROOT TAG VALUE_BYTES FLUSH_EVERY MAX_ENTRIES | probe ROOT TAG | \
             compute ROOT TAG KEY COUNT_FILE CALLS_FILE CALLERS HOLD_MS ok|fail | \
             contain ROOT TAG set|cleanup|doctor|repair | \
             blob-overwriter ROOT TAG KEYS LEN FIRST_SEQ | \
             blob-fill-then ROOT TAG COUNT LEN clear|cleanup | \
             blob-crash-writer ROOT TAG SEED FLUSH_EVERY KEYS | \
             blob-restorer ROOT TAG KEYS LEN ROUNDS DONE_FILE | \
             remote-build ROOT MARKERS TARGET | \
             blob-reader ROOT TAG KEYS LEN DONE_FILE PASSES_AFTER | \
             dir-store ROOT TAG KEY FILES ME OTHER BARRIER_DIR | \
             dir-store-until-killed ROOT TAG FILES | \
             generate-tree DIR FILES MEAN_LEN VARIANT)"
        ),
    }
}

fn open(coordinator: &Coordinator, root: &str, tag: &str) -> anyhow::Result<Cache> {
    open_with(coordinator, root, tag, CacheOptions::default())
}

fn open_with(
    coordinator: &Coordinator,
    root: &str,
    tag: &str,
    options: CacheOptions,
) -> anyhow::Result<Cache> {
    coordinator
        .get_shared_cache_instance(&PathBuf::from(root), tag, options)
        .context("while opening the cache")
}

/// Options with the kill tests' small blob threshold, so that small values make blobs.
fn small_blob_options() -> CacheOptions {
    CacheOptions {
        blob_threshold_bytes: TEST_BLOB_THRESHOLD,
        ..CacheOptions::default()
    }
}

fn pair(args: &[String]) -> anyhow::Result<()> {
    let [root, tag, me, other, count, barrier_dir] = args else {
        bail!("usage: cache-worker pair ROOT TAG ME OTHER COUNT BARRIER_DIR");
    };
    let count: usize = count.parse().context("while parsing COUNT")?;
    let barrier_dir = PathBuf::from(barrier_dir);
    let limit = Duration::from_secs(60);
    let coordinator = Coordinator::new();
    let cache = open(&coordinator, root, tag)?;

    barrier(
        &barrier_dir,
        &format!("{me}.ready"),
        &format!("{other}.ready"),
        limit,
    )?;
    for index in 0..count {
        cache
            .set(&worker_key(me, index), &worker_value(me, index), None)
            .with_context(|| format!("while writing entry {index}"))?;
    }
    cache.flush().context("while flushing")?;
    barrier(
        &barrier_dir,
        &format!("{me}.done"),
        &format!("{other}.done"),
        limit,
    )?;

    let mut read = 0;
    for writer in [me, other] {
        for index in 0..count {
            let value = cache
                .get(&worker_key(writer, index))
                .with_context(|| format!("while reading {writer} #{index}"))?;
            if value.as_deref() != Some(worker_value(writer, index).as_slice()) {
                bail!("entry {writer} #{index} read back as {value:?}");
            }
            read += 1;
        }
    }
    coordinator.reset().context("while closing")?;
    println!("read {read}");
    Ok(())
}

fn same_blob(args: &[String]) -> anyhow::Result<()> {
    let [root, tag, me, other, len, barrier_dir] = args else {
        bail!("usage: cache-worker same-blob ROOT TAG ME OTHER LEN BARRIER_DIR");
    };
    let len: usize = len.parse().context("while parsing LEN")?;
    let value = same_blob_value(len);
    let barrier_dir = PathBuf::from(barrier_dir);
    let limit = Duration::from_secs(60);
    let coordinator = Coordinator::new();
    let cache = open(&coordinator, root, tag)?;
    barrier(
        &barrier_dir,
        &format!("{me}.ready"),
        &format!("{other}.ready"),
        limit,
    )?;
    cache
        .set(format!("blob:{me}").as_bytes(), &value, None)
        .context("while storing the blob")?;
    cache.flush().context("while flushing")?;
    barrier(
        &barrier_dir,
        &format!("{me}.done"),
        &format!("{other}.done"),
        limit,
    )?;
    for writer in [me, other] {
        let read = cache
            .get(format!("blob:{writer}").as_bytes())
            .with_context(|| format!("while reading blob:{writer}"))?;
        if read.as_deref() != Some(value.as_slice()) {
            bail!(
                "blob:{writer} read back wrong ({:?} bytes)",
                read.map(|v| v.len())
            );
        }
    }
    coordinator.reset().context("while closing")?;
    println!("read 2");
    Ok(())
}

/// The value both `same-blob` workers store: the same bytes in both processes.
fn same_blob_value(len: usize) -> Vec<u8> {
    (0..len).map(|index| (index % 251) as u8).collect()
}

fn write_until_killed(args: &[String]) -> anyhow::Result<()> {
    let [root, tag, flush_every] = args else {
        bail!("usage: cache-worker write-until-killed ROOT TAG FLUSH_EVERY");
    };
    let flush_every: usize = flush_every.parse().context("while parsing FLUSH_EVERY")?;
    let coordinator = Coordinator::new();
    let cache = open(&coordinator, root, tag)?;
    let mut stdout = std::io::stdout().lock();
    for index in 0.. {
        cache
            .set(
                &worker_key("crash", index),
                &worker_value("crash", index),
                None,
            )
            .with_context(|| format!("while writing entry {index}"))?;
        if (index + 1) % flush_every == 0 {
            cache.flush().context("while flushing")?;
            writeln!(stdout, "flushed {}", index + 1).context("while reporting")?;
            stdout.flush().context("while reporting")?;
        }
    }
    Ok(())
}

fn hold_write_lock(path: &str) -> anyhow::Result<()> {
    let database = redb::Database::builder()
        .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
        .create(path)
        .context("while opening the database")?;
    let _txn = database
        .begin_write()
        .context("while taking the write lock")?;
    println!("locked");
    std::io::stdout().flush().context("while reporting")?;
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// redb's file backend, which blocks forever in the first write at offset 0 (the header) once
/// armed, after printing `holding`.
#[derive(Debug)]
struct BlockInHeaderWrite {
    file: redb::backends::FileBackend,
    /// Shared with the code that arms it.
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl redb::StorageBackend for BlockInHeaderWrite {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.file.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        if offset == 0 && self.armed.load(std::sync::atomic::Ordering::SeqCst) {
            // Inside the commit's header write: it holds the header lock exclusively here.
            report(format_args!("holding")).map_err(std::io::Error::other)?;
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        self.file.write(offset, data)
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.file.close()
    }

    fn try_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.file.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.query_lock_range(start, end)
    }
}

fn hold_mid_commit(path: &str) -> anyhow::Result<()> {
    const TABLE: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("held-mid-commit");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .context("while opening the database file")?;
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let backend = BlockInHeaderWrite {
        file: redb::backends::FileBackend::new(file).context("while making the backend")?,
        armed: std::sync::Arc::clone(&armed),
    };
    let database = redb::Database::builder()
        .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
        .create_with_backend(backend)
        .context("while opening the database")?;
    let txn = database
        .begin_write()
        .context("while taking the write lock")?;
    txn.open_table(TABLE)
        .context("while opening a table")?
        .insert("key", "value")
        .context("while writing")?;
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    txn.commit().context("while committing")?;
    bail!("the commit returned instead of blocking in its header write")
}

/// `LockTimeout` or `other`, and the message.
fn kind_and_message(err: &CacheError) -> String {
    let kind = match err {
        CacheError::LockTimeout { .. } => "LockTimeout",
        _ => "other",
    };
    format!("{kind} {err}")
}

fn open_and_read(args: &[String]) -> anyhow::Result<()> {
    let (root, tag, timeout_ms, wait) = match args {
        [root, tag, timeout_ms] => (root, tag, timeout_ms, false),
        [root, tag, timeout_ms, wait] if wait == "wait" => (root, tag, timeout_ms, true),
        _ => bail!("usage: cache-worker open-and-read ROOT TAG TIMEOUT_MS [wait]"),
    };
    let options = CacheOptions {
        timeout: Duration::from_millis(timeout_ms.parse().context("while parsing TIMEOUT_MS")?),
        ..CacheOptions::default()
    };
    let coordinator = Coordinator::new();
    let cache =
        match coordinator.get_shared_cache_instance(&PathBuf::from(root), tag.as_str(), options) {
            Ok(cache) => {
                report(format_args!("open ok"))?;
                cache
            }
            Err(err) => return report(format_args!("open error {}", kind_and_message(&err))),
        };
    if wait {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("while waiting for the go-ahead on stdin")?;
    }
    match cache.keys() {
        Ok(keys) => report(format_args!("read ok {}", keys.len()))?,
        Err(err) => report(format_args!("read error {}", kind_and_message(&err)))?,
    }
    match coordinator.reset() {
        Ok(()) => report(format_args!("close ok")),
        Err(err) => report(format_args!("close error {}", kind_and_message(&err))),
    }
}

/// `only-read`: opens the tag, reads entries `0..COUNT` of `WRITER` `ROUNDS` times, checking each
/// value, and closes normally, writing nothing itself; reports `hits N`.
fn only_read(args: &[String]) -> anyhow::Result<()> {
    let [root, tag, writer, count, rounds] = args else {
        bail!("usage: cache-worker only-read ROOT TAG WRITER COUNT ROUNDS");
    };
    let count: usize = count.parse().context("while parsing COUNT")?;
    let rounds: usize = rounds.parse().context("while parsing ROUNDS")?;
    let coordinator = Coordinator::new();
    let cache = coordinator
        .get_shared_cache_instance(&PathBuf::from(root), tag.as_str(), CacheOptions::default())
        .context("while opening the tag")?;
    let mut hits = 0;
    for _ in 0..rounds {
        for index in 0..count {
            let read = cache
                .get(&worker_key(writer, index))
                .context("while reading")?;
            if read != Some(worker_value(writer, index)) {
                bail!("entry {index} of {writer} read back as {read:?}");
            }
            hits += 1;
        }
    }
    drop(cache);
    coordinator.reset().context("while closing")?;
    report(format_args!("hits {hits}"))
}

/// Prints one line and pushes it down the pipe at once: the test may kill us right after.
fn report(line: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").context("while reporting")?;
    stdout.flush().context("while reporting")
}

fn crash_writer(args: &[String]) -> anyhow::Result<()> {
    let [root, tag, seed, flush_every, keys] = args else {
        bail!("usage: cache-worker crash-writer ROOT TAG SEED FLUSH_EVERY KEYS");
    };
    let seed: u64 = seed.parse().context("while parsing SEED")?;
    let flush_every: usize = flush_every.parse().context("while parsing FLUSH_EVERY")?;
    let keys: u64 = keys.parse().context("while parsing KEYS")?;
    let coordinator = Coordinator::new();
    let cache = open(&coordinator, root, tag)?;
    run_crash_script(&cache, crash_script(seed, keys), flush_every)
}

/// Runs a crash script's operations on `cache` forever, flushing after every `flush_every` and
/// then reporting `flushed N`.
fn run_crash_script(
    cache: &Cache,
    script: impl Iterator<Item = CrashOp>,
    flush_every: usize,
) -> anyhow::Result<()> {
    for (index, op) in script.enumerate() {
        match op {
            CrashOp::Set { .. } | CrashOp::SetBlob { .. } => match crash_value(op) {
                Some((key, value)) => cache.set(&key, &value, None),
                None => Ok(()),
            },
            CrashOp::Delete { key } => cache.delete(&crash_key(key)).map(drop),
            CrashOp::Cleanup => cache.cleanup().map(drop),
            CrashOp::Clear => cache.clear(),
        }
        .with_context(|| format!("while running operation {index}: {op:?}"))?;
        if (index + 1) % flush_every == 0 {
            cache.flush().context("while flushing")?;
            report(format_args!("flushed {}", index + 1))?;
        }
    }
    Ok(())
}

fn blob_crash_writer(args: &[String]) -> anyhow::Result<()> {
    let [root, tag, seed, flush_every, keys] = args else {
        bail!("usage: cache-worker blob-crash-writer ROOT TAG SEED FLUSH_EVERY KEYS");
    };
    let seed: u64 = seed.parse().context("while parsing SEED")?;
    let flush_every: usize = flush_every.parse().context("while parsing FLUSH_EVERY")?;
    let keys: u64 = keys.parse().context("while parsing KEYS")?;
    let coordinator = Coordinator::new();
    let cache = open_with(&coordinator, root, tag, small_blob_options())?;
    run_crash_script(&cache, blob_crash_script(seed, keys), flush_every)
}

/// The key of the blob overwriter's key number `index`.
fn overwritten_key(index: u64) -> Vec<u8> {
    format!("blob:{index:02}").into_bytes()
}

fn blob_overwriter(args: &[String]) -> anyhow::Result<()> {
    let [root, tag, keys, len, first_seq] = args else {
        bail!("usage: cache-worker blob-overwriter ROOT TAG KEYS LEN FIRST_SEQ");
    };
    let keys: u64 = keys.parse().context("while parsing KEYS")?;
    let len: usize = len.parse().context("while parsing LEN")?;
    let first_seq: u64 = first_seq.parse().context("while parsing FIRST_SEQ")?;
    let coordinator = Coordinator::new();
    let cache = open(&coordinator, root, tag)?;
    for seq in first_seq.. {
        let key = overwritten_key(seq % keys.max(1));
        cache
            .set(&key, &blob_value(&key, "overwriter", seq, len), None)
            .with_context(|| format!("while storing #{seq}"))?;
        cache.flush().context("while flushing")?;
        report(format_args!(
            "acked {} {seq}",
            String::from_utf8_lossy(&key)
        ))?;
    }
    Ok(())
}

fn blob_fill_then(args: &[String]) -> anyhow::Result<()> {
    let [root, tag, count, len, then] = args else {
        bail!("usage: cache-worker blob-fill-then ROOT TAG COUNT LEN clear|cleanup");
    };
    let count: usize = count.parse().context("while parsing COUNT")?;
    let len: usize = len.parse().context("while parsing LEN")?;
    let coordinator = Coordinator::new();
    let cache = open_with(&coordinator, root, tag, small_blob_options())?;
    for index in 0..count {
        let key = worker_key("fill", index);
        cache
            .set(&key, &blob_value(&key, "fill", index as u64, len), None)
            .with_context(|| format!("while storing entry {index}"))?;
    }
    cache.flush().context("while flushing")?;
    report(format_args!("flushed {count}"))?;
    match then.as_str() {
        "clear" => {
            report(format_args!("clearing"))?;
            cache.clear().context("while clearing")?;
        }
        "cleanup" => {
            // A process with a smaller limit: its cleanup evicts half the entries and their
            // blobs in one transaction.
            drop(cache);
            coordinator.reset().context("while closing")?;
            let limited = CacheOptions {
                max_entries: Some((count / 2).max(1) as u64),
                ..small_blob_options()
            };
            let cache = open_with(&coordinator, root, tag, limited)?;
            report(format_args!("cleaning"))?;
            cache.cleanup().context("while cleaning up")?;
        }
        other => bail!("THEN must be clear or cleanup, not {other:?}"),
    }
    report(format_args!("done"))
}

/// The key of the restorer's entry number `index`.
fn restored_key(index: u64) -> Vec<u8> {
    format!("restore:{index:03}").into_bytes()
}

/// The one content the restorer stores under `key`, every time.
fn restored_value(key: &[u8], len: usize) -> Vec<u8> {
    blob_value(key, "restorer", 0, len)
}

fn blob_restorer(args: &[String]) -> anyhow::Result<()> {
    let [root, tag, keys, len, rounds, done_file] = args else {
        bail!("usage: cache-worker blob-restorer ROOT TAG KEYS LEN ROUNDS DONE_FILE");
    };
    let keys: u64 = keys.parse().context("while parsing KEYS")?;
    let len: usize = len.parse().context("while parsing LEN")?;
    let rounds: u64 = rounds.parse().context("while parsing ROUNDS")?;
    let coordinator = Coordinator::new();
    let cache = open_with(&coordinator, root, tag, small_blob_options())?;
    for round in 1..=rounds {
        if round > 1 {
            // Nobody else deletes: an entry stored last round and gone now was removed by a
            // reader. `keys()` reads a fresh snapshot, so it sees such a removal once committed.
            let listed: std::collections::BTreeSet<Vec<u8>> =
                cache.keys().context("while listing")?.into_iter().collect();
            let missing = (0..keys)
                .filter(|index| !listed.contains(&restored_key(*index)))
                .count();
            report(format_args!("round {} missing {missing}", round - 1))?;
        }
        for index in 0..keys {
            cache
                .delete(&restored_key(index))
                .with_context(|| format!("while deleting entry {index} in round {round}"))?;
        }
        cache.flush().context("while flushing the deletes")?;
        for index in 0..keys {
            let key = restored_key(index);
            cache
                .set(&key, &restored_value(&key, len), None)
                .with_context(|| format!("while storing entry {index} in round {round}"))?;
        }
        cache.flush().context("while flushing the stores")?;
    }
    coordinator.reset().context("while closing")?;
    std::fs::write(done_file, b"").context("while creating DONE_FILE")?;
    Ok(())
}

fn blob_reader(args: &[String]) -> anyhow::Result<()> {
    let [root, tag, keys, len, done_file, passes_after] = args else {
        bail!("usage: cache-worker blob-reader ROOT TAG KEYS LEN DONE_FILE PASSES_AFTER");
    };
    let keys: u64 = keys.parse().context("while parsing KEYS")?;
    let len: usize = len.parse().context("while parsing LEN")?;
    let passes_after: u64 = passes_after.parse().context("while parsing PASSES_AFTER")?;
    let done_file = PathBuf::from(done_file);
    let coordinator = Coordinator::new();
    let cache = open(&coordinator, root, tag)?;
    // Bounds a hang only: the restorer ends long before.
    let limit = std::time::Instant::now() + Duration::from_secs(300);
    let (mut reads, mut hits, mut passes_since_done) = (0u64, 0u64, None);
    while passes_since_done.is_none_or(|passes| passes < passes_after) {
        if passes_since_done.is_none() && done_file.exists() {
            passes_since_done = Some(0);
        }
        if std::time::Instant::now() > limit {
            bail!("the restorer did not finish within 300 s");
        }
        for index in 0..keys {
            let key = restored_key(index);
            let value = cache
                .get(&key)
                .with_context(|| format!("while reading entry {index}"))?;
            reads += 1;
            if let Some(value) = value {
                hits += 1;
                check_blob_value(&key, &value, len).map_err(anyhow::Error::msg)?;
            }
        }
        if let Some(passes) = &mut passes_since_done {
            *passes += 1;
        }
    }
    coordinator.reset().context("while closing")?;
    report(format_args!("reads {reads} hits {hits}"))
}

/// What a load worker did, printed as its summary line.
#[derive(Debug, Default)]
struct Tally {
    ops: u64,
    gets: u64,
    hits: u64,
    sets: u64,
    deletes: u64,
    cleanups: u64,
    expired: u64,
    flushes: u64,
    timeouts: u64,
}

/// A load worker's key families, and how many keys each has.
const OWN_KEYS: u64 = 48;
const SHARED_KEYS: u64 = 12;
const TTL_KEYS: u64 = 8;

fn own_key(worker: &str, index: u64) -> Vec<u8> {
    format!("own:{worker}:{index:03}").into_bytes()
}

fn shared_key(index: u64) -> Vec<u8> {
    format!("shared:{index:03}").into_bytes()
}

fn ttl_key(worker: &str, index: u64) -> Vec<u8> {
    format!("ttl:{worker}:{index:03}").into_bytes()
}

/// The outcome of an operation, with a `LockTimeout` (the one documented failure under
/// contention) counted and turned into `None`; any other error ends the worker.
fn tolerate<T>(result: cache_core::Result<T>, tally: &mut Tally) -> anyhow::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(CacheError::LockTimeout { .. }) => {
            tally.timeouts += 1;
            Ok(None)
        }
        Err(err) => Err(err.into()),
    }
}

fn load(args: &[String]) -> anyhow::Result<()> {
    let [root, tag, me, seed, ops, barrier_dir, report_file, everyone] = args else {
        bail!("usage: cache-worker load ROOT TAG ME SEED OPS BARRIER_DIR REPORT_FILE EVERYONE");
    };
    let seed: u64 = seed.parse().context("while parsing SEED")?;
    let ops: u64 = ops.parse().context("while parsing OPS")?;
    let everyone: Vec<&str> = everyone.split(',').collect();
    let coordinator = Coordinator::new();
    let cache = open(&coordinator, root, tag)?;
    let ready: Vec<String> = everyone
        .iter()
        .map(|name| format!("{name}.ready"))
        .collect();
    let ready: Vec<&str> = ready.iter().map(String::as_str).collect();
    gather(
        &PathBuf::from(barrier_dir),
        &format!("{me}.ready"),
        &ready,
        Duration::from_secs(120),
    )?;

    let mut rng = SeededRng::new(seed);
    // Key index -> the sequence number of its last set, or `None` after a delete.
    let mut own: BTreeMap<u64, Option<u64>> = BTreeMap::new();
    let mut shared: BTreeMap<u64, Option<u64>> = BTreeMap::new();
    let mut tally = Tally::default();
    for seq in 1..=ops {
        tally.ops += 1;
        match rng.below(100) {
            // Reads: own keys must match the model exactly, anything else must be stamped for
            // the key it was read under.
            0..=39 => {
                let (key, expected_writer, model) = match rng.below(4) {
                    0 | 1 => {
                        let index = rng.below(OWN_KEYS);
                        (
                            own_key(me, index),
                            Some(me.as_str()),
                            Some(own.get(&index).copied().flatten()),
                        )
                    }
                    2 => {
                        let other = everyone[rng.below(everyone.len() as u64) as usize];
                        (own_key(other, rng.below(OWN_KEYS)), Some(other), None)
                    }
                    _ if rng.below(2) == 0 => (shared_key(rng.below(SHARED_KEYS)), None, None),
                    _ => {
                        let other = everyone[rng.below(everyone.len() as u64) as usize];
                        (ttl_key(other, rng.below(TTL_KEYS)), Some(other), None)
                    }
                };
                tally.gets += 1;
                let value = cache
                    .get(&key)
                    .with_context(|| format!("while reading {}", String::from_utf8_lossy(&key)))?;
                if let Some(model) = model {
                    let expected = model.map(|seq| stamped_value(&key, me, seq));
                    if value != expected {
                        bail!(
                            "own key {} read back as {:?}, expected {:?}",
                            String::from_utf8_lossy(&key),
                            value.as_deref().map(String::from_utf8_lossy),
                            expected.as_deref().map(String::from_utf8_lossy)
                        );
                    }
                }
                if let Some(value) = &value {
                    tally.hits += 1;
                    let (writer, _) = check_stamped(&key, value).map_err(anyhow::Error::msg)?;
                    if expected_writer.is_some_and(|expected| expected != writer) {
                        bail!(
                            "{} holds a value of {writer}",
                            String::from_utf8_lossy(&key)
                        );
                    }
                }
            }
            40..=61 => {
                let index = rng.below(OWN_KEYS);
                let key = own_key(me, index);
                tally.sets += 1;
                // A set that times out committing (back-pressure) keeps its write buffered: the
                // documented contract, so the model records it either way.
                tolerate(
                    cache.set(&key, &stamped_value(&key, me, seq), None),
                    &mut tally,
                )?;
                own.insert(index, Some(seq));
            }
            62..=65 => {
                let indexes: Vec<u64> =
                    (0..1 + rng.below(6)).map(|_| rng.below(OWN_KEYS)).collect();
                let items: Vec<(Vec<u8>, Vec<u8>)> = indexes
                    .iter()
                    .map(|&index| {
                        let key = own_key(me, index);
                        let value = stamped_value(&key, me, seq);
                        (key, value)
                    })
                    .collect();
                let borrowed: Vec<(&[u8], &[u8])> = items
                    .iter()
                    .map(|(k, v)| (k.as_slice(), v.as_slice()))
                    .collect();
                tally.sets += items.len() as u64;
                tolerate(cache.set_many(&borrowed, None), &mut tally)?;
                for index in indexes {
                    own.insert(index, Some(seq));
                }
            }
            66..=73 => {
                let index = rng.below(SHARED_KEYS);
                let key = shared_key(index);
                tally.sets += 1;
                tolerate(
                    cache.set(&key, &stamped_value(&key, me, seq), None),
                    &mut tally,
                )?;
                shared.insert(index, Some(seq));
            }
            74..=79 => {
                let key = ttl_key(me, rng.below(TTL_KEYS));
                let ttl = Duration::from_millis(1 + rng.below(40));
                tally.sets += 1;
                tolerate(
                    cache.set(&key, &stamped_value(&key, me, seq), Some(ttl)),
                    &mut tally,
                )?;
            }
            80..=87 => {
                let index = rng.below(OWN_KEYS);
                tally.deletes += 1;
                let existed = tolerate(cache.delete(&own_key(me, index)), &mut tally)?;
                let modelled = own.get(&index).copied().flatten().is_some();
                if existed.is_some_and(|existed| existed != modelled) {
                    bail!("delete of own key {index} said existed={existed:?}, model {modelled}");
                }
                own.insert(index, None);
            }
            88..=91 => {
                let index = rng.below(SHARED_KEYS);
                tally.deletes += 1;
                tolerate(cache.delete(&shared_key(index)), &mut tally)?;
                shared.insert(index, None);
            }
            92..=94 => {
                tally.cleanups += 1;
                if let Some(report) = tolerate(cache.cleanup(), &mut tally)? {
                    if report.evicted != 0 || report.unreadable != 0 {
                        bail!("cleanup removed live or unreadable entries: {report:?}");
                    }
                    tally.expired += report.expired;
                }
            }
            _ => {
                tally.flushes += 1;
                tolerate(cache.flush(), &mut tally)?;
            }
        }
    }
    // The final flush may meet a writer holding the lock past `timeout`; it keeps the writes, so
    // try again a few times before giving up loudly.
    let mut attempts = 0;
    while tolerate(cache.flush(), &mut tally)?.is_none() {
        attempts += 1;
        if attempts >= 10 {
            bail!("the final flush timed out {attempts} times");
        }
    }
    for index in 0..OWN_KEYS {
        let key = own_key(me, index);
        let expected = own
            .get(&index)
            .copied()
            .flatten()
            .map(|seq| stamped_value(&key, me, seq));
        let value = cache.get(&key).context("while rereading own keys")?;
        tally.gets += 1;
        tally.hits += u64::from(value.is_some());
        if value != expected {
            bail!("own key {index} differs from the model after the final flush");
        }
    }
    coordinator.reset().context("while closing")?;

    let mut lines = String::new();
    for (family, model) in [("own", &own), ("shared", &shared)] {
        for (index, seq) in model {
            let seq = seq.map_or_else(|| "-".to_owned(), |seq| seq.to_string());
            lines.push_str(&format!("{family} {index} {seq}\n"));
        }
    }
    std::fs::write(report_file, lines).context("while writing the report")?;
    let Tally {
        ops,
        gets,
        hits,
        sets,
        deletes,
        cleanups,
        expired,
        flushes,
        timeouts,
    } = tally;
    report(format_args!(
        "ops={ops} gets={gets} hits={hits} sets={sets} deletes={deletes} cleanups={cleanups} \
         expired={expired} flushes={flushes} timeouts={timeouts}"
    ))
}

fn fill(args: &[String]) -> anyhow::Result<()> {
    let [root, tag, value_bytes, flush_every, max_entries] = args else {
        bail!("usage: cache-worker fill ROOT TAG VALUE_BYTES FLUSH_EVERY MAX_ENTRIES");
    };
    let value_bytes: usize = value_bytes.parse().context("while parsing VALUE_BYTES")?;
    let flush_every: u64 = flush_every.parse().context("while parsing FLUSH_EVERY")?;
    let max_entries: u64 = max_entries.parse().context("while parsing MAX_ENTRIES")?;
    let coordinator = Coordinator::new();
    let cache = match coordinator.get_shared_cache_instance(
        &PathBuf::from(root),
        tag.as_str(),
        CacheOptions::default(),
    ) {
        Ok(cache) => cache,
        Err(err) => return report(format_args!("open error {}", ErrorChain(&err))),
    };
    let mut flushed = 0;
    let mut failure = None;
    for index in 0..max_entries {
        let key = worker_key("fill", index as usize);
        if let Err(err) = cache.set(&key, &fill_value(&key, index, value_bytes), None) {
            failure = Some(err);
            break;
        }
        if (index + 1) % flush_every == 0 {
            if let Err(err) = cache.flush() {
                failure = Some(err);
                break;
            }
            flushed = index + 1;
            report(format_args!("flushed {flushed}"))?;
        }
    }
    let Some(failure) = failure else {
        bail!("{max_entries} entries of {value_bytes} bytes were written without an error");
    };
    report(format_args!("error {}", ErrorChain(&failure)))?;
    report(format_args!(
        "reread {}",
        reread(&cache, flushed, value_bytes)?
    ))?;
    match coordinator.reset() {
        Ok(()) => report(format_args!("close ok"))?,
        Err(err) => report(format_args!("close error {}", ErrorChain(&err)))?,
    }
    // A fresh instance of the same tag, still under the limit: reads need no room.
    let cache = match coordinator.get_shared_cache_instance(
        &PathBuf::from(root),
        tag.as_str(),
        CacheOptions::default(),
    ) {
        Ok(cache) => cache,
        Err(err) => return report(format_args!("reopen error {}", ErrorChain(&err))),
    };
    report(format_args!(
        "reopen reread {}",
        reread(&cache, flushed, value_bytes)?
    ))?;
    // Dropping the coordinator closes the instance; its final commit may fail again, which is
    // what a full disk does, and is not what this worker reports on.
    Ok(())
}

/// Rereads the first `flushed` fill entries: `ok N` when all read back exactly, `error <message>`
/// at the first that fails to read. A value that reads back wrong ends the worker with an error.
fn reread(cache: &Cache, flushed: u64, value_bytes: usize) -> anyhow::Result<String> {
    for index in 0..flushed {
        let key = worker_key("fill", index as usize);
        match cache.get(&key) {
            Ok(value) if value == Some(fill_value(&key, index, value_bytes)) => {}
            Ok(value) => bail!(
                "flushed entry {index} read back as {:?}",
                value.map(|value| value.len())
            ),
            Err(err) => return Ok(format!("error {}", ErrorChain(&err))),
        }
    }
    Ok(format!("ok {flushed}"))
}

fn probe(root: &str, tag: &str) -> anyhow::Result<()> {
    let coordinator = Coordinator::new();
    let cache = match coordinator.get_shared_cache_instance(
        &PathBuf::from(root),
        tag,
        CacheOptions::default(),
    ) {
        Ok(cache) => {
            report(format_args!("open ok"))?;
            cache
        }
        Err(err) => return report(format_args!("open error {}", ErrorChain(&err))),
    };
    match cache.get(b"probe") {
        Ok(value) => report(format_args!("get ok {}", value.is_some()))?,
        Err(err) => report(format_args!("get error {}", ErrorChain(&err)))?,
    }
    match cache.set(b"probe", b"written by probe", None) {
        Ok(()) => report(format_args!("set ok"))?,
        Err(err) => report(format_args!("set error {}", ErrorChain(&err)))?,
    }
    match cache.flush() {
        Ok(()) => report(format_args!("flush ok"))?,
        Err(err) => report(format_args!("flush error {}", ErrorChain(&err)))?,
    }
    match coordinator.reset() {
        Ok(()) => report(format_args!("close ok")),
        Err(err) => report(format_args!("close error {}", ErrorChain(&err))),
    }
}

/// Prints what `get_metadata` says of `key`'s reads: `reads COUNT LAST_MS`, `none`, or the
/// error.
fn metadata(root: &str, tag: &str, key: &str) -> anyhow::Result<()> {
    let coordinator = Coordinator::new();
    let cache = coordinator
        .get_shared_cache_instance(&PathBuf::from(root), tag, CacheOptions::default())
        .context("while opening")?;
    match cache.get_metadata(key.as_bytes()) {
        Ok(Some(meta)) => {
            let last_ms = meta.last_accessed.map_or(0, |at| {
                at.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_millis())
            });
            report(format_args!("reads {} {last_ms}", meta.access_count))?;
        }
        Ok(None) => report(format_args!("none"))?,
        Err(err) => report(format_args!("error {}", ErrorChain(&err)))?,
    }
    coordinator.reset().context("while closing")
}

fn compute(args: &[String]) -> anyhow::Result<()> {
    let [
        root,
        tag,
        key,
        count_file,
        calls_file,
        callers,
        hold_ms,
        outcome,
    ] = args
    else {
        bail!(
            "usage: cache-worker compute ROOT TAG KEY COUNT_FILE CALLS_FILE CALLERS HOLD_MS ok|fail"
        );
    };
    let callers: usize = callers.parse().context("while parsing CALLERS")?;
    let hold = Duration::from_millis(hold_ms.parse().context("while parsing HOLD_MS")?);
    let succeed = match outcome.as_str() {
        "ok" => true,
        "fail" => false,
        other => bail!("OUTCOME must be ok or fail, not {other:?}"),
    };
    let (count_file, calls_file) = (PathBuf::from(count_file), PathBuf::from(calls_file));
    let pid = std::process::id();
    let coordinator = Coordinator::new();
    let cache = open(&coordinator, root, tag)?;
    append_line(&calls_file, &pid.to_string()).context("while recording the call")?;
    let value = cache.get_or_compute(key.as_bytes(), None, || -> anyhow::Result<Vec<u8>> {
        append_line(&count_file, &pid.to_string()).context("while counting the computation")?;
        until_lines(&calls_file, callers, Duration::from_secs(60))?;
        std::thread::sleep(hold);
        if succeed {
            Ok(computed_value(pid).into_bytes())
        } else {
            bail!("the computation of process {pid} failed as asked")
        }
    })?;
    let counters = cache
        .get_stats()
        .context("while reading statistics")?
        .counters;
    coordinator.reset().context("while closing")?;
    println!("value {}", String::from_utf8_lossy(&value));
    println!(
        "counters computations={} waits={} takeovers={}",
        counters.computations, counters.waits, counters.takeovers
    );
    Ok(())
}

fn contain(root: &str, tag: &str, step: &str) -> anyhow::Result<()> {
    if step == "doctor" || step == "repair" {
        let tag = cache_core::Tag::new(tag).context("while parsing TAG")?;
        let canonical = match cache_core::prepare_root(&PathBuf::from(root)) {
            Ok(canonical) => canonical,
            Err(err) => return report(format_args!("error {err}")),
        };
        let options = cache_core::DoctorOptions {
            repair: step == "repair",
            ..cache_core::DoctorOptions::default()
        };
        for finding in cache_core::diagnose_tag(&canonical, &tag, &options).findings {
            report(format_args!(
                "check {} {} {}",
                finding.check, finding.status, finding.detail
            ))?;
        }
        return Ok(());
    }
    let coordinator = Coordinator::new();
    let outcome = coordinator
        .get_shared_cache_instance(&PathBuf::from(root), tag, CacheOptions::default())
        .and_then(|cache| match step {
            "set" => {
                cache.set(b"large", &cache_tests::large_value(), None)?;
                let staged = cache.stage_directory()?;
                std::fs::write(staged.path().join("file"), b"staged").map_err(|source| {
                    CacheError::Io {
                        operation: "filling",
                        path: staged.path().to_owned(),
                        source,
                    }
                })?;
                cache.set_directory(b"directory", staged, b"", None)?;
                cache.flush()?;
                Ok("ok set".to_owned())
            }
            "cleanup" => cache.cleanup().map(|report| format!("ok {report:?}")),
            _ => Ok(format!("error unknown step {step}")),
        });
    match outcome {
        Ok(line) => report(format_args!("{line}")),
        Err(err) => report(format_args!("error {err}")),
    }
}

/// The tree the directory workers store: `files` files of mean length 2 KiB, seed 1.
fn worker_tree(files: usize, variant: u64) -> TreeSpec {
    TreeSpec {
        files,
        mean_len: 2048,
        seed: 1,
        variant,
    }
}

fn dir_store(args: &[String]) -> anyhow::Result<()> {
    let [root, tag, key, files, me, other, barrier_dir] = args else {
        bail!("usage: dir-store ROOT TAG KEY FILES ME OTHER BARRIER_DIR");
    };
    let files: usize = files.parse().context("while reading FILES")?;
    let coordinator = Coordinator::new();
    let cache = open(&coordinator, root, tag)?;
    let staged = cache.stage_directory()?;
    generate_tree(staged.path(), worker_tree(files, 0))?;
    barrier(
        &PathBuf::from(barrier_dir),
        me,
        other,
        Duration::from_secs(120),
    )?;
    cache
        .set_directory(key.as_bytes(), staged, b"tree", None)
        .context("while storing the directory")?;
    println!("stored");
    cache.close()?;
    Ok(())
}

fn dir_store_until_killed(root: &str, tag: &str, files: &str) -> anyhow::Result<()> {
    let files: usize = files.parse().context("while reading FILES")?;
    let coordinator = Coordinator::new();
    let cache = open(&coordinator, root, tag)?;
    for index in 0u64.. {
        let staged = cache.stage_directory()?;
        generate_tree(staged.path(), worker_tree(files, index % 3))?;
        cache
            .set_directory(format!("dir:{index}").as_bytes(), staged, b"tree", None)
            .context("while storing a directory")?;
        println!("stored {index}");
        std::io::stdout().flush()?;
    }
    Ok(())
}
