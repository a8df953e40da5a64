//! `show`: per-tag statistics, totals, JSON shape, and no tag created by reading.

use crate::support::{Sandbox, exists};

#[test]
fn show_on_a_missing_root_lists_nothing_and_creates_nothing() {
    let sandbox = Sandbox::new();
    let human = sandbox.run(&["show"]);
    human.expect_code(0);
    assert_eq!(human.stdout(), "no tags\n");
    let json = sandbox.json(&["show", "--json"]);
    assert_eq!(json["tags"].as_array().unwrap().len(), 0);
    assert_eq!(json["totals"]["entries"], 0);
    assert!(!exists(&sandbox.root()), "a read created the root");
}

#[test]
fn show_reports_each_tag_with_counters_summed_over_processes() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["set", "--tag", "layout", "a", "12345"])
        .expect_code(0);
    sandbox
        .run(&["set", "--tag", "layout", "b", "xy"])
        .expect_code(0);
    sandbox
        .run(&["set", "--tag", "moergo", "c", "z"])
        .expect_code(0);
    sandbox.run(&["get", "--tag", "layout", "a"]).expect_code(0);
    sandbox
        .run(&["get", "--tag", "layout", "nope"])
        .expect_code(1);

    let json = sandbox.json(&["show", "--json"]);
    assert_eq!(json["root"], sandbox.root().to_str().unwrap());
    let tags = json["tags"].as_array().unwrap();
    assert_eq!(tags.len(), 2);
    let layout = &tags[0];
    assert_eq!(layout["tag"], "layout");
    assert_eq!(layout["entries"], 2);
    assert!(
        layout["bytes"].as_u64().unwrap() >= 7,
        "keys and values counted"
    );
    assert_eq!(layout["hits"], 1, "the hit of one process");
    assert_eq!(layout["misses"], 1, "the miss of another");
    assert_eq!(layout["hit_rate_percent"], 50.0);
    assert_eq!(layout["sets"], 2);
    assert_eq!(layout["evictions"], 0);
    assert_eq!(layout["limit_bytes"], 2u64 * 1024 * 1024 * 1024);
    assert!(layout["last_cleanup"].is_null(), "cleanup never ran");
    let moergo = &tags[1];
    assert_eq!(moergo["tag"], "moergo");
    assert!(moergo["hit_rate_percent"].is_null(), "never read: no rate");
    let totals = &json["totals"];
    assert_eq!(totals["tags"], 2);
    assert_eq!(totals["entries"], 3);
    assert_eq!(totals["hits"], 1);
    assert_eq!(totals["misses"], 1);
    assert_eq!(json["errors"].as_array().unwrap().len(), 0);
}

#[test]
fn show_prints_a_table_with_totals_and_when_cleanup_last_ran() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["set", "--tag", "layout", "a", "1"])
        .expect_code(0);
    sandbox
        .run(&["set", "--tag", "metrics", "b", "2"])
        .expect_code(0);
    sandbox.run(&["cleanup"]).expect_code(0);
    sandbox
        .run(&["set", "--tag", "moergo", "c", "3"])
        .expect_code(0);
    let run = sandbox.run(&["show"]);
    run.expect_code(0).expect_stderr(&["cache root:"]);
    let stdout = run.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert!(
        lines[0].starts_with("TAG")
            && lines[0].contains("HIT RATE")
            && lines[0].contains("LAST CLEANUP")
    );
    // An RFC 3339 UTC time, to the second, for the tags the cleanup ran on.
    assert!(
        lines[1].starts_with("layout") && lines[1].trim_end().ends_with('Z'),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("metrics") && lines[2].trim_end().ends_with('Z'),
        "{stdout}"
    );
    assert!(
        lines[3].starts_with("moergo") && lines[3].trim_end().ends_with("never"),
        "{stdout}"
    );
    assert!(lines[4].starts_with("total (3)"));
}

#[test]
fn only_directories_named_as_tags_and_holding_a_database_are_tags() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["set", "--tag", "real", "k", "v"])
        .expect_code(0);
    let root = sandbox.root();
    std::fs::create_dir(root.join("Not-A-Tag")).unwrap();
    std::fs::write(root.join("Not-A-Tag").join("cache.redb"), b"").unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();
    std::fs::write(root.join("loose-file"), b"x").unwrap();
    let json = sandbox.json(&["show", "--json"]);
    let tags: Vec<&str> = json["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tag| tag["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["real"]);
    assert!(
        !exists(&root.join("empty").join("cache.redb")),
        "show created a tag"
    );
}

#[test]
fn a_tag_that_cannot_be_opened_is_reported_and_the_others_still_shown() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["set", "--tag", "good", "k", "v"])
        .expect_code(0);
    std::fs::create_dir_all(sandbox.root().join("broken").join("cache.redb")).unwrap();
    let run = sandbox.run(&["show", "--json"]);
    run.expect_code(3)
        .expect_stderr(&["could not read tag(s) 'broken'", "doctor"]);
    let json = run.json();
    assert_eq!(json["tags"][0]["tag"], "good");
    assert_eq!(json["errors"][0]["tag"], "broken");
    assert!(
        json["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not a regular file")
    );
}

#[test]
fn show_with_a_tag_shows_only_that_tag() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["set", "--tag", "alpha", "k", "v"])
        .expect_code(0);
    sandbox
        .run(&["set", "--tag", "beta", "k", "v"])
        .expect_code(0);
    let report = sandbox.json(&["show", "--tag", "beta", "--json"]);
    let tags: Vec<&str> = report["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|row| row["tag"].as_str().expect("a name"))
        .collect();
    assert_eq!(tags, ["beta"]);
    assert_eq!(report["totals"]["tags"], 1);

    sandbox
        .run(&["show", "--tag", "gamma"])
        .expect_code(1)
        .expect_stderr(&["no such tag 'gamma'"]);
}

#[test]
fn stats_reset_zeroes_a_tag_s_lifetime_counters_and_keeps_its_entries() {
    let sandbox = Sandbox::new();
    for tag in ["alpha", "beta"] {
        sandbox.run(&["set", "--tag", tag, "k", "v"]).expect_code(0);
        sandbox.run(&["get", "--tag", tag, "k"]).expect_code(0);
        sandbox.run(&["get", "--tag", tag, "absent"]).expect_code(1);
    }
    let before = sandbox.json(&["stats", "--tag", "alpha", "--reset", "--json"]);
    assert_eq!(before["reset"], true);
    assert_eq!(before["tags"][0]["tag"], "alpha");
    assert_eq!(before["tags"][0]["hits"], 1);
    assert_eq!(before["tags"][0]["misses"], 1);
    assert_eq!(before["tags"][0]["sets"], 1);

    let after = sandbox.json(&["stats", "--json"]);
    let tag = |name: &str| {
        after["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .find(|row| row["tag"] == name)
            .cloned()
            .expect("the tag is listed")
    };
    let alpha = tag("alpha");
    assert_eq!(
        (
            alpha["hits"].as_u64(),
            alpha["misses"].as_u64(),
            alpha["sets"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
    // Only the tag named was reset.
    assert_eq!(tag("beta")["hits"], 1);
    // The entry is still there (and reading it counts again from zero).
    sandbox.run(&["get", "--tag", "alpha", "k"]).expect_code(0);
    let show = sandbox.json(&["show", "--tag", "alpha", "--json"]);
    assert_eq!(show["tags"][0]["entries"], 1);
    assert_eq!(show["tags"][0]["hits"], 1);

    sandbox
        .run(&["stats", "--tag", "gamma", "--reset"])
        .expect_code(1)
        .expect_stderr(&["no such tag 'gamma'"]);
}

/// Issue 19: `show` reports the filesystem's free space beside each limit, and what
/// `min_free_space` keeps free there (compilation's limit is its own, 16 GiB).
#[test]
fn show_reports_the_free_space_of_the_disk_beside_each_limit() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["set", "--tag", "layout", "a", "1"])
        .expect_code(0);
    let json = sandbox.json(&["show", "--json"]);
    let row = &json["tags"][0];
    let free = row["filesystem_free_bytes"].as_u64().unwrap();
    let total = row["filesystem_bytes"].as_u64().unwrap();
    assert!(free <= total && total > 0, "{row}");
    assert_eq!(row["min_free_bytes"], 1024 * 1024 * 1024);
    assert_eq!(row["limit_bytes"], 2u64 * 1024 * 1024 * 1024);
    let run = sandbox.run(&["show"]);
    run.expect_code(0);
    assert!(run.stdout().lines().next().unwrap().contains("DISK FREE"));
}
