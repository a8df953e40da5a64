//! Directories on the server: the body of a directory's envelope (kind 3) and its upload.
//!
//! A directory travels as its entry's value, its list of items (path, mode, kind, length) and
//! the files' contents concatenated in list order, cut in chunks like any large value
//! (`uploader.rs`'s `upload_chunks`, fetched by `remote.rs`'s `Chunks`, each chunk checked
//! against its digest and the whole against `contents_digest`). The envelope's `digest` is
//! [`directory_digest`], a blake3 of the value, the list and the contents' digest, and the
//! envelope's `len` the contents' length: so the signature, which covers `digest` and `len`,
//! covers the list too (a path or mode changed on the server does not verify), and the
//! envelope's decoder checks the digest against the list it carries.
//!
//! The body, little-endian, after the envelope's fixed head:
//!
//! | bytes | field |
//! |---|---|
//! | 4 + n | the value's length, the value |
//! | 4 | item count |
//! | per item: 2 + n, 4, 1, (8) | path length, path (UTF-8, `/`-separated), mode, kind (1 directory, 2 file), a file's length |
//! | 32 | blake3 of the contents |
//! | 4 + 4 + 32 each | chunk size, chunk count, each chunk's blake3 |
//!
//! The list is checked here for its shape only (sizes, UTF-8, lengths adding up); whether its
//! paths are safe to write is the core's to judge, as it writes them (`cache-core`'s
//! `store/remote_dirs.rs`), and it judges every list, whoever signed it.

use std::io::{self, Read};
use std::sync::Arc;

use cache_core::{DirectoryItem, DirectoryItemKind, PublishedDirectory};

use crate::envelope::{Body, Reader, Rejected};
use crate::remote::Shared;
use crate::uploader::upload_chunks;

/// The largest encoded list (paths, modes, lengths) this cache writes or reads: what bounds a
/// directory envelope, with the value and the chunk manifest.
pub(crate) const MAX_LISTING_BYTES: usize = 4 << 20;

const ITEM_DIR: u8 = 1;
const ITEM_FILE: u8 = 2;

/// The value and the list, as the body holds them.
pub(crate) fn encode_listing(out: &mut Vec<u8>, value: &[u8], items: &[DirectoryItem]) {
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for item in items {
        out.extend_from_slice(&(item.path.len() as u16).to_le_bytes());
        out.extend_from_slice(item.path.as_bytes());
        out.extend_from_slice(&item.mode.to_le_bytes());
        match item.kind {
            DirectoryItemKind::Dir => out.push(ITEM_DIR),
            DirectoryItemKind::File { len } => {
                out.push(ITEM_FILE);
                out.extend_from_slice(&len.to_le_bytes());
            }
        }
    }
}

/// Reads what [`encode_listing`] wrote; `max_value` bounds the value.
pub(crate) fn decode_listing(
    reader: &mut Reader<'_>,
    max_value: u64,
) -> Result<(Vec<u8>, Vec<DirectoryItem>), Rejected> {
    let value_len = reader.u32()?;
    if u64::from(value_len) > max_value {
        return Err(Rejected("directory value larger than the limit"));
    }
    let value = reader.take(value_len as usize)?.to_vec();
    let count = reader.u32()?;
    // Every item takes at least 7 bytes: a count the envelope cannot hold is refused before
    // anything is allocated for it.
    if count as usize > reader.remaining() / 7 {
        return Err(Rejected("directory item count larger than the envelope"));
    }
    let mut items = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let path_len = u16::from_le_bytes(reader.array()?);
        let path = std::str::from_utf8(reader.take(usize::from(path_len))?)
            .map_err(|_| Rejected("directory path is not UTF-8"))?
            .to_owned();
        let mode = reader.u32()?;
        let kind = match reader.u8()? {
            ITEM_DIR => DirectoryItemKind::Dir,
            ITEM_FILE => DirectoryItemKind::File { len: reader.u64()? },
            _ => return Err(Rejected("unknown directory item kind")),
        };
        items.push(DirectoryItem { path, mode, kind });
    }
    Ok((value, items))
}

/// What the envelope's `digest` is for a directory: the value, the list and the contents'
/// blake3, so that whatever covers the digest (the signature) covers the list.
pub(crate) fn directory_digest(
    value: &[u8],
    items: &[DirectoryItem],
    contents_digest: &[u8; 32],
) -> [u8; 32] {
    let mut described = b"glovebox-cache remote directory v1\0".to_vec();
    encode_listing(&mut described, value, items);
    described.extend_from_slice(contents_digest);
    *blake3::hash(&described).as_bytes()
}

/// The files' total length, `None` if it overflows.
pub(crate) fn contents_len(items: &[DirectoryItem]) -> Option<u64> {
    items
        .iter()
        .try_fold(0u64, |total, item| total.checked_add(item.file_len()))
}

/// Uploads a directory's contents as chunks (read twice: once to hash them, once to send them,
/// the second read checked against the first). The envelope's length, digest and body, or
/// `None` (logged) when it cannot be published.
pub(crate) fn upload_directory(
    shared: &Arc<Shared>,
    directory: &PublishedDirectory,
    px: Option<u64>,
) -> Option<(u64, [u8; 32], Body)> {
    let mut listing = Vec::new();
    encode_listing(&mut listing, &directory.value, &directory.items);
    if directory.value.len() > shared.config.inline_limit
        || listing.len() > MAX_LISTING_BYTES
        || directory
            .items
            .iter()
            .any(|item| item.path.len() > usize::from(u16::MAX))
    {
        tracing::info!(
            value = directory.value.len(),
            listing = listing.len(),
            "a directory's value or list is too large for the remote tier; not published"
        );
        return None;
    }
    let len = directory.contents_len();
    let hashed = directory.contents().and_then(|mut contents| {
        let mut hasher = blake3::Hasher::new();
        let read = io::copy(&mut contents, &mut hasher)?;
        Ok((read, *hasher.finalize().as_bytes()))
    });
    let contents_digest = match hashed {
        Ok((read, digest)) if read == len => digest,
        Ok((read, _)) => {
            tracing::warn!(
                read,
                len,
                "a directory changed before it was uploaded; dropped"
            );
            return None;
        }
        Err(err) => {
            tracing::warn!(error = %err, "could not read a directory to upload it; dropped");
            return None;
        }
    };
    let contents: Box<dyn Read> = match directory.contents() {
        Ok(contents) => contents,
        Err(err) => {
            tracing::warn!(error = %err, "could not read a directory to upload it; dropped");
            return None;
        }
    };
    let Body::Chunked { chunk_size, chunks } =
        upload_chunks(shared, contents, len, &contents_digest, px)?
    else {
        return None;
    };
    let digest = directory_digest(&directory.value, &directory.items, &contents_digest);
    Some((
        len,
        digest,
        Body::Directory {
            value: directory.value.clone(),
            items: directory.items.clone(),
            contents_digest,
            chunk_size,
            chunks,
        },
    ))
}
