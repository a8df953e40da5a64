//! The data model on the server (the same for every engine):
//!
//! - `{prefix}/v1/e/{tag}/{h}`: the **envelope** of one entry, where `h` is the hex blake3 of
//!   (prefix, format version, tag, key): the key itself never appears on the server.
//! - `{prefix}/v1/c/{blake3}`: a **chunk** of a large value, named by the hash of its bytes and
//!   so shared by every entry (and machine) that stores the same bytes.
//!
//! An envelope, little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `GBRE` |
//! | 1 | format version (1) |
//! | 1 | kind: 1 inline, 2 chunked, 3 directory |
//! | 1 + 4 | the value's codec and schema version (`ValueFormat`) |
//! | 8 | expiry, ms since the Unix epoch; 0 never |
//! | 8 | the value's length (a directory: its files' total length) |
//! | 32 | the value's blake3 (a directory: `directory::directory_digest`) |
//! | ... | inline: the value; chunked: chunk size (4), count (4), each chunk's blake3 (32 each); directory: see `directory.rs` |
//! | 1 | signature: 0 none, 1 Ed25519 |
//! | 1 + n + 64 | if signed: the key name's length, the name, the signature |
//! | 32 | blake3 of every byte before: a flipped byte anywhere is rejected |
//!
//! The signature covers prefix, tag, key, format, expiry, length and the value's blake3
//! ([`signed_message`]), so an envelope copied under another key or tag does not verify. A
//! chunked envelope is written after its chunks (the manifest last); a chunk that has gone (an
//! evicting `maxmemory`) makes the entry a miss when read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_core::{CodecId, ValueFormat};

use cache_core::keys::hex;

use cache_core::DirectoryItem;

use crate::directory::{contents_len, decode_listing, directory_digest, encode_listing};
use crate::signing::Signed;

const MAGIC: &[u8; 4] = b"GBRE";
const VERSION: u8 = 1;
const KIND_INLINE: u8 = 1;
const KIND_CHUNKED: u8 = 2;
const KIND_DIRECTORY: u8 = 3;
/// Fixed part before the body: magic, version, kind, codec, schema, expiry, length, digest.
const HEAD_LEN: usize = 4 + 1 + 1 + 1 + 4 + 8 + 8 + 32;
const CHECKSUM_LEN: usize = 32;

/// The name of an entry's envelope on the server (for an operator looking for one).
pub fn entry_name(prefix: &str, tag: &str, key: &[u8]) -> String {
    let mut hasher = blake3::Hasher::new();
    for part in [prefix.as_bytes(), b"v1", tag.as_bytes(), key] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    format!("{prefix}/v1/e/{tag}/{}", hasher.finalize().to_hex())
}

/// The name of an entry's fleet lease on the server.
pub(crate) fn lease_name(prefix: &str, tag: &str, key: &[u8]) -> String {
    let entry = entry_name(prefix, tag, key);
    let hash = entry.rsplit('/').next().unwrap_or_default();
    format!("{prefix}/v1/l/{tag}/{hash}")
}

/// The name of a chunk on the server.
pub(crate) fn chunk_name(prefix: &str, digest: &[u8; 32]) -> String {
    format!("{prefix}/v1/c/{}", hex(digest))
}

/// What an envelope holds of the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    /// The value itself.
    Inline(Vec<u8>),
    /// The value cut in chunks of `chunk_size` bytes (the last one shorter).
    Chunked {
        chunk_size: u32,
        chunks: Vec<[u8; 32]>,
    },
    /// A directory (`directory.rs`): the entry's value, its list, and its files' contents
    /// concatenated in list order, whose blake3 is `contents_digest`, cut in chunks.
    Directory {
        value: Vec<u8>,
        items: Vec<DirectoryItem>,
        contents_digest: [u8; 32],
        chunk_size: u32,
        chunks: Vec<[u8; 32]>,
    },
}

/// One entry as the server holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) format: ValueFormat,
    /// Milliseconds since the epoch; `None` never.
    pub(crate) expires_ms: Option<u64>,
    pub(crate) len: u64,
    pub(crate) digest: [u8; 32],
    pub(crate) body: Body,
    pub(crate) signed: Option<Signed>,
}

/// Why an envelope was rejected.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Rejected(pub(crate) &'static str);

impl Envelope {
    pub(crate) fn expires_at(&self) -> Option<SystemTime> {
        self.expires_ms
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
    }

    /// The bytes the server stores.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let body_len = match &self.body {
            Body::Inline(value) => value.len(),
            Body::Chunked { chunks, .. } => 8 + 32 * chunks.len(),
            Body::Directory { value, chunks, .. } => value.len() + 40 + 32 * chunks.len(),
        };
        let mut out = Vec::with_capacity(HEAD_LEN + body_len + 1 + 1 + 255 + 64 + CHECKSUM_LEN);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(match self.body {
            Body::Inline(_) => KIND_INLINE,
            Body::Chunked { .. } => KIND_CHUNKED,
            Body::Directory { .. } => KIND_DIRECTORY,
        });
        out.push(self.format.codec.to_byte());
        out.extend_from_slice(&self.format.schema_version.to_le_bytes());
        out.extend_from_slice(&self.expires_ms.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.digest);
        match &self.body {
            Body::Inline(value) => out.extend_from_slice(value),
            Body::Chunked { chunk_size, chunks } => encode_manifest(&mut out, *chunk_size, chunks),
            Body::Directory {
                value,
                items,
                contents_digest,
                chunk_size,
                chunks,
            } => {
                encode_listing(&mut out, value, items);
                out.extend_from_slice(contents_digest);
                encode_manifest(&mut out, *chunk_size, chunks);
            }
        }
        match &self.signed {
            None => out.push(0),
            Some(signed) => {
                out.push(1);
                let name = signed.key_name.as_bytes();
                out.push(name.len().min(255) as u8);
                out.extend_from_slice(&name[..name.len().min(255)]);
                out.extend_from_slice(&signed.signature);
            }
        }
        let checksum = blake3::hash(&out);
        out.extend_from_slice(checksum.as_bytes());
        out
    }

    /// Reads an envelope, checking its checksum and shape; `max_len` bounds the value's
    /// announced length (checked before anything is allocated for it).
    pub(crate) fn decode(bytes: &[u8], max_len: u64) -> Result<Envelope, Rejected> {
        if bytes.len() < HEAD_LEN + 1 + CHECKSUM_LEN {
            return Err(Rejected("envelope too short"));
        }
        let (content, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if blake3::hash(content).as_bytes() != checksum {
            return Err(Rejected("envelope checksum mismatch"));
        }
        let mut reader = Reader { bytes: content };
        if reader.take(4)? != MAGIC {
            return Err(Rejected("not an envelope"));
        }
        if reader.u8()? != VERSION {
            return Err(Rejected("envelope of another format version"));
        }
        let kind = reader.u8()?;
        let codec = CodecId::from_byte(reader.u8()?).ok_or(Rejected("unknown codec"))?;
        let schema_version = reader.u32()?;
        let expires_ms = Some(reader.u64()?).filter(|&ms| ms != 0);
        let len = reader.u64()?;
        if len > max_len {
            return Err(Rejected("value larger than the limit"));
        }
        let digest = reader.array::<32>()?;
        let body = match kind {
            KIND_INLINE => {
                let value = reader.take(usize::try_from(len).map_err(|_| Rejected("length"))?)?;
                if blake3::hash(value).as_bytes() != &digest {
                    return Err(Rejected("inline value does not match its digest"));
                }
                Body::Inline(value.to_vec())
            }
            KIND_CHUNKED => {
                let (chunk_size, chunks) = decode_manifest(&mut reader, len)?;
                Body::Chunked { chunk_size, chunks }
            }
            KIND_DIRECTORY => {
                let (value, items) = decode_listing(&mut reader, max_len)?;
                let contents_digest = reader.array::<32>()?;
                if contents_len(&items) != Some(len) {
                    return Err(Rejected("directory's files do not add up to its length"));
                }
                // No chunk is read for empty contents: their digest is checked here instead.
                if len == 0 && contents_digest != *blake3::hash(&[]).as_bytes() {
                    return Err(Rejected("empty contents do not match their digest"));
                }
                let (chunk_size, chunks) = decode_manifest(&mut reader, len)?;
                if directory_digest(&value, &items, &contents_digest) != digest {
                    return Err(Rejected("directory does not match its digest"));
                }
                Body::Directory {
                    value,
                    items,
                    contents_digest,
                    chunk_size,
                    chunks,
                }
            }
            _ => return Err(Rejected("unknown envelope kind")),
        };
        let signed = match reader.u8()? {
            0 => None,
            1 => {
                let name_len = usize::from(reader.u8()?);
                let name = std::str::from_utf8(reader.take(name_len)?)
                    .map_err(|_| Rejected("key name is not UTF-8"))?
                    .to_owned();
                Some(Signed {
                    key_name: name,
                    signature: reader.array::<64>()?,
                })
            }
            _ => return Err(Rejected("unknown signature kind")),
        };
        if !reader.bytes.is_empty() {
            return Err(Rejected("trailing bytes"));
        }
        Ok(Envelope {
            format: ValueFormat {
                codec,
                schema_version,
            },
            expires_ms,
            len,
            digest,
            body,
            signed,
        })
    }
}

fn encode_manifest(out: &mut Vec<u8>, chunk_size: u32, chunks: &[[u8; 32]]) {
    out.extend_from_slice(&chunk_size.to_le_bytes());
    out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
    for chunk in chunks {
        out.extend_from_slice(chunk);
    }
}

/// A chunk manifest (chunk size, count, digests) of a value of `len` bytes.
fn decode_manifest(reader: &mut Reader<'_>, len: u64) -> Result<(u32, Vec<[u8; 32]>), Rejected> {
    let chunk_size = reader.u32()?;
    let count = reader.u32()?;
    if chunk_size == 0 || u64::from(count) != len.div_ceil(u64::from(chunk_size)) {
        return Err(Rejected("chunk count does not match the length"));
    }
    let mut chunks = Vec::with_capacity(count.min(1 << 16) as usize);
    for _ in 0..count {
        chunks.push(reader.array::<32>()?);
    }
    Ok((chunk_size, chunks))
}

/// What a signature covers: everything that says what the entry is and where it belongs.
pub(crate) fn signed_message(
    prefix: &str,
    tag: &str,
    key: &[u8],
    format: ValueFormat,
    expires_ms: Option<u64>,
    len: u64,
    digest: &[u8; 32],
) -> Vec<u8> {
    let mut message = b"glovebox-cache remote entry v1\0".to_vec();
    for part in [prefix.as_bytes(), tag.as_bytes(), key] {
        message.extend_from_slice(&(part.len() as u64).to_le_bytes());
        message.extend_from_slice(part);
    }
    message.push(format.codec.to_byte());
    message.extend_from_slice(&format.schema_version.to_le_bytes());
    message.extend_from_slice(&expires_ms.unwrap_or(0).to_le_bytes());
    message.extend_from_slice(&len.to_le_bytes());
    message.extend_from_slice(digest);
    message
}

/// Reads an envelope's fields in order; running out is a rejection.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Rejected> {
        if self.bytes.len() < n {
            return Err(Rejected("envelope truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Rejected> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Rejected> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Rejected> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Rejected> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(body: Body, signed: Option<Signed>) -> Envelope {
        let value = b"value".to_vec();
        Envelope {
            format: ValueFormat::typed(3),
            expires_ms: Some(1_767_225_600_000),
            len: value.len() as u64,
            digest: *blake3::hash(&value).as_bytes(),
            body,
            signed,
        }
    }

    #[test]
    fn envelopes_round_trip_and_every_flipped_byte_is_rejected() {
        let signed = Signed {
            key_name: "ci".to_owned(),
            signature: [7u8; 64],
        };
        for envelope in [
            sample(Body::Inline(b"value".to_vec()), None),
            sample(Body::Inline(b"value".to_vec()), Some(signed)),
            sample(
                Body::Chunked {
                    chunk_size: 4,
                    chunks: vec![[1u8; 32], [2u8; 32]],
                },
                None,
            ),
        ] {
            let bytes = envelope.encode();
            assert_eq!(Envelope::decode(&bytes, 1 << 20), Ok(envelope.clone()));
            for at in 0..bytes.len() {
                let mut flipped = bytes.clone();
                flipped[at] ^= 0x10;
                assert!(Envelope::decode(&flipped, 1 << 20).is_err(), "byte {at}");
            }
            assert!(Envelope::decode(&bytes[..bytes.len() - 1], 1 << 20).is_err());
        }
    }

    fn directory(items: Vec<DirectoryItem>, contents: &[u8]) -> Envelope {
        let value = b"metadata".to_vec();
        let contents_digest = *blake3::hash(contents).as_bytes();
        Envelope {
            format: ValueFormat::RAW,
            expires_ms: None,
            len: contents.len() as u64,
            digest: directory_digest(&value, &items, &contents_digest),
            body: Body::Directory {
                value,
                items,
                contents_digest,
                chunk_size: 4,
                chunks: contents
                    .chunks(4)
                    .map(|c| *blake3::hash(c).as_bytes())
                    .collect(),
            },
            signed: None,
        }
    }

    fn item(path: &str, kind: cache_core::DirectoryItemKind) -> DirectoryItem {
        DirectoryItem {
            path: path.to_owned(),
            mode: 0o640,
            kind,
        }
    }

    #[test]
    fn directory_envelopes_round_trip_and_every_flipped_byte_is_rejected() {
        use cache_core::DirectoryItemKind::{Dir, File};
        for envelope in [
            directory(
                vec![
                    item("a", Dir),
                    item("a/b.uf2", File { len: 5 }),
                    item("empty", File { len: 0 }),
                    item("z", File { len: 2 }),
                ],
                b"helloyo",
            ),
            directory(vec![item("only-a-dir", Dir)], b""),
            directory(Vec::new(), b""),
        ] {
            let bytes = envelope.encode();
            assert_eq!(Envelope::decode(&bytes, 1 << 20), Ok(envelope.clone()));
            for at in 0..bytes.len() {
                let mut flipped = bytes.clone();
                flipped[at] ^= 0x10;
                assert!(Envelope::decode(&flipped, 1 << 20).is_err(), "byte {at}");
            }
        }
    }

    /// The list is inside what the digest covers (and so what a signature covers): a list
    /// changed on the server, with the envelope's checksum made good again, is rejected.
    #[test]
    fn a_directory_list_changed_under_the_same_digest_is_rejected() {
        use cache_core::DirectoryItemKind::File;
        let good = directory(vec![item("zmk.uf2", File { len: 3 })], b"abc");
        let mut forged = good.clone();
        if let Body::Directory { items, .. } = &mut forged.body {
            items[0].path = "../zmk.uf2".to_owned();
        }
        assert_eq!(
            Envelope::decode(&forged.encode(), 1 << 20),
            Err(Rejected("directory does not match its digest"))
        );
        let mut longer = good;
        if let Body::Directory { items, .. } = &mut longer.body {
            items[0].kind = File { len: 4 };
        }
        assert_eq!(
            Envelope::decode(&longer.encode(), 1 << 20),
            Err(Rejected("directory's files do not add up to its length"))
        );
    }

    #[test]
    fn a_directory_item_count_larger_than_the_envelope_is_refused_before_allocating() {
        let mut out = Vec::new();
        encode_listing(&mut out, b"v", &[]);
        let count_at = 4 + 1;
        out[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut reader = Reader { bytes: &out };
        assert_eq!(
            decode_listing(&mut reader, 1 << 20),
            Err(Rejected("directory item count larger than the envelope"))
        );
    }

    #[test]
    fn an_announced_length_over_the_limit_is_refused_before_reading_the_body() {
        let bytes = sample(Body::Inline(b"value".to_vec()), None).encode();
        assert_eq!(
            Envelope::decode(&bytes, 4),
            Err(Rejected("value larger than the limit"))
        );
    }

    #[test]
    fn names_hide_the_key_and_separate_tags_and_prefixes() {
        let a = entry_name("p", "t", b"k");
        assert!(a.starts_with("p/v1/e/t/") && !a.ends_with("/k"));
        assert_ne!(a, entry_name("p", "u", b"k"));
        assert_ne!(a, entry_name("q", "t", b"k"));
        assert_ne!(entry_name("p", "t", b"ab"), entry_name("p", "ta", b"b"));
    }
}
