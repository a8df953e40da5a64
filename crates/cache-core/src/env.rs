//! `Environment`: where configuration variables come from (the process environment, or a fixed
//! map for tests), and the kill switches read from it. A leaf below `config.rs` and `ttl.rs`,
//! which both read variables through it.

use std::collections::BTreeMap;

use crate::tag::Tag;

/// Where configuration variables come from: the process environment, or a fixed map.
///
/// Coordinators read the environment through this value instead of `std::env` directly, so that
/// tests can exercise kill switches and path resolution without mutating the process environment
/// (which is `unsafe` in edition 2024 and races between parallel tests).
#[derive(Clone, Debug, Default)]
pub struct Environment {
    fixed: Option<BTreeMap<String, String>>,
}

impl Environment {
    /// Reads the real process environment.
    pub fn process() -> Self {
        Environment { fixed: None }
    }

    /// A fixed set of variables; everything else is unset.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Environment {
            fixed: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// The value of `name`, or `None` when it is unset, empty, or not valid Unicode.
    pub fn var(&self, name: &str) -> Option<String> {
        let value = match &self.fixed {
            Some(map) => map.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        value.filter(|value| !value.trim().is_empty())
    }

    /// Every set variable whose name starts with `prefix`, with its value, sorted by name; unset,
    /// empty and non-Unicode ones are skipped, as [`Environment::var`] skips them.
    pub fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = match &self.fixed {
            Some(map) => map
                .iter()
                .filter(|(name, _)| name.starts_with(prefix))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            None => std::env::vars_os()
                .filter_map(|(name, value)| {
                    Some((name.into_string().ok()?, value.into_string().ok()?))
                })
                .filter(|(name, _)| name.starts_with(prefix))
                .collect(),
        };
        vars.retain(|(_, value)| !value.trim().is_empty());
        vars.sort();
        vars
    }

    /// Whether the kill switches disable `tag`: `GLOVEBOX_CACHE_GLOBAL` or `GLOVEBOX_CACHE_<TAG>`
    /// set to `false`, `0` or `disabled`, in any case.
    pub fn kill_switch_disables(&self, tag: &Tag) -> bool {
        [
            "GLOVEBOX_CACHE_GLOBAL".to_owned(),
            tag.kill_switch_variable(),
        ]
        .iter()
        .filter_map(|name| self.var(name))
        .any(|value| is_disabling_value(&value))
    }
}

fn is_disabling_value(value: &str) -> bool {
    let value = value.trim();
    ["false", "0", "disabled"]
        .iter()
        .any(|off| value.eq_ignore_ascii_case(off))
}
