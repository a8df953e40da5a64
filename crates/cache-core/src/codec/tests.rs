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
            schema_version: 0x0403_0201,
        },
        created_ms: 0x1817_1615_1413_1211,
        expires_ms: Some(0x2827_2625_2423_2221),
    };
    let key = b"some key";
    let payload = BlobRef {
        hash: [0xab; 32],
        len: 0x3837_3635_3433_3231,
    }
    .encode();
    let bytes = header.encode_with(key, &payload);

    assert_eq!(ENTRY_HEADER_LEN, 26);
    assert_eq!(bytes.len(), 26 + 40);
    assert_eq!(
        bytes[0], 8,
        "offset 0: kind (7 inline, 8 blob, 9 directory)"
    );
    assert_eq!(bytes[1], 1, "offset 1: codec (0 raw, 1 bincode 2)");
    assert_eq!(
        bytes[2..6],
        [0x01, 0x02, 0x03, 0x04],
        "offset 2: schema, u32 LE"
    );
    assert_eq!(
        bytes[6..14],
        [0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18],
        "offset 6: created ms, u64 LE"
    );
    assert_eq!(
        bytes[14..22],
        [0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28],
        "offset 14: expires ms, u64 LE"
    );
    let seed = xxhash_rust::xxh3::xxh3_64_with_seed(key, key.len() as u64);
    let seed = xxhash_rust::xxh3::xxh3_64_with_seed(&bytes[..22], seed);
    let checksum = xxhash_rust::xxh3::xxh3_64_with_seed(&bytes[26..], seed);
    assert_eq!(
        bytes[22..26],
        checksum.to_le_bytes()[..4],
        "offset 22: low 32 bits of XXH3-64 chained over key (seed: its length), bytes 0..22 \
         and payload, u32 LE"
    );
    assert_eq!(bytes[26..58], [0xab; 32], "blob payload: blake3 hash");
    assert_eq!(
        bytes[58..66],
        [0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38],
        "blob payload: length, u64 LE"
    );

    // Never expires: 0. An expiry at the epoch itself: 1.
    let never = EntryHeader {
        expires_ms: None,
        ..header
    };
    assert_eq!(never.encode_with(key, b"")[14..22], [0; 8]);
    let epoch = EntryHeader {
        expires_ms: Some(0),
        ..header
    };
    assert_eq!(epoch.encode_with(key, b"")[14..22], 1u64.to_le_bytes());

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

#[test]
fn every_changed_bit_and_every_other_key_fails_the_checksum() {
    let header = EntryHeader {
        kind: EntryKind::Directory,
        format: ValueFormat::typed(3),
        created_ms: 1_700_000_000_000,
        expires_ms: None,
    };
    let bytes = header.encode_with(b"key", b"payload");
    for at in 0..bytes.len() {
        for bit in 0..8 {
            let mut changed = bytes.clone();
            changed[at] ^= 1 << bit;
            assert!(
                EntryHeader::decode(b"key", &changed).is_err(),
                "bit {bit} of byte {at}"
            );
        }
    }
    for other in [&b"kez"[..], b"ke", b"key\0", b""] {
        assert_eq!(
            EntryHeader::decode(other, &bytes),
            Err(EntryDecodeError::Corrupt("checksum mismatch"))
        );
    }
    assert_eq!(EntryHeader::parse(&bytes).unwrap().0, header);
}

/// An entry as versions before XXH3 wrote it: kind bytes 4 to 6, a CRC-32 of the key's
/// length (u64 LE), the key, the header and the payload.
fn crc32_entry(kind: u8, key: &[u8], header: &EntryHeader, payload: &[u8]) -> Vec<u8> {
    let mut bytes = header.encode_with(key, payload);
    bytes[0] = kind;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&(key.len() as u64).to_le_bytes());
    crc.update(key);
    crc.update(&bytes[..CHECKSUM_AT]);
    crc.update(payload);
    bytes[CHECKSUM_AT..ENTRY_HEADER_LEN].copy_from_slice(&crc.finalize().to_le_bytes());
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
        let bytes = crc32_entry(byte, b"key", &header, b"payload");
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
fn an_entry_of_the_format_without_checksums_reads_as_damaged() {
    let mut bytes = EntryHeader {
        kind: EntryKind::Inline,
        format: ValueFormat::RAW,
        created_ms: 5,
        expires_ms: None,
    }
    .encode_with(b"k", b"value");
    bytes[0] = 1;
    bytes.drain(CHECKSUM_AT..ENTRY_HEADER_LEN);
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
    for len in 0..ENTRY_HEADER_LEN + 2 {
        for fill in [0u8, 1, 2, 0xff] {
            let bytes = vec![fill; len];
            let _ = EntryHeader::decode(b"k", &bytes);
        }
    }
    assert_eq!(
        EntryHeader::decode(b"k", &[10]),
        Err(EntryDecodeError::NewerFormat(10))
    );
    assert!(matches!(
        EntryHeader::decode(b"k", &[4, 7, 0]),
        Err(EntryDecodeError::Corrupt(_))
    ));
}
