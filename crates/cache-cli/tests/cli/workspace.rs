//! `workspace`: list, add, delete, cleanup, export, import on fake west workspaces in temp
//! directories; JSON shapes, exit codes, bad input, and no root or tag created by reading.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its location"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cache_compilation::{CompilationCache, WorkspaceDetails, WorkspaceId};
use cache_core::{CacheOptions, Coordinator, Environment, ManualClock, UserCacheConfig};
use serde_json::Value;

use crate::support::{DAY, Sandbox, exists};

const REPO: &str = "zmkfirmware/zmk";

/// A west workspace at `<sandbox>/<name>`: `zmk/` (with a `.git`), `zephyr/`, `modules/`,
/// `.west/config`, and a `build/` directory the cache must leave out. Five files are cached
/// (four without `.git`).
fn fake_workspace(sandbox: &Sandbox, name: &str) -> PathBuf {
    let workspace = sandbox.path(name);
    for (path, content) in [
        ("zmk/app/CMakeLists.txt", "project(zmk)\n"),
        ("zmk/.git/HEAD", "ref: refs/heads/main\n"),
        ("zephyr/Kconfig", "mainmenu \"Zephyr\"\n"),
        ("modules/hal/nordic/README", "nordic hal\n"),
        (".west/config", "[manifest]\npath = zmk/app\n"),
        ("build/zephyr/zmk.uf2", "not part of a workspace"),
    ] {
        let file = workspace.join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(file, content).unwrap();
    }
    workspace
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `(repository, branch)` of each row of a `workspaces` array.
fn names(workspaces: &Value) -> Vec<(String, Option<String>)> {
    workspaces
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["repository"].as_str().unwrap().to_owned(),
                row["branch"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn listed(sandbox: &Sandbox) -> Vec<(String, Option<String>)> {
    names(&sandbox.json(&["workspace", "list", "--json"])["workspaces"])
}

fn named(repository: &str, branch: Option<&str>) -> (String, Option<String>) {
    (repository.to_owned(), branch.map(str::to_owned))
}

fn add(sandbox: &Sandbox, workspace: &Path, repository: &str, branch: Option<&str>) -> Value {
    let mut args = vec![
        "workspace",
        "add",
        text(workspace),
        "--repo",
        repository,
        "--json",
    ];
    if let Some(branch) = branch {
        args.extend(["--branch", branch]);
    }
    sandbox.json(&args)
}

/// The owned directories of the compilation tag.
fn owned_directories(sandbox: &Sandbox) -> usize {
    let dirs = sandbox.root().join("compilation").join("dirs");
    fs::read_dir(dirs)
        .map(|entries| {
            entries
                .filter(|entry| entry.as_ref().unwrap().file_name() != ".staging")
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn list_on_a_missing_root_is_empty_and_creates_nothing() {
    let sandbox = Sandbox::new();
    let human = sandbox.run(&["workspace", "list"]);
    human
        .expect_code(0)
        .expect_stderr(&["no cached workspaces under"]);
    assert_eq!(human.stdout(), "", "results only on stdout");
    let json = sandbox.json(&["workspace", "list", "--json"]);
    assert_eq!(json["workspaces"].as_array().unwrap().len(), 0);
    assert_eq!(json["root"], text(&sandbox.root()));
    assert!(!exists(&sandbox.root()), "a read created the root");
}

#[test]
fn reading_and_removing_commands_never_create_the_compilation_tag() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["set", "--tag", "layout", "k", "v"])
        .expect_code(0);
    sandbox.run(&["workspace", "list"]).expect_code(0);
    sandbox.run(&["workspace", "cleanup"]).expect_code(0);
    sandbox
        .run(&[
            "workspace",
            "export",
            REPO,
            "-o",
            text(&sandbox.path("x.zip")),
        ])
        .expect_code(1)
        .expect_stderr(&["no cached workspace for repository \"zmkfirmware/zmk\""]);
    sandbox
        .run(&["workspace", "delete", REPO, "--all"])
        .expect_code(1)
        .expect_stderr(&["no cached workspace for repository \"zmkfirmware/zmk\""]);
    assert!(!exists(&sandbox.root().join("compilation")));
    assert!(!exists(&sandbox.path("x.zip")));
}

#[test]
fn add_caches_the_repository_or_a_branch_and_list_shows_both() {
    let sandbox = Sandbox::new();
    let workspace = fake_workspace(&sandbox, "ws");

    let repository = add(&sandbox, &workspace, REPO, None);
    let row = &repository["workspace"];
    assert_eq!(row["repository"], REPO);
    assert!(row["branch"].is_null());
    assert_eq!(row["level"], "repository");
    assert_eq!(row["origin"], "injected");
    assert_eq!(row["git"], "keep");
    assert_eq!(row["files"], 5, "build/ is left out, zmk/.git kept");
    assert_eq!(
        row["components"],
        serde_json::json!(["zmk", "zephyr", "modules", ".west"])
    );
    let thirty_days = 30 * DAY.as_secs();
    let expires_in = row["expires_in_seconds"].as_u64().unwrap();
    assert!(
        (thirty_days - 60..=thirty_days).contains(&expires_in),
        "{row}"
    );
    let cached = PathBuf::from(row["path"].as_str().unwrap());
    assert_eq!(
        fs::read_to_string(cached.join("zmk/app/CMakeLists.txt")).unwrap(),
        "project(zmk)\n"
    );
    assert!(!exists(&cached.join("build")));

    let branch = add(&sandbox, &workspace, REPO, Some("main"));
    assert_eq!(branch["workspace"]["level"], "branch");
    let expires_in = branch["workspace"]["expires_in_seconds"].as_u64().unwrap();
    assert!((DAY.as_secs() - 60..=DAY.as_secs()).contains(&expires_in));

    assert_eq!(
        listed(&sandbox),
        [named(REPO, None), named(REPO, Some("main"))]
    );
    let human = sandbox.run(&["workspace", "list"]);
    human.expect_code(0);
    let table = human.stdout();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("REPOSITORY") && lines[0].contains("EXPIRES IN"));
    assert!(lines[1].starts_with(REPO) && lines[1].contains(" - ") && lines[1].contains("29d 23h"));
    assert!(
        lines[2].contains("main") && lines[2].contains("23h 59m"),
        "{table}"
    );
}

#[test]
fn add_notes_what_it_stored_and_quiet_silences_it_without_a_progress_bar() {
    let sandbox = Sandbox::new();
    let workspace = fake_workspace(&sandbox, "ws");
    let noisy = sandbox.run(&["workspace", "add", text(&workspace), "--repo", REPO]);
    noisy.expect_code(0).expect_stderr(&[
        "cached the workspace of repository \"zmkfirmware/zmk\" from",
        "5 files",
        "expires in 29d 23h",
    ]);
    assert_eq!(noisy.stdout(), "");
    assert_eq!(
        noisy.stderr.lines().count(),
        1,
        "stderr is not a terminal, so no progress bar: {}",
        noisy.stderr
    );
    let quiet = sandbox.run(&["-q", "workspace", "add", text(&workspace), "--repo", REPO]);
    quiet.expect_code(0);
    assert_eq!(quiet.stderr, "");
}

#[test]
fn add_refuses_bad_input_with_a_sentence_naming_it_and_creates_nothing() {
    let sandbox = Sandbox::new();
    let missing = sandbox.path("no-such-workspace");
    sandbox
        .run(&["workspace", "add", text(&missing), "--repo", REPO])
        .expect_code(3)
        .expect_stderr(&[text(&missing), "No such file"]);

    let no_zmk = sandbox.path("not-a-workspace");
    fs::create_dir_all(no_zmk.join("zephyr")).unwrap();
    sandbox
        .run(&["workspace", "add", text(&no_zmk), "--repo", REPO])
        .expect_code(2)
        .expect_stderr(&[text(&no_zmk), "has no zmk/ directory"]);

    let file = sandbox.path("file.txt");
    fs::write(&file, b"x").unwrap();
    sandbox
        .run(&["workspace", "add", text(&file), "--repo", REPO])
        .expect_code(2)
        .expect_stderr(&[text(&file), "is not a directory"]);

    let workspace = fake_workspace(&sandbox, "ws");
    sandbox
        .run(&["workspace", "add", text(&workspace), "--repo", ""])
        .expect_code(2)
        .expect_stderr(&["invalid repository", "empty"]);
    sandbox
        .run(&["workspace", "add", text(&workspace)])
        .expect_code(2)
        .expect_stderr(&["--repo"]);
    assert!(!exists(&sandbox.root()), "bad input created the root");
}

#[test]
fn delete_removes_the_repository_level_one_branch_or_all_of_them() {
    let sandbox = Sandbox::new();
    let workspace = fake_workspace(&sandbox, "ws");
    add(&sandbox, &workspace, REPO, None);
    add(&sandbox, &workspace, REPO, Some("main"));
    add(&sandbox, &workspace, REPO, Some("dev"));
    add(&sandbox, &workspace, "other/zmk", None);
    assert_eq!(owned_directories(&sandbox), 4);

    let repository_only = sandbox.run(&["workspace", "delete", REPO]);
    repository_only
        .expect_code(0)
        .expect_stderr(&["deleted 1 workspace of repository \"zmkfirmware/zmk\""]);
    assert_eq!(
        listed(&sandbox),
        [
            named("other/zmk", None),
            named(REPO, Some("dev")),
            named(REPO, Some("main"))
        ],
        "the branches stay"
    );
    sandbox
        .run(&["workspace", "delete", REPO])
        .expect_code(1)
        .expect_stderr(&[
            "no cached workspace for repository \"zmkfirmware/zmk\"",
            "--all",
        ]);

    let one_branch = sandbox.json(&["workspace", "delete", REPO, "--branch", "main", "--json"]);
    assert_eq!(
        one_branch,
        serde_json::json!({"repository": REPO, "branch": "main", "all": false, "deleted": 1})
    );
    sandbox
        .run(&["workspace", "delete", REPO, "--branch", "main"])
        .expect_code(1)
        .expect_stderr(&["no cached workspace for repository \"zmkfirmware/zmk\" branch \"main\""]);

    add(&sandbox, &workspace, REPO, None);
    let all = sandbox.json(&["workspace", "delete", REPO, "--all", "--json"]);
    assert_eq!(all["deleted"], 2, "the repository's and the dev branch's");
    assert_eq!(all["all"], true);
    assert_eq!(listed(&sandbox), [named("other/zmk", None)]);
    assert_eq!(
        owned_directories(&sandbox),
        1,
        "their directories went with them"
    );
    sandbox
        .run(&["workspace", "delete", REPO, "--all"])
        .expect_code(1)
        .expect_stderr(&["no cached workspace for repository \"zmkfirmware/zmk\" (any branch)"]);
    sandbox
        .run(&["workspace", "delete", REPO, "--all", "--branch", "dev"])
        .expect_code(2)
        .expect_stderr(&["--all", "--branch"]);
}

/// Caches a workspace for `repository` at the repository level as if stored `days_ago` days
/// ago, through cache-compilation on a manual clock.
fn seed_old_workspace(sandbox: &Sandbox, workspace: &Path, repository: &str, days_ago: u64) {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let config = UserCacheConfig {
        cache_path: Some(sandbox.root()),
        options: CacheOptions {
            clock: Arc::new(ManualClock::new(now_ms - days_ago * DAY.as_millis() as u64)),
            ..CacheOptions::default()
        },
        ..UserCacheConfig::default()
    };
    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
    let compilation = CompilationCache::open(&coordinator, &config).unwrap();
    compilation
        .workspaces
        .cache_workspace(
            workspace,
            &WorkspaceId::repository(repository).unwrap(),
            WorkspaceDetails::default(),
            &mut |_| {},
        )
        .unwrap()
        .unwrap();
    coordinator.reset().unwrap();
}

#[test]
fn cleanup_removes_workspaces_stored_longer_ago_than_the_duration() {
    let sandbox = Sandbox::new();
    let workspace = fake_workspace(&sandbox, "ws");
    seed_old_workspace(&sandbox, &workspace, "old/zmk", 10);
    add(&sandbox, &workspace, REPO, None);
    assert_eq!(
        listed(&sandbox),
        [named("old/zmk", None), named(REPO, None)]
    );
    let ages = sandbox.json(&["workspace", "list", "--json"]);
    assert!(ages["workspaces"][0]["age_seconds"].as_u64().unwrap() >= 10 * DAY.as_secs() - 60);

    let default_week = sandbox.run(&["workspace", "cleanup"]);
    default_week
        .expect_code(0)
        .expect_stderr(&["removed 1 workspace stored more than 7d ago"]);
    assert_eq!(listed(&sandbox), [named(REPO, None)]);

    let none_old = sandbox.json(&["workspace", "cleanup", "--older-than", "1h", "--json"]);
    assert_eq!(
        none_old,
        serde_json::json!({"older_than_seconds": 3600, "removed": 0})
    );
    let everything = sandbox.json(&["workspace", "cleanup", "--older-than", "0s", "--json"]);
    assert_eq!(everything["removed"], 1);
    assert_eq!(listed(&sandbox), []);
    assert_eq!(owned_directories(&sandbox), 0);

    sandbox
        .run(&["workspace", "cleanup", "--older-than", "a week"])
        .expect_code(2)
        .expect_stderr(&["\"a week\""]);
}

/// The files under `dir`, relative, sorted, with their content, without a cached workspace's
/// content manifest (`.glovebox-manifest` at its top, not part of the workspace).
fn tree(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        for entry in fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                let relative = entry.path().strip_prefix(dir).unwrap().to_owned();
                if relative == Path::new(".glovebox-manifest") {
                    continue;
                }
                let content = fs::read_to_string(entry.path()).unwrap();
                found.push((relative.to_str().unwrap().to_owned(), content));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn export_writes_each_format_and_import_brings_each_back() {
    let sandbox = Sandbox::new();
    let workspace = fake_workspace(&sandbox, "ws");
    let cached = add(&sandbox, &workspace, REPO, Some("main"));
    let cached_path = PathBuf::from(cached["workspace"]["path"].as_str().unwrap());
    let mut without_git = tree(&cached_path);
    without_git.retain(|(path, _)| !path.contains(".git"));

    for (file, format, expected) in [
        ("ws.tar.gz", None, "tar.gz"),
        ("ws.zip", None, "zip"),
        ("ws.tar", Some("tar"), "tar"),
        ("named-by-format", Some("zip"), "zip"),
    ] {
        let output = sandbox.path(file);
        let mut args = vec![
            "workspace",
            "export",
            REPO,
            "--branch",
            "main",
            "-o",
            text(&output),
            "--json",
        ];
        if let Some(format) = format {
            args.extend(["--format", format]);
        }
        let report = sandbox.json(&args);
        assert_eq!(report["format"], expected, "{file}");
        assert_eq!(report["repository"], REPO);
        assert_eq!(report["branch"], "main");
        assert_eq!(report["files"], 4, "{file}: .git is left out by default");
        assert_eq!(report["include_git"], false);
        let written = PathBuf::from(report["path"].as_str().unwrap());
        assert!(written.to_str().unwrap().ends_with(expected), "{written:?}");
        assert_eq!(
            fs::metadata(&written).unwrap().len(),
            report["archive_bytes"].as_u64().unwrap()
        );

        let repository = format!("imported/{expected}-{file}");
        let imported = sandbox.json(&[
            "workspace",
            "import",
            text(&written),
            "--repo",
            &repository,
            "--json",
        ]);
        assert_eq!(imported["workspace"]["origin"], "imported-archive");
        assert_eq!(imported["workspace"]["repository"], repository.as_str());
        let path = PathBuf::from(imported["workspace"]["path"].as_str().unwrap());
        assert_eq!(tree(&path), without_git, "{file} round trip");
    }

    let with_git = sandbox.json(&[
        "workspace",
        "export",
        REPO,
        "--branch",
        "main",
        "-o",
        text(&sandbox.path("full.tar.gz")),
        "--include-git",
        "--json",
    ]);
    assert_eq!(with_git["files"], 5);
    assert_eq!(with_git["include_git"], true);
}

#[test]
fn export_of_an_uncached_branch_falls_back_to_the_repository_and_says_so() {
    let sandbox = Sandbox::new();
    let workspace = fake_workspace(&sandbox, "ws");
    add(&sandbox, &workspace, REPO, None);
    let output = sandbox.path("dev.tar.gz");
    let run = sandbox.run(&[
        "workspace",
        "export",
        REPO,
        "--branch",
        "dev",
        "-o",
        text(&output),
        "--json",
    ]);
    run.expect_code(0)
        .expect_stderr(&["branch \"dev\" has no cached workspace; exported the repository's"]);
    assert!(run.json()["branch"].is_null());
    assert!(exists(&output));
    let human = sandbox.run(&["workspace", "export", REPO, "-o", text(&output)]);
    human.expect_code(0).expect_stderr(&[
        "exported the workspace of repository \"zmkfirmware/zmk\" to",
        text(&output),
        "4 files",
    ]);
}

#[test]
fn export_refuses_unknown_or_conflicting_formats_uncached_workspaces_and_missing_directories() {
    let sandbox = Sandbox::new();
    let workspace = fake_workspace(&sandbox, "ws");
    add(&sandbox, &workspace, REPO, None);
    let output = sandbox.path("out.zip");
    sandbox
        .run(&[
            "workspace",
            "export",
            REPO,
            "-o",
            text(&output),
            "--format",
            "rar",
        ])
        .expect_code(2)
        .expect_stderr(&["unknown archive format \"rar\"", "tar.gz, tar or zip"]);
    sandbox
        .run(&[
            "workspace",
            "export",
            REPO,
            "-o",
            text(&output),
            "--format",
            "tar",
        ])
        .expect_code(2)
        .expect_stderr(&[text(&output), "--format tar"]);
    sandbox
        .run(&[
            "workspace",
            "export",
            "other/zmk",
            "--branch",
            "x",
            "-o",
            text(&output),
        ])
        .expect_code(1)
        .expect_stderr(&["no cached workspace for repository \"other/zmk\" and branch \"x\""]);
    sandbox
        .run(&["workspace", "export", REPO])
        .expect_code(2)
        .expect_stderr(&["--output"]);
    let nowhere = sandbox.path("no-such-dir").join("out.tar.gz");
    sandbox
        .run(&["workspace", "export", REPO, "-o", text(&nowhere)])
        .expect_code(3)
        .expect_stderr(&[text(&sandbox.path("no-such-dir"))]);
    assert!(!exists(&output), "nothing written on refusal");
}

/// A `.tar` archive holding `entries` (path, content), names written byte for byte (the tar
/// crate's own setters refuse `..`, which the unsafe-archive case needs).
fn tar_archive(path: &Path, entries: &[(&str, &str)]) {
    let mut builder = tar::Builder::new(fs::File::create(path).unwrap());
    for (name, content) in entries {
        let mut header = tar::Header::new_gnu();
        let raw_name = &mut header.as_old_mut().name;
        raw_name.fill(0);
        raw_name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, content.as_bytes()).unwrap();
    }
    builder.finish().unwrap();
}

#[test]
fn import_refuses_missing_unknown_corrupt_and_non_workspace_archives() {
    let sandbox = Sandbox::new();
    let missing = sandbox.path("missing.tar.gz");
    sandbox
        .run(&["workspace", "import", text(&missing), "--repo", REPO])
        .expect_code(3)
        .expect_stderr(&[text(&missing), "No such file"]);
    let unknown = sandbox.path("workspace.rar");
    fs::write(&unknown, b"Rar!").unwrap();
    sandbox
        .run(&["workspace", "import", text(&unknown), "--repo", REPO])
        .expect_code(2)
        .expect_stderr(&["unknown archive format", text(&unknown)]);
    let not_a_workspace = sandbox.path("plain-dir");
    fs::create_dir_all(&not_a_workspace).unwrap();
    sandbox
        .run(&[
            "workspace",
            "import",
            text(&not_a_workspace),
            "--repo",
            REPO,
        ])
        .expect_code(2)
        .expect_stderr(&[text(&not_a_workspace), "has no zmk/ directory"]);
    assert!(
        !exists(&sandbox.root()),
        "refused before anything was opened"
    );

    let no_zmk = sandbox.path("no-zmk.tar");
    tar_archive(&no_zmk, &[("zephyr/Kconfig", "k"), (".west/config", "c")]);
    sandbox
        .run(&["workspace", "import", text(&no_zmk), "--repo", REPO])
        .expect_code(2)
        .expect_stderr(&[text(&no_zmk), "no zmk/ directory"]);
    let corrupt = sandbox.path("corrupt.tar.gz");
    fs::write(&corrupt, b"this is not gzip at all").unwrap();
    sandbox
        .run(&["workspace", "import", text(&corrupt), "--repo", REPO])
        .expect_code(3)
        .expect_stderr(&[text(&corrupt)]);
    let escaping = sandbox.path("escaping.tar");
    tar_archive(&escaping, &[("zmk/app/x", "x"), ("zmk/../../evil", "boom")]);
    sandbox
        .run(&["workspace", "import", text(&escaping), "--repo", REPO])
        .expect_code(3)
        .expect_stderr(&["unsafe entry", text(&escaping)]);
    assert_eq!(listed(&sandbox), [], "nothing was stored");
}

#[test]
fn import_of_a_directory_caches_it_as_imported() {
    let sandbox = Sandbox::new();
    let workspace = fake_workspace(&sandbox, "ws");
    let imported = sandbox.json(&[
        "workspace",
        "import",
        text(&workspace),
        "--repo",
        REPO,
        "--branch",
        "v2",
        "--json",
    ]);
    assert_eq!(imported["workspace"]["origin"], "imported-directory");
    assert_eq!(imported["workspace"]["branch"], "v2");
    assert_eq!(listed(&sandbox), [named(REPO, Some("v2"))]);
}

#[test]
fn show_lists_the_workspaces_with_size_age_and_expiry() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["set", "--tag", "layout", "k", "v"])
        .expect_code(0);
    let without = sandbox.json(&["show", "--json"]);
    assert_eq!(without["workspaces"], serde_json::json!([]));
    assert!(!sandbox.run(&["show"]).stdout().contains("workspaces"));

    let workspace = fake_workspace(&sandbox, "ws");
    add(&sandbox, &workspace, REPO, None);
    add(&sandbox, &workspace, REPO, Some("main"));
    let json = sandbox.json(&["show", "--json"]);
    assert_eq!(
        names(&json["workspaces"]),
        [named(REPO, None), named(REPO, Some("main"))]
    );
    let first = &json["workspaces"][0];
    assert!(first["size_bytes"].as_u64().unwrap() > 0);
    assert!(first["expires_in_seconds"].as_u64().unwrap() > 29 * DAY.as_secs());
    assert!(first["age_seconds"].as_u64().unwrap() < 600);
    assert_eq!(json["tags"][0]["tag"], "compilation");
    assert_eq!(json["tags"][0]["entries"], 2);

    let human = sandbox.run(&["show"]);
    human.expect_code(0);
    let stdout = human.stdout();
    let section = stdout
        .split("workspaces (tag 'compilation'):\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no workspaces section:\n{stdout}"));
    let lines: Vec<&str> = section.lines().collect();
    assert_eq!(lines.len(), 3, "{section}");
    assert!(
        lines[0].contains("SIZE") && lines[0].contains("AGE") && lines[0].contains("EXPIRES IN")
    );
    assert!(
        lines[1].starts_with(REPO) && lines[1].contains("29d 23h"),
        "{section}"
    );
    assert!(
        lines[2].contains("main") && lines[2].contains("23h 59m"),
        "{section}"
    );
}

#[test]
fn every_workspace_subcommand_has_help_with_examples() {
    let sandbox = Sandbox::new();
    for subcommand in ["list", "add", "delete", "cleanup", "export", "import"] {
        let help = sandbox.run(&["workspace", subcommand, "--help"]);
        help.expect_code(0);
        assert!(
            help.stdout()
                .contains("Examples:\n  glovebox-cache workspace"),
            "workspace {subcommand} --help has no examples:\n{}",
            help.stdout()
        );
    }
    sandbox
        .run(&["workspace"])
        .expect_code(2)
        .expect_stderr(&["list", "export"]);
}

#[test]
fn a_workspace_ttl_from_the_config_file_applies_to_workspace_add() {
    let sandbox = Sandbox::new();
    let workspace = fake_workspace(&sandbox, "ws");
    let config = sandbox.path("cache.toml");
    fs::write(&config, "[ttl]\nworkspace_branch = \"2h\"\n").unwrap();
    let mut command = sandbox.command();
    command
        .arg("--config")
        .arg(&config)
        .args(["workspace", "add", text(&workspace), "--repo", REPO])
        .args(["--branch", "main", "--json"]);
    let added = crate::support::run(&mut command).expect_code(0).json();
    let expires_in = added["workspace"]["expires_in_seconds"].as_u64().unwrap();
    // Two hours from the file, not the one day default; the lower bound is an hour of slack.
    assert!((3600..=7200).contains(&expires_in), "{added}");
}

/// Issue 19: cached workspaces keep directory modes, so a read-only (0555) directory is in the
/// cache; a user whom permission bits stop must still be able to delete, and so evict, it. Run
/// as `nobody` through `setpriv` (the suite runs as root, as CI does, and root ignores the bits).
#[test]
fn a_workspace_with_a_read_only_directory_is_deleted_by_a_user_permission_bits_apply_to() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new();
    let workspace = fake_workspace(&sandbox, "ws");
    let locked = workspace.join("zmk/locked");
    fs::create_dir_all(&locked).unwrap();
    fs::write(locked.join("inside.h"), b"#pragma once\n").unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
    // Everything in the sandbox belongs to nobody, as if nobody had made it.
    let sandbox_dir = sandbox.path("");
    let mut pending = vec![sandbox_dir.clone()];
    while let Some(dir) = pending.pop() {
        std::os::unix::fs::lchown(&dir, Some(65534), Some(65534)).unwrap();
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            std::os::unix::fs::lchown(&path, Some(65534), Some(65534)).unwrap();
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                pending.push(path);
            }
        }
    }
    let as_nobody = |args: &[&str]| {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_glovebox-cache"))
            .args(args)
            .env_clear()
            .env("HOME", sandbox.path("home"))
            .env("XDG_CACHE_HOME", sandbox.path("xdg"))
            .env("GLOVEBOX_CACHE_PATH", sandbox.root())
            .stdin(std::process::Stdio::null());
        crate::support::run(&mut command)
    };
    if !Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "true"])
        .status()
        .is_ok_and(|status| status.success())
    {
        eprintln!(
            "workspace: SKIPPED read-only directory as nobody: setpriv cannot drop to nobody here"
        );
        return;
    }

    as_nobody(&["workspace", "add", text(&workspace), "--repo", REPO]).expect_code(0);
    assert_eq!(owned_directories(&sandbox), 1);
    as_nobody(&["workspace", "delete", REPO]).expect_code(0);
    assert_eq!(
        owned_directories(&sandbox),
        0,
        "the read-only directory went too"
    );
}

/// Issue 19: there was no way to get a workspace out from the command line but `export`.
#[test]
fn restore_copies_a_workspace_out_in_each_link_mode() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["workspace", "restore", REPO, text(&sandbox.path("none"))])
        .expect_code(1);
    let workspace = fake_workspace(&sandbox, "ws");
    let cached = add(&sandbox, &workspace, REPO, None);
    let cached_path = PathBuf::from(cached["workspace"]["path"].as_str().unwrap());

    for link in ["auto", "copy", "hardlink"] {
        let dest = sandbox.path(&format!("restored-{link}"));
        let report = sandbox.json(&[
            "workspace",
            "restore",
            REPO,
            "--branch",
            "main",
            text(&dest),
            "--link",
            link,
            "--json",
        ]);
        assert_eq!(report["link"], link);
        assert_eq!(report["placed"], link);
        assert_eq!(report["branch"], Value::Null, "fell back to the repository");
        assert_eq!(report["files"], 5);
        assert_eq!(tree(&dest), tree(&cached_path), "{link}");
    }
    // The machine's filesystem may or may not clone: either the workspace, or a clear refusal.
    let dest = sandbox.path("restored-reflink");
    let run = sandbox.run(&[
        "workspace",
        "restore",
        REPO,
        text(&dest),
        "--link",
        "reflink",
    ]);
    if run.code != 0 {
        run.expect_code(3)
            .expect_stderr(&["reflink", "--link auto"]);
    } else {
        assert_eq!(tree(&dest), tree(&cached_path));
    }
    sandbox
        .run(&[
            "workspace",
            "restore",
            REPO,
            text(&dest),
            "--link",
            "symbolic",
        ])
        .expect_code(2)
        .expect_stderr(&["symbolic"]);
    // Never merged into an existing workspace.
    sandbox
        .run(&[
            "workspace",
            "restore",
            REPO,
            text(&sandbox.path("restored-copy")),
        ])
        .expect_code(2)
        .expect_stderr(&["already exists"]);
}

/// Issue 19: a symlink out of the workspace is refused by `add` and `import` alike, naming the
/// link and the way to accept it, and accepted by both with `--allow-escaping-symlinks`.
#[test]
fn escaping_symlinks_are_refused_naming_the_link_unless_allowed() {
    let sandbox = Sandbox::new();
    let workspace = fake_workspace(&sandbox, "ws");
    std::os::unix::fs::symlink("/etc/passwd", workspace.join("zmk/passwd-link")).unwrap();
    for verb in ["add", "import"] {
        let repo_flag = ["--repo", REPO];
        let mut args = vec!["workspace", verb, text(&workspace)];
        args.extend(repo_flag);
        sandbox
            .run(&args)
            .expect_code(3)
            .expect_stderr(&["zmk/passwd-link", "--allow-escaping-symlinks"]);
        args.push("--allow-escaping-symlinks");
        sandbox.run(&args).expect_code(0);
    }
}

/// Issue 19: a workspace over the limit was refused (exit 3) with a message naming no way out,
/// and the command had no way to raise the limit.
#[test]
fn an_over_limit_add_names_the_limit_and_max_size_raises_it() {
    let sandbox = Sandbox::new();
    let workspace = fake_workspace(&sandbox, "ws");
    let args = ["workspace", "add", text(&workspace), "--repo", REPO];
    let mut limited = args.to_vec();
    limited.extend(["--max-size", "1KiB"]);
    sandbox.run(&limited).expect_code(3).expect_stderr(&[
        "1024",
        "--max-size",
        "tag 'compilation'",
    ]);
    let mut raised = args.to_vec();
    raised.extend(["--max-size", "1GiB"]);
    sandbox.run(&raised).expect_code(0);
    sandbox
        .run(&[
            "workspace",
            "import",
            text(&workspace),
            "--repo",
            REPO,
            "--max-size",
            "ten",
        ])
        .expect_code(2)
        .expect_stderr(&["ten"]);
}

/// Issue 19: adding a workspace silently evicted another. The store says so on stderr and in
/// `--json`.
#[test]
fn an_add_that_evicts_another_workspace_warns_and_reports_it() {
    let sandbox = Sandbox::new();
    let workspace = fake_workspace(&sandbox, "ws");
    let first = add(&sandbox, &workspace, REPO, None);
    assert_eq!(first["evicted"], serde_json::json!([]));
    let size = first["workspace"]["size_bytes"].as_u64().unwrap();
    let limit = (size * 3 / 2).to_string();

    let run = sandbox.run(&[
        "workspace",
        "add",
        text(&workspace),
        "--repo",
        "other/zmk",
        "--max-size",
        &limit,
        "--json",
    ]);
    run.expect_code(0).expect_stderr(&[
        "warning: storing this workspace evicted 1 other workspace",
        "--max-size",
    ]);
    let report = run.json();
    let evicted = report["evicted"].as_array().unwrap();
    assert_eq!(evicted.len(), 1, "{report}");
    assert!(evicted[0].as_str().unwrap().starts_with("workspace:repo:"));
}

/// Issue 19: after `restore --link hardlink`, a restored file edited in place (by another
/// process) changes the cache's copy; the next command that reads the workspace drops it
/// instead of serving it.
#[test]
fn a_file_edited_after_a_hardlink_restore_is_never_served_again() {
    use std::io::Write as _;
    let sandbox = Sandbox::new();
    let workspace = fake_workspace(&sandbox, "ws");
    add(&sandbox, &workspace, REPO, None);
    let dest = sandbox.path("restored");
    sandbox
        .run(&[
            "workspace",
            "restore",
            REPO,
            text(&dest),
            "--link",
            "hardlink",
        ])
        .expect_code(0);
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(dest.join(".west/config"))
        .unwrap();
    file.write_all(b"# edited in place\n").unwrap();
    drop(file);

    sandbox
        .run(&["workspace", "restore", REPO, text(&sandbox.path("again"))])
        .expect_code(1);
    assert!(!sandbox.path("again").join("zmk").exists());
    assert_eq!(
        owned_directories(&sandbox),
        0,
        "the entry and its directory are gone"
    );
}
