//! `cargo xtask soak`: the long variants of the reliability suites in `tests/` (more processes and
//! operations, 60 kills, thousands of property cases), then the figures they printed, gathered.
//!
//! The suites read their sizes from the environment: this task sets `CACHE_SOAK=1` (each suite's
//! soak sizes) and `PROPTEST_CASES` (10 000 unless already set); `CACHE_LOAD_PROCESSES`,
//! `CACHE_LOAD_OPS`, `CACHE_CRASH_KILLS`, `CACHE_CRASH_SEED`, `CACHE_CRASH_BLOB_KILLS`,
//! `CACHE_CRASH_BLOB_ENTRIES` and `CACHE_RESTORE_ROUNDS` set in the caller's environment pass
//! through and win.

use anyhow::Context as _;

use crate::shell::{Shell, Step};

/// The suites, one test binary each in `tests/tests/`.
const SUITES: [&str; 7] = [
    "load", "crash", "blobs", "faults", "security", "model", "decoder",
];

/// Each suite prints one line per figure starting with its name and a colon.
const FIGURE_PREFIXES: [&str; 7] = [
    "load:",
    "crash:",
    "blobs:",
    "faults:",
    "security:",
    "model:",
    "decoder:",
];

const DEFAULT_PROPTEST_CASES: &str = "10000";

/// Runs the suites with the soak sizes and prints their figures at the end.
pub(crate) fn run() -> anyhow::Result<()> {
    let shell = Shell::new().context("while preparing the soak")?;
    let mut arguments = vec!["test", "-p", "cache-tests"];
    for suite in SUITES {
        arguments.extend(["--test", suite]);
    }
    arguments.extend(["--", "--nocapture"]);
    let proptest_cases =
        std::env::var("PROPTEST_CASES").unwrap_or_else(|_| DEFAULT_PROPTEST_CASES.to_owned());
    let step = Step::cargo("soak", &arguments)
        .env("CACHE_SOAK", "1")
        .env("PROPTEST_CASES", proptest_cases);

    let mut figures = Vec::new();
    shell
        .run_watching_stderr(&step, |line| {
            if FIGURE_PREFIXES
                .iter()
                .any(|prefix| line.starts_with(prefix))
            {
                figures.push(line.to_owned());
            }
        })
        .context("soak: a suite failed")?;
    println!("soak: every suite passed; figures:");
    for figure in figures {
        println!("  {figure}");
    }
    Ok(())
}
