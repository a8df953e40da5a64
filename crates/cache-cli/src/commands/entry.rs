//! `get` and `set`: one value, read to stdout or stored from the command line, a file or stdin.

use std::io::Read as _;

use anyhow::Context as _;
use serde::Serialize;

use crate::cli::{GetArgs, SetArgs};
use crate::duration::format_duration;
use crate::exit::{NotFound, UsageError};
use crate::output::Output;
use crate::render;
use crate::root::CacheRoot;

#[derive(Serialize)]
struct GetReport {
    tag: String,
    key: String,
    /// The value as text, or `null` when it is not UTF-8.
    value: Option<String>,
    value_hex: String,
    size_bytes: usize,
}

#[derive(Serialize)]
struct SetReport {
    tag: String,
    key: String,
    size_bytes: usize,
    /// `null`: never expires.
    ttl_seconds: Option<u64>,
}

pub(crate) fn get(root: &CacheRoot, args: &GetArgs, output: &Output) -> anyhow::Result<()> {
    let tag = &args.tag;
    let key = args.key.as_bytes();
    let shown = render::readable(key);
    let cache = root.open_existing(tag)?;
    let value = cache
        .get(key)
        .with_context(|| format!("while reading key {shown} in tag '{tag}'"))?
        .ok_or_else(|| NotFound(format!("key {shown} not found in tag '{tag}'")))?;
    if output.is_json() {
        output.json(&GetReport {
            tag: tag.to_string(),
            key: args.key.clone(),
            value: render::text_or_none(&value),
            value_hex: render::hex(&value),
            size_bytes: value.len(),
        })
    } else {
        output.bytes(&value)
    }
}

pub(crate) fn set(root: &CacheRoot, args: &SetArgs, output: &Output) -> anyhow::Result<()> {
    let tag = &args.tag;
    let key = args.key.as_bytes();
    let shown = render::readable(key);
    let value = match (&args.value, &args.file) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("while reading the value from stdin")?;
            bytes
        }
        (None, Some(path)) => std::fs::read(path)
            .with_context(|| format!("while reading the value file {}", path.display()))?,
        // clap's `source` group requires one of the two.
        (None, None) => {
            return Err(UsageError(format!(
                "no value given for key {shown}: pass VALUE or --file"
            ))
            .into());
        }
    };
    let cache = root.open(tag, root.options_for(tag))?;
    cache
        .set(key, &value, args.ttl)
        .with_context(|| format!("while storing key {shown} in tag '{tag}'"))?;
    // Durable before reporting success (the close at exit would flush too, but say so here).
    cache
        .flush()
        .with_context(|| format!("while writing key {shown} to tag '{tag}'"))?;
    if output.is_json() {
        return output.json(&SetReport {
            tag: tag.to_string(),
            key: args.key.clone(),
            size_bytes: value.len(),
            ttl_seconds: args.ttl.map(|ttl| ttl.as_secs()),
        });
    }
    let expiry = args.ttl.map_or_else(
        || "never expires".to_owned(),
        |ttl| format!("expires in {}", format_duration(ttl)),
    );
    output.note(&format!(
        "stored key {shown} in tag '{tag}' ({}, {expiry})",
        render::size(value.len() as u64)
    ))
}
