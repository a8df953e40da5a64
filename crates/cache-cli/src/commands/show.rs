//! `show`: per-tag statistics and totals, as a table or JSON.
//!
//! Hits, misses, evictions and expirations are the tag's lifetime counters (persisted by every
//! process that used it). The size limit is the one this tool opens tags with (the configuration
//! file's, else cache-core's default); a program may configure another. `--tag` shows one tag. The last cleanup is the time cache-core recorded
//! in the tag's file when `cleanup()` last ran in any process (`never` / `null` if it never did).
//!
//! The remote tier's lifetime counters (hits, misses, errors, timeouts, rejected, skipped,
//! bytes in and out, published, dropped, backfills, fleet waits) are persisted with each tag's
//! (`cache_core::RemoteCounters`): `--json` has them per tag (`remote`) and in the totals; the
//! table shows a second table, per tag and in total, when any is non-zero. A process's remote
//! counts go to the tag whose store persisted them first, so the split between tags is
//! approximate for a program that used several; the totals are exact.
//!
//! Then the cached workspaces of the `compilation` tag (repository, branch, size, age, expiry),
//! listed by cache-compilation after the statistics were read: listing reads each workspace's
//! metadata, which counts as a hit, so the numbers shown are those from before this `show`.

use anyhow::Context as _;
use cache_compilation::COMPILATION_TAG;
use cache_core::{CacheStats, Counters, RemoteCounters};
use serde::Serialize;

use crate::cli::ShowArgs;
use crate::commands::workspace::{self, WorkspaceRow};
use crate::output::Output;
use crate::render::{self, Align, Table};
use crate::root::CacheRoot;

#[derive(Serialize)]
struct ShowReport {
    root: String,
    tags: Vec<TagRow>,
    totals: Totals,
    /// The cached workspaces (tag `compilation`), by repository then branch.
    workspaces: Vec<WorkspaceRow>,
    /// Tags that could not be read, with why.
    errors: Vec<TagError>,
}

#[derive(Serialize)]
struct TagRow {
    tag: String,
    entries: u64,
    bytes: u64,
    hits: u64,
    misses: u64,
    /// `null` when the tag was never read.
    hit_rate_percent: Option<f64>,
    evictions: u64,
    expirations: u64,
    sets: u64,
    deletes: u64,
    errors: u64,
    limit_bytes: u64,
    /// Free bytes on the filesystem the tag lives on (`null` when unknown): a tag under its
    /// limit can still be stopped by a full disk.
    filesystem_free_bytes: Option<u64>,
    /// That filesystem's size.
    filesystem_bytes: Option<u64>,
    /// What the `min_free_space` setting keeps free there; below it the tag evicts.
    min_free_bytes: Option<u64>,
    /// When `cleanup()` last ran on the tag, in any process; `null` if never.
    last_cleanup: Option<String>,
    /// The remote tier's lifetime counters persisted with this tag's.
    remote: RemoteRow,
}

/// The remote tier's counters, as `show` and `remote status` print them.
#[derive(Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct RemoteRow {
    hits: u64,
    misses: u64,
    errors: u64,
    timeouts: u64,
    rejected: u64,
    skipped: u64,
    bytes_in: u64,
    bytes_out: u64,
    published: u64,
    dropped: u64,
    backfills: u64,
    fleet_waits: u64,
}

impl From<&RemoteCounters> for RemoteRow {
    fn from(counters: &RemoteCounters) -> Self {
        RemoteRow {
            hits: counters.hits,
            misses: counters.misses,
            errors: counters.errors,
            timeouts: counters.timeouts,
            rejected: counters.rejected,
            skipped: counters.skipped,
            bytes_in: counters.bytes_in,
            bytes_out: counters.bytes_out,
            published: counters.published,
            dropped: counters.dropped,
            backfills: counters.backfills,
            fleet_waits: counters.fleet_waits,
        }
    }
}

impl RemoteRow {
    /// The table's header, for a table whose first column names the row.
    pub(crate) fn columns(first: &'static str) -> Vec<(&'static str, Align)> {
        let mut columns = vec![(first, Align::Left)];
        for name in [
            "HITS",
            "MISSES",
            "ERRORS",
            "TIMEOUTS",
            "REJECTED",
            "SKIPPED",
            "IN",
            "OUT",
            "PUBLISHED",
            "DROPPED",
            "BACKFILLS",
            "FLEET WAITS",
        ] {
            columns.push((name, Align::Right));
        }
        columns
    }

    /// One row of that table.
    pub(crate) fn cells(&self, name: String) -> Vec<String> {
        vec![
            name,
            self.hits.to_string(),
            self.misses.to_string(),
            self.errors.to_string(),
            self.timeouts.to_string(),
            self.rejected.to_string(),
            self.skipped.to_string(),
            render::size(self.bytes_in),
            render::size(self.bytes_out),
            self.published.to_string(),
            self.dropped.to_string(),
            self.backfills.to_string(),
            self.fleet_waits.to_string(),
        ]
    }
}

/// The remote tier's lifetime counters of every tag of `root` that can be read, summed.
pub(crate) fn remote_lifetime(root: &CacheRoot) -> anyhow::Result<RemoteCounters> {
    let mut total = RemoteCounters::default();
    for tag in root.tags()? {
        let stats = root.open_existing(&tag).and_then(|cache| {
            cache
                .get_stats()
                .with_context(|| format!("while reading the statistics of tag '{tag}'"))
        })?;
        total = total.plus(&stats.lifetime.remote);
    }
    Ok(total)
}

#[derive(Serialize)]
struct Totals {
    tags: usize,
    entries: u64,
    bytes: u64,
    hits: u64,
    misses: u64,
    hit_rate_percent: Option<f64>,
    evictions: u64,
    /// The remote tier's lifetime counters, over every tag.
    remote: RemoteRow,
}

#[derive(Serialize)]
struct TagError {
    tag: String,
    error: String,
}

fn hit_rate(counters: &Counters) -> Option<f64> {
    (counters.hits + counters.misses > 0).then(|| counters.hit_rate())
}

fn row(stats: &CacheStats) -> TagRow {
    let lifetime = &stats.lifetime;
    TagRow {
        tag: stats.tag.clone(),
        entries: stats.entries,
        bytes: stats.bytes,
        hits: lifetime.hits,
        misses: lifetime.misses,
        hit_rate_percent: hit_rate(lifetime),
        evictions: lifetime.evictions,
        expirations: lifetime.expirations,
        sets: lifetime.sets,
        deletes: lifetime.deletes,
        errors: lifetime.errors,
        limit_bytes: stats.max_size_bytes,
        filesystem_free_bytes: stats.filesystem.map(|space| space.free_bytes),
        filesystem_bytes: stats.filesystem.map(|space| space.total_bytes),
        min_free_bytes: stats.min_free_bytes,
        last_cleanup: stats.last_cleanup.map(render::timestamp),
        remote: RemoteRow::from(&lifetime.remote),
    }
}

pub(crate) fn run(root: &CacheRoot, args: &ShowArgs, output: &Output) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut total_counters = Counters::default();
    let tags = match &args.tag {
        Some(tag) => {
            root.require_tag(tag)?;
            vec![tag.clone()]
        }
        None => root.tags()?,
    };
    for tag in tags {
        let stats = root.open_existing(&tag).and_then(|cache| {
            cache
                .get_stats()
                .with_context(|| format!("while reading the statistics of tag '{tag}'"))
        });
        match stats {
            Ok(stats) => {
                total_counters = total_counters.plus(&stats.lifetime);
                rows.push(row(&stats));
            }
            Err(err) => errors.push(TagError {
                tag: tag.to_string(),
                error: format!("{err:#}"),
            }),
        }
    }
    // With --tag, the workspaces are shown only for the compilation tag itself.
    let compilation_listable = rows.iter().any(|row| row.tag == COMPILATION_TAG);
    let workspaces = if compilation_listable {
        workspace::list_rows(root).unwrap_or_else(|err| {
            errors.push(TagError {
                tag: COMPILATION_TAG.to_owned(),
                error: format!("{err:#}"),
            });
            Vec::new()
        })
    } else {
        Vec::new()
    };
    let report = ShowReport {
        root: root.path().display().to_string(),
        workspaces,
        totals: Totals {
            tags: rows.len(),
            entries: rows.iter().map(|row| row.entries).sum(),
            bytes: rows.iter().map(|row| row.bytes).sum(),
            hits: total_counters.hits,
            misses: total_counters.misses,
            hit_rate_percent: hit_rate(&total_counters),
            evictions: total_counters.evictions,
            remote: RemoteRow::from(&total_counters.remote),
        },
        tags: rows,
        errors,
    };
    if output.is_json() {
        output.json(&report)?;
    } else {
        print_human(&report, output)?;
    }
    if !report.errors.is_empty() {
        let names: Vec<String> = report
            .errors
            .iter()
            .map(|error| format!("'{}'", error.tag))
            .collect();
        anyhow::bail!(
            "could not read tag(s) {} under {}; `glovebox-cache doctor` checks their files",
            names.join(", "),
            report.root
        );
    }
    Ok(())
}

fn total_remote_is_nonzero(report: &ShowReport) -> bool {
    report.totals.remote != RemoteRow::default()
}

fn print_human(report: &ShowReport, output: &Output) -> anyhow::Result<()> {
    output.note(&format!("cache root: {}", report.root))?;
    if report.tags.is_empty() && report.errors.is_empty() {
        return output.text("no tags");
    }
    let percent = |rate: Option<f64>| rate.map_or_else(|| "-".to_owned(), |r| format!("{r:.1}%"));
    let mut table = Table::new(&[
        ("TAG", Align::Left),
        ("ENTRIES", Align::Right),
        ("SIZE", Align::Right),
        ("HITS", Align::Right),
        ("MISSES", Align::Right),
        ("HIT RATE", Align::Right),
        ("EVICTIONS", Align::Right),
        ("LIMIT", Align::Right),
        ("DISK FREE", Align::Right),
        ("LAST CLEANUP", Align::Left),
    ]);
    for row in &report.tags {
        table.row(vec![
            row.tag.clone(),
            row.entries.to_string(),
            render::size(row.bytes),
            row.hits.to_string(),
            row.misses.to_string(),
            percent(row.hit_rate_percent),
            row.evictions.to_string(),
            render::size(row.limit_bytes),
            row.filesystem_free_bytes
                .map_or_else(|| "-".to_owned(), render::size),
            row.last_cleanup
                .clone()
                .unwrap_or_else(|| "never".to_owned()),
        ]);
    }
    let totals = &report.totals;
    table.row(vec![
        format!("total ({})", totals.tags),
        totals.entries.to_string(),
        render::size(totals.bytes),
        totals.hits.to_string(),
        totals.misses.to_string(),
        percent(totals.hit_rate_percent),
        totals.evictions.to_string(),
        String::new(),
        String::new(),
        String::new(),
    ]);
    output.text(&table.render())?;
    if total_remote_is_nonzero(report) {
        let mut remote = Table::new(&RemoteRow::columns("REMOTE TIER"));
        for row in &report.tags {
            remote.row(row.remote.cells(row.tag.clone()));
        }
        remote.row(totals.remote.cells(format!("total ({})", totals.tags)));
        output.text(&format!("\n{}", remote.render()))?;
    }
    if !report.workspaces.is_empty() {
        output.text(&format!(
            "\nworkspaces (tag '{COMPILATION_TAG}'):\n{}",
            workspace::table(&report.workspaces)
        ))?;
    }
    for error in &report.errors {
        output.note(&error.error)?;
    }
    Ok(())
}
