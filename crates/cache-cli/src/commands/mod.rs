//! One module per subcommand. [`run`] resolves the root, runs the command, and closes every tag
//! the command opened, so that what it wrote is durable before the process exits.

mod cleanup;
mod clear;
mod completions;
mod config;
mod delete;
mod doctor;
mod entry;
mod keys;
mod metrics;
mod remote;
mod show;
mod stats;
mod workspace;

use crate::cli::{Cli, Command};
use crate::output::Output;
use crate::root::{CacheRoot, RootRequest};

/// Runs the parsed command line.
pub(crate) fn run(cli: &Cli, output: &Output) -> anyhow::Result<()> {
    // Completions need no cache root (nor a valid configuration file).
    if let Command::Completions(args) = &cli.command {
        return completions::run(args);
    }
    let root = CacheRoot::resolve(&RootRequest {
        root: cli.global.root.as_deref(),
        config_file: cli.global.config.as_deref(),
        timeout: cli.global.timeout,
    })?;
    let result = match &cli.command {
        Command::Show(args) => show::run(&root, args, output),
        Command::Stats(args) => stats::run(&root, args, output),
        Command::Keys(args) => keys::run(&root, args, output),
        Command::Get(args) => entry::get(&root, args, output),
        Command::Set(args) => entry::set(&root, args, output),
        Command::Delete(args) => delete::run(&root, args, output),
        Command::Clear(args) => clear::run(&root, args, output),
        Command::Cleanup => cleanup::run(&root, output),
        Command::Config => config::run(&root, output),
        Command::Completions(args) => completions::run(args),
        Command::Doctor(args) => doctor::run(&root, args, output),
        Command::Metrics(args) => metrics::run(&root, args, output),
        Command::Workspace(args) => workspace::run(&root, args, output),
        Command::Remote(args) => remote::run(&root, args, output),
    };
    // Closing flushes: a `set` is durable only once this returns. A command's own error is the
    // one worth reporting; a close error is reported when the command succeeded.
    let closed = root.close();
    result.and(closed)
}
