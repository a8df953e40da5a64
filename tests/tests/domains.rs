//! The domain crates together on one cache root with one coordinator: each gets its own isolated
//! instance and file, the coordinator's statistics show every tag, and clearing one domain
//! leaves the others intact, files and entry-owned directories included.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use cache_compilation::{CompilationCache, WorkspaceDetails, WorkspaceId};
use cache_core::{
    CacheOptions, CacheTtlConfig, Clock, Coordinator, Environment, ManualClock, UserCacheConfig,
};
use cache_layout::{InputHash, LayoutCache};
use cache_metrics::{MetricsCache, SessionId, SessionMetrics};
use cache_moergo::{ApiDocument, LayoutUuid, MoergoCache};
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
#[fixture]
fn domains() -> Domains {
    let root = tempfile::tempdir().expect("temp dir");
    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
    let clock = Arc::new(ManualClock::new(1_767_225_600_000));
    let config = UserCacheConfig {
        cache_path: Some(root.path().to_owned()),
        options: CacheOptions {
            clock: clock.clone(),
            ..CacheOptions::default()
        },
        ..UserCacheConfig::default()
    };
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
    assert!(!Arc::ptr_eq(
        domains.metrics.cache(),
        domains.layouts.cache()
    ));
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
        .advance(defaults.layout_processing - Duration::from_secs(1));
    assert!(domains.metrics_present() && domains.layout_present() && domains.moergo_present());
    domains.clock.advance(Duration::from_secs(1));
    assert!(!domains.layout_present());
    assert!(!domains.metrics_present());
    assert!(domains.moergo_present(), "30 days, not 7");
    assert!(domains.workspace_present(), "30 days, not 7");
    let cleanup = domains.coordinator.cleanup_all();
    assert!(cleanup.values().all(Result::is_ok));
    // Removed by cleanup, or earlier by the sweep of a group commit that ran after the clock
    // moved (the commit thread's timing is not the test's): counted as expirations either way.
    let expired = domains
        .coordinator
        .aggregated_stats()
        .unwrap()
        .totals
        .expirations;
    assert_eq!(expired, 2);
}
