//! The root budget: one size budget shared by every tag of a cache root, enforced fairly.
//!
//! Each tag publishes its usage (bytes and entries, as its limits count them) to
//! `<root>/<tag>/usage` after every commit that changes it, so that any process can see every
//! tag's usage without opening their databases. When the root is over its budget, the fair level
//! is the largest `L` with `sum(min(usage, L)) <= budget` (max-min fairness): a tag at or under
//! `L` keeps everything, and every tag above `L` is cut to it. So the tag furthest over its share
//! is the one that loses entries, and a small domain is never evicted to make room for a large
//! one. Each tag enforces the level on itself, in its own commits (and in `cleanup()`).

use std::io::{Read, Write};
use std::path::Path;

use crate::error::{CacheError, Result};
use crate::files::DATABASE_FILE_NAME;
use crate::fsys::{self, Dir, Kind};
use crate::tag::Tag;

const USAGE_FILE: &str = "usage";

/// A usage above this is implausible whatever the filesystem: 2^53 bytes is 8 PiB (and the
/// largest integer a JSON reader of the file keeps exactly).
const MAX_PLAUSIBLE_BYTES: u64 = 1 << 53;

/// A usage file is one short line; anything longer is not one.
const MAX_USAGE_FILE_BYTES: u64 = 64;

/// Writes the tag's usage file atomically: a temp file `usage.tmp-<pid>` created exclusively
/// (a leftover or a planted symlink under that name is unlinked first, never written through),
/// then renamed over `usage`. On every error the temp file is removed.
pub(crate) fn publish_usage(tag_dir: &Path, bytes: u64, entries: u64) -> Result<()> {
    let tag = Dir::open_tag_path(tag_dir, false)?.ok_or_else(|| {
        CacheError::io(
            "publishing usage in",
            tag_dir,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })?;
    let temp = format!("{USAGE_FILE}.tmp-{}", std::process::id());
    tag.replace_file(USAGE_FILE, temp, |file| {
        file.write_all(format!("{bytes} {entries}\n").as_bytes())
    })
}

/// The bytes every other tag of the root uses, from their usage files. A tag without a usage
/// file (never committed since usage files exist) counts its database file's size, and so does
/// one whose usage file cannot be trusted: unreadable, a symlink, not `<bytes> <entries>`, or
/// implausible (more than 2^53 bytes or than the filesystem holds, or bytes without entries);
/// that is reported once. A tag directory that is a symlink or that another user could change
/// is not counted at all.
pub(crate) fn sibling_usage(tag_dir: &Path, own: &Tag) -> Vec<u64> {
    let Some(root_path) = tag_dir.parent() else {
        return Vec::new();
    };
    let listed = Dir::open_root(root_path).and_then(|root| Ok((root.entries()?, root)));
    let (entries, root) = match listed {
        Ok(listed) => listed,
        Err(err) => {
            fsys::warn_once(
                root_path,
                &format!("cannot read the other tags' usage for the root budget: {err}"),
            );
            return Vec::new();
        }
    };
    let filesystem_bytes = root.filesystem_bytes();
    let mut usage = Vec::new();
    for entry in entries {
        let Some(name) = entry.name.to_str() else {
            continue;
        };
        if name == own.as_str() || Tag::new(name).is_err() {
            continue;
        }
        let dir = match root.dir(name).and_then(|dir| {
            if let Some(dir) = &dir {
                dir.check_private("tag directory")?;
            }
            Ok(dir)
        }) {
            Ok(Some(dir)) => dir,
            Ok(None) => continue,
            Err(err) => {
                fsys::warn_once(
                    &root.join(name),
                    &format!("tag ignored for the root budget: {err}"),
                );
                continue;
            }
        };
        let database = match dir.stat(DATABASE_FILE_NAME) {
            Ok(Some(meta)) if meta.kind == Kind::File => meta,
            _ => continue,
        };
        match read_usage(&dir, filesystem_bytes) {
            Ok(Some(bytes)) => usage.push(bytes),
            Ok(None) => usage.push(database.len),
            Err(reason) => {
                fsys::warn_once(
                    &dir.join(USAGE_FILE),
                    &format!(
                        "usage file of another tag ignored ({reason}); the tag counts as its \
                         database file's size"
                    ),
                );
                usage.push(database.len);
            }
        }
    }
    usage
}

/// The bytes a tag's usage file states; `None` when there is none, and why it cannot be
/// trusted when it cannot.
fn read_usage(
    tag: &Dir,
    filesystem_bytes: Option<u64>,
) -> std::result::Result<Option<u64>, String> {
    match tag.stat(USAGE_FILE) {
        Ok(None) => return Ok(None),
        Ok(Some(meta)) if meta.kind == Kind::Symlink => {
            return Err("it is a symlink, which is never followed".to_owned());
        }
        Ok(Some(meta)) if meta.kind != Kind::File => {
            return Err("it is not a regular file".to_owned());
        }
        Ok(Some(_)) => {}
        Err(err) => return Err(err.to_string()),
    }
    let mut file = match tag.open_file(USAGE_FILE) {
        Ok(Some(file)) => file,
        Ok(None) => return Ok(None),
        Err(err) => return Err(err.to_string()),
    };
    let mut text = String::new();
    Read::by_ref(&mut file)
        .take(MAX_USAGE_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|err| format!("unreadable: {err}"))?;
    if text.len() as u64 > MAX_USAGE_FILE_BYTES {
        return Err(format!("longer than {MAX_USAGE_FILE_BYTES} bytes"));
    }
    let numbers: Vec<Option<u64>> = text
        .split_whitespace()
        .map(|word| word.parse().ok())
        .collect();
    let [Some(bytes), Some(entries)] = numbers[..] else {
        return Err(format!("{:?} is not \"<bytes> <entries>\"", text.trim()));
    };
    if bytes > MAX_PLAUSIBLE_BYTES {
        return Err(format!("implausible: {bytes} bytes"));
    }
    if let Some(filesystem_bytes) = filesystem_bytes
        && bytes > filesystem_bytes
    {
        return Err(format!(
            "implausible: {bytes} bytes on a filesystem of {filesystem_bytes}"
        ));
    }
    if entries == 0 && bytes > 0 {
        return Err(format!("implausible: {bytes} bytes in no entries"));
    }
    Ok(Some(bytes))
}

/// The fair level for a tag using `own` bytes beside tags using `others`, when together they
/// pass `budget`; `None` when they fit.
pub(crate) fn fair_level(budget: u64, own: u64, others: &[u64]) -> Option<u64> {
    let mut usage: Vec<u64> = others.to_vec();
    usage.push(own);
    let total: u128 = usage.iter().map(|&bytes| u128::from(bytes)).sum();
    if total <= u128::from(budget) {
        return None;
    }
    usage.sort_unstable();
    let mut remaining = budget;
    let count = usage.len() as u64;
    for (index, bytes) in usage.into_iter().enumerate() {
        let share = remaining / (count - index as u64);
        if bytes > share {
            return Some(share);
        }
        remaining -= bytes;
    }
    // Unreachable in arithmetic (the total passes the budget, so some tag is over its share);
    // no level is the safe answer.
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn under_the_budget_there_is_no_level() {
        assert_eq!(fair_level(100, 40, &[30, 30]), None);
    }

    #[test]
    fn small_tags_keep_everything_and_the_largest_is_cut() {
        // 10 + 20 fit in their shares; the rest of the budget (70) is the big tag's.
        assert_eq!(fair_level(100, 500, &[10, 20]), Some(70));
        // Seen from a small tag, the level is the same: it is under it, so it keeps all.
        assert_eq!(fair_level(100, 10, &[500, 20]), Some(70));
    }

    #[test]
    fn two_large_tags_share_equally() {
        assert_eq!(fair_level(100, 300, &[200, 10]), Some(45));
    }

    /// Issue 13, item 15: another tag's usage file that cannot be trusted (garbage, implausible,
    /// a symlink) is ignored: the tag counts as its database file's size.
    #[test]
    fn trust_15_an_implausible_or_unreadable_sibling_usage_is_ignored() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let claims: [&[u8]; 7] = [
            b"18446744073709551615 1\n",
            b"9007199254740993 5\n",
            b"100 0\n",
            b"garbage\n",
            b"12 3 4\n",
            b"",
            &[b'1'; 200],
        ];
        for (index, claim) in claims.iter().enumerate() {
            let dir = root.path().join(format!("t{index}"));
            fs::create_dir(&dir).unwrap();
            fs::write(dir.join(DATABASE_FILE_NAME), [0u8; 9]).unwrap();
            fs::write(dir.join(USAGE_FILE), claim).unwrap();
        }
        let linked = root.path().join("linked");
        fs::create_dir(&linked).unwrap();
        fs::write(linked.join(DATABASE_FILE_NAME), [0u8; 9]).unwrap();
        fs::write(outside.path().join("usage"), b"5000000 1\n").unwrap();
        std::os::unix::fs::symlink(outside.path().join("usage"), linked.join(USAGE_FILE)).unwrap();
        fs::create_dir(root.path().join("a")).unwrap();
        let usage = sibling_usage(&root.path().join("a"), &Tag::new("a").unwrap());
        assert_eq!(
            usage,
            vec![9; claims.len() + 1],
            "each counts as its file's size"
        );
    }

    #[test]
    fn usage_files_round_trip_and_missing_ones_fall_back_to_the_file_size() {
        let root = tempfile::tempdir().unwrap();
        for tag in ["a", "b", "c"] {
            fs::create_dir(root.path().join(tag)).unwrap();
        }
        fs::write(root.path().join("b").join(DATABASE_FILE_NAME), [0u8; 7]).unwrap();
        fs::write(root.path().join("c").join(DATABASE_FILE_NAME), [0u8; 3]).unwrap();
        publish_usage(&root.path().join("c"), 1234, 5).unwrap();
        fs::create_dir(root.path().join("Not-A-Tag")).unwrap();
        let mut usage = sibling_usage(&root.path().join("a"), &Tag::new("a").unwrap());
        usage.sort_unstable();
        assert_eq!(usage, vec![7, 1234]);
    }
}
