//! Keys: golden values (changing one orphans stored entries), and no two inputs share a key.

use std::collections::HashSet;
use std::time::Duration;

use cache_compilation::{
    BUILD_KEY_PREFIX, BuildInputs, CompilationError, DOCKER_IMAGE_KEY_PREFIX, DockerImageKey,
    WORKSPACE_KEY_PREFIX, WorkspaceId, WorkspaceLevel,
};
use cache_core::CacheKey;
use rstest::rstest;
use tempfile::TempDir;

use crate::{root, write};

fn text(key: Vec<u8>) -> String {
    String::from_utf8(key).unwrap()
}

#[test]
fn golden_workspace_keys() {
    assert_eq!(
        text(
            WorkspaceId::repository("zmkfirmware/zmk")
                .unwrap()
                .key_bytes()
        ),
        "workspace:repo:77ed774d6c6bcd32e6c64069013682e9a671d80ab1c747db2257986509220add"
    );
    assert_eq!(
        text(
            WorkspaceId::branch("zmkfirmware/zmk", "main")
                .unwrap()
                .key_bytes()
        ),
        "workspace:branch:77ed774d6c6bcd32e6c64069013682e9a671d80ab1c747db2257986509220add:\
         62351ae3b1a36190eb1803e8c054a3199ec10dedecbfd969ad92f3d16aa3479d"
    );
    // How they are made: the domain, the kind and the parts, through `keys::from_parts`.
    let repository =
        cache_core::keys::from_parts(["compilation", "workspace-repository", "zmkfirmware/zmk"]);
    let branch = cache_core::keys::from_parts([
        "compilation",
        "workspace-branch",
        "zmkfirmware/zmk",
        "main",
    ]);
    assert_eq!(
        text(
            WorkspaceId::branch("zmkfirmware/zmk", "main")
                .unwrap()
                .key_bytes()
        ),
        format!("workspace:branch:{repository}:{branch}")
    );
}

#[test]
fn golden_build_key() {
    let inputs = BuildInputs::new("zmkfirmware/zmk", "main", "keymap-hash", "config-hash")
        .pinned(crate::COMMIT, crate::TOOLCHAIN)
        .with_board("glove80_lh");
    assert_eq!(
        text(inputs.key_bytes()),
        // Issue 19: the commit and the toolchain joined the key (it was
        // build:2e4cf7fd63fa3fefc4a87053174fe433206c932c3db475e8d1d7b6bc0eb8970e).
        "build:1570c3bda9dff629ebe15fd003523b87c65ac95bb33f4a0d9ea4d89e9f7e0e26"
    );
}

#[test]
fn golden_docker_image_key() {
    let key =
        DockerImageKey::new("zmkfirmware/zmk-build-arm:stable", Duration::from_secs(1)).unwrap();
    assert_eq!(
        text(key.key_bytes()),
        "docker-image:3bbf2b8c63ec740d8b23d408392cb597cd67aecf8cb98adb0bef5c91cabe216f"
    );
}

#[test]
fn each_kind_has_its_readable_prefix() {
    assert!(
        text(WorkspaceId::repository("r").unwrap().key_bytes()).starts_with(WORKSPACE_KEY_PREFIX)
    );
    assert!(
        text(WorkspaceId::branch("r", "b").unwrap().key_bytes()).starts_with(WORKSPACE_KEY_PREFIX)
    );
    assert!(
        text(
            BuildInputs::new("r", "b", "k", "c")
                .pinned(crate::COMMIT, crate::TOOLCHAIN)
                .key_bytes()
        )
        .starts_with(BUILD_KEY_PREFIX)
    );
    let docker = DockerImageKey::new("img", Duration::from_secs(1)).unwrap();
    assert!(text(docker.key_bytes()).starts_with(DOCKER_IMAGE_KEY_PREFIX));
}

#[test]
fn workspace_keys_are_unambiguous() {
    let ids = [
        WorkspaceId::repository("zmkfirmware/zmk").unwrap(),
        // The original replaced `/` by `_` before hashing: these two collided.
        WorkspaceId::repository("zmkfirmware_zmk").unwrap(),
        WorkspaceId::branch("zmkfirmware/zmk", "main").unwrap(),
        WorkspaceId::branch("zmkfirmware/zmk", "main2").unwrap(),
        WorkspaceId::branch("zmkfirmware/zm", "kmain").unwrap(),
        WorkspaceId::branch("zmkfirmware_zmk", "main").unwrap(),
    ];
    let keys: HashSet<Vec<u8>> = ids.iter().map(WorkspaceId::key_bytes).collect();
    assert_eq!(keys.len(), ids.len());
}

#[test]
fn a_branch_key_starts_with_its_repository_key_and_only_its_own() {
    let repository = text(
        WorkspaceId::repository("zmkfirmware/zmk")
            .unwrap()
            .key_bytes(),
    );
    let repository_hash = repository.rsplit(':').next().unwrap();
    let branch = text(
        WorkspaceId::branch("zmkfirmware/zmk", "main")
            .unwrap()
            .key_bytes(),
    );
    assert!(
        branch.starts_with(&format!("workspace:branch:{repository_hash}:")),
        "{branch}"
    );
    let other = text(
        WorkspaceId::branch("moergo-sc/zmk", "main")
            .unwrap()
            .key_bytes(),
    );
    assert!(!other.contains(repository_hash), "{other}");
}

#[test]
fn levels_follow_the_branch() {
    assert_eq!(
        WorkspaceId::repository("r").unwrap().level(),
        WorkspaceLevel::Repository
    );
    let id = WorkspaceId::branch("r", "b").unwrap();
    assert_eq!(id.level(), WorkspaceLevel::RepositoryBranch);
    assert_eq!(id.repository_level(), WorkspaceId::repository("r").unwrap());
}

#[test]
fn build_keys_are_unambiguous() {
    let base = BuildInputs::new("r", "b", "k", "c").pinned(crate::COMMIT, crate::TOOLCHAIN);
    let variants = [
        base.clone(),
        BuildInputs::new("r", "b", "c", "k").pinned(crate::COMMIT, crate::TOOLCHAIN),
        BuildInputs::new("r", "bk", "", "c").pinned(crate::COMMIT, crate::TOOLCHAIN),
        base.clone().with_board("glove80_lh"),
        base.clone().with_board("glove80_rh"),
        base.clone().with_board(""),
        base.clone().with_shield(""),
        base.clone().with_shield("glove80_lh"),
        base.clone().with_board("x").with_shield("y"),
        base.clone().with_board("y").with_shield("x"),
        base.clone().pinned(&"a".repeat(40), crate::TOOLCHAIN),
        base.clone()
            .pinned(crate::COMMIT, "zmkfirmware/zmk-build-arm@sha256:0000"),
    ];
    let keys: HashSet<Vec<u8>> = variants.iter().map(BuildInputs::key_bytes).collect();
    assert_eq!(keys.len(), variants.len());
}

#[rstest]
#[case::empty_repository("", None, "repository")]
#[case::empty_branch("r", Some(""), "branch")]
#[case::control_character("r\n", None, "repository")]
fn invalid_workspace_ids_are_refused(
    #[case] repository: &str,
    #[case] branch: Option<&str>,
    #[case] what: &str,
) {
    let err = WorkspaceId::new(repository, branch).unwrap_err();
    assert!(
        matches!(&err, CompilationError::InvalidInput { what: w, .. } if *w == what),
        "{err}"
    );
}

/// Issue 19: a build keyed by repository and branch alone was served for the build TTL after
/// the branch moved. The key now holds the commit the branch resolved to and the toolchain,
/// and inputs without them are refused, naming what is missing.
#[rstest]
#[case::no_commit("", crate::TOOLCHAIN, "commit")]
#[case::abbreviated_commit("4f1c6e0", crate::TOOLCHAIN, "commit")]
#[case::a_branch_name_as_commit("main", crate::TOOLCHAIN, "commit")]
#[case::no_toolchain(crate::COMMIT, "", "toolchain")]
fn unpinned_build_inputs_are_refused(
    #[case] commit: &str,
    #[case] toolchain: &str,
    #[case] what: &str,
) {
    let unpinned = BuildInputs::new("r", "b", "k", "c");
    let err = unpinned.clone().validate().unwrap_err();
    assert!(
        matches!(&err, CompilationError::InvalidInput { what: "commit", .. }),
        "{err}"
    );
    let err = unpinned.pinned(commit, toolchain).validate().unwrap_err();
    assert!(
        matches!(&err, CompilationError::InvalidInput { what: w, .. } if *w == what),
        "{err}"
    );
    let sha256_commit = "ab".repeat(32);
    assert!(
        BuildInputs::new("r", "b", "k", "c")
            .pinned(&sha256_commit, crate::TOOLCHAIN)
            .validate()
            .is_ok()
    );
}

#[test]
fn invalid_build_inputs_are_refused() {
    let err = BuildInputs::new("r", "b", "", "c")
        .pinned(crate::COMMIT, crate::TOOLCHAIN)
        .validate()
        .unwrap_err();
    assert!(err.to_string().contains("keymap hash"), "{err}");
    assert!(
        BuildInputs::new("r", "b", "k", "c")
            .pinned(crate::COMMIT, crate::TOOLCHAIN)
            .validate()
            .is_ok()
    );
}

#[rstest]
fn build_inputs_from_files_hash_content_not_paths(root: TempDir) {
    let (keymap, config, keymap_copy) = (
        root.path().join("a.keymap"),
        root.path().join("a.conf"),
        root.path().join("elsewhere/b.keymap"),
    );
    write(&keymap, b"/ { keymap {}; };");
    write(&config, b"CONFIG_ZMK_SLEEP=y");
    write(&keymap_copy, b"/ { keymap {}; };");
    let first = BuildInputs::from_files("r", "main", &keymap, &config).unwrap();
    let same = BuildInputs::from_files("r", "main", &keymap_copy, &config).unwrap();
    assert_eq!(first.key_bytes(), same.key_bytes());
    assert_eq!(first.keymap_hash, blake3_hex(b"/ { keymap {}; };"));

    write(&keymap, b"/ { keymap { changed }; };");
    let changed = BuildInputs::from_files("r", "main", &keymap, &config).unwrap();
    assert_ne!(first.key_bytes(), changed.key_bytes());

    let err =
        BuildInputs::from_files("r", "main", &root.path().join("missing"), &config).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

fn blake3_hex(bytes: &[u8]) -> String {
    cache_core::keys::from_reader(bytes).unwrap()
}
