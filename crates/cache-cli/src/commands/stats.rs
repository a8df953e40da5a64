//! `stats`: each tag's lifetime counters (every process that used it), and `--reset` to zero
//! them, as `sccache --zero-stats` does.
//! Zeroing is `Cache::reset_lifetime_counters`; the tags are opened through the run's
//! coordinator, like every other command's, and closed by `commands::run` at the end.

use anyhow::Context as _;
use cache_core::{Cache, Counters, Tag};
use serde::Serialize;

use crate::cli::StatsArgs;
use crate::output::Output;
use crate::render::{Align, Table};
use crate::root::CacheRoot;

#[derive(Serialize)]
struct StatsReport {
    root: String,
    /// Whether the counters were zeroed (the ones shown are those from before).
    reset: bool,
    tags: Vec<TagCounters>,
}

#[derive(Serialize)]
struct TagCounters {
    tag: String,
    hits: u64,
    misses: u64,
    sets: u64,
    deletes: u64,
    evictions: u64,
    expirations: u64,
    errors: u64,
    operations: u64,
}

impl TagCounters {
    fn new(tag: &Tag, counters: &Counters) -> Self {
        TagCounters {
            tag: tag.to_string(),
            hits: counters.hits,
            misses: counters.misses,
            sets: counters.sets,
            deletes: counters.deletes,
            evictions: counters.evictions,
            expirations: counters.expirations,
            errors: counters.errors,
            operations: counters.operations,
        }
    }
}

pub(crate) fn run(root: &CacheRoot, args: &StatsArgs, output: &Output) -> anyhow::Result<()> {
    let tags = match &args.tag {
        Some(tag) => {
            root.require_tag(tag)?;
            vec![tag.clone()]
        }
        None => root.tags()?,
    };
    let mut rows = Vec::new();
    for tag in &tags {
        let cache = root.open_existing(tag)?;
        rows.push(read_and_maybe_reset(&cache, tag, args.reset)?);
    }
    let report = StatsReport {
        root: root.path().display().to_string(),
        reset: args.reset,
        tags: rows,
    };
    if output.is_json() {
        return output.json(&report);
    }
    if report.tags.is_empty() {
        return output.text("no tags");
    }
    let mut table = Table::new(&[
        ("TAG", Align::Left),
        ("HITS", Align::Right),
        ("MISSES", Align::Right),
        ("SETS", Align::Right),
        ("DELETES", Align::Right),
        ("EVICTIONS", Align::Right),
        ("EXPIRATIONS", Align::Right),
        ("ERRORS", Align::Right),
    ]);
    for row in &report.tags {
        table.row(vec![
            row.tag.clone(),
            row.hits.to_string(),
            row.misses.to_string(),
            row.sets.to_string(),
            row.deletes.to_string(),
            row.evictions.to_string(),
            row.expirations.to_string(),
            row.errors.to_string(),
        ]);
    }
    output.text(&table.render())?;
    if report.reset {
        output.note("the counters above were zeroed")?;
    }
    Ok(())
}

fn read_and_maybe_reset(cache: &Cache, tag: &Tag, reset: bool) -> anyhow::Result<TagCounters> {
    let stats = cache
        .get_stats()
        .with_context(|| format!("while reading the statistics of tag '{tag}'"))?;
    if reset {
        cache
            .reset_lifetime_counters()
            .with_context(|| format!("while zeroing the counters of tag '{tag}'"))?;
    }
    Ok(TagCounters::new(tag, &stats.lifetime))
}
