//! The remote tier's table of `docs/benchmarks.md`: issue 17's targets, from the `remote` bench
//! of cache-remote (`crates/cache-remote/benches/remote.rs`), one row per workload with what was
//! measured, its reference, the difference, the target and whether it is met.

use std::fmt::Write as _;

use super::{Record, Status, format_duration, format_ratio};

/// The rows of the remote tier's table, in order.
const REMOTE_WORKLOADS: [&str; 6] = [
    "remote_local_hit",
    "remote_local_miss",
    "remote_hit_small",
    "remote_miss",
    "remote_hit_64m",
    "remote_set",
];

/// One row of the remote tier's table: what was measured, against what, the comparison, the
/// target and whether it is met.
pub(super) fn remote_row(workload: &str, records: &[Record]) -> [String; 5] {
    let find = |column: &str| {
        records
            .iter()
            .find(|record| record.workload == workload && record.column == column)
    };
    let per_op = |column: &str| find(column).map(|record| record.median_s / record.ops);
    let time = |column: &str| per_op(column).map_or_else(|| "—".to_owned(), format_duration);
    let status = |met: Option<bool>| {
        met.map_or(Status::NotChecked("no result"), Status::from_check)
            .text()
    };
    let plus = |seconds: Option<f64>| {
        seconds.map_or_else(
            || "—".to_owned(),
            |seconds| {
                if seconds < 0.0 {
                    format!("−{}", format_duration(-seconds))
                } else {
                    format!("+{}", format_duration(seconds))
                }
            },
        )
    };
    match workload {
        "remote_local_hit" => {
            let ratio = per_op("with_remote/local");
            [
                time("with_remote"),
                time("local"),
                format_ratio(ratio),
                "≤ 1.05× the hit without a remote".to_owned(),
                status(ratio.map(|ratio| ratio <= 1.05)),
            ]
        }
        "remote_local_miss" => {
            let extra = per_op("breaker_open-local");
            [
                time("breaker_open"),
                time("local"),
                plus(extra),
                "≤ +100 ns over the miss without a remote".to_owned(),
                status(extra.map(|extra| extra <= 100e-9)),
            ]
        }
        "remote_hit_small" => [
            time("remote"),
            "—".to_owned(),
            "—".to_owned(),
            "≤ 50 µs".to_owned(),
            status(per_op("remote").map(|seconds| seconds <= 50e-6)),
        ],
        "remote_miss" => [
            time("remote"),
            "—".to_owned(),
            "—".to_owned(),
            "≤ 30 µs".to_owned(),
            status(per_op("remote").map(|seconds| seconds <= 30e-6)),
        ],
        "remote_hit_64m" => {
            let ratio = per_op("remote")
                .zip(per_op("raw_get"))
                .map(|(ours, raw)| ours / raw);
            [
                time("remote"),
                time("raw_get"),
                format_ratio(ratio),
                "no slower than one raw GET (≤ 1×)".to_owned(),
                status(ratio.map(|ratio| ratio <= 1.0)),
            ]
        }
        "remote_set" => {
            let extra = per_op("with_remote-local");
            [
                time("with_remote"),
                time("local"),
                plus(extra),
                "≤ +10 µs over the set without a remote".to_owned(),
                status(extra.map(|extra| extra <= 10e-6)),
            ]
        }
        _ => std::array::from_fn(|_| "—".to_owned()),
    }
}

/// The remote tier's section of the report (issue 17's targets), or why it is missing.
pub(super) fn render_remote(out: &mut String, records: &[Record], remote_note: Option<&str>) {
    let _ = writeln!(out, "## Remote tier (issue 17)\n");
    if let Some(note) = remote_note {
        let _ = writeln!(out, "**Skipped**: {note}\n");
        return;
    }
    let _ = writeln!(
        out,
        "| workload | measured | reference | difference | target | status |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for workload in REMOTE_WORKLOADS {
        let [measured, reference, difference, target, status] = remote_row(workload, records);
        let _ = writeln!(
            out,
            "| `{workload}` | {measured} | {reference} | {difference} | {target} | {status} |"
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "From `crates/cache-remote/benches/remote.rs`, against a `redis-server` it starts on a \
         loopback TCP port (no persistence), default `RemoteConfig` (connect 250 ms, operation 2 s). \
         Per operation unless said. `remote_local_hit`: a hit with a remote attached (never asked) \
         against the same root without one; the difference is the median of per-repetition \
         ratios. `remote_local_miss`: a miss with the breaker open (an endpoint nobody listens on) \
         against one without a remote. `remote_hit_small`: a 100-byte value another root \
         published, fetched, stored locally and served. `remote_miss`: a key nobody stored. \
         `remote_hit_64m`: 64 MiB read through with `get_to_writer` (chunks fetched and checked, \
         stored as a local blob with fsync, read back verified) against one `GET` of 64 MiB \
         through the `redis` crate. `remote_set`: `set` with a remote (the upload is queued after \
         the commit, on the commit thread) against without; the flush after is not timed.\n"
    );
}

#[cfg(test)]
mod tests {
    use super::super::parse_records;
    use super::*;

    #[test]
    fn the_remote_table_checks_issue_17_s_targets() {
        let records = parse_records(concat!(
            "{\"workload\":\"remote_local_hit\",\"column\":\"with_remote/local\",\"median_s\":1.2,\"ops\":1,\"reps\":1}\n",
            "{\"workload\":\"remote_local_miss\",\"column\":\"breaker_open-local\",\"median_s\":5e-8,\"ops\":1,\"reps\":1}\n",
            "{\"workload\":\"remote_hit_small\",\"column\":\"remote\",\"median_s\":0.004,\"ops\":100,\"reps\":1}\n",
            "{\"workload\":\"remote_hit_64m\",\"column\":\"remote\",\"median_s\":0.5,\"ops\":1,\"reps\":1}\n",
            "{\"workload\":\"remote_hit_64m\",\"column\":\"raw_get\",\"median_s\":0.25,\"ops\":1,\"reps\":1}\n",
        ))
        .unwrap();
        assert_eq!(remote_row("remote_local_hit", &records)[4], "**MISSED**");
        assert_eq!(remote_row("remote_local_miss", &records)[4], "met");
        assert_eq!(remote_row("remote_local_miss", &records)[2], "+50.0 ns");
        assert_eq!(remote_row("remote_hit_small", &records)[4], "met", "40 µs");
        assert_eq!(remote_row("remote_hit_64m", &records)[2], "2.00×");
        assert_eq!(remote_row("remote_hit_64m", &records)[4], "**MISSED**");
        assert!(remote_row("remote_miss", &records)[4].starts_with("not checked"));
        let mut out = String::new();
        render_remote(&mut out, &records, None);
        assert!(out.contains("| `remote_set` |"), "{out}");
        let mut skipped = String::new();
        render_remote(&mut skipped, &[], Some("no redis-server"));
        assert!(
            skipped.contains("**Skipped**: no redis-server"),
            "{skipped}"
        );
    }
}
