//! Fuzz target: the entry parser and checksummed decoder on arbitrary stored bytes, and
//! encode-then-decode of arbitrary header fields and payload.

#![no_main]

use cache_core::ValueFormat;
use cache_core::fuzzing::{CODECS, EntryFields, KINDS, check_entry_bytes, check_entry_round_trip};
use libfuzzer_sys::fuzz_target;

/// Reads header fields from the front of `data`: kind and codec (one byte), schema, created, expires (0 and 1 both
/// mean "never", since `Some(0)` is not representable), and returns the rest as the payload.
fn fields_and_payload(data: &[u8]) -> Option<(EntryFields, &[u8])> {
    let (head, payload) = data.split_at_checked(1 + 4 + 8 + 8)?;
    let word = |at: usize, len: usize| {
        let mut bytes = [0u8; 8];
        bytes[..len].copy_from_slice(&head[at..at + len]);
        u64::from_le_bytes(bytes)
    };
    let expires = word(13, 8);
    let fields = EntryFields {
        kind: KINDS[usize::from(head[0] >> 4) % KINDS.len()],
        format: ValueFormat {
            codec: CODECS[usize::from(head[0] & 0x0f) % CODECS.len()],
            schema_version: word(1, 4) as u32,
        },
        created_ms: word(5, 8),
        expires_ms: (expires > 1).then_some(expires),
    };
    Some((fields, payload))
}

/// The key every input is stored under: the checksum covers it.
const KEY: &[u8] = b"fuzz";

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = check_entry_bytes(KEY, data) {
        panic!("{violation}");
    }
    if let Some((fields, payload)) = fields_and_payload(data)
        && let Err(violation) = check_entry_round_trip(KEY, &fields, payload)
    {
        panic!("{violation}");
    }
});
