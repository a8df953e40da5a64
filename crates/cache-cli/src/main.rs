//! `glovebox-cache`: see and manage what a program cached under a cache root.
//!
//! # Overview
//!
//! - [`cli`] declares the command line (clap derive): the global options and one subcommand per
//!   operation, each with its help and examples.
//! - [`root`] resolves the cache root, discovers its tags (subdirectories holding a `cache.redb`)
//!   and opens them through one `cache_core::Coordinator`, never creating a tag on a read.
//! - [`commands`] has one module per subcommand; [`commands::run`] dispatches and, at the end,
//!   closes every instance so that writes are durable before the process exits.
//! - [`exit`] maps a failure to the exit code (0 success, 1 not found or miss, 2 usage error,
//!   3 anything else) and prints it as one line on stderr.
//! - [`output`] writes results (text or `--json`) to stdout and notes to stderr; [`render`],
//!   [`glob`] and [`duration`] format and parse keys, sizes, times, patterns and durations;
//!   [`progress`] draws a bar for long workspace copies when stderr is a terminal.

mod cli;
mod commands;
mod duration;
mod exit;
mod glob;
mod output;
mod progress;
mod render;
mod root;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, GlobalArgs};
use crate::output::Output;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2 (0 for --help and --version).
    let cli = Cli::parse();
    init_logging(&cli.global);
    let output = Output::new(cli.global.json, cli.global.quiet);
    match commands::run(&cli, &output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => exit::report(&err),
    }
}

/// Logs go to stderr: warnings by default, errors only with `--quiet`, debug with `-v`, trace
/// with `-vv`. Without either flag, `RUST_LOG` may choose.
fn init_logging(global: &GlobalArgs) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => Some("error"),
        (false, 0) => None,
        (false, 1) => Some("debug"),
        (false, _) => Some("trace"),
    };
    let filter = match level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
    };
    let stderr = std::io::stderr();
    // Fails only if a subscriber is already set, which nothing else in this program does.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(stderr.is_terminal())
        .with_target(false)
        .try_init();
}
