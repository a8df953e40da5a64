//! `metrics`: the sessions programs recorded in the `metrics` tag (cache-metrics): `list`,
//! `show` (by id or a unique prefix), `dump` (one JSON array) and `clean --older-than`.
//!
//! Reading commands never create the tag: without it there are no sessions. `clean` removes
//! through cache-metrics' `delete`, session by session, choosing by start time from the same
//! listing `--dry-run` shows, so the dry run and the real run agree for any duration (the
//! library's own `clean_older_than` counts whole days).

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use cache_metrics::{MetricsCache, SessionMetrics};
use serde::Serialize;

use crate::cli::{
    MetricsArgs, MetricsCleanArgs, MetricsCommand, MetricsDumpArgs, MetricsListArgs,
    MetricsShowArgs,
};
use crate::duration::format_duration;
use crate::exit::{NotFound, UsageError};
use crate::output::Output;
use crate::render::{self, Align, Table};
use crate::root::CacheRoot;

pub(crate) fn run(root: &CacheRoot, args: &MetricsArgs, output: &Output) -> anyhow::Result<()> {
    match &args.command {
        MetricsCommand::List(args) => list(root, args, output),
        MetricsCommand::Show(args) => show(root, args, output),
        MetricsCommand::Dump(args) => dump(root, args, output),
        MetricsCommand::Clean(args) => clean(root, args, output),
    }
}

/// The service, or `None` when the root has no `metrics` tag (nothing recorded).
fn service(root: &CacheRoot) -> anyhow::Result<Option<MetricsCache>> {
    if !root.has_metrics_tag()? {
        return Ok(None);
    }
    root.metrics().map(Some)
}

/// Every session, newest first; none without the tag.
fn sessions(root: &CacheRoot) -> anyhow::Result<Vec<SessionMetrics>> {
    match service(root)? {
        Some(metrics) => metrics
            .list()
            .context("while listing the recorded sessions"),
        None => Ok(Vec::new()),
    }
}

#[derive(Serialize)]
struct SessionRow {
    session_id: String,
    command: String,
    started_at: String,
    started_at_unix_ms: u64,
    /// `null` while the session runs.
    duration_ms: Option<u64>,
    /// `null` while the session runs.
    exit_status: Option<i32>,
}

impl SessionRow {
    fn new(session: &SessionMetrics) -> Self {
        SessionRow {
            session_id: session.session_id.as_str().to_owned(),
            command: session.command.clone(),
            started_at: render::timestamp(session.started_at),
            started_at_unix_ms: render::unix_ms(session.started_at),
            duration_ms: session
                .duration()
                .map(|duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)),
            exit_status: session.exit_status,
        }
    }
}

#[derive(Serialize)]
struct ListReport {
    root: String,
    /// Sessions recorded.
    total: usize,
    sessions: Vec<SessionRow>,
}

fn list(root: &CacheRoot, args: &MetricsListArgs, output: &Output) -> anyhow::Result<()> {
    let all = sessions(root)?;
    let limit = args.limit.map_or(usize::MAX, |limit| {
        usize::try_from(limit).unwrap_or(usize::MAX)
    });
    let rows: Vec<SessionRow> = all.iter().take(limit).map(SessionRow::new).collect();
    if rows.len() < all.len() {
        output.note(&format!("showing {} of {} sessions", rows.len(), all.len()))?;
    }
    let report = ListReport {
        root: root.path().display().to_string(),
        total: all.len(),
        sessions: rows,
    };
    if output.is_json() {
        return output.json(&report);
    }
    if report.sessions.is_empty() {
        return output.text("no sessions");
    }
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("COMMAND", Align::Left),
        ("STARTED", Align::Left),
        ("DURATION", Align::Right),
        ("EXIT", Align::Right),
    ]);
    for row in &report.sessions {
        table.row(vec![
            row.session_id.clone(),
            row.command.clone(),
            row.started_at.clone(),
            row.duration_ms.map_or_else(
                || "running".to_owned(),
                |ms| format!("{:.1}s", ms as f64 / 1000.0),
            ),
            row.exit_status
                .map_or_else(|| "-".to_owned(), |status| status.to_string()),
        ]);
    }
    output.text(&table.render())
}

fn show(root: &CacheRoot, args: &MetricsShowArgs, output: &Output) -> anyhow::Result<()> {
    let wanted = args.id.trim().to_ascii_lowercase();
    if wanted.is_empty() {
        return Err(UsageError("a session id or prefix cannot be empty".to_owned()).into());
    }
    let all = sessions(root)?;
    let matching: Vec<&SessionMetrics> = all
        .iter()
        .filter(|session| session.session_id.as_str().starts_with(&wanted))
        .collect();
    let session = match matching.as_slice() {
        [] => {
            return Err(NotFound(format!(
                "no recorded session whose id starts with {:?} under {}",
                args.id,
                root.path().display()
            ))
            .into());
        }
        [one] => *one,
        several => {
            let candidates: Vec<String> = several
                .iter()
                .map(|session| {
                    format!(
                        "{} ({}, {})",
                        session.session_id.as_str(),
                        session.command,
                        render::timestamp(session.started_at)
                    )
                })
                .collect();
            return Err(UsageError(format!(
                "session id prefix {:?} is ambiguous: it matches {} sessions: {}",
                args.id,
                several.len(),
                candidates.join(", ")
            ))
            .into());
        }
    };
    if output.is_json() {
        return output.json(session);
    }
    let text = session
        .to_json_pretty()
        .context("while formatting the session")?;
    output.text(&text)
}

#[derive(Serialize)]
struct DumpReport {
    file: String,
    sessions: usize,
}

fn dump(root: &CacheRoot, args: &MetricsDumpArgs, output: &Output) -> anyhow::Result<()> {
    let all = sessions(root)?;
    match &args.output {
        None => output.json(&all),
        Some(path) => {
            let mut text =
                serde_json::to_string_pretty(&all).context("while formatting the sessions")?;
            text.push('\n');
            std::fs::write(path, text)
                .with_context(|| format!("while writing the sessions to {}", path.display()))?;
            if output.is_json() {
                output.json(&DumpReport {
                    file: path.display().to_string(),
                    sessions: all.len(),
                })
            } else {
                output.note(&format!(
                    "wrote {} to {}",
                    render::count(all.len() as u64, "session", "sessions"),
                    path.display()
                ))
            }
        }
    }
}

#[derive(Serialize)]
struct CleanReport {
    root: String,
    older_than_seconds: u64,
    dry_run: bool,
    /// The sessions removed (or, with --dry-run, that would be).
    removed: Vec<SessionRow>,
}

fn clean(root: &CacheRoot, args: &MetricsCleanArgs, output: &Output) -> anyhow::Result<()> {
    let cutoff = SystemTime::now()
        .checked_sub(args.older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut removed = Vec::new();
    if let Some(metrics) = service(root)? {
        let old: Vec<SessionMetrics> = metrics
            .list()
            .context("while listing the recorded sessions")?
            .into_iter()
            .filter(|session| session.started_at < cutoff)
            .collect();
        for session in &old {
            if !args.dry_run {
                metrics.delete(&session.session_id).with_context(|| {
                    format!("while removing session {}", session.session_id.as_str())
                })?;
            }
            removed.push(SessionRow::new(session));
        }
        if !args.dry_run {
            metrics
                .cache()
                .flush()
                .context("while writing the removals to the metrics tag")?;
        }
    }
    let report = CleanReport {
        root: root.path().display().to_string(),
        older_than_seconds: args.older_than.as_secs(),
        dry_run: args.dry_run,
        removed,
    };
    if output.is_json() {
        return output.json(&report);
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut lines = vec![format!(
        "{verb} {} started more than {} ago",
        render::count(report.removed.len() as u64, "session", "sessions"),
        format_duration(Duration::from_secs(report.older_than_seconds))
    )];
    lines.extend(
        report
            .removed
            .iter()
            .map(|row| format!("  {}  {}  {}", row.session_id, row.command, row.started_at)),
    );
    output.text(&lines.join("\n"))
}
