//! Key building: unambiguous, full-width (blake3, 256-bit) hashes of key parts, maps and files.
//!
//! The original joined parts with a separator after dropping empty ones, so `("a", "", "b")` and
//! `("a", "b")` collided, and it truncated hashes to 64 bits (its defect 12). Here every part is
//! length-prefixed before hashing, each helper hashes under its own blake3 derive-key context (so
//! a map and a part list can never produce the same key), and the full 256-bit hash is kept.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::error::{CacheError, Result};

/// Lower-case hex of any bytes (the form key parts and digests are written in), and back.
pub use crate::codec::{from_hex, hex};

const PARTS_CONTEXT: &str = "glovebox-cache 2026-11 key from parts v1";
const MAP_CONTEXT: &str = "glovebox-cache 2026-11 key from map v1";

/// A key hashed from `parts`, as 64 lowercase hex characters.
///
/// Parts are length-prefixed, so the encoding is injective: no two different part lists hash the
/// same input.
///
/// ```
/// use cache_core::keys::from_parts;
/// assert_ne!(from_parts(["a", "", "b"]), from_parts(["a", "b"]));
/// assert_eq!(from_parts(["repo", "main"]).len(), 64);
/// ```
pub fn from_parts<P: AsRef<[u8]>>(parts: impl IntoIterator<Item = P>) -> String {
    let mut hasher = blake3::Hasher::new_derive_key(PARTS_CONTEXT);
    for part in parts {
        write_prefixed(&mut hasher, part.as_ref());
    }
    hasher.finalize().to_hex().to_string()
}

/// A key hashed from a map, independent of the order its entries are given in.
///
/// Entries are sorted by key, then by value; each key and value is length-prefixed.
///
/// ```
/// use cache_core::keys::from_map;
/// assert_eq!(from_map([("board", "glove80"), ("shield", "")]), from_map([("shield", ""), ("board", "glove80")]));
/// ```
pub fn from_map<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    entries: impl IntoIterator<Item = (K, V)>,
) -> String {
    let mut entries: Vec<(K, V)> = entries.into_iter().collect();
    entries.sort_by(|(k1, v1), (k2, v2)| {
        k1.as_ref()
            .cmp(k2.as_ref())
            .then_with(|| v1.as_ref().cmp(v2.as_ref()))
    });
    let mut hasher = blake3::Hasher::new_derive_key(MAP_CONTEXT);
    hasher.update(&(entries.len() as u64).to_le_bytes());
    for (key, value) in &entries {
        write_prefixed(&mut hasher, key.as_ref());
        write_prefixed(&mut hasher, value.as_ref());
    }
    hasher.finalize().to_hex().to_string()
}

/// The plain blake3 hash of a file's content (the same as `b3sum` prints), read in a stream so
/// that a large file is never held in memory.
pub fn from_file(path: &Path) -> Result<String> {
    let file =
        File::open(path).map_err(|source| CacheError::io("opening file to hash", path, source))?;
    from_reader(file).map_err(|source| CacheError::io("reading file to hash", path, source))
}

/// The plain blake3 hash of everything `reader` yields.
pub fn from_reader(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                hasher.update(&buffer[..read]);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// The canonical (lower-case, hyphenated) form of a UUID given in the 8-4-4-4-12 hex form, in any
/// case; `None` for anything else.
///
/// Domains key entries by UUIDs (sessions, documents, bookmarks); parsing them to one canonical
/// form first makes `ABC...` and `abc...` one key, and refuses text that is not a UUID before it
/// reaches a key. Only the hyphenated form is accepted: braces, `urn:uuid:` and the 32-digit
/// simple form are refused rather than guessed at. The version and variant bits are not checked,
/// since the domains' UUIDs come from other systems.
///
/// ```
/// use cache_core::keys::canonical_uuid;
/// assert_eq!(
///     canonical_uuid("67E55044-10B1-426F-9247-BB680E5FE0C8").as_deref(),
///     Some("67e55044-10b1-426f-9247-bb680e5fe0c8")
/// );
/// assert_eq!(canonical_uuid("67e5504410b1426f9247bb680e5fe0c8"), None);
/// ```
pub fn canonical_uuid(text: &str) -> Option<String> {
    const HYPHENS: [usize; 4] = [8, 13, 18, 23];
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let well_formed = bytes.iter().enumerate().all(|(index, byte)| {
        if HYPHENS.contains(&index) {
            *byte == b'-'
        } else {
            byte.is_ascii_hexdigit()
        }
    });
    well_formed.then(|| text.to_ascii_lowercase())
}

/// Key bytes made of a readable `prefix` followed by [`from_parts`] over `parts`.
///
/// The prefix lets a service find its entries among a tag's keys and lets a person tell kinds
/// apart; the hash alone is already unambiguous.
///
/// ```
/// use cache_core::keys::{from_parts, prefixed_from_parts};
/// let key = prefixed_from_parts(b"note:", ["notes", "note", "42"]);
/// assert_eq!(key, format!("note:{}", from_parts(["notes", "note", "42"])).into_bytes());
/// ```
pub fn prefixed_from_parts<P: AsRef<[u8]>>(
    prefix: &[u8],
    parts: impl IntoIterator<Item = P>,
) -> Vec<u8> {
    [prefix, from_parts(parts).as_bytes()].concat()
}

/// Implements [`CacheKey`](crate::CacheKey) for a key struct that holds its time to live in a
/// field named `ttl: Duration` and whose bytes are [`prefixed_from_parts`]: the value type, the
/// tag, the schema version, the prefix and the parts (a closure-like `|key| [...]` over the
/// key) are given; the generics, if any, in brackets after `impl`.
///
/// The shared helper behind the key declarations of domain crates, so that every key of that
/// shape is built the same way.
///
/// ```
/// use std::time::Duration;
/// use cache_core::{CacheKey, keys};
///
/// struct NoteKey { id: String, ttl: Duration }
///
/// cache_core::impl_prefixed_key!(impl for NoteKey {
///     value: String,
///     tag: "notes",
///     schema_version: 1,
///     prefix: b"note:",
///     parts: |key| ["notes", "note", key.id.as_str()],
/// });
///
/// let key = NoteKey { id: "42".to_owned(), ttl: Duration::from_secs(60) };
/// assert_eq!(key.default_ttl(), Some(Duration::from_secs(60)));
/// assert_eq!(key.key_bytes(), keys::prefixed_from_parts(b"note:", ["notes", "note", "42"]));
/// ```
#[macro_export]
macro_rules! impl_prefixed_key {
    (
        impl $([$($generics:tt)*])? for $name:ty {
            value: $value:ty,
            tag: $tag:expr,
            schema_version: $schema_version:expr,
            prefix: $prefix:expr,
            parts: |$key:ident| $parts:expr $(,)?
        }
    ) => {
        impl $(<$($generics)*>)? $crate::CacheKey for $name {
            type Value = $value;
            const TAG: &'static str = $tag;
            const SCHEMA_VERSION: u32 = $schema_version;

            fn default_ttl(&self) -> ::core::option::Option<::core::time::Duration> {
                ::core::option::Option::Some(self.ttl)
            }

            fn key_bytes(&self) -> ::std::vec::Vec<u8> {
                let $key = self;
                $crate::keys::prefixed_from_parts($prefix, $parts)
            }
        }
    };
}

fn write_prefixed(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use rstest::rstest;

    use super::*;

    #[test]
    fn defect_12_from_parts_keeps_empty_parts_distinct() {
        assert_ne!(from_parts(["a", "", "b"]), from_parts(["a", "b"]));
        assert_ne!(from_parts(["ab", "c"]), from_parts(["a", "bc"]));
        assert_ne!(from_parts([""]), from_parts::<&str>([]));
    }

    #[test]
    fn defect_12_keys_are_full_width() {
        let key = from_parts(["repo"]);
        assert_eq!(key.len(), 64, "256-bit hash as hex");
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[rstest]
    #[case(vec![("a", "1"), ("b", "2")], vec![("b", "2"), ("a", "1")], true)]
    #[case(vec![("a", "1")], vec![("a", "2")], false)]
    #[case(vec![("a", "")], vec![], false)]
    #[case(vec![("ab", "")], vec![("a", "b")], false)]
    fn from_map_is_order_independent_and_unambiguous(
        #[case] left: Vec<(&str, &str)>,
        #[case] right: Vec<(&str, &str)>,
        #[case] equal: bool,
    ) {
        assert_eq!(from_map(left) == from_map(right), equal);
    }

    #[rstest]
    #[case::lower(
        "67e55044-10b1-426f-9247-bb680e5fe0c8",
        Some("67e55044-10b1-426f-9247-bb680e5fe0c8")
    )]
    #[case::upper(
        "67E55044-10B1-426F-9247-BB680E5FE0C8",
        Some("67e55044-10b1-426f-9247-bb680e5fe0c8")
    )]
    #[case::nil(
        "00000000-0000-0000-0000-000000000000",
        Some("00000000-0000-0000-0000-000000000000")
    )]
    #[case::simple_form("67e5504410b1426f9247bb680e5fe0c8", None)]
    #[case::braces("{67e55044-10b1-426f-9247-bb680e5fe0c8}", None)]
    #[case::hyphen_misplaced("67e5504-410b1-426f-9247-bb680e5fe0c8", None)]
    #[case::not_hex("67e55044-10b1-426f-9247-bb680e5fe0cg", None)]
    #[case::too_long("67e55044-10b1-426f-9247-bb680e5fe0c80", None)]
    #[case::multibyte("67e55044-10b1-426f-9247-bb680e5fe0é", None)]
    #[case::empty("", None)]
    fn canonical_uuid_accepts_only_the_hyphenated_form(
        #[case] text: &str,
        #[case] expected: Option<&str>,
    ) {
        assert_eq!(canonical_uuid(text).as_deref(), expected);
    }

    #[test]
    fn parts_and_maps_never_collide() {
        assert_ne!(from_parts(["a", "b"]), from_map([("a", "b")]));
    }

    #[test]
    fn from_file_hashes_content_as_b3sum_does() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"hello").unwrap();
        assert_eq!(
            from_file(file.path()).unwrap(),
            blake3::hash(b"hello").to_hex().to_string()
        );
    }

    #[test]
    fn from_file_names_a_missing_path() {
        let err = from_file(Path::new("/definitely/not/here")).unwrap_err();
        assert!(err.to_string().contains("/definitely/not/here"), "{err}");
    }
}
