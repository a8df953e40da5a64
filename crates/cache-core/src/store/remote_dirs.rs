//! Directories owned by entries, through the remote tier, both ways:
//!
//! - **Out** ([`list_for_publishing`], [`contents_reader`]): a stored directory is listed
//!   (paths sorted bytewise, `/`-separated, modes, lengths) without following a symlink, and its
//!   files' contents are read, concatenated in list order, through the directory held open, each
//!   file opened only when its turn comes (one descriptor per queued directory, however many
//!   files) and checked against its listed length. A directory holding a symlink, a device or a
//!   name that is not UTF-8 is not published (logged).
//! - **In** ([`validate_listing`], [`write_listing`]): a fetched list is checked whole, as an
//!   archive import is, before anything is written (relative paths only; no empty, `.` or `..`
//!   component, no NUL; no path twice; no path below a file; count and total length bounded),
//!   then written into a staged directory through `fsys` (created exclusively, never following a
//!   symlink), exactly `len` bytes per file (synced, as a backfilled blob is), modes masked to
//!   the permission bits, directories' modes set last, deepest first, so a read-only directory
//!   is filled before it is closed.
//!
//! The store's methods that use them, `publish_directory` and `backfill_directory`, are at the
//! end.

use std::collections::HashMap;
use std::fs::{File, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::fsys::{Dir, Kind};
use crate::remote::{DirectoryItem, DirectoryItemKind, PublishedDirectory, PublishedValue};

/// Items (files and directories) at most in a directory that goes through the remote tier,
/// either way: a bound on what a fetched list may make the cache create, and on how long a
/// commit's thread spends listing a directory to publish.
pub(crate) const MAX_SHARED_DIRECTORY_ITEMS: usize = 100_000;
/// The longest relative path in such a directory, in bytes (Linux's `PATH_MAX`).
pub(crate) const MAX_SHARED_PATH_BYTES: usize = 4096;

/// What listing a stored directory for publishing found.
pub(crate) enum Listing {
    /// Every item, sorted by path.
    Items(Vec<DirectoryItem>),
    /// Something that cannot be published (a symlink, a device, a name that is not UTF-8, too
    /// many items): why.
    Unpublishable(String),
}

/// Opens the directory `path` (relative, `/`-separated, not empty) below `top`, one component
/// at a time, never following a symlink; `None` if a component is missing.
fn open_below(top: &Dir, path: &str) -> Result<Option<Dir>> {
    let mut components = path.split('/');
    let Some(first) = components.next() else {
        return Ok(None);
    };
    let Some(mut dir) = top.dir(first)? else {
        return Ok(None);
    };
    for component in components {
        let Some(next) = dir.dir(component)? else {
            return Ok(None);
        };
        dir = next;
    }
    Ok(Some(dir))
}

/// Runs `then` on the parent directory of `path` (below `top`) and the last component;
/// `None` if the parent is missing.
fn in_parent<T>(
    top: &Dir,
    path: &str,
    then: impl FnOnce(&Dir, &str) -> Result<T>,
) -> Result<Option<T>> {
    match path.rsplit_once('/') {
        None => then(top, path).map(Some),
        Some((parent, name)) => match open_below(top, parent)? {
            Some(parent) => then(&parent, name).map(Some),
            None => Ok(None),
        },
    }
}

/// Lists the directory `top` for publishing: every file and subdirectory with its permission
/// bits, sorted by path (a directory before what it holds), without following a symlink.
pub(crate) fn list_for_publishing(top: &Dir) -> Result<Listing> {
    let mut items = Vec::new();
    // Directories still to list, by relative path ("" for the top): reopened from `top` when
    // their turn comes, so open descriptors are bounded by the depth, not the width.
    let mut pending = vec![String::new()];
    while let Some(prefix) = pending.pop() {
        let entries = if prefix.is_empty() {
            top.entries()?
        } else {
            match open_below(top, &prefix)? {
                Some(dir) => dir.entries()?,
                None => {
                    return Ok(Listing::Unpublishable(format!(
                        "{prefix} was removed while it was listed"
                    )));
                }
            }
        };
        for entry in entries {
            let Some(name) = entry.name.to_str() else {
                return Ok(Listing::Unpublishable(format!(
                    "{:?} in {prefix:?} is not a UTF-8 name",
                    entry.name
                )));
            };
            let path = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}/{name}")
            };
            let kind = match entry.meta.kind {
                Kind::File => DirectoryItemKind::File {
                    len: entry.meta.len,
                },
                Kind::Dir => {
                    pending.push(path.clone());
                    DirectoryItemKind::Dir
                }
                Kind::Symlink => {
                    return Ok(Listing::Unpublishable(format!("{path} is a symlink")));
                }
                Kind::Other => {
                    return Ok(Listing::Unpublishable(format!(
                        "{path} is neither a file nor a directory"
                    )));
                }
            };
            items.push(DirectoryItem {
                path,
                mode: entry.meta.mode & 0o777,
                kind,
            });
            if items.len() > MAX_SHARED_DIRECTORY_ITEMS {
                return Ok(Listing::Unpublishable(format!(
                    "more than {MAX_SHARED_DIRECTORY_ITEMS} files and directories"
                )));
            }
        }
    }
    items.sort_unstable_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(Listing::Items(items))
}

/// A reader of the contents of the files of `items` below `top`, concatenated in list order.
pub(crate) fn contents_reader(top: Arc<Dir>, items: &[DirectoryItem]) -> Box<dyn Read + Send> {
    let files: Vec<(String, u64)> = items
        .iter()
        .filter_map(|item| match item.kind {
            DirectoryItemKind::File { len } => Some((item.path.clone(), len)),
            DirectoryItemKind::Dir => None,
        })
        .collect();
    Box::new(Contents {
        top,
        files: files.into_iter(),
        current: None,
    })
}

/// See [`contents_reader`].
struct Contents {
    top: Arc<Dir>,
    files: std::vec::IntoIter<(String, u64)>,
    /// The file being read, its path, and the bytes of it still to come.
    current: Option<(io::Take<File>, String)>,
}

fn cache_to_io(err: CacheError) -> io::Error {
    io::Error::other(err.to_string())
}

impl Contents {
    /// Opens the next file; `false` when there is none.
    fn open_next(&mut self) -> io::Result<bool> {
        let Some((path, len)) = self.files.next() else {
            return Ok(false);
        };
        let file = in_parent(&self.top, &path, |parent, name| parent.open_file(name))
            .map_err(cache_to_io)?
            .flatten()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{path} has gone from {}", self.top.path().display()),
                )
            })?;
        let found = file.metadata()?.len();
        if found != len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{path} is {found} bytes, listed as {len}: it changed"),
            ));
        }
        self.current = Some((file.take(len), path));
        Ok(true)
    }
}

impl Read for Contents {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some((file, path)) = &mut self.current {
                let read = file.read(out)?;
                if read > 0 {
                    return Ok(read);
                }
                if file.limit() > 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{path} is shorter than listed: it changed"),
                    ));
                }
                self.current = None;
            }
            if !self.open_next()? {
                return Ok(0);
            }
        }
    }
}

/// Checks a fetched list whole before anything is written: why it is refused, if it is.
pub(crate) fn validate_listing(
    items: &[DirectoryItem],
    max_items: usize,
    max_bytes: u64,
) -> std::result::Result<(), String> {
    if items.len() > max_items {
        return Err(format!(
            "{} files and directories, more than the limit of {max_items}",
            items.len()
        ));
    }
    let mut is_file: HashMap<&str, bool> = HashMap::with_capacity(items.len());
    let mut total: u64 = 0;
    for item in items {
        let path = item.path.as_str();
        if path.len() > MAX_SHARED_PATH_BYTES {
            return Err(format!(
                "a path of {} bytes, more than {MAX_SHARED_PATH_BYTES}",
                path.len()
            ));
        }
        if path.starts_with('/') {
            return Err(format!("{path:?} is absolute"));
        }
        for component in path.split('/') {
            match component {
                "" => return Err(format!("{path:?} has an empty component")),
                "." | ".." => return Err(format!("{path:?} has a {component:?} component")),
                _ if component.contains('\0') => return Err(format!("{path:?} holds a NUL")),
                _ => {}
            }
        }
        let file = matches!(item.kind, DirectoryItemKind::File { .. });
        if is_file.insert(path, file).is_some() {
            return Err(format!("{path:?} is listed twice"));
        }
        total = total
            .checked_add(item.file_len())
            .filter(|&total| total <= max_bytes)
            .ok_or_else(|| format!("the files hold more than the limit of {max_bytes} bytes"))?;
    }
    for item in items {
        let mut ancestors = item.path.match_indices('/').map(|(at, _)| &item.path[..at]);
        if let Some(file) = ancestors.find(|ancestor| is_file.get(ancestor) == Some(&true)) {
            return Err(format!("{:?} is below the file {file:?}", item.path));
        }
    }
    Ok(())
}

/// Creates (0700) every directory of `path` below `top` that is missing, and opens the last.
fn create_below(top: &Dir, path: &str) -> Result<Dir> {
    let mut components = path.split('/');
    let first = components.next().unwrap_or(path);
    let mut dir = top.dir_or_create(first)?;
    for component in components {
        dir = dir.dir_or_create(component)?;
    }
    Ok(dir)
}

/// Writes a list [`validate_listing`] accepted into the empty directory `top`: each file's
/// `len` bytes from `contents`, in list order; then checks that `contents` has nothing more.
pub(crate) fn write_listing(
    top: &Dir,
    items: &[DirectoryItem],
    contents: &mut dyn Read,
) -> Result<()> {
    let broken = |path: &str, message: String| {
        CacheError::io(
            "writing a fetched directory's file",
            top.join(path),
            io::Error::new(io::ErrorKind::InvalidData, message),
        )
    };
    for item in items {
        match item.kind {
            DirectoryItemKind::Dir => {
                create_below(top, &item.path)?;
            }
            DirectoryItemKind::File { len } => {
                let (parent, name) = match item.path.rsplit_once('/') {
                    Some((parent, name)) => (Some(create_below(top, parent)?), name),
                    None => (None, item.path.as_str()),
                };
                let mut file = parent.as_ref().unwrap_or(top).create_new_file(name)?;
                let copied = io::copy(&mut contents.take(len), &mut file)
                    .map_err(|err| broken(&item.path, format!("reading its contents: {err}")))?;
                if copied != len {
                    return Err(broken(
                        &item.path,
                        format!("the contents ended after {copied} of its {len} bytes"),
                    ));
                }
                file.set_permissions(Permissions::from_mode(item.mode & 0o777))
                    .map_err(|err| {
                        CacheError::io("setting the mode of", top.join(&item.path), err)
                    })?;
                // Durable before the entry that owns it commits, as a backfilled blob is.
                file.sync_data()
                    .map_err(|err| CacheError::io("syncing", top.join(&item.path), err))?;
            }
        }
    }
    let mut extra = [0u8; 1];
    match contents.read(&mut extra) {
        Ok(0) => {}
        Ok(_) => {
            return Err(broken(
                "",
                "the contents are longer than the files listed".to_owned(),
            ));
        }
        Err(err) => return Err(broken("", format!("reading the contents: {err}"))),
    }
    for item in items.iter().rev() {
        if item.kind == DirectoryItemKind::Dir {
            let dir = open_below(top, &item.path)?
                .ok_or_else(|| broken(&item.path, "removed while it was written".to_owned()))?;
            dir.set_mode(item.mode)?;
        }
    }
    Ok(())
}

impl RedbCache {
    /// Offers a directory a commit has landed (`name` under `dirs/`), with the entry's value.
    pub(super) fn publish_directory(
        &self,
        key: &[u8],
        header: &EntryHeader,
        name: &str,
        value: &[u8],
    ) {
        self.publish(key, header, || {
            let listed = self.dir_files.open(name).and_then(|top| {
                let Some(top) = top else {
                    return Ok(None);
                };
                Ok(Some((list_for_publishing(&top)?, top)))
            });
            match listed {
                Ok(Some((Listing::Items(items), top))) => {
                    let top = Arc::new(top);
                    let listed_items = items.clone();
                    let contents = Box::new(move || Ok(contents_reader(Arc::clone(&top), &listed_items)));
                    Some(PublishedValue::Directory(PublishedDirectory::new(
                        value.to_vec(),
                        items,
                        contents,
                    )))
                }
                Ok(Some((Listing::Unpublishable(reason), _))) => {
                    tracing::info!(tag = %self.tag, key = %KeyDisplay::new(key), reason, "directory not published to the remote tier");
                    None
                }
                Ok(None) => None,
                Err(err) => {
                    tracing::warn!(tag = %self.tag, key = %KeyDisplay::new(key), error = %crate::error::ErrorChain(&err), "could not list a directory to publish it");
                    None
                }
            }
        });
    }

    /// Stores a directory fetched from the remote tier after a local miss: checked whole,
    /// written into a staged directory, stored with the time it has left, not published back.
    /// On any error nothing is stored (the staged directory is removed).
    pub(crate) fn backfill_directory(
        &self,
        key: &[u8],
        value: &[u8],
        items: &[DirectoryItem],
        contents: &mut dyn Read,
        ttl: Option<Duration>,
    ) -> Result<Option<CachedDirectory>> {
        let refused = |path: PathBuf, reason: String| CacheError::UnsafePath {
            path,
            reason: format!(
                "the directory of key {} in tag '{}' fetched from the remote tier: {reason}",
                KeyDisplay::new(key),
                self.tag
            ),
        };
        // Checked whole before anything is created.
        validate_listing(
            items,
            MAX_SHARED_DIRECTORY_ITEMS,
            self.options.max_size_bytes,
        )
        .map_err(|reason| refused(self.tag_dir().join("dirs"), reason))?;
        let staged = self.dir_files.stage()?;
        {
            let gone = || {
                refused(
                    staged.path().to_owned(),
                    "its staging directory has gone".to_owned(),
                )
            };
            let (staging, name) = staged.staging().ok_or_else(gone)?;
            let top = staging.dir(name)?.ok_or_else(gone)?;
            write_listing(&top, items, contents)?;
        }
        self.set_directory_from(key, staged, value, ttl, Origin::Remote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, len: u64) -> DirectoryItem {
        DirectoryItem {
            path: path.to_owned(),
            mode: 0o644,
            kind: DirectoryItemKind::File { len },
        }
    }

    fn dir(path: &str) -> DirectoryItem {
        DirectoryItem {
            path: path.to_owned(),
            mode: 0o755,
            kind: DirectoryItemKind::Dir,
        }
    }

    fn listed(top: &Dir) -> Vec<DirectoryItem> {
        match list_for_publishing(top).unwrap() {
            Listing::Items(items) => items,
            Listing::Unpublishable(reason) => panic!("unpublishable: {reason}"),
        }
    }

    #[test]
    fn a_listing_is_sorted_with_modes_and_its_contents_read_in_order() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("b/c")).unwrap();
        std::fs::write(root.path().join("b/c/d"), b"DDD").unwrap();
        std::fs::write(root.path().join("a"), b"A").unwrap();
        std::fs::write(root.path().join("b.txt"), b"").unwrap();
        std::fs::set_permissions(root.path().join("a"), Permissions::from_mode(0o751)).unwrap();
        let top = Dir::open_root(root.path()).unwrap();
        let items = listed(&top);
        let paths: Vec<&str> = items.iter().map(|item| item.path.as_str()).collect();
        assert_eq!(paths, ["a", "b", "b.txt", "b/c", "b/c/d"]);
        assert_eq!(items[0].mode, 0o751);
        assert_eq!(items[4].kind, DirectoryItemKind::File { len: 3 });
        let mut contents = Vec::new();
        contents_reader(Arc::new(top), &items)
            .read_to_end(&mut contents)
            .unwrap();
        assert_eq!(contents, b"ADDD");
    }

    #[test]
    fn a_file_changed_or_removed_after_the_listing_fails_the_read() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("a"), b"AAAA").unwrap();
        std::fs::write(root.path().join("b"), b"BB").unwrap();
        let top = Arc::new(Dir::open_root(root.path()).unwrap());
        let items = listed(&top);
        std::fs::write(root.path().join("b"), b"BBB").unwrap();
        let mut sink = Vec::new();
        let err = contents_reader(Arc::clone(&top), &items)
            .read_to_end(&mut sink)
            .unwrap_err();
        assert!(err.to_string().contains("changed"), "{err}");
        std::fs::remove_file(root.path().join("a")).unwrap();
        let err = contents_reader(top, &items)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }

    #[test]
    fn a_symlink_makes_a_directory_unpublishable() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("d")).unwrap();
        std::os::unix::fs::symlink("/etc", root.path().join("d/link")).unwrap();
        let top = Dir::open_root(root.path()).unwrap();
        assert!(matches!(
            list_for_publishing(&top).unwrap(),
            Listing::Unpublishable(reason) if reason.contains("d/link is a symlink")
        ));
    }

    #[test]
    fn a_sound_listing_is_accepted() {
        let items = [
            dir("a"),
            file("a/b", 3),
            dir("a/c"),
            file("a/c/d", 0),
            file("e", 1),
        ];
        assert_eq!(validate_listing(&items, 10, 4), Ok(()));
    }

    #[test]
    fn listings_that_escape_repeat_or_overflow_are_refused() {
        for (items, why) in [
            (vec![file("../x", 1)], "\"..\" component"),
            (vec![file("a/../../x", 1)], "\"..\" component"),
            (vec![file("/abs", 1)], "absolute"),
            (vec![file("a//b", 1)], "empty component"),
            (vec![file("a/", 1)], "empty component"),
            (vec![file("", 1)], "empty component"),
            (vec![file("./a", 1)], "\".\" component"),
            (vec![file("a\0b", 1)], "NUL"),
            (vec![file("a", 1), file("a", 1)], "listed twice"),
            (vec![file("a", 1), dir("a")], "listed twice"),
            (vec![file("a/b", 1), file("a", 1)], "below the file"),
            (vec![file("a", 3), file("b", 3)], "limit of 4 bytes"),
            (vec![file("a", u64::MAX), file("b", 3)], "limit of 4 bytes"),
            (vec![dir("a"), dir("b"), dir("c")], "limit of 2"),
            (
                vec![file(&"x".repeat(MAX_SHARED_PATH_BYTES + 1), 1)],
                "more than 4096",
            ),
        ] {
            let err = validate_listing(&items, 2, 4).expect_err(why);
            assert!(err.contains(why), "{err} (wanted {why})");
        }
    }
}
