//! Generated workspace-like trees for the deduplication tests, the worker and the
//! `bench workspace` figures: thousands of small files with modes 0600/0444/0755/0644, old
//! modification times, nested and empty directories, non-UTF-8 names, hard links, relative and
//! dangling symlinks and empty files, all from a seed, so that two processes generate the same
//! tree. A variant changes the content of one file in fifty, as a branch changes a few files of
//! its repository's workspace. Also a snapshot of a tree (what a faithful copy keeps) and its
//! disk use counting each inode once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;

use crate::SeededRng;

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct TreeSpec {
    /// Regular files (besides hard links, symlinks and empty files).
    pub files: usize,
    /// Mean file length in bytes (lengths vary from half to one and a half times it).
    pub mean_len: usize,
    /// Picks contents and lengths.
    pub seed: u64,
    /// 0: the base tree; another number changes one file in fifty (differently per variant).
    pub variant: u64,
}

const MODES: [u32; 4] = [0o600, 0o444, 0o755, 0o644];
/// 2001-09-09: old enough that no test run makes such a time by itself.
const OLD: u64 = 1_000_000_000;

/// Writes the tree `spec` describes into the existing, empty directory `dir`.
pub fn generate_tree(dir: &Path, spec: TreeSpec) -> anyhow::Result<()> {
    let mut rng = SeededRng::new(spec.seed);
    let mut dirs: Vec<PathBuf> = Vec::new();
    for top in 0..8 {
        for sub in 0..6 {
            let relative = PathBuf::from(format!("module-{top}/src-{sub}"));
            fs::create_dir_all(dir.join(&relative))
                .with_context(|| format!("while creating {}", relative.display()))?;
            dirs.push(relative);
        }
    }
    fs::create_dir_all(dir.join("module-0/empty/deeper"))?;
    fs::create_dir_all(dir.join("module-3/empty"))?;
    for index in 0..spec.files {
        let parent = &dirs[index % dirs.len()];
        let name: OsString = if index % 97 == 0 {
            // Latin-1 bytes: not UTF-8.
            OsString::from_vec([b"caf\xe9-".as_slice(), format!("{index}.c").as_bytes()].concat())
        } else {
            OsString::from(format!("file-{index:05}.c"))
        };
        let path = dir.join(parent).join(&name);
        let low = spec.mean_len / 2;
        let len = low + rng.below(spec.mean_len as u64 + 1) as usize;
        let changed = spec.variant != 0 && index % 50 == 7;
        let content = file_content(
            spec.seed,
            index as u64,
            len,
            changed.then_some(spec.variant),
        );
        let mut file = fs::File::create(&path)
            .with_context(|| format!("while creating {}", path.display()))?;
        file.write_all(&content)?;
        file.set_modified(UNIX_EPOCH + Duration::from_secs(OLD + index as u64 * 60))?;
        drop(file);
        fs::set_permissions(
            &path,
            fs::Permissions::from_mode(MODES[index % MODES.len()]),
        )?;
        if index % 100 == 3 {
            let mut link_name = name.clone();
            link_name.push(".link");
            fs::hard_link(&path, dir.join(parent).join(link_name))?;
        }
    }
    fs::File::create(dir.join("module-1/empty-file"))?
        .set_modified(UNIX_EPOCH + Duration::from_secs(OLD))?;
    std::os::unix::fs::symlink("src-0/file-00000.c", dir.join("module-0/relative-link"))?;
    std::os::unix::fs::symlink("no-such-file", dir.join("module-2/dangling-link"))?;
    // Directory times last, deepest first, so that filling them does not move them again.
    let mut all_dirs: Vec<PathBuf> = dirs.clone();
    all_dirs
        .extend(["module-0/empty/deeper", "module-0/empty", "module-3/empty"].map(PathBuf::from));
    all_dirs.extend((0..8).map(|top| PathBuf::from(format!("module-{top}"))));
    for (index, relative) in all_dirs.iter().enumerate() {
        let file = fs::File::open(dir.join(relative))?;
        file.set_modified(UNIX_EPOCH + Duration::from_secs(OLD - 3600 * (index as u64 + 1)))?;
    }
    Ok(())
}

/// The bytes of file `index`: seeded, distinct per file, other bytes when `variant` is set.
fn file_content(seed: u64, index: u64, len: usize, variant: Option<u64>) -> Vec<u8> {
    let mut rng =
        SeededRng::new(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ variant.unwrap_or(0));
    let mut content = format!("// file {index} variant {variant:?}\n").into_bytes();
    while content.len() < len {
        content.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    content.truncate(len.max(1));
    content
}

/// What a faithful copy of a tree keeps, by relative path (as bytes): kind, permission bits,
/// modification time, content (a hash) or symlink target, and for a later name of a file with
/// several names in the tree, the first name.
pub fn snapshot(dir: &Path) -> anyhow::Result<BTreeMap<Vec<u8>, String>> {
    let mut out = BTreeMap::new();
    let mut first_name: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let mut entries: Vec<_> =
            fs::read_dir(dir.join(&relative))?.collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let child = relative.join(entry.file_name());
            let meta = fs::symlink_metadata(dir.join(&child))?;
            let mode = meta.mode() & 0o7777;
            let mtime = (meta.mtime(), meta.mtime_nsec());
            let key = child.as_os_str().as_bytes().to_vec();
            let description = if meta.is_dir() {
                pending.push(child.clone());
                format!("dir {mode:o} {mtime:?}")
            } else if meta.file_type().is_symlink() {
                format!("link -> {:?}", fs::read_link(dir.join(&child))?)
            } else {
                let hash = hash_of(&fs::read(dir.join(&child))?);
                let linked = if meta.nlink() > 1 {
                    match first_name.get(&(meta.dev(), meta.ino())) {
                        Some(first) => format!(" linked to {}", String::from_utf8_lossy(first)),
                        None => {
                            first_name.insert((meta.dev(), meta.ino()), key.clone());
                            String::new()
                        }
                    }
                } else {
                    String::new()
                };
                format!("file {mode:o} {mtime:?} {hash:016x}{linked}")
            };
            out.insert(key, description);
        }
    }
    Ok(out)
}

/// FNV-1a: enough to tell contents apart in a snapshot (the tests compare, never trust).
fn hash_of(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Bytes allocated on disk below `dir` (and for it), each inode counted once however many
/// names it has, symlinks not followed: what `du` reports.
pub fn disk_use(dir: &Path) -> anyhow::Result<u64> {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = fs::symlink_metadata(&path)
            .with_context(|| format!("while measuring {}", path.display()))?;
        if seen.insert((meta.dev(), meta.ino())) {
            total += meta.blocks() * 512;
        }
        if meta.is_dir() {
            for entry in fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(total)
}
