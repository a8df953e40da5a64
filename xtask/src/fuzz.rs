//! `cargo xtask fuzz [--seconds N]`: runs each cargo-fuzz target in `fuzz/` for N seconds
//! (default 30) on the nightly toolchain, and prints how many inputs each tried.
//!
//! Fuzzing needs nightly and cargo-fuzz; `verify` needs neither (the stable decoder suite,
//! `tests/tests/decoder.rs`, checks the same properties). When one is missing this task says
//! which and how to install it, fuzzes nothing, and fails, so that no script mistakes it for a
//! fuzz run.

use anyhow::{Context as _, bail};

use crate::flags::FuzzArgs;
use crate::shell::{Shell, Step};

/// The targets in `fuzz/fuzz_targets/`, run in this order.
const TARGETS: [&str; 2] = ["entry_decoder", "key_and_tag"];

/// Checks the tools, and runs every target for `options.seconds` each.
pub(crate) fn run(options: FuzzArgs) -> anyhow::Result<()> {
    let seconds = options.seconds;
    let shell = Shell::new().context("while preparing to fuzz")?;
    if !shell.succeeds_quietly(&Step::cargo_on("nightly", "nightly", &["--version"])) {
        bail!(
            "fuzz: the nightly toolchain is not installed (`rustup toolchain install nightly`); \
             nothing was fuzzed"
        );
    }
    if !shell.succeeds_quietly(&Step::cargo_on(
        "cargo-fuzz",
        "nightly",
        &["fuzz", "--version"],
    )) {
        bail!("fuzz: cargo-fuzz is not installed (`cargo install cargo-fuzz`); nothing was fuzzed");
    }

    let mut report = Vec::new();
    for target in TARGETS {
        let max_time = format!("-max_total_time={seconds}");
        let step = Step::cargo_on(
            format!("fuzz {target}"),
            "nightly",
            &["fuzz", "run", target, "--", &max_time],
        );
        // libFuzzer ends with `Done 1234567 runs in 30 second(s)` on stderr.
        let mut done = None;
        shell
            .run_watching_stderr(&step, |line| {
                if let Some(rest) = line.strip_prefix("Done ") {
                    done = Some(rest.to_owned());
                }
            })
            .with_context(|| {
                format!(
                    "fuzz: target {target} failed; a crashing input is saved under \
                     fuzz/artifacts/{target}/"
                )
            })?;
        report.push(format!(
            "{target}: {}, no crash",
            done.as_deref().unwrap_or("(no run count reported)")
        ));
    }
    println!("fuzz: {} targets, {seconds} s each", TARGETS.len());
    for line in report {
        println!("  {line}");
    }
    Ok(())
}
