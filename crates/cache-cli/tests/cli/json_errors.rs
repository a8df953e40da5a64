//! `--json` on every failure path: stdout is exactly one JSON document,
//! `{"error": {"kind", "message", "exit_code"}}`, and the exit code is the usual one.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Run, Sandbox, run};

/// Parses stdout as exactly one JSON document (trailing whitespace only) and checks that it is
/// the error document with `kind` and `code`, whose message mentions every one of `parts`.
fn expect_json_error(run: &Run, kind: &str, code: i32, parts: &[&str]) -> Value {
    run.expect_code(code);
    let mut documents = serde_json::Deserializer::from_slice(&run.stdout).into_iter::<Value>();
    let document = documents
        .next()
        .unwrap_or_else(|| panic!("no JSON on stdout; stderr:\n{}", run.stderr))
        .unwrap_or_else(|err| panic!("stdout is not JSON ({err}):\n{}", run.stdout()));
    assert!(
        documents.next().is_none(),
        "more than one JSON document on stdout:\n{}",
        run.stdout()
    );
    let error = &document["error"];
    assert_eq!(error["kind"], kind, "{document:#}");
    assert_eq!(error["exit_code"], code, "{document:#}");
    let message = error["message"].as_str().expect("a message");
    for part in parts {
        assert!(message.contains(part), "message lacks {part:?}: {message}");
    }
    document
}

fn sandbox_with_notes() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.seed("notes", Duration::ZERO, None, &[(b"here", b"value")]);
    sandbox
}

#[test]
fn json_error_for_a_get_miss() {
    let sandbox = sandbox_with_notes();
    let run = sandbox.run(&["get", "--tag", "notes", "absent", "--json"]);
    expect_json_error(&run, "not_found", 1, &["absent", "notes"]);
}

#[test]
fn json_error_for_keys_on_a_missing_tag() {
    let sandbox = sandbox_with_notes();
    let run = sandbox.run(&["keys", "--tag", "nope", "--json"]);
    expect_json_error(&run, "not_found", 1, &["no such tag 'nope'"]);
}

#[test]
fn json_error_for_a_workspace_delete_with_nothing_cached() {
    let sandbox = sandbox_with_notes();
    let run = sandbox.run(&["workspace", "delete", "zmkfirmware/zmk", "--json"]);
    expect_json_error(&run, "not_found", 1, &["zmkfirmware/zmk"]);
}

#[test]
fn json_error_for_a_value_clap_refuses() {
    let sandbox = sandbox_with_notes();
    let run = sandbox.run(&["set", "--tag", "notes", "k", "v", "--ttl", "soon", "--json"]);
    expect_json_error(&run, "usage", 2, &["--ttl", "soon"]);
    let run = sandbox.run(&["keys", "--tag", "Not A Tag", "--json"]);
    expect_json_error(&run, "usage", 2, &["Not A Tag"]);
    let run = sandbox.run(&["--json", "frobnicate"]);
    expect_json_error(&run, "usage", 2, &["frobnicate"]);
}

#[test]
fn json_error_for_bad_input_the_command_refuses() {
    let sandbox = sandbox_with_notes();
    // clear needs --yes without a terminal.
    let run = sandbox.run(&["clear", "--tag", "notes", "--json"]);
    expect_json_error(&run, "usage", 2, &["--yes"]);
}

#[test]
fn json_error_for_an_io_error() {
    let sandbox = sandbox_with_notes();
    let missing = sandbox.path("no-such-file");
    let missing = missing.to_str().expect("a UTF-8 temp path");
    let run = sandbox.run(&["set", "--tag", "notes", "k", "--file", missing, "--json"]);
    expect_json_error(&run, "io", 3, &["no-such-file"]);
}

#[test]
fn json_error_for_a_bad_config_file() {
    let sandbox = sandbox_with_notes();
    let config = sandbox.path("cache.toml");
    std::fs::write(&config, "[defaults]\neviction = \"random\"\n").expect("write the config");
    let mut command = sandbox.command();
    command
        .arg("--config")
        .arg(&config)
        .args(["show", "--json"]);
    let run = run(&mut command);
    expect_json_error(&run, "config", 2, &["line 2", "defaults.eviction"]);
}

#[test]
fn a_command_that_reported_and_then_failed_prints_one_document() {
    let sandbox = sandbox_with_notes();
    let run = sandbox.run(&[
        "delete",
        "--tag",
        "notes",
        "--keys",
        "here,absent",
        "--json",
    ]);
    run.expect_code(1);
    let mut documents = serde_json::Deserializer::from_slice(&run.stdout).into_iter::<Value>();
    let report = documents.next().expect("a document").expect("JSON");
    assert!(documents.next().is_none(), "{}", run.stdout());
    assert_eq!(report["not_found"][0]["key"], "absent");
    assert_eq!(report["deleted"][0]["key"], "here");
}
