//! The workspace service on real directories: what is copied, lookup order, copy out, list,
//! delete, stale cleanup, progress, refusals.

use std::fs;
use std::sync::Arc;

use cache_compilation::{
    CompilationError, CompilationOptions, GitHandling, Progress, ProgressStage, WorkspaceDetails,
    WorkspaceId, WorkspaceLevel, WorkspaceOrigin,
};
use cache_core::{CacheOptions, CacheStrategy, Coordinator, ManualClock};
use rstest::rstest;
use tempfile::TempDir;

use crate::{
    DAY, branch, cache_ws, clock, config, coordinator, expected_workspace, fake_workspace, open,
    open_with, quiet, repo, root, snapshot, write,
};

#[rstest]
fn a_cached_workspace_holds_the_four_components_and_its_metadata(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = fake_workspace(&root, "ws");
    let details = WorkspaceDetails {
        commit: Some("0123abc".to_owned()),
        build_profile: Some("glove80/v25.05".to_owned()),
        ..WorkspaceDetails::default()
    };
    let cached = compilation
        .workspaces
        .cache_workspace(&ws, &branch("main"), details.clone(), &mut quiet())
        .unwrap()
        .unwrap();

    assert_eq!(snapshot(&cached.path), expected_workspace(&ws, true));
    assert!(!cached.path.join("config").exists(), "not a component");
    assert!(!cached.path.join("build").exists(), "not a component");
    let metadata = &cached.metadata;
    assert_eq!(metadata.repository, "zmkfirmware/zmk");
    assert_eq!(metadata.branch.as_deref(), Some("main"));
    assert_eq!(metadata.level, WorkspaceLevel::RepositoryBranch);
    assert_eq!(metadata.origin, WorkspaceOrigin::Build);
    assert_eq!(metadata.components, ["zmk", "zephyr", "modules", ".west"]);
    assert_eq!(metadata.git, GitHandling::Keep);
    assert_eq!(metadata.details, details);
    assert_eq!(metadata.created, cache_compilation_time(&clock));
    let files = expected_workspace(&ws, true)
        .values()
        .filter(|kind| *kind != "dir")
        .count() as u64;
    assert_eq!(metadata.files, files);
    assert!(cached.size_bytes >= metadata.size_bytes && metadata.size_bytes > 4096);
    assert_eq!(
        metadata.source.as_deref(),
        Some(fs::canonicalize(&ws).unwrap().to_str().unwrap())
    );
    assert_eq!(cached.expires_at, Some(metadata.created + DAY));

    let found = compilation
        .workspaces
        .get(&branch("main"))
        .unwrap()
        .unwrap();
    assert_eq!(found.path, cached.path);
    assert_eq!(found.metadata, cached.metadata);
}

fn cache_compilation_time(clock: &ManualClock) -> std::time::SystemTime {
    use cache_core::Clock;
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(clock.now_ms())
}

#[cfg(unix)]
#[rstest]
fn symlinks_are_copied_as_symlinks_and_never_followed_and_modes_are_kept(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    // Links out of the workspace are refused by default (`faithful.rs`); allowed here, to see
    // that they are copied as links and never followed.
    let compilation = crate::open_with(
        &coordinator,
        &crate::config(&root, &clock),
        cache_compilation::CompilationOptions {
            allow_escaping_symlinks: true,
            ..Default::default()
        },
    );
    let ws = fake_workspace(&root, "ws");
    let outside = root.path().join("outside");
    write(&outside.join("secret.txt"), b"not for the cache");
    crate::symlink(outside.to_str().unwrap(), &ws.join("zmk/outside-link"));
    crate::symlink("../../outside/secret.txt", &ws.join("zmk/app/relative-out"));

    let cached = cache_ws(&compilation, &ws, &repo());

    let link = cached.path.join("zmk/outside-link");
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_link(&link).unwrap(), outside);
    assert_eq!(
        fs::read_link(cached.path.join("zephyr/doc-link")).unwrap(),
        std::path::Path::new("README.rst")
    );
    let copied = snapshot(&cached.path);
    assert!(
        !copied
            .values()
            .any(|content| content.contains("not for the cache")),
        "a symlink's target was copied: {copied:?}"
    );
    assert_eq!(
        crate::mode_of(&cached.path.join("zephyr/scripts/build.sh")),
        0o755
    );
}

#[rstest]
fn lookup_tries_the_branch_then_the_repository(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = fake_workspace(&root, "ws");
    let workspaces = &compilation.workspaces;
    assert_eq!(workspaces.get(&branch("main")).unwrap(), None);

    cache_ws(&compilation, &ws, &repo());
    let found = workspaces.get(&branch("main")).unwrap().unwrap();
    assert_eq!(found.id, repo(), "falls back to the repository level");
    assert_eq!(workspaces.get_exact(&branch("main")).unwrap(), None);

    cache_ws(&compilation, &ws, &branch("main"));
    assert_eq!(
        workspaces.get(&branch("main")).unwrap().unwrap().id,
        branch("main")
    );
    assert_eq!(workspaces.get(&repo()).unwrap().unwrap().id, repo());
    assert_eq!(workspaces.get(&branch("dev")).unwrap().unwrap().id, repo());
}

#[rstest]
fn a_source_without_a_real_zmk_directory_is_refused_and_nothing_is_stored(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = root.path().join("no-zmk");
    write(&ws.join("zephyr/README.rst"), b"Zephyr");
    let err = compilation
        .workspaces
        .cache_workspace(&ws, &repo(), WorkspaceDetails::default(), &mut quiet())
        .unwrap_err();
    assert!(
        matches!(err, CompilationError::NotAWorkspace { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("zmk"), "{err}");

    #[cfg(unix)]
    {
        let elsewhere = fake_workspace(&root, "elsewhere");
        crate::symlink(elsewhere.join("zmk").to_str().unwrap(), &ws.join("zmk"));
        let err = compilation
            .workspaces
            .inject(&ws, &repo(), WorkspaceDetails::default(), &mut quiet())
            .unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
    }
    assert!(compilation.cache.keys().unwrap().is_empty());
}

#[rstest]
fn a_cached_workspace_that_lost_its_zmk_directory_is_a_miss_and_is_removed(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = fake_workspace(&root, "ws");
    let cached = cache_ws(&compilation, &ws, &branch("main"));
    cache_ws(&compilation, &ws, &repo());
    fs::remove_dir_all(cached.path.join("zmk")).unwrap();

    let found = compilation
        .workspaces
        .get(&branch("main"))
        .unwrap()
        .unwrap();
    assert_eq!(found.id, repo(), "the unusable branch entry is skipped");
    assert!(
        !compilation
            .cache
            .exists(&branch("main").key_bytes())
            .unwrap()
    );
}

#[rstest]
fn copy_to_copies_the_workspace_out_and_never_merges(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = fake_workspace(&root, "ws");
    let cached = cache_ws(&compilation, &ws, &repo());
    let target = root.path().join("build-workspace");
    write(&target.join("config/glove80.keymap"), b"user config stays");

    compilation
        .workspaces
        .copy_to(&cached, &target, &mut quiet())
        .unwrap();
    let mut expected = expected_workspace(&ws, true);
    expected.insert("config".to_owned(), "dir".to_owned());
    expected.insert(
        "config/glove80.keymap".to_owned(),
        "user config stays".to_owned(),
    );
    assert_eq!(snapshot(&target), expected);

    let err = compilation
        .workspaces
        .copy_to(&cached, &target, &mut quiet())
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[rstest]
fn list_gives_every_workspace_by_repository_then_branch_and_nothing_else(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = fake_workspace(&root, "ws");
    let other = WorkspaceId::repository("moergo-sc/zmk").unwrap();
    for id in [branch("main"), other.clone(), repo(), branch("dev")] {
        cache_ws(&compilation, &ws, &id);
    }
    compilation
        .docker_images
        .record("zmk-build-arm:stable", true)
        .unwrap();

    let ids: Vec<WorkspaceId> = compilation
        .workspaces
        .list()
        .unwrap()
        .into_iter()
        .map(|found| found.id)
        .collect();
    assert_eq!(ids, [other, repo(), branch("dev"), branch("main")]);
}

#[rstest]
fn cleanup_stale_removes_workspaces_older_than_the_age_given(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = fake_workspace(&root, "ws");
    let old = cache_ws(&compilation, &ws, &repo());
    clock.advance(8 * DAY);
    let fresh_id = WorkspaceId::repository("moergo-sc/zmk").unwrap();
    cache_ws(&compilation, &ws, &fresh_id);

    let removed = compilation
        .workspaces
        .cleanup_stale(cache_compilation::STALE_WORKSPACE_AGE)
        .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(compilation.workspaces.get(&repo()).unwrap(), None);
    assert!(!old.path.exists(), "its directory went with it");
    assert!(compilation.workspaces.get(&fresh_id).unwrap().is_some());
}

#[rstest]
fn progress_counts_up_to_the_totals_known_from_the_start(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = fake_workspace(&root, "ws");
    let mut seen: Vec<Progress> = Vec::new();
    let cached = compilation
        .workspaces
        .cache_workspace(&ws, &repo(), WorkspaceDetails::default(), &mut |p| {
            seen.push(p)
        })
        .unwrap()
        .unwrap();

    let first = seen.first().unwrap();
    let last = seen.last().unwrap();
    assert_eq!((first.files_done, first.bytes_done), (0, 0));
    assert_eq!(first.stage, ProgressStage::Copying);
    assert_eq!(last.files_total, cached.metadata.files);
    assert_eq!(last.bytes_total, cached.metadata.size_bytes);
    assert!(last.is_complete(), "{last:?}");
    assert_eq!(
        seen.len() as u64,
        cached.metadata.files + 1,
        "once before, once per file"
    );
    assert!(seen.windows(2).all(|w| w[0].files_done < w[1].files_done
        && w[0].bytes_done <= w[1].bytes_done
        && w[0].files_total == w[1].files_total));
}

/// Issue 19: the refusal named no way out. It names the limit and how to raise it.
#[rstest]
fn a_workspace_larger_than_the_limit_is_refused_before_copying_naming_the_limit_and_the_way_out(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let mut config = config(&root, &clock);
    config.options.max_size_bytes = 1024;
    let compilation = open_with(&coordinator, &config, CompilationOptions::default());
    let ws = fake_workspace(&root, "ws");
    let err = compilation
        .workspaces
        .cache_workspace(&ws, &repo(), WorkspaceDetails::default(), &mut quiet())
        .unwrap_err();
    assert!(
        matches!(err, CompilationError::OverSizeLimit { limit: 1024, .. }),
        "{err}"
    );
    let message = err.to_string();
    for part in [
        "1024",
        "tag 'compilation'",
        "--max-size",
        "zmkfirmware/zmk",
        "max_size_bytes",
    ] {
        assert!(message.contains(part), "{part:?} not in: {message}");
    }
    let staging = root.path().join("cache/compilation/dirs/.staging");
    assert!(!staging.exists() || fs::read_dir(&staging).unwrap().next().is_none());
    assert!(compilation.cache.keys().unwrap().is_empty());
}

#[rstest]
fn the_compilation_tag_s_limit_from_the_config_file_refuses_a_larger_workspace(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    // `[tags.compilation] max_size = 1024`, as UserCacheConfig::load gives it; the defaults
    // (2 GiB) would take the workspace.
    let mut config = config(&root, &clock);
    config.tags.insert(
        "compilation".to_owned(),
        cache_core::TagSettings {
            max_size_bytes: Some(1024),
            ..cache_core::TagSettings::default()
        },
    );
    let compilation = open_with(&coordinator, &config, CompilationOptions::default());
    let ws = fake_workspace(&root, "ws");
    let err = compilation
        .workspaces
        .cache_workspace(&ws, &repo(), WorkspaceDetails::default(), &mut quiet())
        .unwrap_err();
    assert!(
        matches!(err, CompilationError::OverSizeLimit { limit: 1024, .. }),
        "{err}"
    );
    assert!(compilation.cache.keys().unwrap().is_empty());
}

#[rstest]
fn a_disabled_cache_stores_nothing_but_still_checks_its_input(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let config = cache_core::UserCacheConfig {
        strategy: CacheStrategy::Disabled,
        options: CacheOptions {
            clock: clock.clone(),
            ..CacheOptions::default()
        },
        ..config(&root, &clock)
    };
    let compilation = open_with(&coordinator, &config, CompilationOptions::default());
    let ws = fake_workspace(&root, "ws");
    let stored = compilation
        .workspaces
        .cache_workspace(&ws, &repo(), WorkspaceDetails::default(), &mut quiet())
        .unwrap();
    assert_eq!(stored, None);
    assert_eq!(compilation.workspaces.get(&repo()).unwrap(), None);
    assert!(
        !root.path().join("cache").exists(),
        "a disabled cache creates no files"
    );

    let err = compilation
        .workspaces
        .cache_workspace(
            &root.path().join("nowhere"),
            &repo(),
            WorkspaceDetails::default(),
            &mut quiet(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
}

#[rstest]
fn inject_and_import_of_a_directory_record_their_origin(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = fake_workspace(&root, "ws");
    let injected = compilation
        .workspaces
        .inject(&ws, &repo(), WorkspaceDetails::default(), &mut quiet())
        .unwrap()
        .unwrap();
    assert_eq!(injected.metadata.origin, WorkspaceOrigin::Injected);
    let imported = compilation
        .workspaces
        .import(
            &ws,
            &branch("main"),
            WorkspaceDetails::default(),
            &mut quiet(),
        )
        .unwrap()
        .unwrap();
    assert_eq!(imported.metadata.origin, WorkspaceOrigin::ImportedDirectory);
    assert_eq!(snapshot(&imported.path), snapshot(&injected.path));
}

#[rstest]
fn replacing_a_workspace_removes_the_old_directory(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = fake_workspace(&root, "ws");
    let first = cache_ws(&compilation, &ws, &repo());
    write(&ws.join("zmk/app/new-file"), b"new");
    let second = cache_ws(&compilation, &ws, &repo());
    assert_ne!(first.path, second.path);
    assert!(!first.path.exists());
    assert!(second.path.join("zmk/app/new-file").is_file());
}

/// A limit that holds one workspace and a half: measured on the fake workspace in another root.
fn limit_for_one_and_a_half(
    coordinator: &Coordinator,
    clock: &Arc<ManualClock>,
    ws: &std::path::Path,
) -> u64 {
    let measure_root = TempDir::new().unwrap();
    let measuring = open(coordinator, &measure_root, clock);
    let size = cache_ws(&measuring, ws, &repo()).size_bytes;
    size * 3 / 2
}

/// Issue 19: adding a workspace silently evicted another; only `EVICTIONS 1` in `show` told.
/// The store now says which workspaces it pushed out.
#[rstest]
fn a_store_that_evicts_another_workspace_says_which(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let ws = fake_workspace(&root, "ws");
    let mut config = config(&root, &clock);
    config.options.max_size_bytes = limit_for_one_and_a_half(&coordinator, &clock, &ws);
    let compilation = open_with(&coordinator, &config, CompilationOptions::default());
    let first = cache_ws(&compilation, &ws, &repo());
    assert!(first.evicted.is_empty());
    clock.advance(std::time::Duration::from_secs(1));

    let second = cache_ws(&compilation, &ws, &branch("main"));
    let first_key = String::from_utf8(repo().key_bytes()).unwrap();
    assert_eq!(second.evicted, vec![first_key]);
    assert_eq!(compilation.workspaces.get_exact(&repo()).unwrap(), None);
    let found = compilation
        .workspaces
        .get_exact(&branch("main"))
        .unwrap()
        .unwrap();
    assert!(found.evicted.is_empty(), "only a store reports evictions");
}

/// Issue 19: `workspace add` must never evict the workspace it replaces only to fail. A
/// replacement too large for the limit is refused and the workspace it would replace stays.
#[rstest]
fn a_refused_replacement_keeps_the_workspace_it_would_have_replaced(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let ws = fake_workspace(&root, "ws");
    let mut config = config(&root, &clock);
    config.options.max_size_bytes = limit_for_one_and_a_half(&coordinator, &clock, &ws);
    let compilation = open_with(&coordinator, &config, CompilationOptions::default());
    let kept = cache_ws(&compilation, &ws, &repo());
    let bigger = fake_workspace(&root, "bigger");
    write(
        &bigger.join("zmk/large.bin"),
        &vec![1u8; config.options.max_size_bytes as usize],
    );

    let err = compilation
        .workspaces
        .inject(&bigger, &repo(), WorkspaceDetails::default(), &mut quiet())
        .unwrap_err();
    assert!(
        matches!(err, CompilationError::OverSizeLimit { .. }),
        "{err}"
    );
    let found = compilation.workspaces.get_exact(&repo()).unwrap().unwrap();
    assert_eq!(found.path, kept.path);
    assert_eq!(snapshot(&found.path), expected_workspace(&ws, true));
}

/// Issue 19: progress froze on a large file. A file larger than `PROGRESS_CHUNK_BYTES` is
/// reported as it is copied, into the cache and out of it, and counted once.
#[rstest]
fn progress_moves_during_a_large_file(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = fake_workspace(&root, "ws");
    let large = 2 * cache_compilation::PROGRESS_CHUNK_BYTES + 1000;
    write(
        &ws.join("zmk/.git/objects/pack/big.pack"),
        &vec![3u8; large as usize],
    );
    let mut reports: Vec<Progress> = Vec::new();
    let cached = compilation
        .workspaces
        .cache_workspace(&ws, &repo(), WorkspaceDetails::default(), &mut |p| {
            reports.push(p)
        })
        .unwrap()
        .unwrap();
    let last = *reports.last().unwrap();
    assert!(
        last.is_complete() && last.bytes_done == last.bytes_total,
        "{last:?}"
    );
    // Within one file: the bytes moved while the files did not.
    assert!(
        reports
            .windows(2)
            .filter(|pair| pair[1].files_done == pair[0].files_done
                && pair[1].bytes_done > pair[0].bytes_done)
            .count()
            >= 2,
        "{reports:?}"
    );

    let mut out: Vec<Progress> = Vec::new();
    compilation
        .workspaces
        .copy_to(&cached, &root.path().join("out"), &mut |p| out.push(p))
        .unwrap();
    let last = *out.last().unwrap();
    assert_eq!(last.bytes_done, last.bytes_total);
    assert!(
        out.windows(2)
            .any(|pair| pair[1].files_done == pair[0].files_done
                && pair[1].bytes_done > pair[0].bytes_done)
    );
}

/// A disk whose free space the test sets.
#[derive(Debug)]
struct FakeDisk(u64);

impl cache_core::DiskSpace for FakeDisk {
    fn space(&self, _: &std::path::Path) -> Option<cache_core::FilesystemSpace> {
        Some(cache_core::FilesystemSpace {
            free_bytes: self.0,
            total_bytes: 100 << 30,
        })
    }
}

/// Issue 19: a cache must never fill its disk. A workspace whose copy would take the disk
/// below `min_free_space`, by more than evicting the whole tag gives back, is refused before
/// anything is copied, naming the setting.
#[rstest]
fn a_workspace_the_disk_has_no_room_for_is_refused_before_copying(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let mut config = config(&root, &clock);
    config.options.min_free_space = cache_core::MinFreeSpace::Bytes(1 << 30);
    // 1 GiB + 1 KiB free: room for 1 KiB of workspace, not for the fake workspace's ~8 KiB.
    config.options.disk_space = Arc::new(FakeDisk((1 << 30) + 1024));
    let compilation = open_with(&coordinator, &config, CompilationOptions::default());
    let ws = fake_workspace(&root, "ws");
    let err = compilation
        .workspaces
        .inject(&ws, &repo(), WorkspaceDetails::default(), &mut quiet())
        .unwrap_err();
    assert!(matches!(err, CompilationError::NoDiskRoom { .. }), "{err}");
    assert!(err.to_string().contains("min_free_space"), "{err}");
    let staging = root.path().join("cache/compilation/dirs/.staging");
    assert!(!staging.exists() || fs::read_dir(&staging).unwrap().next().is_none());
    assert!(compilation.cache.keys().unwrap().is_empty());
}
