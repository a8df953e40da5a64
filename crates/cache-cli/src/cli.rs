//! The command line: global options (accepted before or after the subcommand) and one
//! subcommand per operation, each with its help and examples. A new command is one more variant
//! of [`Command`] and one more module in `commands/`.
//!
//! Over 600 lines: it is mostly help text and examples, one block per subcommand; keeping the
//! whole command line in one place is what `cargo xtask man` and the completions read.

use std::path::PathBuf;
use std::time::Duration;

use cache_compilation::{ArchiveFormat, LinkMode, WorkspaceId};
use cache_core::Tag;
use clap::{ArgAction, ArgGroup, Args, Parser, Subcommand};

use crate::duration::{parse_duration, parse_ttl};
use crate::glob::Glob;

const ABOUT: &str = "See and manage what programs cached under a glovebox cache root.";

const LONG_ABOUT: &str = "See and manage what programs cached under a glovebox cache root.

The root is --root, else $GLOVEBOX_CACHE_PATH, else $XDG_CACHE_HOME/glovebox, else the platform \
cache directory + glovebox (~/.cache/glovebox on Linux): the same resolution every program using \
the cache follows. Each tag (a domain: compilation, layout, moergo, ...) is a directory of the \
root holding its own cache.redb. Kill switches (GLOVEBOX_CACHE_GLOBAL, GLOVEBOX_CACHE_<TAG>) are \
for programs; this tool manages the files whatever they say.

Keys are bytes: they are shown as quoted text when printable, as 0x-hex otherwise, and given on \
the command line as UTF-8 text. Patterns are globs matched against the whole key: * any run of \
characters, ? one character, \\ makes the next character literal.

Every wait for another process's lock on a tag's file (a commit in progress, or a process stopped \
while holding it) lasts at most --timeout; then the command fails naming the tag and file.

Exit codes: 0 success, 1 a tag or key not found (or a miss), 2 a usage error, 3 any other error \
(for doctor: damage left), 4 doctor could not check a tag (see its report).

With --json, stdout is exactly one JSON document, also on failure: the command's report, or \
{\"error\": {\"kind\", \"message\", \"exit_code\"}} with kind not_found, usage, config, io, \
not_checked or other.";

const EXAMPLES: &str = "Examples:
  glovebox-cache show
  glovebox-cache set --tag layout greeting hello --ttl 10m
  glovebox-cache get --tag layout greeting
  glovebox-cache keys --tag layout --pattern 'greet*' --metadata
  glovebox-cache cleanup
  glovebox-cache workspace list
  glovebox-cache --root /tmp/other-cache show --json";

#[derive(Debug, Parser)]
#[command(
    name = "glovebox-cache",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes, before or after its name.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Cache root [default: $GLOVEBOX_CACHE_PATH, else $XDG_CACHE_HOME/glovebox, else
    /// ~/.cache/glovebox]
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) root: Option<PathBuf>,

    /// Print results as JSON on stdout
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// Log what happens on stderr: -v debug, -vv trace
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,

    /// Print only results and errors: no notes on stderr, no warnings
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,

    /// Longest wait for another process's lock on a tag's file (90s, 10m; plain numbers are
    /// seconds); past it the command fails naming the tag [default: the config file's, else 30s]
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_timeout)]
    pub(crate) timeout: Option<Duration>,

    /// Configuration file [default: $GLOVEBOX_CACHE_CONFIG, else
    /// $XDG_CONFIG_HOME/glovebox/cache.toml, else ~/.config/glovebox/cache.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,
}

/// A lock timeout: a duration greater than zero.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_duration(text)?;
    if timeout.is_zero() {
        return Err(format!(
            "timeout {text:?} is zero; a lock held for a moment by a commit would fail every command"
        ));
    }
    Ok(timeout)
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Per tag: entries, size, hits, misses, hit rate, evictions, size limit, last cleanup;
    /// then the cached workspaces
    #[command(
        after_help = "Hits, misses and evictions are lifetime counts over every process \
that used the tag. The last cleanup is when cleanup last ran on the tag, in any process. The \
workspaces (repository, branch, size, age, expiry) are read from the compilation tag; reading \
them counts as hits there, as `workspace list` does.

Examples:
  glovebox-cache show
  glovebox-cache show --tag layout
  glovebox-cache show --json"
    )]
    Show(ShowArgs),

    /// Each tag's lifetime counters (hits, misses, sets, ...); --reset zeroes them
    #[command(
        after_help = "The counters are those of every process that used the tag, as `show` \
reports them. With --reset they are printed, then zeroed (like sccache --zero-stats); entries \
are untouched. A process using the tag at that moment adds the counts it has not committed yet \
after the reset.

Examples:
  glovebox-cache stats
  glovebox-cache stats --tag layout --reset --json"
    )]
    Stats(StatsArgs),

    /// List the live keys of a tag
    #[command(after_help = "Examples:
  glovebox-cache keys --tag layout
  glovebox-cache keys --tag layout --pattern 'bookmark:*' --limit 20
  glovebox-cache keys --tag moergo --metadata --values --json")]
    Keys(KeysArgs),

    /// Print the value of a key (its bytes, exactly); exit 1 on a miss
    #[command(
        after_help = "Reading counts as a hit or a miss in the tag's statistics, as any read \
does.

Examples:
  glovebox-cache get --tag layout greeting
  glovebox-cache get --tag moergo firmware:v25 > firmware.uf2"
    )]
    Get(GetArgs),

    /// Store a value under a key
    #[command(
        override_usage = "glovebox-cache set [OPTIONS] --tag <TAG> <KEY> <VALUE | --file <FILE>>",
        after_help = "Examples:
  glovebox-cache set --tag layout greeting hello
  glovebox-cache set --tag layout greeting hello --ttl 10m
  glovebox-cache set --tag moergo firmware:v25 --file firmware.uf2 --ttl 30d
  echo hi | glovebox-cache set --tag layout greeting --file -"
    )]
    Set(SetArgs),

    /// Delete keys of a tag: named, matching a pattern, or listed in a JSON file
    #[command(
        after_help = "Exit code 1 when a key named by --keys or --json-file was not there \
(the others are still deleted).

The JSON file is an array of keys (strings), or the output of `keys --json`, whose key_hex fields \
also reach keys that are not UTF-8.

Examples:
  glovebox-cache delete --tag layout --keys greeting,farewell
  glovebox-cache delete --tag layout --pattern 'tmp:*' --dry-run
  glovebox-cache keys --tag layout --pattern 'old:*' --json > old.json
  glovebox-cache delete --tag layout --json-file old.json
  glovebox-cache keys --tag layout --pattern 'old:*' --json | glovebox-cache delete --tag layout --json-file -"
    )]
    Delete(DeleteArgs),

    /// Remove entries: all of them, only the expired ones, or those older than a duration
    #[command(
        after_help = "On a terminal, clear asks before it removes anything; without a \
terminal it needs --yes and otherwise refuses.

Examples:
  glovebox-cache clear --tag layout
  glovebox-cache clear --expired --yes
  glovebox-cache clear --tag compilation --older-than 7d --yes"
    )]
    Clear(ClearArgs),

    /// Run cleanup on every tag: remove expired and unreadable entries, evict down to the limit
    #[command(after_help = "Examples:
  glovebox-cache cleanup
  glovebox-cache cleanup --json")]
    Cleanup,

    /// Show the effective configuration and where each value came from
    #[command(
        after_help = "One line per setting: its origin (default, file:PATH, env:VARIABLE or \
command line:OPTION), then key=value as the configuration file writes it. The file is --config, \
else $GLOVEBOX_CACHE_CONFIG, else $XDG_CONFIG_HOME/glovebox/cache.toml, else \
~/.config/glovebox/cache.toml; environment variables beat the file, and --root and --timeout \
beat both. See docs/configuration.md for the format.

Examples:
  glovebox-cache config
  glovebox-cache --config ./cache.toml config --json"
    )]
    Config,

    /// Session metrics recorded by programs (the metrics tag): list, show, dump, clean
    #[command(
        subcommand_required = true,
        after_help = "A session is one run of a program that records metrics (command, start, \
end, exit status, counters, timings, cache activity); sessions live 7 days (the metrics_sessions \
TTL). Reading commands never create the metrics tag.

Examples:
  glovebox-cache metrics list --limit 10
  glovebox-cache metrics show 3f2a
  glovebox-cache metrics dump -o metrics.json
  glovebox-cache metrics clean --older-than 3d --dry-run"
    )]
    Metrics(MetricsArgs),

    /// Print a shell completion script (bash, zsh, fish, powershell, elvish) on stdout
    #[command(after_help = "Examples:
  glovebox-cache completions bash > ~/.local/share/bash-completion/completions/glovebox-cache
  glovebox-cache completions zsh > ~/.zfunc/_glovebox-cache
  glovebox-cache completions fish > ~/.config/fish/completions/glovebox-cache.fish")]
    Completions(CompletionsArgs),

    /// Check every tag's files (file types, permissions, database integrity, blobs, directories,
    /// temp files)
    #[command(
        after_help = "Checks per tag: files (types), permissions, integrity (redb's check of \
every page), blobs (each entry's blob file present and matching its hash; no blob file without \
an entry), directories (each entry's directory present; none without an entry), temp files \
(none left by processes that are gone).

Without --repair nothing is written: the database check runs on a copy next to the file, and \
the entries are read through a read-only handle. With --repair, permissions are tightened, redb \
repairs what it can, a file beyond repair is moved aside to cache.redb.corrupt-<ms> (the tag \
starts empty), and the tag's cleanup removes entries without their files, files without an \
entry and stale temp files (it also removes expired entries; it never evicts): stop programs \
using the cache first. Exit code 0 when healthy or repaired, 3 when damage is left.

Examples:
  glovebox-cache doctor
  glovebox-cache doctor --repair --json"
    )]
    Doctor(DoctorArgs),

    /// Manage cached ZMK west workspaces (the compilation tag): list, add, delete, cleanup,
    /// export, import
    #[command(
        subcommand_required = true,
        after_help = "A workspace is cached per repository (30 days) and per repository + branch \
(1 day); the TTLs are those of every program (GLOVEBOX_CACHE_TTL_WORKSPACE_BASE and \
_WORKSPACE_BRANCH override them). Only zmk/, zephyr/, modules/ and .west/ are kept.

Examples:
  glovebox-cache workspace list
  glovebox-cache workspace add ~/zmk-workspace --repo zmkfirmware/zmk --branch main
  glovebox-cache workspace export zmkfirmware/zmk --branch main -o zmk-main.tar.gz
  glovebox-cache workspace import zmk-main.tar.gz --repo zmkfirmware/zmk --branch main
  glovebox-cache workspace restore zmkfirmware/zmk --branch main ./zmk-workspace
  glovebox-cache workspace delete zmkfirmware/zmk --all
  glovebox-cache workspace cleanup --older-than 3d"
    )]
    Workspace(WorkspaceArgs),

    /// The remote tier shared by a fleet (Redis/Valkey): its state, and signing keys
    #[command(
        after_help = "The remote is configured by GLOVEBOX_CACHE_REMOTE (redis://host:port/db \
or redis+unix:///path), GLOVEBOX_CACHE_REMOTE_MODE (rw, ro, off) and the variables in \
docs/remote.md.

Examples:
  glovebox-cache remote status
  glovebox-cache remote keygen ci-2026 -o ci-2026.key"
    )]
    Remote(RemoteArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RemoteArgs {
    #[command(subcommand)]
    pub(crate) command: RemoteCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RemoteCommand {
    /// The endpoint (without credentials), mode, breaker state, and whether the server answers
    Status,
    /// Write a new Ed25519 secret key to FILE (0600) and print its public line for the readers'
    /// trusted keys file
    Keygen {
        /// The key's name (letters, digits, `-`, `_`, `.`): readers see it in the entry
        name: String,
        /// Where to write the secret key; it must not exist
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// Only this tag (exit 1 if it does not exist) [default: every tag, and the workspaces]
    #[arg(long, value_parser = parse_tag)]
    pub(crate) tag: Option<Tag>,
}

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Only this tag (exit 1 if it does not exist) [default: every tag]
    #[arg(long, value_parser = parse_tag)]
    pub(crate) tag: Option<Tag>,

    /// Zero the counters after printing them
    #[arg(long)]
    pub(crate) reset: bool,
}

#[derive(Debug, Args)]
pub(crate) struct MetricsArgs {
    #[command(subcommand)]
    pub(crate) command: MetricsCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum MetricsCommand {
    /// List the recorded sessions, newest first
    #[command(after_help = "Examples:
  glovebox-cache metrics list
  glovebox-cache metrics list --limit 5 --json")]
    List(MetricsListArgs),

    /// Show one session: by its id or a prefix of it that names only one session
    #[command(
        after_help = "A prefix that matches several sessions is an error listing them (exit \
2); one that matches none exits 1.

Examples:
  glovebox-cache metrics show 3f2a9c1e
  glovebox-cache metrics show 3f2a9c1e-0d1b-4c2e-9f00-1234567890ab --json"
    )]
    Show(MetricsShowArgs),

    /// Write every session as one JSON array, to stdout or a file
    #[command(after_help = "Examples:
  glovebox-cache metrics dump > metrics.json
  glovebox-cache metrics dump -o metrics.json")]
    Dump(MetricsDumpArgs),

    /// Remove the sessions that started more than a duration ago
    #[command(after_help = "Examples:
  glovebox-cache metrics clean --older-than 3d --dry-run
  glovebox-cache metrics clean --older-than 12h --json")]
    Clean(MetricsCleanArgs),
}

#[derive(Debug, Args)]
pub(crate) struct MetricsListArgs {
    /// Show at most N sessions (the newest)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) limit: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct MetricsShowArgs {
    /// The session id, or a prefix of it
    #[arg(value_name = "ID")]
    pub(crate) id: String,
}

#[derive(Debug, Args)]
pub(crate) struct MetricsDumpArgs {
    /// Write to FILE instead of stdout (replaced if it exists)
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct MetricsCleanArgs {
    /// Remove sessions that started more than DURATION ago: 90s, 10m, 12h, 7d
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) older_than: Duration,

    /// Show what would be removed; remove nothing
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to write the script for
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub(crate) struct WorkspaceArgs {
    #[command(subcommand)]
    pub(crate) command: WorkspaceCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum WorkspaceCommand {
    /// List the cached workspaces: repository, branch, size, files, age, expiry, origin
    #[command(
        after_help = "Listing reads each workspace's metadata, which counts as a hit in the \
compilation tag's statistics. Unusable workspaces met on the way (no zmk/, unreadable metadata) \
are removed.

Examples:
  glovebox-cache workspace list
  glovebox-cache workspace list --json"
    )]
    List,

    /// Cache an existing west workspace directory (it must hold a zmk/ directory)
    #[command(
        after_help = "Copies zmk/, zephyr/, modules/ and .west/ (with their .git directories) \
into the cache, replacing what was cached for the same repository and branch. Without --branch \
the workspace is cached for the repository (30 days), with it for that branch (1 day).

Examples:
  glovebox-cache workspace add ~/zmk-workspace --repo zmkfirmware/zmk
  glovebox-cache workspace add ./build/ws --repo moergo-sc/zmk --branch v25.08"
    )]
    Add(WorkspaceAddArgs),

    /// Delete a cached workspace: the repository's, one branch's, or all of them (--all)
    #[command(
        after_help = "Without --branch, the repository-level workspace is deleted (its branches \
stay); --branch B deletes that branch's; --all deletes the repository's and every branch's. Exit \
code 1 when nothing was cached.

Examples:
  glovebox-cache workspace delete zmkfirmware/zmk
  glovebox-cache workspace delete zmkfirmware/zmk --branch main
  glovebox-cache workspace delete zmkfirmware/zmk --all"
    )]
    Delete(WorkspaceDeleteArgs),

    /// Remove workspaces stored more than a duration ago (default 7d), and unusable ones
    #[command(after_help = "Examples:
  glovebox-cache workspace cleanup
  glovebox-cache workspace cleanup --older-than 12h --json")]
    Cleanup(WorkspaceCleanupArgs),

    /// Write a cached workspace to an archive (tar.gz, tar or zip)
    #[command(
        after_help = "With --branch, the branch's workspace is exported if cached, else the \
repository's (as a build would find it). The format is --format, else the FILE's ending \
(.tar.gz, .tgz, .tar, .zip); a FILE without one gets the format's ending added (tar.gz by \
default), so that import recognises it. An existing FILE is replaced. .git directories are left \
out unless --include-git. Exit code 1 when nothing is cached.

Examples:
  glovebox-cache workspace export zmkfirmware/zmk -o zmk.tar.gz
  glovebox-cache workspace export zmkfirmware/zmk --branch main -o zmk-main --format zip
  glovebox-cache workspace export zmkfirmware/zmk -o zmk-full.tar.gz --include-git"
    )]
    Export(WorkspaceExportArgs),

    /// Cache a workspace from an archive (tar.gz, tgz, tar, zip) or a directory
    #[command(
        after_help = "An archive is checked whole before anything is stored: an entry that \
could land outside the workspace (absolute, .., a symlink pointing out, a hard link) refuses \
it. The archive may hold the workspace at its top or inside one top-level folder.

Examples:
  glovebox-cache workspace import zmk-main.tar.gz --repo zmkfirmware/zmk --branch main
  glovebox-cache workspace import ./ws --repo zmkfirmware/zmk"
    )]
    Import(WorkspaceImportArgs),

    /// Copy a cached workspace out into a directory (created if missing)
    #[command(
        after_help = "With --branch, the branch's workspace is restored if cached, else the \
repository's (as a build would find it). DEST must not already hold zmk/, zephyr/, modules/ or \
.west/: a workspace is never merged into another. Modes, modification times and hard links are \
kept. Exit code 1 when nothing is cached.

--link says how files are put in place:
  auto      a copy-on-write clone (reflink) where the filesystem has them (btrfs, XFS), else a
            full copy [default]
  reflink   a copy-on-write clone, or an error saying the filesystem cannot make one
  hardlink  hard links to the cache's own files: near-instant and no extra space, but the files
            ARE the cache's. Needs DEST on the cache's filesystem. A file edited in place
            (appending, or an editor that writes into the file) changes the cached copy: the
            cache finds it by its hash the next time the workspace is read and drops the entry,
            never serving it. A chmod of a linked file is not detected. Git, and editors that
            write a new file and rename it, replace the link and leave the cache alone.
  copy      a full copy

Examples:
  glovebox-cache workspace restore zmkfirmware/zmk ./ws
  glovebox-cache workspace restore zmkfirmware/zmk --branch main ./ws --link hardlink --json"
    )]
    Restore(WorkspaceRestoreArgs),
}

#[derive(Debug, Args)]
pub(crate) struct WorkspaceAddArgs {
    /// The workspace directory (holding zmk/, and usually zephyr/, modules/, .west/)
    #[arg(value_name = "PATH")]
    pub(crate) path: PathBuf,

    /// The repository it was set up from (zmkfirmware/zmk)
    #[arg(long, value_name = "R", value_parser = parse_repository)]
    pub(crate) repo: String,

    /// Cache it for this branch (1 day) instead of the repository (30 days)
    #[arg(long, value_name = "B", value_parser = parse_branch)]
    pub(crate) branch: Option<String>,

    /// Accept symlinks that point outside the workspace (absolute, or .. above its top),
    /// refused by default
    #[arg(long)]
    pub(crate) allow_escaping_symlinks: bool,

    /// The compilation tag's size limit for this run: 16GiB, 500MiB, 2G, or bytes
    /// [default: 16GiB]. Other workspaces are evicted to stay under it (the command says which)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) max_size: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct WorkspaceRestoreArgs {
    /// The repository (zmkfirmware/zmk)
    #[arg(value_name = "REPO", value_parser = parse_repository)]
    pub(crate) repo: String,

    /// Restore this branch's workspace (the repository's if the branch is not cached)
    #[arg(long, value_name = "B", value_parser = parse_branch)]
    pub(crate) branch: Option<String>,

    /// The directory to restore into (created if missing)
    #[arg(value_name = "DEST")]
    pub(crate) dest: PathBuf,

    /// How files are put in place: auto, reflink, hardlink or copy
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = parse_link_mode)]
    pub(crate) link: LinkMode,
}

#[derive(Debug, Args)]
pub(crate) struct WorkspaceDeleteArgs {
    /// The repository (zmkfirmware/zmk)
    #[arg(value_name = "REPO", value_parser = parse_repository)]
    pub(crate) repo: String,

    /// Delete only this branch's workspace
    #[arg(long, value_name = "B", conflicts_with = "all", value_parser = parse_branch)]
    pub(crate) branch: Option<String>,

    /// Delete the repository's workspace and every branch's
    #[arg(long)]
    pub(crate) all: bool,
}

#[derive(Debug, Args)]
pub(crate) struct WorkspaceCleanupArgs {
    /// Remove workspaces stored more than DURATION ago: 90s, 10m, 12h, 7d
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    pub(crate) older_than: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct WorkspaceExportArgs {
    /// The repository (zmkfirmware/zmk)
    #[arg(value_name = "REPO", value_parser = parse_repository)]
    pub(crate) repo: String,

    /// Export this branch's workspace (the repository's if the branch is not cached)
    #[arg(long, value_name = "B", value_parser = parse_branch)]
    pub(crate) branch: Option<String>,

    /// The archive to write
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: PathBuf,

    /// Archive format: tar.gz, tar or zip [default: FILE's ending, else tar.gz]
    #[arg(long, value_name = "FORMAT", value_parser = parse_archive_format)]
    pub(crate) format: Option<ArchiveFormat>,

    /// Include .git directories (when the cached workspace has them)
    #[arg(long)]
    pub(crate) include_git: bool,
}

#[derive(Debug, Args)]
pub(crate) struct WorkspaceImportArgs {
    /// The archive (.tar.gz, .tgz, .tar, .zip) or directory to import
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,

    /// The repository the workspace belongs to (zmkfirmware/zmk)
    #[arg(long, value_name = "R", value_parser = parse_repository)]
    pub(crate) repo: String,

    /// Cache it for this branch (1 day) instead of the repository (30 days)
    #[arg(long, value_name = "B", value_parser = parse_branch)]
    pub(crate) branch: Option<String>,

    /// Accept symlinks that point outside the workspace (absolute, or .. above its top),
    /// refused by default
    #[arg(long)]
    pub(crate) allow_escaping_symlinks: bool,

    /// The compilation tag's size limit for this run: 16GiB, 500MiB, 2G, or bytes
    /// [default: 16GiB]. Other workspaces are evicted to stay under it (the command says which)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) max_size: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct KeysArgs {
    /// The tag to list
    #[arg(long, value_parser = parse_tag)]
    pub(crate) tag: Tag,

    /// Only keys matching this glob (* any run, ? one character, \ escapes)
    #[arg(long, value_parser = Glob::parse)]
    pub(crate) pattern: Option<Glob>,

    /// Show at most N keys (in key order)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) limit: Option<u64>,

    /// Also show each entry's size, creation, expiry and reads
    #[arg(long)]
    pub(crate) metadata: bool,

    /// Also show each value (reading it counts as a hit)
    #[arg(long)]
    pub(crate) values: bool,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The tag to read from
    #[arg(long, value_parser = parse_tag)]
    pub(crate) tag: Tag,

    /// The key, as UTF-8 text
    #[arg(value_parser = parse_key)]
    pub(crate) key: String,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["value", "file"])))]
pub(crate) struct SetArgs {
    /// The tag to write to (created if it does not exist)
    #[arg(long, value_parser = parse_tag)]
    pub(crate) tag: Tag,

    /// The key, as UTF-8 text
    #[arg(value_parser = parse_key)]
    pub(crate) key: String,

    /// The value, as UTF-8 text
    pub(crate) value: Option<String>,

    /// Read the value's bytes from FILE (`-` for stdin)
    #[arg(long, value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,

    /// Expire after this long: 90s, 10m, 12h, 7d, or plain seconds [default: never]
    // allow_hyphen_values: `--ttl -1` reaches parse_ttl, which says why it is refused, instead
    // of clap's "unexpected argument '-1'".
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl, allow_hyphen_values = true)]
    pub(crate) ttl: Option<Duration>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("selection").required(true).args(["keys", "pattern", "json_file"])))]
pub(crate) struct DeleteArgs {
    /// The tag to delete from
    #[arg(long, value_parser = parse_tag)]
    pub(crate) tag: Tag,

    /// Comma-separated keys (repeatable)
    #[arg(long, value_name = "K1,K2", value_delimiter = ',', value_parser = parse_key)]
    pub(crate) keys: Vec<String>,

    /// Every key matching this glob (* any run, ? one character, \ escapes)
    #[arg(long, value_parser = Glob::parse)]
    pub(crate) pattern: Option<Glob>,

    /// Keys listed in a JSON file (`-` for stdin): an array of strings, or the output of
    /// `keys --json`
    #[arg(long, value_name = "FILE")]
    pub(crate) json_file: Option<PathBuf>,

    /// Show what would be deleted; delete nothing
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ClearArgs {
    /// Only this tag [default: every tag]
    #[arg(long, value_parser = parse_tag)]
    pub(crate) tag: Option<Tag>,

    /// Remove only expired (and unreadable) entries
    #[arg(long, conflicts_with = "older_than")]
    pub(crate) expired: bool,

    /// Remove only entries stored more than DURATION ago: 90s, 10m, 12h, 7d
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) older_than: Option<Duration>,

    /// Do not ask; required when stdin is not a terminal
    #[arg(short, long)]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Fix what can be fixed; move a database beyond repair aside
    #[arg(long)]
    pub(crate) repair: bool,
}

fn parse_tag(text: &str) -> Result<Tag, String> {
    Tag::new(text).map_err(|err| err.to_string())
}

/// A repository name cache-compilation accepts: not empty, no control characters, at most 1 KiB.
fn parse_repository(text: &str) -> Result<String, String> {
    WorkspaceId::repository(text)
        .map(|_| text.to_owned())
        .map_err(|err| err.to_string())
}

/// A branch name, checked as [`parse_repository`].
fn parse_branch(text: &str) -> Result<String, String> {
    WorkspaceId::branch("repository", text)
        .map(|_| text.to_owned())
        .map_err(|err| err.to_string())
}

/// A size: a number of bytes, or a number with a unit K, M, G, T (also KiB, KB, ...; all
/// powers of 1024), in any case, with or without a space.
fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let shift = match unit.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "unknown size unit in {text:?}: use B, KiB, MiB, GiB or TiB"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 16GiB, 500MiB or 1073741824"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(format!("size {text:?} is out of range (at least one byte)"));
    }
    Ok(bytes as u64)
}

fn parse_link_mode(text: &str) -> Result<LinkMode, String> {
    match text.to_ascii_lowercase().as_str() {
        "auto" => Ok(LinkMode::Auto),
        "reflink" => Ok(LinkMode::Reflink),
        "hardlink" => Ok(LinkMode::Hardlink),
        "copy" => Ok(LinkMode::Copy),
        _ => Err(format!(
            "unknown link mode {text:?}: use auto, reflink, hardlink or copy"
        )),
    }
}

fn parse_archive_format(text: &str) -> Result<ArchiveFormat, String> {
    match text.to_ascii_lowercase().as_str() {
        "tar.gz" | "tgz" => Ok(ArchiveFormat::TarGz),
        "tar" => Ok(ArchiveFormat::Tar),
        "zip" => Ok(ArchiveFormat::Zip),
        _ => Err(format!(
            "unknown archive format {text:?}: use tar.gz, tar or zip"
        )),
    }
}

fn parse_key(text: &str) -> Result<String, String> {
    if text.is_empty() {
        Err("a key cannot be empty".to_owned())
    } else {
        Ok(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
