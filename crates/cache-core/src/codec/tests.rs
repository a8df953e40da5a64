//! Unit tests of the codec and the entry format: round trips, the documented bytes, damage
//! caught (both checksums), odd input.

use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Sample {
    name: String,
    size: u64,
    tags: Vec<String>,
}

#[test]
fn codec_round_trips_a_struct() {
    let sample = Sample {
        name: "glove80".into(),
        size: 42,
        tags: vec!["a".into(), String::new()],
    };
    let bytes = encode(&sample).unwrap();
    assert_eq!(decode::<Sample>(&bytes).unwrap(), sample);
}

#[test]
fn codec_refuses_trailing_bytes_and_garbage() {
    let mut bytes = encode(&7u32).unwrap();
    bytes.push(0);
    assert!(decode::<u32>(&bytes).is_err());
    assert!(decode::<Sample>(&[0xff; 9]).is_err());
}

#[test]
fn codec_refuses_a_huge_claimed_length_without_allocating_it() {
    // A varint length of u64::MAX followed by nothing.
    let bytes = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    assert!(decode::<Vec<u8>>(&bytes).is_err());
}

#[test]
fn entry_header_round_trips() {
    let header = EntryHeader {
        kind: EntryKind::Inline,
        format: ValueFormat::typed(3),
        created_ms: 1_700_000_000_000,
        expires_ms: Some(1_700_000_360_000),
    };
    let bytes = header.encode_with(b"key", b"payload");
    let (decoded, payload) = EntryHeader::decode(b"key", &bytes).unwrap();
    assert_eq!(decoded, header);
    assert_eq!(payload, b"payload");
}

/// The entry format byte by byte, as `docs/design.md` ("Entry") states it. Changing any
/// offset or width here changes the on-disk format: bump the kind bytes and update the doc.
#[test]
fn entry_bytes_are_the_documented_ones() {
    let header = EntryHeader {
        kind: EntryKind::Blob,
        format: ValueFormat {
            codec: CodecId::Bincode2,
            schema_version: 300,
        },
        created_ms: 1_700_000_000_000,
        expires_ms: Some(1_700_000_360_000),
    };
    let key = b"some key";
    let payload = BlobRef {
        hash: [0xab; 32],
        len: 0x3837_3635_3433_3231,
    }
    .encode();
    let bytes = header.encode_with(key, &payload);

    assert_eq!(header.encoded_len(), 1 + 1 + 2 + 6 + 6 + 4);
    assert_eq!(bytes.len(), header.encoded_len() + 40);
    assert_eq!(
        bytes[0], 11,
        "offset 0: kind (10 inline, 11 blob, 12 directory)"
    );
    assert_eq!(bytes[1], 1, "offset 1: codec (0 raw, 1 bincode 2)");
    assert_eq!(bytes[2..4], [0xac, 0x02], "offset 2: schema, LEB128");
    assert_eq!(
        bytes[4..10],
        [0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31],
        "then created ms, LEB128"
    );
    assert_eq!(
        bytes[10..16],
        [0xc0, 0xcc, 0xab, 0xff, 0xbc, 0x31],
        "then expires ms, LEB128"
    );
    let seed = xxhash_rust::xxh3::xxh3_64_with_seed(key, key.len() as u64);
    let seed = xxhash_rust::xxh3::xxh3_64_with_seed(&bytes[..16], seed);
    let checksum = xxhash_rust::xxh3::xxh3_64_with_seed(&bytes[20..], seed);
    assert_eq!(
        bytes[16..20],
        checksum.to_le_bytes()[..4],
        "then the low 32 bits of XXH3-64 chained over key (seed: its length), the header \
         bytes before the checksum and payload, u32 LE"
    );
    assert_eq!(bytes[20..52], [0xab; 32], "blob payload: blake3 hash");
    assert_eq!(
        bytes[52..60],
        [0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38],
        "blob payload: length, u64 LE"
    );

    // Never expires: 0. An expiry at the epoch itself: 1.
    let never = EntryHeader {
        expires_ms: None,
        ..header
    };
    assert_eq!(never.encode_with(key, b"")[10], 0);
    assert_eq!(never.encoded_len(), 15);
    let epoch = EntryHeader {
        expires_ms: Some(0),
        ..header
    };
    assert_eq!(epoch.encode_with(key, b"")[10], 1);

    // A directory entry's payload: size u64 LE, name length u8, name, then the value.
    let directory = DirRef {
        name: "0123456789abcdef0123456789abcdef",
        size: 0x4847_4645_4443_4241,
    }
    .encode_with(b"value");
    assert_eq!(
        directory[..8],
        [0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48]
    );
    assert_eq!(directory[8], 32);
    assert_eq!(&directory[9..41], b"0123456789abcdef0123456789abcdef");
    assert_eq!(&directory[41..], b"value");
}

/// A typical entry today: raw or a small schema version, created now (2026), no expiry.
fn typical_header(kind: EntryKind) -> EntryHeader {
    EntryHeader {
        kind,
        format: ValueFormat::typed(3),
        created_ms: 1_764_500_000_000,
        expires_ms: None,
    }
}

#[test]
fn the_compact_header_round_trips_typical_and_extreme_values_and_a_typical_one_is_14_bytes() {
    let typical = typical_header(EntryKind::Inline);
    assert_eq!(typical.encoded_len(), 14, "1 + 1 + 1 + 6 + 1 + 4");
    assert_eq!(typical.encode_with(b"key", &[7; 100]).len(), 114);
    let extreme = EntryHeader {
        kind: EntryKind::Directory,
        format: ValueFormat {
            codec: CodecId::Raw,
            schema_version: u32::MAX,
        },
        created_ms: u64::MAX,
        expires_ms: Some(u64::MAX),
    };
    assert_eq!(extreme.encoded_len(), ENTRY_HEADER_MAX_LEN);
    assert_eq!(ENTRY_HEADER_MAX_LEN, 31);
    let headers = [
        typical,
        extreme,
        EntryHeader {
            expires_ms: Some(1),
            ..extreme
        },
        EntryHeader {
            expires_ms: None,
            created_ms: 0,
            ..extreme
        },
        EntryHeader {
            kind: EntryKind::Blob,
            format: ValueFormat::RAW,
            created_ms: 127,
            expires_ms: Some(128),
        },
    ];
    for header in headers {
        for payload in [&b""[..], b"payload", &[0xff; 300]] {
            let bytes = header.encode_with(b"key", payload);
            assert_eq!(bytes.len(), header.encoded_len() + payload.len());
            assert!(bytes.len() - payload.len() <= ENTRY_HEADER_MAX_LEN);
            assert_eq!(
                EntryHeader::decode(b"key", &bytes),
                Ok((header, payload)),
                "{header:?}"
            );
            assert_eq!(EntryHeader::parse(&bytes), Ok((header, payload)));
        }
    }
}

#[test]
fn varint_lengths_are_the_encoded_ones_at_every_boundary() {
    for value in [
        0,
        1,
        127,
        128,
        16_383,
        16_384,
        u64::from(u32::MAX),
        u64::MAX,
    ] {
        let mut out = Vec::new();
        push_varint(&mut out, value);
        assert_eq!(out.len(), varint_len(value), "{value}");
        let mut at = 0;
        assert_eq!(read_varint(&out, &mut at, u64::MAX), Ok(value));
        assert_eq!(at, out.len());
    }
}

/// Checks that flipping any one bit of the entry `bytes` under `key` makes it unreadable.
fn assert_every_changed_bit_fails(key: &[u8], bytes: &[u8], what: &str) {
    for at in 0..bytes.len() {
        for bit in 0..8 {
            let mut changed = bytes.to_vec();
            changed[at] ^= 1 << bit;
            assert!(
                EntryHeader::decode(key, &changed).is_err(),
                "{what}, bit {bit} of byte {at}"
            );
        }
    }
}

#[test]
fn every_changed_bit_and_every_other_key_fails_the_checksum() {
    for kind in [EntryKind::Inline, EntryKind::Blob, EntryKind::Directory] {
        for expires_ms in [None, Some(1_764_500_360_000)] {
            let header = EntryHeader {
                expires_ms,
                ..typical_header(kind)
            };
            let bytes = header.encode_with(b"key", b"payload");
            assert_every_changed_bit_fails(b"key", &bytes, &format!("{kind:?}"));
            for other in [&b"kez"[..], b"ke", b"key\0", b""] {
                assert_eq!(
                    EntryHeader::decode(other, &bytes),
                    Err(EntryDecodeError::Corrupt("checksum mismatch"))
                );
            }
            assert_eq!(EntryHeader::parse(&bytes).unwrap().0, header);
        }
    }
}

#[test]
fn every_truncation_of_an_entry_is_refused_without_a_panic() {
    let kinds = [EntryKind::Inline, EntryKind::Blob, EntryKind::Directory];
    for (kind, header) in kinds.into_iter().flat_map(|kind| {
        [
            typical_header(kind),
            EntryHeader {
                format: ValueFormat::typed(u32::MAX),
                created_ms: u64::MAX,
                expires_ms: Some(u64::MAX),
                kind,
            },
        ]
        .map(|header| (kind, header))
    }) {
        let mut entries = vec![header.encode_with(b"key", b"payload")];
        for (byte, checksum) in [(4, Checksum::Crc32), (7, Checksum::Xxh3)] {
            let byte = byte + kinds.iter().position(|k| *k == kind).unwrap() as u8;
            entries.push(fixed_entry(byte, checksum, b"key", &header, b"payload"));
        }
        for bytes in entries {
            assert!(EntryHeader::decode(b"key", &bytes).is_ok());
            let header_len = bytes.len() - b"payload".len();
            for len in 0..bytes.len() {
                let cut = &bytes[..len];
                let decoded = EntryHeader::decode(b"key", cut);
                assert!(
                    matches!(decoded, Err(EntryDecodeError::Corrupt(_))),
                    "kind {}, cut to {len}: {decoded:?}",
                    bytes[0]
                );
                if len < header_len {
                    assert!(
                        EntryHeader::parse(cut).is_err(),
                        "kind {}, cut to {len} inside the header",
                        bytes[0]
                    );
                }
            }
        }
    }
}

/// A compact entry (kind 10, raw codec) whose fields after the codec byte are `fields` as given
/// (well formed or not), with a valid checksum: what the decoder refuses here it refuses for the
/// varints, not the checksum.
fn compact_entry_by_hand(fields: &[u8]) -> Vec<u8> {
    let mut bytes = vec![10, 0];
    bytes.extend_from_slice(fields);
    let checksum = entry_checksum(Checksum::Xxh3, b"k", &bytes, b"value");
    bytes.extend_from_slice(&checksum.to_le_bytes());
    bytes.extend_from_slice(b"value");
    bytes
}

#[test]
fn overlong_overflowing_and_cut_short_varints_are_corrupt() {
    // Well formed by hand: schema u32::MAX, created u64::MAX, never expires.
    let max_u32 = [0xff, 0xff, 0xff, 0xff, 0x0f];
    let max_u64 = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    let good = compact_entry_by_hand(&[&max_u32[..], &max_u64, &[0]].concat());
    let (header, value) = EntryHeader::decode(b"k", &good).unwrap();
    assert_eq!(
        (
            header.format.schema_version,
            header.created_ms,
            header.expires_ms
        ),
        (u32::MAX, u64::MAX, None)
    );
    assert_eq!(value, b"value");

    let overlong = Some(EntryDecodeError::Corrupt(
        "overlong varint in the entry header",
    ));
    let too_large = Some(EntryDecodeError::Corrupt(
        "varint too large for its header field",
    ));
    let cases: [(&[&[u8]], _); 8] = [
        // 0 in two bytes, in each field.
        (&[&[0x80, 0x00], &[1], &[0]], overlong.clone()),
        (&[&[3], &[0x81, 0x00], &[0]], overlong.clone()),
        (&[&[3], &[1], &[0x80, 0x80, 0x00]], overlong.clone()),
        // u32::MAX + 1 as a schema; u64::MAX + 1 and far beyond as times.
        (
            &[&[0x80, 0x80, 0x80, 0x80, 0x10], &[1], &[0]],
            too_large.clone(),
        ),
        (
            &[&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], &[1], &[0]],
            too_large.clone(),
        ),
        (
            &[
                &[3],
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                &[0],
            ],
            too_large.clone(),
        ),
        (&[&[3], &[1], &[0xff; 11], &[0x01]], too_large.clone()),
        (&[&[3], &[1], &[0x80; 10], &[0x01]], too_large.clone()),
    ];
    for (fields, expected) in cases {
        let bytes = compact_entry_by_hand(&fields.concat());
        assert_eq!(
            EntryHeader::decode(b"k", &bytes).err(),
            expected,
            "{fields:?}"
        );
        assert_eq!(EntryHeader::parse(&bytes).err(), expected, "{fields:?}");
    }

    // Cut short: a varint that runs past the end, and a checksum cut short.
    let short = Some(EntryDecodeError::Corrupt("entry shorter than its header"));
    for bytes in [
        &[10][..],
        &[10, 0],
        &[10, 0, 0x80],
        &[10, 0, 3, 0xff, 0xff],
        &[10, 0, 3, 1, 0x80],
        &[10, 0, 3, 1, 0],
        &[10, 0, 3, 1, 0, 1, 2, 3],
    ] {
        assert_eq!(EntryHeader::decode(b"k", bytes).err(), short, "{bytes:?}");
        assert_eq!(EntryHeader::parse(bytes).err(), short, "{bytes:?}");
    }
}

#[test]
fn a_kind_byte_past_12_is_a_newer_format() {
    assert_eq!(NEWEST_ENTRY_FORMAT, 12);
    let mut bytes = typical_header(EntryKind::Inline).encode_with(b"k", b"value");
    for kind in [13, 14, 0xff] {
        bytes[0] = kind;
        assert_eq!(
            EntryHeader::decode(b"k", &bytes),
            Err(EntryDecodeError::NewerFormat(kind))
        );
        assert_eq!(
            EntryHeader::decode(b"k", &[kind]),
            Err(EntryDecodeError::NewerFormat(kind))
        );
    }
}

/// An entry with the fixed 26-byte header earlier versions wrote, built by hand: `kind` (4 to 6
/// with a CRC-32 of the key's length (u64 LE), the key, the header and the payload; 7 to 9 with
/// the chained XXH3 the compact entries use), schema u32, created and expires u64, LE.
fn fixed_entry(
    kind: u8,
    checksum: Checksum,
    key: &[u8],
    header: &EntryHeader,
    payload: &[u8],
) -> Vec<u8> {
    let mut bytes = vec![kind, header.format.codec.to_byte()];
    bytes.extend_from_slice(&header.format.schema_version.to_le_bytes());
    bytes.extend_from_slice(&header.created_ms.to_le_bytes());
    bytes.extend_from_slice(&header.expires_ms.map_or(0, |ms| ms.max(1)).to_le_bytes());
    assert_eq!(bytes.len(), FIXED_CHECKSUM_AT);
    let sum = match checksum {
        Checksum::Crc32 => {
            let mut crc = crc32fast::Hasher::new();
            crc.update(&(key.len() as u64).to_le_bytes());
            crc.update(key);
            crc.update(&bytes);
            crc.update(payload);
            crc.finalize()
        }
        Checksum::Xxh3 => {
            let seed = xxhash_rust::xxh3::xxh3_64_with_seed(key, key.len() as u64);
            let seed = xxhash_rust::xxh3::xxh3_64_with_seed(&bytes, seed);
            xxhash_rust::xxh3::xxh3_64_with_seed(payload, seed) as u32
        }
    };
    bytes.extend_from_slice(&sum.to_le_bytes());
    assert_eq!(bytes.len(), FIXED_HEADER_LEN);
    bytes.extend_from_slice(payload);
    bytes
}

#[test]
fn entries_written_with_a_crc32_still_read_and_their_damage_is_still_caught() {
    for (byte, kind) in [
        (4, EntryKind::Inline),
        (5, EntryKind::Blob),
        (6, EntryKind::Directory),
    ] {
        let header = EntryHeader {
            kind,
            format: ValueFormat::typed(2),
            created_ms: 1_700_000_000_000,
            expires_ms: Some(1_700_000_360_000),
        };
        let bytes = fixed_entry(byte, Checksum::Crc32, b"key", &header, b"payload");
        assert_eq!(
            EntryHeader::decode(b"key", &bytes),
            Ok((header, &b"payload"[..]))
        );
        for at in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[at] ^= 0x10;
            assert!(
                EntryHeader::decode(b"key", &changed).is_err(),
                "kind {byte}, byte {at}"
            );
        }
        assert!(EntryHeader::decode(b"kez", &bytes).is_err());
        // The same bytes under the XXH3 kind byte: the checksum no longer matches.
        let mut relabelled = bytes.clone();
        relabelled[0] = byte + 3;
        assert_eq!(
            EntryHeader::decode(b"key", &relabelled),
            Err(EntryDecodeError::Corrupt("checksum mismatch"))
        );
    }
}

#[test]
fn entries_of_the_fixed_xxh3_format_still_read_and_their_damage_is_still_caught() {
    for (byte, kind) in [
        (7, EntryKind::Inline),
        (8, EntryKind::Blob),
        (9, EntryKind::Directory),
    ] {
        for expires_ms in [Some(1_764_500_360_000), None] {
            let header = EntryHeader {
                expires_ms,
                ..typical_header(kind)
            };
            let bytes = fixed_entry(byte, Checksum::Xxh3, b"key", &header, b"payload");
            assert_eq!(
                EntryHeader::decode(b"key", &bytes),
                Ok((header, &b"payload"[..]))
            );
            assert_eq!(EntryHeader::parse(&bytes), Ok((header, &b"payload"[..])));
            assert_every_changed_bit_fails(b"key", &bytes, &format!("kind {byte}"));
            assert_eq!(
                EntryHeader::decode(b"kez", &bytes),
                Err(EntryDecodeError::Corrupt("checksum mismatch"))
            );
            // The same bytes under the compact kind byte read as other fields: refused.
            let mut relabelled = bytes.clone();
            relabelled[0] = byte + 3;
            assert!(EntryHeader::decode(b"key", &relabelled).is_err());
        }
    }
}

#[test]
fn an_entry_of_the_format_without_checksums_reads_as_damaged() {
    let header = EntryHeader {
        kind: EntryKind::Inline,
        format: ValueFormat::RAW,
        created_ms: 5,
        expires_ms: None,
    };
    let mut bytes = fixed_entry(1, Checksum::Crc32, b"k", &header, b"value");
    bytes.drain(FIXED_CHECKSUM_AT..FIXED_HEADER_LEN);
    assert_eq!(
        EntryHeader::decode(b"k", &bytes),
        Err(EntryDecodeError::Corrupt("entry without a checksum"))
    );
}

#[test]
fn entry_without_expiry_and_empty_payload_round_trips() {
    let header = EntryHeader {
        kind: EntryKind::Inline,
        format: ValueFormat::RAW,
        created_ms: 5,
        expires_ms: None,
    };
    let bytes = header.encode_with(b"k", b"");
    assert_eq!(
        EntryHeader::decode(b"k", &bytes).unwrap(),
        (header, &b""[..])
    );
}

#[test]
fn entry_decoder_never_panics_on_short_or_odd_input() {
    for len in 0..FIXED_HEADER_LEN.max(ENTRY_HEADER_MAX_LEN) + 2 {
        for fill in [0u8, 1, 2, 0x7f, 0x80, 0xff] {
            for kind in [None, Some(4), Some(7), Some(10), Some(12)] {
                let mut bytes = vec![fill; len];
                if let (Some(kind), Some(first)) = (kind, bytes.first_mut()) {
                    *first = kind;
                }
                let _ = EntryHeader::decode(b"k", &bytes);
                let _ = EntryHeader::parse(&bytes);
            }
        }
    }
    assert!(matches!(
        EntryHeader::decode(b"k", &[4, 7, 0]),
        Err(EntryDecodeError::Corrupt(_))
    ));
}
