//! `workspace`: cached ZMK west workspaces in the `compilation` tag, through
//! `cache_compilation::WorkspaceService`: `list`, `add`, `delete`, `cleanup`, `export`, `import`,
//! `restore`.
//!
//! Reading commands (`list`, `export`, `restore`) and the removing ones (`delete`, `cleanup`) never create
//! the root or the tag: they look for the tag first, as every reading command does. `add` and
//! `import` check their input (a directory with `zmk/`, an archive named as one) before the tag
//! is opened, so a wrong path creates nothing.
//!
//! Over 600 lines: seven subcommands with their text and JSON reports, each short; one module
//! per subcommand group is the layout of `commands/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use cache_compilation::{
    ArchiveFormat, COMPILATION_TAG, CachedWorkspace, CompilationOptions, ExportOptions,
    GitHandling, LinkMode, WorkspaceDetails, WorkspaceId, WorkspaceLevel, WorkspaceMetadata,
    WorkspaceOrigin,
};
use serde::Serialize;

use crate::cli::{
    WorkspaceAddArgs, WorkspaceArgs, WorkspaceCleanupArgs, WorkspaceCommand, WorkspaceDeleteArgs,
    WorkspaceExportArgs, WorkspaceImportArgs, WorkspaceRestoreArgs,
};
use crate::duration::format_duration;
use crate::exit::{NotFound, UsageError};
use crate::output::Output;
use crate::progress::CopyProgress;
use crate::render::{self, Align, Table};
use crate::root::CacheRoot;

pub(crate) fn run(root: &CacheRoot, args: &WorkspaceArgs, output: &Output) -> anyhow::Result<()> {
    match &args.command {
        WorkspaceCommand::List => list(root, output),
        WorkspaceCommand::Add(args) => add(root, args, output),
        WorkspaceCommand::Delete(args) => delete(root, args, output),
        WorkspaceCommand::Cleanup(args) => cleanup(root, args, output),
        WorkspaceCommand::Export(args) => export(root, args, output),
        WorkspaceCommand::Import(args) => import(root, args, output),
        WorkspaceCommand::Restore(args) => restore(root, args, output),
    }
}

/// One cached workspace, as `workspace list --json` and `show --json` give it.
#[derive(Serialize)]
pub(crate) struct WorkspaceRow {
    repository: String,
    /// `null` for a repository-level workspace.
    branch: Option<String>,
    /// `repository` or `branch`.
    level: &'static str,
    /// Bytes as the cache counts them against the size limit.
    size_bytes: u64,
    files: u64,
    /// Which of `zmk`, `zephyr`, `modules`, `.west` it holds.
    components: Vec<String>,
    /// Whether `.git` directories were kept: `keep` or `exclude`.
    git: &'static str,
    /// `build`, `injected`, `imported-directory` or `imported-archive`.
    origin: &'static str,
    /// The directory or archive it came from.
    source: Option<String>,
    created: String,
    created_unix_ms: u64,
    age_seconds: u64,
    expires: Option<String>,
    expires_unix_ms: Option<u64>,
    expires_in_seconds: Option<u64>,
    last_accessed: Option<String>,
    /// Its directory in the cache (read-only: it belongs to the cache).
    path: String,
}

impl WorkspaceRow {
    pub(crate) fn new(workspace: &CachedWorkspace, now: SystemTime) -> Self {
        let metadata = &workspace.metadata;
        let since = |time: SystemTime| now.duration_since(time).unwrap_or(Duration::ZERO);
        let until = |time: SystemTime| time.duration_since(now).unwrap_or(Duration::ZERO);
        WorkspaceRow {
            repository: metadata.repository.clone(),
            branch: metadata.branch.clone(),
            level: match metadata.level {
                WorkspaceLevel::Repository => "repository",
                WorkspaceLevel::RepositoryBranch => "branch",
            },
            size_bytes: workspace.size_bytes,
            files: metadata.files,
            components: metadata.components.clone(),
            git: match metadata.git {
                GitHandling::Keep => "keep",
                GitHandling::Exclude => "exclude",
            },
            origin: match metadata.origin {
                WorkspaceOrigin::Build => "build",
                WorkspaceOrigin::Injected => "injected",
                WorkspaceOrigin::ImportedDirectory => "imported-directory",
                WorkspaceOrigin::ImportedArchive => "imported-archive",
            },
            source: metadata.source.clone(),
            created: render::timestamp(metadata.created),
            created_unix_ms: render::unix_ms(metadata.created),
            age_seconds: since(metadata.created).as_secs(),
            expires: workspace.expires_at.map(render::timestamp),
            expires_unix_ms: workspace.expires_at.map(render::unix_ms),
            expires_in_seconds: workspace.expires_at.map(|at| until(at).as_secs()),
            last_accessed: workspace.last_accessed.map(render::timestamp),
            path: workspace.path.display().to_string(),
        }
    }
}

/// The workspaces as a table: repository, branch, size, files, age, expiry, origin.
pub(crate) fn table(rows: &[WorkspaceRow]) -> String {
    let mut table = Table::new(&[
        ("REPOSITORY", Align::Left),
        ("BRANCH", Align::Left),
        ("SIZE", Align::Right),
        ("FILES", Align::Right),
        ("AGE", Align::Left),
        ("EXPIRES IN", Align::Left),
        ("ORIGIN", Align::Left),
    ]);
    for row in rows {
        table.row(vec![
            row.repository.clone(),
            row.branch.clone().unwrap_or_else(|| "-".to_owned()),
            render::size(row.size_bytes),
            row.files.to_string(),
            format_duration(Duration::from_secs(row.age_seconds)),
            row.expires_in_seconds.map_or_else(
                || "never".to_owned(),
                |seconds| format_duration(Duration::from_secs(seconds)),
            ),
            row.origin.to_owned(),
        ]);
    }
    table.render()
}

/// Every cached workspace under `root`, as rows; none (and nothing created) without the tag.
pub(crate) fn list_rows(root: &CacheRoot) -> anyhow::Result<Vec<WorkspaceRow>> {
    if !root.has_compilation_tag()? {
        return Ok(Vec::new());
    }
    let workspaces = root
        .compilation()?
        .workspaces
        .list()
        .with_context(|| format!("while listing the workspaces in tag '{COMPILATION_TAG}'"))?;
    let now = SystemTime::now();
    Ok(workspaces
        .iter()
        .map(|workspace| WorkspaceRow::new(workspace, now))
        .collect())
}

#[derive(Serialize)]
struct ListReport {
    root: String,
    workspaces: Vec<WorkspaceRow>,
}

fn list(root: &CacheRoot, output: &Output) -> anyhow::Result<()> {
    let workspaces = list_rows(root)?;
    if output.is_json() {
        return output.json(&ListReport {
            root: root.path().display().to_string(),
            workspaces,
        });
    }
    if workspaces.is_empty() {
        return output.note(&format!(
            "no cached workspaces under {}",
            root.path().display()
        ));
    }
    output.text(&table(&workspaces))
}

/// `repository "R"` or `repository "R" branch "B"`, for messages.
fn describe(repository: &str, branch: Option<&str>) -> String {
    match branch {
        Some(branch) => format!("repository {repository:?} branch {branch:?}"),
        None => format!("repository {repository:?}"),
    }
}

fn workspace_id(repository: &str, branch: Option<&str>) -> anyhow::Result<WorkspaceId> {
    WorkspaceId::new(repository, branch).with_context(|| {
        format!(
            "while reading the workspace name {}",
            describe(repository, branch)
        )
    })
}

/// Checks that `path` is a directory holding a real `zmk/` directory (the rule
/// cache-compilation applies), before anything is opened.
fn check_workspace_directory(path: &Path) -> anyhow::Result<()> {
    let meta = fs::metadata(path)
        .with_context(|| format!("while reading the workspace directory {}", path.display()))?;
    if !meta.is_dir() {
        return Err(UsageError(format!(
            "{} is not a directory; a workspace is a directory holding zmk/",
            path.display()
        ))
        .into());
    }
    match fs::symlink_metadata(path.join("zmk")) {
        Ok(zmk) if zmk.is_dir() => Ok(()),
        Ok(zmk) if zmk.file_type().is_symlink() => Err(UsageError(format!(
            "{} is not a usable zmk workspace: its zmk is a symlink, which the cache copies as a \
             link, never what it points to",
            path.display()
        ))
        .into()),
        _ => Err(UsageError(format!(
            "{} is not a usable zmk workspace: it has no zmk/ directory",
            path.display()
        ))
        .into()),
    }
}

/// What `add` and `import` report.
#[derive(Serialize)]
struct StoredReport {
    root: String,
    workspace: WorkspaceRow,
    /// The keys of other workspaces this store evicted to stay within the size limit.
    evicted: Vec<String>,
}

fn report_stored(
    root: &CacheRoot,
    stored: Option<CachedWorkspace>,
    verb: &str,
    from: &Path,
    output: &Output,
) -> anyhow::Result<()> {
    // The CLI's coordinator reads no kill switch, so the cache is never disabled here.
    let stored = stored.with_context(|| {
        format!(
            "the cache refused the workspace from {}: it is disabled",
            from.display()
        )
    })?;
    let row = WorkspaceRow::new(&stored, SystemTime::now());
    if !stored.evicted.is_empty() {
        output.warn(&format!(
            "storing this workspace evicted {} to stay within the compilation tag's size limit \
             (raise it with --max-size): {}",
            render::count(
                stored.evicted.len() as u64,
                "other workspace",
                "other workspaces"
            ),
            stored.evicted.join(", ")
        ))?;
    }
    if output.is_json() {
        return output.json(&StoredReport {
            root: root.path().display().to_string(),
            workspace: row,
            evicted: stored.evicted,
        });
    }
    let expiry = row.expires_in_seconds.map_or_else(
        || "never expires".to_owned(),
        |seconds| {
            format!(
                "expires in {}",
                format_duration(Duration::from_secs(seconds))
            )
        },
    );
    output.note(&format!(
        "{verb} the workspace of {} from {} ({}, {}, {expiry})",
        describe(&row.repository, row.branch.as_deref()),
        from.display(),
        render::size(row.size_bytes),
        render::count(row.files, "file", "files"),
    ))
}

fn add(root: &CacheRoot, args: &WorkspaceAddArgs, output: &Output) -> anyhow::Result<()> {
    let id = workspace_id(&args.repo, args.branch.as_deref())?;
    check_workspace_directory(&args.path)?;
    let compilation = root.compilation_with(
        CompilationOptions {
            allow_escaping_symlinks: args.allow_escaping_symlinks,
            ..CompilationOptions::default()
        },
        args.max_size,
    )?;
    let mut progress = CopyProgress::new(output);
    let stored = compilation
        .workspaces
        .inject(
            &args.path,
            &id,
            WorkspaceDetails::default(),
            &mut |report| progress.update(report),
        )
        .with_context(|| {
            format!(
                "while caching the workspace {} as {}",
                args.path.display(),
                describe(&args.repo, args.branch.as_deref())
            )
        })?;
    progress.finish();
    report_stored(root, stored, "cached", &args.path, output)
}

fn import(root: &CacheRoot, args: &WorkspaceImportArgs, output: &Output) -> anyhow::Result<()> {
    let id = workspace_id(&args.repo, args.branch.as_deref())?;
    let file = &args.file;
    let meta = fs::metadata(file).with_context(|| format!("while reading {}", file.display()))?;
    if meta.is_dir() {
        check_workspace_directory(file)?;
    } else if ArchiveFormat::from_path(file).is_none() {
        return Err(UsageError(format!(
            "unknown archive format for {}: expected a name ending in .tar.gz, .tgz, .tar or .zip",
            file.display()
        ))
        .into());
    }
    let compilation = root.compilation_with(
        CompilationOptions {
            allow_escaping_symlinks: args.allow_escaping_symlinks,
            ..CompilationOptions::default()
        },
        args.max_size,
    )?;
    let mut progress = CopyProgress::new(output);
    let stored = compilation
        .workspaces
        .import(file, &id, WorkspaceDetails::default(), &mut |report| {
            progress.update(report)
        })
        .with_context(|| {
            format!(
                "while importing {} as the workspace of {}",
                file.display(),
                describe(&args.repo, args.branch.as_deref())
            )
        })?;
    progress.finish();
    report_stored(root, stored, "imported", file, output)
}

#[derive(Serialize)]
struct DeleteReport {
    repository: String,
    branch: Option<String>,
    all: bool,
    deleted: usize,
}

fn delete(root: &CacheRoot, args: &WorkspaceDeleteArgs, output: &Output) -> anyhow::Result<()> {
    let id = workspace_id(&args.repo, args.branch.as_deref())?;
    let what = if args.all {
        format!("{} (any branch)", describe(&args.repo, None))
    } else {
        describe(&args.repo, args.branch.as_deref())
    };
    if !root.has_compilation_tag()? {
        return Err(NotFound(format!(
            "no cached workspace for {what}: no tag '{COMPILATION_TAG}' under {}",
            root.path().display()
        ))
        .into());
    }
    let workspaces = root.compilation()?.workspaces;
    let deleted = if args.all {
        workspaces.delete_repository(&args.repo)
    } else {
        workspaces.delete(&id).map(usize::from)
    }
    .with_context(|| format!("while deleting the workspace of {what}"))?;
    if deleted == 0 {
        let hint = if args.branch.is_none() && !args.all {
            " (branch workspaces are deleted with --branch B or --all)"
        } else {
            ""
        };
        return Err(NotFound(format!("no cached workspace for {what}{hint}")).into());
    }
    if output.is_json() {
        return output.json(&DeleteReport {
            repository: args.repo.clone(),
            branch: args.branch.clone(),
            all: args.all,
            deleted,
        });
    }
    output.note(&format!(
        "deleted {} of {what}",
        render::count(deleted as u64, "workspace", "workspaces")
    ))
}

#[derive(Serialize)]
struct CleanupReport {
    older_than_seconds: u64,
    removed: usize,
}

fn cleanup(root: &CacheRoot, args: &WorkspaceCleanupArgs, output: &Output) -> anyhow::Result<()> {
    let removed = if root.has_compilation_tag()? {
        root.compilation()?
            .workspaces
            .cleanup_stale(args.older_than)
            .context("while removing stale workspaces")?
    } else {
        0
    };
    if output.is_json() {
        return output.json(&CleanupReport {
            older_than_seconds: args.older_than.as_secs(),
            removed,
        });
    }
    output.note(&format!(
        "removed {} stored more than {} ago (or unusable)",
        render::count(removed as u64, "workspace", "workspaces"),
        format_duration(args.older_than)
    ))
}

/// Where to write and in which format: `--format`, else FILE's ending; a FILE without a known
/// ending gets the format's (tar.gz by default), so that import recognises it.
fn export_target(
    output: &Path,
    format: Option<ArchiveFormat>,
) -> Result<(PathBuf, ArchiveFormat), UsageError> {
    if output.file_name().is_none() {
        return Err(UsageError(format!(
            "-o {} does not name a file to write the archive to",
            output.display()
        )));
    }
    match (ArchiveFormat::from_path(output), format) {
        (Some(named), Some(asked)) if named != asked => Err(UsageError(format!(
            "{} is named as a .{} archive but --format {} was given; name it *.{} or leave \
             --format out",
            output.display(),
            named.extension(),
            asked.extension(),
            asked.extension()
        ))),
        (Some(named), _) => Ok((output.to_owned(), named)),
        (None, asked) => {
            let format = asked.unwrap_or(ArchiveFormat::TarGz);
            let mut name = output.as_os_str().to_owned();
            name.push(".");
            name.push(format.extension());
            Ok((PathBuf::from(name), format))
        }
    }
}

#[derive(Serialize)]
struct ExportReport {
    path: String,
    format: &'static str,
    repository: String,
    /// The branch exported: `null` when the repository-level workspace was (asked for, or
    /// found instead of the branch's).
    branch: Option<String>,
    include_git: bool,
    files: u64,
    bytes: u64,
    archive_bytes: u64,
}

fn export(root: &CacheRoot, args: &WorkspaceExportArgs, output: &Output) -> anyhow::Result<()> {
    let id = workspace_id(&args.repo, args.branch.as_deref())?;
    let (path, format) = export_target(&args.output, args.format)?;
    let what = describe(&args.repo, args.branch.as_deref());
    if !root.has_compilation_tag()? {
        return Err(NotFound(format!(
            "no cached workspace for {what}: no tag '{COMPILATION_TAG}' under {}",
            root.path().display()
        ))
        .into());
    }
    let compilation = root.compilation()?;
    let options = ExportOptions {
        format,
        include_git: args.include_git,
    };
    let mut progress = CopyProgress::new(output);
    let report = compilation
        .workspaces
        .export(&id, &path, options, &mut |report| progress.update(report))
        .with_context(|| {
            format!(
                "while exporting the workspace of {what} to {}",
                path.display()
            )
        })?;
    progress.finish();
    let exported = &report.workspace;
    note_repository_fallback(output, args.branch.as_deref(), exported, "exported")?;
    if output.is_json() {
        return output.json(&ExportReport {
            path: report.path.display().to_string(),
            format: format.extension(),
            repository: exported.repository.clone(),
            branch: exported.branch.clone(),
            include_git: args.include_git,
            files: report.files,
            bytes: report.bytes,
            archive_bytes: report.archive_bytes,
        });
    }
    output.note(&format!(
        "exported the workspace of {} to {} ({}, {} of files, {} archive)",
        describe(&exported.repository, exported.branch.as_deref()),
        report.path.display(),
        render::count(report.files, "file", "files"),
        render::size(report.bytes),
        render::size(report.archive_bytes),
    ))
}

/// The name of a link mode, as `--link` takes it.
fn link_mode_name(mode: LinkMode) -> &'static str {
    match mode {
        LinkMode::Auto => "auto",
        LinkMode::Reflink => "reflink",
        LinkMode::Hardlink => "hardlink",
        _ => "copy",
    }
}

#[derive(Serialize)]
struct RestoreReport {
    path: String,
    repository: String,
    /// The branch restored: `null` when the repository-level workspace was.
    branch: Option<String>,
    /// The mode asked for.
    link: &'static str,
    /// How files were placed: the mode asked for, except `copy` for a `hardlink` restore of a
    /// workspace stored before content manifests.
    placed: &'static str,
    files: u64,
    bytes: u64,
}

fn restore(root: &CacheRoot, args: &WorkspaceRestoreArgs, output: &Output) -> anyhow::Result<()> {
    let id = workspace_id(&args.repo, args.branch.as_deref())?;
    let what = describe(&args.repo, args.branch.as_deref());
    if !root.has_compilation_tag()? {
        return Err(NotFound(format!(
            "no cached workspace for {what}: no tag '{COMPILATION_TAG}' under {}",
            root.path().display()
        ))
        .into());
    }
    let compilation = root.compilation()?;
    let mut progress = CopyProgress::new(output);
    let report = compilation
        .workspaces
        .restore(&id, &args.dest, args.link, &mut |report| {
            progress.update(report)
        })
        .with_context(|| {
            format!(
                "while restoring the workspace of {what} into {} (--link {})",
                args.dest.display(),
                link_mode_name(args.link)
            )
        })?;
    progress.finish();
    let restored = &report.workspace;
    note_repository_fallback(output, args.branch.as_deref(), restored, "restored")?;
    if output.is_json() {
        return output.json(&RestoreReport {
            path: report.target.display().to_string(),
            repository: restored.repository.clone(),
            branch: restored.branch.clone(),
            link: link_mode_name(args.link),
            placed: link_mode_name(report.placed),
            files: report.files,
            bytes: report.bytes,
        });
    }
    output.note(&format!(
        "restored the workspace of {} into {} ({}, {}, --link {})",
        describe(&restored.repository, restored.branch.as_deref()),
        report.target.display(),
        render::count(report.files, "file", "files"),
        render::size(report.bytes),
        link_mode_name(report.placed),
    ))
}

/// Says so when `--branch` was asked for but the repository's workspace was `done` instead
/// (the branch has none cached).
fn note_repository_fallback(
    output: &Output,
    branch: Option<&str>,
    got: &WorkspaceMetadata,
    done: &str,
) -> anyhow::Result<()> {
    match branch {
        Some(branch) if got.branch.is_none() => output.note(&format!(
            "branch {branch:?} has no cached workspace; {done} the repository's"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_format_comes_from_the_flag_or_the_name() {
        let target = |name: &str, format| export_target(Path::new(name), format);
        let ok = |name: &str, format| target(name, format).ok();
        assert_eq!(
            ok("a.zip", None),
            Some((PathBuf::from("a.zip"), ArchiveFormat::Zip))
        );
        assert_eq!(
            ok("a.tgz", Some(ArchiveFormat::TarGz)),
            Some((PathBuf::from("a.tgz"), ArchiveFormat::TarGz))
        );
        assert_eq!(
            ok("backup", None),
            Some((PathBuf::from("backup.tar.gz"), ArchiveFormat::TarGz))
        );
        assert_eq!(
            ok("backup", Some(ArchiveFormat::Zip)),
            Some((PathBuf::from("backup.zip"), ArchiveFormat::Zip))
        );
        let clash = target("a.zip", Some(ArchiveFormat::Tar)).unwrap_err();
        assert!(
            clash.0.contains("a.zip") && clash.0.contains("--format tar"),
            "{}",
            clash.0
        );
        assert!(target("/", None).is_err());
    }
}
