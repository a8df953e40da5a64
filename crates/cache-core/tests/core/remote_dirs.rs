//! Directories through the remote tier's extension point, with the fake remote of `remote.rs`
//! shared by two roots: a stored directory is published with its list and contents once
//! committed, and another root gets it byte for byte (files, nested and empty directories,
//! modes, an empty file); a fetched list that could write outside its staging directory, or
//! contents that do not match it, store nothing and are a miss; a directory holding a symlink
//! is not published.

use cache_test_support::tree::{snapshot, write_with_mode};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, UNIX_EPOCH};

use cache_core::{Cache, Clock, DirectoryItem, DirectoryItemKind, ManualClock, ValueFormat};
use rstest::rstest;

use crate::clock;
use crate::remote::{FakeRemote, Held, machine, manual_commits};

/// Stores a directory with files, nested and empty directories, several modes and an empty
/// file under `key`; returns the value stored with it.
fn store_sample(cache: &Cache, key: &[u8], ttl: Option<Duration>) -> Vec<u8> {
    let staged = cache.stage_directory().expect("the helper's step");
    let top = staged.path();
    write_with_mode(&top.join("zmk.uf2"), &[7u8; 5000], 0o644);
    fs::create_dir_all(top.join("zephyr/include")).expect("the helper's step");
    write_with_mode(
        &top.join("zephyr/include/generated.h"),
        b"#define X 1\n",
        0o600,
    );
    write_with_mode(&top.join("zephyr/zmk.elf"), b"\x7fELF", 0o755);
    write_with_mode(&top.join("empty.bin"), b"", 0o640);
    fs::create_dir(top.join("empty-dir")).expect("the helper's step");
    fs::set_permissions(top.join("empty-dir"), fs::Permissions::from_mode(0o750))
        .expect("the helper's step");
    fs::create_dir(top.join("sealed")).expect("the helper's step");
    write_with_mode(&top.join("sealed/read-only.txt"), b"keep", 0o444);
    fs::set_permissions(top.join("sealed"), fs::Permissions::from_mode(0o555))
        .expect("the helper's step");
    let value = b"{\"what\":\"a build\"}".to_vec();
    cache
        .set_directory(key, staged, &value, ttl)
        .expect("the helper's step");
    value
}

#[rstest]
fn a_stored_directory_is_published_and_another_root_gets_it_byte_for_byte(clock: Arc<ManualClock>) {
    let remote = Arc::new(FakeRemote::default());
    let a = machine(&remote, manual_commits(&clock));
    let b = machine(&remote, manual_commits(&clock));
    let value = store_sample(&a.cache, b"build:1", Some(Duration::from_secs(100)));
    let published = remote.published();
    assert_eq!(published.len(), 1, "set_directory commits, then publishes");
    let (items, _) = published[0].2.directory.clone().expect("a directory");
    let paths: Vec<&str> = items.iter().map(|item| item.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "empty-dir",
            "empty.bin",
            "sealed",
            "sealed/read-only.txt",
            "zephyr",
            "zephyr/include",
            "zephyr/include/generated.h",
            "zephyr/zmk.elf",
            "zmk.uf2",
        ],
        "sorted, each directory before what it holds"
    );
    let original = snapshot(&a.cache.get_directory(b"build:1").unwrap().unwrap().path);
    clock.advance(Duration::from_secs(40));

    let fetched = b
        .cache
        .get_directory(b"build:1")
        .unwrap()
        .expect("read through");
    assert_eq!(fetched.value, value);
    assert_eq!(snapshot(&fetched.path), original);
    assert!(fetched.path.starts_with(b.root.path()));
    let metadata = b.cache.get_metadata(b"build:1").unwrap().unwrap();
    let expected_expiry = UNIX_EPOCH + Duration::from_millis(clock.now_ms() + 60_000);
    assert_eq!(
        metadata.expires_at,
        Some(expected_expiry),
        "the time it had left"
    );
    b.cache.flush().unwrap();
    assert_eq!(
        remote.published().len(),
        1,
        "the backfill was published back"
    );

    // Stored locally: without the remote, B still has it.
    let fetches = remote.fetches.load(Ordering::SeqCst);
    remote.forget_everything();
    let again = b
        .cache
        .get_directory(b"build:1")
        .unwrap()
        .expect("local hit");
    assert_eq!(snapshot(&again.path), original);
    assert_eq!(remote.fetches.load(Ordering::SeqCst), fetches);
}

#[rstest]
fn a_plain_read_of_a_remote_directory_entry_stores_the_directory_and_returns_its_value(
    clock: Arc<ManualClock>,
) {
    let remote = Arc::new(FakeRemote::default());
    let a = machine(&remote, manual_commits(&clock));
    let b = machine(&remote, manual_commits(&clock));
    let value = store_sample(&a.cache, b"build:2", None);
    assert_eq!(b.cache.get(b"build:2").unwrap(), Some(value.clone()));
    remote.forget_everything();
    let stored = b.cache.get_directory(b"build:2").unwrap().expect("stored");
    assert_eq!(stored.value, value);
    assert_eq!(
        snapshot(&stored.path),
        snapshot(&a.cache.get_directory(b"build:2").unwrap().unwrap().path)
    );
}

fn file(path: &str, len: u64) -> DirectoryItem {
    DirectoryItem {
        path: path.to_owned(),
        mode: 0o644,
        kind: DirectoryItemKind::File { len },
    }
}

fn dir(path: &str) -> DirectoryItem {
    DirectoryItem {
        path: path.to_owned(),
        mode: 0o755,
        kind: DirectoryItemKind::Dir,
    }
}

/// Everything below `top`, as relative paths.
fn everything_below(top: &Path) -> Vec<String> {
    snapshot(top).into_keys().collect()
}

#[rstest]
#[case::parent(vec![file("../x", 2)])]
#[case::parent_deeper(vec![dir("a"), file("a/../../../x", 2)])]
#[case::absolute(vec![file("{outside}/x", 2)])]
#[case::duplicate(vec![file("x", 1), file("x", 1)])]
#[case::file_and_dir(vec![dir("x"), file("x", 2)])]
#[case::below_a_file(vec![file("x", 1), file("x/y", 1)])]
#[case::empty_component(vec![file("a//x", 2)])]
#[case::dot(vec![file("./x", 2)])]
fn a_fetched_list_that_escapes_or_repeats_stores_nothing_and_writes_nothing_outside(
    clock: Arc<ManualClock>,
    #[case] items: Vec<DirectoryItem>,
) {
    let remote = Arc::new(FakeRemote::default());
    let b = machine(&remote, manual_commits(&clock));
    let outside = tempfile::tempdir().unwrap();
    let items: Vec<DirectoryItem> = items
        .into_iter()
        .map(|item| DirectoryItem {
            path: item
                .path
                .replace("{outside}", outside.path().to_str().unwrap()),
            ..item
        })
        .collect();
    // The tag exists, with its staging directory, before the fetch.
    b.cache.set(b"other", b"v", None).unwrap();
    b.cache.flush().unwrap();
    let before = everything_below(b.root.path());
    remote.put(
        "t",
        b"build:evil",
        Held {
            format: ValueFormat::RAW,
            expires_at: None,
            bytes: b"metadata".to_vec(),
            directory: Some((items, b"xx".to_vec())),
        },
    );
    assert_eq!(b.cache.get_directory(b"build:evil").unwrap(), None);
    assert_eq!(b.cache.keys().unwrap(), vec![b"other".to_vec()]);
    assert!(
        everything_below(outside.path()).is_empty(),
        "written outside"
    );
    let after = everything_below(b.root.path());
    assert_eq!(
        after, before,
        "the list was not refused before anything was written"
    );
}

#[rstest]
#[case::shorter(b"abc".to_vec())]
#[case::longer(b"abcdefgh".to_vec())]
fn contents_that_do_not_match_the_list_store_nothing(
    clock: Arc<ManualClock>,
    #[case] contents: Vec<u8>,
) {
    let remote = Arc::new(FakeRemote::default());
    let b = machine(&remote, manual_commits(&clock));
    remote.put(
        "t",
        b"build:short",
        Held {
            format: ValueFormat::RAW,
            expires_at: None,
            bytes: b"metadata".to_vec(),
            directory: Some((vec![dir("d"), file("d/a", 2), file("d/b", 3)], contents)),
        },
    );
    assert_eq!(b.cache.get_directory(b"build:short").unwrap(), None);
    assert!(b.cache.keys().unwrap().is_empty());
    let staging = b.root.path().join("t/dirs/.staging");
    assert!(
        !staging.exists() || everything_below(&staging).is_empty(),
        "{:?}",
        everything_below(&staging)
    );
}

#[rstest]
fn a_directory_holding_a_symlink_is_not_published(clock: Arc<ManualClock>) {
    let remote = Arc::new(FakeRemote::default());
    let a = machine(&remote, manual_commits(&clock));
    let staged = a.cache.stage_directory().unwrap();
    fs::write(staged.path().join("zmk.uf2"), b"uf2").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", staged.path().join("link")).unwrap();
    a.cache
        .set_directory(b"build:link", staged, b"v", None)
        .unwrap()
        .expect("stored locally");
    a.cache.flush().unwrap();
    assert!(remote.published().is_empty());
    assert!(a.cache.get_directory(b"build:link").unwrap().is_some());
}
