//! `cargo xtask verify`: every check CI runs, in order, stopping at the first failure.
//!
//! With `--repeat N` the test step runs N times (every run to the end, `--no-fail-fast`), and a
//! summary names the tests that failed in each run; with `--stress` a spinning thread per core
//! keeps the machine busy while verify runs, so that a test that depends on timing shows itself.
//! Without options verify is exactly what CI runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::flags::VerifyArgs;
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

/// Whether the test step runs in the summarised form (any option given).
fn summarises(options: &VerifyArgs) -> bool {
    options.repeat.is_some() || options.stress
}

/// Runs every step; the error names the step that failed.
pub(crate) fn run(options: VerifyArgs) -> anyhow::Result<()> {
    let shell = Shell::new().context("while preparing to run the verify steps")?;
    // Held until verify returns, on every path: its drop stops the hogs. A Ctrl-C ends this
    // process and its threads with it, so no hog outlives verify.
    let _hogs = if options.stress {
        let hogs = CpuHogs::start().context("while starting the CPU hogs for --stress")?;
        println!(
            "verify: --stress: {} spinning threads, one per core, until verify ends",
            hogs.count()
        );
        Some(hogs)
    } else {
        None
    };

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
        // TLS (`rediss://`, `https://` S3 endpoints) is an opt-in feature the tests do not build:
        // at least it must compile and pass clippy.
        Step::cargo(
            "clippy (cache-remote --features tls)",
            &[
                "clippy",
                "-p",
                "cache-remote",
                "--features",
                "tls",
                "--lib",
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
        // With options, the test step is replaced by the repeated, summarised runs.
        if step.name == "test" && summarises(&options) {
            run_tests_repeatedly(&shell, options.repeat.unwrap_or(1), options.stress)
                .with_context(|| format!("verify: step '{}' failed", step.name))?;
            continue;
        }
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

/// One spinning thread per core (as `available_parallelism` counts them), stopped when dropped.
struct CpuHogs {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl CpuHogs {
    fn start() -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism()
            .context("while counting the cores")?
            .get();
        let stop = Arc::new(AtomicBool::new(false));
        let mut hogs = CpuHogs {
            stop: Arc::clone(&stop),
            threads: Vec::with_capacity(cores),
        };
        for index in 0..cores {
            let stop = Arc::clone(&stop);
            let thread = std::thread::Builder::new()
                .name(format!("cpu-hog-{index}"))
                .spawn(move || spin_until(&stop))
                .context("while starting a CPU hog thread")?;
            // On an early return the hogs started so far are stopped by `hogs`' drop.
            hogs.threads.push(thread);
        }
        Ok(hogs)
    }

    fn count(&self) -> usize {
        self.threads.len()
    }
}

impl Drop for CpuHogs {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            // A hog cannot panic (it only loads a flag and does arithmetic); if one did, there is
            // nothing left to stop.
            let _ = thread.join();
        }
    }
}

/// Burns one core until `stop` is set: arithmetic the optimiser cannot remove, and a look at
/// the flag every few thousand steps.
fn spin_until(stop: &AtomicBool) {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..4096 {
            state = std::hint::black_box(state.rotate_left(5) ^ 0x2545_F491_4F6C_DD1D);
        }
    }
}

/// What one run of the test step did.
struct TestRun {
    passed: bool,
    duration: Duration,
    /// Failed tests as `<binary>: <test name>`, in the order they were reported.
    failed_tests: Vec<String>,
}

/// Runs `cargo test --workspace --no-fail-fast` `runs` times, every run to the end, prints a
/// summary, and fails if any run failed.
fn run_tests_repeatedly(shell: &Shell, runs: u32, stress: bool) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for run in 1..=runs {
        let step = Step::cargo(
            format!("test (run {run} of {runs})"),
            &["test", "--workspace", "--no-fail-fast"],
        );
        let started = Instant::now();
        let mut tracker = FailedTests::default();
        let passed = shell
            .run_merged(&step, |line| tracker.watch(line))
            .with_context(|| format!("while running the tests (run {run} of {runs})"))?;
        results.push(TestRun {
            passed,
            duration: started.elapsed(),
            failed_tests: tracker.failed,
        });
    }
    let summary = summarise(&results, stress);
    print!("{summary}");
    let failed_runs = results.iter().filter(|run| !run.passed).count();
    if failed_runs > 0 {
        bail!("{failed_runs} of {runs} test runs failed (summary above)");
    }
    Ok(())
}

/// The summary printed after the repeated runs: one line for the whole, one per run.
fn summarise(results: &[TestRun], stress: bool) -> String {
    use std::fmt::Write as _;
    let failed_runs = results.iter().filter(|run| !run.passed).count();
    let mut summary = format!(
        "verify: test step {}: {} runs, {failed_runs} failed\n",
        if stress {
            "under --stress"
        } else {
            "without load"
        },
        results.len()
    );
    for (index, run) in results.iter().enumerate() {
        let seconds = run.duration.as_secs_f64();
        let _ = match (run.passed, run.failed_tests.as_slice()) {
            (true, _) => writeln!(summary, "  run {}: passed ({seconds:.0} s)", index + 1),
            (false, []) => writeln!(
                summary,
                "  run {}: FAILED ({seconds:.0} s) with no failed test named (a build error, a \
                 crash or a timeout: see its output above)",
                index + 1
            ),
            (false, failed) => writeln!(
                summary,
                "  run {}: FAILED ({seconds:.0} s): {}",
                index + 1,
                failed.join(", ")
            ),
        };
    }
    summary
}

/// Picks the failed tests out of `cargo test` output, stdout and stderr merged in order.
#[derive(Default)]
struct FailedTests {
    /// The test binary running now, from cargo's `Running <source> (<path>)` or
    /// `Doc-tests <crate>` line.
    binary: String,
    failed: Vec<String>,
}

impl FailedTests {
    fn watch(&mut self, line: &str) {
        let line = line.trim();
        if let Some(running) = line.strip_prefix("Running ") {
            // `Running tests/crash.rs (target/debug/deps/crash-0123)`: the source names it.
            self.binary = running
                .split_once(" (")
                .map_or(running, |(source, _)| source)
                .to_owned();
        } else if let Some(krate) = line.strip_prefix("Doc-tests ") {
            self.binary = format!("doc-tests {krate}");
        } else if let Some(test) = line
            .strip_prefix("test ")
            .and_then(|rest| rest.strip_suffix(" ... FAILED"))
        {
            self.failed.push(format!("{}: {test}", self.binary));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_options_is_what_ci_runs() {
        assert!(!summarises(&VerifyArgs::default()));
        assert!(summarises(&VerifyArgs {
            repeat: None,
            stress: true,
        }));
        assert!(summarises(&VerifyArgs {
            repeat: Some(1),
            stress: false,
        }));
    }

    #[test]
    fn failed_tests_are_named_with_their_binary() {
        let mut tracker = FailedTests::default();
        for line in [
            "     Running tests/crash.rs (target/debug/deps/crash-0123abcd)",
            "test a_kill_after_flush_loses_nothing_flushed::case_1 ... ok",
            "test random_kills_lose_nothing ... FAILED",
            "   Doc-tests cache_core",
            "test crates/cache-core/src/lib.rs - (line 10) ... FAILED",
        ] {
            tracker.watch(line);
        }
        assert_eq!(
            tracker.failed,
            [
                "tests/crash.rs: random_kills_lose_nothing",
                "doc-tests cache_core: crates/cache-core/src/lib.rs - (line 10)",
            ]
        );
    }

    #[test]
    fn the_summary_counts_runs_and_names_failures() {
        let results = [
            TestRun {
                passed: true,
                duration: Duration::from_secs(90),
                failed_tests: Vec::new(),
            },
            TestRun {
                passed: false,
                duration: Duration::from_secs(95),
                failed_tests: vec!["tests/domains.rs: listing".to_owned()],
            },
            TestRun {
                passed: false,
                duration: Duration::from_secs(3),
                failed_tests: Vec::new(),
            },
        ];
        let summary = summarise(&results, true);
        assert!(summary.starts_with("verify: test step under --stress: 3 runs, 2 failed\n"));
        assert!(summary.contains("run 1: passed (90 s)"));
        assert!(summary.contains("run 2: FAILED (95 s): tests/domains.rs: listing"));
        assert!(summary.contains("run 3: FAILED (3 s) with no failed test named"));
    }
}
