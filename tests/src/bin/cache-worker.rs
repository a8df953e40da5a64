//! A worker process for multi-process tests: opens a cache root through its own coordinator,
//! writes its entries while another worker writes its own, then reads both sets back.
//!
//! Usage: `cache-worker ROOT TAG ME OTHER COUNT BARRIER_DIR`. Prints `read N` and exits 0 when
//! every entry of both writers reads back exactly; exits 1 with a message otherwise.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a test helper program reports on its streams"
)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use cache_core::{CacheOptions, Coordinator};
use cache_tests::{barrier, worker_key, worker_value};

fn main() {
    if let Err(err) = run() {
        eprintln!("cache-worker: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, tag, me, other, count, barrier_dir] = args.as_slice() else {
        bail!("usage: cache-worker ROOT TAG ME OTHER COUNT BARRIER_DIR");
    };
    let count: usize = count.parse().context("while parsing COUNT")?;
    let barrier_dir = PathBuf::from(barrier_dir);
    let limit = Duration::from_secs(60);

    let coordinator = Coordinator::new();
    let cache = coordinator
        .get_shared_cache_instance(&PathBuf::from(root), tag.as_str(), CacheOptions::default())
        .context("while opening the cache")?;

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
