//! Firmware builds shared by a fleet through a real `redis-server` (started by each test on a
//! unix socket, killed by pid), a real S3 server (SeaweedFS's `weed mini` on loopback, killed by
//! pid), or both (the split setup: envelopes and leases on Redis, chunks on S3), configured as a
//! program is, through `GLOVEBOX_CACHE_REMOTE` and its companions, with the compilation domain's
//! own sharing rules: a build stored on one root is a hit on another, which does not build (on
//! Redis and on S3 alone); and two processes on two roots asking for the same build at once
//! build it once (the fleet's lease on Redis), the waiter served from the server.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test with its location"
)]

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_compilation::{CompilationCache, CompilationError, REMOTE_SHARING};
use cache_core::{Coordinator, Environment, RemoteStore, UserCacheConfig};
use cache_remote::{
    ACCESS_KEY_ID_VARIABLE, CHUNKS_VARIABLE, ENDPOINT_VARIABLE, REMOTE_VARIABLE, Remote,
    SECRET_ACCESS_KEY_VARIABLE, TIMEOUT_VARIABLE,
};
use cache_test_support::redis::RedisServer;
use cache_test_support::s3::{BUCKET, S3Server, WRITER};
use cache_tests::fleet_build_inputs;
use tempfile::TempDir;

const WORKER: &str = env!("CARGO_BIN_EXE_cache-worker");

/// One machine: a cache root, a coordinator with the remote and the domain's sharing rules.
struct Machine {
    compilation: CompilationCache,
    _coordinator: Coordinator,
    _root: TempDir,
}

/// The variables that configure a remote, as a program's environment holds them.
type Variables = Vec<(&'static str, String)>;

fn redis_variables(server: &RedisServer) -> Variables {
    vec![(REMOTE_VARIABLE, server.url())]
}

/// The S3 key and endpoint, and a generous timeout: SeaweedFS on a busy 2-core machine can be
/// slow, and no test here relies on a timeout firing.
fn s3_access(server: &S3Server) -> Variables {
    vec![
        (ENDPOINT_VARIABLE, server.endpoint()),
        (ACCESS_KEY_ID_VARIABLE, WRITER.0.to_owned()),
        (SECRET_ACCESS_KEY_VARIABLE, WRITER.1.to_owned()),
        (TIMEOUT_VARIABLE, "15000".to_owned()),
    ]
}

/// S3 alone: `GLOVEBOX_CACHE_REMOTE=s3://bucket/prefix`.
fn s3_variables(server: &S3Server, prefix: &str) -> Variables {
    let mut variables = vec![(REMOTE_VARIABLE, format!("s3://{BUCKET}/{prefix}"))];
    variables.extend(s3_access(server));
    variables
}

/// The split setup: envelopes and leases on `redis`, chunks on `s3` under `prefix`.
fn split_variables(redis: &RedisServer, s3: &S3Server, prefix: &str) -> Variables {
    let mut variables = redis_variables(redis);
    variables.push((CHUNKS_VARIABLE, format!("s3://{BUCKET}/{prefix}")));
    variables.extend(s3_access(s3));
    variables
}

fn machine(variables: &Variables) -> Machine {
    let root = tempfile::tempdir().unwrap();
    let environment = Environment::from_pairs(variables.iter().cloned());
    let remote = Remote::from_environment(&environment).unwrap().unwrap();
    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]))
        .with_remote(Arc::new(remote) as Arc<dyn RemoteStore>)
        .with_sharing(REMOTE_SHARING);
    let config = UserCacheConfig {
        cache_path: Some(root.path().to_owned()),
        ..UserCacheConfig::default()
    };
    let compilation = CompilationCache::open(&coordinator, &config).unwrap();
    Machine {
        compilation,
        _coordinator: coordinator,
        _root: root,
    }
}

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_build_stored_on_one_root_is_a_hit_on_another_which_does_not_build() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    a_build_stored_on_a_is_a_hit_on_b_and_c(&redis_variables(&server));
}

#[test]
fn s3_alone_a_build_stored_on_one_root_is_a_hit_on_another_which_does_not_build() {
    let Some(server) = S3Server::start() else {
        return;
    };
    a_build_stored_on_a_is_a_hit_on_b_and_c(&s3_variables(&server, "builds"));
}

/// A build stored on A (and published) is found by B's `get` and restored by C's
/// `get_or_build` without building, all three machines configured by `variables`.
fn a_build_stored_on_a_is_a_hit_on_b_and_c(variables: &Variables) {
    let (a, b, c) = (machine(variables), machine(variables), machine(variables));
    let build = tempfile::tempdir().unwrap();
    write(&build.path().join("zephyr/zmk.uf2"), b"UF2 firmware");
    write(&build.path().join("zephyr/zmk.hex"), b":10000000");
    write(
        &build
            .path()
            .join("zephyr/include/generated/devicetree_generated.h"),
        b"#define DT 1",
    );
    write(&build.path().join("CMakeCache.txt"), b"not an artifact");
    let stored = a
        .compilation
        .builds
        .store(&fleet_build_inputs(), build.path(), &mut |_| {})
        .unwrap()
        .unwrap();
    a.compilation.cache.flush().unwrap();

    let found = b
        .compilation
        .builds
        .get(&fleet_build_inputs())
        .unwrap()
        .expect("a hit through the remote");
    assert_eq!(found.metadata, stored.metadata);
    assert_eq!(
        fs::read(found.path.join("zephyr/zmk.uf2")).unwrap(),
        b"UF2 firmware"
    );
    assert!(!found.path.join("CMakeCache.txt").exists());

    let target = tempfile::tempdir().unwrap();
    let restored = c
        .compilation
        .builds
        .get_or_build(
            &fleet_build_inputs(),
            target.path(),
            |_: &Path| -> Result<(), CompilationError> {
                panic!("the build was on the server: nothing to build")
            },
            &mut |_| {},
        )
        .unwrap()
        .expect("cached");
    assert_eq!(restored.metadata, stored.metadata);
    assert_eq!(
        fs::read(
            target
                .path()
                .join("zephyr/include/generated/devicetree_generated.h")
        )
        .unwrap(),
        b"#define DT 1"
    );
    let counters = c.compilation.cache.get_stats().unwrap().counters;
    assert_eq!(counters.computations, 0);
}

/// How many `SET` commands the server has run (a fleet lease is taken with `SET NX`).
fn set_calls(server: &RedisServer) -> u64 {
    let stats = server.command("INFO commandstats");
    stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_set:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

/// Polls `done` until it holds, bounded only against a hang.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A worker process, killed (by its pid) if the test fails before it has finished.
struct Worker(Option<Child>);

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_worker(root: &Path, variables: &Variables, markers: &Path, target: &Path) -> Worker {
    let mut command = Command::new(WORKER);
    // Only the variables given configure its remote, whatever the test runner's environment.
    for variable in [
        REMOTE_VARIABLE,
        CHUNKS_VARIABLE,
        ENDPOINT_VARIABLE,
        TIMEOUT_VARIABLE,
    ] {
        command.env_remove(variable);
    }
    let child = command
        .arg("remote-build")
        .arg(root)
        .arg(markers)
        .arg(target)
        .envs(variables.iter().cloned())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Worker(Some(child))
}

fn finish(mut worker: Worker) -> String {
    let child = worker.0.take().unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn built_markers(markers: &Path) -> Vec<String> {
    fs::read_dir(markers)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("built-"))
        .collect()
}

#[test]
fn two_processes_on_two_roots_build_once_and_the_waiter_is_served_from_the_server() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    two_processes_build_once(&server, &redis_variables(&server));
}

#[test]
fn split_two_processes_on_two_roots_build_once_with_the_builds_chunks_on_s3() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let Some(s3) = S3Server::start() else {
        return;
    };
    let uf2 = two_processes_build_once(&redis, &split_variables(&redis, &s3, "split"));
    // The build's contents (its one file) are one chunk, an S3 object named by their hash; no
    // chunk is on Redis.
    assert!(s3.get(&format!("split/glovebox/v1/c/{uf2}")).is_some());
    let chunks = redis.command("KEYS glovebox/v1/c/*");
    assert!(!chunks.contains("glovebox/"), "{chunks}");
}

/// Two worker processes on two roots, configured by `variables` (their leases on `server`),
/// ask for the same build at once: it is built once, and both get it. Returns the hex blake3
/// of the firmware they got.
fn two_processes_build_once(server: &RedisServer, variables: &Variables) -> String {
    let (root_a, root_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let markers = tempfile::tempdir().unwrap();
    let (target_a, target_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    let a = spawn_worker(root_a.path(), variables, markers.path(), target_a.path());
    // A builds, holding the fleet's lease, until the test says go.
    eventually("a builds", || !built_markers(markers.path()).is_empty());
    let before = set_calls(server);
    let b = spawn_worker(root_b.path(), variables, markers.path(), target_b.path());
    // B's leader has found the fleet's lease held and tried it again: it is waiting for A.
    eventually("b waits for the lease", || set_calls(server) >= before + 2);
    fs::write(markers.path().join("go"), b"").unwrap();

    let (out_a, out_b) = (finish(a), finish(b));
    assert_eq!(
        built_markers(markers.path()).len(),
        1,
        "built more than once"
    );
    let uf2 = |out: &str| {
        out.lines()
            .find_map(|line| line.strip_prefix("uf2 "))
            .unwrap()
            .to_owned()
    };
    assert_eq!(uf2(&out_a), uf2(&out_b));
    assert!(out_a.contains("computations 1"), "{out_a}");
    assert!(out_b.contains("computations 0"), "{out_b}");
    assert_eq!(
        fs::read(target_a.path().join("zephyr/zmk.uf2")).unwrap(),
        fs::read(target_b.path().join("zephyr/zmk.uf2")).unwrap()
    );
    let leases = server.command("KEYS glovebox/v1/l/*");
    assert!(!leases.contains("glovebox/"), "{leases}");
    uf2(&out_a)
}
