//! The content manifest of a cached workspace: the blake3 hash of every regular file, written
//! into the owned directory when it is stored, so that a file changed afterwards (through a
//! hard link a `--link hardlink` restore made) is found by its hash and the entry dropped
//! instead of served.
//!
//! The manifest is the file [`MANIFEST_NAME`] at the top of the owned directory, beside the
//! four components: not part of the workspace, so copies out and exports (which keep only the
//! components) never carry it. One line per file: `<hash hex> <path bytes hex>`, after a
//! version line. Hex keeps any path (non-UTF-8 names included) on one line.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use cache_core::keys::{from_hex, hex};

use crate::error::{CompilationError, Result};
use crate::tree::{self, NodeKind, Tree};

/// The manifest's file name, at the top of a cached workspace's directory.
pub(crate) const MANIFEST_NAME: &str = ".glovebox-manifest";
const VERSION_LINE: &str = "glovebox-manifest 1";

/// Hashes every regular file of `tree` as copied under `dir` and writes the manifest there.
pub(crate) fn write(dir: &Path, tree: &Tree) -> Result<()> {
    let path = dir.join(MANIFEST_NAME);
    let file = fs::File::options()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| CompilationError::io("creating", &path, source))?;
    let mut out = BufWriter::new(file);
    let write_error = |source: io::Error| CompilationError::io("writing", &path, source);
    writeln!(out, "{VERSION_LINE}").map_err(write_error)?;
    for node in &tree.nodes {
        if let NodeKind::File { .. } = node.kind {
            let hash = hash_file(&dir.join(&node.relative))?;
            writeln!(out, "{} {}", hash.to_hex(), hex(path_bytes(&node.relative)))
                .map_err(write_error)?;
        }
    }
    out.flush().map_err(write_error)
}

/// What [`verify`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verified {
    /// Every file that has names outside the directory still has its recorded content.
    Intact,
    /// No manifest (stored before manifests existed): nothing can be checked, and the entry
    /// is never restored with hard links.
    NoManifest,
    /// This file (relative) changed, or is not in the manifest.
    Changed(PathBuf),
}

/// Checks the files of the cached workspace at `dir` that have a name outside it (more links
/// than names inside the tree: a hard-link restore made them reachable for writing, and the
/// cache's deduplication shares them with its content files) against the manifest, except
/// `verified`: the files the cache verified on this read against the content they were stored
/// with (`CachedDirectory::verified_files`), which is what the manifest recorded too. Files
/// with no outside name are not read, so a workspace whose files the cache verified costs one
/// listing.
pub(crate) fn verify(dir: &Path, verified: &[PathBuf]) -> Result<Verified> {
    let verified: std::collections::HashSet<&Path> =
        verified.iter().map(PathBuf::as_path).collect();
    let Some(recorded) = read(dir)? else {
        return Ok(Verified::NoManifest);
    };
    let mut listed = tree::list(dir, &|relative, _| relative != Path::new(MANIFEST_NAME))?;
    listed.group_hard_links();
    let mut inside: HashMap<&Path, u64> = HashMap::new();
    for node in &listed.nodes {
        match &node.kind {
            NodeKind::File { .. } => *inside.entry(&node.relative).or_default() += 1,
            NodeKind::HardLink { to } => *inside.entry(to).or_default() += 1,
            _ => {}
        }
    }
    for node in &listed.nodes {
        let NodeKind::File { links, .. } = node.kind else {
            continue;
        };
        if links <= inside.get(node.relative.as_path()).copied().unwrap_or(1)
            || verified.contains(node.relative.as_path())
        {
            continue;
        }
        let changed = match recorded.get(&node.relative) {
            Some(hash) => hash_file(&dir.join(&node.relative))? != *hash,
            None => true,
        };
        if changed {
            return Ok(Verified::Changed(node.relative.clone()));
        }
    }
    Ok(Verified::Intact)
}

/// Whether `dir` has a manifest.
pub(crate) fn exists(dir: &Path) -> bool {
    fs::symlink_metadata(dir.join(MANIFEST_NAME)).is_ok_and(|meta| meta.file_type().is_file())
}

fn read(dir: &Path) -> Result<Option<HashMap<PathBuf, blake3::Hash>>> {
    let path = dir.join(MANIFEST_NAME);
    let file = match fs::File::open(&path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CompilationError::io("opening", &path, source)),
    };
    let malformed = || {
        CompilationError::io(
            "reading",
            &path,
            io::Error::new(io::ErrorKind::InvalidData, "not a workspace manifest"),
        )
    };
    let mut lines = BufReader::new(file).lines();
    match lines.next() {
        Some(Ok(line)) if line == VERSION_LINE => {}
        _ => return Err(malformed()),
    }
    let mut recorded = HashMap::new();
    for line in lines {
        let line = line.map_err(|source| CompilationError::io("reading", &path, source))?;
        let (hash, name) = line.split_once(' ').ok_or_else(malformed)?;
        let hash = blake3::Hash::from_hex(hash).map_err(|_| malformed())?;
        let name = from_hex(name).ok_or_else(malformed)?;
        recorded.insert(path_from_bytes(name), hash);
    }
    Ok(Some(recorded))
}

fn hash_file(path: &Path) -> Result<blake3::Hash> {
    let mut file =
        fs::File::open(path).map_err(|source| CompilationError::io("hashing", path, source))?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(|source| CompilationError::io("hashing", path, source))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize())
}

fn path_bytes(path: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes()
}

fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_any_bytes() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(from_hex(&hex(&bytes)), Some(bytes));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
