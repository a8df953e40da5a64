//! `doctor`: healthy files, a corrupt file found and then quarantined, loose permissions, a tag
//! in use by another process, and blobs and directories that disagree with their entries.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its location"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use cache_core::{CacheOptions, Coordinator, Environment};

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
                ("integrity", "healthy"),
                ("blobs", "healthy"),
                ("directories", "healthy"),
                ("temp files", "healthy")
            ])
        );
        assert_eq!(tag["storage"]["orphan_blobs"].as_array().unwrap().len(), 0);
        assert!(tag["cleanup"].is_null(), "no repair asked");
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

/// The value stored as `key`'s blob in [`seed_files`]: 4 KiB, over the 1 KiB blob threshold.
fn blob_value(seed: u8) -> Vec<u8> {
    (0..4096u32).map(|index| (index as u8) ^ seed).collect()
}

fn blob_file(root: &Path, tag: &str, value: &[u8]) -> PathBuf {
    let hash = blake3::hash(value).to_hex().to_string();
    root.join(tag).join("blobs").join(&hash[..2]).join(&hash)
}

/// Tag `files` with two blob entries (`lost`, `kept`) and a directory entry (`workspace`).
fn seed_files(sandbox: &Sandbox) {
    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
    let options = CacheOptions {
        blob_threshold_bytes: 1024,
        ..CacheOptions::default()
    };
    let cache = coordinator
        .get_shared_cache_instance(&sandbox.root(), "files", options)
        .unwrap();
    cache.set(b"lost", &blob_value(1), None).unwrap();
    cache.set(b"kept", &blob_value(2), None).unwrap();
    let staged = cache.stage_directory().unwrap();
    std::fs::create_dir_all(staged.path().join("zmk")).unwrap();
    std::fs::write(staged.path().join("zmk/west.yml"), b"manifest").unwrap();
    cache
        .set_directory(b"workspace", staged, b"{}", None)
        .unwrap()
        .unwrap();
    coordinator.reset().unwrap();
}

fn status_of(tag: &serde_json::Value, check: &str) -> String {
    tag["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["check"] == check)
        .map(|item| item["status"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no {check} check in {tag}"))
}

#[test]
fn a_deleted_blob_an_orphan_blob_and_an_orphan_dir_exit_3_unchanged_then_repair_fixes_them() {
    let sandbox = Sandbox::new();
    seed_files(&sandbox);
    let root = sandbox.root();
    let lost_blob = blob_file(&root, "files", &blob_value(1));
    std::fs::remove_file(&lost_blob).unwrap();
    let orphan_blob = root.join("files/blobs/ab").join("ab".repeat(32));
    std::fs::create_dir_all(orphan_blob.parent().unwrap()).unwrap();
    std::fs::write(&orphan_blob, b"nobody's").unwrap();
    let orphan_dir = root.join("files/dirs").join("cd".repeat(16));
    std::fs::create_dir_all(orphan_dir.join("zmk")).unwrap();

    let check = sandbox.run(&["doctor", "--json"]);
    check
        .expect_code(3)
        .expect_stderr(&["damage left in tag(s) 'files'", "--repair"]);
    let json = check.json();
    let tag = &json["tags"][0];
    assert_eq!(status_of(tag, "blobs"), "damaged");
    assert_eq!(status_of(tag, "directories"), "damaged");
    assert_eq!(status_of(tag, "integrity"), "healthy");
    let storage = &tag["storage"];
    assert_eq!(storage["missing_blobs"][0]["key"], "lost");
    assert_eq!(storage["missing_blobs"][0]["key_hex"], "6c6f7374");
    assert!(
        storage["missing_blobs"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with(lost_blob.file_name().unwrap().to_str().unwrap())
    );
    assert_eq!(storage["orphan_blobs"].as_array().unwrap().len(), 1);
    assert!(
        storage["orphan_blobs"][0]
            .as_str()
            .unwrap()
            .ends_with(&"ab".repeat(32))
    );
    assert!(
        storage["orphan_directories"][0]
            .as_str()
            .unwrap()
            .ends_with(&"cd".repeat(16))
    );
    assert_eq!(storage["missing_directories"].as_array().unwrap().len(), 0);
    assert!(tag["cleanup"].is_null());
    assert!(
        exists(&orphan_blob) && exists(&orphan_dir),
        "without --repair nothing is removed"
    );

    let human = sandbox.run(&["doctor"]);
    human.expect_code(3);
    let table = human.stdout();
    assert!(
        table.contains("blob file is missing") && table.contains("\"lost\""),
        "{table}"
    );

    let repair = sandbox.run(&["doctor", "--repair", "--json"]);
    repair.expect_code(0);
    let json = repair.json();
    let tag = &json["tags"][0];
    assert_eq!(json["healthy"], true);
    assert_eq!(status_of(tag, "blobs"), "repaired");
    assert_eq!(status_of(tag, "directories"), "repaired");
    assert_eq!(tag["cleanup"]["missing_files"], 1);
    assert_eq!(tag["cleanup"]["orphan_files"], 2);
    assert_eq!(tag["cleanup"]["evicted"], 0);
    assert!(!exists(&orphan_blob) && !exists(&orphan_dir));

    let again = sandbox.run(&["doctor"]);
    again.expect_code(0).expect_stderr(&["1 tag healthy"]);
    sandbox
        .run(&["get", "--tag", "files", "lost"])
        .expect_code(1)
        .expect_stderr(&["\"lost\" not found"]);
    assert_eq!(
        sandbox.run(&["get", "--tag", "files", "kept"]).stdout,
        blob_value(2)
    );
}

#[test]
fn a_blob_that_does_not_match_its_hash_is_damage_and_repair_notes_what_cleanup_removed() {
    let sandbox = Sandbox::new();
    seed_files(&sandbox);
    let damaged = blob_file(&sandbox.root(), "files", &blob_value(2));
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[7] ^= 0x01;
    std::fs::write(&damaged, &bytes).unwrap();

    let check = sandbox.json_code(&["doctor", "--json"], 3);
    assert_eq!(
        check["tags"][0]["storage"]["corrupt_blobs"][0]["key"],
        "kept"
    );
    assert_eq!(std::fs::read(&damaged).unwrap(), bytes, "left as it was");

    let repair = sandbox.run(&["doctor", "--repair"]);
    repair.expect_code(0).expect_stderr(&[
        "tag 'files': cleanup removed 1 entry whose blob or directory was missing or damaged",
        "1 tag healthy",
    ]);
    assert!(repair.stdout().contains("repaired"));
    assert!(!exists(&damaged));
    sandbox
        .run(&["get", "--tag", "files", "kept"])
        .expect_code(1);
    assert_eq!(
        sandbox.run(&["get", "--tag", "files", "lost"]).stdout,
        blob_value(1)
    );
}

/// Issue 13, item 12: after a process holding the tag's file is killed (SIGKILL), redb refuses a
/// read-only handle ("Database repair aborted": the file needs the crash recovery an open runs).
/// doctor then skipped the blob, directory and temp checks and said "1 tag healthy", exit 0, with
/// a blob missing and a stale temp file there. Now it checks a copy-on-write view of the file:
/// both are reported, the exit code is 3, and the database file keeps every byte.
#[test]
fn trust_12_doctor_after_a_holder_was_killed_checks_everything_and_writes_nothing() {
    use std::io::Read as _;
    use std::process::Stdio;

    let sandbox = Sandbox::new();
    seed_files(&sandbox);
    let root = sandbox.root();
    // A value far larger than a pipe holds: `get` blocks writing it to a stdout nobody reads,
    // with the tag open (read-write, as every process opens it).
    let big: Vec<u8> = (0..4u32 << 20).map(|index| (index % 253) as u8).collect();
    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
    coordinator
        .get_shared_cache_instance(
            &root,
            "files",
            CacheOptions {
                blob_threshold_bytes: 1024,
                ..CacheOptions::default()
            },
        )
        .unwrap()
        .set(b"big", &big, None)
        .unwrap();
    coordinator.reset().unwrap();
    let mut holder = sandbox
        .command()
        .args(["get", "--tag", "files", "big"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    holder
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .expect("the holder opened the tag and is writing the value");
    holder.kill().unwrap();
    holder.wait().unwrap();

    let lost_blob = blob_file(&root, "files", &blob_value(1));
    std::fs::remove_file(&lost_blob).unwrap();
    let gone = {
        let mut exited = std::process::Command::new("true").spawn().unwrap();
        exited.wait().unwrap();
        exited.id()
    };
    let stale = root
        .join("files/blobs/tmp")
        .join(cache_test_support::temp_name_of(gone, None, "0"));
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, b"half a blob").unwrap();
    let database = sandbox.database("files");
    let before = blake3::hash(&std::fs::read(&database).unwrap());

    let check = sandbox.run(&["doctor", "--json"]);
    check
        .expect_code(3)
        .expect_stderr(&["damage left in tag(s) 'files'"]);
    let json = check.json();
    let tag = &json["tags"][0];
    assert_eq!(json["healthy"], false, "{json}");
    assert_eq!(status_of(tag, "integrity"), "healthy", "{tag}");
    assert_eq!(status_of(tag, "blobs"), "damaged", "{tag}");
    assert_eq!(status_of(tag, "temp files"), "damaged", "{tag}");
    assert_eq!(status_of(tag, "directories"), "healthy", "{tag}");
    let storage = &tag["storage"];
    assert_eq!(storage["missing_blobs"][0]["key"], "lost", "{storage}");
    assert_eq!(
        storage["stale_temp_files"][0].as_str().unwrap(),
        stale.to_str().unwrap()
    );
    assert_eq!(
        blake3::hash(&std::fs::read(&database).unwrap()),
        before,
        "doctor without --repair writes nothing to the database file"
    );
    assert!(exists(&stale), "nor removes anything");
}

/// Runs the binary with `args` on a full disk: a file-size limit of 0 (`ulimit -f 0`, with
/// `SIGXFSZ` ignored), so every write fails with `EFBIG` as writes to a full disk fail.
fn on_a_full_disk(sandbox: &Sandbox, args: &[&str]) -> crate::support::Run {
    let mut command = std::process::Command::new("/bin/sh");
    command
        .env_clear()
        .env("HOME", sandbox.path("home"))
        .env("XDG_CACHE_HOME", sandbox.path("xdg"))
        .env("GLOVEBOX_CACHE_PATH", sandbox.root())
        .stdin(std::process::Stdio::null())
        .arg("-c")
        .arg(r#"trap "" XFSZ; ulimit -f 0 || exit 97; exec "$@""#)
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_glovebox-cache"))
        .args(args);
    crate::support::run(&mut command)
}

/// Issue 13, item 12: on a full disk (or a read-only mount) doctor said "damage left ...
/// `--repair` fixes what it can" when it only could not write its scratch copy. A check writes
/// nothing now, so it runs there; and a repair that cannot write says so.
#[test]
fn trust_12_doctor_on_a_full_disk_checks_and_says_why_it_could_not_repair() {
    let sandbox = Sandbox::new();
    seed_files(&sandbox);
    let database = sandbox.database("files");
    let before = std::fs::read(&database).unwrap();

    on_a_full_disk(&sandbox, &["doctor"])
        .expect_code(0)
        .expect_stderr(&["1 tag healthy"]);

    let lost_blob = blob_file(&sandbox.root(), "files", &blob_value(1));
    std::fs::remove_file(&lost_blob).unwrap();
    let repair = on_a_full_disk(&sandbox, &["doctor", "--repair", "--json"]);
    repair.expect_code(3).expect_stderr(&[
        "damage left in tag(s) 'files'",
        "could not repair",
        "File too large",
    ]);
    let json = repair.json();
    let tag = &json["tags"][0];
    assert_eq!(status_of(tag, "blobs"), "damaged", "{tag}");
    assert_eq!(status_of(tag, "integrity"), "healthy", "{tag}");
    assert!(
        std::fs::read(&database).unwrap() == before,
        "neither run changed the database file"
    );
}
