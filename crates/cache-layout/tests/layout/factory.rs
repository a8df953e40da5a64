//! The factories: the config's root (defect 7), strategy and kill switches, shared instances.

use std::sync::Arc;

use cache_core::{CacheStrategy, Coordinator, Environment, ManualClock, UserCacheConfig};
use cache_layout::{InputHash, create_layout_cache_service};
use rstest::rstest;
use tempfile::TempDir;

use crate::{clock, config_with, coordinator, open, root};

/// Defect 7: the original's factories disagreed on the cache root. Every factory here takes the
/// config's `cache_path`, even when the environment names another root.
#[rstest]
fn defect_07_the_factory_honours_the_configured_cache_path(root: TempDir, clock: Arc<ManualClock>) {
    let elsewhere = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::with_environment(Environment::from_pairs([(
        "GLOVEBOX_CACHE_PATH",
        elsewhere.path().to_str().unwrap(),
    )]));
    let layouts = open(&coordinator, &config_with(&root, &clock));
    layouts
        .put_processed(&InputHash::of(["x"]), "v1", &"y".to_owned())
        .unwrap();
    layouts.cache().flush().unwrap();

    let expected = root
        .path()
        .canonicalize()
        .unwrap()
        .join("layout")
        .join("cache.redb");
    assert_eq!(layouts.cache().database_path(), Some(expected.as_path()));
    assert!(expected.is_file());
    assert!(!elsewhere.path().join("layout").exists());
}

#[rstest]
fn defect_07_the_default_coordinator_factory_honours_the_configured_cache_path(root: TempDir) {
    let config = UserCacheConfig {
        cache_path: Some(root.path().to_owned()),
        ..UserCacheConfig::default()
    };
    let layouts = create_layout_cache_service(&config).unwrap();
    if layouts.cache().is_enabled() {
        assert!(
            layouts
                .cache()
                .database_path()
                .unwrap()
                .starts_with(root.path().canonicalize().unwrap())
        );
    } else {
        // The developer's environment disabled the layout cache by a kill switch: the factory
        // obeyed it, and created nothing anywhere.
        assert!(!root.path().join("layout").exists());
    }
    layouts.cache().close().unwrap();
}

#[rstest]
fn the_disabled_strategy_gives_misses(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let config = UserCacheConfig {
        strategy: CacheStrategy::Disabled,
        ..config_with(&root, &clock)
    };
    let layouts = open(&coordinator, &config);
    let input = InputHash::of(["x"]);
    layouts
        .put_processed(&input, "v1", &"y".to_owned())
        .unwrap();
    assert!(!layouts.cache().is_enabled());
    assert_eq!(layouts.get_processed::<String>(&input, "v1").unwrap(), None);
    let mut computed = 0;
    for _ in 0..2 {
        let _: String = layouts
            .get_or_process(&input, "v1", || {
                computed += 1;
                Ok::<_, cache_layout::LayoutError>("y".to_owned())
            })
            .unwrap();
    }
    assert_eq!(computed, 2, "nothing is cached, so every call computes");
    assert!(!root.path().join("layout").exists(), "nothing created");
}

#[rstest]
fn the_kill_switch_gives_misses(root: TempDir, clock: Arc<ManualClock>) {
    let coordinator =
        Coordinator::with_environment(Environment::from_pairs([("GLOVEBOX_CACHE_LAYOUT", "0")]));
    let layouts = open(&coordinator, &config_with(&root, &clock));
    let input = InputHash::of(["x"]);
    layouts
        .put_processed(&input, "v1", &"y".to_owned())
        .unwrap();
    assert_eq!(layouts.get_processed::<String>(&input, "v1").unwrap(), None);
}

#[rstest]
fn the_service_uses_the_tags_shared_instance(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let config = config_with(&root, &clock);
    let first = open(&coordinator, &config);
    let second = open(&coordinator, &config);
    assert!(first.cache().same_instance(second.cache()));
    assert_eq!(first.cache().tag().as_str(), "layout");
}
