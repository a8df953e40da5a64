//! Content files: the regular files of owned directories, stored once per content under
//! `<tag>/files/<2 hex>/<name>` and shared with every owned directory that holds the same
//! content through hard links (as pnpm's store does).
//!
//! A content file's name is `<blake3 hex>_<mode octal>_<mtime seconds>_<mtime nanoseconds>`:
//! mode and modification time live on the inode a hard link shares, so they are part of what
//! is shared, and an owned directory keeps its files' modes and times exactly (a restore or an
//! export copies them as they are). The cost: the same bytes with another mode or time (a fresh
//! clone of a repository) are a second content file.
//!
//! How the pieces stay consistent when any process may be killed between two steps:
//! - **Sharing** (`dedup`, before the commit, outside the write lock): each staged file is
//!   hashed and linked into `files/` under its name, or, when that name exists, the existing
//!   content file (verified first) is linked over the staged name. The data is always held by
//!   a name in the staged directory, so no step loses it; what a kill leaves is a content file
//!   whose only name is its own (`st_nlink == 1`), which `sweep` removes.
//! - **References** (`store/tables.rs`): the `dir_contents` row of an owned directory (its
//!   shared files, by relative path, content name and allocated bytes) and each content's count
//!   in `contents` are written in the write transaction that records the entry, and dropped in
//!   the one that removes it. A content file counts once in the tag's usage, while any entry
//!   refers to it; removing an entry whose files are all shared frees (and says) nothing.
//! - **Removal**: a content file whose last entry went is removed after that commit landed,
//!   inside a later write transaction that finds it still unreferenced, and only if its own
//!   name is its only one (`remove_if_unreferenced`): another process's staged directory that
//!   has just linked it keeps it. `sweep` (cleanup, inside its write transaction) removes any
//!   content file no row refers to that has no other name.
//! - **Verification** (`verify`, on every read of an owned directory): each shared file of the
//!   directory is hashed and compared with its content name, unless this instance verified the
//!   same inode with the same length, times and change time before (the identity check blob
//!   files use). A file that no longer matches makes the entry a miss, removed by the next
//!   commit; a store that meets a content file that does not match its name replaces it.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::codec::hex;
use crate::directory::unique_name;
use crate::error::{CacheError, Result};
use crate::fsys::{self, Dir, Kind, Linked, Meta, meta_of_file};

/// The directory of content files, in the tag directory.
const FILES: &str = "files";
/// Prefix of the temporary names links are made under before a rename puts them in place.
const LINK_TEMP_PREFIX: &str = ".glovebox-link-";
/// Inodes remembered as verified, per instance; past this many the memory is cleared.
const MAX_KNOWN: usize = 1 << 18;
/// Only a file whose times are at least this old is remembered as verified (a write within
/// the filesystem's timestamp granularity would not move them).
const SETTLE: Duration = Duration::from_secs(1);

/// One file of an owned directory that is a name of a content file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ContentUse {
    /// Path relative to the owned directory's top, components joined by `/`.
    pub(crate) path: Vec<u8>,
    /// The content file's name.
    pub(crate) name: String,
    /// Bytes the content occupies on disk, counted once for the tag.
    pub(crate) allocated: u64,
}

/// What a content name says about its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ContentKey {
    hash: [u8; 32],
    mode: u32,
    mtime: (i64, i64),
}

impl ContentKey {
    fn name(&self) -> String {
        format!(
            "{}_{:o}_{}_{}",
            hex(&self.hash),
            self.mode,
            self.mtime.0,
            self.mtime.1
        )
    }

    fn parse(name: &str) -> Option<ContentKey> {
        let mut parts = name.split('_');
        let hash = crate::keys::from_hex(parts.next()?)?;
        let mode = u32::from_str_radix(parts.next()?, 8).ok()?;
        let seconds = parts.next()?.parse().ok()?;
        let nanos = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(ContentKey {
            hash: hash.try_into().ok()?,
            mode,
            mtime: (seconds, nanos),
        })
    }

    /// Whether `meta` has this key's mode and time (its content is checked apart).
    fn matches(&self, meta: &Meta) -> bool {
        meta.mode == self.mode && meta.mtime == self.mtime
    }
}

/// A content file as [`CONTENT_STAT`](super::tables::CONTENT_STAT) records it: inode, length,
/// change time (seconds, nanoseconds).
pub(crate) type StatRecord = (u64, u64, i64, i64);

fn stat_record(meta: &Meta) -> StatRecord {
    (meta.identity.1, meta.len, meta.ctime.0, meta.ctime.1)
}

/// Whether `name` is a content file name (or a link temp) that the sweep may judge.
fn is_content_name(name: &OsStr) -> bool {
    name.to_str()
        .is_some_and(|name| name.starts_with(LINK_TEMP_PREFIX) || ContentKey::parse(name).is_some())
}

/// The inode an open file is, with what can change without changing the inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    identity: (u64, u64),
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Seen {
    fn of(meta: &Meta) -> Seen {
        Seen {
            identity: meta.identity,
            len: meta.len,
            mtime: meta.mtime,
            ctime: meta.ctime,
        }
    }

    fn is_settled(&self, now: SystemTime) -> bool {
        let newest = self.mtime.max(self.ctime);
        let newest = UNIX_EPOCH
            + Duration::new(
                u64::try_from(newest.0).unwrap_or(0),
                u32::try_from(newest.1).unwrap_or(0).min(999_999_999),
            );
        now.duration_since(newest).is_ok_and(|age| age >= SETTLE)
    }
}

/// Inodes (device, inode number) hashed and found matching, with how they looked and the hash.
type KnownHashes = HashMap<(u64, u64), (Seen, [u8; 32])>;

/// What sharing one staged file came to.
#[derive(Clone, Debug)]
struct Shared {
    name: String,
    allocated: u64,
    /// The staged inode was replaced by the existing content file (its other names must be
    /// replaced too).
    replaced: bool,
}

/// The content files of one tag.
#[derive(Debug)]
pub(crate) struct ContentFiles {
    tag: Arc<Dir>,
    /// Inodes this instance hashed and found matching, with the hash they had.
    known: Mutex<KnownHashes>,
    /// Files hashed to verify or share them (for tests of what is skipped).
    hashed: std::sync::atomic::AtomicU64,
}

impl ContentFiles {
    pub(crate) fn new(tag: Arc<Dir>) -> Self {
        ContentFiles {
            tag,
            known: Mutex::new(HashMap::new()),
            hashed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Shares the regular files of the staged directory `staged_name` (in `staging`) with the
    /// tag's content files: each non-empty file becomes a name of the content file with its
    /// bytes, mode and time, created from it if none exists. Names of one staged file stay
    /// names of one file; two distinct staged files with the same content stay distinct (the
    /// second is not shared), so a copy out never links files that were not linked. A file
    /// that changes while it is hashed, or whose content file has as many names as the
    /// filesystem allows, is left as it is (not shared). Returns the shared files.
    pub(crate) fn dedup(&self, staging: &Dir, staged_name: &str) -> Result<Vec<ContentUse>> {
        let files = self.tag.dir_or_create(FILES)?;
        let mut by_inode: HashMap<(u64, u64), Option<Shared>> = HashMap::new();
        let mut used: HashSet<String> = HashSet::new();
        let mut uses = Vec::new();
        staging.walk_files(staged_name, &mut |relative, parent, entry| {
            if entry.meta.len == 0 {
                return Ok(());
            }
            let shared = match by_inode.get(&entry.meta.identity) {
                Some(None) => return Ok(()),
                Some(Some(shared)) => {
                    let shared = shared.clone();
                    if shared.replaced {
                        let fanout = fanout(&files, &shared.name)?;
                        let temp = link_temp_name();
                        let kept_time = parent.meta()?.mtime;
                        match fanout.link(&shared.name, parent, &temp)? {
                            Linked::Done => {
                                if let Err(err) = parent.rename(&temp, parent, &entry.name) {
                                    let _ = parent.remove_file(&temp);
                                    return Err(err);
                                }
                            }
                            _ => return Err(lost_link(&fanout, &shared.name)),
                        }
                        parent.set_modified(kept_time)?;
                    }
                    shared
                }
                None => {
                    let shared = self.share(parent, &entry.name, &files, &used)?;
                    by_inode.insert(entry.meta.identity, shared.clone());
                    match shared {
                        Some(shared) => {
                            used.insert(shared.name.clone());
                            shared
                        }
                        None => return Ok(()),
                    }
                }
            };
            uses.push(ContentUse {
                path: relative.to_vec(),
                name: shared.name,
                allocated: shared.allocated,
            });
            Ok(())
        })?;
        Ok(uses)
    }

    /// Shares the staged file `name` of `parent` (see [`ContentFiles::dedup`]).
    fn share(
        &self,
        parent: &Dir,
        name: &OsStr,
        files: &Dir,
        used: &HashSet<String>,
    ) -> Result<Option<Shared>> {
        let Some(file) = parent.open_file(name)? else {
            return Ok(None);
        };
        let path = parent.join(name);
        let before = meta_of_file(&file, &path)?;
        let hash = hash_file(&file, &path)?;
        let after = meta_of_file(&file, &path)?;
        if Seen::of(&before) != Seen::of(&after) {
            // Being written while it was hashed: not shared (the publish's second measurement
            // refuses a directory that changed).
            return Ok(None);
        }
        drop(file);
        let key = ContentKey {
            hash,
            mode: before.mode,
            mtime: before.mtime,
        };
        let content_name = key.name();
        if used.contains(&content_name) {
            return Ok(None);
        }
        let fanout = fanout(files, &content_name)?;
        // A few rounds: a content file found may be removed (it had no other name) before it
        // is linked, and then this file takes its place.
        for _ in 0..4 {
            match parent.link(name, &fanout, &content_name)? {
                Linked::Done => {
                    return Ok(Some(Shared {
                        name: content_name,
                        allocated: before.allocated,
                        replaced: false,
                    }));
                }
                Linked::TooManyLinks | Linked::SourceGone => return Ok(None),
                Linked::NameTaken => {}
            }
            match self.check(&fanout, &content_name, &key)? {
                Some(existing) if existing.identity == before.identity => {
                    // Already a name of the content file (a staged copy made by hard links).
                    return Ok(Some(Shared {
                        name: content_name,
                        allocated: existing.allocated,
                        replaced: false,
                    }));
                }
                Some(existing) => {
                    let temp = link_temp_name();
                    // Replacing a name moves the directory's time: put it back.
                    let kept_time = parent.meta()?.mtime;
                    let linked = match fanout.link(&content_name, parent, &temp) {
                        Ok(linked) => linked,
                        // A directory this process may not write in (a read-only directory of
                        // the tree, for a user other than root): the file stays unshared.
                        Err(_) => return Ok(None),
                    };
                    match linked {
                        Linked::Done => {
                            if parent.rename(&temp, parent, name).is_err() {
                                let _ = parent.remove_file(&temp);
                                return Ok(None);
                            }
                            parent.set_modified(kept_time)?;
                            return Ok(Some(Shared {
                                name: content_name,
                                allocated: existing.allocated,
                                replaced: true,
                            }));
                        }
                        Linked::SourceGone => continue,
                        Linked::TooManyLinks => return Ok(None),
                        Linked::NameTaken => return Err(lost_link(parent, &temp)),
                    }
                }
                None => {
                    // The name holds other bytes (changed on disk): replace it with this file,
                    // atomically, so that no later store links the damaged one.
                    tracing::warn!(path = %fanout.join(&content_name).display(), "content file does not match its name; replaced");
                    let temp = link_temp_name();
                    match parent.link(name, &fanout, &temp)? {
                        Linked::Done => {
                            fanout.rename(&temp, &fanout, &content_name)?;
                            return Ok(Some(Shared {
                                name: content_name,
                                allocated: before.allocated,
                                replaced: false,
                            }));
                        }
                        _ => return Ok(None),
                    }
                }
            }
        }
        Ok(None)
    }

    /// The content file `name` of `fanout` if it is there and matches `key` (mode, time and
    /// bytes); `None` if it is missing or does not match.
    fn check(&self, fanout: &Dir, name: &str, key: &ContentKey) -> Result<Option<Meta>> {
        let Some(file) = fanout.open_file(name)? else {
            return Ok(None);
        };
        let path = fanout.join(name);
        let meta = meta_of_file(&file, &path)?;
        Ok(
            (key.matches(&meta) && self.hash_matches(&file, &path, &meta, &key.hash)?)
                .then_some(meta),
        )
    }

    /// Whether the open `file` (of `meta`) holds bytes hashing to `hash`: from memory when this
    /// instance hashed the very same inode, unchanged, before.
    fn hash_matches(&self, file: &File, path: &Path, meta: &Meta, hash: &[u8; 32]) -> Result<bool> {
        let seen = Seen::of(meta);
        let known = self
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&seen.identity)
            .copied();
        if let Some((known_seen, known_hash)) = known
            && known_seen == seen
        {
            return Ok(&known_hash == hash);
        }
        let found = hash_file(file, path)?;
        self.hashed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let after = meta_of_file(file, path)?;
        if Seen::of(&after) == seen && seen.is_settled(SystemTime::now()) {
            let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
            if known.len() >= MAX_KNOWN {
                known.clear();
            }
            known.insert(seen.identity, (seen, found));
        }
        Ok(&found == hash)
    }

    /// Files this instance hashed to verify them (for tests).
    #[cfg(test)]
    pub(crate) fn verifications(&self) -> u64 {
        self.hashed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How the content file `name` looks now, as [`CONTENT_STAT`](super::tables::CONTENT_STAT)
    /// records it (inode, length, change time); `None` if it is not there as a regular file.
    pub(crate) fn seen(&self, name: &str) -> Result<Option<StatRecord>> {
        let Some(files) = self.tag.dir(FILES)? else {
            return Ok(None);
        };
        let Some(fanout) = files.dir(fanout_name(name))? else {
            return Ok(None);
        };
        Ok(fanout
            .stat(name)?
            .filter(|meta| meta.kind == Kind::File)
            .map(|meta| stat_record(&meta)))
    }

    /// Checks the shared files of the owned directory `name` (in `dirs`) against their content
    /// names: the relative path of the first one that is missing, is not a regular file, or
    /// whose mode, time or bytes do not match; `None` when all match. A file that looks exactly
    /// as `recorded` says its content file looked after its names last changed (same inode,
    /// length and change time: nothing wrote to it, changed its mode or linked it since) is
    /// trusted without being read; any other is hashed.
    pub(crate) fn verify(
        &self,
        dirs: &Dir,
        name: &str,
        uses: &[ContentUse],
        recorded: &HashMap<String, StatRecord>,
    ) -> Result<Option<Vec<u8>>> {
        if uses.is_empty() {
            return Ok(None);
        }
        let mut expected: HashMap<&[u8], (ContentKey, Option<&StatRecord>)> =
            HashMap::with_capacity(uses.len());
        for content in uses {
            match ContentKey::parse(&content.name) {
                Some(key) => {
                    expected.insert(content.path.as_slice(), (key, recorded.get(&content.name)));
                }
                None => return Ok(Some(content.path.clone())),
            }
        }
        let mut bad: Option<Vec<u8>> = None;
        let mut found = 0usize;
        dirs.walk_files(name, &mut |relative, parent, entry| {
            if bad.is_some() {
                return Ok(());
            }
            let Some((key, recorded)) = expected.get(relative) else {
                return Ok(());
            };
            found += 1;
            if key.matches(&entry.meta) && *recorded == Some(&stat_record(&entry.meta)) {
                return Ok(());
            }
            let intact = match parent.open_file(&entry.name)? {
                Some(file) => {
                    let path = parent.join(&entry.name);
                    let meta = meta_of_file(&file, &path)?;
                    key.matches(&meta) && self.hash_matches(&file, &path, &meta, &key.hash)?
                }
                None => false,
            };
            if !intact {
                bad = Some(relative.to_vec());
            }
            Ok(())
        })?;
        if bad.is_none() && found != expected.len() {
            // A shared file is gone (or replaced by a directory or a symlink): name one.
            let mut present: HashSet<Vec<u8>> = HashSet::new();
            dirs.walk_files(name, &mut |relative, _, _| {
                present.insert(relative.to_vec());
                Ok(())
            })?;
            bad = uses
                .iter()
                .find(|content| !present.contains(&content.path))
                .map(|content| content.path.clone());
        }
        Ok(bad)
    }

    /// Removes the content file `name` if it is still there with no other name than its own
    /// (no owned or staged directory links it); whether it was removed. The caller holds the
    /// write lock and has found no entry referring to it.
    pub(crate) fn remove_if_unreferenced(&self, name: &str) -> Result<bool> {
        let Some(files) = self.tag.dir(FILES)? else {
            return Ok(false);
        };
        let Some(fanout) = files.dir(fanout_name(name))? else {
            return Ok(false);
        };
        match fanout.stat(name)? {
            Some(meta) if meta.kind == Kind::File && meta.links <= 1 => fanout.remove_file(name),
            _ => Ok(false),
        }
    }

    /// Removes every content file (and link temp) that no entry refers to (`referenced`) and
    /// that has no other name; how many. Anything under `files/` that is not a content file is
    /// reported once and left alone. Runs inside a write transaction, so no commit can take a
    /// content file in between; a staged directory that links one keeps it (it has two names).
    pub(crate) fn sweep(&self, referenced: &HashSet<String>) -> Result<u64> {
        let Some(files) = self.tag.dir(FILES)? else {
            return Ok(0);
        };
        let mut removed = 0;
        for fanout_entry in files.entries()? {
            let is_fanout = fanout_entry.meta.kind == Kind::Dir
                && fanout_entry.name.len() == 2
                && fanout_entry
                    .name
                    .as_bytes()
                    .iter()
                    .all(|byte| byte.is_ascii_hexdigit());
            if !is_fanout {
                fsys::warn_once(
                    &files.join(&fanout_entry.name),
                    "not a directory of content files; skipped",
                );
                continue;
            }
            let Some(fanout) = files.dir(&fanout_entry.name)? else {
                continue;
            };
            for entry in fanout.entries()? {
                if entry.meta.kind != Kind::File || !is_content_name(&entry.name) {
                    fsys::warn_once(&fanout.join(&entry.name), "not a content file; skipped");
                    continue;
                }
                let wanted = entry
                    .name
                    .to_str()
                    .is_some_and(|name| referenced.contains(name));
                if !wanted && entry.meta.links <= 1 && fanout.remove_file(&entry.name)? {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// The fan-out directory a content name lives in (its first two hex digits), created if
/// missing.
fn fanout(files: &Dir, name: &str) -> Result<Dir> {
    files.dir_or_create(fanout_name(name))
}

fn fanout_name(name: &str) -> &str {
    name.get(..2).unwrap_or("00")
}

fn link_temp_name() -> String {
    format!("{LINK_TEMP_PREFIX}{}", unique_name())
}

/// A link that cannot be made although its file holds a name this process just linked.
fn lost_link(dir: &Dir, name: impl AsRef<OsStr>) -> CacheError {
    CacheError::io(
        "linking",
        dir.join(name.as_ref()),
        io::Error::other("a content file was replaced while this directory was being stored"),
    )
}

fn hash_file(file: &File, path: &Path) -> Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let mut reader = file;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(CacheError::io("hashing", path, err)),
        };
        hasher.update(&buffer[..read]);
    }
    // The next reader of this descriptor starts at the top again.
    std::io::Seek::rewind(&mut reader).map_err(|err| CacheError::io("hashing", path, err))?;
    Ok(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests;
