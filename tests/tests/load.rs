//! Multi-process load: N worker processes run M mixed operations each (get, set, set_many,
//! delete, cleanup, flush, short-TTL sets) on one tag at once, each keeping a model of what it
//! wrote. Afterwards every entry a worker acknowledged is present with its exact value, nothing
//! it deleted is back, keys shared by everyone hold some worker's last write, no worker saw an
//! error other than a `LockTimeout`, and the file passes redb's integrity check.
//!
//! Sizes: `CACHE_LOAD_PROCESSES` (default 4; `CACHE_SOAK=1`: 8) and `CACHE_LOAD_OPS` (default
//! 2 000; soak: 20 000).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its location"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use cache_core::{CacheOptions, Coordinator, Environment};
use cache_tests::{check_stamped, size_from_env, stamped_value};

const WORKER: &str = env!("CARGO_BIN_EXE_cache-worker");

/// The key families the `load` worker uses; see `src/bin/cache-worker.rs`.
const OWN_KEYS: u64 = 48;
const SHARED_KEYS: u64 = 12;

/// A worker's final model, read from its report file: key index -> last sequence number, or
/// `None` when its last operation on that key was a delete.
#[derive(Debug, Default)]
struct Report {
    own: BTreeMap<u64, Option<u64>>,
    shared: BTreeMap<u64, Option<u64>>,
}

fn read_report(path: &Path) -> Report {
    let mut report = Report::default();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [family, index, seq] = fields.as_slice() else {
            panic!("bad report line {line:?}");
        };
        let seq = (*seq != "-").then(|| seq.parse().unwrap());
        let index = index.parse().unwrap();
        match *family {
            "own" => report.own.insert(index, seq),
            "shared" => report.shared.insert(index, seq),
            _ => panic!("bad report line {line:?}"),
        };
    }
    report
}

/// Sums the `key=value` summary lines of the workers.
fn add_summary(totals: &mut BTreeMap<String, u64>, line: &str) {
    for pair in line.split_whitespace() {
        let (name, value) = pair.split_once('=').unwrap();
        *totals.entry(name.to_owned()).or_default() += value.parse::<u64>().unwrap();
    }
}

#[test]
fn many_processes_mixed_operations_lose_nothing_and_never_read_wrong() {
    let processes = size_from_env("CACHE_LOAD_PROCESSES", 4, 8).unwrap();
    let ops = size_from_env("CACHE_LOAD_OPS", 2_000, 20_000).unwrap();
    let root = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..processes).map(|index| format!("w{index}")).collect();
    let everyone = names.join(",");

    let workers: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let child = Command::new(WORKER)
                .arg("load")
                .arg(root.path())
                .args(["load", name, &(1000 + index).to_string(), &ops.to_string()])
                .arg(scratch.path())
                .arg(scratch.path().join(format!("{name}.report")))
                .arg(&everyone)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn cache-worker");
            (name, child)
        })
        .collect();
    let mut totals = BTreeMap::new();
    for (name, child) in workers {
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "worker {name} failed ({}): {}\nstdout: {stdout}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        add_summary(&mut totals, stdout.trim());
    }

    let database = root
        .path()
        .join("load")
        .join(cache_core::DATABASE_FILE_NAME);
    {
        let mut handle = redb::Database::builder()
            .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
            .create(&database)
            .unwrap();
        assert!(
            handle.check_integrity().unwrap(),
            "redb found damage in the file after the load"
        );
    }

    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
    let cache = coordinator
        .get_shared_cache_instance(root.path(), "load", CacheOptions::default())
        .unwrap();
    // Read before this process's own gets add to them: the persisted counters are the sum of
    // every worker's.
    let lifetime = cache.get_stats().unwrap().lifetime;
    assert_eq!(
        lifetime.sets, totals["sets"],
        "lifetime sets add up over processes"
    );
    assert_eq!(
        lifetime.hits, totals["hits"],
        "lifetime hits add up over processes"
    );
    assert_eq!(
        lifetime.misses,
        totals["gets"] - totals["hits"],
        "lifetime misses add up over processes"
    );

    let reports: BTreeMap<&String, Report> = names
        .iter()
        .map(|name| {
            let path = scratch.path().join(format!("{name}.report"));
            (name, read_report(&path))
        })
        .collect();
    let mut checked = 0;
    for (name, report) in &reports {
        for index in 0..OWN_KEYS {
            let key = format!("own:{name}:{index:03}").into_bytes();
            let expected = report
                .own
                .get(&index)
                .copied()
                .flatten()
                .map(|seq| stamped_value(&key, name, seq));
            assert_eq!(
                cache.get(&key).unwrap(),
                expected,
                "{name}'s key {index}: its last acknowledged write"
            );
            checked += 1;
        }
    }
    for index in 0..SHARED_KEYS {
        let key = format!("shared:{index:03}").into_bytes();
        // Whoever committed last wins; it must be some worker's last operation on the key.
        let last_ops: Vec<(&String, Option<u64>)> = reports
            .iter()
            .filter_map(|(name, report)| Some((*name, *report.shared.get(&index)?)))
            .collect();
        match cache.get(&key).unwrap() {
            Some(value) => {
                let (writer, seq) = check_stamped(&key, &value).unwrap();
                assert!(
                    last_ops.contains(&(&writer, Some(seq))),
                    "shared key {index} holds {writer}'s write #{seq}, which is no worker's last \
                     operation on it: {last_ops:?}"
                );
            }
            None => assert!(
                last_ops.is_empty() || last_ops.iter().any(|(_, seq)| seq.is_none()),
                "shared key {index} is absent, but every worker's last operation set it: \
                 {last_ops:?}"
            ),
        }
        checked += 1;
    }
    // Nothing outside the workers' key families, and whatever short-TTL entry has not expired
    // yet is stamped for its key.
    for key in cache.keys().unwrap() {
        let text = String::from_utf8_lossy(&key).into_owned();
        assert!(
            ["own:", "shared:", "ttl:"]
                .iter()
                .any(|family| text.starts_with(family)),
            "unexpected key {text}"
        );
        if let Some(value) = cache.get(&key).unwrap() {
            check_stamped(&key, &value).unwrap();
        }
    }
    coordinator.reset().unwrap();

    eprintln!(
        "load: {processes} processes x {ops} ops = {} ops ({} gets, {} hits, {} sets, {} deletes, \
         {} cleanups removing {} expired, {} flushes); errors 0, lock timeouts {}; {checked} \
         modelled entries checked: 0 lost, 0 wrong; integrity ok",
        totals["ops"],
        totals["gets"],
        totals["hits"],
        totals["sets"],
        totals["deletes"],
        totals["cleanups"],
        totals["expired"],
        totals["flushes"],
        totals["timeouts"],
    );
}
