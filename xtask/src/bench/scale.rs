//! The scale table of `docs/benchmarks.md` (issue 15): `get_hit` at N = 10 000 and 1 000 000
//! beside the main run's N, ours against raw redb and LMDB, with issue 15's targets (≤ 1.25×
//! raw redb and ≤ 1.5× LMDB at 100 000 and at 1 000 000 keys; our get's growth from the
//! smallest N to the largest no worse than raw redb's). Each size is its own run of the
//! `compare` bench's small-value group (`--only small`), with the main run's repetitions and
//! page cache; diskcache is left out (a million sets take it minutes).

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

use super::{Check, Options, Record, checked, format_duration, format_ratio, parse_records};

/// The sizes measured besides the main run's N.
const SCALE_N: [u64; 2] = [10_000, 1_000_000];

/// From this N on, issue 15's ratio targets apply (they are set at 100 000 and 1 000 000).
const TARGET_FROM_N: u64 = 100_000;

/// The records of one size's run.
pub(super) struct SizeRun {
    n: u64,
    records: Vec<Record>,
}

impl SizeRun {
    pub(super) fn new(n: u64, records: Vec<Record>) -> Self {
        SizeRun { n, records }
    }
}

/// Runs the `compare` bench's small-value group at each of [`SCALE_N`] that is not the main
/// run's N.
pub(super) fn run(cargo: &OsStr, root: &Path, options: &Options) -> anyhow::Result<Vec<SizeRun>> {
    let repetitions = options.repetitions.to_string();
    let mut runs = Vec::new();
    for n in SCALE_N.into_iter().filter(|&n| n != options.n) {
        let n_text = n.to_string();
        let mut command = Command::new(cargo);
        command
            .args(["bench", "-p", "cache-core", "--bench", "compare", "--"])
            .args(["--only", "small", "--n", &n_text, "--reps", &repetitions]);
        let mut command_line = format!(
            "cargo bench -p cache-core --bench compare -- --only small --n {n} --reps {repetitions}"
        );
        if let Some(mib) = options.page_cache_mib {
            command.args(["--page-cache-mib", &mib.to_string()]);
            let _ = write!(command_line, " --page-cache-mib {mib}");
        }
        let output = super::run_capturing("scale", &mut command, root, &command_line)
            .with_context(|| format!("the scale run at N = {n} failed"))?;
        let records = parse_records(&output)
            .with_context(|| format!("while reading the scale run at N = {n}"))?;
        runs.push(SizeRun::new(n, records));
    }
    Ok(runs)
}

/// `get_hit` of one size: time per get of each column, and our ratios.
struct Size<'a> {
    n: u64,
    records: &'a [Record],
}

impl Size<'_> {
    fn find(&self, column: &str) -> Option<&Record> {
        self.records
            .iter()
            .find(|record| record.workload == "get_hit" && record.column == column)
    }

    fn per_get(&self, column: &str) -> Option<f64> {
        self.find(column).map(|record| record.median_s / record.ops)
    }

    /// Ours' time over `other`'s: the median of the per-repetition ratios.
    fn versus(&self, other: &str) -> Option<f64> {
        self.find(&format!("ours/{other}"))
            .map(|record| record.median_s)
    }

    /// The machine's load before and after the run, as the bench read it.
    fn load(&self) -> String {
        let load = self
            .records
            .iter()
            .find(|record| record.workload == "machine" && record.column == "loadavg");
        let figure = |name: &str| {
            load.and_then(|load| load.extra.get(name))
                .map_or_else(|| "?".to_owned(), |value| format!("{value:.2}"))
        };
        format!("{} → {}", figure("before_1m"), figure("after_1m"))
    }
}

/// Writes the scale section: `runs` are the extra sizes, or why there are none.
pub(super) fn render(
    out: &mut String,
    main_n: u64,
    main_records: &[Record],
    runs: Result<&[SizeRun], &str>,
) {
    let _ = writeln!(out, "## Scale (issue 15)\n");
    let runs = match runs {
        Ok(runs) => runs,
        Err(note) => {
            let _ = writeln!(out, "**Not measured**: {note}\n");
            return;
        }
    };
    let mut sizes: Vec<Size<'_>> = runs
        .iter()
        .map(|run| Size {
            n: run.n,
            records: &run.records,
        })
        .collect();
    sizes.push(Size {
        n: main_n,
        records: main_records,
    });
    sizes.sort_by_key(|size| size.n);

    let _ = writeln!(
        out,
        "| N | ours | raw redb | LMDB | ours ÷ raw redb | ours ÷ LMDB | load (1 min) | target | status |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for size in &sizes {
        let cell = |column: &str| {
            size.per_get(column)
                .map_or_else(|| "—".to_owned(), format_duration)
        };
        let (target, status) = if size.n >= TARGET_FROM_N {
            checked(&[
                Check::new(
                    "≤ 1.25× raw redb",
                    "no raw redb column",
                    size.versus("redb").map(|ratio| ratio <= 1.25),
                ),
                Check::new(
                    "≤ 1.5× LMDB",
                    "no LMDB column",
                    size.versus("lmdb").map(|ratio| ratio <= 1.5),
                ),
            ])
        } else {
            checked(&[])
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {target} | {} |",
            size.n,
            cell("ours"),
            cell("redb"),
            cell("lmdb"),
            format_ratio(size.versus("redb")),
            format_ratio(size.versus("lmdb")),
            size.load(),
            status.text()
        );
    }
    let _ = writeln!(out);

    if let (Some(smallest), Some(largest)) = (sizes.first(), sizes.last())
        && smallest.n < largest.n
    {
        let growth = |column: &str| Some(largest.per_get(column)? / smallest.per_get(column)?);
        let ours = growth("ours");
        let redb = growth("redb");
        let (target, status) = checked(&[Check::new(
            "no worse than raw redb's",
            "no ours or raw redb result",
            ours.zip(redb).map(|(ours, redb)| ours <= redb),
        )]);
        let _ = writeln!(
            out,
            "Growth of the time per get from N = {} to N = {}: ours {}, raw redb {}, LMDB {}. \
             Target: {target}. Status: {}.\n",
            smallest.n,
            largest.n,
            format_ratio(ours),
            format_ratio(redb),
            format_ratio(growth("lmdb")),
            status.text()
        );
    }
    let _ = writeln!(
        out,
        "`get_hit` as in the main table, each N its own run of the `compare` bench's small-value \
         group (`--only small`) with the same repetitions and page cache; the main table's N is \
         taken from the main run. Ratios are per-repetition medians. Issue 15's targets apply at \
         100 000 and 1 000 000 keys. diskcache is not measured here: a million sets take it \
         minutes. `docs/caching-system.md` (\"Measured, and what is missed\") says why a target \
         is missed.\n"
    );
}

/// The raw results of the extra sizes, one block each.
pub(super) fn render_raw(out: &mut String, runs: &[SizeRun]) {
    for run in runs {
        let _ = writeln!(out, "\nScale run, N = {}:\n\n```json", run.n);
        for record in &run.records {
            let _ = writeln!(out, "{}", record.line);
        }
        let _ = writeln!(out, "```");
    }
}
