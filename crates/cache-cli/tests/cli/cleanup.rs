//! `cleanup`: cache-core's cleanup on every tag, with what it removed (the original's cleanup
//! never ran: its defect 1).

use std::time::Duration;

use crate::support::{DAY, Sandbox};

#[test]
fn cleanup_removes_expired_entries_of_every_tag_and_reports_them() {
    let sandbox = Sandbox::new();
    // The fresh entry first: a commit on today's clock would already sweep the expired ones.
    sandbox.seed("a", Duration::ZERO, None, &[(b"live", b"v")]);
    sandbox.seed("a", 2 * DAY, Some(DAY), &[(b"1", b"v"), (b"2", b"v")]);
    sandbox.seed("b", 2 * DAY, Some(DAY), &[(b"3", b"v")]);
    sandbox.seed("c", Duration::ZERO, None, &[(b"live", b"v")]);

    let json = sandbox.json(&["cleanup", "--json"]);
    let tags = json["tags"].as_array().unwrap();
    assert_eq!(tags.len(), 3);
    assert_eq!(
        (tags[0]["tag"].as_str(), tags[0]["expired"].as_u64()),
        (Some("a"), Some(2))
    );
    assert_eq!(
        (tags[1]["tag"].as_str(), tags[1]["expired"].as_u64()),
        (Some("b"), Some(1))
    );
    assert_eq!(
        (tags[2]["tag"].as_str(), tags[2]["expired"].as_u64()),
        (Some("c"), Some(0))
    );
    assert_eq!(tags[0]["evicted"], 0);
    assert_eq!(tags[0]["unreadable"], 0);
    assert_eq!(json["totals"]["expired"], 3);

    let again = sandbox.run(&["cleanup"]);
    again.expect_code(0);
    let stdout = again.stdout();
    assert!(
        stdout.starts_with("TAG") && stdout.contains("EXPIRED"),
        "{stdout}"
    );
    assert!(
        stdout.lines().last().unwrap().starts_with("total (3)"),
        "{stdout}"
    );
    let show = sandbox.json(&["show", "--json"]);
    assert_eq!(
        show["tags"][0]["expirations"], 2,
        "persisted lifetime counter"
    );
}

#[test]
fn cleanup_of_an_empty_root_does_nothing() {
    let sandbox = Sandbox::new();
    let json = sandbox.json(&["cleanup", "--json"]);
    assert_eq!(json["tags"].as_array().unwrap().len(), 0);
    assert_eq!(json["totals"]["expired"], 0);
}
