//! `cargo xtask`: the project's automation, one module per task, run with `cargo xtask <command>`.
//!
//! The alias in `.cargo/config.toml` turns `cargo xtask ...` into `cargo run --package xtask -- ...`.
//! Arguments are parsed by hand because there are few of them and a parser crate would cost more
//! build time than it saves.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "xtask is a program that reports to the terminal"
)]

mod bench;
mod fuzz;
mod shell;
mod soak;
mod verify;

use std::process::ExitCode;

/// Printed for `help`, `--help`, no arguments, and (on stderr) for an unknown command.
const USAGE: &str = "\
Usage: cargo xtask <command>

Commands:
  verify    run every check CI runs, in order, stopping at the first failure:
            fmt, clippy, test, doc, the coordination example, and a CLI session
            options: --repeat N (run the test step N times, each to the end, then print
            the runs, the failures and the failed tests of each run), --stress (a
            spinning thread on every core while verify runs); without options, what CI runs
  bench     measure ours against raw redb and python-diskcache on the same workloads, print
            one table of medians, ratios and targets, and write it to docs/benchmarks.md
            options: --quick (N = 10 000, 2 repetitions), --n N, --reps R
            (default N = 100 000, 5 repetitions); diskcache is installed into target/bench-venv
  soak      the long variants of the reliability suites (8 processes x 20 000 operations,
            60 SIGKILLs, 30 SIGKILLs of each blob writer, 10 000 property cases), then their
            figures; sizes can be set with CACHE_LOAD_PROCESSES, CACHE_LOAD_OPS,
            CACHE_CRASH_KILLS, CACHE_CRASH_BLOB_KILLS, CACHE_CRASH_BLOB_ENTRIES,
            CACHE_RESTORE_ROUNDS, PROPTEST_CASES
  fuzz      run each cargo-fuzz target in fuzz/ on nightly; options: --seconds N (default 30
            per target); needs the nightly toolchain and cargo-fuzz, and says so if missing
  help      print this message
";

/// Exit code for a command line we do not understand, as distinct from a task that failed.
const EXIT_USAGE: u8 = 2;

/// A task named on the command line.
enum Task {
    /// Print the usage text on stdout.
    Help,
    /// Run every check CI runs with these options; see `verify.rs`.
    Verify(Vec<String>),
    /// Run the comparative benchmark with these options; see `bench.rs`.
    Bench(Vec<String>),
    /// Run the long variants of the reliability suites; see `soak.rs`.
    Soak,
    /// Run the fuzz targets with these options; see `fuzz.rs`.
    Fuzz(Vec<String>),
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|argument| argument.to_string_lossy().into_owned())
        .collect();

    let task = match parse_task(&arguments) {
        Some(task) => task,
        None => {
            eprintln!("xtask: unknown command `{}`\n", arguments.join(" "));
            eprint!("{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };

    let result = match task {
        Task::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Task::Verify(options) => verify::run(&options),
        Task::Bench(options) => bench::run(&options),
        Task::Soak => soak::run(),
        Task::Fuzz(options) => fuzz::run(&options),
    };

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The outermost context on its own line (for example `verify: step 'fmt' failed`),
            // then the causes beneath it, so the first line says what failed at a glance.
            eprintln!("{error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Maps the arguments after `cargo xtask` to a task, or `None` if they name no known task.
fn parse_task(arguments: &[String]) -> Option<Task> {
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    match arguments.as_slice() {
        [] | ["help"] | ["--help"] | ["-h"] => Some(Task::Help),
        ["verify", options @ ..] => Some(Task::Verify(
            options.iter().map(|option| (*option).to_owned()).collect(),
        )),
        ["bench", options @ ..] => Some(Task::Bench(
            options.iter().map(|option| (*option).to_owned()).collect(),
        )),
        ["soak"] => Some(Task::Soak),
        ["fuzz", options @ ..] => Some(Task::Fuzz(
            options.iter().map(|option| (*option).to_owned()).collect(),
        )),
        _ => None,
    }
}
