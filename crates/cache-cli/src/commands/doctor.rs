//! `doctor`: cache-core's checks of every tag's files (`cache_core::diagnose_tag`), read-only or
//! with `--repair`. Exit code 0 when every tag is healthy or was repaired, 3 when damage is left
//! or a check could not run.

use serde::Serialize;

use cache_core::{DoctorOptions, TagDiagnosis, diagnose_tag};

use crate::cli::DoctorArgs;
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
    checks: Vec<CheckReport>,
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
            checks: diagnosis
                .findings
                .iter()
                .map(|finding| CheckReport {
                    check: finding.check,
                    status: finding.status.as_str(),
                    detail: finding.detail.clone(),
                })
                .collect(),
        }
    }
}

pub(crate) fn run(root: &CacheRoot, args: &DoctorArgs, output: &Output) -> anyhow::Result<()> {
    let tags = root.tags()?;
    let options = DoctorOptions {
        repair: args.repair,
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
    let unhealthy: Vec<String> = report
        .tags
        .iter()
        .filter(|tag| !tag.healthy)
        .map(|tag| format!("'{}'", tag.tag))
        .collect();
    if !unhealthy.is_empty() {
        let advice = if args.repair {
            "what is left needs a person: see the checks above"
        } else {
            "`glovebox-cache doctor --repair` fixes what it can"
        };
        anyhow::bail!(
            "damage left in tag(s) {} under {}; {advice}",
            unhealthy.join(", "),
            report.root
        );
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
    if report.healthy {
        output.note(&format!(
            "{} healthy",
            render::count(report.tags.len() as u64, "tag", "tags")
        ))?;
    }
    Ok(())
}
