//! Directory trees outside the cache's own code: listing a tree without following symlinks,
//! choosing what of it a workspace keeps (one filter for every path in and out of the cache),
//! and copying or hard-linking it with symlinks copied as symlinks.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CompilationError, Result};
use crate::progress::Tracker;

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
    File { len: u64, executable: bool },
    Symlink { target: PathBuf },
}

/// One node of a listed tree, by its path relative to the tree's root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) relative: PathBuf,
    pub(crate) kind: NodeKind,
}

/// A listed tree: parents before their children, siblings in name order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tree {
    pub(crate) nodes: Vec<Node>,
}

impl Tree {
    /// Files and symlinks (what progress counts as files).
    pub(crate) fn file_count(&self) -> u64 {
        self.nodes
            .iter()
            .filter(|node| !matches!(node.kind, NodeKind::Dir))
            .count() as u64
    }

    /// Bytes of file content.
    pub(crate) fn byte_count(&self) -> u64 {
        self.nodes
            .iter()
            .map(|node| match node.kind {
                NodeKind::File { len, .. } => len,
                _ => 0,
            })
            .fold(0u64, u64::saturating_add)
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
            if file_type.is_dir() {
                if keep(&relative, true) {
                    nodes.push(Node {
                        relative: relative.clone(),
                        kind: NodeKind::Dir,
                    });
                    pending.push(relative);
                }
            } else if file_type.is_symlink() {
                if keep(&relative, false) {
                    let path = root.join(&relative);
                    let target = fs::read_link(&path)
                        .map_err(|source| CompilationError::io("reading symlink", &path, source))?;
                    nodes.push(Node {
                        relative,
                        kind: NodeKind::Symlink { target },
                    });
                }
            } else if file_type.is_file() {
                if keep(&relative, false) {
                    nodes.push(Node {
                        relative,
                        kind: NodeKind::File {
                            len: meta.len(),
                            executable: is_executable(&meta),
                        },
                    });
                }
            } else {
                tracing::debug!(path = %root.join(&relative).display(), "neither file, directory nor symlink: left out");
            }
        }
    }
    // `Path` orders component by component: parents before their children, siblings by name.
    nodes.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(Tree { nodes })
}

/// Whether the file's mode has any execute bit (always false where modes do not exist).
fn is_executable(meta: &fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        false
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
}

/// Recreates the listed `tree` of `source` under `target` (which exists): directories created,
/// files copied (with their permissions), symlinks recreated as symlinks with the same target,
/// never followed. Reports each file and symlink to `tracker`.
pub(crate) fn copy_tree(
    source: &Path,
    tree: &Tree,
    target: &Path,
    transfer: Transfer,
    tracker: &mut Tracker<'_>,
) -> Result<()> {
    for node in &tree.nodes {
        let from = source.join(&node.relative);
        let to = target.join(&node.relative);
        match &node.kind {
            NodeKind::Dir => create_dir_all(&to)?,
            NodeKind::File { .. } => {
                create_parent(&to)?;
                let copied = match transfer {
                    Transfer::Copy => copy_file(&from, &to)?,
                    Transfer::LinkOrCopy => match fs::hard_link(&from, &to) {
                        Ok(()) => fs::symlink_metadata(&to)
                            .map_err(|source| {
                                CompilationError::io("reading metadata of", &to, source)
                            })?
                            .len(),
                        Err(_) => copy_file(&from, &to)?,
                    },
                };
                tracker.file_done(copied);
            }
            NodeKind::Symlink { target: link } => {
                create_parent(&to)?;
                make_symlink(link, &to)?;
                tracker.file_done(0);
            }
        }
    }
    Ok(())
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
