//! The factories: the config's root (defect 7), strategy and kill switches, shared instances.

use std::sync::Arc;

use cache_core::{CacheStrategy, Coordinator, Environment, ManualClock, UserCacheConfig};
use cache_moergo::{ApiDocument, LayoutUuid, create_moergo_cache_service};
use rstest::rstest;
use tempfile::TempDir;

use crate::{clock, config_with, coordinator, open, root};

fn uuid() -> LayoutUuid {
    LayoutUuid::parse("8f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b").expect("a valid layout uuid")
}

/// Defect 7: the original's factories disagreed on the cache root. Every factory here takes the
/// config's `cache_path`, even when the environment names another root.
#[rstest]
fn defect_07_the_factory_honours_the_configured_cache_path(root: TempDir, clock: Arc<ManualClock>) {
    let elsewhere = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::with_environment(Environment::from_pairs([(
        "GLOVEBOX_CACHE_PATH",
        elsewhere.path().to_str().unwrap(),
    )]));
    let moergo = open(&coordinator, &config_with(&root, &clock));
    moergo
        .put_layout_meta(&uuid(), &ApiDocument::new("{}").unwrap())
        .unwrap();
    moergo.flush().unwrap();

    let expected = root
        .path()
        .canonicalize()
        .unwrap()
        .join("moergo")
        .join("cache.redb");
    assert_eq!(moergo.database_path(), Some(expected.as_path()));
    assert!(expected.is_file());
    assert!(!elsewhere.path().join("moergo").exists());
}

#[rstest]
fn defect_07_the_default_coordinator_factory_honours_the_configured_cache_path(root: TempDir) {
    let config = UserCacheConfig {
        cache_path: Some(root.path().to_owned()),
        ..UserCacheConfig::default()
    };
    let moergo = create_moergo_cache_service(&config).unwrap();
    if moergo.is_enabled() {
        assert!(
            moergo
                .database_path()
                .unwrap()
                .starts_with(root.path().canonicalize().unwrap())
        );
    } else {
        // The developer's environment disabled the moergo cache by a kill switch: the factory
        // obeyed it, and created nothing anywhere.
        assert!(!root.path().join("moergo").exists());
    }
    cache_core::default_coordinator().reset().unwrap();
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
    let moergo = open(&coordinator, &config);
    moergo
        .put_layout_meta(&uuid(), &ApiDocument::new("{}").unwrap())
        .unwrap();
    moergo.put_firmware_download("/f.uf2", b"uf2").unwrap();
    assert!(!moergo.is_enabled());
    assert_eq!(moergo.get_layout_meta(&uuid()).unwrap(), None);
    assert_eq!(moergo.get_firmware_download("/f.uf2").unwrap(), None);
    assert!(!root.path().join("moergo").exists(), "nothing created");
}

#[rstest]
fn the_kill_switch_gives_misses(root: TempDir, clock: Arc<ManualClock>) {
    let coordinator = Coordinator::with_environment(Environment::from_pairs([(
        "GLOVEBOX_CACHE_MOERGO",
        "disabled",
    )]));
    let moergo = open(&coordinator, &config_with(&root, &clock));
    moergo.put_firmware_download("/f.uf2", b"uf2").unwrap();
    assert_eq!(moergo.get_firmware_download("/f.uf2").unwrap(), None);
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
    first
        .put_layout_meta(&uuid(), &ApiDocument::new("{}").unwrap())
        .unwrap();
    assert!(second.get_layout_meta(&uuid()).unwrap().is_some());
    assert_eq!(coordinator.instance_count(), 1);
    assert_eq!(first.stats().unwrap().tag, "moergo");
}
