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
        cache.same_instance(&through_real),
        "one instance for both spellings"
    );
    assert!(real.join("t").join(DATABASE_FILE_NAME).is_file());
    coordinator.reset().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Containment (issue 13, items 5 to 7): every directory and file the cache creates below the
// root, planted as a symlink out of it, is never followed by a write, a cleanup or a doctor run
// in another process; a root or tag directory another user could change is refused.

/// A root an attacker prepared, and beside it `outside/`, whose files must survive unchanged.
/// Its names look like temp files of processes that are gone, so that a sweep that followed a
/// link would remove them.
struct Planted {
    _scratch: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Planted {
    fn new() -> Planted {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("root");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
        let root = fs::canonicalize(&root).unwrap();
        let outside = scratch.path().join("outside");
        fs::create_dir(&outside).unwrap();
        // Only files in `files/`, only directories in `projects/`: a sweep of temp files (or of
        // staging directories) that followed a link there would remove every one of them; a
        // mix would stop it with an error before it got to all.
        fs::create_dir_all(outside.join("files")).unwrap();
        fs::create_dir_all(outside.join("projects/firmware")).unwrap();
        for (name, content) in [
            ("files/sentinel", &b"precious"[..]),
            ("files/4000000000-0", b"looks like a dead writer's temp"),
            ("files/notes.txt", b"the user's"),
            ("projects/firmware/main.c", b"int main(void) { return 0; }"),
        ] {
            fs::write(outside.join(name), content).unwrap();
        }
        Planted {
            _scratch: scratch,
            root,
            outside,
        }
    }

    /// Everything under `outside/`, with every file's content: equal before and after means
    /// nothing there was written, created or removed.
    fn outside_state(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        walk(&self.outside)
            .into_iter()
            .map(|(path, node)| {
                let content = match node {
                    Node::File(_) => fs::read(self.outside.join(&path)).unwrap(),
                    other => format!("{other:?}").into_bytes(),
                };
                (path, content)
            })
            .collect()
    }

    /// Replaces `relative` (below the root) with a symlink to `outside/files/` (to
    /// `outside/projects/`, which holds only directories, for the staging directory).
    fn plant(&self, relative: &str) -> PathBuf {
        let target = if relative.ends_with(".staging") {
            self.outside.join("projects")
        } else {
            self.outside.join("files")
        };
        let path = self.root.join(relative);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path).unwrap(),
            Ok(_) => fs::remove_file(&path).unwrap(),
            Err(_) => fs::create_dir_all(path.parent().unwrap()).unwrap(),
        }
        symlink(&target, &path).unwrap();
        path
    }

    /// Runs `cache-worker contain ROOT TAG STEP` and returns what it printed.
    fn step(&self, tag: &str, step: &str) -> String {
        let output = Command::new(WORKER)
            .args([
                "contain".as_ref(),
                self.root.as_os_str(),
                tag.as_ref(),
                step.as_ref(),
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && !stderr.contains("panicked"),
            "contain {tag} {step} failed ({}): {stderr}\n{stdout}",
            output.status
        );
        stdout
    }
}

/// Asserts that a step either succeeded or failed with a clear error naming `planted`.
fn assert_ok_or_refused(step: &str, stdout: &str, planted: &Path) {
    for line in stdout.lines() {
        if let Some(error) = line.strip_prefix("error ") {
            assert!(
                error.contains(&*planted.to_string_lossy()),
                "{step}: the error names {}: {error}",
                planted.display()
            );
        } else {
            assert!(
                line.starts_with("ok") || line.starts_with("check "),
                "{step}: {line}"
            );
        }
    }
}

/// Issue 13, items 5 to 7: a symlink planted (after a first write) where the cache keeps a
/// directory or file of its own is never followed by `set`, `cleanup`, `doctor` or
/// `doctor --repair` in another process: each succeeds without touching what it points to, or
/// fails with an error naming it.
#[rstest]
#[case::tag_directory("t")]
#[case::blobs("t/blobs")]
#[case::blob_fanout("fanout")]
#[case::blobs_tmp("t/blobs/tmp")]
#[case::dirs("t/dirs")]
#[case::dirs_staging("t/dirs/.staging")]
#[case::usage("t/usage")]
#[case::database("t/cache.redb")]
fn trust_05_no_step_follows_a_symlink_planted_below_the_root(#[case] relative: &str) {
    let planted = Planted::new();
    assert_eq!(planted.step("t", "set").trim(), "ok set");
    let relative = if relative == "fanout" {
        // The fan-out directory of the stored blob: the only one there besides `tmp`.
        let fanout = fs::read_dir(planted.root.join("t/blobs"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .find(|name| name != "tmp")
            .unwrap();
        format!("t/blobs/{fanout}")
    } else {
        relative.to_owned()
    };
    let link = planted.plant(&relative);
    let before = planted.outside_state();
    let mut refusals = 0;
    for step in ["set", "cleanup", "doctor", "repair", "set", "cleanup"] {
        let stdout = planted.step("t", step);
        assert_ok_or_refused(step, &stdout, &link);
        refusals += stdout.matches("refusing").count() + stdout.matches("symlink").count();
        assert_eq!(
            planted.outside_state(),
            before,
            "{step} with {relative} planted changed what is outside the root"
        );
    }
    assert!(
        fs::symlink_metadata(&link).is_err()
            || fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
            || relative == "t/usage",
        "the link is left for a person to look at (only `usage` is replaced by a file)"
    );
    if relative != "t/usage" {
        assert!(refusals > 0, "some step said what it refused");
    }
}

/// Issue 13, item 7: a symlink planted under this process's usage temp name
/// (`usage.tmp-<pid>`) is never written through: the temp is created exclusively (the link is
/// unlinked first), and `usage` ends a regular file.
#[test]
fn trust_07_a_symlinked_usage_temp_is_never_written_through() {
    let planted = Planted::new();
    let tag_dir = planted.root.join("t");
    fs::create_dir(&tag_dir).unwrap();
    fs::set_permissions(&tag_dir, fs::Permissions::from_mode(0o700)).unwrap();
    symlink(
        planted.outside.join("files/sentinel"),
        tag_dir.join(format!("usage.tmp-{}", std::process::id())),
    )
    .unwrap();
    let before = planted.outside_state();
    let coordinator = coordinator();
    let cache = coordinator
        .get_shared_cache_instance(&planted.root, "t", CacheOptions::default())
        .unwrap();
    cache.set(b"k", b"v", None).unwrap();
    cache.flush().unwrap();
    coordinator.reset().unwrap();
    assert_eq!(planted.outside_state(), before);
    let usage = fs::symlink_metadata(tag_dir.join("usage")).unwrap();
    assert!(usage.is_file(), "usage is a regular file");
    assert!(
        fs::symlink_metadata(tag_dir.join(format!("usage.tmp-{}", std::process::id()))).is_err(),
        "no temp left"
    );
}

/// Issue 13, item 16: a usage file that cannot be written (here `usage` is a directory, so the
/// rename fails every time) leaves no `usage.tmp-*` behind, and the write itself goes through.
#[test]
fn trust_16_a_failed_usage_write_leaves_no_temp_file() {
    let planted = Planted::new();
    let tag_dir = planted.root.join("t");
    fs::create_dir_all(tag_dir.join("usage/in-the-way")).unwrap();
    fs::set_permissions(&tag_dir, fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(planted.step("t", "set").trim(), "ok set");
    let temps: Vec<_> = fs::read_dir(&tag_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("usage.tmp"))
        .collect();
    assert!(temps.is_empty(), "left behind: {temps:?}");
}

/// Issue 13, item 6: `metrics/blobs -> ../layout/blobs` never makes the metrics tag's cleanup
/// (or doctor's repair) remove the layout tag's blobs.
#[test]
fn trust_06_a_tag_blobs_linked_to_another_tags_blobs_is_never_followed() {
    let planted = Planted::new();
    assert_eq!(planted.step("layout", "set").trim(), "ok set");
    let layout_blobs = walk(&planted.root.join("layout/blobs"));
    // The metrics tag refers to no blob of its own: every blob reached through the link would
    // be an orphan to it.
    fs::create_dir(planted.root.join("metrics")).unwrap();
    fs::set_permissions(
        planted.root.join("metrics"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    symlink("../layout/blobs", planted.root.join("metrics/blobs")).unwrap();
    let link = planted.root.join("metrics/blobs");
    for step in ["cleanup", "repair", "cleanup"] {
        let stdout = planted.step("metrics", step);
        assert_ok_or_refused(step, &stdout, &link);
        assert_eq!(
            walk(&planted.root.join("layout/blobs")),
            layout_blobs,
            "metrics {step} changed the layout tag's blobs"
        );
    }
    let coordinator = coordinator();
    let layout = coordinator
        .get_shared_cache_instance(&planted.root, "layout", CacheOptions::default())
        .unwrap();
    assert_eq!(
        layout.get(b"large").unwrap(),
        Some(cache_tests::large_value())
    );
}

/// Issue 13, item 6: `layout/dirs -> ../compilation/dirs` never makes the layout tag's cleanup
/// (or doctor's repair) remove the compilation tag's directories.
#[test]
fn trust_06_a_tag_dirs_linked_to_another_tags_dirs_is_never_followed() {
    let planted = Planted::new();
    assert_eq!(planted.step("compilation", "set").trim(), "ok set");
    fs::create_dir(planted.root.join("layout")).unwrap();
    fs::set_permissions(
        planted.root.join("layout"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    symlink("../compilation/dirs", planted.root.join("layout/dirs")).unwrap();
    let link = planted.root.join("layout/dirs");
    let compilation_dirs = walk(&planted.root.join("compilation/dirs"));
    for step in ["set", "cleanup", "repair", "cleanup"] {
        let stdout = planted.step("layout", step);
        assert_ok_or_refused(step, &stdout, &link);
        assert_eq!(
            walk(&planted.root.join("compilation/dirs")),
            compilation_dirs,
            "layout {step} changed the compilation tag's directories"
        );
    }
    let coordinator = coordinator();
    let compilation = coordinator
        .get_shared_cache_instance(&planted.root, "compilation", CacheOptions::default())
        .unwrap();
    let directory = compilation.get_directory(b"directory").unwrap().unwrap();
    assert_eq!(fs::read(directory.path.join("file")).unwrap(), b"staged");
}

/// Issue 13, item 5: in a root shared by two users, a tag directory owned by another user
/// (uid 65534) with mode 0777, where that user could plant links, is refused by every step with
/// an error naming it; nothing the victim owns outside the root is touched.
#[test]
fn trust_05_a_tag_directory_another_user_owns_is_refused() {
    let planted = Planted::new();
    fs::set_permissions(&planted.root, fs::Permissions::from_mode(0o755)).unwrap();
    let tag_dir = planted.root.join("t");
    fs::create_dir(&tag_dir).unwrap();
    fs::set_permissions(&tag_dir, fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(&tag_dir, Some(65534), Some(65534))
        .expect("chown to uid 65534 (the suite runs as root, as CI does)");
    // What that user would plant.
    fs::create_dir(tag_dir.join("blobs")).unwrap();
    symlink(planted.outside.join("files"), tag_dir.join("blobs/tmp")).unwrap();
    let before = planted.outside_state();
    for step in ["set", "cleanup"] {
        let stdout = planted.step("t", step);
        assert!(
            stdout.starts_with("error ")
                && stdout.contains(&*tag_dir.to_string_lossy())
                && stdout.contains("owned by uid 65534"),
            "{step}: {stdout}"
        );
    }
    for step in ["doctor", "repair"] {
        let stdout = planted.step("t", step);
        assert_ok_or_refused(step, &stdout, &tag_dir);
    }
    assert_eq!(planted.outside_state(), before);
}

/// Issue 13, item 5: a root writable by its group or by others (where another user could plant
/// a tag directory of their own) is refused with an error naming it; so is a symlinked root
/// that leads to one. A symlinked root leading to a private directory is fine (the test above,
/// `a_symlinked_root_is_resolved_once`).
#[rstest]
#[case::group_writable(0o770, false)]
#[case::other_writable(0o707, false)]
#[case::sticky_world_writable(0o1777, false)]
#[case::through_a_symlink(0o777, true)]
fn trust_05_a_root_other_users_can_write_is_refused(#[case] mode: u32, #[case] linked: bool) {
    let planted = Planted::new();
    fs::set_permissions(&planted.root, fs::Permissions::from_mode(mode)).unwrap();
    let given = if linked {
        let link = planted.root.with_file_name("link");
        symlink(&planted.root, &link).unwrap();
        link
    } else {
        planted.root.clone()
    };
    let err = coordinator()
        .get_shared_cache_instance(&given, "t", CacheOptions::default())
        .map(drop)
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("refusing {}: ", planted.root.display()))
            && err.to_string().contains("writable by"),
        "{err}"
    );
    let before = planted.outside_state();
    let output = Command::new(WORKER)
        .args([
            "contain".as_ref(),
            given.as_os_str(),
            "t".as_ref(),
            "set".as_ref(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("error refusing") && stdout.contains("writable by"),
        "{stdout}"
    );
    assert!(walk(&planted.root).is_empty(), "nothing was created");
    assert_eq!(planted.outside_state(), before);
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
