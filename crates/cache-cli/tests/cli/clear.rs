//! `clear`: confirmation, one tag or all, `--expired` and `--older-than` (the original's
//! `clear --max-age` did nothing: its defect 11).

use std::time::Duration;

use crate::support::{DAY, Sandbox, key_names};

fn keys_of(sandbox: &Sandbox, tag: &str) -> Vec<String> {
    key_names(&sandbox.json(&["keys", "--tag", tag, "--json"])["keys"])
}

#[test]
fn clear_without_a_terminal_and_without_yes_refuses_and_removes_nothing() {
    let sandbox = Sandbox::new();
    sandbox.seed("t", Duration::ZERO, None, &[(b"k", b"v")]);
    for args in [
        vec!["clear"],
        vec!["clear", "--tag", "t"],
        vec!["clear", "--expired"],
        vec!["clear", "--older-than", "1s"],
    ] {
        sandbox.run(&args).expect_code(2).expect_stderr(&[
            "refusing to clear",
            "not a terminal",
            "--yes",
        ]);
    }
    assert_eq!(keys_of(&sandbox, "t"), ["k"]);
}

#[test]
fn clear_yes_empties_the_named_tag_only() {
    let sandbox = Sandbox::new();
    sandbox.seed("a", Duration::ZERO, None, &[(b"1", b"v"), (b"2", b"v")]);
    sandbox.seed("b", Duration::ZERO, None, &[(b"3", b"v")]);
    let json = sandbox.json(&["clear", "--tag", "a", "--yes", "--json"]);
    assert_eq!(json["mode"], "all");
    assert_eq!(json["tags"][0]["tag"], "a");
    assert_eq!(json["tags"][0]["removed"], 2);
    assert_eq!(json["removed"], 2);
    assert_eq!(keys_of(&sandbox, "a"), Vec::<String>::new());
    assert_eq!(keys_of(&sandbox, "b"), ["3"]);

    let all = sandbox.run(&["clear", "-y"]);
    all.expect_code(0)
        .expect_stderr(&["removed 1 entry from 2 tags"]);
    assert_eq!(keys_of(&sandbox, "b"), Vec::<String>::new());
}

#[test]
fn defect_11_clear_older_than_removes_only_entries_stored_before_the_cutoff() {
    let sandbox = Sandbox::new();
    sandbox.seed("t", 10 * DAY, None, &[(b"ancient", b"v")]);
    sandbox.seed("t", 3 * DAY, None, &[(b"recent", b"v")]);
    sandbox.seed("t", Duration::ZERO, None, &[(b"fresh", b"v")]);
    let json = sandbox.json(&["clear", "--older-than", "7d", "--yes", "--json"]);
    assert_eq!(json["mode"], "older-than");
    assert_eq!(json["older_than_seconds"], 7 * 86_400);
    assert_eq!(json["removed"], 1);
    assert_eq!(keys_of(&sandbox, "t"), ["fresh", "recent"]);

    sandbox
        .run(&["clear", "--older-than", "1d", "--yes"])
        .expect_code(0);
    assert_eq!(keys_of(&sandbox, "t"), ["fresh"]);
}

#[test]
fn defect_11_clear_expired_removes_only_expired_entries_and_evicts_nothing() {
    let sandbox = Sandbox::new();
    // The fresh entry first: a commit on today's clock would already sweep the expired one.
    sandbox.seed("t", Duration::ZERO, None, &[(b"live", b"v")]);
    sandbox.seed("t", 2 * DAY, Some(DAY), &[(b"expired", b"v")]);
    sandbox.seed("t", 2 * DAY, Some(30 * DAY), &[(b"old-but-live", b"v")]);
    let json = sandbox.json(&["clear", "--expired", "--yes", "--json"]);
    assert_eq!(json["mode"], "expired");
    assert_eq!(json["removed"], 1);
    assert_eq!(keys_of(&sandbox, "t"), ["live", "old-but-live"]);
    let stats = sandbox.json(&["show", "--json"]);
    assert_eq!(stats["tags"][0]["expirations"], 1);
    assert_eq!(stats["tags"][0]["evictions"], 0);
}

#[test]
fn clear_of_a_missing_tag_exits_1_and_bad_options_exit_2() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["clear", "--tag", "ghost", "--yes"])
        .expect_code(1)
        .expect_stderr(&["no such tag 'ghost'"]);
    sandbox
        .run(&["clear", "--expired", "--older-than", "1d", "--yes"])
        .expect_code(2)
        .expect_stderr(&["cannot be used with"]);
    sandbox
        .run(&["clear", "--older-than", "a week", "--yes"])
        .expect_code(2)
        .expect_stderr(&["\"a week\""]);
    let nothing = sandbox.json(&["clear", "--yes", "--json"]);
    assert_eq!(nothing["removed"], 0);
}
