//! The coordinator's registry: same pair same instance, isolation, settings conflicts, reset, factories.

use cache_core::{
    CacheError, CacheOptions, CacheStrategy, Coordinator, Environment, UserCacheConfig,
};
use rstest::rstest;
use tempfile::TempDir;

use crate::{coordinator, open, root};

#[rstest]
fn same_tag_same_instance_different_tag_different_instance(
    root: TempDir,
    coordinator: Coordinator,
) {
    let first = open(&coordinator, &root, "compilation", CacheOptions::default());
    let second = open(&coordinator, &root, "compilation", CacheOptions::default());
    let other = open(&coordinator, &root, "metrics", CacheOptions::default());
    assert!(first.same_instance(&second));
    assert!(!first.same_instance(&other));
    assert_eq!(coordinator.instance_count(), 2);
}

#[rstest]
fn different_tags_are_isolated_namespaces(root: TempDir, coordinator: Coordinator) {
    let layout = open(&coordinator, &root, "layout", CacheOptions::default());
    let metrics = open(&coordinator, &root, "metrics", CacheOptions::default());
    layout.set(b"k", b"layout value", None).unwrap();
    assert_eq!(metrics.get(b"k").unwrap(), None);
    metrics.set(b"k", b"metrics value", None).unwrap();
    assert_eq!(layout.get(b"k").unwrap(), Some(b"layout value".to_vec()));
    assert!(root.path().join("layout").join("cache.redb").is_file());
    assert!(root.path().join("metrics").join("cache.redb").is_file());
}

#[rstest]
fn untagged_means_the_default_tag(root: TempDir, coordinator: Coordinator) {
    let untagged = coordinator
        .get_shared_cache_instance(root.path(), None, CacheOptions::default())
        .unwrap();
    let named = open(&coordinator, &root, "default", CacheOptions::default());
    assert!(untagged.same_instance(&named));
    assert_eq!(untagged.tag().as_str(), "default");
}

#[rstest]
fn the_registry_key_is_the_canonical_root(root: TempDir, coordinator: Coordinator) {
    let plain = open(&coordinator, &root, "t", CacheOptions::default());
    let dotted = root.path().join(".").join("sub").join("..");
    std::fs::create_dir(root.path().join("sub")).unwrap();
    let via_dots = coordinator
        .get_shared_cache_instance(&dotted, "t", CacheOptions::default())
        .unwrap();
    assert!(plain.same_instance(&via_dots));
    let canonical = root.path().canonicalize().unwrap();
    assert_eq!(
        coordinator.instance_keys(),
        vec![format!("{}:t", canonical.display())]
    );
}

#[rstest]
fn other_settings_for_a_registered_pair_are_an_error_naming_the_setting(
    root: TempDir,
    coordinator: Coordinator,
) {
    let _first = open(&coordinator, &root, "t", CacheOptions::default());
    let smaller = CacheOptions {
        max_size_bytes: 1024,
        ..CacheOptions::default()
    };
    match coordinator.get_shared_cache_instance(root.path(), "t", smaller) {
        Err(CacheError::SettingsConflict { setting, .. }) => assert_eq!(setting, "max_size_bytes"),
        other => panic!("expected SettingsConflict, got {other:?}"),
    }
}

#[rstest]
fn reset_closes_instances_and_keeps_their_data(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    cache.set(b"kept", b"value", None).unwrap();
    coordinator.reset().unwrap();
    assert_eq!(coordinator.instance_count(), 0);
    assert!(matches!(cache.get(b"kept"), Err(CacheError::Closed { .. })));
    let reopened = open(&coordinator, &root, "t", CacheOptions::default());
    assert!(!cache.same_instance(&reopened));
    assert_eq!(reopened.get(b"kept").unwrap(), Some(b"value".to_vec()));
}

#[rstest]
fn a_closed_instance_is_replaced_on_the_next_request(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    cache.close().unwrap();
    cache.close().unwrap(); // closing twice is fine
    let again = open(&coordinator, &root, "t", CacheOptions::default());
    assert!(!again.is_closed());
    again.set(b"k", b"v", None).unwrap();
}

#[rstest]
fn cleanup_all_and_aggregated_stats_cover_every_instance(root: TempDir, coordinator: Coordinator) {
    let a = open(&coordinator, &root, "a", CacheOptions::default());
    let b = open(&coordinator, &root, "b", CacheOptions::default());
    a.set(b"1", b"x", None).unwrap();
    b.set(b"1", b"y", None).unwrap();
    b.set(b"2", b"z", None).unwrap();
    assert!(a.get(b"1").unwrap().is_some());
    assert!(b.get(b"missing").unwrap().is_none());

    let stats = coordinator.aggregated_stats().unwrap();
    assert_eq!(stats.instances, 2);
    assert_eq!(stats.entries, 3);
    assert_eq!(stats.totals.hits, 1);
    assert_eq!(stats.totals.misses, 1);
    assert_eq!(stats.overall_hit_rate(), 50.0);
    let by_tag = stats.by_tag();
    assert_eq!(by_tag["a"].sets, 1);
    assert_eq!(by_tag["b"].sets, 2);

    let cleaned = coordinator.cleanup_all();
    assert_eq!(cleaned.len(), 2);
    assert!(
        cleaned
            .values()
            .all(|report| report.as_ref().is_ok_and(|r| r.total() == 0))
    );
}

#[rstest]
#[case::global_false("GLOBAL", "false")]
#[case::global_zero("GLOBAL", "0")]
#[case::global_disabled_upper("GLOBAL", "DISABLED")]
#[case::tag_false_mixed_case("LAYOUT", "FaLsE")]
#[case::tag_zero("LAYOUT", "0")]
fn kill_switches_give_a_disabled_unregistered_cache(
    root: TempDir,
    #[case] scope: &str,
    #[case] value: &str,
) {
    let coordinator = Coordinator::with_environment(Environment::from_pairs([(
        format!("GLOVEBOX_CACHE_{scope}"),
        value,
    )]));
    let cache = open(&coordinator, &root, "layout", CacheOptions::default());
    assert!(!cache.is_enabled());
    cache.set(b"k", b"v", None).unwrap();
    assert_eq!(cache.get(b"k").unwrap(), None);
    assert_eq!(coordinator.instance_count(), 0);
    assert!(
        !root.path().join("layout").exists(),
        "a disabled cache creates nothing"
    );
}

#[rstest]
fn a_kill_switch_for_one_tag_leaves_the_others_enabled(root: TempDir) {
    let coordinator = Coordinator::with_environment(Environment::from_pairs([(
        "GLOVEBOX_CACHE_LAYOUT",
        "false",
    )]));
    assert!(!open(&coordinator, &root, "layout", CacheOptions::default()).is_enabled());
    assert!(open(&coordinator, &root, "metrics", CacheOptions::default()).is_enabled());
}

#[rstest]
fn enabled_false_gives_a_disabled_cache(root: TempDir, coordinator: Coordinator) {
    let cache = open(
        &coordinator,
        &root,
        "t",
        CacheOptions {
            enabled: false,
            ..CacheOptions::default()
        },
    );
    assert!(!cache.is_enabled());
    assert_eq!(coordinator.instance_count(), 0);
}

#[rstest]
fn create_default_cache_uses_the_configured_root_and_strategy(root: TempDir) {
    let path = root.path().to_str().unwrap().to_owned();
    let coordinator = Coordinator::with_environment(Environment::from_pairs([(
        "GLOVEBOX_CACHE_PATH",
        path.as_str(),
    )]));
    let cache = coordinator.create_default_cache("compilation").unwrap();
    cache.set(b"k", b"v", None).unwrap();
    assert!(root.path().join("compilation").join("cache.redb").is_file());

    let disabled = Coordinator::with_environment(Environment::from_pairs([
        ("GLOVEBOX_CACHE_PATH", path.as_str()),
        ("GLOVEBOX_CACHE_STRATEGY", "disabled"),
    ]));
    assert!(
        !disabled
            .create_default_cache("compilation")
            .unwrap()
            .is_enabled()
    );
}

#[rstest]
fn user_config_path_is_honoured(root: TempDir, coordinator: Coordinator) {
    let config = UserCacheConfig {
        cache_path: Some(root.path().join("custom")),
        ..UserCacheConfig::default()
    };
    let cache = coordinator
        .create_cache_from_user_config(&config, "moergo")
        .unwrap();
    assert!(cache.is_enabled());
    assert!(
        root.path()
            .join("custom")
            .join("moergo")
            .join("cache.redb")
            .is_file()
    );

    let disabled = UserCacheConfig {
        strategy: CacheStrategy::Disabled,
        ..config
    };
    assert!(
        !coordinator
            .create_cache_from_user_config(&disabled, "layout")
            .unwrap()
            .is_enabled()
    );
}

#[rstest]
#[case::traversal("../escape")]
#[case::slash("a/b")]
#[case::empty("")]
#[case::upper("Layout")]
fn an_invalid_tag_is_a_clear_error_and_creates_nothing(
    root: TempDir,
    coordinator: Coordinator,
    #[case] tag: &str,
) {
    let err = coordinator
        .get_shared_cache_instance(root.path(), tag, CacheOptions::default())
        .unwrap_err();
    assert!(matches!(err, CacheError::InvalidTag { .. }), "{err}");
    assert!(err.to_string().contains("invalid cache tag"), "{err}");
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[rstest]
fn a_root_that_is_a_file_is_a_clear_error(root: TempDir, coordinator: Coordinator) {
    let file = root.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = coordinator
        .get_shared_cache_instance(&file, "t", CacheOptions::default())
        .unwrap_err();
    assert!(matches!(err, CacheError::InvalidRoot { .. }), "{err}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[rstest]
fn invalid_options_are_refused(root: TempDir, coordinator: Coordinator) {
    let options = CacheOptions {
        timeout: std::time::Duration::ZERO,
        ..CacheOptions::default()
    };
    let err = coordinator
        .get_shared_cache_instance(root.path(), "t", options)
        .unwrap_err();
    assert!(err.to_string().contains("timeout"), "{err}");
}

#[cfg(unix)]
#[rstest]
fn a_new_root_and_its_files_are_private(root: TempDir, coordinator: Coordinator) {
    use std::os::unix::fs::PermissionsExt;
    let new_root = root.path().join("fresh");
    let cache = coordinator
        .get_shared_cache_instance(&new_root, "t", CacheOptions::default())
        .unwrap();
    cache.set(b"k", b"v", None).unwrap();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&new_root), 0o700);
    assert_eq!(mode(&new_root.join("t")), 0o700);
    assert_eq!(mode(&new_root.join("t").join("cache.redb")), 0o600);
}

#[cfg(unix)]
#[rstest]
fn a_symlinked_tag_directory_is_refused(root: TempDir, coordinator: Coordinator) {
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("t")).unwrap();
    let err = coordinator
        .get_shared_cache_instance(root.path(), "t", CacheOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing written outside the root"
    );
}

#[rstest]
fn two_coordinators_in_one_process_get_a_clear_error_for_the_same_file(
    root: TempDir,
    coordinator: Coordinator,
) {
    let _held = open(&coordinator, &root, "t", CacheOptions::default());
    let other = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
    let err = other
        .get_shared_cache_instance(root.path(), "t", CacheOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, CacheError::AlreadyOpenInProcess { .. }),
        "{err}"
    );
}
