//! `cargo xtask`: the project's automation, one module per task, run with `cargo xtask <command>`.
//!
//! The alias in `.cargo/config.toml` turns `cargo xtask ...` into `cargo run --package xtask -- ...`.
//! The command line is parsed with clap (`flags.rs`), the same parser as `glovebox-cache`, so
//! `cargo xtask <command> --help` describes each task's options; a usage error exits with 2.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "xtask is a program that reports to the terminal"
)]

mod bench;
mod bench_workspace;
mod flags;
mod fuzz;
mod man;
mod shell;
mod soak;
mod verify;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};

use crate::flags::{BenchTarget, Cli, Task};

fn main() -> ExitCode {
    // The arguments as typed, for the benchmark report's "command" line.
    let typed: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|argument| argument.to_string_lossy().into_owned())
        .collect();
    // A usage error (unknown command or option, a bad value) is printed by clap with the usage
    // and exits with 2; `--help` and `help` print the help and exit with 0.
    let cli = Cli::parse();

    let result = match cli.task {
        None => {
            // No command: the help, on stdout, as `cargo xtask help` prints it.
            println!("{}", Cli::command().render_help());
            Ok(())
        }
        Some(Task::Verify(options)) => verify::run(options),
        Some(Task::Bench(options)) => match options.what {
            Some(BenchTarget::Workspace(workspace)) => bench_workspace::run(workspace),
            None => bench::run(options, &typed),
        },
        Some(Task::Soak) => soak::run(),
        Some(Task::Fuzz(options)) => fuzz::run(options),
        Some(Task::Man(options)) => man::run(&options),
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
