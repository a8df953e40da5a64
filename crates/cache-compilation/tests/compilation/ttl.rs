//! Time to live per level, read from the config, on a manual clock: no sleeping.

use std::sync::Arc;
use std::time::Duration;

use cache_compilation::{BuildInputs, CompilationOptions, WorkspaceId};
use cache_core::{CacheTtlConfig, Coordinator, ManualClock};
use rstest::rstest;
use tempfile::TempDir;

use crate::{
    DAY, cache_ws, clock, config, coordinator, fake_workspace, open_with, quiet, root, write,
};

const SECOND: Duration = Duration::from_secs(1);

/// Stores the workspace `id`, then checks it is there just before `ttl` and gone at `ttl`.
fn assert_workspace_lives(
    root: &TempDir,
    coordinator: &Coordinator,
    clock: &Arc<ManualClock>,
    ttls: CacheTtlConfig,
    id: &WorkspaceId,
    ttl: Duration,
) {
    let mut config = config(root, clock);
    config.ttls = ttls;
    let compilation = open_with(coordinator, &config, CompilationOptions::default());
    let cached = cache_ws(&compilation, &fake_workspace(root, "ws"), id);
    assert_eq!(cached.expires_at, Some(cached.metadata.created + ttl));
    let stored = compilation
        .cache
        .get_metadata(&id.key_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(stored.ttl, Some(ttl));

    clock.advance(ttl - SECOND);
    assert!(
        compilation.workspaces.get_exact(id).unwrap().is_some(),
        "alive just before {ttl:?}"
    );
    clock.advance(SECOND);
    assert_eq!(
        compilation.workspaces.get_exact(id).unwrap(),
        None,
        "expired at {ttl:?}"
    );
}

#[rstest]
#[case::repository_default(None, CacheTtlConfig::default(), 30 * DAY)]
#[case::branch_default(Some("main"), CacheTtlConfig::default(), DAY)]
#[case::repository_configured(
    None,
    CacheTtlConfig::default().with(&cache_compilation::ttl::WORKSPACE_BASE, Duration::from_secs(120)),
    Duration::from_secs(120)
)]
#[case::branch_configured(
    Some("main"),
    CacheTtlConfig::default().with(&cache_compilation::ttl::WORKSPACE_BRANCH, Duration::from_secs(60)),
    Duration::from_secs(60)
)]
fn workspace_ttl_per_level_comes_from_the_config(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
    #[case] branch: Option<&str>,
    #[case] ttls: CacheTtlConfig,
    #[case] ttl: Duration,
) {
    let id = WorkspaceId::new("zmkfirmware/zmk", branch).unwrap();
    assert_workspace_lives(&root, &coordinator, &clock, ttls, &id, ttl);
}

#[rstest]
#[case::default(CacheTtlConfig::default(), 7 * DAY)]
#[case::configured(
    CacheTtlConfig::default().with(&cache_compilation::ttl::FIRMWARE_BUILD, Duration::from_secs(90)),
    Duration::from_secs(90)
)]
fn builds_live_the_configured_firmware_build_ttl(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
    #[case] ttls: CacheTtlConfig,
    #[case] ttl: Duration,
) {
    let mut config = config(&root, &clock);
    config.ttls = ttls;
    let compilation = open_with(&coordinator, &config, CompilationOptions::default());
    let build = root.path().join("build");
    write(&build.join("zephyr/zmk.uf2"), b"UF2");
    let inputs = BuildInputs::new("zmkfirmware/zmk", "main", "k", "c")
        .pinned(crate::COMMIT, crate::TOOLCHAIN);
    let cached = compilation
        .builds
        .store(&inputs, &build, &mut quiet())
        .unwrap()
        .unwrap();
    assert_eq!(cached.expires_at, Some(cached.metadata.created + ttl));

    clock.advance(ttl - SECOND);
    assert!(compilation.builds.get(&inputs).unwrap().is_some());
    clock.advance(SECOND);
    assert_eq!(compilation.builds.get(&inputs).unwrap(), None);
}

#[test]
fn defect_03_repository_level_is_30_days_and_branch_level_1_day() {
    // The original mapped the repository level to 1 day.
    let ttls = CacheTtlConfig::default();
    assert_eq!(ttls.get(&cache_compilation::ttl::WORKSPACE_BASE), 30 * DAY);
    assert_eq!(ttls.get(&cache_compilation::ttl::WORKSPACE_BRANCH), DAY);
}
