//! The records of shared content files in the store, beside `store/contents.rs` (the files
//! themselves): the `dir_contents` row codec (`encode_uses`, `decode_uses`), reading a
//! directory's row and the recorded look of its content files (`dir_contents`), verifying a
//! directory on read (`verify_contents`), recording how content files look in a write
//! transaction (`record_content_stats`), and settling content files after a landed commit
//! removed directories (`settle_contents`: released ones removed when unreferenced, touched
//! ones recorded again).

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStringExt;

use super::contents::{ContentUse, StatRecord};
use super::*;

/// What a landed commit leaves to do about content files once its directories are gone.
#[derive(Debug, Default)]
pub(super) struct ContentsToSettle {
    /// Content files whose last directory went: removed if still unreferenced and linked by
    /// nothing else.
    pub(super) released: Vec<String>,
    /// Content files other directories still share, whose names the removals changed: their
    /// look is recorded again.
    pub(super) touched: Vec<String>,
}

/// The `dir_contents` row of an owned directory: its shared files, each as the length of its
/// path (u32), the path, the length of its content name (u16), the name and its allocated bytes
/// (u64), little-endian.
pub(crate) fn encode_uses(uses: &[ContentUse]) -> Vec<u8> {
    let mut out = Vec::new();
    for content in uses {
        out.extend_from_slice(&(content.path.len() as u32).to_le_bytes());
        out.extend_from_slice(&content.path);
        out.extend_from_slice(&(content.name.len() as u16).to_le_bytes());
        out.extend_from_slice(content.name.as_bytes());
        out.extend_from_slice(&content.allocated.to_le_bytes());
    }
    out
}

/// Reads a row [`encode_uses`] wrote; `None` if it is malformed.
pub(crate) fn decode_uses(mut bytes: &[u8]) -> Option<Vec<ContentUse>> {
    fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
        let (head, rest) = bytes.split_at_checked(len)?;
        *bytes = rest;
        Some(head)
    }
    let mut uses = Vec::new();
    while !bytes.is_empty() {
        let path_len = u32::from_le_bytes(take(&mut bytes, 4)?.try_into().ok()?) as usize;
        let path = take(&mut bytes, path_len)?.to_vec();
        let name_len = u16::from_le_bytes(take(&mut bytes, 2)?.try_into().ok()?) as usize;
        let name = std::str::from_utf8(take(&mut bytes, name_len)?)
            .ok()?
            .to_owned();
        let allocated = u64::from_le_bytes(take(&mut bytes, 8)?.try_into().ok()?);
        uses.push(ContentUse {
            path,
            name,
            allocated,
        });
    }
    Some(uses)
}

impl RedbCache {
    /// The shared files of the owned directory `name` as committed, and the recorded look of
    /// their content files (none when the tag has no content tables yet, or the row is
    /// malformed, which verification then cannot use: such a directory is served as its files
    /// are, as before deduplication).
    fn dir_contents(&self, name: &str) -> Result<(Vec<ContentUse>, HashMap<String, StatRecord>)> {
        let txn = self.begin_read_on_current()?;
        let table = match txn.open_table(DIR_CONTENTS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Default::default()),
            Err(err) => return Err(err).or_db(self),
        };
        let row = table.get(name).or_db(self)?;
        let uses = row
            .and_then(|row| decode_uses(row.value()))
            .unwrap_or_default();
        let mut recorded = HashMap::new();
        match txn.open_table(CONTENT_STAT) {
            Ok(stats) => {
                for content in &uses {
                    if !recorded.contains_key(&content.name)
                        && let Some(row) = stats.get(content.name.as_str()).or_db(self)?
                    {
                        recorded.insert(content.name.clone(), row.value());
                    }
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(err) => return Err(err).or_db(self),
        }
        Ok((uses, recorded))
    }

    /// Checks the shared files of the owned directory `name` (see [`ContentFiles::verify`]):
    /// `Err(path)` names one that no longer matches its content; `Ok` holds the relative paths
    /// of every shared file, all verified.
    pub(super) fn verify_contents(
        &self,
        name: &str,
    ) -> Result<std::result::Result<Vec<std::path::PathBuf>, Vec<u8>>> {
        let (uses, recorded) = self.dir_contents(name)?;
        if uses.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        let damaged = match self.dir_files.dirs_dir()? {
            Some(dirs) => self.content_files.verify(&dirs, name, &uses, &recorded)?,
            None => uses.first().map(|content| content.path.clone()),
        };
        Ok(match damaged {
            Some(path) => Err(path),
            None => Ok(uses
                .into_iter()
                .map(|content| std::path::PathBuf::from(std::ffi::OsString::from_vec(content.path)))
                .collect()),
        })
    }

    /// Records how the content files `names` look now, in the write transaction that changed
    /// their names (a directory attached them) or recounted them (cleanup).
    pub(super) fn record_content_stats<'a>(
        &self,
        tables: &mut WriteTables<'_>,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<()> {
        let mut done: HashSet<&str> = HashSet::new();
        for name in names {
            if done.insert(name) {
                let seen = self.content_files.seen(name)?;
                tables.record_content_stat(name, seen).or_db(self)?;
            }
        }
        Ok(())
    }

    /// Once a commit's directories are gone: removes the content files of `released` that are
    /// still unreferenced and have no other name, under redb's write lock (as
    /// `remove_released_blobs`: a content file another process's commit took again since, or
    /// that a staged directory links, stays; whatever stays unreferenced is `cleanup()`'s
    /// sweep's), and records again how the `touched` ones still shared look, their names having
    /// changed. Without the lock, or if this process dies first, the files stay as orphans and
    /// the records stale (reads then hash those files) until the next cleanup.
    pub(super) fn settle_contents(&self, open: &Arc<OpenDatabase>, settle: &ContentsToSettle) {
        let (released, touched) = (&settle.released, &settle.touched);
        if released.is_empty() && touched.is_empty() {
            return;
        }
        let mut open = Arc::clone(open);
        let settled = self.begin_write(&mut open).and_then(|txn| {
            let contents = txn.open_table(CONTENTS).or_db(self)?;
            let mut stats = txn.open_table(CONTENT_STAT).or_db(self)?;
            for name in released {
                if contents.get(name.as_str()).or_db(self)?.is_none()
                    && let Err(err) = self.content_files.remove_if_unreferenced(name)
                {
                    tracing::warn!(tag = %self.tag, error = %crate::error::ErrorChain(&err), "could not remove an unreferenced content file; cleanup() will");
                }
            }
            for name in touched {
                if contents.get(name.as_str()).or_db(self)?.is_some() {
                    match self.content_files.seen(name)? {
                        Some(seen) => stats.insert(name.as_str(), seen).or_db(self)?,
                        None => stats.remove(name.as_str()).or_db(self)?,
                    };
                }
            }
            drop((contents, stats));
            if touched.is_empty() {
                // Nothing was written: ending it commits nothing and syncs nothing.
                txn.abort().or_db(self)
            } else {
                txn.commit().or_db(self)
            }
        });
        if let Err(err) = settled {
            tracing::warn!(tag = %self.tag, error = %crate::error::ErrorChain(&err), files = released.len() + touched.len(), "could not settle the content files of removed directories; cleanup() will");
        }
    }
}
