//! `doctor`: healthy files, a corrupt file found and then quarantined, loose permissions, and a
//! tag in use by another process.

use std::time::Duration;

use cache_core::{CacheOptions, Coordinator};

use crate::support::{Sandbox, exists};

fn statuses(tag: &serde_json::Value) -> Vec<(String, String)> {
    tag["checks"]
        .as_array()
        .expect("a checks array")
        .iter()
        .map(|check| {
            (
                check["check"].as_str().expect("a check name").to_owned(),
                check["status"].as_str().expect("a status").to_owned(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(check, status)| ((*check).to_owned(), (*status).to_owned()))
        .collect()
}

#[test]
fn a_healthy_root_passes_every_check() {
    let sandbox = Sandbox::new();
    sandbox.seed("a", Duration::ZERO, None, &[(b"k", b"v")]);
    sandbox.seed("b", Duration::ZERO, None, &[(b"k", b"v")]);
    let json = sandbox.json(&["doctor", "--json"]);
    assert_eq!(json["healthy"], true);
    assert_eq!(json["repair"], false);
    let tags = json["tags"].as_array().unwrap();
    assert_eq!(tags.len(), 2);
    for tag in tags {
        assert_eq!(
            statuses(tag),
            pairs(&[
                ("files", "healthy"),
                ("permissions", "healthy"),
                ("integrity", "healthy")
            ])
        );
        assert!(tag["database"].as_str().unwrap().ends_with("cache.redb"));
    }
    let human = sandbox.run(&["doctor"]);
    human.expect_code(0).expect_stderr(&["2 tags healthy"]);
    assert!(human.stdout().contains("integrity"));
}

#[test]
fn a_corrupt_file_is_reported_unchanged_exit_3_then_repair_moves_it_aside() {
    let sandbox = Sandbox::new();
    sandbox.seed("good", Duration::ZERO, None, &[(b"k", b"v")]);
    sandbox.seed("bad", Duration::ZERO, None, &[(b"k", b"v")]);
    let garbage = vec![0xA5u8; 64 * 1024];
    std::fs::write(sandbox.database("bad"), &garbage).unwrap();

    let check = sandbox.run(&["doctor", "--json"]);
    check
        .expect_code(3)
        .expect_stderr(&["damage left in tag(s) 'bad'", "--repair"]);
    let json = check.json();
    assert_eq!(json["healthy"], false);
    let bad = &json["tags"][0];
    assert_eq!(bad["tag"], "bad");
    assert_eq!(bad["checks"][2]["status"], "damaged");
    assert!(
        bad["checks"][2]["detail"]
            .as_str()
            .unwrap()
            .contains("cache.redb")
    );
    assert_eq!(
        json["tags"][1]["healthy"], true,
        "the other tag is untouched"
    );
    assert!(
        std::fs::read(sandbox.database("bad")).unwrap() == garbage,
        "without --repair nothing is written"
    );

    let repair = sandbox.json(&["doctor", "--repair", "--json"]);
    assert_eq!(repair["healthy"], true);
    assert_eq!(repair["tags"][0]["checks"][2]["status"], "repaired");
    let quarantined: Vec<String> = std::fs::read_dir(sandbox.root().join("bad"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("cache.redb.corrupt-"))
        .collect();
    assert_eq!(quarantined.len(), 1, "the damaged file is kept aside");
    sandbox.run(&["doctor"]).expect_code(0);
    sandbox
        .run(&["set", "--tag", "bad", "k", "again"])
        .expect_code(0);
    assert_eq!(sandbox.run(&["get", "--tag", "bad", "k"]).stdout, b"again");
    assert_eq!(sandbox.run(&["get", "--tag", "good", "k"]).stdout, b"v");
}

#[cfg(unix)]
#[test]
fn loose_permissions_are_damage_that_repair_tightens() {
    use std::os::unix::fs::PermissionsExt as _;

    let sandbox = Sandbox::new();
    sandbox.seed("t", Duration::ZERO, None, &[(b"k", b"v")]);
    let database = sandbox.database("t");
    std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o644)).unwrap();
    let check = sandbox.run(&["doctor"]);
    check.expect_code(3);
    assert!(check.stdout().contains("0644"), "{}", check.stdout());
    sandbox.run(&["doctor", "--repair"]).expect_code(0);
    let mode = std::fs::metadata(&database).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_tag_in_use_by_another_process_checks_healthy_and_keeps_working() {
    let sandbox = Sandbox::new();
    let coordinator = Coordinator::new();
    let cache = coordinator
        .get_shared_cache_instance(&sandbox.root(), "busy", CacheOptions::default())
        .unwrap();
    for index in 0..500u32 {
        cache.set(&index.to_be_bytes(), &[1u8; 200], None).unwrap();
    }
    cache.flush().unwrap();
    let json = sandbox.json(&["doctor", "--json"]);
    assert_eq!(json["healthy"], true, "{json}");
    cache.set(b"after", b"check", None).unwrap();
    cache.flush().unwrap();
    assert_eq!(
        sandbox.run(&["get", "--tag", "busy", "after"]).stdout,
        b"check"
    );
    coordinator.reset().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(sandbox.root().join("busy"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["cache.redb", "usage"],
        "no quarantine, no scratch copy left"
    );
}

#[test]
fn an_empty_root_has_nothing_to_check() {
    let sandbox = Sandbox::new();
    let json = sandbox.json(&["doctor", "--json"]);
    assert_eq!(json["healthy"], true);
    assert_eq!(json["tags"].as_array().unwrap().len(), 0);
    assert!(!exists(&sandbox.root()));
}
