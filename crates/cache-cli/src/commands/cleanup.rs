//! `cleanup`: cache-core's cleanup on every tag (expired and unreadable entries removed, then
//! eviction down to the size limit), reporting what each removed.

use anyhow::Context as _;
use cache_core::CleanupReport;
use serde::Serialize;

use crate::output::Output;
use crate::render::{Align, Table};
use crate::root::CacheRoot;

#[derive(Serialize, Default)]
struct Removed {
    expired: u64,
    evicted: u64,
    unreadable: u64,
}

impl Removed {
    fn add(&mut self, report: &CleanupReport) {
        self.expired += report.expired;
        self.evicted += report.evicted;
        self.unreadable += report.unreadable;
    }
}

#[derive(Serialize)]
struct TagCleaned {
    tag: String,
    #[serde(flatten)]
    removed: Removed,
}

#[derive(Serialize)]
struct CleanupSummary {
    root: String,
    tags: Vec<TagCleaned>,
    totals: Removed,
}

pub(crate) fn run(root: &CacheRoot, output: &Output) -> anyhow::Result<()> {
    let mut summary = CleanupSummary {
        root: root.path().display().to_string(),
        tags: Vec::new(),
        totals: Removed::default(),
    };
    for tag in root.tags()? {
        let report = root
            .open_existing(&tag)?
            .cleanup()
            .with_context(|| format!("while cleaning up tag '{tag}'"))?;
        summary.totals.add(&report);
        let mut removed = Removed::default();
        removed.add(&report);
        summary.tags.push(TagCleaned {
            tag: tag.to_string(),
            removed,
        });
    }
    if output.is_json() {
        return output.json(&summary);
    }
    if summary.tags.is_empty() {
        return output.note(&format!(
            "no tags under {}; nothing to clean up",
            summary.root
        ));
    }
    let mut table = Table::new(&[
        ("TAG", Align::Left),
        ("EXPIRED", Align::Right),
        ("EVICTED", Align::Right),
        ("UNREADABLE", Align::Right),
    ]);
    let cells = |name: String, removed: &Removed| {
        vec![
            name,
            removed.expired.to_string(),
            removed.evicted.to_string(),
            removed.unreadable.to_string(),
        ]
    };
    for tag in &summary.tags {
        table.row(cells(tag.tag.clone(), &tag.removed));
    }
    table.row(cells(
        format!("total ({})", summary.tags.len()),
        &summary.totals,
    ));
    output.text(&table.render())
}
