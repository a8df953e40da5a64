//! The checks of the tag's files as files: their types (no symlinks) and their modes.

use std::fs;

use super::{CheckStatus, CheckTarget, TagCheck};
use crate::error::{CacheError, Result};

/// The tag directory is a directory and the database a regular file, neither a symlink (the cache
/// refuses to follow symlinks out of the root, so a tag with one cannot be opened).
pub(super) struct FileTypes;

impl TagCheck for FileTypes {
    fn name(&self) -> &'static str {
        "files"
    }

    fn run(&self, target: &CheckTarget<'_>) -> Result<(CheckStatus, String)> {
        for (path, what, is_right_type) in [
            (
                &target.directory,
                "tag directory",
                (|meta: &fs::Metadata| meta.is_dir()) as fn(&fs::Metadata) -> bool,
            ),
            (&target.database, "database file", |meta| meta.is_file()),
        ] {
            let meta = match fs::symlink_metadata(path) {
                Ok(meta) => meta,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    return Ok((
                        CheckStatus::Damaged,
                        format!("{what} {} does not exist", path.display()),
                    ));
                }
                Err(source) => return Err(CacheError::io("reading", path, source)),
            };
            if meta.file_type().is_symlink() {
                return Ok((
                    CheckStatus::Damaged,
                    format!(
                        "{what} {} is a symlink, which the cache refuses to follow; remove it by hand",
                        path.display()
                    ),
                ));
            }
            if !is_right_type(&meta) {
                return Ok((
                    CheckStatus::Damaged,
                    format!(
                        "{what} {} is not a {}; remove it by hand",
                        path.display(),
                        if meta.is_dir() { "file" } else { "directory" }
                    ),
                ));
            }
        }
        Ok((
            CheckStatus::Healthy,
            format!(
                "{} is a directory and {} a regular file",
                target.directory.display(),
                target.database.display()
            ),
        ))
    }
}

/// Tag directories are 0700 and database files 0600, as the cache creates them: a cache may hold
/// data other users of the machine should not read.
pub(super) struct Permissions;

impl TagCheck for Permissions {
    fn name(&self) -> &'static str {
        "permissions"
    }

    #[cfg(unix)]
    fn run(&self, target: &CheckTarget<'_>) -> Result<(CheckStatus, String)> {
        use std::os::unix::fs::PermissionsExt;

        if !target.database_is_regular_file() {
            return Ok((
                CheckStatus::Skipped,
                "not checked: the files check found the tag's files unusable".to_owned(),
            ));
        }
        let mut loose = Vec::new();
        for (path, wanted) in [(&target.directory, 0o700), (&target.database, 0o600)] {
            let meta = fs::symlink_metadata(path)
                .map_err(|source| CacheError::io("reading", path, source))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                loose.push((path, mode, wanted));
            }
        }
        if loose.is_empty() {
            return Ok((
                CheckStatus::Healthy,
                "tag directory and database file are private to their owner".to_owned(),
            ));
        }
        if !target.options.repair {
            let described: Vec<String> = loose
                .iter()
                .map(|(path, mode, wanted)| {
                    format!(
                        "{} is {mode:04o} (repair sets {wanted:04o})",
                        path.display()
                    )
                })
                .collect();
            return Ok((
                CheckStatus::Damaged,
                format!("readable by other users: {}", described.join(", ")),
            ));
        }
        let mut fixed = Vec::new();
        for (path, mode, wanted) in loose {
            if let Err(source) = fs::set_permissions(path, fs::Permissions::from_mode(wanted)) {
                let err = CacheError::io("setting permissions of", path, source);
                return Ok((
                    CheckStatus::Damaged,
                    format!(
                        "{} is {mode:04o}, readable by other users; could not repair: {err}",
                        path.display()
                    ),
                ));
            }
            fixed.push(format!(
                "{} from {mode:04o} to {wanted:04o}",
                path.display()
            ));
        }
        Ok((CheckStatus::Repaired, format!("set {}", fixed.join(", "))))
    }

    #[cfg(not(unix))]
    fn run(&self, _: &CheckTarget<'_>) -> Result<(CheckStatus, String)> {
        Ok((
            CheckStatus::Skipped,
            "file modes are not checked on this platform".to_owned(),
        ))
    }
}
