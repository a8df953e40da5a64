//! Entry points for fuzzing and property tests: thin public wrappers over the crate-private entry
//! decoder and the input parsers, and the properties they must keep, as checks that report a
//! violation instead of panicking.
//!
//! Hidden from the documentation and not part of the API: no stability promise. Used by the
//! cargo-fuzz targets in `fuzz/` (nightly) and by `tests/tests/decoder.rs` (stable), so that both
//! check the same properties.

use std::path::{Component, Path};

use crate::codec::{BlobRef, DirRef, EntryDecodeError, EntryHeader, EntryKind};
use crate::error::KeyDisplay;
use crate::tag::Tag;
use crate::{CodecId, ValueFormat};

/// Where an entry's value lives (the header's first byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredKind {
    /// The value follows the header.
    Inline,
    /// A blob reference (hash and length) follows the header.
    Blob,
    /// A directory reference (size, name) and then the value follow the header.
    Directory,
}

/// Every kind, for generators.
pub const KINDS: [StoredKind; 3] = [StoredKind::Inline, StoredKind::Blob, StoredKind::Directory];

impl StoredKind {
    fn from_entry(kind: EntryKind) -> Self {
        match kind {
            EntryKind::Inline => StoredKind::Inline,
            EntryKind::Blob => StoredKind::Blob,
            EntryKind::Directory => StoredKind::Directory,
        }
    }

    fn to_entry(self) -> EntryKind {
        match self {
            StoredKind::Inline => EntryKind::Inline,
            StoredKind::Blob => EntryKind::Blob,
            StoredKind::Directory => EntryKind::Directory,
        }
    }
}

/// The fields of an entry header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryFields {
    /// Where the value lives.
    pub kind: StoredKind,
    /// Codec and schema version.
    pub format: ValueFormat,
    /// When the value was stored, in ms since the Unix epoch.
    pub created_ms: u64,
    /// When it expires; `None` never. `Some(0)` does not round-trip: 0 is stored for "never", so
    /// an expiry at the epoch is stored (and reads back) as `Some(1)`.
    pub expires_ms: Option<u64>,
}

/// Why stored bytes are not a readable entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryRejection {
    /// Written by a newer entry format: a miss, left in place.
    NewerFormat(u8),
    /// Damaged or not an entry: a miss, and removed.
    Corrupt(&'static str),
}

/// The codecs an entry can name, for generators.
pub const CODECS: [CodecId; 2] = [CodecId::Raw, CodecId::Bincode2];

fn fields_and_payload(
    decoded: Result<(EntryHeader, &[u8]), EntryDecodeError>,
) -> Result<(EntryFields, &[u8]), EntryRejection> {
    match decoded {
        Ok((header, payload)) => Ok((
            EntryFields {
                kind: StoredKind::from_entry(header.kind),
                format: header.format,
                created_ms: header.created_ms,
                expires_ms: header.expires_ms,
            },
            payload,
        )),
        Err(EntryDecodeError::NewerFormat(format)) => Err(EntryRejection::NewerFormat(format)),
        Err(EntryDecodeError::Corrupt(reason)) => Err(EntryRejection::Corrupt(reason)),
    }
}

/// Decodes the stored entry bytes of `key` into header fields and payload, verifying the
/// checksum, as every read that gives a value to a caller does.
pub fn decode_entry<'a>(
    key: &[u8],
    bytes: &'a [u8],
) -> Result<(EntryFields, &'a [u8]), EntryRejection> {
    fields_and_payload(EntryHeader::decode(key, bytes))
}

/// Splits stored bytes into header fields and payload without the checksum, as the store's
/// bookkeeping (what an entry owns, whether it expired) does.
pub fn parse_entry(bytes: &[u8]) -> Result<(EntryFields, &[u8]), EntryRejection> {
    fields_and_payload(EntryHeader::parse(bytes))
}

/// Encodes header fields and payload under `key` as the store does.
pub fn encode_entry(key: &[u8], fields: &EntryFields, payload: &[u8]) -> Vec<u8> {
    EntryHeader {
        kind: fields.kind.to_entry(),
        format: fields.format,
        created_ms: fields.created_ms,
        expires_ms: fields.expires_ms,
    }
    .encode_with(key, payload)
}

/// The decoder's properties on arbitrary `bytes` stored under `key`: parsing and decoding
/// return (a panic is the caller's to catch); the payload is the tail of the input; the blob or
/// directory reference a parsed payload holds either decodes to something that re-encodes to it,
/// or is refused (bookkeeping reads references without the checksum); and bytes of the format
/// this version writes that the verified decoder accepts are the one encoding of what it read,
/// so they re-encode to themselves and no two such byte strings decode to the same entry (bytes
/// of an earlier format re-encode to an entry that decodes the same).
pub fn check_entry_bytes(key: &[u8], bytes: &[u8]) -> Result<(), String> {
    if let Ok((fields, payload)) = parse_entry(bytes) {
        if !bytes.ends_with(payload) {
            return Err(format!(
                "the payload is not the tail of the input: {bytes:?}"
            ));
        }
        check_reference(fields.kind, payload)?;
    }
    let Ok((fields, payload)) = decode_entry(key, bytes) else {
        return Ok(());
    };
    let again = encode_entry(key, &fields, payload);
    if !EntryHeader::is_written_format(bytes) {
        // An entry of an earlier format (kinds 4 to 9) re-encodes in the one written now, to
        // the same entry.
        return match decode_entry(key, &again) {
            Ok((fields_again, payload_again))
                if fields_again == fields && payload_again == payload =>
            {
                Ok(())
            }
            other => Err(format!(
                "{bytes:?} decodes to {fields:?}, whose re-encoding decodes to {other:?}"
            )),
        };
    }
    if again != bytes {
        return Err(format!(
            "{bytes:?} decodes to {fields:?} + {} payload bytes, which encodes to {again:?}",
            payload.len()
        ));
    }
    Ok(())
}

/// A damaged copy of an entry stored under `key` never decodes: `damaged`, if it differs from
/// `original`, is refused (a CRC-32 misses one damage in 2^32 at random, and none of up to 3
/// changed bits or a burst of up to 32).
pub fn check_damage_detected(key: &[u8], original: &[u8], damaged: &[u8]) -> Result<(), String> {
    match decode_entry(key, damaged) {
        Ok((fields, payload)) if damaged != original => Err(format!(
            "damaged bytes {damaged:?} (from {original:?}) decode to {fields:?} + {payload:?}"
        )),
        _ => Ok(()),
    }
}

/// A payload's blob or directory reference decodes to something that encodes back to the
/// payload, or is refused; a directory reference never names anything but a plain hex name.
fn check_reference(kind: StoredKind, payload: &[u8]) -> Result<(), String> {
    match kind {
        StoredKind::Inline => Ok(()),
        StoredKind::Blob => match BlobRef::decode(payload) {
            Ok(blob) if blob.encode().as_slice() != payload => Err(format!(
                "blob reference {payload:?} decodes to {blob:?}, which encodes differently"
            )),
            _ => Ok(()),
        },
        StoredKind::Directory => match DirRef::decode(payload) {
            Ok((dir, value)) => {
                let components: Vec<Component<'_>> = Path::new(dir.name).components().collect();
                if !matches!(components.as_slice(), [Component::Normal(_)]) {
                    return Err(format!(
                        "directory name {:?} is not one component",
                        dir.name
                    ));
                }
                let again = dir.encode_with(value);
                if again != payload {
                    return Err(format!(
                        "directory reference {payload:?} re-encodes to {again:?}"
                    ));
                }
                Ok(())
            }
            Err(_) => Ok(()),
        },
    }
}

/// Encoding then decoding gives back the same fields and payload. `fields.expires_ms` must not be
/// `Some(0)` (see [`EntryFields::expires_ms`]).
pub fn check_entry_round_trip(
    key: &[u8],
    fields: &EntryFields,
    payload: &[u8],
) -> Result<(), String> {
    let bytes = encode_entry(key, fields, payload);
    match decode_entry(key, &bytes) {
        Ok((decoded, decoded_payload)) if decoded == *fields && decoded_payload == payload => {
            Ok(())
        }
        other => Err(format!(
            "{fields:?} + {} payload bytes decodes to {other:?}",
            payload.len()
        )),
    }
}

/// The tag parser's properties on `name`: it accepts exactly `[a-z0-9_-]{1,64}` but for the names
/// whose kill switch would be a configuration variable (`path`, `ttl_*`, ...), an accepted tag
/// reads back as given, and it is one plain path component (never `..`, `/`, a root or a prefix).
pub fn check_tag(name: &str) -> Result<(), String> {
    let well_formed = (1..=Tag::MAX_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|byte| matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
        && crate::tag::kill_switch_collision(&crate::tag::kill_switch_variable_of(name)).is_none();
    match Tag::new(name) {
        Ok(tag) if !well_formed => Err(format!("{name:?} was accepted as {tag:?}")),
        Ok(tag) if tag.as_str() != name => Err(format!("{name:?} reads back as {tag:?}")),
        Ok(tag) => {
            let components: Vec<Component<'_>> = Path::new(tag.as_str()).components().collect();
            match components.as_slice() {
                [Component::Normal(part)] if *part == tag.as_str() => Ok(()),
                _ => Err(format!("tag {name:?} is not one plain path component")),
            }
        }
        Err(_) if well_formed => Err(format!("{name:?} was refused")),
        Err(_) => Ok(()),
    }
}

/// The key renderer used in error messages: any bytes render, to a bounded length, so that a huge
/// or hostile key cannot flood a log line.
pub fn check_key_display(key: &[u8]) -> Result<(), String> {
    let shown = KeyDisplay::new(key).to_string();
    // 64 characters, each at most `\u{10ffff}` once escaped, plus quotes or `0x` and an ellipsis.
    if shown.chars().count() > 64 * 10 + 3 {
        return Err(format!(
            "a {}-byte key renders as {} characters",
            key.len(),
            shown.chars().count()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checks_hold_on_known_inputs_and_catch_a_violation() {
        let fields = EntryFields {
            kind: StoredKind::Inline,
            format: ValueFormat::typed(3),
            created_ms: 5,
            expires_ms: Some(9),
        };
        let bytes = encode_entry(b"k", &fields, b"payload");
        assert_eq!(check_entry_bytes(b"k", &bytes), Ok(()));
        assert_eq!(check_entry_round_trip(b"k", &fields, b"payload"), Ok(()));
        let mut damaged = bytes.clone();
        damaged[bytes.len() - 1] ^= 0x10;
        assert_eq!(check_damage_detected(b"k", &bytes, &damaged), Ok(()));
        assert!(check_damage_detected(b"other", &bytes, &bytes).is_ok());
        assert!(
            check_damage_detected(b"k", &[], &bytes).is_err(),
            "intact bytes passed off as damage are caught"
        );
        // Some(0) is the one unrepresentable header: the check says so.
        let never = EntryFields {
            expires_ms: Some(0),
            ..fields
        };
        assert!(check_entry_round_trip(b"k", &never, b"").is_err());
        assert_eq!(check_tag("thumbnails"), Ok(()));
        assert_eq!(check_tag("../etc"), Ok(()), "refused, as it must be");
        assert_eq!(
            check_tag("path"),
            Ok(()),
            "refused: its switch is the root variable"
        );
        assert_eq!(check_key_display(&[0xff; 10_000]), Ok(()));
    }
}
