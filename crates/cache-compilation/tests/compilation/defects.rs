//! Regressions of the original's defects that concern this domain, named after them
//! (`shared/reference/original-behaviour.md`, "Its defects").

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cache_compilation::{
    ArchiveFormat, BuildInputs, CachedWorkspace, CompilationCache, CompilationOptions,
    ExportOptions, GitHandling, WorkspaceDetails, WorkspaceId, create_compilation_cache_service,
};
use cache_core::{Coordinator, ManualClock, UserCacheConfig};
use rstest::rstest;
use tempfile::TempDir;

use crate::{
    DAY, HOUR, branch, cache_ws, clock, config, coordinator, fake_workspace, has_git, open,
    open_with, quiet, repo, root, snapshot, write,
};

#[rstest]
fn defect_03_repository_workspaces_live_30_days_and_branch_workspaces_1_day(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    // The original mapped the levels the other way round: the repository level got 1 day.
    let compilation = open(&coordinator, &root, &clock);
    let ws = fake_workspace(&root, "ws");
    let at_repo = cache_ws(&compilation, &ws, &repo());
    let at_branch = cache_ws(&compilation, &ws, &branch("main"));
    assert_eq!(
        at_repo.expires_at,
        Some(at_repo.metadata.created + 30 * DAY)
    );
    assert_eq!(at_branch.expires_at, Some(at_branch.metadata.created + DAY));

    clock.advance(DAY + Duration::from_secs(1));
    let workspaces = &compilation.workspaces;
    assert_eq!(workspaces.get_exact(&branch("main")).unwrap(), None);
    assert_eq!(workspaces.get(&branch("main")).unwrap().unwrap().id, repo());

    clock.advance(29 * DAY);
    assert_eq!(workspaces.get(&branch("main")).unwrap(), None);
}

/// Every way a workspace gets into the cache, each as its own id.
fn every_way_in(
    compilation: &CompilationCache,
    ws: &Path,
    archives: &[(&str, &Path)],
) -> Vec<CachedWorkspace> {
    let details = WorkspaceDetails::default;
    let workspaces = &compilation.workspaces;
    let mut stored = vec![
        workspaces
            .cache_workspace(ws, &branch("cached"), details(), &mut quiet())
            .unwrap(),
        workspaces
            .inject(ws, &branch("injected"), details(), &mut quiet())
            .unwrap(),
        workspaces
            .import(ws, &branch("imported-dir"), details(), &mut quiet())
            .unwrap(),
    ];
    for (name, archive) in archives {
        stored.push(
            workspaces
                .import(archive, &branch(name), details(), &mut quiet())
                .unwrap(),
        );
    }
    stored.into_iter().map(Option::unwrap).collect()
}

#[rstest]
fn defect_04_git_handling_is_one_setting_applied_on_every_way_in(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
    #[values(GitHandling::Keep, GitHandling::Exclude)] git: GitHandling,
) {
    let ws = fake_workspace(&root, "ws");
    // Archives that do hold `.git` directories, made by another cache that keeps them.
    let archive_maker = TempDir::new().unwrap();
    let maker = open(&coordinator, &archive_maker, &clock);
    cache_ws(&maker, &ws, &repo());
    let [tar_gz, zip] = [ArchiveFormat::TarGz, ArchiveFormat::Zip].map(|format| {
        let output = root.path().join(format!("with-git.{}", format.extension()));
        let options = ExportOptions {
            format,
            include_git: true,
        };
        maker
            .workspaces
            .export(&repo(), &output, options, &mut quiet())
            .unwrap();
        output
    });

    let options = CompilationOptions {
        git,
        ..CompilationOptions::default()
    };
    let compilation = open_with(&coordinator, &config(&root, &clock), options);
    let stored = every_way_in(&compilation, &ws, &[("tar-gz", &tar_gz), ("zip", &zip)]);

    assert_eq!(stored.len(), 5);
    let first = snapshot(&stored[0].path);
    for found in &stored {
        assert_eq!(
            has_git(&found.path),
            git == GitHandling::Keep,
            "{:?}",
            found.id
        );
        assert_eq!(found.metadata.git, git);
        assert_eq!(snapshot(&found.path), first, "{:?} differs", found.id);
    }
}

#[rstest]
fn defect_05_workspace_directories_count_in_the_limit_and_go_with_their_entry(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let ws = fake_workspace(&root, "ws");
    let compilation = open(&coordinator, &root, &clock);
    let before = compilation.cache.get_stats().unwrap().disk_bytes;
    let cached = cache_ws(&compilation, &ws, &branch("main"));
    let after = compilation.cache.get_stats().unwrap().disk_bytes;
    assert!(
        after - before >= cached.metadata.size_bytes,
        "{before} -> {after}"
    );

    // Deleted: the directory goes.
    assert!(compilation.workspaces.delete(&branch("main")).unwrap());
    assert!(!cached.path.exists());
    assert!(compilation.cache.get_stats().unwrap().disk_bytes < after);

    // Expired: cleanup removes the directory with the entry.
    let cached = cache_ws(&compilation, &ws, &branch("main"));
    clock.advance(DAY);
    let report = compilation.cleanup().unwrap();
    assert_eq!(report.expired, 1);
    assert!(!cached.path.exists());

    // Over the size limit: the oldest workspaces are evicted, directories and all.
    let small_root = TempDir::new().unwrap();
    let mut small = config(&small_root, &clock);
    small.options.max_size_bytes = 3 * cached.size_bytes + 4096;
    let limited = open_with(&coordinator, &small, CompilationOptions::default());
    let ids: Vec<WorkspaceId> = (0..6).map(|n| branch(&format!("b{n}"))).collect();
    let paths: Vec<_> = ids
        .iter()
        .map(|id| cache_ws(&limited, &ws, id).path)
        .collect();
    let stats = limited.cache.get_stats().unwrap();
    assert!(
        stats.disk_bytes <= small.options.max_size_bytes,
        "{stats:?}"
    );
    assert!(stats.lifetime.evictions > 0, "{stats:?}");
    assert!(
        !paths[0].exists(),
        "the oldest directory was evicted with its entry"
    );
    assert_eq!(limited.workspaces.get_exact(&ids[0]).unwrap(), None);
    assert!(paths[5].exists() && limited.workspaces.get_exact(&ids[5]).unwrap().is_some());
    let dirs = fs::read_dir(small_root.path().join("cache/compilation/dirs"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != ".staging")
        .count();
    assert_eq!(
        dirs,
        limited.workspaces.list().unwrap().len(),
        "no directory outlives its entry"
    );
}

#[rstest]
fn defect_05_build_artifacts_count_in_the_limit_and_go_with_their_entry(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let build = root.path().join("build");
    write(&build.join("zephyr/zmk.uf2"), &[9u8; 10_000]);
    let inputs = BuildInputs::new("zmkfirmware/zmk", "main", "k", "c")
        .pinned(crate::COMMIT, crate::TOOLCHAIN);
    let before = compilation.cache.get_stats().unwrap().disk_bytes;
    let cached = compilation
        .builds
        .store(&inputs, &build, &mut quiet())
        .unwrap()
        .unwrap();
    assert!(compilation.cache.get_stats().unwrap().disk_bytes - before >= 10_000);

    clock.advance(7 * DAY);
    assert_eq!(compilation.cleanup().unwrap().expired, 1);
    assert!(!cached.path.exists());
}

#[rstest]
fn defect_06_a_hit_does_not_extend_a_workspace_ttl(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    // The original re-stored the workspace on every hit, so one in daily use never expired.
    let compilation = open(&coordinator, &root, &clock);
    let cached = cache_ws(&compilation, &fake_workspace(&root, "ws"), &branch("main"));
    clock.advance(20 * HOUR);
    let hit = compilation
        .workspaces
        .get(&branch("main"))
        .unwrap()
        .unwrap();
    assert_eq!(hit.expires_at, cached.expires_at);
    clock.advance(5 * HOUR);
    assert_eq!(
        compilation.workspaces.get_exact(&branch("main")).unwrap(),
        None
    );
}

#[rstest]
fn defect_06_a_hit_extends_the_ttl_only_when_configured_to(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let options = CompilationOptions {
        extend_ttl_on_hit: true,
        ..CompilationOptions::default()
    };
    let compilation = open_with(&coordinator, &config(&root, &clock), options);
    let ws = fake_workspace(&root, "ws");
    let cached = cache_ws(&compilation, &ws, &branch("main"));
    clock.advance(20 * HOUR);
    let hit = compilation
        .workspaces
        .get(&branch("main"))
        .unwrap()
        .unwrap();
    assert_eq!(hit.expires_at, cached.expires_at.map(|at| at + 20 * HOUR));
    assert_eq!(
        hit.metadata, cached.metadata,
        "the metadata is kept as stored"
    );
    clock.advance(5 * HOUR);
    let later = compilation
        .workspaces
        .get_exact(&branch("main"))
        .unwrap()
        .unwrap();
    assert_eq!(
        snapshot(&later.path),
        snapshot(&cached_copy_reference(&root, &ws))
    );
}

/// What a cached copy of `ws` holds (the four components, `.git` kept), for comparing.
fn cached_copy_reference(root: &TempDir, ws: &Path) -> std::path::PathBuf {
    let reference = root.path().join("reference");
    for component in ["zmk", "zephyr", "modules", ".west"] {
        copy_dir(&ws.join(component), &reference.join(component));
    }
    reference
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let meta = fs::symlink_metadata(&source).unwrap();
        if meta.file_type().is_symlink() {
            #[cfg(unix)]
            std::os::unix::fs::symlink(fs::read_link(&source).unwrap(), &target).unwrap();
        } else if meta.is_dir() {
            copy_dir(&source, &target);
        } else {
            fs::copy(&source, &target).unwrap();
        }
    }
}

#[rstest]
fn defect_07_the_factories_honour_the_configured_cache_root(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    // The original's factories disagreed: some domains ignored a custom cache path.
    let compilation = open(&coordinator, &root, &clock);
    let cached = cache_ws(&compilation, &fake_workspace(&root, "ws"), &repo());
    let tag_dir = fs::canonicalize(root.path().join("cache/compilation")).unwrap();
    assert_eq!(
        compilation.cache.database_path(),
        Some(tag_dir.join("cache.redb").as_path())
    );
    assert!(
        cached.path.starts_with(&tag_dir),
        "{}",
        cached.path.display()
    );

    // The convenience factory, on the process-wide coordinator (no other test uses it).
    let other = TempDir::new().unwrap();
    let config = UserCacheConfig {
        cache_path: Some(other.path().to_owned()),
        ..UserCacheConfig::default()
    };
    let by_default = create_compilation_cache_service(&config).unwrap();
    let tag_dir = fs::canonicalize(other.path().join("compilation")).unwrap();
    assert_eq!(
        by_default.cache.database_path(),
        Some(tag_dir.join("cache.redb").as_path())
    );
    by_default.cache.close().unwrap();
}

#[rstest]
fn defect_11_delete_reaches_repository_and_branch_workspaces(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    // The original's `workspace delete` never removed repo+branch entries.
    let compilation = open(&coordinator, &root, &clock);
    let ws = fake_workspace(&root, "ws");
    let other_repo = WorkspaceId::branch("moergo-sc/zmk", "main").unwrap();
    let ids = [repo(), branch("main"), branch("dev"), other_repo.clone()];
    let paths: Vec<_> = ids
        .iter()
        .map(|id| cache_ws(&compilation, &ws, id).path)
        .collect();
    let workspaces = &compilation.workspaces;

    assert!(workspaces.delete(&branch("main")).unwrap());
    assert!(!paths[1].exists());
    assert!(
        workspaces.get_exact(&repo()).unwrap().is_some(),
        "only the branch went"
    );

    assert_eq!(workspaces.delete_repository("zmkfirmware/zmk").unwrap(), 2);
    assert!(!paths[0].exists() && !paths[2].exists());
    assert_eq!(workspaces.get(&branch("dev")).unwrap(), None);
    assert!(paths[3].exists(), "another repository's workspace stays");
    assert_eq!(workspaces.list().unwrap().len(), 1);
    assert_eq!(workspaces.delete_repository("zmkfirmware/zmk").unwrap(), 0);
    assert!(!workspaces.delete(&repo()).unwrap());
}
