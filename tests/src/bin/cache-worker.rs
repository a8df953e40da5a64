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
//! - `compute ROOT TAG KEY COUNT_FILE CALLS_FILE CALLERS HOLD_MS ok|fail`: appends its pid to
//!   CALLS_FILE, then asks for KEY with `get_or_compute`. Its computation appends its pid to
//!   COUNT_FILE, waits until CALLS_FILE has CALLERS lines (every caller has asked), holds for
//!   HOLD_MS, then returns `computed by <pid>` (`ok`) or fails (`fail`). Prints `value <value>`
//!   and `counters computations=N waits=N takeovers=N`, exits 0; exits 1 with the error.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a test helper program reports on its streams"
)]

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use cache_core::{CacheOptions, Coordinator, SharedCache, SingleFlight};
use cache_tests::{append_line, barrier, computed_value, until_lines, worker_key, worker_value};

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
        Some((command, rest)) if command == "compute" => compute(rest),
        _ => bail!(
            "usage: cache-worker (pair ROOT TAG ME OTHER COUNT BARRIER_DIR | \
             write-until-killed ROOT TAG FLUSH_EVERY | same-blob ROOT TAG ME OTHER LEN BARRIER_DIR | \
             hold-write-lock DATABASE_FILE | \
             compute ROOT TAG KEY COUNT_FILE CALLS_FILE CALLERS HOLD_MS ok|fail)"
        ),
    }
}

fn open(coordinator: &Coordinator, root: &str, tag: &str) -> anyhow::Result<SharedCache> {
    coordinator
        .get_shared_cache_instance(&PathBuf::from(root), tag, CacheOptions::default())
        .context("while opening the cache")
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
    let value = blob_value(len);
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
fn blob_value(len: usize) -> Vec<u8> {
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
