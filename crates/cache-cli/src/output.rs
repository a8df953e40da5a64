//! Where output goes: results on stdout (text, raw bytes or `--json`), notes on stderr (silenced
//! by `--quiet`), so that stdout can always be piped.

use std::cell::Cell;
use std::io::{self, Write as _};

use anyhow::Context as _;
use serde::Serialize;

/// The output settings of one run.
pub(crate) struct Output {
    json: bool,
    quiet: bool,
    /// Whether a JSON document was written to stdout: with `--json` a run writes exactly one,
    /// so an error after a command's own report (`delete` of a missing key, `doctor` with
    /// damage left) adds none.
    wrote_json: Cell<bool>,
}

impl Output {
    pub(crate) fn new(json: bool, quiet: bool) -> Self {
        Output {
            json,
            quiet,
            wrote_json: Cell::new(false),
        }
    }

    /// Whether this run already wrote its JSON document.
    pub(crate) fn wrote_json(&self) -> bool {
        self.wrote_json.get()
    }

    /// Whether results are printed as JSON.
    pub(crate) fn is_json(&self) -> bool {
        self.json
    }

    /// Whether notes (and progress bars) are silenced.
    pub(crate) fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Prints `value` as pretty JSON on stdout.
    pub(crate) fn json(&self, value: &impl Serialize) -> anyhow::Result<()> {
        self.wrote_json.set(true);
        let mut stdout = io::stdout().lock();
        serde_json::to_writer_pretty(&mut stdout, value)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(stdout))
            .and_then(|()| stdout.flush())
            .context("while writing JSON to stdout")
    }

    /// Prints result text on stdout (a newline is added).
    pub(crate) fn text(&self, text: &str) -> anyhow::Result<()> {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .context("while writing to stdout")
    }

    /// Prints raw bytes on stdout, exactly.
    pub(crate) fn bytes(&self, bytes: &[u8]) -> anyhow::Result<()> {
        let mut stdout = io::stdout().lock();
        stdout
            .write_all(bytes)
            .and_then(|()| stdout.flush())
            .context("while writing the value to stdout")
    }

    /// Prints a warning on stderr (`warning: ` added), even with `--quiet` or `--json`: it
    /// tells of something the person did not ask for (a workspace evicted).
    pub(crate) fn warn(&self, text: &str) -> anyhow::Result<()> {
        writeln!(io::stderr(), "warning: {text}").context("while writing to stderr")
    }

    /// Prints a note for the person at the keyboard on stderr, unless `--quiet`.
    pub(crate) fn note(&self, text: &str) -> anyhow::Result<()> {
        if self.quiet {
            return Ok(());
        }
        writeln!(io::stderr(), "{text}").context("while writing to stderr")
    }
}
