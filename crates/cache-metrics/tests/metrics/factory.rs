//! The factories: the config's root (defect 7), strategy and kill switches, shared instances.

use std::sync::Arc;
use std::time::Duration;

use cache_core::{CacheStrategy, Coordinator, Environment, ManualClock, UserCacheConfig};
use cache_metrics::{MetricsCache, SessionId, SessionMetrics, create_metrics_cache_service};
use rstest::rstest;
use tempfile::TempDir;

use crate::{clock, config_with, coordinator, now, open, root};

/// Defect 7: the original's factories disagreed on the cache root. Every factory here takes the
/// config's `cache_path`, even when the environment names another root.
#[rstest]
fn defect_07_the_factory_honours_the_configured_cache_path(root: TempDir, clock: Arc<ManualClock>) {
    let elsewhere = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::with_environment(Environment::from_pairs([(
        "GLOVEBOX_CACHE_PATH",
        elsewhere.path().to_str().unwrap(),
    )]));
    let metrics = open(&coordinator, &config_with(&root, &clock));
    metrics
        .record(&SessionMetrics::new(
            SessionId::generate(),
            "x",
            now(&clock),
        ))
        .unwrap();
    metrics.cache().flush().unwrap();

    let expected = root
        .path()
        .canonicalize()
        .unwrap()
        .join("metrics")
        .join("cache.redb");
    assert_eq!(metrics.cache().database_path(), Some(expected.as_path()));
    assert!(expected.is_file());
    assert!(!elsewhere.path().join("metrics").exists());
}

#[rstest]
fn defect_07_without_a_configured_path_the_shared_resolution_applies(clock: Arc<ManualClock>) {
    let from_env = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::with_environment(Environment::from_pairs([(
        "GLOVEBOX_CACHE_PATH",
        from_env.path().to_str().unwrap(),
    )]));
    let config = UserCacheConfig {
        cache_path: None,
        ..config_with(&from_env, &clock)
    };
    let metrics = open(&coordinator, &config);
    assert!(
        metrics
            .cache()
            .database_path()
            .unwrap()
            .starts_with(from_env.path().canonicalize().unwrap())
    );
}

#[rstest]
fn defect_07_the_default_coordinator_factory_honours_the_configured_cache_path(root: TempDir) {
    let config = UserCacheConfig {
        cache_path: Some(root.path().to_owned()),
        ..UserCacheConfig::default()
    };
    let metrics = create_metrics_cache_service(&config).unwrap();
    if metrics.cache().is_enabled() {
        assert!(
            metrics
                .cache()
                .database_path()
                .unwrap()
                .starts_with(root.path().canonicalize().unwrap())
        );
    } else {
        // The developer's environment disabled the metrics cache by a kill switch: the factory
        // obeyed it, and created nothing anywhere.
        assert!(!root.path().join("metrics").exists());
    }
    metrics.cache().close().unwrap();
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
    let metrics = open(&coordinator, &config);
    let recorded = SessionMetrics::new(SessionId::generate(), "x", now(&clock));
    metrics.record(&recorded).unwrap();
    assert!(!metrics.cache().is_enabled());
    assert_eq!(metrics.get(&recorded.session_id).unwrap(), None);
    assert!(metrics.list().unwrap().is_empty());
    assert_eq!(metrics.clean_older_than(0).unwrap(), 0);
    assert!(!root.path().join("metrics").exists(), "nothing created");
}

#[rstest]
#[case("GLOVEBOX_CACHE_METRICS")]
#[case("GLOVEBOX_CACHE_GLOBAL")]
fn a_kill_switch_gives_misses(root: TempDir, clock: Arc<ManualClock>, #[case] variable: &str) {
    let coordinator = Coordinator::with_environment(Environment::from_pairs([(variable, "False")]));
    let metrics = open(&coordinator, &config_with(&root, &clock));
    let recorded = SessionMetrics::new(SessionId::generate(), "x", now(&clock));
    metrics.record(&recorded).unwrap();
    assert_eq!(metrics.get(&recorded.session_id).unwrap(), None);
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
    assert_eq!(first.cache().tag().as_str(), "metrics");
    let direct = coordinator
        .create_cache_from_user_config(&config, "metrics")
        .unwrap();
    assert!(first.cache().same_instance(&direct));
}

#[rstest]
fn a_conflicting_second_config_is_an_error_not_ignored(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let config = config_with(&root, &clock);
    open(&coordinator, &config);
    let mut other = config.clone();
    other.options.timeout = Duration::from_secs(1);
    let err = MetricsCache::open(&coordinator, &other).unwrap_err();
    assert!(err.to_string().contains("timeout"), "{err}");
}
