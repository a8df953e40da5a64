//! The configuration file: where it is found, precedence (file < environment < command line),
//! limits it sets on a tag, `config` showing each value's origin, and bad files.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::support::{Sandbox, run};

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().expect("a parent")).expect("create the config's directory");
    fs::write(path, text).expect("write the config file");
}

/// The setting `key` of a `config --json` report.
fn setting<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["settings"]
        .as_array()
        .expect("settings")
        .iter()
        .find(|setting| setting["key"] == key)
        .unwrap_or_else(|| panic!("no setting {key} in {report:#}"))
}

#[test]
fn the_root_comes_from_the_file_then_the_environment_then_the_flag() {
    let sandbox = Sandbox::new();
    let config = sandbox.path("cache.toml");
    let file_root = sandbox.path("file-root");
    write(&config, &format!("root = \"{}\"\n", file_root.display()));

    let mut command = sandbox.bare_command();
    command
        .env("GLOVEBOX_CACHE_CONFIG", &config)
        .args(["config", "--json"]);
    let report = run(&mut command).expect_code(0).json();
    let root = setting(&report, "root");
    assert_eq!(root["value"], file_root.display().to_string());
    assert_eq!(root["origin"]["kind"], "file");
    assert_eq!(root["origin"]["path"], config.display().to_string());

    let mut command = sandbox.command();
    command
        .env("GLOVEBOX_CACHE_CONFIG", &config)
        .args(["config", "--json"]);
    let report = run(&mut command).expect_code(0).json();
    let root = setting(&report, "root");
    assert_eq!(root["value"], sandbox.root().display().to_string());
    assert_eq!(root["origin"]["kind"], "environment");
    assert_eq!(root["origin"]["variable"], "GLOVEBOX_CACHE_PATH");

    let flag_root = sandbox.path("flag-root");
    let mut command = sandbox.command();
    command
        .env("GLOVEBOX_CACHE_CONFIG", &config)
        .arg("--root")
        .arg(&flag_root)
        .args(["config", "--json"]);
    let report = run(&mut command).expect_code(0).json();
    let root = setting(&report, "root");
    assert_eq!(root["value"], flag_root.display().to_string());
    assert_eq!(root["origin"]["kind"], "command_line");
    assert_eq!(root["origin"]["option"], "--root");
}

#[test]
fn the_file_is_found_under_xdg_config_home_and_config_shows_each_origin() {
    let sandbox = Sandbox::new();
    let xdg_config = sandbox.path("xdg-config");
    let file = xdg_config.join("glovebox/cache.toml");
    write(
        &file,
        "[defaults]\nmax_size = \"1GiB\"\ntimeout = \"2m\"\n\n[tags.notes]\neviction = \"least-recently-used\"\n\n[ttl]\nworkspace_base = \"2d\"\n\n[remote]\nurl = \"redis://127.0.0.1:1/0\"\n",
    );
    let mut command = sandbox.command();
    command
        .env("XDG_CONFIG_HOME", &xdg_config)
        .args(["config", "--json", "--timeout", "5s"]);
    let report = run(&mut command).expect_code(0).json();
    assert_eq!(report["file"], file.display().to_string());
    assert_eq!(report["file_found"], true);

    let max_size = setting(&report, "defaults.max_size");
    assert_eq!(max_size["value"], (1u64 << 30).to_string());
    assert_eq!(max_size["origin"]["kind"], "file");
    let timeout = setting(&report, "defaults.timeout");
    assert_eq!(timeout["value"], "5s");
    assert_eq!(timeout["origin"]["kind"], "command_line");
    assert_eq!(
        setting(&report, "defaults.max_entries")["origin"]["kind"],
        "default"
    );
    assert_eq!(
        setting(&report, "tags.notes.eviction")["value"],
        "least-recently-used"
    );
    assert_eq!(setting(&report, "ttl.workspace_base")["value"], "2d");
    assert_eq!(setting(&report, "remote.url")["origin"]["kind"], "file");

    // The text form: origin, a tab, key=value, as git config --show-origin.
    let mut command = sandbox.command();
    command.env("XDG_CONFIG_HOME", &xdg_config).arg("config");
    let text = run(&mut command).expect_code(0).stdout();
    assert!(
        text.lines()
            .any(|line| line == format!("file:{}\tdefaults.max_size=1073741824", file.display())),
        "{text}"
    );
}

#[test]
fn a_missing_config_file_at_the_default_place_is_fine() {
    let sandbox = Sandbox::new();
    let report = sandbox.json(&["config", "--json"]);
    assert_eq!(report["file_found"], false);
    assert_eq!(
        setting(&report, "defaults.max_size")["origin"]["kind"],
        "default"
    );
}

#[test]
fn a_tag_limit_from_the_config_file_applies_to_the_command_line() {
    let sandbox = Sandbox::new();
    let config = sandbox.path("cache.toml");
    write(&config, "[tags.notes]\nmax_entries = 2\n");
    for key in ["a", "b", "c", "d"] {
        let mut command = sandbox.command();
        command
            .arg("--config")
            .arg(&config)
            .args(["set", "--tag", "notes", key, "value"]);
        run(&mut command).expect_code(0);
    }
    let keys = sandbox.json(&["keys", "--tag", "notes", "--json"]);
    let count = keys["keys"].as_array().expect("keys").len();
    assert!(
        count <= 2,
        "the file's limit of 2 entries was not applied: {keys:#}"
    );
    assert!(count >= 1, "{keys:#}");
}

#[test]
fn a_bad_config_file_fails_naming_the_file_line_and_key() {
    let sandbox = Sandbox::new();
    let config = sandbox.path("cache.toml");
    write(&config, "[defaults]\nmax_size = \"1GiB\"\nmax_sise = 3\n");
    let mut command = sandbox.command();
    command.arg("--config").arg(&config).arg("show");
    run(&mut command).expect_code(2).expect_stderr(&[
        &config.display().to_string(),
        "line 3",
        "defaults.max_sise",
    ]);
}

#[test]
fn a_named_config_file_that_does_not_exist_is_an_error() {
    let sandbox = Sandbox::new();
    let config = sandbox.path("nowhere.toml");
    let mut command = sandbox.command();
    command.env("GLOVEBOX_CACHE_CONFIG", &config).arg("show");
    run(&mut command)
        .expect_code(2)
        .expect_stderr(&["nowhere.toml", "does not exist"]);
}
