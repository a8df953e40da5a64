//! `compare`: measures `cache_core` against raw redb on the same workloads, in one run, and prints
//! one JSON line per workload and column; `cargo xtask bench` turns them into a table.
//!
//! Run it through `cargo bench -p cache-core --bench compare -- --n N --reps R` (cargo appends
//! `--bench`; without that flag the program does nothing, so that `cargo test --all-targets` does
//! not start a benchmark). Workloads that need a fresh process re-invoke this binary with a child
//! subcommand (`child-open`, `child-rss`, `child-write`), which prints `name=value` pairs.
//!
//! Columns:
//! - `ours`: `cache_core` through `Coordinator::get_shared_cache_instance` and the `Cache` handle.
//! - `redb`: redb used directly, `MultiWriter` mode, the same page cache size as ours, sets
//!   committed in batches of 1 000 per write transaction, gets through one held snapshot: the
//!   floor of our overhead.
//! - `lmdb`: LMDB through `heed` (0.11: its `Env` opens without `unsafe`, which the workspace
//!   forbids; later versions made the open `unsafe`), the field's reference for multi-process
//!   embedded reads: sets committed in batches of 1 000 per write transaction (LMDB syncs each
//!   commit), gets through one held read transaction.
//! - `file_copy`: `std::fs::copy` of a 64 MiB file, the reference for `blob_64m`.
//!
//! Method: every column writes its N keys, then its store is closed and opened again before the
//! gets (no column reads from a cache its writes warmed); the gets visit every key once, in one
//! shuffled order (Fisher-Yates over xorshift64, the same in Python); the misses are keys that
//! sort right after each stored key (`key-000123~`), spread through the key space, in the same
//! shuffled order. Within each repetition the columns take turns workload group by workload
//! group; for each workload the ratios ours/redb and ours/lmdb are taken per repetition, and
//! their medians reported (`"column":"ratio"` lines). The machine's load (`/proc/loadavg`) is
//! reported before and after the run (`"workload":"machine"`), with redb's page cache size.
//! `--page-cache-mib M` sets redb's page cache of ours and raw redb (default: the cache's
//! default), for choosing that default by measurement: compare `get_hit` at `--n 1000000`, and
//! `rss_cli`'s peak RSS, across sizes.
//!
//! The same workloads for python-diskcache live in `xtask/bench/diskcache_bench.py`, with the
//! same key names, value bytes and random order; keep the two in step.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a measurement program: results on stdout, progress on stderr"
)]

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cache_core::{Cache, CacheOptions, Coordinator, Environment};
use redb::{
    ConcurrencyMode, Database, ReadOnlyTable, ReadableDatabase, ReadableTableMetadata,
    TableDefinition,
};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The tag every `ours` workload uses.
const TAG: &str = "bench";
/// Size of the values of `set_100b`, `get_hit` and the other small-value workloads.
const VALUE_BYTES: usize = 100;
/// Size of the value of `blob_64m`.
const BLOB_BYTES: usize = 64 * 1024 * 1024;
/// Gets done by the `rss_cli` child after opening the tag.
const RSS_GETS: u64 = 1_000;
/// Processes of `multi_4proc`.
const WRITER_PROCESSES: u64 = 4;
/// Inserts per write transaction for raw redb (the design's feasibility figure uses 1 000).
const REDB_BATCH: u64 = 1_000;
/// Seed of the xorshift generator that orders the gets; the Python script uses the same one.
const SEED: u64 = 0x9E37_79B9_7F4A_7C15;
/// The raw redb column's table, and its file name inside a workload's directory.
const RAW_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
const RAW_FILE_NAME: &str = "raw.redb";

/// Key `i` of the pre-populated set: `key-000123`.
fn key(i: u64) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

/// Key `i` of the absent set, never written: `key-000123~`, which sorts right after `key-000123`,
/// so that misses are spread through the stored keys rather than past the last one.
fn miss_key(i: u64) -> Vec<u8> {
    format!("key-{i:06}~").into_bytes()
}

/// The 100-byte value stored under key `i`: lower-case letters starting at `i mod 26`.
fn value(i: u64) -> Vec<u8> {
    (0..VALUE_BYTES as u64)
        .map(|j| b'a' + ((i + j) % 26) as u8)
        .collect()
}

/// Marsaglia's xorshift64: a fixed, reproducible order of random gets, identical in Python.
struct XorShift64(u64);

impl XorShift64 {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// `0..n` in the fixed shuffled order (Fisher-Yates over xorshift64): each index once.
fn shuffled(n: u64) -> Vec<u64> {
    let mut generator = XorShift64(SEED);
    let mut order: Vec<u64> = (0..n).collect();
    for i in (1..order.len()).rev() {
        let j = (generator.next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// The first `count` keys of `0..n` in the fixed shuffled order, without repetition.
fn random_keys(n: u64, count: u64) -> Vec<Vec<u8>> {
    shuffled(n)
        .into_iter()
        .take(count as usize)
        .map(key)
        .collect()
}

/// Incompressible bytes for the blob, so that no layer can shortcut it.
fn blob() -> Vec<u8> {
    let mut generator = XorShift64(SEED);
    let mut bytes = Vec::with_capacity(BLOB_BYTES);
    while bytes.len() < BLOB_BYTES {
        bytes.extend_from_slice(&generator.next().to_le_bytes());
    }
    bytes.truncate(BLOB_BYTES);
    bytes
}

/// Passes `--page-cache-mib` on to the child processes.
const PAGE_CACHE_VARIABLE: &str = "COMPARE_PAGE_CACHE_BYTES";

/// redb's page cache for ours and raw redb: `--page-cache-mib` (children get it through
/// [`PAGE_CACHE_VARIABLE`]), else the cache's default. LMDB has none of its own (the OS's).
fn page_cache_bytes() -> usize {
    std::env::var(PAGE_CACHE_VARIABLE)
        .ok()
        .and_then(|bytes| bytes.parse().ok())
        .or_else(|| PAGE_CACHE_BYTES.get().copied())
        .unwrap_or(CacheOptions::default().page_cache_bytes)
}

/// `--page-cache-mib` of the parent, in bytes.
static PAGE_CACHE_BYTES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// Adds what was being done to an error.
trait Context<T> {
    fn context(self, doing: impl FnOnce() -> String) -> BenchResult<T>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn context(self, doing: impl FnOnce() -> String) -> BenchResult<T> {
        self.map_err(|err| format!("while {}: {err}", doing()).into())
    }
}

fn seconds_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// One store under test, opened on a workload's directory.
trait Column: Sized {
    /// Name in the JSON output and on the child command line.
    const NAME: &'static str;
    /// Reads one key at a time, however the store does it best.
    type Reader<'a>: Reader
    where
        Self: 'a;

    /// Creates the files and tables, untimed, so that timed opens and children find them.
    fn prepare(dir: &Path) -> BenchResult<()>;
    /// Opens the store in `dir`.
    fn open(dir: &Path) -> BenchResult<Self>;
    /// Writes keys `start..start + count` with their values; durable and visible to other
    /// processes when it returns.
    fn write_keys(&self, start: u64, count: u64) -> BenchResult<()>;
    /// Stores one value durably.
    fn put(&self, key: &[u8], value: &[u8]) -> BenchResult<()>;
    /// A reader for a run of gets.
    fn reader(&self) -> BenchResult<Self::Reader<'_>>;
    /// How many entries the store holds.
    fn count(&self) -> BenchResult<u64>;
    /// Closes the store, making everything durable.
    fn close(self) -> BenchResult<()>;
}

trait Reader {
    fn get(&mut self, key: &[u8]) -> BenchResult<Option<Vec<u8>>>;
}

/// `cache_core`, as an application uses it.
struct Ours {
    coordinator: Coordinator,
    cache: Cache,
}

impl Column for Ours {
    const NAME: &'static str = "ours";
    type Reader<'a> = &'a Ours;

    fn prepare(dir: &Path) -> BenchResult<()> {
        Ours::open(dir)?.close()
    }

    fn open(dir: &Path) -> BenchResult<Self> {
        // An empty environment: a kill switch in the caller's environment must not turn the
        // benchmark into a measurement of the disabled cache.
        let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
        let cache = coordinator
            .get_shared_cache_instance(
                dir,
                TAG,
                CacheOptions {
                    page_cache_bytes: page_cache_bytes(),
                    ..CacheOptions::default()
                },
            )
            .context(|| format!("opening tag {TAG} under {}", dir.display()))?;
        if !cache.is_enabled() {
            return Err("the cache opened disabled".into());
        }
        Ok(Ours { coordinator, cache })
    }

    fn write_keys(&self, start: u64, count: u64) -> BenchResult<()> {
        for i in start..start + count {
            self.cache
                .set(&key(i), &value(i), None)
                .context(|| format!("setting key {i}"))?;
        }
        self.cache.flush().context(|| "flushing".to_owned())
    }

    fn put(&self, key: &[u8], value: &[u8]) -> BenchResult<()> {
        self.cache
            .set(key, value, None)
            .context(|| "setting the blob".to_owned())?;
        self.cache.flush().context(|| "flushing".to_owned())
    }

    fn reader(&self) -> BenchResult<&Ours> {
        Ok(self)
    }

    fn count(&self) -> BenchResult<u64> {
        let keys = self.cache.keys().context(|| "listing keys".to_owned())?;
        Ok(keys.len() as u64)
    }

    fn close(self) -> BenchResult<()> {
        drop(self.cache);
        self.coordinator
            .reset()
            .context(|| "closing the coordinator".to_owned())
    }
}

impl Reader for &Ours {
    fn get(&mut self, key: &[u8]) -> BenchResult<Option<Vec<u8>>> {
        Ok(self.cache.get(key)?)
    }
}

/// redb used directly: the floor of our overhead.
struct RawRedb {
    database: Database,
}

/// Raw redb's reader: one snapshot and table, opened once and held for the whole run.
struct HeldSnapshot {
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl Column for RawRedb {
    const NAME: &'static str = "redb";
    type Reader<'a> = HeldSnapshot;

    fn prepare(dir: &Path) -> BenchResult<()> {
        let raw = RawRedb::open(dir)?;
        let transaction = raw.database.begin_write()?;
        transaction.open_table(RAW_TABLE)?;
        transaction.commit()?;
        raw.close()
    }

    fn open(dir: &Path) -> BenchResult<Self> {
        let path = dir.join(RAW_FILE_NAME);
        // The same page cache as ours, so that the column measures our code, not a bigger cache.
        let database = Database::builder()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .set_cache_size(page_cache_bytes())
            .create(&path)
            .context(|| format!("opening {}", path.display()))?;
        Ok(RawRedb { database })
    }

    fn write_keys(&self, start: u64, count: u64) -> BenchResult<()> {
        let end = start + count;
        let mut batch_start = start;
        while batch_start < end {
            let batch_end = (batch_start + REDB_BATCH).min(end);
            // MultiWriter commits are always `Durability::Immediate`.
            let transaction = self.database.begin_write()?;
            {
                let mut table = transaction.open_table(RAW_TABLE)?;
                for i in batch_start..batch_end {
                    table.insert(key(i).as_slice(), value(i).as_slice())?;
                }
            }
            transaction.commit()?;
            batch_start = batch_end;
        }
        Ok(())
    }

    fn put(&self, key: &[u8], value: &[u8]) -> BenchResult<()> {
        let transaction = self.database.begin_write()?;
        transaction.open_table(RAW_TABLE)?.insert(key, value)?;
        transaction.commit()?;
        Ok(())
    }

    fn reader(&self) -> BenchResult<HeldSnapshot> {
        let transaction = self.database.begin_read()?;
        Ok(HeldSnapshot {
            table: transaction.open_table(RAW_TABLE)?,
        })
    }

    fn count(&self) -> BenchResult<u64> {
        Ok(self.reader()?.table.len()?)
    }

    fn close(self) -> BenchResult<()> {
        Ok(self.database.close()?)
    }
}

impl Reader for HeldSnapshot {
    fn get(&mut self, key: &[u8]) -> BenchResult<Option<Vec<u8>>> {
        // Copied out, as ours must return an owned value.
        Ok(self.table.get(key)?.map(|guard| guard.value().to_vec()))
    }
}

/// LMDB through heed: the field's reference for multi-process embedded reads.
struct Lmdb {
    env: heed::Env,
    database: heed::Database<heed::types::ByteSlice, heed::types::ByteSlice>,
}

/// The LMDB column's directory inside a workload's directory.
const LMDB_DIR_NAME: &str = "lmdb";
/// LMDB's map (the most the file may grow to; sparse until used).
const LMDB_MAP_BYTES: usize = 16 << 30;

/// LMDB's reader: one read transaction, opened once and held for the whole run.
struct LmdbReader<'a> {
    txn: heed::RoTxn<'a>,
    database: heed::Database<heed::types::ByteSlice, heed::types::ByteSlice>,
}

impl Column for Lmdb {
    const NAME: &'static str = "lmdb";
    type Reader<'a> = LmdbReader<'a>;

    fn prepare(dir: &Path) -> BenchResult<()> {
        std::fs::create_dir_all(dir.join(LMDB_DIR_NAME))?;
        Lmdb::open(dir)?.close()
    }

    fn open(dir: &Path) -> BenchResult<Self> {
        let path = dir.join(LMDB_DIR_NAME);
        let env = heed::EnvOpenOptions::new()
            .map_size(LMDB_MAP_BYTES)
            .open(&path)
            .context(|| format!("opening LMDB in {}", path.display()))?;
        let database = env
            .create_database(None)
            .context(|| "opening LMDB's database".to_owned())?;
        Ok(Lmdb { env, database })
    }

    fn write_keys(&self, start: u64, count: u64) -> BenchResult<()> {
        let end = start + count;
        let mut batch_start = start;
        while batch_start < end {
            let batch_end = (batch_start + REDB_BATCH).min(end);
            let mut txn = self.env.write_txn()?;
            for i in batch_start..batch_end {
                self.database.put(&mut txn, &key(i), &value(i))?;
            }
            txn.commit()?;
            batch_start = batch_end;
        }
        Ok(())
    }

    fn put(&self, key: &[u8], value: &[u8]) -> BenchResult<()> {
        let mut txn = self.env.write_txn()?;
        self.database.put(&mut txn, key, value)?;
        txn.commit()?;
        Ok(())
    }

    fn reader(&self) -> BenchResult<LmdbReader<'_>> {
        Ok(LmdbReader {
            txn: self.env.read_txn()?,
            database: self.database,
        })
    }

    fn count(&self) -> BenchResult<u64> {
        let txn = self.env.read_txn()?;
        Ok(self.database.len(&txn)?)
    }

    fn close(self) -> BenchResult<()> {
        self.env.force_sync()?;
        drop(self.env.prepare_for_closing());
        Ok(())
    }
}

impl Reader for LmdbReader<'_> {
    fn get(&mut self, key: &[u8]) -> BenchResult<Option<Vec<u8>>> {
        // Copied out, as ours must return an owned value.
        Ok(self.database.get(&self.txn, key)?.map(<[u8]>::to_vec))
    }
}

/// How the repetitions of an extra value are summarised.
#[derive(Clone, Copy)]
enum Summary {
    Median,
    /// For counts that must be zero: the worst repetition, never hidden by a median.
    Max,
}

/// One repetition of one workload in one column.
struct Sample {
    seconds: f64,
    extra: Vec<(&'static str, f64, Summary)>,
}

impl Sample {
    fn new(seconds: f64) -> Self {
        Sample {
            seconds,
            extra: Vec::new(),
        }
    }

    fn with(mut self, name: &'static str, value: f64) -> Self {
        self.extra.push((name, value, Summary::Median));
        self
    }

    fn with_max(mut self, name: &'static str, value: f64) -> Self {
        self.extra.push((name, value, Summary::Max));
        self
    }
}

/// Every sample of the run, by (workload, column), with the operation count of each workload.
#[derive(Default)]
struct Results {
    samples: BTreeMap<(&'static str, &'static str), (u64, Vec<Sample>)>,
    /// Per repetition: ours' time over another column's, by (workload, other column).
    ratios: BTreeMap<(String, &'static str), Vec<f64>>,
}

/// The columns ours is compared with, repetition by repetition.
const COMPARED: [&str; 2] = ["redb", "lmdb"];

impl Results {
    fn add(&mut self, workload: &'static str, column: &'static str, ops: u64, sample: Sample) {
        eprintln!(
            "compare: {workload:<12} {column:<9} {:>10.4} s",
            sample.seconds
        );
        self.samples
            .entry((workload, column))
            .or_insert_with(|| (ops, Vec::new()))
            .1
            .push(sample);
    }

    /// Takes the ratios of the repetition that just ended: for each workload, ours' time over
    /// each compared column's (and, for `blob_64m`, of its set and its get apart).
    fn end_repetition(&mut self) {
        let mut taken = Vec::new();
        for ((workload, column), (_, samples)) in &self.samples {
            if *column != "ours" {
                continue;
            }
            let Some(ours) = samples.last() else { continue };
            for other in COMPARED {
                let Some((_, theirs)) = self.samples.get(&(*workload, other)) else {
                    continue;
                };
                let Some(theirs) = theirs.last() else {
                    continue;
                };
                if theirs.seconds > 0.0 {
                    taken.push((workload.to_string(), other, ours.seconds / theirs.seconds));
                }
                for part in ["set_s", "get_s"] {
                    let find = |sample: &Sample| {
                        sample
                            .extra
                            .iter()
                            .find(|(name, _, _)| *name == part)
                            .map(|(_, value, _)| *value)
                    };
                    if let (Some(mine), Some(their)) = (find(ours), find(theirs))
                        && their > 0.0
                    {
                        let name = format!("{workload}_{}", part.trim_end_matches("_s"));
                        taken.push((name, other, mine / their));
                    }
                }
            }
        }
        for (workload, other, ratio) in taken {
            self.ratios
                .entry((workload, other))
                .or_default()
                .push(ratio);
        }
    }

    /// One JSON object per workload and compared column: the median of the per-repetition
    /// ratios (in `median_s`, for the report's reader), each repetition's in `extra`.
    fn ratio_lines(&self) -> Vec<String> {
        self.ratios
            .iter()
            .map(|((workload, other), ratios)| {
                let each: Vec<String> = ratios
                    .iter()
                    .enumerate()
                    .map(|(index, ratio)| format!("\"rep{}\":{}", index + 1, json_number(*ratio)))
                    .collect();
                format!(
                    "{{\"workload\":\"{workload}\",\"column\":\"ours/{other}\",\"median_s\":{},\"ops\":1,\"reps\":{},\"extra\":{{{}}}}}",
                    json_number(median(ratios.clone())),
                    ratios.len(),
                    each.join(",")
                )
            })
            .collect()
    }

    /// One JSON object per (workload, column): medians, and maxima where asked.
    fn json_lines(&self) -> Vec<String> {
        self.samples
            .iter()
            .map(|((workload, column), (ops, samples))| {
                let seconds: Vec<f64> = samples.iter().map(|sample| sample.seconds).collect();
                let mut extra: BTreeMap<&str, (Vec<f64>, Summary)> = BTreeMap::new();
                for sample in samples {
                    for &(name, value, summary) in &sample.extra {
                        extra
                            .entry(name)
                            .or_insert_with(|| (Vec::new(), summary))
                            .0
                            .push(value);
                    }
                }
                let extra_json: Vec<String> = extra
                    .into_iter()
                    .map(|(name, (values, summary))| {
                        let summarised = match summary {
                            Summary::Median => median(values),
                            Summary::Max => values.into_iter().fold(f64::MIN, f64::max),
                        };
                        format!("\"{name}\":{}", json_number(summarised))
                    })
                    .collect();
                format!(
                    "{{\"workload\":\"{workload}\",\"column\":\"{column}\",\"median_s\":{},\"ops\":{ops},\"reps\":{},\"extra\":{{{}}}}}",
                    json_number(median(seconds)),
                    samples.len(),
                    extra_json.join(",")
                )
            })
            .collect()
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

/// A JSON number; JSON has no NaN or infinity, so those become `null`.
fn json_number(value: f64) -> String {
    if value.is_finite() {
        format!("{value}")
    } else {
        "null".to_owned()
    }
}

/// Settings of the parent run.
struct RunConfig {
    n: u64,
    repetitions: u64,
    /// Runs one group of workloads only (`small`, `multi`, `large`), for quick iteration.
    only: Option<String>,
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match run(&arguments) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("compare: error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(arguments: &[String]) -> BenchResult<()> {
    let words: Vec<&str> = arguments.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["child-open", column, dir, key] => child_open(column, Path::new(dir), key.as_bytes()),
        ["child-rss", column, dir, n] => child_rss(column, Path::new(dir), parse(n)?),
        ["child-write", column, dir, start, count] => {
            child_write(column, Path::new(dir), parse(start)?, parse(count)?)
        }
        _ if !words.contains(&"--bench") => {
            eprintln!(
                "compare: nothing to do without --bench; run `cargo xtask bench` or \
                 `cargo bench -p cache-core --bench compare -- --n N --reps R`"
            );
            Ok(())
        }
        _ => run_parent(&parse_run_config(&words)?),
    }
}

fn parse(word: &str) -> BenchResult<u64> {
    word.parse()
        .context(|| format!("reading {word:?} as a whole number"))
}

fn parse_run_config(words: &[&str]) -> BenchResult<RunConfig> {
    let mut config = RunConfig {
        n: 100_000,
        repetitions: 5,
        only: None,
    };
    let mut words = words.iter();
    while let Some(word) = words.next() {
        match *word {
            "--bench" => {}
            "--n" => config.n = parse(words.next().ok_or("--n needs a value")?)?,
            "--reps" => config.repetitions = parse(words.next().ok_or("--reps needs a value")?)?,
            "--page-cache-mib" => {
                let mib = parse(words.next().ok_or("--page-cache-mib needs a value")?)?;
                let bytes =
                    usize::try_from(mib << 20).context(|| "the page cache size".to_owned())?;
                PAGE_CACHE_BYTES
                    .set(bytes)
                    .map_err(|_| "--page-cache-mib given twice")?;
            }
            "--only" => {
                let group = *words.next().ok_or("--only needs small, multi or large")?;
                if !["small", "multi", "large"].contains(&group) {
                    return Err(format!("--only takes small, multi or large, not {group:?}").into());
                }
                config.only = Some(group.to_owned());
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if config.n < WRITER_PROCESSES || config.repetitions == 0 {
        return Err("--n must be at least 4 and --reps at least 1".into());
    }
    Ok(config)
}

fn run_parent(config: &RunConfig) -> BenchResult<()> {
    let mut results = Results::default();
    let load_before = load_average();
    // Columns take turns within each repetition, so that a noisy spell of the machine hits all
    // of them rather than one; ratios are taken per repetition.
    for repetition in 1..=config.repetitions {
        eprintln!(
            "compare: repetition {repetition}/{} (n = {})",
            config.repetitions, config.n
        );
        let runs = |group: &str| config.only.as_deref().is_none_or(|only| only == group);
        if runs("small") {
            small_values::<Ours>(config.n, &mut results)?;
            small_values::<RawRedb>(config.n, &mut results)?;
            small_values::<Lmdb>(config.n, &mut results)?;
        }
        if runs("multi") {
            multi_process::<Ours>(config.n, &mut results)?;
            multi_process::<RawRedb>(config.n, &mut results)?;
            multi_process::<Lmdb>(config.n, &mut results)?;
        }
        if runs("large") {
            large_value::<Ours>(&mut results)?;
            large_value::<RawRedb>(&mut results)?;
            large_value::<Lmdb>(&mut results)?;
            file_copy(&mut results)?;
        }
        results.end_repetition();
    }
    let load_after = load_average();
    let mut stdout = std::io::stdout().lock();
    for line in results
        .json_lines()
        .into_iter()
        .chain(results.ratio_lines())
    {
        writeln!(stdout, "{line}")?;
    }
    let nproc = std::thread::available_parallelism().map_or(0, usize::from);
    writeln!(
        stdout,
        "{{\"workload\":\"machine\",\"column\":\"loadavg\",\"median_s\":{},\"ops\":1,\"reps\":1,\"extra\":{{\"before_1m\":{},\"before_5m\":{},\"after_1m\":{},\"after_5m\":{},\"nproc\":{nproc},\"page_cache_bytes\":{}}}}}",
        json_number(load_before.0.max(load_after.0)),
        json_number(load_before.0),
        json_number(load_before.1),
        json_number(load_after.0),
        json_number(load_after.1),
        page_cache_bytes(),
    )?;
    Ok(())
}

/// The 1- and 5-minute load averages of `/proc/loadavg` (NaN where it cannot be read).
fn load_average() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut fields = text
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(f64::NAN));
    let one = fields.next().unwrap_or(f64::NAN);
    let five = fields.next().unwrap_or(f64::NAN);
    eprintln!("compare: load average {one} (1 min), {five} (5 min)");
    (one, five)
}

/// `set_100b`, `get_hit`, `get_miss` on one store in this process, then `open_100k` and (ours
/// only) `rss_cli` in fresh processes on the same data.
fn small_values<C: Column>(n: u64, results: &mut Results) -> BenchResult<()> {
    let dir = tempfile::tempdir()?;
    C::prepare(dir.path())?;
    let store = C::open(dir.path())?;

    let started = Instant::now();
    store.write_keys(0, n)?;
    results.add("set_100b", C::NAME, n, Sample::new(seconds_since(started)));

    // Closed and opened again: the gets read the file, not what the writes left in memory.
    store.close()?;
    let store = C::open(dir.path())?;
    let order = shuffled(n);
    let hits_keys: Vec<Vec<u8>> = order.iter().copied().map(key).collect();
    let misses_keys: Vec<Vec<u8>> = order.iter().copied().map(miss_key).collect();
    let mut reader = store.reader()?;
    let started = Instant::now();
    let mut hits = 0u64;
    for key in &hits_keys {
        hits += u64::from(reader.get(key)?.is_some());
    }
    let elapsed = seconds_since(started);
    if hits != n {
        return Err(format!("{}: get_hit found {hits} of {n} keys", C::NAME).into());
    }
    results.add("get_hit", C::NAME, n, Sample::new(elapsed));

    let started = Instant::now();
    let mut found = 0u64;
    for key in &misses_keys {
        found += u64::from(reader.get(key)?.is_some());
    }
    let elapsed = seconds_since(started);
    if found != 0 {
        return Err(format!("{}: get_miss found {found} absent keys", C::NAME).into());
    }
    results.add("get_miss", C::NAME, n, Sample::new(elapsed));
    drop(reader);
    store.close()?;

    // A key from the middle of the file, the same one the Python script reads.
    let probe = format!("key-{:06}", n / 2);
    let started = Instant::now();
    let report = run_child(&["child-open", C::NAME, &path_arg(dir.path())?, &probe])?;
    let wall = seconds_since(started);
    results.add(
        "open_100k",
        C::NAME,
        1,
        Sample::new(report.get("open_s")?).with("wall_s", wall),
    );

    if C::NAME == Ours::NAME {
        let started = Instant::now();
        let report = run_child(&["child-rss", C::NAME, &path_arg(dir.path())?, &n.to_string()])?;
        let wall = seconds_since(started);
        results.add(
            "rss_cli",
            C::NAME,
            RSS_GETS,
            Sample::new(report.get("run_s")?)
                .with("vmhwm_kib", report.get("vmhwm_kib")?)
                .with("wall_s", wall),
        );
    }
    Ok(())
}

/// `multi_4proc`: four processes write `n / 4` distinct keys each to one store at once; the
/// parent then counts what arrived.
fn multi_process<C: Column>(n: u64, results: &mut Results) -> BenchResult<()> {
    let dir = tempfile::tempdir()?;
    C::prepare(dir.path())?;
    let dir_arg = path_arg(dir.path())?;
    let per_process = n / WRITER_PROCESSES;
    let started = Instant::now();
    let children: Vec<Child> = (0..WRITER_PROCESSES)
        .map(|index| {
            let start = (index * per_process).to_string();
            let count = per_process.to_string();
            spawn_child(&["child-write", C::NAME, &dir_arg, &start, &count])
        })
        .collect::<BenchResult<_>>()?;
    let mut first_start = f64::MAX;
    let mut last_end = f64::MIN;
    for child in children {
        let report = wait_child(child)?;
        first_start = first_start.min(report.get("start_unix_s")?);
        last_end = last_end.max(report.get("end_unix_s")?);
    }
    let wall = seconds_since(started);
    let store = C::open(dir.path())?;
    let counted = store.count()?;
    store.close()?;
    let written = per_process * WRITER_PROCESSES;
    results.add(
        "multi_4proc",
        C::NAME,
        written,
        Sample::new(last_end - first_start)
            .with("wall_s", wall)
            .with_max("lost", written.saturating_sub(counted) as f64)
            .with_max("counted_max", counted as f64),
    );
    Ok(())
}

/// `blob_64m`: one 64 MiB value stored durably, then read back.
fn large_value<C: Column>(results: &mut Results) -> BenchResult<()> {
    let dir = tempfile::tempdir()?;
    C::prepare(dir.path())?;
    let store = C::open(dir.path())?;
    let bytes = blob();
    let started = Instant::now();
    store.put(b"blob", &bytes)?;
    let set_seconds = seconds_since(started);
    let mut reader = store.reader()?;
    let started = Instant::now();
    let read = reader.get(b"blob")?;
    let get_seconds = seconds_since(started);
    if read.as_deref() != Some(bytes.as_slice()) {
        return Err(format!("{}: the blob read back differs", C::NAME).into());
    }
    drop(reader);
    store.close()?;
    results.add(
        "blob_64m",
        C::NAME,
        1,
        Sample::new(set_seconds + get_seconds)
            .with("set_s", set_seconds)
            .with("get_s", get_seconds)
            .with("bytes", BLOB_BYTES as f64),
    );
    Ok(())
}

/// The references of `blob_64m`: `std::fs::copy` of a 64 MiB file in the same kind of directory,
/// timed alone; the `fsync` of the copy, which a durable set pays, beside it; and a plain
/// `std::fs::read` of the copy (issue 15: a get against a plain read, a set against copy +
/// fsync).
fn file_copy(results: &mut Results) -> BenchResult<()> {
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("blob.source");
    let target = dir.path().join("blob.copy");
    {
        let mut file = std::fs::File::create(&source)?;
        file.write_all(&blob())?;
        file.sync_all()?;
    }
    let started = Instant::now();
    std::fs::copy(&source, &target).context(|| "copying the blob file".to_owned())?;
    let copy_seconds = seconds_since(started);
    let started = Instant::now();
    std::fs::File::open(&target)?.sync_all()?;
    let fsync_seconds = seconds_since(started);
    // A plain read of the copy, as a get reads a blob it has just stored (page cache warm).
    let started = Instant::now();
    let read = std::fs::read(&target).context(|| "reading the copied blob file".to_owned())?;
    let read_seconds = seconds_since(started);
    if read.len() != BLOB_BYTES {
        return Err(format!("the plain read gave {} bytes", read.len()).into());
    }
    results.add(
        "blob_64m",
        "file_copy",
        1,
        Sample::new(copy_seconds)
            .with("fsync_s", fsync_seconds)
            .with("read_s", read_seconds)
            .with("bytes", BLOB_BYTES as f64),
    );
    Ok(())
}

fn path_arg(path: &Path) -> BenchResult<String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("temp path {} is not UTF-8", path.display()).into())
}

/// What a child printed: `name=value` pairs.
struct ChildReport {
    values: BTreeMap<String, f64>,
    command: String,
}

impl ChildReport {
    fn get(&self, name: &str) -> BenchResult<f64> {
        self.values
            .get(name)
            .copied()
            .ok_or_else(|| format!("`{}` did not report {name}", self.command).into())
    }
}

fn spawn_child(arguments: &[&str]) -> BenchResult<Child> {
    let program: PathBuf = std::env::current_exe()?;
    Command::new(program)
        .args(arguments)
        .env(PAGE_CACHE_VARIABLE, page_cache_bytes().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context(|| format!("starting child {}", arguments.join(" ")))
}

fn wait_child(child: Child) -> BenchResult<ChildReport> {
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!("a child failed ({}); it printed: {stdout}", output.status).into());
    }
    let mut values = BTreeMap::new();
    for pair in stdout.split_whitespace() {
        if let Some((name, value)) = pair.split_once('=') {
            values.insert(
                name.to_owned(),
                value
                    .parse::<f64>()
                    .context(|| format!("reading the child's {name}"))?,
            );
        }
    }
    Ok(ChildReport {
        values,
        command: stdout,
    })
}

fn run_child(arguments: &[&str]) -> BenchResult<ChildReport> {
    wait_child(spawn_child(arguments)?)
}

/// Runs `body` with the column the child command line names.
fn with_column(column: &str, dir: &Path, body: impl ChildBody) -> BenchResult<()> {
    match column {
        Ours::NAME => body.run::<Ours>(dir),
        RawRedb::NAME => body.run::<RawRedb>(dir),
        Lmdb::NAME => body.run::<Lmdb>(dir),
        other => Err(format!("unknown column {other:?}").into()),
    }
}

/// A child's work, generic over the column.
trait ChildBody {
    fn run<C: Column>(self, dir: &Path) -> BenchResult<()>;
}

/// `child-open`: open the store and read one key; reports its own time for both.
fn child_open(column: &str, dir: &Path, key: &[u8]) -> BenchResult<()> {
    struct Open<'k>(&'k [u8]);
    impl ChildBody for Open<'_> {
        fn run<C: Column>(self, dir: &Path) -> BenchResult<()> {
            let started = Instant::now();
            let store = C::open(dir)?;
            let found = store.reader()?.get(self.0)?.is_some();
            let open_seconds = seconds_since(started);
            if !found {
                return Err("child-open: the probe key is missing".into());
            }
            println!("open_s={open_seconds}");
            store.close()
        }
    }
    with_column(column, dir, Open(key))
}

/// `child-rss`: open the store, do 1 000 random gets, report the peak resident set size.
fn child_rss(column: &str, dir: &Path, n: u64) -> BenchResult<()> {
    struct Rss(u64);
    impl ChildBody for Rss {
        fn run<C: Column>(self, dir: &Path) -> BenchResult<()> {
            let keys = random_keys(self.0, RSS_GETS);
            let started = Instant::now();
            let store = C::open(dir)?;
            {
                let mut reader = store.reader()?;
                for key in &keys {
                    if reader.get(key)?.is_none() {
                        return Err("child-rss: a key is missing".into());
                    }
                }
            }
            store.close()?;
            let run_seconds = seconds_since(started);
            println!("run_s={run_seconds} vmhwm_kib={}", peak_rss_kib()?);
            Ok(())
        }
    }
    with_column(column, dir, Rss(n))
}

/// `child-write`: write keys `start..start + count` and make them durable; reports when it
/// started (before opening) and finished, as Unix times, so that the parent can time the
/// overlap of all writers without counting process start-up.
fn child_write(column: &str, dir: &Path, start: u64, count: u64) -> BenchResult<()> {
    struct Write(u64, u64);
    impl ChildBody for Write {
        fn run<C: Column>(self, dir: &Path) -> BenchResult<()> {
            let start_unix = unix_seconds();
            let store = C::open(dir)?;
            store.write_keys(self.0, self.1)?;
            store.close()?;
            println!("start_unix_s={start_unix} end_unix_s={}", unix_seconds());
            Ok(())
        }
    }
    with_column(column, dir, Write(start, count))
}

/// `VmHWM` of this process, in KiB (Linux only).
fn peak_rss_kib() -> BenchResult<f64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .context(|| "reading /proc/self/status (peak RSS needs Linux)".to_owned())?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmHWM line in /proc/self/status".into())
}
