//! `keys`: the live keys of a tag, filtered by a glob, limited, with metadata and values on
//! request.

use anyhow::Context as _;
use cache_core::{Cache, EntryMetadata};
use serde::Serialize;

use crate::cli::KeysArgs;
use crate::output::Output;
use crate::render::{self, Align, Table};
use crate::root::CacheRoot;

#[derive(Serialize)]
struct KeysReport {
    root: String,
    tag: String,
    pattern: Option<String>,
    /// Keys matching the pattern (all live keys without one).
    matching: usize,
    /// Keys listed here: `matching`, or fewer with `--limit`.
    shown: usize,
    keys: Vec<KeyRow>,
}

#[derive(Serialize)]
pub(crate) struct KeyRow {
    /// The key as text, or `null` when it is not UTF-8.
    pub(crate) key: Option<String>,
    pub(crate) key_hex: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<MetadataJson>,
    /// With `--values`: the value as text, or `null` when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_hex: Option<String>,
}

impl KeyRow {
    pub(crate) fn new(key: &[u8]) -> Self {
        KeyRow {
            key: render::text_or_none(key),
            key_hex: render::hex(key),
            metadata: None,
            value: None,
            value_hex: None,
        }
    }
}

#[derive(Serialize)]
struct MetadataJson {
    size_bytes: u64,
    created: String,
    created_unix_ms: u64,
    expires: Option<String>,
    expires_unix_ms: Option<u64>,
    ttl_seconds: Option<u64>,
    last_accessed: Option<String>,
    access_count: u64,
    codec: String,
    schema_version: u32,
}

impl MetadataJson {
    fn new(metadata: &EntryMetadata) -> Self {
        MetadataJson {
            size_bytes: metadata.size_bytes,
            created: render::timestamp(metadata.created),
            created_unix_ms: render::unix_ms(metadata.created),
            expires: metadata.expires_at.map(render::timestamp),
            expires_unix_ms: metadata.expires_at.map(render::unix_ms),
            ttl_seconds: metadata.ttl.map(|ttl| ttl.as_secs()),
            last_accessed: metadata.last_accessed.map(render::timestamp),
            access_count: metadata.access_count,
            codec: format!("{:?}", metadata.format.codec).to_lowercase(),
            schema_version: metadata.format.schema_version,
        }
    }
}

/// One listed key with what was read about it (entries that expire while listed are dropped).
struct Listed {
    key: Vec<u8>,
    metadata: Option<EntryMetadata>,
    value: Option<Vec<u8>>,
}

pub(crate) fn run(root: &CacheRoot, args: &KeysArgs, output: &Output) -> anyhow::Result<()> {
    let tag = &args.tag;
    let cache = root.open_existing(tag)?;
    let mut keys = cache
        .keys()
        .with_context(|| format!("while listing the keys of tag '{tag}'"))?;
    keys.sort();
    keys.retain(|key| {
        args.pattern
            .as_ref()
            .is_none_or(|glob| glob.matches_key(key))
    });
    let matching = keys.len();
    if let Some(limit) = args.limit {
        keys.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    let listed = read_details(&cache, keys, args)?;
    if output.is_json() {
        let rows: Vec<KeyRow> = listed
            .iter()
            .map(|item| KeyRow {
                metadata: item.metadata.as_ref().map(MetadataJson::new),
                value: item.value.as_deref().map(render::text_or_none),
                value_hex: item.value.as_deref().map(render::hex),
                ..KeyRow::new(&item.key)
            })
            .collect();
        output.json(&KeysReport {
            root: root.path().display().to_string(),
            tag: tag.to_string(),
            pattern: args.pattern.as_ref().map(ToString::to_string),
            matching,
            shown: rows.len(),
            keys: rows,
        })?;
    } else {
        print_human(&listed, args, output)?;
    }
    if listed.len() < matching {
        output.note(&format!(
            "showing {} of {matching} matching keys",
            listed.len()
        ))?;
    }
    Ok(())
}

fn read_details(cache: &Cache, keys: Vec<Vec<u8>>, args: &KeysArgs) -> anyhow::Result<Vec<Listed>> {
    let tag = &args.tag;
    let mut listed = Vec::with_capacity(keys.len());
    for key in keys {
        let shown = render::readable(&key);
        let metadata = if args.metadata {
            match cache.get_metadata(&key).with_context(|| {
                format!("while reading the metadata of key {shown} in tag '{tag}'")
            })? {
                Some(metadata) => Some(metadata),
                None => continue,
            }
        } else {
            None
        };
        let value = if args.values {
            match cache
                .get(&key)
                .with_context(|| format!("while reading key {shown} in tag '{tag}'"))?
            {
                Some(value) => Some(value),
                None => continue,
            }
        } else {
            None
        };
        listed.push(Listed {
            key,
            metadata,
            value,
        });
    }
    Ok(listed)
}

fn print_human(listed: &[Listed], args: &KeysArgs, output: &Output) -> anyhow::Result<()> {
    if listed.is_empty() {
        return output.note(&format!("no keys in tag '{}'", args.tag));
    }
    if !args.metadata && !args.values {
        for item in listed {
            output.text(&render::readable(&item.key))?;
        }
        return Ok(());
    }
    let mut columns = vec![("KEY", Align::Left)];
    if args.metadata {
        columns.extend([
            ("SIZE", Align::Right),
            ("CREATED", Align::Left),
            ("EXPIRES", Align::Left),
            ("LAST READ", Align::Left),
            ("READS", Align::Right),
        ]);
    }
    if args.values {
        columns.push(("VALUE", Align::Left));
    }
    let mut table = Table::new(&columns);
    for item in listed {
        let mut cells = vec![render::readable(&item.key)];
        if let Some(metadata) = &item.metadata {
            let or_dash = |time: Option<std::time::SystemTime>| {
                time.map_or_else(|| "-".to_owned(), render::timestamp)
            };
            cells.extend([
                render::size(metadata.size_bytes),
                render::timestamp(metadata.created),
                metadata
                    .expires_at
                    .map_or_else(|| "never".to_owned(), render::timestamp),
                or_dash(metadata.last_accessed),
                metadata.access_count.to_string(),
            ]);
        }
        if let Some(value) = &item.value {
            cells.push(render::readable(value));
        }
        table.row(cells);
    }
    output.text(&table.render())
}
