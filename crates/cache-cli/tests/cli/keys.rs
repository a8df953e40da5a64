//! `keys`: listing, glob, limit, metadata and values, and a missing tag.

use std::time::Duration;

use crate::support::{DAY, Sandbox, exists, key_names};

fn sandbox_with_layout_keys() -> Sandbox {
    let sandbox = Sandbox::new();
    let entries: [(&[u8], &[u8]); 4] = [
        (b"layout:2", b"two"),
        (b"layout:1", b"one"),
        (b"bookmark:a", b"A"),
        (b"layout:10", b"ten"),
    ];
    sandbox.seed("layout", Duration::ZERO, None, &entries);
    sandbox
}

#[test]
fn keys_are_listed_in_key_order_filtered_by_a_glob_and_limited() {
    let sandbox = sandbox_with_layout_keys();
    let all = sandbox.json(&["keys", "--tag", "layout", "--json"]);
    assert_eq!(
        key_names(&all["keys"]),
        ["bookmark:a", "layout:1", "layout:10", "layout:2"]
    );
    assert_eq!(all["matching"], 4);

    let matching = sandbox.json(&["keys", "--tag", "layout", "--pattern", "layout:?", "--json"]);
    assert_eq!(key_names(&matching["keys"]), ["layout:1", "layout:2"]);
    assert_eq!(matching["pattern"], "layout:?");

    let limited = sandbox.run(&[
        "keys",
        "--tag",
        "layout",
        "--pattern",
        "layout:*",
        "--limit",
        "2",
        "--json",
    ]);
    limited
        .expect_code(0)
        .expect_stderr(&["showing 2 of 3 matching keys"]);
    let limited = limited.json();
    assert_eq!(key_names(&limited["keys"]), ["layout:1", "layout:10"]);
    assert_eq!(limited["matching"], 3);
    assert_eq!(limited["shown"], 2);
    assert_eq!(limited["keys"][0]["key_hex"], "6c61796f75743a31");
    assert!(
        limited["keys"][0].get("metadata").is_none(),
        "only with --metadata"
    );
    assert!(
        limited["keys"][0].get("value").is_none(),
        "only with --values"
    );
}

#[test]
fn keys_human_output_is_one_readable_key_per_line() {
    let sandbox = sandbox_with_layout_keys();
    let run = sandbox.run(&["keys", "--tag", "layout", "--pattern", "bookmark:*"]);
    run.expect_code(0);
    assert_eq!(run.stdout(), "\"bookmark:a\"\n");
}

#[test]
fn metadata_and_values_are_real_stored_facts() {
    let sandbox = Sandbox::new();
    let binary_value: &[u8] = &[0xFF, 0x00, 0x01];
    sandbox.seed("t", 2 * DAY, Some(30 * DAY), &[(b"bin", binary_value)]);
    sandbox.run(&["get", "--tag", "t", "bin"]).expect_code(0);
    let json = sandbox.json(&["keys", "--tag", "t", "--metadata", "--values", "--json"]);
    let row = &json["keys"][0];
    assert_eq!(row["key"], "bin");
    assert!(row["value"].is_null(), "not UTF-8: no text");
    assert_eq!(row["value_hex"], "ff0001");
    let metadata = &row["metadata"];
    assert_eq!(metadata["size_bytes"], 3);
    assert_eq!(metadata["ttl_seconds"], 30 * 86_400);
    assert_eq!(metadata["access_count"], 1, "the get above");
    assert_eq!(metadata["codec"], "raw");
    let created = metadata["created_unix_ms"].as_u64().unwrap();
    let expires = metadata["expires_unix_ms"].as_u64().unwrap();
    assert_eq!(expires - created, 30 * 86_400 * 1000);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let age_days = (now_ms - created) as f64 / 86_400_000.0;
    assert!(
        (1.9..2.1).contains(&age_days),
        "created {age_days} days ago"
    );
    assert!(metadata["created"].as_str().unwrap().ends_with('Z'));
    assert!(metadata["last_accessed"].is_string());

    let human = sandbox.run(&["keys", "--tag", "t", "--metadata", "--values"]);
    human.expect_code(0);
    let stdout = human.stdout();
    assert!(stdout.starts_with("KEY"), "{stdout}");
    assert!(
        stdout.contains("0xff0001") && stdout.contains("\"bin\""),
        "{stdout}"
    );
}

#[test]
fn expired_entries_are_not_listed() {
    let sandbox = Sandbox::new();
    sandbox.seed("t", 2 * DAY, Some(DAY), &[(b"old", b"gone")]);
    sandbox.seed("t", Duration::ZERO, None, &[(b"new", b"here")]);
    let json = sandbox.json(&["keys", "--tag", "t", "--json"]);
    assert_eq!(key_names(&json["keys"]), ["new"]);
}

#[test]
fn keys_of_a_missing_tag_exit_1_and_create_nothing() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["keys", "--tag", "ghost"])
        .expect_code(1)
        .expect_stderr(&["no such tag 'ghost'", "does not exist"]);
    sandbox
        .run(&["set", "--tag", "real", "k", "v"])
        .expect_code(0);
    sandbox
        .run(&["keys", "--tag", "ghost"])
        .expect_code(1)
        .expect_stderr(&[
            "no such tag 'ghost' under",
            sandbox.root().to_str().unwrap(),
        ]);
    assert!(!exists(&sandbox.root().join("ghost")));
}

#[test]
fn bad_patterns_and_limits_are_usage_errors() {
    let sandbox = sandbox_with_layout_keys();
    sandbox
        .run(&["keys", "--tag", "layout", "--pattern", "oops\\"])
        .expect_code(2)
        .expect_stderr(&["oops"]);
    sandbox
        .run(&["keys", "--tag", "layout", "--limit", "0"])
        .expect_code(2)
        .expect_stderr(&["--limit"]);
}
