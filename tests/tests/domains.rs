//! The domain crates together on one cache root with one coordinator: each gets its own isolated
//! instance and file, the coordinator's statistics show every tag, and clearing one domain
//! leaves the others intact, files and entry-owned directories included.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use cache_compilation::{CompilationCache, WorkspaceDetails, WorkspaceId};
use cache_core::{
    CacheTtlConfig, Clock, Coordinator, Environment, ManualClock, TtlLevel, UNCLAIMED_TTL_LEVELS,
    UserCacheConfig,
};
use cache_layout::{InputHash, LayoutCache};
use cache_metrics::{MetricsCache, SessionId, SessionMetrics};
use cache_moergo::{ApiDocument, LayoutUuid, MoergoCache};
use cache_test_support::{clock, config_with, coordinator, root};
use rstest::{fixture, rstest};
use tempfile::TempDir;

/// The four domain services on one root and one coordinator, and what each stored.
struct Domains {
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
    compilation: CompilationCache,
    workspace: WorkspaceId,
    metrics: MetricsCache,
    layouts: LayoutCache,
    moergo: MoergoCache,
    session: SessionMetrics,
    input: InputHash,
    layout_uuid: LayoutUuid,
}

impl Domains {
    /// Whether the workspace is cached, and its directory (checked to hold `zmk/`).
    fn workspace_present(&self) -> bool {
        let found = self
            .compilation
            .workspaces
            .get_exact(&self.workspace)
            .expect("read workspace");
        found.is_some_and(|cached| cached.path.join("zmk/west.yml").is_file())
    }

    fn metrics_present(&self) -> bool {
        self.metrics
            .get(&self.session.session_id)
            .expect("read metrics")
            .is_some()
    }

    fn layout_present(&self) -> bool {
        self.layouts
            .get_processed::<String>(&self.input, "v1")
            .expect("read layout")
            .is_some()
    }

    fn moergo_present(&self) -> bool {
        self.moergo
            .get_layout_meta(&self.layout_uuid)
            .expect("read moergo")
            .is_some()
    }
}

/// One root, one coordinator (seeing an empty environment), one config with a manual clock, and
/// one entry written through each domain.
/// (`root`, `coordinator` and `clock` are the shared fixtures of `cache-test-support`.)
#[fixture]
fn domains(root: TempDir, coordinator: Coordinator, clock: Arc<ManualClock>) -> Domains {
    let config = config_with(&root, &clock);
    let metrics = MetricsCache::open(&coordinator, &config).expect("open metrics");
    let layouts = LayoutCache::open(&coordinator, &config).expect("open layout");
    let moergo = MoergoCache::open(&coordinator, &config).expect("open moergo");
    let compilation = CompilationCache::open(&coordinator, &config).expect("open compilation");

    let source = root.path().join("source-workspace");
    std::fs::create_dir_all(source.join("zmk")).expect("mkdir zmk");
    std::fs::write(source.join("zmk/west.yml"), "manifest: {}").expect("write west.yml");
    let workspace = WorkspaceId::repository("zmkfirmware/zmk").expect("a valid repository");
    compilation
        .workspaces
        .inject(
            &source,
            &workspace,
            WorkspaceDetails::default(),
            &mut |_| {},
        )
        .expect("cache workspace")
        .expect("the cache is enabled");

    let started = UNIX_EPOCH + Duration::from_millis(clock.now_ms());
    let session = SessionMetrics::new(SessionId::generate(), "layout compile", started);
    metrics.record(&session).expect("record session");
    let input = InputHash::of([r#"{"layers": []}"#]);
    layouts
        .put_processed(&input, "v1", &"keymap".to_owned())
        .expect("store layout");
    let layout_uuid =
        LayoutUuid::parse("8f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b").expect("a valid uuid");
    moergo
        .put_layout_meta(
            &layout_uuid,
            &ApiDocument::new(r#"{"title": "x"}"#).expect("doc"),
        )
        .expect("store moergo");

    Domains {
        root,
        coordinator,
        clock,
        compilation,
        workspace,
        metrics,
        layouts,
        moergo,
        session,
        input,
        layout_uuid,
    }
}

#[rstest]
fn each_domain_has_its_own_instance_and_file_under_the_one_root(domains: Domains) {
    let root = domains.root.path().canonicalize().unwrap();
    let keys = domains.coordinator.instance_keys();
    assert_eq!(
        keys,
        ["compilation", "layout", "metrics", "moergo"]
            .map(|tag| format!("{}:{tag}", root.display()))
            .to_vec()
    );
    assert!(
        !domains
            .metrics
            .cache()
            .same_instance(domains.layouts.cache())
    );
    for (tag, path) in [
        ("compilation", domains.compilation.cache.database_path()),
        ("metrics", domains.metrics.cache().database_path()),
        ("layout", domains.layouts.cache().database_path()),
        ("moergo", domains.moergo.database_path()),
    ] {
        assert_eq!(
            path,
            Some(root.join(tag).join("cache.redb").as_path()),
            "{tag}"
        );
    }
    // Each domain sees only its own entry.
    assert_eq!(domains.metrics.cache().keys().unwrap().len(), 1);
    assert_eq!(domains.layouts.cache().keys().unwrap().len(), 1);
    assert_eq!(domains.moergo.stats().unwrap().entries, 1);
    assert_eq!(domains.compilation.workspaces.list().unwrap().len(), 1);
    let cached = domains
        .compilation
        .workspaces
        .get_exact(&domains.workspace)
        .unwrap()
        .unwrap();
    assert!(
        cached.path.starts_with(root.join("compilation")),
        "{}",
        cached.path.display()
    );
}

#[rstest]
fn aggregated_statistics_show_every_tag(domains: Domains) {
    assert!(domains.layout_present());
    assert_eq!(
        domains
            .moergo
            .get_layout_meta(&LayoutUuid::parse("00000000-0000-4000-8000-000000000000").unwrap())
            .unwrap(),
        None
    );

    let stats = domains.coordinator.aggregated_stats().unwrap();
    assert_eq!(stats.instances, 4);
    assert_eq!(stats.entries, 4);
    let by_tag = stats.by_tag();
    assert_eq!(
        by_tag.keys().map(String::as_str).collect::<Vec<_>>(),
        ["compilation", "layout", "metrics", "moergo"]
    );
    assert_eq!(by_tag["compilation"].sets, 1);
    let compilation = stats
        .per_instance
        .values()
        .find(|instance| instance.tag == "compilation")
        .unwrap();
    assert!(
        compilation.bytes > "manifest: {}".len() as u64,
        "the workspace directory is counted: {}",
        compilation.bytes
    );
    assert_eq!((by_tag["layout"].sets, by_tag["layout"].hits), (1, 1));
    assert_eq!((by_tag["metrics"].sets, by_tag["metrics"].hits), (1, 0));
    assert_eq!((by_tag["moergo"].sets, by_tag["moergo"].misses), (1, 1));
    assert_eq!(stats.totals.sets, 4);

    // And a session can record that activity, per tag, into the metrics domain.
    let mut session = domains.session.clone();
    session.record_cache_activity(&stats);
    assert_eq!(session.cache_activity.len(), 4);
    assert_eq!(session.cache_activity["moergo"].misses, 1);
    domains.metrics.record(&session).unwrap();
    assert_eq!(
        domains.metrics.get(&session.session_id).unwrap(),
        Some(session)
    );
}

#[rstest]
fn clearing_the_layout_domain_leaves_the_others_intact(domains: Domains) {
    domains.layouts.cache().clear().unwrap();
    assert!(!domains.layout_present());
    assert!(domains.metrics_present());
    assert!(domains.moergo_present());
    assert!(domains.workspace_present());
}

#[rstest]
fn clearing_the_compilation_domain_removes_its_directories_and_leaves_the_others_intact(
    domains: Domains,
) {
    let cached = domains
        .compilation
        .workspaces
        .get_exact(&domains.workspace)
        .unwrap()
        .unwrap();
    domains.compilation.cache.clear().unwrap();
    domains.compilation.cache.flush().unwrap();
    assert!(!domains.workspace_present());
    assert!(
        !cached.path.exists(),
        "the owned directory goes with its entry"
    );
    assert!(domains.metrics_present());
    assert!(domains.layout_present());
    assert!(domains.moergo_present());
}

#[rstest]
fn clearing_the_moergo_domain_leaves_the_others_intact(domains: Domains) {
    domains.moergo.clear().unwrap();
    assert!(!domains.moergo_present());
    assert!(domains.metrics_present());
    assert!(domains.layout_present());
    assert!(domains.workspace_present());
}

#[rstest]
fn clearing_the_metrics_domain_leaves_the_others_intact(domains: Domains) {
    domains.metrics.cache().clear().unwrap();
    assert!(domains.metrics.list().unwrap().is_empty());
    assert!(domains.layout_present());
    assert!(domains.moergo_present());
    assert!(domains.workspace_present());
}

#[rstest]
fn one_ttl_config_governs_every_domain(domains: Domains) {
    // Default levels: moergo meta 30 d, workspace base 30 d, layout processing 7 d, metrics
    // sessions 7 d.
    let defaults = CacheTtlConfig::default();
    domains
        .clock
        .advance(defaults.get(&cache_layout::ttl::LAYOUT_PROCESSING) - Duration::from_secs(1));
    assert!(domains.metrics_present() && domains.layout_present() && domains.moergo_present());
    domains.clock.advance(Duration::from_secs(1));
    assert!(!domains.layout_present());
    assert!(!domains.metrics_present());
    assert!(domains.moergo_present(), "30 days, not 7");
    assert!(domains.workspace_present(), "30 days, not 7");
    let cleanup = domains.coordinator.cleanup_all();
    assert!(cleanup.values().all(Result::is_ok), "{cleanup:?}");
    // Exactly the two 7-day entries were removed as expired. Cleanup's own count would depend on
    // timing: a group commit after the clock moved (the reads above record access) sweeps a
    // batch of expired entries first. The `expirations` counter counts a removal by either.
    let by_tag = domains.coordinator.aggregated_stats().unwrap().by_tag();
    let expirations = |tag: &str| by_tag[tag].expirations;
    assert_eq!(
        ["layout", "metrics", "moergo", "compilation"].map(expirations),
        [1, 1, 0, 0]
    );
}

/// Every level the workspace declares, from each domain crate and the core's unclaimed ones.
fn every_declared_level() -> Vec<TtlLevel> {
    let mut levels = Vec::new();
    levels.extend(cache_compilation::ttl::TTL_LEVELS);
    levels.extend(cache_layout::ttl::TTL_LEVELS);
    levels.extend(cache_moergo::ttl::TTL_LEVELS);
    levels.extend(cache_metrics::ttl::TTL_LEVELS);
    levels.extend(UNCLAIMED_TTL_LEVELS);
    levels
}

#[test]
fn every_ttl_level_keeps_the_name_and_default_it_had_in_the_core() {
    // The 19 fields `CacheTtlConfig` had before the domains declared their own levels, with
    // their defaults (the original's, plus the levels its MoErgo client and metrics hard-coded).
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    let pinned: [(&str, u64); 19] = [
        ("workspace_base", 30 * DAY),
        ("workspace_branch", DAY),
        ("workspace_full", 12 * HOUR),
        ("workspace_build", HOUR),
        ("layout_processing", 7 * DAY),
        ("layout_comparison", 3 * DAY),
        ("layout_bookmarks", 30 * DAY),
        ("firmware_build", 7 * DAY),
        ("firmware_metadata", DAY),
        ("moergo_auth", DAY),
        ("moergo_layouts", 6 * HOUR),
        ("moergo_versions", 12 * HOUR),
        ("moergo_layout_config", 30 * DAY),
        ("moergo_public_layouts", 10 * MINUTE),
        ("moergo_public_layouts_standard", 2 * HOUR),
        ("moergo_firmware_downloads", 30 * DAY),
        ("metrics_sessions", 7 * DAY),
        ("core_templates", 7 * DAY),
        ("core_validation", 3 * DAY),
    ];
    let mut declared: Vec<(&str, u64)> = every_declared_level()
        .iter()
        .map(|level| (level.name(), level.default_ttl().as_secs()))
        .collect();
    declared.sort();
    let mut pinned = pinned.to_vec();
    pinned.sort();
    assert_eq!(declared, pinned);
    for level in every_declared_level() {
        level.check().unwrap();
        assert_eq!(
            CacheTtlConfig::default().get(&level),
            level.default_ttl(),
            "{}",
            level.name()
        );
    }
}

#[rstest]
#[case::compilation(
    cache_compilation::ttl::WORKSPACE_BASE,
    "GLOVEBOX_CACHE_TTL_WORKSPACE_BASE"
)]
#[case::layout(
    cache_layout::ttl::LAYOUT_PROCESSING,
    "GLOVEBOX_CACHE_TTL_LAYOUT_PROCESSING"
)]
#[case::moergo(
    cache_moergo::ttl::MOERGO_PUBLIC_LAYOUTS_STANDARD,
    "GLOVEBOX_CACHE_TTL_MOERGO_PUBLIC_LAYOUTS_STANDARD"
)]
#[case::metrics(
    cache_metrics::ttl::METRICS_SESSIONS,
    "GLOVEBOX_CACHE_TTL_METRICS_SESSIONS"
)]
#[case::unclaimed(UNCLAIMED_TTL_LEVELS[1], "GLOVEBOX_CACHE_TTL_CORE_VALIDATION")]
fn a_ttl_variable_overrides_exactly_its_level(#[case] level: TtlLevel, #[case] variable: &str) {
    assert_eq!(level.variable(), variable);
    let config = UserCacheConfig::from_env(&Environment::from_pairs([(variable, "42")])).unwrap();
    for other in every_declared_level() {
        let expected = if other == level {
            Duration::from_secs(42)
        } else {
            other.default_ttl()
        };
        assert_eq!(config.ttls.get(&other), expected, "{}", other.name());
    }
    assert!(
        config
            .ttls
            .undeclared_levels(every_declared_level())
            .is_empty()
    );
}

#[test]
fn a_ttl_name_no_domain_declares_is_kept_and_reported() {
    let env = Environment::from_pairs([
        ("GLOVEBOX_CACHE_TTL_LAYOUT_PROCESING", "60"),
        ("GLOVEBOX_CACHE_TTL_METRICS_SESSIONS", "60"),
    ]);
    let ttls = CacheTtlConfig::from_env(&env).unwrap();
    assert_eq!(
        ttls.undeclared_levels(every_declared_level()),
        ["layout_procesing"]
    );
}
