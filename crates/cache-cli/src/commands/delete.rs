//! `delete`: remove keys of a tag, named on the command line, matching a glob, or listed in a
//! JSON file; `--dry-run` reports what would go and removes nothing.

use std::collections::HashSet;
use std::path::Path;

use std::io::Read as _;

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::Value;

use crate::cli::DeleteArgs;
use crate::commands::keys::KeyRow;
use crate::exit::{NotFound, UsageError};
use crate::output::Output;
use crate::render;
use crate::root::CacheRoot;

#[derive(Serialize)]
struct DeleteReport {
    tag: String,
    dry_run: bool,
    /// Keys that were live and are deleted (or, with `dry_run`, would be).
    deleted: Vec<KeyRow>,
    /// Keys named by `--keys` or `--json-file` that were not there.
    not_found: Vec<KeyRow>,
}

pub(crate) fn run(root: &CacheRoot, args: &DeleteArgs, output: &Output) -> anyhow::Result<()> {
    let tag = &args.tag;
    // Read the selection before opening the tag: a bad file changes nothing.
    let named = match &args.json_file {
        Some(path) => Some(keys_from_json_file(path)?),
        None if !args.keys.is_empty() => Some(
            args.keys
                .iter()
                .map(|key| key.as_bytes().to_vec())
                .collect(),
        ),
        None => None,
    };
    let cache = root.open_existing(tag)?;
    let mut candidates: Vec<Vec<u8>> = match (&named, &args.pattern) {
        (Some(keys), _) => keys.clone(),
        (None, Some(glob)) => {
            let mut keys = cache
                .keys()
                .with_context(|| format!("while listing the keys of tag '{tag}'"))?;
            keys.sort();
            keys.retain(|key| glob.matches_key(key));
            keys
        }
        // clap's `selection` group requires one of the three.
        (None, None) => {
            return Err(UsageError(
                "nothing selected to delete: pass --keys, --pattern or --json-file".to_owned(),
            )
            .into());
        }
    };
    let mut seen = HashSet::new();
    candidates.retain(|key| seen.insert(key.clone()));
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for key in candidates {
        let exists = cache.exists(&key).with_context(|| {
            format!(
                "while looking up key {} in tag '{tag}'",
                render::readable(&key)
            )
        })?;
        if exists {
            present.push(key);
        } else {
            missing.push(key);
        }
    }
    if !args.dry_run && !present.is_empty() {
        let borrowed: Vec<&[u8]> = present.iter().map(Vec::as_slice).collect();
        cache
            .delete_many(&borrowed)
            .and_then(|_| cache.flush())
            .with_context(|| format!("while deleting {} keys from tag '{tag}'", present.len()))?;
    }
    report(output, args, &present, &missing)?;
    if named.is_some() && !missing.is_empty() {
        let shown: Vec<String> = missing.iter().map(|key| render::readable(key)).collect();
        return Err(NotFound(format!(
            "{} of the named keys not found in tag '{tag}': {}",
            missing.len(),
            shown.join(", ")
        ))
        .into());
    }
    Ok(())
}

fn report(
    output: &Output,
    args: &DeleteArgs,
    present: &[Vec<u8>],
    missing: &[Vec<u8>],
) -> anyhow::Result<()> {
    let tag = &args.tag;
    if output.is_json() {
        return output.json(&DeleteReport {
            tag: tag.to_string(),
            dry_run: args.dry_run,
            deleted: present.iter().map(|key| KeyRow::new(key)).collect(),
            not_found: missing.iter().map(|key| KeyRow::new(key)).collect(),
        });
    }
    for key in present {
        output.text(&render::readable(key))?;
    }
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    output.note(&format!(
        "{verb} {} from tag '{tag}'",
        render::count(present.len() as u64, "key", "keys")
    ))
}

/// Keys from a JSON file: an array of strings (UTF-8 keys), an array of objects with `key_hex` or
/// `key`, or an object whose `keys` is such an array (the output of `keys --json`).
/// The keys listed in `path`, or in stdin when `path` is `-` (as `set --file -`).
fn keys_from_json_file(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("while reading the key list from stdin")?;
        text
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("while reading the key file {}", path.display()))?
    };
    let json: Value = serde_json::from_str(&text)
        .with_context(|| format!("while parsing the key file {} as JSON", path.display()))?;
    keys_from_json(&json).with_context(|| format!("in the key file {}", path.display()))
}

fn keys_from_json(json: &Value) -> anyhow::Result<Vec<Vec<u8>>> {
    let items = match json {
        Value::Array(items) => items,
        Value::Object(object) => match object.get("keys") {
            Some(Value::Array(items)) => items,
            _ => bail!("an object must have a \"keys\" array (the output of `keys --json`)"),
        },
        _ => bail!("expected an array of keys or the output of `keys --json`"),
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let key = match item {
                Value::String(text) => Some(text.as_bytes().to_vec()),
                Value::Object(object) => match (object.get("key_hex"), object.get("key")) {
                    (Some(Value::String(hex)), _) => render::from_hex(hex),
                    (_, Some(Value::String(text))) => Some(text.as_bytes().to_vec()),
                    _ => None,
                },
                _ => None,
            };
            match key {
                Some(key) if !key.is_empty() => Ok(key),
                _ => bail!(
                    "item {index} is not a key: expected a non-empty string or an object with \
                     \"key_hex\" (hex) or \"key\" (text)"
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::keys_from_json;

    #[test]
    fn every_accepted_shape() {
        let expected = vec![b"a".to_vec(), vec![0xFF, 0x00]];
        assert_eq!(
            keys_from_json(&json!(["a", {"key_hex": "ff00"}])).unwrap(),
            expected
        );
        assert_eq!(
            keys_from_json(
                &json!({"keys": [{"key": "a", "key_hex": "61"}, {"key": null, "key_hex": "ff00"}]})
            )
            .unwrap(),
            expected
        );
    }

    #[test]
    fn bad_items_are_named_by_index() {
        let err = keys_from_json(&json!(["a", 5])).unwrap_err();
        assert!(err.to_string().contains("item 1"), "{err}");
        assert!(
            keys_from_json(&json!([""])).is_err(),
            "empty keys are refused"
        );
        assert!(keys_from_json(&json!({"other": []})).is_err());
    }
}
