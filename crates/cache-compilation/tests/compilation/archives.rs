//! Export and import of workspaces as archives: round trips, layouts, and archives that try to
//! write outside the workspace.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cache_compilation::{
    ArchiveFormat, CompilationCache, CompilationError, ExportOptions, Progress, ProgressStage,
    WorkspaceDetails, WorkspaceId,
};
use cache_core::{Coordinator, ManualClock};
use rstest::rstest;
use tempfile::TempDir;

use crate::{
    branch, cache_ws, clock, coordinator, expected_workspace, fake_workspace, open, quiet, repo,
    root, snapshot,
};

fn import(
    compilation: &CompilationCache,
    archive: &Path,
    id: &WorkspaceId,
) -> cache_compilation::Result<Option<cache_compilation::CachedWorkspace>> {
    compilation
        .workspaces
        .import(archive, id, WorkspaceDetails::default(), &mut quiet())
}

#[rstest]
fn export_then_import_gives_the_same_workspace(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
    #[values(ArchiveFormat::TarGz, ArchiveFormat::Tar, ArchiveFormat::Zip)] format: ArchiveFormat,
    #[values(false, true)] include_git: bool,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = fake_workspace(&root, "ws");
    cache_ws(&compilation, &ws, &repo());
    let output = root.path().join(format!("exported.{}", format.extension()));

    let mut stages = Vec::new();
    let report = compilation
        .workspaces
        .export(
            &branch("main"),
            &output,
            ExportOptions {
                format,
                include_git,
            },
            &mut |p: Progress| stages.push(p.stage),
        )
        .unwrap();
    assert_eq!(report.path, output);
    assert_eq!(
        report.workspace.branch, None,
        "fell back to the repository level"
    );
    assert_eq!(report.archive_bytes, fs::metadata(&output).unwrap().len());
    let expected = expected_workspace(&ws, include_git);
    let expected_files = expected.values().filter(|kind| *kind != "dir").count() as u64;
    assert_eq!(report.files, expected_files);
    assert!(
        stages
            .iter()
            .all(|stage| *stage == ProgressStage::Exporting)
    );
    let leftovers: Vec<_> = fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name.to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let mut last = None;
    let imported = compilation
        .workspaces
        .import(
            &output,
            &branch("imported"),
            WorkspaceDetails::default(),
            &mut |p| last = Some(p),
        )
        .unwrap()
        .unwrap();
    assert_eq!(snapshot(&imported.path), expected);
    assert_eq!(
        imported.metadata.origin,
        cache_compilation::WorkspaceOrigin::ImportedArchive
    );
    let last = last.unwrap();
    assert_eq!(last.stage, ProgressStage::Extracting);
    assert!(
        last.is_complete() && last.files_total == expected_files,
        "{last:?}"
    );
    #[cfg(unix)]
    assert_eq!(
        crate::mode_of(&imported.path.join("zephyr/scripts/build.sh")),
        0o755
    );
}

#[rstest]
fn exporting_twice_gives_the_same_bytes(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
    #[values(ArchiveFormat::TarGz, ArchiveFormat::Zip)] format: ArchiveFormat,
) {
    let compilation = open(&coordinator, &root, &clock);
    cache_ws(&compilation, &fake_workspace(&root, "ws"), &repo());
    let [first, second] = ["a", "b"].map(|name| {
        let output = root.path().join(format!("{name}.{}", format.extension()));
        compilation
            .workspaces
            .export(&repo(), &output, ExportOptions::new(format), &mut quiet())
            .unwrap();
        fs::read(output).unwrap()
    });
    assert!(first == second, "exports of one workspace differ");
}

/// A tar.gz of `dir` under the name `top` (as `tar czf x.tar.gz top/` would make it).
fn tar_gz_of(dir: &Path, top: &str, output: &Path) {
    let encoder = flate2::write::GzEncoder::new(
        fs::File::create(output).unwrap(),
        flate2::Compression::fast(),
    );
    let mut builder = tar::Builder::new(encoder);
    builder.follow_symlinks(false);
    builder.append_dir_all(top, dir).unwrap();
    builder.into_inner().unwrap().finish().unwrap();
}

#[rstest]
fn an_archive_holding_the_workspace_in_one_top_level_folder_is_imported(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = fake_workspace(&root, "ws");
    let archive = root.path().join("folder.tgz");
    tar_gz_of(&ws, "my-workspace", &archive);

    let imported = import(&compilation, &archive, &repo()).unwrap().unwrap();
    assert_eq!(snapshot(&imported.path), expected_workspace(&ws, true));
}

#[rstest]
fn export_of_a_workspace_not_cached_is_an_error_and_writes_nothing(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let output = root.path().join("none.zip");
    let err = compilation
        .workspaces
        .export(
            &branch("main"),
            &output,
            ExportOptions::for_path(&output).unwrap(),
            &mut quiet(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, CompilationError::WorkspaceNotCached { branch: Some(b), .. } if b == "main"),
        "{err}"
    );
    assert!(err.to_string().contains("zmkfirmware/zmk"), "{err}");
    assert!(!output.exists());
}

#[rstest]
fn unknown_archive_names_are_refused(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let odd = root.path().join("workspace.rar");
    fs::write(&odd, b"Rar!").unwrap();
    let err = import(&compilation, &odd, &repo()).unwrap_err();
    assert!(
        matches!(err, CompilationError::UnknownArchiveFormat { .. }),
        "{err}"
    );
    assert!(ExportOptions::for_path(&odd).is_err());
}

#[rstest]
fn an_archive_without_zmk_is_not_a_workspace(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let not_ws = root.path().join("not-ws");
    crate::write(&not_ws.join("zephyr/README.rst"), b"Zephyr");
    let archive = root.path().join("not-ws.tar.gz");
    tar_gz_of(&not_ws, ".", &archive);
    let err = import(&compilation, &archive, &repo()).unwrap_err();
    assert!(
        matches!(err, CompilationError::NotAWorkspace { .. }),
        "{err}"
    );
}

#[rstest]
#[case::gzip_garbage("broken.tar.gz", b"this is not gzip" as &[u8])]
#[case::tar_garbage("broken.tar", &[0x55u8; 700])]
#[case::zip_garbage("broken.zip", b"PK\x03\x04 truncated")]
fn a_corrupt_archive_is_an_error_naming_it(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
    #[case] name: &str,
    #[case] bytes: &[u8],
) {
    let compilation = open(&coordinator, &root, &clock);
    let archive = root.path().join(name);
    fs::write(&archive, bytes).unwrap();
    let err = import(&compilation, &archive, &repo()).unwrap_err();
    assert!(err.to_string().contains(name), "{err}");
    assert!(compilation.cache.keys().unwrap().is_empty());
}

// ------------------------------------------------------------------------------------------
// Archives that try to escape

#[derive(Clone, Copy)]
enum Kind {
    File,
    Dir,
    Symlink(&'static str),
    HardLink(&'static str),
}

/// A tar.gz with entries written byte for byte (the `tar` crate's own setters refuse `..` and
/// absolute names, which is what these tests need to write).
fn raw_tar_gz(output: &Path, entries: &[(&str, Kind)]) {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind) in entries {
        let mut header = tar::Header::new_gnu();
        let raw_name = &mut header.as_old_mut().name;
        raw_name.fill(0);
        raw_name[..name.len()].copy_from_slice(name.as_bytes());
        let data: &[u8] = match kind {
            Kind::File => b"payload",
            _ => b"",
        };
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        match kind {
            Kind::File => header.set_entry_type(tar::EntryType::Regular),
            Kind::Dir => header.set_entry_type(tar::EntryType::Directory),
            Kind::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_link_name_literal(target).unwrap();
            }
            Kind::HardLink(target) => {
                header.set_entry_type(tar::EntryType::Link);
                header.set_link_name_literal(target).unwrap();
            }
        }
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut encoder = flate2::write::GzEncoder::new(
        fs::File::create(output).unwrap(),
        flate2::Compression::fast(),
    );
    encoder.write_all(&tar).unwrap();
    encoder.finish().unwrap();
}

/// A zip with entries as given; symlinks through `add_symlink`.
fn raw_zip(output: &Path, entries: &[(&str, Kind)]) {
    use zip::write::SimpleFileOptions;
    let mut zip = zip::ZipWriter::new(fs::File::create(output).unwrap());
    let options = SimpleFileOptions::default();
    for (name, kind) in entries {
        match kind {
            Kind::File => {
                zip.start_file(*name, options).unwrap();
                zip.write_all(b"payload").unwrap();
            }
            Kind::Dir => zip.add_directory(*name, options).unwrap(),
            Kind::Symlink(target) => zip.add_symlink(*name, *target, options).unwrap(),
            Kind::HardLink(_) => unreachable!("zip has no hard links"),
        }
    }
    zip.finish().unwrap();
}

/// Asserts that importing `archive` is refused as unsafe, mentioning `entry`, and that nothing
/// was stored, staged, or written next to the cache.
fn assert_refused(root: &TempDir, compilation: &CompilationCache, archive: &Path, entry: &str) {
    let err = import(compilation, archive, &repo()).unwrap_err();
    match &err {
        CompilationError::UnsafeArchiveEntry { entry: named, .. } => {
            assert!(named.contains(entry), "{err}");
        }
        other => panic!("expected an unsafe entry, got {other}"),
    }
    assert!(compilation.cache.keys().unwrap().is_empty());
    let staging = root.path().join("cache/compilation/dirs/.staging");
    assert!(!staging.exists() || fs::read_dir(&staging).unwrap().next().is_none());
    for escaped in ["evil", "outside", "cache/evil", "cache/compilation/evil"] {
        assert!(!root.path().join(escaped).exists(), "{escaped} was written");
    }
}

const GOOD: (&str, Kind) = ("zmk/app/CMakeLists.txt", Kind::File);

/// One archive that must be refused: its name, its bad entries, and the entry the error names.
type UnsafeCase = (&'static str, Vec<(String, Kind)>, &'static str);

fn unsafe_cases(root: &TempDir) -> Vec<UnsafeCase> {
    let absolute = root.path().join("evil").to_str().unwrap().to_owned();
    vec![
        (
            "dot_dot",
            vec![("zmk/../../evil".to_owned(), Kind::File)],
            "zmk/../../evil",
        ),
        ("absolute", vec![(absolute.clone(), Kind::File)], "evil"),
        (
            "symlink_out",
            vec![("zmk/link".to_owned(), Kind::Symlink("../../outside"))],
            "zmk/link",
        ),
        (
            "symlink_absolute",
            vec![("zmk/link".to_owned(), Kind::Symlink("/etc"))],
            "zmk/link",
        ),
        (
            "entry_below_a_symlink",
            vec![
                ("zmk/l".to_owned(), Kind::Symlink(".")),
                ("zmk/l/x".to_owned(), Kind::File),
            ],
            "zmk/l/x",
        ),
        (
            "symlink_out_through_a_dot_link",
            vec![
                ("zmk/s".to_owned(), Kind::Symlink(".")),
                ("zmk/t".to_owned(), Kind::Symlink("s/s/s/../../../evil")),
            ],
            "zmk/t",
        ),
        (
            "backslash",
            vec![("zmk\\..\\..\\evil".to_owned(), Kind::File)],
            "evil",
        ),
        (
            "dir_dot_dot",
            vec![("zmk/../..".to_owned(), Kind::Dir)],
            "zmk/../..",
        ),
    ]
}

#[rstest]
fn unsafe_tar_entries_refuse_the_whole_archive(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let mut cases = unsafe_cases(&root);
    // Tar only: zip has no hard links, and the zip crate refuses to write duplicate names
    // (`trust_16_a_zip_with_a_duplicate_entry_name_is_refused_as_tar_is` makes such a zip).
    cases.push((
        "hard_link",
        vec![("zmk/hard".to_owned(), Kind::HardLink("/etc/passwd"))],
        "zmk/hard",
    ));
    cases.push((
        "duplicate",
        vec![
            ("zmk/a".to_owned(), Kind::File),
            ("zmk/a".to_owned(), Kind::File),
        ],
        "zmk/a",
    ));
    for (case, bad, entry) in cases {
        let archive = root.path().join(format!("{case}.tar.gz"));
        let mut entries: Vec<(&str, Kind)> = vec![GOOD];
        entries.extend(bad.iter().map(|(name, kind)| (name.as_str(), *kind)));
        raw_tar_gz(&archive, &entries);
        assert_refused(&root, &compilation, &archive, entry);
    }
}

/// Item 16 of issue 13: a zip naming one entry twice was imported with the last copy winning,
/// while tar refused the same archive. The zip crate will not write a duplicate name, so the
/// archive is made with two distinct names of equal length and the second renamed in place.
#[rstest]
fn trust_16_a_zip_with_a_duplicate_entry_name_is_refused_as_tar_is(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    use zip::write::SimpleFileOptions;
    let compilation = open(&coordinator, &root, &clock);
    let archive = root.path().join("duplicate.zip");
    let mut zip = zip::ZipWriter::new(fs::File::create(&archive).unwrap());
    // Stored, so the names are the only place the bytes `zmk/b` occur.
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, content) in [
        (GOOD.0, &b"payload"[..]),
        ("zmk/a", b"first copy"),
        ("zmk/b", b"second copy"),
    ] {
        zip.start_file(name, options).unwrap();
        zip.write_all(content).unwrap();
    }
    zip.finish().unwrap();
    let mut bytes = fs::read(&archive).unwrap();
    let mut renamed = 0;
    for start in 0..bytes.len() - 5 {
        if &bytes[start..start + 5] == b"zmk/b" {
            bytes[start..start + 5].copy_from_slice(b"zmk/a");
            renamed += 1;
        }
    }
    assert_eq!(renamed, 2, "the local header and the central directory");
    fs::write(&archive, bytes).unwrap();

    assert_refused(&root, &compilation, &archive, "zmk/a");
    let err = import(&compilation, &archive, &repo())
        .unwrap_err()
        .to_string();
    assert!(err.contains("appears twice"), "{err}");
}

#[rstest]
fn unsafe_zip_entries_refuse_the_whole_archive(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    for (case, bad, entry) in unsafe_cases(&root) {
        let archive = root.path().join(format!("{case}.zip"));
        let mut entries: Vec<(&str, Kind)> = vec![GOOD];
        entries.extend(bad.iter().map(|(name, kind)| (name.as_str(), *kind)));
        raw_zip(&archive, &entries);
        assert_refused(&root, &compilation, &archive, entry);
    }
}

#[rstest]
fn symlinks_that_stay_inside_are_unpacked_as_symlinks(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let archive: PathBuf = root.path().join("links.tar.gz");
    raw_tar_gz(
        &archive,
        &[
            GOOD,
            ("zephyr/dir/deep.txt", Kind::File),
            ("zmk/up-and-over", Kind::Symlink("../zephyr/dir/deep.txt")),
            ("zmk/to-dir", Kind::Symlink("../zephyr/dir")),
            ("zmk/through-link", Kind::Symlink("to-dir/deep.txt")),
        ],
    );
    let imported = import(&compilation, &archive, &repo()).unwrap().unwrap();
    let tree = snapshot(&imported.path);
    assert_eq!(tree["zmk/up-and-over"], "link -> ../zephyr/dir/deep.txt");
    assert_eq!(tree["zmk/through-link"], "link -> to-dir/deep.txt");
    assert_eq!(
        fs::read(imported.path.join("zmk/through-link")).unwrap(),
        b"payload"
    );
}

/// Issue 13, item 9: `export -o DIR/NAME` writes `DIR/.NAME.partial-<pid>-<n>` first; symlinks
/// planted under those names (someone sharing DIR) are never written through: the export takes
/// the next free name, or, when every name it tries is taken, fails with an error naming the
/// output, having written nothing.
#[rstest]
fn trust_09_export_never_writes_through_a_planted_partial_symlink(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = fake_workspace(&root, "ws");
    cache_ws(&compilation, &ws, &repo());
    let shared = root.path().join("shared");
    fs::create_dir(&shared).unwrap();
    let victim = root.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    let plant = |range: std::ops::Range<u32>| {
        for attempt in range {
            let name = format!(".out.tar.partial-{}-{attempt}", std::process::id());
            std::os::unix::fs::symlink(&victim, shared.join(name)).unwrap();
        }
    };
    let export = || {
        compilation.workspaces.export(
            &branch("main"),
            &shared.join("out.tar"),
            ExportOptions::new(ArchiveFormat::Tar),
            &mut quiet(),
        )
    };

    plant(0..8);
    let report = export().unwrap();
    assert!(
        fs::read(&victim).unwrap() == b"precious",
        "the file a planted link points to is untouched"
    );
    assert!(
        fs::symlink_metadata(&report.path).unwrap().is_file(),
        "the archive is a file of its own"
    );
    assert!(report.archive_bytes > 0);

    plant(8..200);
    fs::remove_file(shared.join("out.tar")).unwrap();
    let err = export().unwrap_err();
    let message = cache_core::ErrorChain(&err).to_string();
    assert!(
        message.contains(&*shared.join("out.tar").to_string_lossy())
            && message.contains("nothing was written"),
        "{message}"
    );
    assert!(
        fs::read(&victim).unwrap() == b"precious",
        "the file a planted link points to is untouched"
    );
    assert!(!shared.join("out.tar").exists());
}
