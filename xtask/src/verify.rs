//! `cargo xtask verify`: every check CI runs, in order, stopping at the first failure.

use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::shell::{Shell, Step};

/// Lines the coordination example must print, each on a line of its own.
///
/// They show the example's three claims: one instance per tag in a process, a different tag
/// gets a different instance, and both instances are counted as active.
const COORDINATION_EXPECTED_LINES: [&str; 3] = [
    "Same instance: true",
    "Different tag, same instance: false",
    "Active instances: 2",
];

/// The value the CLI session stores and must read back.
const CLI_VALUE: &str = "hello from glovebox-cache";

/// Runs every step; the error names the step that failed.
pub(crate) fn run() -> anyhow::Result<()> {
    let shell = Shell::new().context("while preparing to run the verify steps")?;

    let streamed_steps = [
        Step::cargo("fmt", &["fmt", "--all", "--check"]),
        Step::cargo(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        Step::cargo("test", &["test", "--workspace"]),
        Step::cargo("doc", &["doc", "--workspace", "--no-deps"]).env("RUSTDOCFLAGS", "-D warnings"),
    ];
    let coordination_step = Step::cargo(
        "coordination example",
        &[
            "run",
            "--quiet",
            "-p",
            "cache-core",
            "--example",
            "coordination",
        ],
    );
    // The example runs on the embedded default (a redb file per tag under the resolved root), but
    // verify must never touch the user's real cache: point the root into target/, fresh each run.
    let example_root = fresh_root(&shell, "coordination-root")?;
    let coordination_step =
        coordination_step.env("GLOVEBOX_CACHE_PATH", example_root.display().to_string());

    // A short session with the `glovebox-cache` command, on its own fresh root under target/.
    let cli_root = fresh_root(&shell, "cli-root")?;
    let cli_step = |name: &'static str, arguments: &[&'static str]| {
        let mut full = vec!["run", "--quiet", "-p", "cache-cli", "--"];
        full.extend_from_slice(arguments);
        Step::cargo(name, &full).env("GLOVEBOX_CACHE_PATH", cli_root.display().to_string())
    };
    let cli_steps = [
        cli_step(
            "cli set",
            &["set", "--tag", "verify", "greeting", CLI_VALUE],
        ),
        cli_step("cli get", &["get", "--tag", "verify", "greeting"]),
        cli_step("cli show", &["show"]),
    ];
    let step_count = streamed_steps.len() + 1 + cli_steps.len();

    for step in &streamed_steps {
        shell
            .run(step)
            .with_context(|| format!("verify: step '{}' failed", step.name))?;
    }
    check_coordination_example(&shell, &coordination_step)
        .with_context(|| format!("verify: step '{}' failed", coordination_step.name))?;
    check_cli_session(&shell, &cli_steps)?;

    println!("verify: all {step_count} steps passed");
    Ok(())
}

/// Runs the coordination example, echoes its output, and checks it printed every expected line.
fn check_coordination_example(shell: &Shell, step: &Step) -> anyhow::Result<()> {
    let stdout = shell
        .run_capturing_stdout(step)
        .context("while running the coordination example")?;
    print!("{stdout}");

    let missing: Vec<&str> = COORDINATION_EXPECTED_LINES
        .into_iter()
        .filter(|expected| !stdout.lines().any(|line| line.trim_end() == *expected))
        .collect();
    if !missing.is_empty() {
        let missing_list = missing
            .iter()
            .map(|line| format!("`{line}`"))
            .collect::<Vec<_>>()
            .join(", ");
        bail!("the coordination example's output is missing the line(s) {missing_list}");
    }
    Ok(())
}

/// `target/xtask/<name>`, removed if a previous run left it, so every run starts empty.
fn fresh_root(shell: &Shell, name: &str) -> anyhow::Result<PathBuf> {
    let root = shell.project_root().join("target").join("xtask").join(name);
    if root.exists() {
        std::fs::remove_dir_all(&root)
            .with_context(|| format!("while removing the old root {}", root.display()))?;
    }
    Ok(root)
}

/// Runs the CLI session: `set` must succeed, `get` must print the value back exactly, and `show`
/// must list the tag with one entry.
fn check_cli_session(shell: &Shell, steps: &[Step; 3]) -> anyhow::Result<()> {
    let [set, get, show] = steps;
    let failed = |step: &Step| format!("verify: step '{}' failed", step.name);
    shell.run(set).with_context(|| failed(set))?;

    let value = shell
        .run_capturing_stdout(get)
        .context("while reading the value back with the CLI")
        .with_context(|| failed(get))?;
    println!("{value}");
    if value != CLI_VALUE {
        return Err(anyhow::anyhow!(
            "`get` printed {value:?}, not the value stored, {CLI_VALUE:?}"
        ))
        .with_context(|| failed(get));
    }

    let table = shell
        .run_capturing_stdout(show)
        .context("while showing the statistics with the CLI")
        .with_context(|| failed(show))?;
    print!("{table}");
    let lists_the_tag = table.lines().any(|line| {
        let mut columns = line.split_whitespace();
        columns.next() == Some("verify") && columns.next() == Some("1")
    });
    if !lists_the_tag {
        return Err(anyhow::anyhow!(
            "`show` did not list tag 'verify' with 1 entry"
        ))
        .with_context(|| failed(show));
    }
    Ok(())
}
