//! Read-through from the remote tier: on a local miss, a stored handle whose store has a remote
//! attached asks it ([`crate::RemoteStore::fetch`]); what it finds is checked (format, expiry),
//! stored locally with the time it has left (a backfill, which is not published back), and
//! served. A remote error is logged and is a miss: it never fails a local read. A directory is
//! checked whole and written into a staged directory before it is stored
//! (`store/remote_dirs.rs`); any failure stores nothing and is a miss.

use std::io::{Read, Write};
use std::time::{Duration, UNIX_EPOCH};

use crate::codec::ValueFormat;
use crate::directory::CachedDirectory;
use crate::error::{CacheError, ErrorChain, KeyDisplay, Result};
use crate::remote::{DirectoryItem, RemoteEntry, RemoteValue};
use crate::store::{Backfilled, RedbCache};
use crate::values::AnyFormat;

/// A remote entry that passed the checks, with the time it has left.
struct Fetched {
    format: ValueFormat,
    ttl: Option<Duration>,
    value: RemoteValue,
}

/// Asks the remote for `key` after a local miss; `None` on a miss, an unusable entry, or an
/// error (logged).
fn fetch(
    store: &RedbCache,
    key: &[u8],
    wanted: Option<(ValueFormat, AnyFormat)>,
) -> Option<Fetched> {
    let remote = store.remote_for(key)?;
    let entry = match remote.fetch(store.tag(), key) {
        Ok(Some(entry)) => entry,
        Ok(None) => return None,
        Err(err) => {
            tracing::warn!(tag = %store.tag(), key = %KeyDisplay::new(key), error = %ErrorChain(&err), "remote fetch failed; treated as a miss");
            return None;
        }
    };
    let RemoteEntry {
        format,
        expires_at,
        value,
    } = entry;
    if let Some((wanted, AnyFormat::No)) = wanted
        && wanted != format
    {
        return None;
    }
    let ttl = match expires_at {
        None => None,
        Some(expires_at) => {
            let expires_ms = expires_at.duration_since(UNIX_EPOCH).map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
            let left = expires_ms
                .checked_sub(store.now_ms())
                .filter(|&ms| ms > 0)?;
            Some(Duration::from_millis(left))
        }
    };
    Some(Fetched { format, ttl, value })
}

/// Reads a streamed value into memory, refusing one over the tag's value limit or one that does
/// not match its digest (counted as rejected).
fn read_whole(
    store: &RedbCache,
    key: &[u8],
    mut reader: Box<dyn Read + Send>,
    len: u64,
    digest: &[u8; 32],
) -> Option<Vec<u8>> {
    if len > store.options().max_value_bytes {
        tracing::warn!(tag = %store.tag(), key = %KeyDisplay::new(key), len, "remote value over the tag's value limit; treated as a miss");
        return None;
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    match reader
        .by_ref()
        .take(len.saturating_add(1))
        .read_to_end(&mut bytes)
    {
        Ok(read) if read as u64 == len && blake3::hash(&bytes).as_bytes() == digest => Some(bytes),
        Ok(read) if read as u64 == len => {
            store.count_rejected();
            tracing::warn!(tag = %store.tag(), key = %KeyDisplay::new(key), "a value from the remote tier does not match its digest; treated as a miss, nothing stored");
            None
        }
        Ok(read) => {
            tracing::warn!(tag = %store.tag(), key = %KeyDisplay::new(key), len, read, "remote value shorter or longer than announced; treated as a miss");
            None
        }
        Err(err) => {
            tracing::warn!(tag = %store.tag(), key = %KeyDisplay::new(key), error = %err, "reading a remote value failed; treated as a miss");
            None
        }
    }
}

fn warn_backfill(store: &RedbCache, key: &[u8], err: &CacheError) {
    tracing::warn!(tag = %store.tag(), key = %KeyDisplay::new(key), error = %ErrorChain(err), "could not store a remote value locally");
}

/// Stores a fetched directory locally; `None` (logged) when it cannot be: nothing is stored.
fn backfill_directory(
    store: &RedbCache,
    key: &[u8],
    ttl: Option<Duration>,
    value: &[u8],
    items: &[DirectoryItem],
    mut contents: Box<dyn Read + Send>,
) -> Option<CachedDirectory> {
    match store.backfill_directory(key, value, items, &mut contents, ttl) {
        Ok(stored) => stored,
        Err(err) => {
            warn_backfill(store, key, &err);
            None
        }
    }
}

/// The directory for [`crate::Cache::get_directory`] after a local miss: fetched, checked,
/// written, stored, returned. An entry that is not a directory on the remote is a miss, as
/// it is locally.
pub(super) fn read_through_directory(
    store: &RedbCache,
    key: &[u8],
) -> Result<Option<CachedDirectory>> {
    let Some(fetched) = fetch(store, key, Some((ValueFormat::RAW, AnyFormat::No))) else {
        return Ok(None);
    };
    match fetched.value {
        RemoteValue::Directory {
            value,
            items,
            contents,
        } => Ok(backfill_directory(
            store,
            key,
            fetched.ttl,
            &value,
            &items,
            contents,
        )),
        RemoteValue::Bytes(_) | RemoteValue::Stream { .. } => Ok(None),
    }
}

/// The value for an in-memory read after a local miss: fetched, backfilled, returned.
pub(super) fn read_through(
    store: &RedbCache,
    key: &[u8],
    format: ValueFormat,
    any: AnyFormat,
) -> Result<Option<Vec<u8>>> {
    let Some(fetched) = fetch(store, key, Some((format, any))) else {
        return Ok(None);
    };
    let bytes = match fetched.value {
        RemoteValue::Bytes(bytes) => bytes,
        RemoteValue::Stream {
            reader,
            len,
            digest,
        } if fetched.format == ValueFormat::RAW => {
            // A large value goes to a local blob chunk by chunk (checked against its digest as
            // it is hashed), then is read back verified.
            return backfill_stream_then(store, key, reader, (len, digest), fetched.ttl, |_| {
                store.get_with_format(key, format, any)
            });
        }
        RemoteValue::Stream {
            reader,
            len,
            digest,
        } => match read_whole(store, key, reader, len, &digest) {
            Some(bytes) => bytes,
            None => return Ok(None),
        },
        // As a local read of a directory's entry: its value, once the directory is stored.
        RemoteValue::Directory {
            value,
            items,
            contents,
        } => {
            return Ok(
                backfill_directory(store, key, fetched.ttl, &value, &items, contents)
                    .map(|directory| directory.value),
            );
        }
    };
    if let Err(err) = store.backfill(key, &bytes, fetched.ttl, fetched.format) {
        warn_backfill(store, key, &err);
    }
    Ok(Some(bytes))
}

/// Stores a streamed raw value as a local blob, checked against `digest` as it is hashed
/// (`RedbCache::backfill_stream`), then serves it through `serve`. Bytes that do not match, or
/// a failed backfill (logged), are a miss.
fn backfill_stream_then<T>(
    store: &RedbCache,
    key: &[u8],
    reader: Box<dyn Read + Send>,
    (len, digest): (u64, [u8; 32]),
    ttl: Option<Duration>,
    serve: impl FnOnce(Backfilled) -> Result<Option<T>>,
) -> Result<Option<T>> {
    match store.backfill_stream(key, &mut reader.take(len), (len, &digest), ttl) {
        Ok(Some(backfilled)) => serve(backfilled),
        Ok(None) => Ok(None),
        Err(err) => {
            warn_backfill(store, key, &err);
            Ok(None)
        }
    }
}

/// [`read_through`] for a streamed read: the value is backfilled, then written to `sink` from
/// the local store (a streamed value from the blob file the backfill wrote and checked against
/// the value's digest, without hashing it again: `RedbCache::backfill_stream`).
pub(super) fn read_through_to(
    store: &RedbCache,
    key: &[u8],
    sink: &mut dyn Write,
) -> Result<Option<u64>> {
    let Some(fetched) = fetch(store, key, None) else {
        return Ok(None);
    };
    let stored = match fetched.value {
        RemoteValue::Bytes(bytes) => store.backfill(key, &bytes, fetched.ttl, fetched.format),
        RemoteValue::Stream {
            reader,
            len,
            digest,
        } if fetched.format == ValueFormat::RAW => {
            return backfill_stream_then(
                store,
                key,
                reader,
                (len, digest),
                fetched.ttl,
                |backfilled| store.write_backfilled(key, backfilled, sink),
            );
        }
        RemoteValue::Stream {
            reader,
            len,
            digest,
        } => match read_whole(store, key, reader, len, &digest) {
            Some(bytes) => store.backfill(key, &bytes, fetched.ttl, fetched.format),
            None => return Ok(None),
        },
        RemoteValue::Directory {
            value,
            items,
            contents,
        } => match backfill_directory(store, key, fetched.ttl, &value, &items, contents) {
            Some(_) => Ok(()),
            None => return Ok(None),
        },
    };
    match stored {
        Ok(()) => store.get_to_writer(key, sink),
        Err(err) => {
            warn_backfill(store, key, &err);
            Ok(None)
        }
    }
}
