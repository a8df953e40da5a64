//! `doctor`: cache-core's checks of every tag's files (`cache_core::diagnose_tag`), read-only or
//! with `--repair`. Exit code 0 when every tag is healthy or was repaired, 3 when damage is left,
//! 4 when nothing damaged was found but a check could not look (status `not checked`: another
//! process held the file's lock past `--timeout`, an I/O error), so a tag's health is unknown.
//!
//! Besides each check's one-line finding, the report lists what the storage checks found item
//! by item (entries without their blob or directory, blobs that do not match their hash, files
//! no entry refers to, stale temp files) and, with `--repair`, what the tag's cleanup removed.

use std::path::PathBuf;

use serde::Serialize;

use cache_core::{
    CheckStatus, CleanupReport, DoctorOptions, EntryFile, StorageFindings, TagDiagnosis,
    diagnose_tag,
};

use crate::cli::DoctorArgs;
use crate::exit::NotChecked;
use crate::output::Output;
use crate::render::{self, Align, Table};
use crate::root::CacheRoot;

#[derive(Serialize)]
struct DoctorReport {
    root: String,
    repair: bool,
    healthy: bool,
    tags: Vec<TagReport>,
}

#[derive(Serialize)]
struct TagReport {
    tag: String,
    database: String,
    healthy: bool,
    /// Whether a check found damage that is still there.
    damaged: bool,
    /// Whether every check could look (none `not checked`).
    checked: bool,
    checks: Vec<CheckReport>,
    /// What the storage checks found before any repair; `null` when they could not run.
    storage: Option<StorageReport>,
    /// With `--repair`, what cleanup removed to fix it; `null` when it did not run.
    cleanup: Option<CleanupJson>,
}

#[derive(Serialize)]
struct StorageReport {
    missing_blobs: Vec<EntryFileJson>,
    corrupt_blobs: Vec<EntryFileJson>,
    missing_directories: Vec<EntryFileJson>,
    orphan_blobs: Vec<String>,
    orphan_directories: Vec<String>,
    stale_temp_files: Vec<String>,
}

#[derive(Serialize)]
struct EntryFileJson {
    /// The key as text, or `null` when it is not UTF-8.
    key: Option<String>,
    key_hex: String,
    path: String,
}

#[derive(Serialize)]
struct CleanupJson {
    expired: u64,
    evicted: u64,
    unreadable: u64,
    missing_files: u64,
    orphan_files: u64,
    temp_files: u64,
}

fn paths(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|path| path.display().to_string())
        .collect()
}

fn entry_files(entries: &[EntryFile]) -> Vec<EntryFileJson> {
    entries
        .iter()
        .map(|entry| EntryFileJson {
            key: render::text_or_none(&entry.key),
            key_hex: render::hex(&entry.key),
            path: entry.path.display().to_string(),
        })
        .collect()
}

impl StorageReport {
    fn new(found: &StorageFindings) -> Self {
        StorageReport {
            missing_blobs: entry_files(&found.missing_blobs),
            corrupt_blobs: entry_files(&found.corrupt_blobs),
            missing_directories: entry_files(&found.missing_directories),
            orphan_blobs: paths(&found.orphan_blobs),
            orphan_directories: paths(&found.orphan_directories),
            stale_temp_files: paths(&found.stale_temp_files),
        }
    }
}

impl CleanupJson {
    fn new(report: &CleanupReport) -> Self {
        CleanupJson {
            expired: report.expired,
            evicted: report.evicted,
            unreadable: report.unreadable,
            missing_files: report.missing_files,
            orphan_files: report.orphan_files,
            temp_files: report.temp_files,
        }
    }
}

#[derive(Serialize)]
struct CheckReport {
    check: &'static str,
    status: &'static str,
    detail: String,
}

impl TagReport {
    fn new(diagnosis: &TagDiagnosis) -> Self {
        TagReport {
            tag: diagnosis.tag.to_string(),
            database: diagnosis.database_path.display().to_string(),
            healthy: diagnosis.is_healthy(),
            damaged: diagnosis.is_damaged(),
            checked: diagnosis.all_checked(),
            checks: diagnosis
                .findings
                .iter()
                .map(|finding| CheckReport {
                    check: finding.check,
                    status: finding.status.as_str(),
                    detail: finding.detail.clone(),
                })
                .collect(),
            storage: diagnosis.storage.as_ref().map(StorageReport::new),
            cleanup: diagnosis.cleanup.as_ref().map(CleanupJson::new),
        }
    }
}

pub(crate) fn run(root: &CacheRoot, args: &DoctorArgs, output: &Output) -> anyhow::Result<()> {
    let tags = root.tags()?;
    let options = DoctorOptions {
        repair: args.repair,
        timeout: root.timeout(),
        ..DoctorOptions::default()
    };
    let mut reports = Vec::new();
    if !tags.is_empty() {
        // This run opened no tag through its coordinator, so each file is opened once here.
        let canonical = root.canonical()?;
        for tag in &tags {
            reports.push(TagReport::new(&diagnose_tag(&canonical, tag, &options)));
        }
    }
    let report = DoctorReport {
        root: root.path().display().to_string(),
        repair: args.repair,
        healthy: reports.iter().all(|tag| tag.healthy),
        tags: reports,
    };
    if output.is_json() {
        output.json(&report)?;
    } else {
        print_human(&report, output)?;
    }
    let named = |select: fn(&TagReport) -> bool| -> Vec<String> {
        report
            .tags
            .iter()
            .filter(|tag| select(tag))
            .map(|tag| format!("'{}'", tag.tag))
            .collect()
    };
    let damaged = named(|tag| tag.damaged);
    let unchecked = named(|tag| !tag.checked);
    // The first check of each tag that ended `status`, in its own words.
    let first_of = |status: CheckStatus| -> Vec<String> {
        report
            .tags
            .iter()
            .filter_map(|tag| {
                tag.checks
                    .iter()
                    .find(|check| check.status == status.as_str())
                    .map(|check| format!("tag '{}' {}: {}", tag.tag, check.check, check.detail))
            })
            .collect()
    };
    let why_unchecked = first_of(CheckStatus::NotChecked);
    if !damaged.is_empty() {
        // After a repair, what is left says why (a repair that could not run names its error).
        let advice = if args.repair {
            format!(
                "what is left needs a person ({})",
                first_of(CheckStatus::Damaged).join("; ")
            )
        } else {
            "`glovebox-cache doctor --repair` fixes what it can".to_owned()
        };
        let also = if unchecked.is_empty() {
            String::new()
        } else {
            format!(
                "; could not check everything ({})",
                why_unchecked.join("; ")
            )
        };
        anyhow::bail!(
            "damage left in tag(s) {} under {}; {advice}{also}",
            damaged.join(", "),
            report.root
        );
    }
    if !unchecked.is_empty() {
        return Err(NotChecked(format!(
            "could not check tag(s) {} under {}: {}",
            unchecked.join(", "),
            report.root,
            why_unchecked.join("; ")
        ))
        .into());
    }
    Ok(())
}

fn print_human(report: &DoctorReport, output: &Output) -> anyhow::Result<()> {
    output.note(&format!("cache root: {}", report.root))?;
    if report.tags.is_empty() {
        return output.text("no tags");
    }
    let mut table = Table::new(&[
        ("TAG", Align::Left),
        ("CHECK", Align::Left),
        ("STATUS", Align::Left),
        ("DETAIL", Align::Left),
    ]);
    for tag in &report.tags {
        for check in &tag.checks {
            table.row(vec![
                tag.tag.clone(),
                check.check.to_owned(),
                check.status.to_owned(),
                check.detail.clone(),
            ]);
        }
    }
    output.text(&table.render())?;
    for tag in &report.tags {
        if let Some(cleanup) = &tag.cleanup {
            output.note(&format!(
                "tag '{}': cleanup removed {} whose blob or directory was missing or damaged, {}, \
                 {} and {}",
                tag.tag,
                render::count(cleanup.missing_files, "entry", "entries"),
                render::count(
                    cleanup.orphan_files,
                    "file without an entry",
                    "files without an entry"
                ),
                render::count(cleanup.temp_files, "stale temp file", "stale temp files"),
                render::count(cleanup.expired, "expired entry", "expired entries"),
            ))?;
        }
    }
    if report.healthy {
        output.note(&format!(
            "{} healthy",
            render::count(report.tags.len() as u64, "tag", "tags")
        ))?;
    }
    Ok(())
}
