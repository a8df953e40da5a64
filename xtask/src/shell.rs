//! Running named commands from the project root, shared by every task.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// One named command, such as `clippy` running `cargo clippy --workspace ...`.
///
/// Every step runs cargo: by default the cargo that runs xtask (the pinned toolchain); with
/// [`Step::cargo_on`], rustup's `cargo +<toolchain>` from `PATH`, for the few tasks that need
/// another toolchain (nightly, for fuzzing).
pub(crate) struct Step {
    /// Short name printed before the step runs and in failure messages.
    pub(crate) name: String,
    /// `Some(toolchain)` to run `cargo +toolchain` through rustup instead of `$CARGO`.
    toolchain: Option<&'static str>,
    /// Arguments passed to cargo.
    arguments: Vec<String>,
    /// Extra environment variables set for this step only.
    environment: Vec<(&'static str, String)>,
}

impl Step {
    /// A step that runs `cargo` with `arguments`.
    pub(crate) fn cargo(name: impl Into<String>, arguments: &[&str]) -> Self {
        Self {
            name: name.into(),
            toolchain: None,
            arguments: arguments
                .iter()
                .map(|argument| (*argument).to_owned())
                .collect(),
            environment: Vec::new(),
        }
    }

    /// A step that runs rustup's `cargo +toolchain` with `arguments`.
    pub(crate) fn cargo_on(
        name: impl Into<String>,
        toolchain: &'static str,
        arguments: &[&str],
    ) -> Self {
        Self {
            toolchain: Some(toolchain),
            ..Self::cargo(name, arguments)
        }
    }

    /// Sets the environment variable `key` to `value` for this step only.
    pub(crate) fn env(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.environment.push((key, value.into()));
        self
    }

    /// The command as a person would type it, for the `==>` line and error messages.
    fn command_line(&self) -> String {
        let mut line = String::new();
        for (key, value) in &self.environment {
            let _ = write!(line, "{key}={} ", quote(value));
        }
        line.push_str("cargo");
        if let Some(toolchain) = self.toolchain {
            let _ = write!(line, " +{toolchain}");
        }
        for argument in &self.arguments {
            line.push(' ');
            line.push_str(&quote(argument));
        }
        line
    }
}

/// Quotes an argument for display if it contains a space, so the printed line can be pasted.
fn quote(argument: &str) -> String {
    if argument.contains(' ') {
        format!("'{argument}'")
    } else {
        argument.to_owned()
    }
}

/// Runs steps from the project root with the same `cargo` that is running xtask.
pub(crate) struct Shell {
    /// The workspace root, where every step runs.
    project_root: PathBuf,
    /// The cargo binary: `$CARGO` (set by cargo for `cargo run`), else `cargo` from `PATH`.
    cargo: OsString,
}

impl Shell {
    /// The workspace root.
    pub(crate) fn project_root(&self) -> &Path {
        &self.project_root
    }

    /// A shell at the project root, the parent of xtask's own manifest directory.
    pub(crate) fn new() -> anyhow::Result<Self> {
        let project_root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("while finding the project root as the parent of xtask's manifest directory")?
            .to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        Ok(Self {
            project_root,
            cargo,
        })
    }

    /// Runs `step` with its output streamed live to the terminal; fails if it exits unsuccessfully.
    pub(crate) fn run(&self, step: &Step) -> anyhow::Result<()> {
        let command_line = self.announce(step);
        stream(&mut self.command(step), &command_line)
    }

    /// Runs `step` with stderr streamed live and stdout captured and returned.
    ///
    /// Fails if the step exits unsuccessfully or its stdout is not UTF-8.
    pub(crate) fn run_capturing_stdout(&self, step: &Step) -> anyhow::Result<String> {
        let command_line = self.announce(step);
        capture_stdout(&mut self.command(step), &command_line)
    }

    /// Prints `==> <name>: <command line>` and returns the command line.
    fn announce(&self, step: &Step) -> String {
        let command_line = step.command_line();
        println!("==> {}: {command_line}", step.name);
        command_line
    }

    /// Runs `step` with stdout streamed live and stderr streamed live line by line, each line
    /// also passed to `watch` (to pick figures out of a tool's report); fails if it exits
    /// unsuccessfully.
    pub(crate) fn run_watching_stderr(
        &self,
        step: &Step,
        mut watch: impl FnMut(&str),
    ) -> anyhow::Result<()> {
        let command_line = self.announce(step);
        let mut child = self
            .command(step)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("while starting `{command_line}`"))?;
        let stderr = child
            .stderr
            .take()
            .context("while reading stderr: it was not piped")?;
        for line in BufReader::new(stderr).lines() {
            let line =
                line.with_context(|| format!("while reading the stderr of `{command_line}`"))?;
            eprintln!("{line}");
            watch(&line);
        }
        let status = child
            .wait()
            .with_context(|| format!("while waiting for `{command_line}`"))?;
        if !status.success() {
            bail!("`{command_line}` exited unsuccessfully ({status})");
        }
        Ok(())
    }

    /// Runs `step` with stdout and stderr merged into one pipe, in the order the step wrote them,
    /// each line echoed to stdout and passed to `watch`; returns whether the step exited
    /// successfully, and fails only if it could not be run or read.
    ///
    /// One pipe for both streams keeps cargo's `Running <binary>` lines (stderr) in order with the
    /// test harness's result lines (stdout), so a failed test can be attributed to its binary.
    pub(crate) fn run_merged(
        &self,
        step: &Step,
        mut watch: impl FnMut(&str),
    ) -> anyhow::Result<bool> {
        let command_line = self.announce(step);
        let (reader, writer) =
            std::io::pipe().with_context(|| format!("while making a pipe for `{command_line}`"))?;
        let writer_for_stderr = writer
            .try_clone()
            .with_context(|| format!("while making a pipe for `{command_line}`"))?;
        let mut command = self.command(step);
        command
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer_for_stderr);
        let mut child = command
            .spawn()
            .with_context(|| format!("while starting `{command_line}`"))?;
        // The command holds the pipe's write ends; drop ours so the read ends at the child's exit.
        drop(command);
        let mut reader = BufReader::new(reader);
        let mut bytes = Vec::new();
        loop {
            bytes.clear();
            let read = reader
                .read_until(b'\n', &mut bytes)
                .with_context(|| format!("while reading the output of `{command_line}`"))?;
            if read == 0 {
                break;
            }
            // A test may print bytes that are not UTF-8; they are shown, not an error.
            let line = String::from_utf8_lossy(&bytes);
            let line = line.trim_end_matches(['\n', '\r']);
            println!("{line}");
            watch(line);
        }
        let status = child
            .wait()
            .with_context(|| format!("while waiting for `{command_line}`"))?;
        Ok(status.success())
    }

    /// Whether `step` runs and exits successfully, with its output discarded: for probing that a
    /// tool is installed.
    pub(crate) fn succeeds_quietly(&self, step: &Step) -> bool {
        self.command(step)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// The `Command` for `step`, set to run from the project root.
    fn command(&self, step: &Step) -> Command {
        let mut command = match step.toolchain {
            // rustup's proxy, told which toolchain to use; the variable rustup sets for the
            // pinned toolchain that runs xtask must not leak into it.
            Some(toolchain) => {
                let mut command = Command::new("cargo");
                command
                    .arg(format!("+{toolchain}"))
                    .env_remove("RUSTUP_TOOLCHAIN");
                command
            }
            None => Command::new(&self.cargo),
        };
        command
            .args(&step.arguments)
            .envs(
                step.environment
                    .iter()
                    .map(|(key, value)| (*key, value.as_str())),
            )
            .current_dir(&self.project_root);
        command
    }
}

/// Runs `command` with its output streamed live; fails if it exits unsuccessfully.
/// `command_line` is how the command is named in errors.
pub(crate) fn stream(command: &mut Command, command_line: &str) -> anyhow::Result<()> {
    let status = command
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("while starting `{command_line}`"))?;
    if !status.success() {
        bail!("`{command_line}` exited unsuccessfully ({status})");
    }
    Ok(())
}

/// Runs `command` with stderr streamed live and stdout captured and returned. Fails if it exits
/// unsuccessfully (after printing what it wrote, which usually explains why) or its stdout is not
/// UTF-8.
pub(crate) fn capture_stdout(command: &mut Command, command_line: &str) -> anyhow::Result<String> {
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("while starting `{command_line}`"))?;
    let stdout = String::from_utf8(output.stdout)
        .with_context(|| format!("while reading the output of `{command_line}` as UTF-8"))?;
    if !output.status.success() {
        print!("{stdout}");
        bail!("`{command_line}` exited unsuccessfully ({})", output.status);
    }
    Ok(stdout)
}
