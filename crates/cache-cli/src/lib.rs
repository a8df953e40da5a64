//! `glovebox-cache`: see and manage what a program cached under a cache root.
//!
//! The program lives in this library so that `xtask` can generate man pages from its clap
//! definition ([`command`]); `src/main.rs` only calls [`main`]. Nothing else here is public.
//!
//! # Overview
//!
//! - `cli` declares the command line (clap derive): the global options and one subcommand per
//!   operation, each with its help and examples.
//! - `root` loads the configuration (file, environment, `--root`/`--timeout`), resolves the
//!   cache root, discovers its tags (subdirectories holding a `cache.redb`)
//!   and opens them through one `cache_core::Coordinator`, never creating a tag on a read.
//! - `commands` has one module per subcommand; `commands::run` dispatches and, at the end,
//!   closes every instance so that writes are durable before the process exits.
//! - `exit` maps a failure to the exit code (0 success, 1 not found or miss, 2 usage error,
//!   3 anything else) and prints it as one line on stderr (with `--json`, also as the one JSON
//!   document on stdout).
//! - `output` writes results (text or `--json`) to stdout and notes to stderr; `render`,
//!   `glob` and `duration` format and parse keys, sizes, times, patterns and durations;
//!   `progress` draws a bar for long workspace copies when stderr is a terminal.

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

use clap::{CommandFactory as _, Parser as _};

use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, GlobalArgs};
use crate::output::Output;

/// The whole command line definition (clap), for generating man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs `glovebox-cache` with the process's arguments; the exit code to return.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    init_logging(&cli.global);
    let output = Output::new(cli.global.json, cli.global.quiet);
    match commands::run(&cli, &output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => exit::report(&err, &output),
    }
}

/// A command line clap refused (exit 2), or `--help` / `--version` (exit 0). clap prints it as
/// usual; with `--json` among the arguments, a refusal is also written on stdout as the JSON
/// error document every failure gets.
fn usage_error(err: &clap::Error) -> ExitCode {
    let code = err.exit_code();
    let wants_json = std::env::args_os().skip(1).any(|arg| arg == "--json");
    if wants_json && err.use_stderr() {
        let message = err.kind().to_string();
        let rendered = err.to_string();
        // clap's rendering starts with "error: " and ends with a usage hint; the first line is
        // the message.
        let first_line = rendered
            .lines()
            .next()
            .map(|line| line.trim_start_matches("error: ").to_owned())
            .unwrap_or(message);
        let exit_code = u8::try_from(code).unwrap_or(2);
        let output = Output::new(true, false);
        let _ = output.json(&exit::json_report("usage", &first_line, exit_code));
    }
    // If stderr is gone there is nowhere left to report to; the exit code still tells.
    let _ = err.print();
    ExitCode::from(u8::try_from(code).unwrap_or(2))
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
