//! `delete`: by keys, by pattern, from a JSON file; dry runs; what is missing.

use std::time::Duration;

use crate::support::{Sandbox, key_names};

fn sandbox_with(keys: &[&str]) -> Sandbox {
    let sandbox = Sandbox::new();
    let entries: Vec<(&[u8], &[u8])> = keys.iter().map(|key| (key.as_bytes(), &b"v"[..])).collect();
    sandbox.seed("t", Duration::ZERO, None, &entries);
    sandbox
}

fn remaining(sandbox: &Sandbox) -> Vec<String> {
    key_names(&sandbox.json(&["keys", "--tag", "t", "--json"])["keys"])
}

#[test]
fn named_keys_are_deleted_and_missing_ones_exit_1_by_name() {
    let sandbox = sandbox_with(&["a", "b", "c"]);
    let run = sandbox.run(&["delete", "--tag", "t", "--keys", "a,zzz", "--keys", "b"]);
    run.expect_code(1)
        .expect_stderr(&["1 of the named keys not found in tag 't'", "\"zzz\""]);
    assert_eq!(run.stdout(), "\"a\"\n\"b\"\n", "the deleted keys");
    assert_eq!(remaining(&sandbox), ["c"]);

    let json = sandbox.json(&["delete", "--tag", "t", "--keys", "c", "--json"]);
    assert_eq!(json["dry_run"], false);
    assert_eq!(key_names(&json["deleted"]), ["c"]);
    assert_eq!(json["not_found"].as_array().unwrap().len(), 0);
    assert_eq!(remaining(&sandbox), Vec::<String>::new());
}

#[test]
fn a_pattern_dry_run_lists_what_would_go_and_deletes_nothing() {
    let sandbox = sandbox_with(&["tmp:1", "tmp:2", "keep"]);
    let json = sandbox.json(&[
        "delete",
        "--tag",
        "t",
        "--pattern",
        "tmp:*",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(json["dry_run"], true);
    assert_eq!(key_names(&json["deleted"]), ["tmp:1", "tmp:2"]);
    assert_eq!(remaining(&sandbox), ["keep", "tmp:1", "tmp:2"]);

    let run = sandbox.run(&["delete", "--tag", "t", "--pattern", "tmp:*"]);
    run.expect_code(0)
        .expect_stderr(&["deleted 2 keys from tag 't'"]);
    assert_eq!(remaining(&sandbox), ["keep"]);
    sandbox
        .run(&["delete", "--tag", "t", "--pattern", "nothing*"])
        .expect_code(0)
        .expect_stderr(&["deleted 0 keys"]);
}

#[test]
fn the_output_of_keys_json_feeds_delete_json_file_even_for_binary_keys() {
    let sandbox = sandbox_with(&["old:1", "old:2", "new"]);
    let binary: &[u8] = &[b'o', b'l', b'd', b':', 0xFF];
    sandbox.seed("t", Duration::ZERO, None, &[(binary, b"v")]);
    let listing = sandbox.run(&["keys", "--tag", "t", "--pattern", "old:*", "--json"]);
    listing.expect_code(0);
    let file = sandbox.path("old.json");
    std::fs::write(&file, &listing.stdout).unwrap();
    let json = sandbox.json(&[
        "delete",
        "--tag",
        "t",
        "--json-file",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(json["deleted"].as_array().unwrap().len(), 3);
    assert_eq!(json["deleted"][2]["key_hex"], "6f6c643aff");
    assert_eq!(remaining(&sandbox), ["new"]);

    let plain = sandbox.path("plain.json");
    std::fs::write(&plain, br#"["new"]"#).unwrap();
    sandbox
        .run(&[
            "delete",
            "--tag",
            "t",
            "--json-file",
            plain.to_str().unwrap(),
        ])
        .expect_code(0);
    assert_eq!(remaining(&sandbox), Vec::<String>::new());
}

#[test]
fn a_missing_or_malformed_key_file_exits_3_naming_it_and_deletes_nothing() {
    let sandbox = sandbox_with(&["a"]);
    let missing = sandbox.path("missing.json");
    sandbox
        .run(&[
            "delete",
            "--tag",
            "t",
            "--json-file",
            missing.to_str().unwrap(),
        ])
        .expect_code(3)
        .expect_stderr(&[missing.to_str().unwrap()]);
    let malformed = sandbox.path("bad.json");
    std::fs::write(&malformed, b"{not json").unwrap();
    sandbox
        .run(&[
            "delete",
            "--tag",
            "t",
            "--json-file",
            malformed.to_str().unwrap(),
        ])
        .expect_code(3)
        .expect_stderr(&[malformed.to_str().unwrap(), "as JSON"]);
    let wrong_shape = sandbox.path("numbers.json");
    std::fs::write(&wrong_shape, b"[1, 2]").unwrap();
    sandbox
        .run(&[
            "delete",
            "--tag",
            "t",
            "--json-file",
            wrong_shape.to_str().unwrap(),
        ])
        .expect_code(3)
        .expect_stderr(&[wrong_shape.to_str().unwrap(), "item 0 is not a key"]);
    assert_eq!(remaining(&sandbox), ["a"]);
}

#[test]
fn delete_needs_exactly_one_selection_and_an_existing_tag() {
    let sandbox = sandbox_with(&["a"]);
    sandbox
        .run(&["delete", "--tag", "t"])
        .expect_code(2)
        .expect_stderr(&["--keys"]);
    sandbox
        .run(&["delete", "--tag", "t", "--keys", "a", "--pattern", "*"])
        .expect_code(2)
        .expect_stderr(&["cannot be used with"]);
    sandbox
        .run(&["delete", "--tag", "ghost", "--keys", "a"])
        .expect_code(1)
        .expect_stderr(&["no such tag 'ghost'"]);
    assert_eq!(remaining(&sandbox), ["a"]);
}

#[test]
fn delete_reads_the_key_list_from_stdin_with_json_file_dash() {
    use std::io::Write as _;
    use std::process::Stdio;

    let sandbox = Sandbox::new();
    sandbox.seed(
        "notes",
        Duration::ZERO,
        None,
        &[(b"old:1", b"a"), (b"old:2", b"b"), (b"keep", b"c")],
    );
    let listing = sandbox.run(&["keys", "--tag", "notes", "--pattern", "old:*", "--json"]);
    listing.expect_code(0);
    let mut child = sandbox
        .command()
        .args(["delete", "--tag", "notes", "--json-file", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(&listing.stdout)
        .expect("write the key list");
    let done = child.wait_with_output().expect("the binary ends");
    assert!(done.status.success(), "{done:?}");
    let report: serde_json::Value = serde_json::from_slice(&done.stdout).expect("JSON");
    assert_eq!(key_names(&report["deleted"]), ["old:1", "old:2"]);
    let left = sandbox.json(&["keys", "--tag", "notes", "--json"]);
    assert_eq!(key_names(&left["keys"]), ["keep"]);
}
