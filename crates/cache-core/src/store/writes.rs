//! [`Writes`]: a set of buffered writes keyed by cache key (the write buffer's `pending` and
//! `in_flight`, `buffer.rs`), with the bytes of all its keys and entries in one growing vector
//! and a hash table of where each is.
//!
//! Why not a `HashMap<Vec<u8>, Option<Vec<u8>>>`: a set then cost two allocations (key and
//! entry) in the writing thread and two frees in the commit thread that drops the batch; with
//! 10 000 writes a commit, those frees (across threads, in the allocator's shared arena) took a
//! tenth of the commit thread's time, and growing the map rehashed every key. Here a write is
//! an append, and a batch is freed as two allocations.
//!
//! A key written again leaves its earlier bytes in place (unreachable) until the batch is
//! committed: [`Writes::stored_len`] counts them, so the buffer's bound on pending bytes bounds
//! them too.

use std::hash::BuildHasher;

use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashTable};

/// Where one write's bytes are in [`Writes::bytes`]: the key at `at`, then the entry.
#[derive(Clone, Copy, Debug)]
struct Slot {
    at: usize,
    key_len: usize,
    /// The entry's length, or `None` for a deletion.
    entry_len: Option<usize>,
}

impl Slot {
    fn key<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        &bytes[self.at..self.at + self.key_len]
    }

    fn entry<'a>(&self, bytes: &'a [u8]) -> Option<&'a [u8]> {
        let start = self.at + self.key_len;
        self.entry_len.map(|len| &bytes[start..start + len])
    }

    fn live_len(&self) -> usize {
        self.key_len + self.entry_len.unwrap_or(0)
    }
}

/// Buffered writes: for each key, the encoded entry to store, or a deletion.
#[derive(Default)]
pub(super) struct Writes {
    /// Keys and entries, appended; a rewritten key's earlier bytes stay until the batch goes.
    bytes: Vec<u8>,
    slots: HashTable<Slot>,
    hasher: DefaultHashBuilder,
    /// Bytes of the keys and entries still reachable.
    live_bytes: usize,
}

impl Writes {
    /// An empty set with room for `writes` writes of `bytes` bytes, so that a batch the size
    /// of the last grows neither its table nor its bytes.
    pub(super) fn with_capacity(writes: usize, bytes: usize) -> Writes {
        Writes {
            bytes: Vec::with_capacity(bytes),
            slots: HashTable::with_capacity(writes),
            ..Writes::default()
        }
    }

    /// How many keys have a write.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes of the keys and entries of the current writes.
    #[cfg(test)]
    pub(super) fn live_bytes(&self) -> usize {
        self.live_bytes
    }

    /// Bytes held, the earlier bytes of rewritten keys included.
    pub(super) fn stored_len(&self) -> usize {
        self.bytes.len()
    }

    /// The write of `key`: `Some(Some(entry))` to store, `Some(None)` to delete, `None` when
    /// there is none.
    pub(super) fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        // Every read asks the buffer first, and it is empty most of the time: no hashing then.
        if self.slots.is_empty() {
            return None;
        }
        let hash = self.hasher.hash_one(key);
        self.slots
            .find(hash, |slot| slot.key(&self.bytes) == key)
            .map(|slot| slot.entry(&self.bytes))
    }

    pub(super) fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Records a write of `key`: `entry` appends the encoded entry to the vector it is given
    /// (`None`: a deletion). Replaces an earlier write of the key.
    pub(super) fn insert_with(
        &mut self,
        key: &[u8],
        entry: Option<impl FnOnce(&mut Vec<u8>)>,
    ) -> usize {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(key);
        let entry_len = entry.map(|encode| {
            encode(&mut self.bytes);
            self.bytes.len() - at - key.len()
        });
        let slot = Slot {
            at,
            key_len: key.len(),
            entry_len,
        };
        let bytes = &self.bytes;
        let hasher = &self.hasher;
        let hash = hasher.hash_one(key);
        let replaced = match self.slots.entry(
            hash,
            |old| old.key(bytes) == key,
            |old| hasher.hash_one(old.key(bytes)),
        ) {
            Entry::Occupied(mut occupied) => {
                Some(std::mem::replace(occupied.get_mut(), slot).live_len())
            }
            Entry::Vacant(vacant) => {
                vacant.insert(slot);
                None
            }
        };
        self.live_bytes = self.live_bytes - replaced.unwrap_or(0) + slot.live_len();
        slot.live_len()
    }

    /// Records `entry` (or a deletion) under `key`, copying it.
    pub(super) fn insert(&mut self, key: &[u8], entry: Option<&[u8]>) {
        self.insert_with(
            key,
            entry.map(|entry| |out: &mut Vec<u8>| out.extend_from_slice(entry)),
        );
    }

    /// Every write, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.slots
            .iter()
            .map(|slot| (slot.key(&self.bytes), slot.entry(&self.bytes)))
    }

    /// Every write sorted by key: the order a commit applies them in, so that B-tree inserts
    /// of neighbouring keys find and rewrite each page once per run of keys rather than
    /// jumping across the tree in a hash table's order.
    ///
    /// Taken in the order they were written first (an integer sort), then sorted by key with a
    /// sort that finds runs already in order: a writer's keys often come in order, and then
    /// the key sort is one pass of comparisons instead of a full sort of a hash table's order.
    pub(super) fn in_key_order(&self) -> Vec<(&[u8], Option<&[u8]>)> {
        let mut slots: Vec<Slot> = self.slots.iter().copied().collect();
        slots.sort_unstable_by_key(|slot| slot.at);
        let mut sorted: Vec<_> = slots
            .iter()
            .map(|slot| (slot.key(&self.bytes), slot.entry(&self.bytes)))
            .collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        sorted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(writes: &mut Writes, key: &[u8], entry: Option<&[u8]>) {
        writes.insert(key, entry);
    }

    #[test]
    fn a_rewritten_key_reads_its_last_write_and_counts_once() {
        let mut writes = Writes::default();
        put(&mut writes, b"a", Some(b"first"));
        put(&mut writes, b"b", None);
        put(&mut writes, b"a", Some(b"second!"));
        assert_eq!(writes.len(), 2);
        assert_eq!(writes.get(b"a"), Some(Some(&b"second!"[..])));
        assert_eq!(writes.get(b"b"), Some(None));
        assert_eq!(writes.get(b"c"), None);
        assert_eq!(writes.live_bytes(), 1 + 7 + 1);
        // The first write's bytes stay until the batch goes, and are counted as held.
        assert_eq!(writes.stored_len(), 1 + 5 + 1 + 1 + 7);
        put(&mut writes, b"a", None);
        assert_eq!(writes.get(b"a"), Some(None));
        assert_eq!(writes.live_bytes(), 2);
    }

    #[test]
    fn many_writes_survive_the_table_growing() {
        let mut writes = Writes::default();
        for index in 0..10_000u32 {
            put(
                &mut writes,
                &index.to_be_bytes(),
                Some(&index.to_le_bytes()),
            );
        }
        for index in (0..10_000u32).step_by(2) {
            put(&mut writes, &index.to_be_bytes(), None);
        }
        assert_eq!(writes.len(), 10_000);
        for index in 0..10_000u32 {
            let expected = (index % 2 == 1).then(|| index.to_le_bytes());
            assert_eq!(
                writes.get(&index.to_be_bytes()),
                Some(expected.as_ref().map(|bytes| &bytes[..]))
            );
        }
    }

    #[test]
    fn writes_come_out_in_key_order() {
        let mut writes = Writes::with_capacity(4, 64);
        for key in [&b"delta"[..], b"alpha", b"charlie", b"bravo", b"alpha"] {
            put(&mut writes, key, Some(key));
        }
        let keys: Vec<&[u8]> = writes.in_key_order().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [&b"alpha"[..], b"bravo", b"charlie", b"delta"]);
    }
}
