//! Directory trees outside the cache's own code: listing a tree without following symlinks
//! (modes, modification times, hard links), choosing what of it a workspace keeps (one filter
//! for every path in and out of the cache), judging symlinks that leave it, and copying,
//! cloning or hard-linking it faithfully, with symlinks copied as symlinks.
//!
//! Over 600 lines (with its tests): listing, filtering and copying share one `Tree` model and
//! its rules for modes, times, hard links and escaping symlinks; split apart, a rule would be
//! read in two files.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read as _};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{CompilationError, Result};
use crate::progress::{PROGRESS_CHUNK_BYTES, Tracker};

/// Symlinks followed while resolving one target before giving up (as the kernel's ELOOP).
const MAX_LINK_HOPS: usize = 40;

/// The top-level directories of a ZMK west workspace that the cache keeps. Anything else at the
/// top of a workspace (the user's `config/`, a `build/` directory) is not part of it.
pub const WORKSPACE_COMPONENTS: [&str; 4] = ["zmk", "zephyr", "modules", ".west"];

/// What happens to `.git` directories (at any depth: `zmk/.git`, `modules/hal/nordic/.git`) when
/// a workspace goes into the cache.
///
/// One setting for the whole service (`CompilationOptions::git`), applied by one filter on every
/// path into the cache: caching after a build, injecting an existing workspace, importing a
/// directory, importing an archive. The original kept them on some paths and dropped them on
/// others (its defect 4). Export has its own choice ([`crate::ExportOptions::include_git`]),
/// since an archive for another machine is a different trade-off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum GitHandling {
    /// Keep `.git` directories: a restored workspace can still `west update` and switch
    /// branches. Larger. The default.
    #[default]
    Keep,
    /// Leave `.git` directories out: enough to build the cached revision, much smaller.
    Exclude,
}

impl GitHandling {
    /// Whether a path (relative to the workspace root) is kept: always under `Keep`; under
    /// `Exclude`, only if no component of it is `.git`.
    pub fn keeps(self, relative: &Path) -> bool {
        match self {
            GitHandling::Keep => true,
            GitHandling::Exclude => !relative
                .components()
                .any(|component| component.as_os_str() == ".git"),
        }
    }
}

/// Whether `relative` (a path inside a workspace) belongs in a cached workspace: under one of
/// [`WORKSPACE_COMPONENTS`], and kept by `git`. The one filter for every way into the cache.
pub(crate) fn workspace_keeps(git: GitHandling, relative: &Path) -> bool {
    let in_component = match relative.components().next() {
        Some(Component::Normal(first)) => WORKSPACE_COMPONENTS.iter().any(|c| first == *c),
        _ => false,
    };
    in_component && git.keeps(relative)
}

/// What a node of a listed tree is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Dir,
    File {
        len: u64,
        /// Names the file has on its filesystem (`st_nlink`), 1 where unknown.
        links: u64,
    },
    /// Another name of a file listed earlier in the same tree (a hard link), by that file's
    /// relative path. Only [`Tree::group_hard_links`] makes these.
    HardLink {
        to: PathBuf,
    },
    Symlink {
        target: PathBuf,
    },
}

/// One node of a listed tree, by its path relative to the tree's root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) relative: PathBuf,
    pub(crate) kind: NodeKind,
    /// Permission bits (`0o777`; setuid, setgid and sticky are not kept). `None`: leave what
    /// the copy gives.
    pub(crate) mode: Option<u32>,
    /// Modification time. `None`: leave what the copy gives.
    pub(crate) mtime: Option<SystemTime>,
    /// Device and inode, for files with more than one name (hard links).
    pub(crate) identity: Option<(u64, u64)>,
}

impl Node {
    /// A node with no mode, time or identity (a path a caller names, not one listed).
    pub(crate) fn bare(relative: PathBuf, kind: NodeKind) -> Self {
        Node {
            relative,
            kind,
            mode: None,
            mtime: None,
            identity: None,
        }
    }
}

/// A listed tree: parents before their children, siblings in name order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tree {
    pub(crate) nodes: Vec<Node>,
}

impl Tree {
    /// Files, hard links and symlinks (what progress counts as files).
    pub(crate) fn file_count(&self) -> u64 {
        self.nodes
            .iter()
            .filter(|node| !matches!(node.kind, NodeKind::Dir))
            .count() as u64
    }

    /// Bytes of file content (each file once, however many names it has).
    pub(crate) fn byte_count(&self) -> u64 {
        self.nodes
            .iter()
            .map(|node| match node.kind {
                NodeKind::File { len, .. } => len,
                _ => 0,
            })
            .fold(0u64, u64::saturating_add)
    }

    /// Turns every later name of a file that has several names in the tree into a
    /// [`NodeKind::HardLink`] to its first, so that copies and archives keep them linked
    /// instead of storing the content twice.
    pub(crate) fn group_hard_links(&mut self) {
        let mut first: HashMap<(u64, u64), PathBuf> = HashMap::new();
        for node in &mut self.nodes {
            let (NodeKind::File { .. }, Some(identity)) = (&node.kind, node.identity) else {
                continue;
            };
            match first.get(&identity) {
                Some(to) => node.kind = NodeKind::HardLink { to: to.clone() },
                None => {
                    first.insert(identity, node.relative.clone());
                }
            }
        }
    }

    /// Refuses the tree if a symlink in it points outside it (an absolute target, or `..`
    /// beyond the top, resolved through the tree's own symlinks), naming the link under
    /// `root`. How every way into the cache treats such links, unless the caller allows them.
    pub(crate) fn check_symlinks_stay_inside(&self, root: &Path) -> Result<()> {
        let links: HashMap<PathBuf, PathBuf> = self
            .nodes
            .iter()
            .filter_map(|node| match &node.kind {
                NodeKind::Symlink { target } => Some((node.relative.clone(), target.clone())),
                _ => None,
            })
            .collect();
        for node in &self.nodes {
            if let NodeKind::Symlink { target } = &node.kind
                && let Err(reason) = link_stays_inside(&links, &node.relative, target)
            {
                return Err(CompilationError::EscapingSymlink {
                    link: root.join(&node.relative),
                    target: target.clone(),
                    reason,
                });
            }
        }
        Ok(())
    }
}

/// Lists the tree under `root` without following any symlink. `keep(relative, is_dir)` says
/// whether a node is kept; a directory that is not kept is not entered. Sockets, fifos and
/// devices are left out.
pub(crate) fn list(root: &Path, keep: &dyn Fn(&Path, bool) -> bool) -> Result<Tree> {
    let mut nodes = Vec::new();
    // Directories still to read, by relative path. The order they are read in does not matter:
    // the nodes are sorted at the end.
    let mut pending: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(relative_dir) = pending.pop() {
        let dir = root.join(&relative_dir);
        let entries =
            fs::read_dir(&dir).map_err(|source| CompilationError::io("listing", &dir, source))?;
        for entry in entries {
            let entry = entry.map_err(|source| CompilationError::io("listing", &dir, source))?;
            let meta = fs::symlink_metadata(entry.path()).map_err(|source| {
                CompilationError::io("reading metadata of", entry.path(), source)
            })?;
            let relative = relative_dir.join(entry.file_name());
            let file_type = meta.file_type();
            let kind = if file_type.is_dir() {
                if keep(&relative, true) {
                    pending.push(relative.clone());
                    NodeKind::Dir
                } else {
                    continue;
                }
            } else if file_type.is_symlink() {
                if !keep(&relative, false) {
                    continue;
                }
                let path = root.join(&relative);
                let target = fs::read_link(&path)
                    .map_err(|source| CompilationError::io("reading symlink", &path, source))?;
                NodeKind::Symlink { target }
            } else if file_type.is_file() {
                if !keep(&relative, false) {
                    continue;
                }
                NodeKind::File {
                    len: meta.len(),
                    links: link_count(&meta),
                }
            } else {
                tracing::debug!(path = %root.join(&relative).display(), "neither file, directory nor symlink: left out");
                continue;
            };
            let identity = match kind {
                NodeKind::File { links, .. } if links > 1 => identity_of(&meta),
                _ => None,
            };
            nodes.push(Node {
                relative,
                kind,
                mode: permission_bits(&meta),
                mtime: meta.modified().ok(),
                identity,
            });
        }
    }
    // `Path` orders component by component: parents before their children, siblings by name.
    nodes.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(Tree { nodes })
}

/// The permission bits kept (`0o777`); `None` where modes do not exist.
fn permission_bits(meta: &fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Some(meta.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

fn link_count(meta: &fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        meta.nlink()
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        1
    }
}

fn identity_of(meta: &fs::Metadata) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// How a file is put in place by [`copy_tree`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transfer {
    /// A full copy.
    Copy,
    /// A hard link when the filesystem allows it, else a copy. Only within the cache, where
    /// files are never modified in place.
    LinkOrCopy,
    /// A hard link, or an error naming the file (for a restore that asked for hard links).
    Link,
    /// A copy-on-write clone (`FICLONE`), or an error saying the filesystem has none.
    Reflink,
    /// A copy-on-write clone where the filesystem supports it, else a full copy.
    ReflinkOrCopy,
}

/// Recreates the listed `tree` of `source` under `target` (which exists): directories created,
/// files copied, cloned or linked as `transfer` says, hard links of the tree kept as hard
/// links, symlinks recreated as symlinks with the same target (never followed). Modes and
/// modification times are set as listed, directories' last (after their content, so a
/// read-only directory is filled first); a file linked to its source shares its source's and
/// is never touched. Reports each file and symlink to `tracker`.
pub(crate) fn copy_tree(
    source: &Path,
    tree: &Tree,
    target: &Path,
    transfer: Transfer,
    tracker: &mut Tracker<'_>,
) -> Result<()> {
    // Whether clones still look possible here (`ReflinkOrCopy` stops trying at the first no).
    let mut clones_work = true;
    for node in &tree.nodes {
        let from = source.join(&node.relative);
        let to = target.join(&node.relative);
        match &node.kind {
            NodeKind::Dir => create_dir_all(&to)?,
            NodeKind::File { .. } => {
                create_parent(&to)?;
                let (copied, linked) = match transfer {
                    Transfer::Copy => (copy_file_reporting(&from, &to, tracker)?, false),
                    Transfer::LinkOrCopy => match fs::hard_link(&from, &to) {
                        Ok(()) => (len_of(&to)?, true),
                        Err(_) => (copy_file(&from, &to)?, false),
                    },
                    Transfer::Link => {
                        fs::hard_link(&from, &to).map_err(|source| {
                            CompilationError::io("hard-linking (restore with --link hardlink needs the target on the cache's filesystem) to", &to, source)
                        })?;
                        (len_of(&to)?, true)
                    }
                    Transfer::Reflink => (clone_file(&from, &to)?, false),
                    Transfer::ReflinkOrCopy => {
                        let cloned = if clones_work {
                            match clone_file(&from, &to) {
                                Ok(len) => Some(len),
                                Err(CompilationError::ReflinkUnsupported { .. }) => {
                                    clones_work = false;
                                    None
                                }
                                Err(err) => return Err(err),
                            }
                        } else {
                            None
                        };
                        match cloned {
                            Some(len) => (len, false),
                            None => (copy_file_reporting(&from, &to, tracker)?, false),
                        }
                    }
                };
                if !linked {
                    set_mode_and_time(&to, node, false)?;
                }
                tracker.file_done(copied);
            }
            NodeKind::HardLink { to: first } => {
                create_parent(&to)?;
                let first = target.join(first);
                if fs::hard_link(&first, &to).is_err() {
                    // Too many links, or a filesystem without them: a separate copy.
                    copy_file(&first, &to)?;
                }
                tracker.file_done(0);
            }
            NodeKind::Symlink { target: link } => {
                create_parent(&to)?;
                make_symlink(link, &to)?;
                set_mode_and_time(&to, node, true)?;
                tracker.file_done(0);
            }
        }
    }
    for node in tree.nodes.iter().rev() {
        if matches!(node.kind, NodeKind::Dir) {
            set_mode_and_time(&target.join(&node.relative), node, false)?;
        }
    }
    Ok(())
}

fn len_of(path: &Path) -> Result<u64> {
    Ok(fs::symlink_metadata(path)
        .map_err(|source| CompilationError::io("reading metadata of", path, source))?
        .len())
}

/// Sets `node`'s mode (not on a symlink, which has none that matters) and modification time
/// on `path`, never following a symlink at `path`.
pub(crate) fn set_mode_and_time(path: &Path, node: &Node, is_symlink: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(mode) = node.mode
        && !is_symlink
    {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|source| CompilationError::io("setting permissions of", path, source))?;
    }
    if let Some(mtime) = node.mtime {
        set_mtime(path, mtime)?;
    }
    Ok(())
}

/// Sets the modification time of `path` (the access time too, to the same), not following a
/// symlink at `path`.
fn set_mtime(path: &Path, mtime: SystemTime) -> Result<()> {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, utimensat};
    let (secs, nanos) = match mtime.duration_since(UNIX_EPOCH) {
        Ok(after) => (
            i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            after.subsec_nanos(),
        ),
        Err(before) => {
            let before = before.duration();
            // Before 1970: whole seconds below, nanoseconds above.
            let secs = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            match before.subsec_nanos() {
                0 => (-secs, 0),
                n => (-secs - 1, 1_000_000_000 - n),
            }
        }
    };
    let time = Timespec {
        tv_sec: secs,
        tv_nsec: nanos.into(),
    };
    let times = Timestamps {
        last_access: time,
        last_modification: time,
    };
    utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(|errno| {
        CompilationError::io("setting the modification time of", path, errno.into())
    })
}

/// Clones `from` to the new file `to` with `FICLONE` (copy-on-write: the two share blocks until
/// one is written); the bytes cloned. [`CompilationError::ReflinkUnsupported`] when the
/// filesystem (or the pair of filesystems) cannot clone, with nothing left at `to`.
pub(crate) fn clone_file(from: &Path, to: &Path) -> Result<u64> {
    let source =
        fs::File::open(from).map_err(|source| CompilationError::io("opening", from, source))?;
    let meta = source
        .metadata()
        .map_err(|source| CompilationError::io("reading metadata of", from, source))?;
    if !meta.file_type().is_file() {
        return Err(CompilationError::io(
            "cloning",
            from,
            io::Error::other("not a regular file"),
        ));
    }
    let dest = fs::File::options()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(|source| CompilationError::io("creating", to, source))?;
    #[cfg(target_os = "linux")]
    let cloned = rustix::fs::ioctl_ficlone(&dest, &source);
    #[cfg(not(target_os = "linux"))]
    let cloned: std::result::Result<(), rustix::io::Errno> = Err(rustix::io::Errno::OPNOTSUPP);
    drop(dest);
    match cloned {
        Ok(()) => Ok(meta.len()),
        Err(errno) => {
            let _ = fs::remove_file(to);
            let unsupported = [
                rustix::io::Errno::OPNOTSUPP,
                rustix::io::Errno::XDEV,
                rustix::io::Errno::INVAL,
                rustix::io::Errno::NOTTY,
                rustix::io::Errno::NOSYS,
                rustix::io::Errno::PERM,
            ];
            if unsupported.contains(&errno) {
                Err(CompilationError::ReflinkUnsupported {
                    path: to.to_owned(),
                    reason: io::Error::from(errno).to_string(),
                })
            } else {
                Err(CompilationError::io("cloning to", to, errno.into()))
            }
        }
    }
}

/// Whether the symlink at `link` (relative to a tree's root) with `target` resolves inside the
/// tree, following the tree's own `links` as the filesystem would.
pub(crate) fn link_stays_inside(
    links: &HashMap<PathBuf, PathBuf>,
    link: &Path,
    target: &Path,
) -> std::result::Result<(), String> {
    enum Step {
        Up,
        Down(OsString),
    }
    fn steps(path: &Path) -> std::result::Result<Vec<Step>, String> {
        let mut steps = Vec::new();
        for component in path.components() {
            match component {
                Component::CurDir => {}
                Component::ParentDir => steps.push(Step::Up),
                Component::Normal(name) => steps.push(Step::Down(name.to_owned())),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(format!(
                        "its target {} is absolute: it would point outside the workspace",
                        path.display()
                    ));
                }
            }
        }
        Ok(steps)
    }

    if target.as_os_str().is_empty() {
        return Err("its target is empty".to_owned());
    }
    let mut at: Vec<OsString> = link
        .parent()
        .map(|parent| parent.iter().map(OsString::from).collect())
        .unwrap_or_default();
    let mut pending: VecDeque<Step> = steps(target)?.into();
    let mut hops = 0;
    while let Some(step) = pending.pop_front() {
        match step {
            Step::Up => {
                if at.pop().is_none() {
                    return Err(format!(
                        "its target {} leads outside the workspace",
                        target.display()
                    ));
                }
            }
            Step::Down(name) => {
                at.push(name);
                let here: PathBuf = at.iter().collect();
                if let Some(next) = links.get(&here) {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Err("its target goes through too many symlinks".to_owned());
                    }
                    at.pop();
                    for step in steps(next)?.into_iter().rev() {
                        pending.push_front(step);
                    }
                }
            }
        }
    }
    Ok(())
}

/// [`copy_file`], reporting a file larger than [`PROGRESS_CHUNK_BYTES`] to `tracker` as it
/// goes (in chunks, each still copied in the kernel where it can be), so that progress moves
/// through a large file.
fn copy_file_reporting(from: &Path, to: &Path, tracker: &mut Tracker<'_>) -> Result<u64> {
    let meta = fs::symlink_metadata(from)
        .map_err(|source| CompilationError::io("copying", from, source))?;
    if !meta.file_type().is_file() || meta.len() <= PROGRESS_CHUNK_BYTES {
        return copy_file(from, to);
    }
    let source =
        fs::File::open(from).map_err(|source| CompilationError::io("opening", from, source))?;
    if fs::symlink_metadata(to).is_ok_and(|meta| meta.file_type().is_symlink()) {
        fs::remove_file(to)
            .map_err(|source| CompilationError::io("replacing symlink", to, source))?;
    }
    let mut dest =
        fs::File::create(to).map_err(|source| CompilationError::io("creating", to, source))?;
    let mut copied = 0u64;
    loop {
        let chunk = io::copy(&mut (&source).take(PROGRESS_CHUNK_BYTES), &mut dest)
            .map_err(|source| CompilationError::io("copying to", to, source))?;
        if chunk == 0 {
            break;
        }
        copied += chunk;
        tracker.partial(chunk);
    }
    fs::set_permissions(to, meta.permissions())
        .map_err(|source| CompilationError::io("setting permissions of", to, source))?;
    Ok(copied)
}

/// Copies one regular file; the bytes copied.
pub(crate) fn copy_file(from: &Path, to: &Path) -> Result<u64> {
    // `fs::copy` follows a symlink at `from`; the tree was listed without following links, so a
    // symlink here means the source changed under us: refuse rather than copy what it points at.
    let meta = fs::symlink_metadata(from)
        .map_err(|source| CompilationError::io("copying", from, source))?;
    if !meta.file_type().is_file() {
        return Err(CompilationError::io(
            "copying",
            from,
            io::Error::other("no longer a regular file (changed while being copied)"),
        ));
    }
    // `fs::copy` would also write through a symlink at `to`: replace the link instead.
    if fs::symlink_metadata(to).is_ok_and(|meta| meta.file_type().is_symlink()) {
        fs::remove_file(to)
            .map_err(|source| CompilationError::io("replacing symlink", to, source))?;
    }
    fs::copy(from, to).map_err(|source| CompilationError::io("copying to", to, source))
}

/// Creates `path` and its missing parents.
pub(crate) fn create_dir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path)
        .map_err(|source| CompilationError::io("creating directory", path, source))
}

/// Creates the parent directories of `path`.
pub(crate) fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => create_dir_all(parent),
        _ => Ok(()),
    }
}

/// Creates a symlink at `at` pointing to `target` (as given: never resolved).
pub(crate) fn make_symlink(target: &Path, at: &Path) -> Result<()> {
    #[cfg(unix)]
    let result = std::os::unix::fs::symlink(target, at);
    #[cfg(not(unix))]
    let result: io::Result<()> = {
        let _ = target;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "symlinks in workspaces are supported on unix only",
        ))
    };
    result.map_err(|source| CompilationError::io("creating symlink", at, source))
}

/// Whether `path` is a real directory (not a symlink to one).
pub(crate) fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_dir())
}

/// A path relative to a tree, written with `/` separators (for metadata and archive names);
/// `None` if a component is not valid UTF-8.
pub(crate) fn slash_path(relative: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclude_drops_git_at_any_depth_and_keep_drops_nothing() {
        for path in [
            ".git",
            "zmk/.git",
            "zmk/.git/HEAD",
            "modules/hal/nordic/.git/config",
        ] {
            assert!(!GitHandling::Exclude.keeps(Path::new(path)), "{path}");
            assert!(GitHandling::Keep.keeps(Path::new(path)), "{path}");
        }
        for path in [
            "zmk/app",
            "zmk/.github/workflows",
            "zephyr/.gitignore",
            "x.git",
        ] {
            assert!(GitHandling::Exclude.keeps(Path::new(path)), "{path}");
        }
    }

    #[test]
    fn workspace_keeps_only_the_four_components() {
        for path in ["zmk", "zmk/app/x", "zephyr", "modules/hal", ".west/config"] {
            assert!(
                workspace_keeps(GitHandling::Keep, Path::new(path)),
                "{path}"
            );
        }
        for path in ["config", "build/zephyr/zmk.uf2", "zmkx", "README", ""] {
            assert!(
                !workspace_keeps(GitHandling::Keep, Path::new(path)),
                "{path}"
            );
        }
    }

    #[test]
    fn slash_path_joins_normal_components() {
        assert_eq!(slash_path(Path::new("a/./b/c")).as_deref(), Some("a/b/c"));
        assert_eq!(slash_path(Path::new("../a")), None);
    }
}
