//! The remote tier through the command line, against a real `redis-server` and a real S3 server
//! (SeaweedFS): two sandboxes (two cache roots) stand for two machines sharing
//! `GLOVEBOX_CACHE_REMOTE`; signing keys made by `remote keygen`.

use std::sync::Arc;

use cache_core::RemoteStore;
use cache_test_support::redis::RedisServer;

use crate::support::{Run, Sandbox, run};

/// Runs `args` in `sandbox` with the remote variables `vars` set.
fn with_remote(sandbox: &Sandbox, vars: &[(&str, &str)], args: &[&str]) -> Run {
    let mut command = sandbox.command();
    for (name, value) in vars {
        command.env(name, value);
    }
    command.args(args);
    run(&mut command)
}

#[test]
fn a_value_set_on_one_root_is_printed_by_get_on_another() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    let remote = [("GLOVEBOX_CACHE_REMOTE", url.as_str())];
    let (a, b) = (Sandbox::new(), Sandbox::new());
    with_remote(&a, &remote, &["set", "--tag", "layout", "k", "v"]).expect_code(0);
    let got = with_remote(&b, &remote, &["get", "--tag", "layout", "k"]);
    got.expect_code(0);
    assert_eq!(got.stdout, b"v");
    // Backfilled into B's root: without the remote, B still has it.
    let local = b.run(&["get", "--tag", "layout", "k"]);
    local.expect_code(0);
    assert_eq!(local.stdout, b"v");

    let status = with_remote(&b, &remote, &["remote", "status", "--json"]);
    status.expect_code(0);
    let status = status.json();
    assert_eq!(status["configured"], true);
    assert_eq!(status["reachable"], true);
    assert_eq!(status["breaker"], "closed");
    assert_eq!(status["endpoint"], url.as_str());
}

#[test]
fn keygen_makes_keys_that_readers_trust_and_others_fail() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    let (writer, reader, doubter) = (Sandbox::new(), Sandbox::new(), Sandbox::new());
    let secret = writer.path("ci.key");
    let made = writer.run(&["remote", "keygen", "ci-1", "-o", secret.to_str().unwrap()]);
    made.expect_code(0);
    let public_line = made.stdout();
    assert!(public_line.starts_with("ci-1 "), "{public_line}");
    let mode = std::fs::metadata(&secret).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    // Never overwritten.
    writer
        .run(&["remote", "keygen", "ci-1", "-o", secret.to_str().unwrap()])
        .expect_code(2);

    let trusted = reader.path("trusted");
    std::fs::write(&trusted, &public_line).unwrap();
    let other_secret = doubter.path("other.key");
    let other = doubter.run(&[
        "remote",
        "keygen",
        "ci-1",
        "-o",
        other_secret.to_str().unwrap(),
    ]);
    other.expect_code(0);
    let other_trusted = doubter.path("trusted");
    std::fs::write(&other_trusted, other.stdout()).unwrap();

    let secret = secret.to_str().unwrap();
    with_remote(
        &writer,
        &[
            ("GLOVEBOX_CACHE_REMOTE", url.as_str()),
            ("GLOVEBOX_CACHE_REMOTE_SIGNING_KEY", secret),
        ],
        &["set", "--tag", "layout", "k", "signed value"],
    )
    .expect_code(0);
    let got = with_remote(
        &reader,
        &[
            ("GLOVEBOX_CACHE_REMOTE", url.as_str()),
            (
                "GLOVEBOX_CACHE_REMOTE_TRUSTED_KEYS",
                trusted.to_str().unwrap(),
            ),
        ],
        &["get", "--tag", "layout", "k"],
    );
    got.expect_code(0);
    assert_eq!(got.stdout, b"signed value");
    // Trusting another key of the same name: a miss (exit 1), nothing stored.
    with_remote(
        &doubter,
        &[
            ("GLOVEBOX_CACHE_REMOTE", url.as_str()),
            (
                "GLOVEBOX_CACHE_REMOTE_TRUSTED_KEYS",
                other_trusted.to_str().unwrap(),
            ),
        ],
        &["get", "--tag", "layout", "k"],
    )
    .expect_code(1);
}

#[test]
fn a_bad_remote_setting_is_a_usage_error_naming_the_variable_and_an_unreachable_one_is_a_miss() {
    let sandbox = Sandbox::new();
    let bad = with_remote(
        &sandbox,
        &[("GLOVEBOX_CACHE_REMOTE", "redis://user:secret@127.0.0.1:1/0")],
        &["get", "--tag", "layout", "k"],
    );
    bad.expect_code(2);
    bad.expect_stderr(&["GLOVEBOX_CACHE_REMOTE_USERNAME"]);
    assert!(!bad.stderr.contains("secret"), "the password leaked");

    // A socket nobody listens on: the read is a miss (exit 1), not an error.
    let nowhere = sandbox.path("nobody.sock");
    let url = format!("redis+unix://{}", nowhere.display());
    with_remote(
        &sandbox,
        &[("GLOVEBOX_CACHE_REMOTE", url.as_str())],
        &["set", "--tag", "layout", "here", "v"],
    )
    .expect_code(0);
    with_remote(
        &sandbox,
        &[("GLOVEBOX_CACHE_REMOTE", url.as_str())],
        &["get", "--tag", "layout", "k"],
    )
    .expect_code(1);
}

#[test]
fn what_a_domain_keeps_local_does_not_reach_another_root() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    let remote = [("GLOVEBOX_CACHE_REMOTE", url.as_str())];
    let (a, b) = (Sandbox::new(), Sandbox::new());
    // Session metrics and a layout bookmark are one machine's; a processed layout is shared.
    for (tag, key) in [
        ("metrics", "session:1"),
        ("layout", "bookmark:home"),
        ("layout", "processed:1"),
    ] {
        with_remote(&a, &remote, &["set", "--tag", tag, key, "v"]).expect_code(0);
    }
    with_remote(&b, &remote, &["get", "--tag", "metrics", "session:1"]).expect_code(1);
    with_remote(&b, &remote, &["get", "--tag", "layout", "bookmark:home"]).expect_code(1);
    with_remote(&b, &remote, &["get", "--tag", "layout", "processed:1"]).expect_code(0);
}

#[test]
fn s3_a_value_set_on_one_root_is_printed_by_get_on_another_and_status_says_no_leases() {
    use cache_test_support::s3::{BUCKET, READER, S3Server, WRITER};
    let Some(server) = S3Server::start() else {
        return;
    };
    let url = format!("s3://{BUCKET}/cli");
    let endpoint = server.endpoint();
    let writer = [
        ("GLOVEBOX_CACHE_REMOTE", url.as_str()),
        ("GLOVEBOX_CACHE_REMOTE_ENDPOINT", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", WRITER.0),
        ("AWS_SECRET_ACCESS_KEY", WRITER.1),
    ];
    let reader = [
        ("GLOVEBOX_CACHE_REMOTE", url.as_str()),
        ("GLOVEBOX_CACHE_REMOTE_ENDPOINT", endpoint.as_str()),
        ("GLOVEBOX_CACHE_REMOTE_MODE", "ro"),
        ("AWS_ACCESS_KEY_ID", READER.0),
        ("AWS_SECRET_ACCESS_KEY", READER.1),
    ];
    let (a, b) = (Sandbox::new(), Sandbox::new());
    with_remote(&a, &writer, &["set", "--tag", "layout", "k", "v"]).expect_code(0);
    let got = with_remote(&b, &reader, &["get", "--tag", "layout", "k"]);
    got.expect_code(0);
    assert_eq!(got.stdout, b"v");

    let status = with_remote(&b, &reader, &["remote", "status", "--json"]);
    status.expect_code(0);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(!text.contains(READER.1), "the secret was printed: {text}");
    let status = status.json();
    assert_eq!(status["endpoint"], url.as_str());
    assert_eq!(status["reachable"], true);
    assert_eq!(status["mode"], "ro");
    assert_eq!(status["leases"], "none");

    // A wrong secret: a clear error on the stderr of a run that still succeeds locally.
    let wrong = [
        ("GLOVEBOX_CACHE_REMOTE", url.as_str()),
        ("GLOVEBOX_CACHE_REMOTE_ENDPOINT", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", WRITER.0),
        ("AWS_SECRET_ACCESS_KEY", "wrong-secret-value"),
    ];
    let c = Sandbox::new();
    with_remote(&c, &wrong, &["set", "--tag", "layout", "mine", "local"]).expect_code(0);
    let local = with_remote(&c, &wrong, &["get", "--tag", "layout", "mine"]);
    local.expect_code(0);
    assert_eq!(local.stdout, b"local");
    let miss = with_remote(&c, &wrong, &["get", "--tag", "layout", "k"]);
    miss.expect_code(1);
    assert!(
        miss.stderr.contains("SignatureDoesNotMatch"),
        "{}",
        miss.stderr
    );
    assert!(
        !miss.stderr.contains("wrong-secret-value"),
        "{}",
        miss.stderr
    );
    let status = with_remote(&c, &wrong, &["remote", "status", "--json"]);
    status.expect_code(0);
    assert_eq!(status.json()["reachable"], false);
}

#[test]
fn split_a_large_value_set_on_one_root_comes_back_on_another_with_chunks_on_s3() {
    use cache_test_support::s3::{BUCKET, S3Server, WRITER};
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let Some(s3) = S3Server::start() else {
        return;
    };
    let url = redis.url();
    let chunks = format!("s3://{BUCKET}/cli-split");
    let endpoint = s3.endpoint();
    let vars = [
        ("GLOVEBOX_CACHE_REMOTE", url.as_str()),
        ("GLOVEBOX_CACHE_REMOTE_CHUNKS", chunks.as_str()),
        ("GLOVEBOX_CACHE_REMOTE_ENDPOINT", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", WRITER.0),
        ("AWS_SECRET_ACCESS_KEY", WRITER.1),
    ];
    let (a, b) = (Sandbox::new(), Sandbox::new());
    // Over the split setup's chunk size (S3's): two chunks.
    let chunk = cache_remote::S3_CHUNK_SIZE;
    let firmware: Vec<u8> = (0..chunk + (1 << 20)).map(|i| (i % 253) as u8).collect();
    let file = a.path("firmware.uf2");
    std::fs::write(&file, &firmware).unwrap();
    with_remote(
        &a,
        &vars,
        &[
            "set",
            "--tag",
            "layout",
            "fw",
            "--file",
            file.to_str().unwrap(),
        ],
    )
    .expect_code(0);
    let first_chunk = format!(
        "cli-split/glovebox/v1/c/{}",
        cache_core::keys::hex(blake3::hash(&firmware[..chunk]).as_bytes())
    );
    assert!(s3.get(&first_chunk).is_some(), "the chunk is not on S3");
    let got = with_remote(&b, &vars, &["get", "--tag", "layout", "fw"]);
    got.expect_code(0);
    assert!(got.stdout == firmware, "B got other bytes");

    let status = with_remote(&b, &vars, &["remote", "status", "--json"]);
    status.expect_code(0);
    let status = status.json();
    assert_eq!(status["chunks"], chunks.as_str());
    assert_eq!(status["leases"], "fleet");
}

/// The breaker hint's name under the root (`cache-remote`'s `hint.rs`).
const HINT: &str = "remote-breaker.hint";

#[test]
fn a_set_against_a_dead_endpoint_writes_the_hint_and_the_next_run_starts_with_the_breaker_open() {
    let sandbox = Sandbox::new();
    let nowhere = sandbox.path("nobody.sock");
    let url = format!("redis+unix://{}", nowhere.display());
    let remote = [("GLOVEBOX_CACHE_REMOTE", url.as_str())];
    with_remote(&sandbox, &remote, &["set", "--tag", "layout", "k", "v"]).expect_code(0);
    let hint = std::fs::read_to_string(sandbox.root().join(HINT)).expect("the set wrote the hint");
    assert!(
        !hint.contains("nobody.sock"),
        "the endpoint is hashed: {hint}"
    );

    // A new process: the breaker starts open, so its probe is skipped, not attempted.
    let status = with_remote(&sandbox, &remote, &["remote", "status", "--json"]);
    status.expect_code(0);
    let status = status.json();
    assert_eq!(status["breaker"], "open", "{status}");
    assert_eq!(status["reachable"], false);
    assert_eq!(status["this_run"]["skipped"], 1, "{status}");
    assert_eq!(status["this_run"]["errors"], 0, "{status}");
    // The set's failed upload, persisted with the tag's counters by its process.
    assert_eq!(status["lifetime"]["dropped"], 1, "{status}");
    assert_eq!(status["lifetime"]["errors"], 1, "{status}");
}

#[test]
fn a_breaker_hint_planted_as_a_symlink_is_not_followed() {
    let (planter, victim) = (Sandbox::new(), Sandbox::new());
    let nowhere = planter.path("nobody.sock");
    let url = format!("redis+unix://{}", nowhere.display());
    let remote = [("GLOVEBOX_CACHE_REMOTE", url.as_str())];
    // A genuine hint for this endpoint, made by a failing run on another root...
    with_remote(&planter, &remote, &["set", "--tag", "layout", "k", "v"]).expect_code(0);
    let genuine = planter.root().join(HINT);
    let planted = std::fs::read(&genuine).expect("a hint");
    // ... reached through a symlink at the victim's hint path.
    victim
        .run(&["set", "--tag", "layout", "k", "v"])
        .expect_code(0);
    std::os::unix::fs::symlink(&genuine, victim.root().join(HINT)).unwrap();

    let status = with_remote(&victim, &remote, &["remote", "status", "--json"]);
    status.expect_code(0);
    let status = status.json();
    // Not followed: the breaker started closed and the probe went to the (dead) endpoint.
    assert_eq!(status["this_run"]["skipped"], 0, "{status}");
    assert_eq!(status["this_run"]["errors"], 1, "{status}");
    // The hint the probe's failure wrote replaced the link; its target is untouched.
    let meta = std::fs::symlink_metadata(victim.root().join(HINT)).unwrap();
    assert!(meta.file_type().is_file(), "{meta:?}");
    assert_eq!(std::fs::read(&genuine).unwrap(), planted);
}

#[test]
fn show_has_the_remote_tier_s_lifetime_counters_beside_the_local_ones() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    let remote = [("GLOVEBOX_CACHE_REMOTE", url.as_str())];
    let (a, b) = (Sandbox::new(), Sandbox::new());
    with_remote(&a, &remote, &["set", "--tag", "layout", "k", "v"]).expect_code(0);
    with_remote(&b, &remote, &["get", "--tag", "layout", "k"]).expect_code(0);
    with_remote(&b, &remote, &["get", "--tag", "layout", "absent"]).expect_code(1);

    let shown = a.json(&["show", "--json"]);
    let layout = &shown["tags"][0];
    assert_eq!(layout["tag"], "layout");
    assert_eq!(layout["remote"]["published"], 1, "{shown}");
    assert!(
        layout["remote"]["bytes_out"].as_u64().unwrap() > 0,
        "{shown}"
    );
    assert_eq!(shown["totals"]["remote"]["published"], 1, "{shown}");

    // Without the remote configured, B's file still has what its runs counted.
    let shown = b.json(&["show", "--json"]);
    let remote_b = &shown["totals"]["remote"];
    assert_eq!(remote_b["hits"], 1, "{shown}");
    assert_eq!(remote_b["backfills"], 1, "{shown}");
    assert_eq!(remote_b["misses"], 1, "{shown}");
    assert!(remote_b["bytes_in"].as_u64().unwrap() > 0, "{shown}");
    // The local tier's own counters beside them: the miss was a local miss too.
    assert_eq!(shown["totals"]["misses"], 2, "{shown}");
    let table = b.run(&["show"]);
    table.expect_code(0);
    assert!(table.stdout().contains("REMOTE TIER"), "{}", table.stdout());
}

/// The command line has no command that stores or reads a firmware build as such; `get` reads
/// a build's entry (its metadata) like any other, and with a remote the build's directory comes
/// with it: stored on B's root, where the compilation domain finds it without the remote.
#[test]
fn get_on_another_root_fetches_a_build_with_its_directory() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    a_build_stored_on_a_is_fetched_with_its_directory_by_get_on_b(&[(
        "GLOVEBOX_CACHE_REMOTE",
        url.as_str(),
    )]);
}

#[test]
fn s3_get_on_another_root_fetches_a_build_with_its_directory() {
    use cache_test_support::s3::{BUCKET, S3Server, WRITER};
    let Some(server) = S3Server::start() else {
        return;
    };
    let url = format!("s3://{BUCKET}/cli-builds");
    let endpoint = server.endpoint();
    a_build_stored_on_a_is_fetched_with_its_directory_by_get_on_b(&[
        ("GLOVEBOX_CACHE_REMOTE", url.as_str()),
        ("GLOVEBOX_CACHE_REMOTE_ENDPOINT", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", WRITER.0),
        ("AWS_SECRET_ACCESS_KEY", WRITER.1),
        // Generous: SeaweedFS on a busy machine can be slow; nothing here waits for a timeout.
        ("GLOVEBOX_CACHE_REMOTE_TIMEOUT_MS", "15000"),
    ]);
}

/// A firmware build stored on root A by a program whose remote `vars` configure comes back,
/// with its directory, on root B through `glovebox-cache get` with the same variables, and stays
/// on B (read back with no remote at all).
fn a_build_stored_on_a_is_fetched_with_its_directory_by_get_on_b(vars: &[(&str, &str)]) {
    let (a, b) = (Sandbox::new(), Sandbox::new());
    let inputs = cache_compilation::BuildInputs::new("zmkfirmware/zmk", "main", "km", "cfg")
        .pinned(
            "4f1c6e0d9b2a8c7e5f3d1b0a9c8e7f6d5c4b3a29",
            "zmkfirmware/zmk-build-arm@sha256:00",
        );
    let open = |root: std::path::PathBuf, with_remote: bool| {
        let mut coordinator =
            cache_core::Coordinator::with_environment(cache_core::Environment::from_pairs::<
                &str,
                &str,
            >([]))
            .with_sharing(cache_compilation::REMOTE_SHARING);
        if with_remote {
            let environment = cache_core::Environment::from_pairs(vars.iter().copied());
            let remote = cache_remote::Remote::from_environment(&environment)
                .expect("the helper's step")
                .expect("the helper's step");
            coordinator =
                coordinator.with_remote(std::sync::Arc::new(remote) as Arc<dyn RemoteStore>);
        }
        let config = cache_core::UserCacheConfig {
            cache_path: Some(root),
            ..cache_core::UserCacheConfig::default()
        };
        let compilation = cache_compilation::CompilationCache::open(&coordinator, &config)
            .expect("the helper's step");
        (coordinator, compilation)
    };
    let build = a.path("build");
    std::fs::create_dir_all(build.join("zephyr")).expect("the helper's step");
    std::fs::write(build.join("zephyr/zmk.uf2"), b"UF2 firmware").expect("the helper's step");
    {
        let (_coordinator, compilation) = open(a.root(), true);
        compilation
            .builds
            .store(&inputs, &build, &mut |_| {})
            .expect("the helper's step")
            .expect("the helper's step");
        compilation.cache.flush().expect("the helper's step");
    }

    let key = String::from_utf8(inputs.key_bytes()).expect("the helper's step");
    let got = with_remote(&b, vars, &["get", "--tag", "compilation", &key]);
    got.expect_code(0);
    assert!(got.stdout().contains("zmkfirmware/zmk"), "{}", got.stdout());

    let (_coordinator, compilation) = open(b.root(), false);
    let found = compilation
        .builds
        .get(&inputs)
        .expect("the helper's step")
        .expect("kept on B");
    assert_eq!(
        std::fs::read(found.path.join("zephyr/zmk.uf2")).expect("the helper's step"),
        b"UF2 firmware"
    );
}
