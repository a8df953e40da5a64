//! Tests of `cargo xtask bench`'s parsing and of its main and scale tables' targets.

use super::*;

#[test]
fn parses_a_result_line() {
    let records = parse_records(
        "noise\n{\"workload\":\"get_hit\",\"column\":\"ours\",\"median_s\":0.5,\"ops\":10,\"reps\":2,\"extra\":{\"lost\":0,\"vmhwm_kib\":1.5e3}}\n",
    )
    .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].workload, "get_hit");
    assert_eq!(records[0].column, "ours");
    assert_eq!(records[0].median_s, 0.5);
    assert_eq!(records[0].extra.get("vmhwm_kib"), Some(&1500.0));
}

#[test]
fn rejects_a_truncated_line() {
    assert!(parse_records("{\"workload\":\"get_hit\",").is_err());
}

/// The records of `lines`, one JSON object per line.
fn records(lines: &[&str]) -> Vec<Record> {
    parse_records(&lines.join("\n")).unwrap()
}

fn line(workload: &str, column: &str, median_s: f64, ops: u64) -> String {
    format!(
        "{{\"workload\":\"{workload}\",\"column\":\"{column}\",\"median_s\":{median_s},\"ops\":{ops},\"reps\":5,\"extra\":{{}}}}"
    )
}

#[test]
fn a_row_names_the_targets_it_missed() {
    let lines = [
        line("get_hit", "ours", 0.07, 100_000),
        line("get_hit", "diskcache", 0.7, 100_000),
        line("get_hit", "ours/redb", 1.3, 1),
        line("get_hit", "ours/lmdb", 1.45, 1),
    ];
    let records = records(&lines.each_ref().map(String::as_str));
    let (target, status) = Row::of("get_hit", &records).target();
    assert_eq!(target, "≥ 5× diskcache; ≤ 1.25× raw redb; ≤ 1.5× LMDB");
    assert_eq!(status.text(), "**MISSED**: ≤ 1.25× raw redb");
}

#[test]
fn a_row_meets_its_targets_only_when_every_one_was_measured() {
    let met = [
        line("set_100b", "ours", 0.1, 100_000),
        line("set_100b", "diskcache", 5.0, 100_000),
        line("set_100b", "ours/redb", 0.9, 1),
    ];
    let all = records(&met.each_ref().map(String::as_str));
    assert_eq!(Row::of("set_100b", &all).target().1.text(), "met");
    let without_diskcache = records(&[met[0].as_str(), met[2].as_str()]);
    assert_eq!(
        Row::of("set_100b", &without_diskcache).target().1.text(),
        "not checked (no diskcache column)"
    );
    assert_eq!(Row::of("get_miss", &all).target().1.text(), "—");
}

#[test]
fn the_scale_table_checks_issue_15_s_targets_from_100_000_keys_on() {
    let size = |n: u64, ours: f64, redb: f64, versus_lmdb: f64| {
        let lines = [
            line("get_hit", "ours", ours, n),
            line("get_hit", "redb", redb, n),
            line("get_hit", "lmdb", redb / 2.0, n),
            line("get_hit", "ours/redb", ours / redb, 1),
            line("get_hit", "ours/lmdb", versus_lmdb, 1),
        ];
        records(&lines.each_ref().map(String::as_str))
    };
    let main = size(100_000, 0.06, 0.05, 1.4);
    let runs = [
        scale::SizeRun::new(10_000, size(10_000, 0.004, 0.002, 3.0)),
        scale::SizeRun::new(1_000_000, size(1_000_000, 1.0, 0.9, 2.2)),
    ];
    let mut out = String::new();
    scale::render(&mut out, 100_000, &main, Ok(&runs));
    let row_of = |n: &str| {
        out.lines()
            .find(|line| line.starts_with(&format!("| {n} |")))
            .unwrap()
            .to_owned()
    };
    // No target at 10 000 keys, however far off.
    assert!(row_of("10000").ends_with("| — | — |"), "{out}");
    assert!(row_of("100000").ends_with("| met |"), "{out}");
    assert!(
        row_of("1000000").ends_with("| **MISSED**: ≤ 1.5× LMDB |"),
        "{out}"
    );
    // Per get, ours 0.4 µs → 1 µs (2.5×), raw redb 0.2 µs → 0.9 µs (4.5×).
    assert!(
        out.contains(
            "ours 2.50×, raw redb 4.50×, LMDB 4.50×. Target: no worse than raw redb's. Status: met."
        ),
        "{out}"
    );
}

#[test]
fn civil_dates() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(20_417), (2025, 11, 25));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
}
