//! `get` and `set`: exact bytes, files and stdin, TTLs, misses, bad input.

use std::io::Write as _;
use std::process::Stdio;

use crate::support::{Sandbox, exists};

#[test]
fn set_then_get_returns_the_exact_bytes() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["set", "--tag", "layout", "greeting", "hello world"])
        .expect_code(0);
    let get = sandbox.run(&["get", "--tag", "layout", "greeting"]);
    get.expect_code(0);
    assert_eq!(get.stdout, b"hello world", "no newline added");

    let binary: Vec<u8> = (0..=255u8).collect();
    let file = sandbox.path("firmware.uf2");
    std::fs::write(&file, &binary).unwrap();
    sandbox
        .run(&[
            "set",
            "--tag",
            "moergo",
            "fw",
            "--file",
            file.to_str().unwrap(),
        ])
        .expect_code(0);
    assert_eq!(
        sandbox.run(&["get", "--tag", "moergo", "fw"]).stdout,
        binary
    );

    let json = sandbox.json(&["get", "--tag", "moergo", "fw", "--json"]);
    assert_eq!(json["tag"], "moergo");
    assert_eq!(json["key"], "fw");
    assert!(json["value"].is_null(), "not UTF-8");
    assert_eq!(json["size_bytes"], 256);
    assert!(json["value_hex"].as_str().unwrap().starts_with("000102"));
    let text = sandbox.json(&["get", "--tag", "layout", "greeting", "--json"]);
    assert_eq!(text["value"], "hello world");
}

#[test]
fn set_reads_the_value_from_stdin_with_file_dash() {
    let sandbox = Sandbox::new();
    let mut child = sandbox
        .command()
        .args(["set", "--tag", "t", "k", "--file", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        sandbox.run(&["get", "--tag", "t", "k"]).stdout,
        b"from stdin\n"
    );
}

#[test]
fn set_with_a_ttl_reports_it_and_stores_it() {
    let sandbox = Sandbox::new();
    let json = sandbox.json(&["set", "--tag", "t", "k", "v", "--ttl", "10m", "--json"]);
    assert_eq!(json["ttl_seconds"], 600);
    assert_eq!(json["size_bytes"], 1);
    let keys = sandbox.json(&["keys", "--tag", "t", "--metadata", "--json"]);
    assert_eq!(keys["keys"][0]["metadata"]["ttl_seconds"], 600);
    let forever = sandbox.json(&["set", "--tag", "t", "k2", "v", "--json"]);
    assert!(forever["ttl_seconds"].is_null());
}

#[test]
fn a_miss_exits_1_naming_the_key_and_tag() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["set", "--tag", "layout", "k", "v"])
        .expect_code(0);
    let miss = sandbox.run(&["get", "--tag", "layout", "absent"]);
    miss.expect_code(1)
        .expect_stderr(&["key \"absent\" not found in tag 'layout'"]);
    assert!(miss.stdout.is_empty());
}

#[test]
fn get_of_a_missing_tag_exits_1_and_creates_nothing() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["get", "--tag", "ghost", "k"])
        .expect_code(1)
        .expect_stderr(&["no such tag 'ghost'"]);
    assert!(!exists(&sandbox.root()));
}

#[test]
fn bad_ttls_are_usage_errors_naming_the_value() {
    let sandbox = Sandbox::new();
    for (ttl, says) in [
        ("7x", "unknown unit"),
        ("0", "zero"),
        ("soon", "not a whole number"),
    ] {
        sandbox
            .run(&["set", "--tag", "t", "k", "v", "--ttl", ttl])
            .expect_code(2)
            .expect_stderr(&[&format!("\"{ttl}\""), says]);
    }
    assert!(!exists(&sandbox.root()), "a refused set changes nothing");
}

#[test]
fn an_invalid_tag_is_a_usage_error_naming_it() {
    let sandbox = Sandbox::new();
    for tag in ["Layout", "../etc", "a/b", ""] {
        sandbox
            .run(&["set", "--tag", tag, "k", "v"])
            .expect_code(2)
            .expect_stderr(&[&format!("invalid cache tag {tag:?}")]);
    }
    assert!(!exists(&sandbox.root()));
}

#[test]
fn a_missing_value_file_exits_3_naming_the_path() {
    let sandbox = Sandbox::new();
    let missing = sandbox.path("no-such-file.bin");
    sandbox
        .run(&[
            "set",
            "--tag",
            "t",
            "k",
            "--file",
            missing.to_str().unwrap(),
        ])
        .expect_code(3)
        .expect_stderr(&[missing.to_str().unwrap(), "while reading the value file"]);
    assert!(!exists(&sandbox.root()), "nothing written");
}

#[test]
fn set_needs_exactly_one_value_and_a_non_empty_key() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["set", "--tag", "t", "k"])
        .expect_code(2)
        .expect_stderr(&["--file"]);
    let file = sandbox.path("v");
    std::fs::write(&file, b"x").unwrap();
    sandbox
        .run(&[
            "set",
            "--tag",
            "t",
            "k",
            "v",
            "--file",
            file.to_str().unwrap(),
        ])
        .expect_code(2)
        .expect_stderr(&["cannot be used with"]);
    sandbox
        .run(&["set", "--tag", "t", "", "v"])
        .expect_code(2)
        .expect_stderr(&["a key cannot be empty"]);
}

#[test]
fn a_negative_ttl_is_refused_with_the_real_reason() {
    let sandbox = Sandbox::new();
    for ttl in ["-1", "-5m"] {
        let run = sandbox.run(&["set", "--tag", "t", "k", "v", "--ttl", ttl]);
        run.expect_code(2)
            .expect_stderr(&[&format!("\"{ttl}\""), "negative"]);
        assert!(
            !run.stderr.contains("unexpected argument"),
            "clap took the value for an option: {}",
            run.stderr
        );
    }
    assert!(!exists(&sandbox.root()), "a refused set changes nothing");
}

#[test]
fn a_ttl_too_large_to_store_is_refused() {
    let sandbox = Sandbox::new();
    // Fits in seconds (u64) but not as an expiry in milliseconds since 1970.
    for ttl in ["200000000000000d", "99999999999999999999"] {
        sandbox
            .run(&["set", "--tag", "t", "k", "v", "--ttl", ttl])
            .expect_code(2)
            .expect_stderr(&[&format!("\"{ttl}\""), "too large to store"]);
    }
    assert!(!exists(&sandbox.root()), "a refused set changes nothing");
    // The largest accepted TTL is stored as given.
    let json = sandbox.json(&[
        "set",
        "--tag",
        "t",
        "k",
        "v",
        "--ttl",
        "36500000d",
        "--json",
    ]);
    assert_eq!(json["ttl_seconds"], 36_500_000u64 * 86_400);
    let keys = sandbox.json(&["keys", "--tag", "t", "--metadata", "--json"]);
    assert_eq!(
        keys["keys"][0]["metadata"]["ttl_seconds"],
        36_500_000u64 * 86_400
    );
}
