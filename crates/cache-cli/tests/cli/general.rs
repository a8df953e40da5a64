//! Help, usage errors, global options, root resolution, logging.

use std::process::Command;

use crate::support::{Run, Sandbox, exists, run};

#[test]
fn every_command_has_help_with_examples() {
    let sandbox = Sandbox::new();
    for command in [
        "show",
        "keys",
        "get",
        "set",
        "delete",
        "clear",
        "cleanup",
        "doctor",
        "workspace",
    ] {
        let help = sandbox.run(&[command, "--help"]);
        help.expect_code(0);
        assert!(
            help.stdout().contains("Examples:"),
            "{command} --help has no examples:\n{}",
            help.stdout()
        );
    }
    let top = sandbox.run(&["--help"]);
    top.expect_code(0);
    assert!(top.stdout().contains("Exit codes"));
}

#[test]
fn usage_errors_from_clap_exit_with_2() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["frobnicate"])
        .expect_code(2)
        .expect_stderr(&["frobnicate"]);
    sandbox.run(&[]).expect_code(2);
    sandbox
        .run(&["keys"])
        .expect_code(2)
        .expect_stderr(&["--tag"]);
    sandbox
        .run(&["show", "-v", "--quiet"])
        .expect_code(2)
        .expect_stderr(&["--quiet"]);
}

#[test]
fn global_options_are_accepted_before_or_after_the_command() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["set", "--tag", "layout", "k", "v"])
        .expect_code(0);
    // The disk's free space moves with every other process on the machine: not compared.
    let without_free_space = |mut report: serde_json::Value| {
        for tag in report["tags"].as_array_mut().unwrap() {
            tag.as_object_mut().unwrap().remove("filesystem_free_bytes");
        }
        report
    };
    let before = without_free_space(sandbox.json(&["--json", "show"]));
    let after = without_free_space(sandbox.json(&["show", "--json"]));
    assert_eq!(before["tags"][0]["tag"], "layout");
    assert_eq!(before["tags"], after["tags"]);
    let other_root = sandbox.path("other");
    let elsewhere = sandbox.json(&["show", "--json", "--root", other_root.to_str().unwrap()]);
    assert_eq!(elsewhere["tags"].as_array().unwrap().len(), 0);
}

#[test]
fn the_root_comes_from_root_then_glovebox_cache_path_then_xdg_then_home() {
    let sandbox = Sandbox::new();
    let explicit = sandbox.path("explicit");
    run(sandbox.command().args([
        "--root",
        explicit.to_str().unwrap(),
        "set",
        "--tag",
        "t",
        "k",
        "v",
    ]))
    .expect_code(0);
    assert!(exists(&explicit.join("t").join("cache.redb")));
    assert!(
        !exists(&sandbox.root()),
        "--root wins over GLOVEBOX_CACHE_PATH"
    );

    run(sandbox.command().args(["set", "--tag", "t", "k", "v"])).expect_code(0);
    assert!(exists(&sandbox.root().join("t").join("cache.redb")));

    run(sandbox.bare_command().args(["set", "--tag", "t", "k", "v"])).expect_code(0);
    assert!(exists(&sandbox.path("xdg").join("glovebox").join("t")));

    run(sandbox
        .bare_command()
        .env_remove("XDG_CACHE_HOME")
        .args(["set", "--tag", "t", "k", "v"]))
    .expect_code(0);
    assert!(exists(
        &sandbox
            .path("home")
            .join(".cache")
            .join("glovebox")
            .join("t")
    ));
}

#[test]
fn a_root_that_is_a_file_is_an_error_naming_it() {
    let sandbox = Sandbox::new();
    let file = sandbox.path("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let root = file.to_str().unwrap();
    for args in [
        vec!["show"],
        vec!["keys", "--tag", "t"],
        vec!["set", "--tag", "t", "k", "v"],
        vec!["cleanup"],
        vec!["doctor"],
    ] {
        let mut full = vec!["--root", root];
        full.extend(args.iter().copied());
        sandbox
            .run(&full)
            .expect_code(3)
            .expect_stderr(&[root, "not a directory"]);
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[test]
fn verbose_logs_debug_events_on_stderr() {
    let sandbox = Sandbox::new();
    sandbox.run(&["set", "--tag", "t", "k", "v"]).expect_code(0);
    let quiet_by_default = sandbox.run(&["get", "--tag", "t", "k"]);
    assert!(!quiet_by_default.stderr.contains("DEBUG"));
    let verbose = sandbox.run(&["-v", "get", "--tag", "t", "k"]);
    verbose
        .expect_code(0)
        .expect_stderr(&["DEBUG", "cache root"]);
    assert_eq!(verbose.stdout, b"v", "logs never go to stdout");
}

#[test]
fn quiet_silences_notes_but_not_results_or_errors() {
    let sandbox = Sandbox::new();
    let noisy = sandbox.run(&["set", "--tag", "t", "k", "v"]);
    noisy
        .expect_code(0)
        .expect_stderr(&["stored key \"k\" in tag 't'"]);
    let quiet = sandbox.run(&["--quiet", "set", "--tag", "t", "k2", "v2"]);
    quiet.expect_code(0);
    assert_eq!(quiet.stderr, "");
    let keys = sandbox.run(&["keys", "--tag", "t", "-q"]);
    assert_eq!(keys.stdout(), "\"k\"\n\"k2\"\n");
    sandbox
        .run(&["-q", "get", "--tag", "t", "missing"])
        .expect_code(1)
        .expect_stderr(&["missing"]);
}

#[test]
fn kill_switches_disable_programs_not_this_tool() {
    let sandbox = Sandbox::new();
    run(sandbox
        .command()
        .env("GLOVEBOX_CACHE_GLOBAL", "false")
        .env("GLOVEBOX_CACHE_LAYOUT", "disabled")
        .args(["set", "--tag", "layout", "k", "stored"]))
    .expect_code(0);
    let get = run(sandbox
        .command()
        .env("GLOVEBOX_CACHE_GLOBAL", "0")
        .args(["get", "--tag", "layout", "k"]));
    get.expect_code(0);
    assert_eq!(get.stdout, b"stored");
}

/// Issue 13, item 10: a command behind another process's write lock fails after `--timeout`,
/// naming the tag and the file, instead of waiting (it waited 10 min 48 s before). The lock is
/// held the way a writer stopped mid-transaction holds it: a redb write transaction, open on the
/// tag's file in this (the test) process, in multi-writer mode as the cache opens it.
#[test]
fn trust_10_behind_a_held_write_lock_reads_proceed_and_set_and_doctor_fail_clearly_instead_of_waiting()
 {
    use std::time::Duration;

    use crate::support::run_bounded;

    const HANG: Duration = Duration::from_secs(60);
    let sandbox = Sandbox::new();
    sandbox.seed("locked", Duration::ZERO, None, &[(b"k", b"held")]);
    sandbox.seed("free", Duration::ZERO, None, &[(b"k", b"free")]);
    let database = sandbox.database("locked");
    let holder = redb::Database::builder()
        .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
        .open(&database)
        .unwrap();
    let held = holder.begin_write().unwrap();

    let bounded = |args: &[&str]| {
        let mut command = sandbox.command();
        command.args(["--timeout", "1s"]).args(args);
        run_bounded(&mut command, HANG)
    };
    // A read opens the file read-only: it needs no lock a writer holds, and reads the last
    // committed state.
    let read = bounded(&["get", "--tag", "locked", "k"]);
    read.expect_code(0);
    assert_eq!(read.stdout, b"held");
    let show = bounded(&["show"]);
    show.expect_code(0);
    assert!(
        show.stdout().contains("locked") && show.stdout().contains("free"),
        "both tags are shown:\n{}",
        show.stdout()
    );
    let named = ["timed out", "'locked'", database.to_str().unwrap()];
    bounded(&["set", "--tag", "locked", "k", "new"])
        .expect_code(3)
        .expect_stderr(&named);
    bounded(&["doctor"])
        .expect_code(4)
        .expect_stderr(&["could not check tag(s) 'locked'", "timed out"]);

    held.abort().unwrap();
    drop(holder);
    let after = bounded(&["get", "--tag", "locked", "k"]);
    after.expect_code(0);
    assert_eq!(
        after.stdout, b"held",
        "the set that timed out stored nothing"
    );
}

/// `set` of a 2 MB value under a 1 MiB file-size limit (`ulimit -f`, `SIGXFSZ` ignored, so the
/// write fails with `EFBIG` as on a full disk): a failure whose cause is an I/O error.
fn set_past_a_file_size_limit(sandbox: &Sandbox) -> Run {
    let value = sandbox.path("big");
    std::fs::write(&value, vec![7u8; 2_000_000]).expect("write the value file");
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"trap "" XFSZ; ulimit -f 2048 || exit 97; exec "$@""#)
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_glovebox-cache"))
        .args(["set", "--tag", "t", "k", "--file"])
        .arg(&value)
        .env_clear()
        .env("HOME", sandbox.path("home"))
        .env("GLOVEBOX_CACHE_PATH", sandbox.root())
        .stdin(std::process::Stdio::null());
    let run = run(&mut command);
    run.expect_code(3);
    run
}

/// Item 16 of issue 13: every error repeated its cause (`...: File too large (os error 27): File
/// too large (os error 27)`), because the core's errors both printed their source and returned it
/// from `source()`, and the CLI prints the whole chain. Now the cause shows once.
#[test]
fn trust_16_a_failing_command_shows_its_cause_once() {
    let sandbox = Sandbox::new();
    let failed = set_past_a_file_size_limit(&sandbox);
    failed.expect_stderr(&["glovebox-cache: ", "\"k\"", "File too large"]);
    assert_eq!(
        failed.stderr.matches("File too large").count(),
        1,
        "the cause once:\n{}",
        failed.stderr
    );
}

/// Item 16 of issue 13: the CLI printed its error, and before it the core had logged the same
/// failure as an `ERROR` line. Now a failing command reports each failure once, on one line.
#[test]
fn trust_16_a_failing_command_prints_its_error_once_not_also_as_a_log_line() {
    let sandbox = Sandbox::new();
    let failed = set_past_a_file_size_limit(&sandbox);
    let lines: Vec<&str> = failed.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, the error:\n{}", failed.stderr);
    assert!(
        lines[0].starts_with("glovebox-cache: "),
        "{}",
        failed.stderr
    );
}

/// Item 16 of issue 13: a tag named `path` had `GLOVEBOX_CACHE_PATH`, the root variable, as its
/// kill switch. Such a tag is refused before anything is created, with the variable named.
#[test]
fn trust_16_a_tag_whose_kill_switch_is_a_configuration_variable_is_refused() {
    let sandbox = Sandbox::new();
    for (tag, variable) in [
        ("path", "GLOVEBOX_CACHE_PATH"),
        ("ttl_workspace_base", "GLOVEBOX_CACHE_TTL_"),
    ] {
        sandbox
            .run(&["set", "--tag", tag, "k", "v"])
            .expect_code(2)
            .expect_stderr(&[tag, variable]);
    }
    assert!(!exists(&sandbox.root()), "nothing was created");
}

#[test]
fn bash_and_zsh_completions_name_every_subcommand() {
    let sandbox = Sandbox::new();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let run = sandbox.run(&["completions", shell]);
        run.expect_code(0);
        assert!(!run.stdout.is_empty(), "{shell}: empty script");
    }
    for shell in ["bash", "zsh"] {
        let script = sandbox.run(&["completions", shell]).stdout();
        for subcommand in [
            "show",
            "stats",
            "metrics",
            "keys",
            "get",
            "set",
            "delete",
            "clear",
            "cleanup",
            "config",
            "doctor",
            "workspace",
            "completions",
        ] {
            assert!(
                script.contains(subcommand),
                "{shell} completions lack {subcommand}"
            );
        }
        assert!(
            script.contains("glovebox-cache"),
            "{shell}: no command name"
        );
    }
    let bash = sandbox.run(&["completions", "bash"]).stdout();
    assert!(bash.contains("complete -F"), "not a bash completion script");
    let zsh = sandbox.run(&["completions", "zsh"]).stdout();
    assert!(
        zsh.starts_with("#compdef glovebox-cache"),
        "not a zsh completion script"
    );
    // Writing a script needs no cache root: nothing was created.
    assert!(!crate::support::exists(&sandbox.root()));
}

#[test]
fn help_is_wrapped_to_the_terminal_width() {
    let sandbox = Sandbox::new();
    for width in [60usize, 140] {
        let mut command = sandbox.command();
        command.env("COLUMNS", width.to_string()).arg("--help");
        let help = run(&mut command).expect_code(0).stdout();
        let longest = help.lines().map(|line| line.chars().count()).max();
        assert!(longest.is_some_and(|longest| longest <= width), "{help}");
        // The long text fills the width it is given (clap's fixed 100 columns would not).
        assert!(
            longest.is_some_and(|longest| longest > width - 10),
            "{help}"
        );
    }
}
