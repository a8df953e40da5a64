//! The root budget: one size budget shared by every tag of a cache root, enforced fairly.
//!
//! Each tag publishes its usage (bytes and entries, as its limits count them) to
//! `<root>/<tag>/usage` after every commit that changes it, so that any process can see every
//! tag's usage without opening their databases. When the root is over its budget, the fair level
//! is the largest `L` with `sum(min(usage, L)) <= budget` (max-min fairness): a tag at or under
//! `L` keeps everything, and every tag above `L` is cut to it. So the tag furthest over its share
//! is the one that loses entries, and a small domain is never evicted to make room for a large
//! one. Each tag enforces the level on itself, in its own commits (and in `cleanup()`).

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{CacheError, Result};
use crate::files::{DATABASE_FILE_NAME, open_private_file};
use crate::tag::Tag;

const USAGE_FILE: &str = "usage";

/// Writes the tag's usage file atomically (temp file, then rename).
pub(crate) fn publish_usage(tag_dir: &Path, bytes: u64, entries: u64) -> Result<()> {
    let temp = tag_dir.join(format!("{USAGE_FILE}.tmp-{}", std::process::id()));
    let mut file = open_private_file(&temp, false)?;
    file.write_all(format!("{bytes} {entries}\n").as_bytes())
        .map_err(|source| CacheError::io("writing", &temp, source))?;
    drop(file);
    let path = tag_dir.join(USAGE_FILE);
    fs::rename(&temp, &path).map_err(|source| CacheError::io("replacing", path, source))
}

/// The bytes every other tag of the root uses, from their usage files. A tag without a readable
/// usage file (never committed since usage files exist) counts its database file's size.
pub(crate) fn sibling_usage(tag_dir: &Path, own: &Tag) -> Vec<u64> {
    let Some(root) = tag_dir.parent() else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut usage = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == own.as_str() || Tag::new(name).is_err() {
            continue;
        }
        let dir = entry.path();
        let Ok(database) = fs::symlink_metadata(dir.join(DATABASE_FILE_NAME)) else {
            continue;
        };
        let published = fs::read_to_string(dir.join(USAGE_FILE))
            .ok()
            .and_then(|text| text.split_whitespace().next()?.parse::<u64>().ok());
        usage.push(published.unwrap_or(database.len()));
    }
    usage
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
