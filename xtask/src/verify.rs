//! `cargo xtask verify`: every check CI runs, in order, stopping at the first failure.

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
    let example_root = shell
        .project_root()
        .join("target")
        .join("xtask")
        .join("coordination-root");
    if example_root.exists() {
        std::fs::remove_dir_all(&example_root).with_context(|| {
            format!(
                "while removing the old example root {}",
                example_root.display()
            )
        })?;
    }
    let coordination_step =
        coordination_step.env("GLOVEBOX_CACHE_PATH", example_root.display().to_string());
    let step_count = streamed_steps.len() + 1;

    for step in &streamed_steps {
        shell
            .run(step)
            .with_context(|| format!("verify: step '{}' failed", step.name))?;
    }
    check_coordination_example(&shell, &coordination_step)
        .with_context(|| format!("verify: step '{}' failed", coordination_step.name))?;

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
