//! `remote`: the remote tier against issue 17's targets (Redis) and issue 18's (S3), in one run, printing one JSON line per
//! workload and column as cache-core's `compare` does; `cargo xtask bench` turns them into the
//! "Remote tier" table of `docs/benchmarks.md`.
//!
//! Run it through `cargo bench -p cache-remote --bench remote -- --n N --reps R [--big-mib M]
//! [--only redis|s3]`
//! (cargo appends `--bench`; without that flag the program does nothing, so that `cargo test
//! --all-targets` does not start a benchmark). It starts its own `redis-server` on a free
//! loopback TCP port (`--save '' --appendonly no`), killed by pid when it ends; without one
//! installed it prints a note and no Redis results. The S3 rows (`remote/s3.rs`, which lists
//! them) run against a SeaweedFS it starts the same way, or are skipped with a note when `weed`
//! is not installed. A quick check that it runs, in debug (figures meaningless): `cargo test -p
//! cache-remote --bench remote -- --bench --n 200 --reps 1 --big-mib 4`.
//!
//! Redis workloads (every cache in a temp directory; 100-byte values, keys `key-000000`..., visited in
//! one shuffled order; each repetition on fresh roots):
//! - `remote_local_hit`: N gets of stored keys from one root reopened without a remote
//!   (`local`) and with one (`with_remote`); `with_remote/local` is the median of the
//!   per-repetition ratios.
//! - `remote_local_miss`: N gets of absent keys without a remote (`local`) and with a remote
//!   whose breaker is open (`breaker_open`: an endpoint nobody listens on, opened by one read
//!   first); `breaker_open-local` is the median per-repetition difference per get.
//! - `remote_hit_small`: N gets on a fresh root of keys another root published (`remote`): a
//!   local miss, a fetch, a backfill, served.
//! - `remote_miss`: N gets of keys nobody stored, with the remote (`remote`).
//! - `remote_hit_64m`: one value of `--big-mib` MiB (64 by default) published by one root and
//!   read on a fresh root with `get_to_writer` (`remote`: fetched chunk by chunk, stored as a
//!   local blob durably and checked whole against its digest, then written to the caller from
//!   the file written), against one `GET` of as many bytes through the
//!   `redis` crate (`raw_get`).
//! - `remote_set`: N sets on a fresh root without a remote (`local`) and with one
//!   (`with_remote`), the flush that follows not timed; `with_remote-local` is the median
//!   per-repetition difference per set.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a measurement program: results on stdout, notes on stderr"
)]

use std::io;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Cache, CacheOptions, Coordinator, Environment, RemoteStore};
use cache_remote::{RedisRemote, RemoteConfig};
use cache_test_support::redis::RedisServer;
use tempfile::TempDir;

#[path = "remote/s3.rs"]
mod s3;

type BenchResult<T> = Result<T, String>;

struct RunConfig {
    n: u64,
    repetitions: u64,
    big_mib: u64,
    /// `--only redis` or `--only s3`: that engine's rows only (both by default).
    only: Option<String>,
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match run(&arguments) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("remote bench: error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(arguments: &[String]) -> BenchResult<()> {
    let words: Vec<&str> = arguments.iter().map(String::as_str).collect();
    if !words.contains(&"--bench") {
        eprintln!(
            "remote bench: nothing to do without --bench; run `cargo xtask bench` or \
             `cargo bench -p cache-remote --bench remote -- --n N --reps R`"
        );
        return Ok(());
    }
    let config = parse_run_config(&words)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|err| format!("finding a free loopback port: {err}"))?
        .port();
    let mut results = Results::default();
    let wants = |engine: &str| config.only.as_deref().is_none_or(|only| only == engine);
    if wants("redis") {
        match RedisServer::start_with(&["--port", &port.to_string()]) {
            Some(server) => {
                let url = format!("redis://127.0.0.1:{port}/0");
                for repetition in 0..config.repetitions {
                    run_repetition(&config, &url, repetition, &mut results)?;
                }
                drop(server);
            }
            None => {
                eprintln!("remote bench: NOTE: redis-server is not installed; no Redis results");
            }
        }
    }
    if wants("s3") {
        s3::run(&config, &mut results)?;
    }
    results.print(&config);
    Ok(())
}

fn parse_run_config(words: &[&str]) -> BenchResult<RunConfig> {
    let mut config = RunConfig {
        n: 10_000,
        repetitions: 5,
        big_mib: 64,
        only: None,
    };
    let mut at = 0;
    while at < words.len() {
        let value = || {
            words
                .get(at + 1)
                .ok_or_else(|| format!("{} needs a value", words[at]))?
                .parse::<u64>()
                .map_err(|err| format!("{} {:?}: {err}", words[at], words.get(at + 1)))
        };
        match words[at] {
            "--n" => config.n = value()?.max(1),
            "--reps" => config.repetitions = value()?.max(1),
            "--big-mib" => config.big_mib = value()?.max(1),
            "--only" => match words.get(at + 1) {
                Some(&engine @ ("redis" | "s3")) => config.only = Some(engine.to_owned()),
                other => return Err(format!("--only {other:?}: redis or s3")),
            },
            _ => {
                at += 1;
                continue;
            }
        }
        at += 2;
    }
    Ok(config)
}

/// Per (workload, column): the seconds of each repetition; per comparison, each repetition's
/// ratio or difference.
#[derive(Default)]
struct Results {
    seconds: Vec<(&'static str, &'static str, u64, Vec<f64>)>,
    extra: Vec<(&'static str, &'static str, String)>,
}

impl Results {
    fn add(&mut self, workload: &'static str, column: &'static str, ops: u64, seconds: f64) {
        match self
            .seconds
            .iter_mut()
            .find(|(w, c, _, _)| *w == workload && *c == column)
        {
            Some((_, _, _, values)) => values.push(seconds),
            None => self.seconds.push((workload, column, ops, vec![seconds])),
        }
    }

    fn note(&mut self, workload: &'static str, column: &'static str, extra: String) {
        self.extra.push((workload, column, extra));
    }

    fn print(&self, config: &RunConfig) {
        for (workload, column, ops, values) in &self.seconds {
            let extra = self
                .extra
                .iter()
                .rev()
                .find(|(w, c, _)| w == workload && c == column)
                .map(|(_, _, text)| text.clone())
                .unwrap_or_default();
            let each: Vec<String> = values.iter().map(|v| json_number(*v)).collect();
            let separator = if extra.is_empty() { "" } else { "," };
            println!(
                "{{\"workload\":\"{workload}\",\"column\":\"{column}\",\"median_s\":{},\"ops\":{ops},\"reps\":{},\"extra\":{{{extra}{separator}\"each\":[{}]}}}}",
                json_number(median(values.clone())),
                config.repetitions,
                each.join(",")
            );
        }
    }
}

fn json_number(value: f64) -> String {
    if value.is_finite() {
        format!("{value:e}")
    } else {
        "null".to_owned()
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => values[len / 2],
        len => (values[len / 2 - 1] + values[len / 2]) / 2.0,
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

fn absent_key(i: u64) -> Vec<u8> {
    format!("key-{i:06}~").into_bytes()
}

/// 0..n in one shuffled order (Fisher-Yates over xorshift64), the same in every column.
fn shuffled(n: u64) -> Vec<u64> {
    let mut order: Vec<u64> = (0..n).collect();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..order.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = (state % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

fn value(i: u64) -> Vec<u8> {
    let mut bytes = format!("value-{i:06}-").into_bytes();
    bytes.resize(100, b'v');
    bytes
}

/// A remote for `url` with the defaults, or with a queue long enough for `queue` uploads.
fn remote(url: &str, queue: Option<usize>) -> BenchResult<Arc<RedisRemote>> {
    let mut config = RemoteConfig::new(url);
    if let Some(queue) = queue {
        config.queue_entries = queue.max(1);
        config.queue_bytes = config.queue_bytes.max(queue * 256);
    }
    RedisRemote::new(config)
        .map(Arc::new)
        .map_err(|err| format!("the remote: {err}"))
}

/// The tag `bench` of `root`, through a coordinator with `remote` attached if given.
fn open(root: &TempDir, remote: Option<&Arc<RedisRemote>>) -> BenchResult<Cache> {
    let mut coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
    if let Some(remote) = remote {
        coordinator = coordinator.with_remote(Arc::clone(remote) as Arc<dyn RemoteStore>);
    }
    coordinator
        .get_shared_cache_instance(root.path(), "bench", CacheOptions::default())
        .map_err(|err| format!("opening {}: {err}", root.path().display()))
}

/// The large value of `--big-mib` MiB the 64 MiB rows publish and read.
fn big_value(config: &RunConfig) -> BenchResult<Vec<u8>> {
    let len = usize::try_from(config.big_mib << 20).map_err(fail("--big-mib"))?;
    Ok((0..len).map(|i| (i % 251) as u8).collect())
}

fn temp() -> BenchResult<TempDir> {
    tempfile::tempdir().map_err(|err| format!("a temp dir: {err}"))
}

fn fail<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |err| format!("{what}: {err}")
}

/// Times `gets` of `keys` on `cache`; the number of hits must be `expected_hits`.
fn time_gets(cache: &Cache, keys: &[Vec<u8>], expected_hits: usize) -> BenchResult<f64> {
    let started = Instant::now();
    let mut hits = 0;
    for key in keys {
        if cache.get(key).map_err(fail("a get"))?.is_some() {
            hits += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if hits != expected_hits {
        return Err(format!("{hits} hits, expected {expected_hits}"));
    }
    Ok(seconds)
}

fn run_repetition(
    config: &RunConfig,
    url: &str,
    repetition: u64,
    results: &mut Results,
) -> BenchResult<()> {
    let n = config.n;
    let order = shuffled(n);
    let present: Vec<Vec<u8>> = order.iter().map(|&i| key(i)).collect();
    let absent: Vec<Vec<u8>> = order.iter().map(|&i| absent_key(i)).collect();
    let ops = n;

    // A local hit and a local miss, without a remote and with one (its breaker open for the
    // misses: an endpoint nobody listens on).
    let local_root = temp()?;
    {
        let cache = open(&local_root, None)?;
        for i in 0..n {
            cache.set(&key(i), &value(i), None).map_err(fail("a set"))?;
        }
        cache.close().map_err(fail("close"))?;
    }
    let nowhere = temp()?;
    let dead = format!(
        "redis+unix://{}",
        nowhere.path().join("nobody.sock").display()
    );
    let dead_remote = {
        let mut settings = RemoteConfig::new(&dead);
        settings.breaker_failures = 1;
        settings.breaker_open_for = Duration::from_secs(3600);
        Arc::new(RedisRemote::new(settings).map_err(fail("the dead remote"))?)
    };
    let live_remote = remote(url, None)?;
    // Which goes first alternates, so neither always meets a colder cache.
    let columns: [(&'static str, Option<&Arc<RedisRemote>>); 2] = if repetition.is_multiple_of(2) {
        [("local", None), ("with_remote", Some(&live_remote))]
    } else {
        [("with_remote", Some(&live_remote)), ("local", None)]
    };
    let mut hit_seconds = [0.0; 2];
    for (column, remote) in columns {
        let cache = open(&local_root, remote)?;
        let seconds = time_gets(&cache, &present, present.len())?;
        results.add("remote_local_hit", column, ops, seconds);
        hit_seconds[usize::from(column == "with_remote")] = seconds;
        cache.close().map_err(fail("close"))?;
    }
    results.add(
        "remote_local_hit",
        "with_remote/local",
        1,
        hit_seconds[1] / hit_seconds[0],
    );
    let mut miss_seconds = [0.0; 2];
    for (column, remote) in [("local", None), ("breaker_open", Some(&dead_remote))] {
        let cache = open(&local_root, remote)?;
        // Opens the breaker (one failed connect), untimed.
        let _ = cache.get(b"open the breaker").map_err(fail("a get"))?;
        let seconds = time_gets(&cache, &absent, 0)?;
        results.add("remote_local_miss", column, ops, seconds);
        miss_seconds[usize::from(column == "breaker_open")] = seconds;
        cache.close().map_err(fail("close"))?;
    }
    results.add(
        "remote_local_miss",
        "breaker_open-local",
        1,
        (miss_seconds[1] - miss_seconds[0]) / n as f64,
    );
    let skipped = dead_remote.stats().skipped;
    results.note(
        "remote_local_miss",
        "breaker_open",
        format!("\"skipped\":{skipped}"),
    );

    // Small values published by one root, read through on another; then misses.
    let prefix = format!("bench-{}-{repetition}", std::process::id());
    let publish_remote = {
        let mut settings = RemoteConfig::new(url);
        settings.prefix.clone_from(&prefix);
        settings.queue_entries = usize::try_from(n).unwrap_or(usize::MAX).max(1);
        Arc::new(RedisRemote::new(settings).map_err(fail("the remote"))?)
    };
    let writer_root = temp()?;
    {
        let cache = open(&writer_root, Some(&publish_remote))?;
        for i in 0..n {
            cache.set(&key(i), &value(i), None).map_err(fail("a set"))?;
        }
        cache.close().map_err(fail("close"))?;
    }
    let published = publish_remote.stats().published;
    if published != n {
        return Err(format!("{published} of {n} values published"));
    }
    let reader_remote = {
        let mut settings = RemoteConfig::new(url);
        settings.prefix.clone_from(&prefix);
        Arc::new(RedisRemote::new(settings).map_err(fail("the remote"))?)
    };
    let reader_root = temp()?;
    {
        let cache = open(&reader_root, Some(&reader_remote))?;
        let seconds = time_gets(&cache, &present, present.len())?;
        results.add("remote_hit_small", "remote", ops, seconds);
        let seconds = time_gets(&cache, &absent, 0)?;
        results.add("remote_miss", "remote", ops, seconds);
        cache.close().map_err(fail("close"))?;
    }
    results.note(
        "remote_hit_small",
        "remote",
        format!("\"remote_hits\":{}", reader_remote.stats().hits),
    );

    // One large value: read through (stored durably) against one raw GET of as many bytes.
    let big = big_value(config)?;
    {
        let cache = open(&writer_root, Some(&publish_remote))?;
        cache
            .set(b"big", &big, None)
            .map_err(fail("the large set"))?;
        cache.close().map_err(fail("close"))?;
    }
    let big_root = temp()?;
    {
        let cache = open(&big_root, Some(&reader_remote))?;
        let started = Instant::now();
        let read = cache
            .get_to_writer(b"big", &mut io::sink())
            .map_err(fail("the large get"))?;
        let seconds = started.elapsed().as_secs_f64();
        if read != Some(big.len() as u64) {
            return Err(format!("the large value read through as {read:?}"));
        }
        results.add("remote_hit_64m", "remote", 1, seconds);
        results.note(
            "remote_hit_64m",
            "remote",
            format!("\"bytes\":{}", big.len()),
        );
        cache.close().map_err(fail("close"))?;
    }
    {
        let client = redis::Client::open(url).map_err(fail("a raw client"))?;
        let mut connection = client.get_connection().map_err(fail("a raw connection"))?;
        let raw_key = format!("{prefix}-raw");
        redis::cmd("SET")
            .arg(&raw_key)
            .arg(&big)
            .query::<()>(&mut connection)
            .map_err(fail("the raw SET"))?;
        let started = Instant::now();
        let got: Vec<u8> = redis::cmd("GET")
            .arg(&raw_key)
            .query(&mut connection)
            .map_err(fail("the raw GET"))?;
        let seconds = started.elapsed().as_secs_f64();
        if got.len() != big.len() {
            return Err("the raw GET returned another length".to_owned());
        }
        results.add("remote_hit_64m", "raw_get", 1, seconds);
        redis::cmd("FLUSHDB")
            .query::<()>(&mut connection)
            .map_err(fail("FLUSHDB"))?;
    }

    // Sets, without a remote and with one (the flush after them, which waits for the uploads,
    // is not timed).
    let mut set_seconds = [0.0; 2];
    for (column, with_remote) in [("local", false), ("with_remote", true)] {
        let root = temp()?;
        let set_remote = if with_remote {
            Some(remote(url, None)?)
        } else {
            None
        };
        let cache = open(&root, set_remote.as_ref())?;
        let started = Instant::now();
        for &i in &order {
            cache.set(&key(i), &value(i), None).map_err(fail("a set"))?;
        }
        let seconds = started.elapsed().as_secs_f64();
        cache.close().map_err(fail("close"))?;
        results.add("remote_set", column, ops, seconds);
        set_seconds[usize::from(with_remote)] = seconds;
    }
    results.add(
        "remote_set",
        "with_remote-local",
        1,
        (set_seconds[1] - set_seconds[0]) / n as f64,
    );
    Ok(())
}
