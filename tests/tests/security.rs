//! Security of the files a cache root holds: the root and tag directories are private (0700) and
//! files are 0600 whatever the umask; a tag or key that looks like a path never becomes one; and
//! symlinks planted inside the root (a tag directory, the database file, a quarantine name) are
//! never followed out of it.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its location"
)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cache_core::{
    CacheError, CacheOptions, Coordinator, DATABASE_FILE_NAME, Environment, ManualClock, Tag,
};
use rstest::rstest;

const WORKER: &str = env!("CARGO_BIN_EXE_cache-worker");

fn coordinator() -> Coordinator {
    Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]))
}

/// What a walk found at a path: a directory, a file, or a symlink (with its target), and the
/// permission bits.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir(u32),
    File(u32),
    Symlink(PathBuf),
}

/// Everything below `dir`, by path relative to it, never following a symlink.
fn walk(dir: &Path) -> BTreeMap<PathBuf, Node> {
    fn visit(base: &Path, dir: &Path, found: &mut BTreeMap<PathBuf, Node>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let relative = path.strip_prefix(base).unwrap().to_owned();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                found.insert(relative, Node::Symlink(fs::read_link(&path).unwrap()));
            } else if meta.is_dir() {
                found.insert(relative, Node::Dir(mode));
                visit(base, &path, found);
            } else {
                found.insert(relative, Node::File(mode));
            }
        }
    }
    let mut found = BTreeMap::new();
    visit(dir, dir, &mut found);
    found
}

/// Under umask 000, which would leave anything created with default modes world-writable, a new
/// root (and its missing parents), the tag directories and the database files are 0700 and 0600,
/// including the fresh file that replaces a quarantined one.
#[test]
fn directories_are_0700_and_files_0600_whatever_the_umask() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("a").join("b").join("root");
    fs::create_dir_all(root.join("damaged")).unwrap();
    fs::write(
        root.join("damaged").join(DATABASE_FILE_NAME),
        vec![0xA5; 8192],
    )
    .unwrap();
    // The test made the damaged tag's directories itself: it gives them the cache's mode, so that
    // the walk below judges only what the cache created (the fresh file replacing the damaged one).
    for dir in [
        scratch.path().join("a"),
        scratch.path().join("a").join("b"),
        root.clone(),
        root.join("damaged"),
    ] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    }
    let fresh_root = scratch.path().join("new").join("nested").join("root");

    for (root, tag) in [(&fresh_root, "t"), (&root, "damaged")] {
        let output = Command::new("sh")
            .arg("-c")
            .arg(r#"umask 000 && exec "$0" "$@""#)
            .arg(WORKER)
            .args(["probe".as_ref(), root.as_os_str(), tag.as_ref()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("flush ok"),
            "probe of {tag} failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let mut checked = 0;
    for (path, node) in walk(scratch.path()) {
        let name = path.to_string_lossy();
        if name.contains(".corrupt-") {
            // The planted file, moved aside as it was.
            continue;
        }
        match node {
            Node::Dir(mode) => assert_eq!(mode, 0o700, "{name} is {mode:o}"),
            Node::File(mode) => assert_eq!(mode, 0o600, "{name} is {mode:o}"),
            Node::Symlink(target) => panic!("{name} is a symlink to {}", target.display()),
        }
        checked += 1;
    }
    assert!(
        fresh_root.join("t").join(DATABASE_FILE_NAME).is_file()
            && root.join("damaged").join(DATABASE_FILE_NAME).is_file(),
        "both tags have their file"
    );
    eprintln!("security: umask 000, {checked} paths under the two roots: all 0700 / 0600");
}

/// A tag that tries to be a path is refused by `Tag::new` and by the coordinator, before anything
/// is created: not the root, not a directory anywhere.
#[rstest]
#[case::parent("..")]
#[case::traversal("../x")]
#[case::deep_traversal("../../../../tmp/x")]
#[case::nested("a/b")]
#[case::trailing_parent("ok/..")]
#[case::absolute("/etc")]
#[case::absolute_tmp("/tmp/evil")]
#[case::current(".")]
#[case::empty("")]
#[case::nul("a\0b")]
#[case::backslash("a\\b")]
#[case::drive("C:")]
#[case::newline("tag\n")]
#[case::encoded_parent("%2e%2e")]
#[case::dot_prefixed(".hidden")]
fn a_path_like_tag_is_refused_and_creates_nothing(#[case] tag: &str) {
    assert!(
        matches!(Tag::new(tag), Err(CacheError::InvalidTag { .. })),
        "Tag::new({tag:?})"
    );
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    let err = coordinator()
        .get_shared_cache_instance(&root, tag, CacheOptions::default())
        .map(drop)
        .unwrap_err();
    assert!(
        matches!(&err, CacheError::InvalidTag { tag: refused, .. } if refused == tag),
        "{err}"
    );
    assert!(walk(scratch.path()).is_empty(), "nothing was created");
}

/// Keys are bytes in the database, never file names: keys shaped like paths are stored and read
/// back, and the root holds nothing but the tag's directory and database file.
#[test]
fn a_path_like_key_never_becomes_a_path() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    let keys: [&[u8]; 9] = [
        b"../../escape",
        b"/etc/passwd",
        b"a/b/c",
        b"..",
        b".",
        b"\0",
        b"blobs/../../x",
        b"C:\\Windows\\x",
        b"t/cache.redb",
    ];
    let coordinator = coordinator();
    let cache = coordinator
        .get_shared_cache_instance(&root, "t", CacheOptions::default())
        .unwrap();
    for (index, key) in keys.iter().enumerate() {
        cache.set(key, &[index as u8; 16], None).unwrap();
    }
    cache.flush().unwrap();
    for (index, key) in keys.iter().enumerate() {
        assert_eq!(cache.get(key).unwrap(), Some(vec![index as u8; 16]));
    }
    assert_eq!(cache.keys().unwrap().len(), keys.len());
    coordinator.reset().unwrap();
    let found: Vec<PathBuf> = walk(scratch.path()).into_keys().collect();
    assert_eq!(
        found,
        [
            PathBuf::from("root"),
            PathBuf::from("root/t"),
            PathBuf::from("root/t").join(DATABASE_FILE_NAME),
            // The tag's published usage, for the root budget.
            PathBuf::from("root/t/usage"),
        ]
    );
}

/// A tag directory planted as a symlink, out of the root or to another place inside it, is
/// refused with a clear error, and nothing is written where it points.
#[rstest]
#[case::out_of_the_root(true)]
#[case::inside_the_root(false)]
fn a_symlinked_tag_directory_is_never_followed(#[case] out_of_the_root: bool) {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    fs::create_dir(&root).unwrap();
    let target = if out_of_the_root {
        scratch.path().join("outside")
    } else {
        root.join("elsewhere")
    };
    fs::create_dir(&target).unwrap();
    symlink(&target, root.join("t")).unwrap();

    let err = coordinator()
        .get_shared_cache_instance(&root, "t", CacheOptions::default())
        .map(drop)
        .unwrap_err();
    assert!(
        matches!(&err, CacheError::InvalidRoot { reason, .. } if reason.contains("symlink")),
        "{err}"
    );
    assert!(
        fs::read_dir(&target).unwrap().next().is_none(),
        "nothing was written through the link"
    );
}

/// A database file planted as a symlink (to a file out of the root, or dangling) is refused, and
/// the file it points to is neither changed nor created.
#[rstest]
#[case::to_a_file(true)]
#[case::dangling(false)]
fn a_symlinked_database_file_is_never_followed(#[case] target_exists: bool) {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    fs::create_dir_all(root.join("t")).unwrap();
    let victim = scratch.path().join("victim");
    if target_exists {
        fs::write(&victim, b"precious").unwrap();
    }
    symlink(&victim, root.join("t").join(DATABASE_FILE_NAME)).unwrap();

    let err = coordinator()
        .get_shared_cache_instance(&root, "t", CacheOptions::default())
        .map(drop)
        .unwrap_err();
    assert!(
        matches!(&err, CacheError::InvalidRoot { reason, .. } if reason.contains("not a regular file")),
        "{err}"
    );
    if target_exists {
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    } else {
        assert!(
            !victim.exists(),
            "the dangling link's target was not created"
        );
    }
}

/// Quarantine moves a corrupt file aside by renaming it; a symlink planted under the quarantine
/// name is replaced, never written through.
#[test]
fn quarantine_never_writes_through_a_planted_symlink() {
    const NOW_MS: u64 = 1_767_225_600_000;
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    let tag_dir = root.join("t");
    fs::create_dir_all(&tag_dir).unwrap();
    let garbage = vec![0xA5u8; 64 * 1024];
    fs::write(tag_dir.join(DATABASE_FILE_NAME), &garbage).unwrap();
    let victim = scratch.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    let quarantine_name = tag_dir.join(format!("{DATABASE_FILE_NAME}.corrupt-{NOW_MS}"));
    symlink(&victim, &quarantine_name).unwrap();

    let options = CacheOptions {
        clock: Arc::new(ManualClock::new(NOW_MS)),
        ..CacheOptions::default()
    };
    let coordinator = coordinator();
    let cache = coordinator
        .get_shared_cache_instance(&root, "t", options)
        .unwrap();
    assert_eq!(
        cache.keys().unwrap(),
        Vec::<Vec<u8>>::new(),
        "the tag starts empty"
    );
    coordinator.reset().unwrap();

    assert_eq!(
        fs::read(&victim).unwrap(),
        b"precious",
        "the link's target is untouched"
    );
    let aside = fs::symlink_metadata(&quarantine_name).unwrap();
    assert!(
        aside.is_file(),
        "the link was replaced by the quarantined file"
    );
    assert_eq!(fs::read(&quarantine_name).unwrap(), garbage);
}

/// The root itself may be a symlink: the user (or `GLOVEBOX_CACHE_PATH`) chose it, so it is
/// resolved once, and the instance is registered under the resolved path; the checks above apply
/// to everything below it.
#[test]
fn a_symlinked_root_is_resolved_once() {
    let scratch = tempfile::tempdir().unwrap();
    let real = scratch.path().join("real");
    fs::create_dir(&real).unwrap();
    let link = scratch.path().join("link");
    symlink(&real, &link).unwrap();
    let coordinator = coordinator();
    let cache = coordinator
        .get_shared_cache_instance(&link, "t", CacheOptions::default())
        .unwrap();
    let through_real = coordinator
        .get_shared_cache_instance(&real, "t", CacheOptions::default())
        .unwrap();
    assert!(
        Arc::ptr_eq(&cache, &through_real),
        "one instance for both spellings"
    );
    assert!(real.join("t").join(DATABASE_FILE_NAME).is_file());
    coordinator.reset().unwrap();
}

/// Issue 13, item 8: `doctor` without repair ("nothing is written") copied the database to
/// `<tag>/.doctor-<pid>-<ms>.redb.tmp` with `fs::copy`, which follows a symlink planted at that
/// name: the outside file was overwritten with the database. doctor now checks a copy-on-write
/// view of the file and writes no copy. A symlink is planted at every name it could have used
/// (this process's id, every millisecond from a second before to 20 s after the run starts).
#[test]
fn trust_08_doctor_writes_nothing_through_a_symlink_at_its_scratch_name() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    let coordinator = coordinator();
    let cache = coordinator
        .get_shared_cache_instance(&root, "t", CacheOptions::default())
        .unwrap();
    for index in 0..200u32 {
        cache.set(&index.to_be_bytes(), &[5u8; 300], None).unwrap();
    }
    coordinator.reset().unwrap();
    let sentinel = scratch.path().join("sentinel");
    fs::write(&sentinel, b"outside the root").unwrap();
    let canonical = cache_core::prepare_root(&root).unwrap();
    let tag_dir = canonical.join("t");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let pid = std::process::id();
    for ms in now_ms - 1_000..now_ms + 20_000 {
        symlink(
            &sentinel,
            tag_dir.join(format!(".doctor-{pid}-{ms}.redb.tmp")),
        )
        .unwrap();
    }

    let diagnosis = cache_core::diagnose_tag(
        &canonical,
        &Tag::new("t").unwrap(),
        &cache_core::DoctorOptions::default(),
    );

    let outside = fs::read(&sentinel).unwrap();
    assert!(
        outside == b"outside the root",
        "the file outside the root was overwritten ({} bytes now)",
        outside.len()
    );
    assert!(diagnosis.is_healthy(), "{diagnosis:?}");
}
