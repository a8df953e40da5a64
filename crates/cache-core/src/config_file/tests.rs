//! Unit tests of `config_file.rs`, in a file of their own so that the module stays short.

use std::fs;

use rstest::rstest;

use super::*;
use crate::ttl::TtlLevel;

const LEVEL: TtlLevel = TtlLevel::new("some_level", Duration::from_secs(60));

const FILE: &str = r#"
root = "/from-file"

[defaults]
max_size = "1GiB"
eviction = "least-recently-used"
timeout = "90s"

[tags.thumbnails]
max_entries = 10
max_size = 5000
commit_interval = "5ms"

[ttl]
some_level = "7d"

[remote]
url = "https://cache.example"
"#;

fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.toml");
    fs::write(&path, text).unwrap();
    (dir, path)
}

fn env_with_config(path: &Path, more: &[(&str, &str)]) -> Environment {
    let mut pairs = vec![(CONFIG_FILE_VARIABLE.to_owned(), path.display().to_string())];
    pairs.extend(more.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Environment::from_pairs(pairs)
}

#[test]
fn the_file_sets_root_defaults_tags_ttls_and_keeps_remote() {
    let (_dir, path) = write_config(FILE);
    let config = UserCacheConfig::load_from(None, &env_with_config(&path, &[])).unwrap();
    assert_eq!(config.cache_path, Some(PathBuf::from("/from-file")));
    assert_eq!(config.options.max_size_bytes, 1 << 30);
    assert_eq!(
        config.options.eviction_policy,
        EvictionPolicy::LeastRecentlyUsed
    );
    assert_eq!(config.options.timeout, Duration::from_secs(90));
    assert_eq!(config.ttls.get(&LEVEL), Duration::from_secs(7 * 86_400));
    let remote = config.remote.as_ref().unwrap();
    assert_eq!(
        remote.settings.get("url").map(String::as_str),
        Some("\"https://cache.example\"")
    );

    let thumbnails = config.options_for(Some("thumbnails"));
    assert_eq!(thumbnails.max_entries, Some(10));
    assert_eq!(thumbnails.max_size_bytes, 5000);
    assert_eq!(thumbnails.commit_interval, Duration::from_millis(5));
    // The tag's settings sit on the defaults: what it does not set comes from them.
    assert_eq!(
        thumbnails.eviction_policy,
        EvictionPolicy::LeastRecentlyUsed
    );
    let other = config.options_for(Some("reports"));
    assert_eq!(other.max_entries, None);
    assert_eq!(other.max_size_bytes, 1 << 30);
}

#[test]
fn precedence_is_file_then_environment_then_explicit() {
    let (_dir, path) = write_config(FILE);
    let only_file = UserCacheConfig::load_from(None, &env_with_config(&path, &[])).unwrap();
    assert_eq!(
        only_file.cache_root(&Environment::default()).unwrap(),
        PathBuf::from("/from-file")
    );

    let env = env_with_config(
        &path,
        &[
            ("GLOVEBOX_CACHE_PATH", "/from-env"),
            ("GLOVEBOX_CACHE_TTL_SOME_LEVEL", "30"),
            ("GLOVEBOX_CACHE_STRATEGY", "disabled"),
        ],
    );
    let explained = UserCacheConfig::load_explained(None, &env).unwrap();
    let config = &explained.config;
    assert_eq!(config.cache_path, Some(PathBuf::from("/from-env")));
    assert_eq!(config.ttls.get(&LEVEL), Duration::from_secs(30));
    assert_eq!(config.strategy, CacheStrategy::Disabled);
    let origin = |key: &str| {
        explained
            .settings
            .iter()
            .find(|setting| setting.key == key)
            .map(|setting| setting.origin.clone())
    };
    assert_eq!(
        origin("root"),
        Some(ConfigOrigin::Environment {
            variable: "GLOVEBOX_CACHE_PATH".to_owned()
        })
    );
    assert_eq!(
        origin("ttl.some_level"),
        Some(ConfigOrigin::Environment {
            variable: "GLOVEBOX_CACHE_TTL_SOME_LEVEL".to_owned()
        })
    );
    assert_eq!(
        origin("defaults.max_size"),
        Some(ConfigOrigin::File { path: path.clone() })
    );
    assert_eq!(origin("defaults.max_entries"), Some(ConfigOrigin::Default));

    // An explicit root (the CLI's --root) beats both.
    let explicit = resolve_cache_root(Some(Path::new("/explicit")), &env).unwrap();
    assert_eq!(explicit, PathBuf::from("/explicit"));
    // An explicit file beats GLOVEBOX_CACHE_CONFIG.
    let (_other_dir, other) = write_config("root = \"/other-file\"\n");
    let config = UserCacheConfig::load_from(Some(&other), &env_with_config(&path, &[])).unwrap();
    assert_eq!(config.cache_path, Some(PathBuf::from("/other-file")));
}

#[test]
fn the_file_is_found_under_xdg_config_home_then_home() {
    let dir = tempfile::tempdir().unwrap();
    let xdg = dir.path().join("xdg");
    fs::create_dir_all(xdg.join("glovebox")).unwrap();
    fs::write(xdg.join("glovebox/cache.toml"), "root = \"/xdg-file\"\n").unwrap();
    let home = dir.path().join("home");
    fs::create_dir_all(home.join(".config/glovebox")).unwrap();
    fs::write(
        home.join(".config/glovebox/cache.toml"),
        "root = \"/home-file\"\n",
    )
    .unwrap();
    let xdg_text = xdg.display().to_string();
    let home_text = home.display().to_string();

    let both = Environment::from_pairs([
        ("XDG_CONFIG_HOME", xdg_text.as_str()),
        ("HOME", home_text.as_str()),
    ]);
    let config = UserCacheConfig::load_from(None, &both).unwrap();
    assert_eq!(config.cache_path, Some(PathBuf::from("/xdg-file")));

    let home_only = Environment::from_pairs([("HOME", home_text.as_str())]);
    let config = UserCacheConfig::load_from(None, &home_only).unwrap();
    assert_eq!(config.cache_path, Some(PathBuf::from("/home-file")));
}

#[test]
fn a_missing_file_at_the_default_place_is_fine_but_a_named_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().display().to_string();
    let config =
        UserCacheConfig::load_from(None, &Environment::from_pairs([("HOME", home.as_str())]))
            .unwrap();
    assert_eq!(config.cache_path, None);

    let named = dir.path().join("nope.toml");
    let err = UserCacheConfig::load_from(Some(&named), &Environment::default()).unwrap_err();
    assert!(err.to_string().contains("nope.toml"), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[rstest]
#[case::unknown_key(
    "[defaults]\nmax_size = 10\nmax_sise = 20\n",
    3,
    "defaults.max_sise",
    "unknown field"
)]
#[case::bad_unit(
    "[tags.thumbnails]\nmax_size = \"20XB\"\n",
    2,
    "tags.thumbnails.max_size",
    "unknown unit"
)]
#[case::bad_eviction(
    "\n[defaults]\neviction = \"random\"\n",
    3,
    "defaults.eviction",
    "random"
)]
#[case::zero_size(
    "[defaults]\nmax_size = 0\n",
    2,
    "defaults.max_size",
    "greater than zero"
)]
#[case::zero_ttl(
    "[ttl]\nsome_level = \"0s\"\n",
    2,
    "ttl.some_level",
    "at least 1 second"
)]
#[case::bad_level_name("[ttl]\nSome-Level = 60\n", 2, "ttl.Some-Level", "level name")]
#[case::bad_tag_name("[tags.\"Bad Tag\"]\nmax_entries = 1\n", 1, "tags.Bad Tag", "tag")]
#[case::relative_root("root = \"cache\"\n", 1, "root", "relative")]
#[case::zero_timeout(
    "[defaults]\ntimeout = 0\n",
    2,
    "defaults.timeout",
    "greater than zero"
)]
#[case::syntax("[defaults]\nmax_size = = 3\n", 2, "defaults.max_size", "")]
fn a_bad_file_is_an_error_naming_the_file_line_and_key(
    #[case] text: &str,
    #[case] line: usize,
    #[case] key: &str,
    #[case] reason: &str,
) {
    let (_dir, path) = write_config(text);
    let err = UserCacheConfig::load_from(Some(&path), &Environment::default()).unwrap_err();
    let CacheError::ConfigFile {
        path: err_path,
        line: err_line,
        key: err_key,
        message,
    } = &err
    else {
        panic!("not a config file error: {err}");
    };
    assert_eq!(err_path, &path);
    assert_eq!(*err_line, Some(line), "{err}");
    assert_eq!(err_key.as_deref(), Some(key), "{err}");
    assert!(message.contains(reason), "{err}");
    let shown = err.to_string();
    assert!(shown.contains(&path.display().to_string()), "{shown}");
    assert!(shown.contains(&format!("line {line}")), "{shown}");
    assert!(shown.contains(&format!("`{key}`")), "{shown}");
}

#[rstest]
#[case("4096", 4096)]
#[case("20GiB", 20 << 30)]
#[case("500 MB", 500_000_000)]
#[case("1kib", 1024)]
fn sizes_take_binary_and_decimal_units(#[case] text: &str, #[case] bytes: u64) {
    assert_eq!(parse_size(text), Ok(bytes));
}

#[rstest]
#[case("20ms", Duration::from_millis(20))]
#[case("90", Duration::from_secs(90))]
#[case("7d", Duration::from_secs(7 * 86_400))]
#[case("2w", Duration::from_secs(14 * 86_400))]
fn durations_take_units(#[case] text: &str, #[case] duration: Duration) {
    assert_eq!(parse_duration(text), Ok(duration));
}

#[test]
fn a_program_can_embed_the_format_through_serde() {
    let config: UserCacheConfig = toml::from_str(FILE).unwrap();
    assert_eq!(config.cache_path, Some(PathBuf::from("/from-file")));
    assert_eq!(config.options_for(Some("thumbnails")).max_entries, Some(10));
    assert_eq!(config.ttls.get(&LEVEL), Duration::from_secs(7 * 86_400));
}

#[test]
fn the_default_coordinator_path_takes_per_tag_options_from_the_file() {
    let root = tempfile::tempdir().unwrap();
    let text = format!(
        "root = \"{}\"\n[tags.thumbnails]\nmax_entries = 3\n",
        root.path().display()
    );
    let (_dir, path) = write_config(&text);
    let coordinator = crate::Coordinator::with_environment(env_with_config(&path, &[]));
    coordinator.create_default_cache("thumbnails").unwrap();
    // The instance was opened with the file's options: asking with them again is the same
    // instance, asking with the plain defaults is a conflict naming the setting.
    let with_file_options = CacheOptions {
        max_entries: Some(3),
        ..CacheOptions::default()
    };
    coordinator
        .get_shared_cache_instance(root.path(), "thumbnails", with_file_options)
        .unwrap();
    let err = coordinator
        .get_shared_cache_instance(root.path(), "thumbnails", CacheOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("max_entries"), "{err}");
    coordinator.reset().unwrap();
}
