//! The command line of `cargo xtask`: one subcommand per task, each with its options and help
//! (`cargo xtask <task> --help`). Parsed with clap's derive API, as `glovebox-cache` is, so a
//! usage error exits with 2 and says what was wrong.

use clap::{Args, Parser, Subcommand};

/// `bench workspace`'s default file count and mean file size: about 300 MB, the size of a real
/// ZMK west workspace (issue 19: 358 MB, 5 456 files).
pub(crate) const WORKSPACE_BENCH_FILES: u64 = 5_000;
pub(crate) const WORKSPACE_BENCH_MEAN_KIB: u64 = 60;

/// The smallest `--n` of `bench`: four writer processes share the entries.
pub(crate) const MIN_BENCH_N: u64 = 4;

/// The project's automation: the checks CI runs, the benchmark, the soak and fuzz runs.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    after_help = "Run `cargo xtask <command> --help` for a command's options."
)]
pub(crate) struct Cli {
    /// The task; without one, this help is printed.
    #[command(subcommand)]
    pub(crate) task: Option<Task>,
}

/// A task named on the command line.
#[derive(Debug, Subcommand)]
pub(crate) enum Task {
    /// Run every check CI runs, stopping at the first failure
    ///
    /// In order: fmt, clippy, test, doc, the coordination example, and a CLI session, each on
    /// its own root under target/. Without options, exactly what CI runs.
    Verify(VerifyArgs),
    /// Measure ours against raw redb and python-diskcache; write docs/benchmarks.md
    ///
    /// The same workloads for each, then one table of medians, ratios and the design's targets,
    /// printed and written to docs/benchmarks.md. diskcache is installed into target/bench-venv.
    Bench(BenchArgs),
    /// Run the long variants of the reliability suites, then print their figures
    ///
    /// 8 processes x 20 000 operations, 60 SIGKILLs, 30 SIGKILLs of each blob writer, 10 000
    /// property cases.
    #[command(
        after_help = "Sizes can be set with CACHE_LOAD_PROCESSES, CACHE_LOAD_OPS, \
                      CACHE_CRASH_KILLS, CACHE_CRASH_BLOB_KILLS, CACHE_CRASH_BLOB_ENTRIES, \
                      CACHE_RESTORE_ROUNDS, PROPTEST_CASES."
    )]
    Soak,
    /// Run each cargo-fuzz target in fuzz/ on nightly
    ///
    /// Needs the nightly toolchain and cargo-fuzz; says which is missing (and fails, fuzzing
    /// nothing) if one is.
    Fuzz(FuzzArgs),
    /// Write glovebox-cache's man pages (one per command) from its clap definition
    ///
    /// glovebox-cache.1, glovebox-cache-keys.1, glovebox-cache-workspace-list.1, ... into
    /// --out (default target/man).
    Man(ManArgs),
}

/// What the command line asked of `man`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Args)]
pub(crate) struct ManArgs {
    /// The directory to write the pages to (created if needed) [default: target/man]
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<std::path::PathBuf>,
}

/// What the command line asked of `verify`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Args)]
pub(crate) struct VerifyArgs {
    /// Run the test step N times (each to the end), then print the runs, the failures and the
    /// failed tests of each run. Without it the test step runs once, as CI does.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) repeat: Option<u32>,
    /// Keep a spinning thread on every core while verify runs.
    #[arg(long)]
    pub(crate) stress: bool,
}

/// What the command line asked of `bench`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Args)]
pub(crate) struct BenchArgs {
    /// A quick run: N = 10 000 and 2 repetitions, unless --n or --reps say otherwise.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Entries of the small-value workloads (default 100 000; at least 4).
    #[arg(long = "n", value_name = "N", value_parser = clap::value_parser!(u64).range(MIN_BENCH_N..))]
    pub(crate) n: Option<u64>,
    /// Repetitions of every workload (default 5).
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) reps: Option<u64>,
    /// redb's page cache of ours and raw redb, in MiB (default: the cache's default), to choose
    /// that default by measurement.
    #[arg(long = "page-cache-mib", value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) page_cache_mib: Option<u64>,
    /// Another benchmark than the per-operation one.
    #[command(subcommand)]
    pub(crate) what: Option<BenchTarget>,
}

/// The benchmarks `bench` runs besides the per-operation one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Subcommand)]
pub(crate) enum BenchTarget {
    /// Workspace restore in each link mode against `cp -a`, and add and dedup figures
    ///
    /// Generates a workspace-like tree (and a variant with one file in fifty changed) under
    /// target/bench-workspace, adds both with glovebox-cache (repository, then branch), then times
    /// whole processes: each `workspace restore --link MODE` and `cp -a`. Prints the figures.
    Workspace(WorkspaceBenchArgs),
}

/// What the command line asked of `bench workspace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Args)]
pub(crate) struct WorkspaceBenchArgs {
    /// Files of the generated workspace.
    #[arg(long, value_name = "N", default_value_t = WORKSPACE_BENCH_FILES, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) files: u64,
    /// Mean file size in KiB (sizes vary from half to one and a half times it).
    #[arg(long = "mean-kib", value_name = "KIB", default_value_t = WORKSPACE_BENCH_MEAN_KIB, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) mean_kib: u64,
    /// Repetitions of each timed restore (the median is reported).
    #[arg(long, value_name = "R", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) reps: u64,
    /// Build and time the release binaries (the default is the dev profile).
    #[arg(long)]
    pub(crate) release: bool,
}

/// What the command line asked of `fuzz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Args)]
pub(crate) struct FuzzArgs {
    /// Seconds to run each target.
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub(crate) seconds: u64,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    use super::*;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("xtask").chain(line.split_whitespace()))
    }

    fn verify(line: &str) -> VerifyArgs {
        match parse(line).unwrap().task {
            Some(Task::Verify(args)) => args,
            other => panic!("{line}: not verify: {other:?}"),
        }
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_options_is_what_ci_runs() {
        assert_eq!(verify("verify"), VerifyArgs::default());
    }

    #[test]
    fn repeat_and_stress_parse_in_any_order() {
        let expected = VerifyArgs {
            repeat: Some(20),
            stress: true,
        };
        assert_eq!(verify("verify --repeat 20 --stress"), expected);
        assert_eq!(verify("verify --stress --repeat 20"), expected);
        assert!(verify("verify --stress").stress);
    }

    #[test]
    fn bad_options_are_usage_errors_naming_the_problem() {
        for (line, expected) in [
            ("verify --repeat", "a value is required for '--repeat <N>'"),
            ("verify --repeat x", "invalid digit"),
            ("verify --repeat 0", "0 is not in 1.."),
            ("verify --fast", "unexpected argument '--fast'"),
            ("bench --n 3", "3 is not in 4.."),
            ("bench --reps 0", "0 is not in 1.."),
            ("fuzz --seconds soon", "invalid digit"),
            ("soak --long", "unexpected argument '--long'"),
            ("deploy", "unrecognized subcommand 'deploy'"),
        ] {
            let error = parse(line).unwrap_err();
            assert_ne!(error.kind(), ErrorKind::DisplayHelp, "{line}");
            assert_eq!(error.exit_code(), 2, "{line}");
            let message = error.to_string();
            assert!(message.contains(expected), "{line}: {message}");
        }
    }

    #[test]
    fn bench_and_fuzz_options() {
        match parse("bench --quick --n 1000 --reps 3 --page-cache-mib 64")
            .unwrap()
            .task
        {
            Some(Task::Bench(args)) => assert_eq!(
                args,
                BenchArgs {
                    quick: true,
                    n: Some(1000),
                    reps: Some(3),
                    page_cache_mib: Some(64),
                    what: None,
                }
            ),
            other => panic!("not bench: {other:?}"),
        }
        match parse("bench workspace --files 200 --mean-kib 4 --reps 1")
            .unwrap()
            .task
        {
            Some(Task::Bench(args)) => assert_eq!(
                args.what,
                Some(BenchTarget::Workspace(WorkspaceBenchArgs {
                    files: 200,
                    mean_kib: 4,
                    reps: 1,
                    release: false,
                }))
            ),
            other => panic!("not bench: {other:?}"),
        }
        match parse("fuzz").unwrap().task {
            Some(Task::Fuzz(args)) => assert_eq!(args.seconds, 30),
            other => panic!("not fuzz: {other:?}"),
        }
        assert!(parse("").unwrap().task.is_none());
    }

    #[test]
    fn every_task_has_help() {
        for task in ["verify", "bench", "soak", "fuzz"] {
            let error = parse(&format!("{task} --help")).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::DisplayHelp, "{task}");
            assert_eq!(error.exit_code(), 0, "{task}");
        }
    }
}
