//! Publishing to the remote tier ([`crate::RemoteStore`]): what a landed commit stored is
//! offered to the remote, on the committing thread, after the commit is durable. Buffered writes
//! are published by the commit that lands them (`publish_landed`); blobs, directories and the
//! direct writes of streamed sets by the method that committed them (`publish_blob`,
//! `publish_inline`, and `publish_directory` in `remote_dirs.rs`). Backfills
//! (writes whose origin is the remote) are never published back. With no remote attached, each
//! of these is one branch.

use super::*;
use crate::remote::{PublishedEntry, PublishedValue, SharingPolicy};

impl RedbCache {
    /// Offers the buffered writes a commit has just landed, except backfills (`from_remote`),
    /// deletions and entries already expired. Directories are never buffered (`set_directory`
    /// commits and publishes them itself).
    pub(super) fn publish_landed(&self, landed: &Writes, from_remote: &HashSet<Vec<u8>>) {
        if self.remote().is_none() {
            return;
        }
        for (key, write) in landed.iter() {
            let Some(entry) = write else { continue };
            if from_remote.contains(key) {
                continue;
            }
            // Written by this process a moment ago: a parse failure would be a bug, and then
            // the entry is simply not published.
            let Ok((header, payload)) = EntryHeader::parse(entry) else {
                continue;
            };
            match header.kind {
                EntryKind::Inline => self.publish_inline(key, payload.to_vec(), &header),
                EntryKind::Blob => {
                    if let Ok(blob) = BlobRef::decode(payload) {
                        self.publish_blob(key, &blob, &header);
                    }
                }
                EntryKind::Directory => {}
            }
        }
    }

    /// Offers an inline value a commit has landed.
    pub(super) fn publish_inline(&self, key: &[u8], value: Vec<u8>, header: &EntryHeader) {
        self.publish(key, header, || Some(PublishedValue::Bytes(value)));
    }

    /// Offers a blob value a commit has landed: its file, opened now, stays readable for the
    /// uploader even if the entry is removed before the upload.
    pub(super) fn publish_blob(&self, key: &[u8], blob: &BlobRef, header: &EntryHeader) {
        self.publish(key, header, || match self.blob_files.open(blob) {
            Ok(Some(file)) => Some(PublishedValue::Blob {
                file,
                len: blob.len,
                hash: blob.hash,
            }),
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(tag = %self.tag, key = %KeyDisplay::new(key), error = %crate::error::ErrorChain(&err), "could not open a blob to publish it");
                None
            }
        });
    }

    pub(super) fn publish(
        &self,
        key: &[u8],
        header: &EntryHeader,
        value: impl FnOnce() -> Option<PublishedValue>,
    ) {
        let Some(remote) = self.remote_for(key) else {
            return;
        };
        if header.is_expired(self.now_ms()) {
            return;
        }
        let Some(value) = value() else { return };
        remote.publish(PublishedEntry {
            tag: self.tag.clone(),
            key: key.to_vec(),
            format: header.format,
            expires_at: header
                .expires_ms
                .map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
            value,
        });
    }

    /// Attaches the remote tier this store publishes to, with the sharing policy that says
    /// which keys may go through it; a second attach is ignored (a store is opened by one
    /// coordinator, which attaches its remote once, right after the open).
    pub(crate) fn attach_remote(&self, remote: Arc<dyn RemoteStore>, sharing: SharingPolicy) {
        let _ = self.remote.set((remote, sharing));
    }

    /// The remote tier, if one is attached.
    pub(crate) fn remote(&self) -> Option<&Arc<dyn RemoteStore>> {
        self.remote.get().map(|(remote, _)| remote)
    }

    /// Adds what the remote tier counted since it was last asked to this tag's counters, which
    /// persist them with the local ones (`RemoteStore::take_counters`). Called before the
    /// counters are read: at a commit, when a closing process leaves its reads, by
    /// `get_stats`.
    pub(crate) fn take_remote_counters(&self) {
        if let Some(remote) = self.remote() {
            let taken = remote.take_counters();
            if !taken.is_zero() {
                self.counters.add_remote(&taken);
            }
        }
    }

    /// A value fetched from the remote tier was stored locally.
    pub(crate) fn count_backfill(&self) {
        AtomicCounters::add(&self.counters.remote_backfills, 1);
    }

    /// Counts a value from the remote tier that did not match its digest (a miss, not stored).
    pub(crate) fn count_rejected(&self) {
        AtomicCounters::add(&self.counters.remote_rejected, 1);
    }

    /// After the close, the remote tier's counts that arrived while the close waited for the
    /// uploads (what they published or dropped): appended to the reads file, alone, for the
    /// next commit of any process to fold in. While the store is open they are only taken: its
    /// next commit or close persists them.
    pub(crate) fn leave_late_counters(&self) {
        let Some(remote) = self.remote() else {
            return;
        };
        let taken = remote.take_counters();
        if taken.is_zero() {
            return;
        }
        let _writer = lock(&self.write_lock);
        self.counters.add_remote(&taken);
        if !self.is_closed() {
            return;
        }
        let late = Counters {
            remote: taken,
            ..Counters::default()
        };
        let batch = ReadsBatch {
            counters: late,
            ..ReadsBatch::default()
        };
        match self.reads_file.append(&batch) {
            Ok(()) => {
                let mut persisted = lock(&self.persisted_counters);
                *persisted = persisted.plus(&late);
            }
            Err(err) => {
                tracing::debug!(tag = %self.tag, error = %crate::error::ErrorChain(&err), "the remote tier's last counts could not be left in the reads file; lost");
            }
        }
    }

    /// The remote tier, if one is attached and the sharing policy lets `key` go through it.
    pub(crate) fn remote_for(&self, key: &[u8]) -> Option<&Arc<dyn RemoteStore>> {
        self.remote
            .get()
            .filter(|(_, sharing)| sharing.shares(&self.tag, key))
            .map(|(remote, _)| remote)
    }
}
