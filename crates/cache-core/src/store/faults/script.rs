//! The scripts of the in-process fault suite (`faults/tests.rs`): a tiny seeded generator,
//! the operations it picks, and the model they are checked against.

use std::collections::BTreeMap;

/// The tag every run stores.
pub(super) const TAG: &str = "faults";
/// Keys the scripts use: few, so that writes overwrite, delete and release each other's blobs.
pub(super) const KEY_COUNT: u64 = 6;
/// Values above this go to blob files.
pub(super) const BLOB_THRESHOLD: u64 = 512;
/// Operations per script.
pub(super) const SCRIPT_LEN: usize = 36;
/// The script every default run uses.
pub(super) const SEED: u64 = 0x5EED_FA17_2026;
/// A latched fault is cleared this many operations after its first failure.
pub(super) const LATCHED_FOR_OPS: usize = 4;

/// xorshift64*: a tiny deterministic generator, enough to pick operations.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(super) fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// One operation of a script. Values are fixed by the script, so every run writes the same.
#[derive(Clone)]
pub(super) enum Op {
    Set(Vec<u8>, Vec<u8>),
    SetMany(Vec<(Vec<u8>, Vec<u8>)>),
    Delete(Vec<u8>),
    Clear,
    Get(Vec<u8>),
    Keys,
    Flush,
}

/// Keys by name and values by length, for messages.
impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = |key: &[u8]| String::from_utf8_lossy(key).into_owned();
        match self {
            Op::Set(k, value) => write!(f, "set {} ({} bytes)", key(k), value.len()),
            Op::SetMany(items) => {
                let items: Vec<String> = items
                    .iter()
                    .map(|(k, value)| format!("{} ({} bytes)", key(k), value.len()))
                    .collect();
                write!(f, "set_many {}", items.join(", "))
            }
            Op::Delete(k) => write!(f, "delete {}", key(k)),
            Op::Clear => f.write_str("clear"),
            Op::Get(k) => write!(f, "get {}", key(k)),
            Op::Keys => f.write_str("keys"),
            Op::Flush => f.write_str("flush"),
        }
    }
}

pub(super) fn key(index: u64) -> Vec<u8> {
    format!("key-{index}").into_bytes()
}

/// A small (inline) value, distinct for every operation and key.
pub(super) fn small_value(op: usize, key: u64, rng: &mut Rng) -> Vec<u8> {
    let len = 8 + rng.below(300) as usize;
    let mut value = format!("op{op}-key{key}-").into_bytes();
    value.resize(len, b'a' + (op % 26) as u8);
    value
}

/// A large value (a blob file), one of a few contents, so that keys share blobs.
pub(super) fn large_value(rng: &mut Rng) -> Vec<u8> {
    let content = rng.below(4);
    let len = BLOB_THRESHOLD as usize + 1 + content as usize * 700;
    (0..len)
        .map(|index| (index as u64 * 31 + content * 7) as u8)
        .collect()
}

/// The operations of the script of `seed`.
pub(super) fn script(seed: u64, len: usize) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    (0..len)
        .map(|op| {
            let index = rng.below(KEY_COUNT);
            match rng.below(100) {
                0..=24 => Op::Set(key(index), small_value(op, index, &mut rng)),
                25..=39 => Op::Set(key(index), large_value(&mut rng)),
                40..=49 => {
                    let mut items = Vec::new();
                    for offset in 0..2 + rng.below(2) {
                        let index = (index + offset) % KEY_COUNT;
                        let value = if rng.below(3) == 0 {
                            large_value(&mut rng)
                        } else {
                            small_value(op, index, &mut rng)
                        };
                        items.push((key(index), value));
                    }
                    Op::SetMany(items)
                }
                50..=62 => Op::Delete(key(index)),
                63..=65 => Op::Clear,
                66..=77 => Op::Get(key(index)),
                78..=83 => Op::Keys,
                _ => Op::Flush,
            }
        })
        .collect()
}

/// What a key may read as: the value of its last acknowledged write, and the values of writes
/// that failed since (each may or may not have happened).
#[derive(Clone, Debug)]
pub(super) struct Model {
    pub(super) allowed: BTreeMap<Vec<u8>, Vec<Option<Vec<u8>>>>,
}

impl Model {
    pub(super) fn new() -> Model {
        Model {
            allowed: (0..KEY_COUNT)
                .map(|index| (key(index), vec![None]))
                .collect(),
        }
    }

    pub(super) fn acknowledged(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        self.allowed.insert(key.to_vec(), vec![value]);
    }

    pub(super) fn failed(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        let allowed = self.allowed.entry(key.to_vec()).or_default();
        if !allowed.contains(&value) {
            allowed.push(value);
        }
    }

    pub(super) fn allows(&self, key: &[u8], value: &Option<Vec<u8>>) -> bool {
        self.allowed
            .get(key)
            .is_some_and(|allowed| allowed.contains(value))
    }

    pub(super) fn may_be_present(&self, key: &[u8]) -> bool {
        self.allowed
            .get(key)
            .is_some_and(|allowed| allowed.iter().any(Option::is_some))
    }

    pub(super) fn may_be_absent(&self, key: &[u8]) -> bool {
        self.allows(key, &None)
    }
}

pub(super) fn describe(value: &Option<Vec<u8>>) -> String {
    match value {
        None => "absent".to_owned(),
        Some(bytes) => format!(
            "{} bytes starting {:?}",
            bytes.len(),
            &bytes[..bytes.len().min(12)]
        ),
    }
}
