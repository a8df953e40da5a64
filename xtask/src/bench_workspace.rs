//! `cargo xtask bench workspace`: restore of a generated workspace-like tree in each link mode
//! against `cp -a`, whole processes timed, plus add and deduplication figures (issue 19).
//!
//! Builds `glovebox-cache` and the test worker (which generates the trees,
//! `cache_tests::trees`: the files of the deduplication tests, at the size asked), then under
//! `target/bench-workspace/` (one filesystem for the cache, the sources and the restores, so
//! that hard links work): generates the workspace and a variant with one file in fifty changed,
//! times `workspace add` of each (the repository's, then a branch's), measures the disk the
//! tag directory uses after each (every inode once, as `du`), then times `workspace restore
//! --link MODE` for auto, reflink, hardlink and copy, and `cp -a`, each `--reps` times (median),
//! interleaved, each after an untimed `sync`.
//! Prints the table; writes nothing else. A benchmark, not a test: nothing is asserted.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

use crate::flags::WorkspaceBenchArgs;
use crate::shell::{Shell, Step};

const REPOSITORY: &str = "bench/workspace";
const BRANCH: &str = "variant";

/// Runs the benchmark and prints its figures.
pub(crate) fn run(args: WorkspaceBenchArgs) -> anyhow::Result<()> {
    let shell = Shell::new().context("while preparing to run the benchmark")?;
    let root = shell.project_root().to_path_buf();
    let mut build = vec![
        "build",
        "-p",
        "cache-cli",
        "-p",
        "cache-tests",
        "--bin",
        "glovebox-cache",
        "--bin",
        "cache-worker",
    ];
    if args.release {
        build.push("--release");
    }
    shell.run(&Step::cargo("build", &build))?;
    let binaries = root
        .join("target")
        .join(if args.release { "release" } else { "debug" });
    let cli = binaries.join("glovebox-cache");
    let worker = binaries.join("cache-worker");

    let scratch = root
        .join("target")
        .join("bench-workspace")
        .join(std::process::id().to_string());
    if scratch.exists() {
        remove_scratch(&scratch)?;
    }
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("while creating {}", scratch.display()))?;
    let result = measure(&args, &cli, &worker, &scratch);
    let removed = remove_scratch(&scratch);
    let report = result?;
    removed?;
    println!("{report}");
    Ok(())
}

/// The timed part, in `scratch`; the report.
fn measure(
    args: &WorkspaceBenchArgs,
    cli: &Path,
    worker: &Path,
    scratch: &Path,
) -> anyhow::Result<String> {
    let cache_root = scratch.join("cache");
    let sources = [scratch.join("workspace"), scratch.join("workspace-variant")];
    for (variant, source) in sources.iter().enumerate() {
        // The tree goes under zmk/, the component every workspace has.
        std::fs::create_dir_all(source.join("zmk"))?;
        run_quietly(
            Command::new(worker)
                .arg("generate-tree")
                .arg(source.join("zmk"))
                .arg(args.files.to_string())
                .arg((args.mean_kib * 1024).to_string())
                .arg(variant.to_string()),
        )?;
    }
    let tree_bytes = disk_use(&sources[0])?;

    let tag_dir = cache_root.join("compilation");
    let add = |source: &Path, branch: Option<&str>| -> anyhow::Result<f64> {
        let mut command = Command::new(cli);
        command
            .arg("--root")
            .arg(&cache_root)
            .args(["workspace", "add"])
            .arg(source)
            .args(["--repo", REPOSITORY, "--max-size", "1TiB"]);
        if let Some(branch) = branch {
            command.args(["--branch", branch]);
        }
        timed(&mut command)
    };
    let add_first = add(&sources[0], None)?;
    let after_first = disk_use(&tag_dir)?;
    let add_second = add(&sources[1], Some(BRANCH))?;
    let after_second = disk_use(&tag_dir)?;

    // The steps run interleaved (each repetition runs every step once, in turn), after a `sync`
    // that is not timed: every step writes 300 MB, and without the sync a step would pay for
    // the writeback of the one before it (the last steps the most).
    const STEPS: [&str; 5] = ["auto", "reflink", "hardlink", "copy", "cp -a"];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); STEPS.len()];
    let mut unsupported = [false; STEPS.len()];
    for rep in 0..args.reps {
        for (step, mode) in STEPS.iter().enumerate() {
            if unsupported[step] {
                continue;
            }
            let dest = scratch.join(format!("restore-{step}-{rep}"));
            let mut command = if *mode == "cp -a" {
                let mut command = Command::new("cp");
                command.arg("-a").arg(&sources[0]).arg(&dest);
                command
            } else {
                let mut command = Command::new(cli);
                command
                    .arg("--root")
                    .arg(&cache_root)
                    .args(["workspace", "restore", REPOSITORY])
                    .arg(&dest)
                    .args(["--link", mode]);
                command
            };
            run_quietly(&mut Command::new("sync"))?;
            let started = Instant::now();
            let status = command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .with_context(|| format!("while running {command:?}"))?;
            let elapsed = started.elapsed().as_secs_f64();
            if dest.exists() {
                remove_tree(&dest)?;
            }
            if !status.success() {
                if *mode == "reflink" {
                    // A filesystem without clones: reported, not timed.
                    unsupported[step] = true;
                    times[step].clear();
                    continue;
                }
                bail!("{command:?} exited unsuccessfully ({status})");
            }
            times[step].push(elapsed);
        }
    }
    let mut rows: Vec<(String, Option<f64>)> = Vec::new();
    for (step, mode) in STEPS.iter().enumerate() {
        let name = if *mode == "cp -a" {
            (*mode).to_owned()
        } else {
            format!("workspace restore --link {mode}")
        };
        rows.push((name, median(&mut times[step])));
    }
    let cp = rows.last().and_then(|(_, seconds)| *seconds);

    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let mut report = String::new();
    report.push_str(&format!(
        "bench workspace: {} files, mean {} KiB, {:.1} MiB on disk; {} repetitions (median); {} binaries\n\n",
        args.files,
        args.mean_kib,
        mib(tree_bytes),
        args.reps,
        if args.release { "release" } else { "debug" }
    ));
    report.push_str("| step | seconds | vs cp -a |\n|---|---|---|\n");
    report.push_str(&format!(
        "| workspace add (repository) | {add_first:.3} | {} |\n",
        ratio(Some(add_first), cp)
    ));
    report.push_str(&format!(
        "| workspace add (branch, 1 file in 50 changed) | {add_second:.3} | {} |\n",
        ratio(Some(add_second), cp)
    ));
    for (name, seconds) in &rows {
        let shown = seconds.map_or("unsupported here".to_owned(), |s| format!("{s:.3}"));
        report.push_str(&format!("| {name} | {shown} | {} |\n", ratio(*seconds, cp)));
    }
    let added = after_second.saturating_sub(after_first);
    report.push_str(&format!(
        "\nDisk of the tag directory: {:.1} MiB after the first add, +{:.1} MiB for the second \
         ({:.1} % of the first).\n",
        mib(after_first),
        mib(added),
        100.0 * added as f64 / after_first.max(1) as f64
    ));
    Ok(report)
}

/// `cp -a`'s time over `seconds`, as `1.23x` (below 1: faster than `cp -a`).
fn ratio(seconds: Option<f64>, cp: Option<f64>) -> String {
    match (seconds, cp) {
        (Some(seconds), Some(cp)) if cp > 0.0 => format!("{:.2}x", seconds / cp),
        _ => "-".to_owned(),
    }
}

fn median(times: &mut [f64]) -> Option<f64> {
    if times.is_empty() {
        return None;
    }
    times.sort_by(f64::total_cmp);
    Some(times[times.len() / 2])
}

/// Runs `command` to its end with its output discarded; the seconds it took. Fails if it does.
fn timed(command: &mut Command) -> anyhow::Result<f64> {
    let started = Instant::now();
    run_quietly(command)?;
    Ok(started.elapsed().as_secs_f64())
}

fn run_quietly(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("while starting {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} exited unsuccessfully ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Bytes allocated below `dir`, each inode once, symlinks not followed.
fn disk_use(dir: &Path) -> anyhow::Result<u64> {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut total = 0u64;
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("while measuring {}", path.display()))?;
        if seen.insert((meta.dev(), meta.ino())) {
            total += meta.blocks() * 512;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(total)
}

/// Removes a restored tree. Never through `chmod`: the files of a hard-link restore are the
/// cache's, and their modes are part of what the cache checks.
fn remove_tree(path: &Path) -> anyhow::Result<()> {
    std::fs::remove_dir_all(path).with_context(|| format!("while removing {}", path.display()))
}

/// Removes the whole scratch directory, the cache's read-only files and directories included.
fn remove_scratch(path: &Path) -> anyhow::Result<()> {
    run_quietly(Command::new("chmod").arg("-R").arg("u+rwX").arg(path))?;
    remove_tree(path)
}
