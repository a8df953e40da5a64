//! Tidy checks, run by `cargo test` (as rust-analyzer's `xtask/src/tidy.rs`): every source file
//! starts with a `//!` line, the code map in `docs/architecture.md` names only files that exist
//! and names every source file of `cache-core`, and `cache-core`'s sources name no domain.
//!
//! Everything is derived from the files and the document; no list of files is written here, so
//! moving a module only needs the map updated.

use std::fs;
use std::path::{Path, PathBuf};

/// The workspace root (this package is `<root>/tests`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package lives one level below the workspace root")
        .to_path_buf()
}

/// Every `.rs` file below `dir`, sorted, as paths relative to `dir` with `/` separators.
fn rust_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, found: &mut Vec<String>) {
        let entries =
            fs::read_dir(dir).unwrap_or_else(|err| panic!("listing {}: {err}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(base, &path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let relative = path.strip_prefix(base).expect("below the base");
                let parts: Vec<String> = relative
                    .components()
                    .map(|part| part.as_os_str().to_string_lossy().into_owned())
                    .collect();
                found.push(parts.join("/"));
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, dir, &mut found);
    found.sort();
    found
}

/// The directories whose sources must each start with a `//!` line: every crate's `src/`, and
/// `tests/src` and `xtask/src`.
fn source_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root.join("crates"))
        .expect("listing crates/")
        .map(|entry| entry.expect("directory entry").path().join("src"))
        .filter(|src| src.is_dir())
        .collect();
    dirs.sort();
    dirs.push(root.join("tests/src"));
    dirs.push(root.join("xtask/src"));
    dirs
}

#[test]
fn every_source_file_starts_with_a_module_doc_line() {
    let root = workspace_root();
    let mut missing = Vec::new();
    for dir in source_dirs(&root) {
        for file in rust_files(&dir) {
            let path = dir.join(&file);
            let text = fs::read_to_string(&path).expect("a source file is UTF-8");
            if !text.starts_with("//!") {
                missing.push(path.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "these files do not start with a `//!` line saying what they are for: {missing:#?}"
    );
}

/// One `###` section of the code map: the directory its heading names (if it names one that
/// exists) and the `.rs` paths written in backticks in it.
struct MapSection {
    heading: String,
    base: Option<String>,
    paths: Vec<String>,
}

/// The text between backticks on each line of `text`, outside code fences.
fn code_spans(text: &str) -> Vec<String> {
    let mut spans = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        spans.extend(line.split('`').skip(1).step_by(2).map(str::to_owned));
    }
    spans
}

/// The sections of `docs/architecture.md`'s `## Code map`.
fn code_map(root: &Path) -> Vec<MapSection> {
    let doc = fs::read_to_string(root.join("docs/architecture.md")).expect("docs/architecture.md");
    let start = doc
        .find("\n## Code map\n")
        .expect("docs/architecture.md has a `## Code map` section");
    let map = &doc[start + 1..];
    let map = &map[..map[1..].find("\n## ").map_or(map.len(), |end| end + 1)];
    map.split("\n### ")
        .skip(1)
        .map(|section| {
            let (heading, body) = section.split_once('\n').unwrap_or((section, ""));
            let base = code_spans(heading)
                .into_iter()
                .next()
                .filter(|dir| root.join(dir).is_dir());
            let paths = code_spans(body)
                .into_iter()
                .filter(|span| {
                    span.ends_with(".rs")
                        && span
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
                })
                .collect();
            MapSection {
                heading: heading.to_owned(),
                base,
                paths,
            }
        })
        .collect()
}

/// Where a path written in the code map points, relative to the workspace root, by the map's
/// convention: in a section headed by a directory, a path is relative to that directory's
/// `src/`, except one starting with `src/`, `tests/`, `examples/` or `benches/` (relative to the
/// directory itself) and one starting with `crates/` or `xtask/` (relative to the root); in a
/// section headed by no directory, every path is relative to the root.
fn resolve(base: Option<&str>, path: &str) -> String {
    let first = path.split('/').next().unwrap_or_default();
    match base {
        _ if ["crates", "xtask"].contains(&first) => path.to_owned(),
        None => path.to_owned(),
        Some(base) if ["src", "tests", "examples", "benches"].contains(&first) => {
            format!("{base}/{path}")
        }
        Some(base) => format!("{base}/src/{path}"),
    }
}

#[test]
fn every_file_the_code_map_names_exists() {
    let root = workspace_root();
    let sections = code_map(&root);
    assert!(
        sections.iter().any(|section| !section.paths.is_empty()),
        "the code map names no file: is the parser still reading it?"
    );
    let mut missing = Vec::new();
    for section in &sections {
        for path in &section.paths {
            let resolved = resolve(section.base.as_deref(), path);
            if !root.join(&resolved).is_file() {
                missing.push(format!(
                    "`{path}` (section {}, read as {resolved})",
                    section.heading
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/architecture.md's code map names files that do not exist: {missing:#?}"
    );
}

#[test]
fn the_code_map_names_every_source_file_of_cache_core() {
    let root = workspace_root();
    let base = "crates/cache-core";
    let section = code_map(&root)
        .into_iter()
        .find(|section| section.base.as_deref() == Some(base))
        .expect("the code map has a section headed `crates/cache-core`");
    let named: Vec<String> = section
        .paths
        .iter()
        .map(|path| resolve(Some(base), path))
        .collect();
    let unnamed: Vec<String> = rust_files(&root.join(base).join("src"))
        .into_iter()
        .map(|file| format!("{base}/src/{file}"))
        .filter(|file| !named.contains(file))
        .collect();
    assert!(
        unnamed.is_empty(),
        "docs/architecture.md's code map does not name these files of cache-core (write each \
         relative to src/, a file in a folder with its folder, e.g. `store/commit.rs`): \
         {unnamed:#?}"
    );
}

/// Words that name a domain; none may appear, in any case, anywhere in `cache-core/src`
/// (comments and doc examples included: they are where a domain leaks in first).
const DOMAIN_WORDS: [&str; 8] = [
    "compilation",
    "workspace",
    "firmware",
    "layout",
    "moergo",
    "metrics",
    "zmk",
    "keymap",
];

/// Exact, case-sensitive spellings that contain a domain word but name no domain. Keep it tiny;
/// each needs its reason.
const ALLOWED: [&str; 2] = [
    // The `metrics` crate (the ecosystem's facade `telemetry.rs` emits through), by its path and
    // its name in backquotes; not the metrics domain.
    "metrics::",
    "`metrics`",
];

#[test]
fn cache_core_sources_name_no_domain() {
    let root = workspace_root();
    let src = root.join("crates/cache-core/src");
    let mut found = Vec::new();
    for file in rust_files(&src) {
        let text = fs::read_to_string(src.join(&file)).expect("a source file is UTF-8");
        for (number, line) in text.lines().enumerate() {
            let mut line = line.to_owned();
            for allowed in ALLOWED {
                line = line.replace(allowed, "");
            }
            let lower = line.to_lowercase();
            for word in DOMAIN_WORDS {
                if lower.contains(word) {
                    found.push(format!("{file}:{}: {word:?}: {}", number + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "cache-core names a domain (the core knows none; declare it in the domain crate): \
         {found:#?}"
    );
}

#[test]
fn the_domain_word_check_sees_a_domain_and_skips_only_the_allowed_spelling() {
    // The check above must not pass for want of looking: a line naming a domain is caught in any
    // case, and the allowed spelling hides only itself.
    let caught = |line: &str| {
        let mut line = line.to_owned();
        for allowed in ALLOWED {
            line = line.replace(allowed, "");
        }
        let lower = line.to_lowercase();
        DOMAIN_WORDS.iter().any(|word| lower.contains(word))
    };
    assert!(caught("// the Layout of a ZMK keymap"));
    assert!(caught("const TAG: &str = \"compilation\";"));
    assert!(caught("type KeyMap<V> = HashMap<Vec<u8>, V>;"));
    assert!(!caught(
        "metrics::counter!(\"glovebox_cache_operations_total\")"
    ));
    assert!(caught("const TAG: &str = \"metrics\"; // metrics::"));
}

/// The top-level unit a file of cache-core belongs to: `store/commit.rs` is `store`,
/// `config.rs` is `config`; `lib.rs` (the API boundary, which names everything) is none.
fn core_unit(relative: &str) -> Option<String> {
    let first = relative.split('/').next()?;
    let unit = first.strip_suffix(".rs").unwrap_or(first);
    (unit != "lib").then(|| unit.to_owned())
}

/// Which top-level units each unit of cache-core refers to through `crate::<unit>` paths, test
/// code left out (a `tests.rs` file, and everything from a file's first `#[cfg(test)]` on: test
/// modules sit at the end of their file and may reach anywhere). `crate::Name` paths through
/// `lib.rs`'s re-exports are not module paths and are not counted.
fn core_dependencies(root: &Path) -> std::collections::BTreeMap<String, Vec<String>> {
    let src = root.join("crates/cache-core/src");
    let files = rust_files(&src);
    let units: std::collections::BTreeSet<String> =
        files.iter().filter_map(|file| core_unit(file)).collect();
    let mut graph: std::collections::BTreeMap<String, Vec<String>> =
        std::collections::BTreeMap::new();
    for file in &files {
        let Some(unit) = core_unit(file) else {
            continue;
        };
        if file.ends_with("/tests.rs") {
            continue;
        }
        let text = fs::read_to_string(src.join(file)).expect("read a source file");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let uses = graph.entry(unit.clone()).or_default();
        for (index, _) in code.match_indices("crate::") {
            let rest = &code[index + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name != unit && units.contains(&name) && !uses.contains(&name) {
                uses.push(name);
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one, as the units along it.
fn find_cycle(graph: &std::collections::BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit(
        graph: &std::collections::BTreeMap<String, Vec<String>>,
        unit: &str,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|seen| seen == unit) {
            let mut cycle = path[start..].to_vec();
            cycle.push(unit.to_owned());
            return Some(cycle);
        }
        if done.contains(unit) {
            return None;
        }
        path.push(unit.to_owned());
        for next in graph.get(unit).into_iter().flatten() {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(unit.to_owned());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph
        .keys()
        .find_map(|unit| visit(graph, unit, &mut Vec::new(), &mut done))
}

/// Issue 14: the core's top-level units (a file, or a folder with its files) form a DAG, so
/// that each layer can be read, tested and changed knowing only the ones below it.
#[test]
fn the_core_s_top_level_units_form_no_circle() {
    let graph = core_dependencies(&workspace_root());
    assert!(
        graph.contains_key("store") && graph.contains_key("fsys"),
        "{graph:?}"
    );
    assert_eq!(
        find_cycle(&graph),
        None,
        "a circle among cache-core's units: {graph:?}"
    );
}

#[test]
fn the_circle_check_finds_a_circle() {
    let graph: std::collections::BTreeMap<String, Vec<String>> = [
        ("a".to_owned(), vec!["b".to_owned()]),
        ("b".to_owned(), vec!["c".to_owned()]),
        ("c".to_owned(), vec!["a".to_owned()]),
        ("d".to_owned(), vec![]),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        find_cycle(&graph),
        Some(["a", "b", "c", "a"].map(str::to_owned).to_vec())
    );
    let dag: std::collections::BTreeMap<String, Vec<String>> = [
        ("a".to_owned(), vec!["b".to_owned()]),
        ("b".to_owned(), vec![]),
    ]
    .into_iter()
    .collect();
    assert_eq!(find_cycle(&dag), None);
}
