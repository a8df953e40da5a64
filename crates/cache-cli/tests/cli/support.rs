//! A sandbox per test: a temp directory holding the cache root, HOME and XDG_CACHE_HOME, a way to
//! run the binary in it, and a way to seed entries with chosen creation times through cache-core.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_core::{CacheOptions, Coordinator, Environment, ManualClock};
use serde_json::Value;

pub(crate) struct Sandbox {
    dir: tempfile::TempDir,
}

/// What one run of the binary did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn stdout(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }

    /// Asserts the exit code, showing both streams when it differs.
    pub(crate) fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            code,
            "exit code\n--- stdout:\n{}\n--- stderr:\n{}",
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        );
        self
    }

    /// Asserts that stderr mentions every one of `parts`.
    pub(crate) fn expect_stderr(&self, parts: &[&str]) -> &Self {
        for part in parts {
            assert!(
                self.stderr.contains(part),
                "stderr lacks {part:?}:\n{}",
                self.stderr
            );
        }
        self
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|err| {
            panic!(
                "stdout is not JSON ({err}):\n{}\n--- stderr:\n{}",
                String::from_utf8_lossy(&self.stdout),
                self.stderr
            )
        })
    }
}

impl Sandbox {
    pub(crate) fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The cache root `GLOVEBOX_CACHE_PATH` points at (not created until something writes).
    pub(crate) fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A path inside the sandbox, outside the root.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The binary with an isolated environment: nothing inherited, HOME and XDG_CACHE_HOME in
    /// the sandbox, GLOVEBOX_CACHE_PATH at [`Sandbox::root`], stdin not a terminal.
    pub(crate) fn command(&self) -> Command {
        let mut command = self.bare_command();
        command.env("GLOVEBOX_CACHE_PATH", self.root());
        command
    }

    /// Like [`Sandbox::command`] without GLOVEBOX_CACHE_PATH.
    pub(crate) fn bare_command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_glovebox-cache"));
        command
            .env_clear()
            .env("HOME", self.path("home"))
            .env("XDG_CACHE_HOME", self.path("xdg"))
            .stdin(Stdio::null());
        command
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        let mut command = self.command();
        command.args(args);
        run(&mut command)
    }

    /// Runs `args`, expects exit code 0, and parses stdout as JSON.
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let run = self.run(args);
        run.expect_code(0);
        run.json()
    }

    /// Runs `args`, expects exit code `code`, and parses stdout as JSON.
    pub(crate) fn json_code(&self, args: &[&str], code: i32) -> Value {
        let run = self.run(args);
        run.expect_code(code);
        run.json()
    }

    /// Stores entries through cache-core as if written `age` ago, with `ttl`, then closes.
    pub(crate) fn seed(
        &self,
        tag: &str,
        age: Duration,
        ttl: Option<Duration>,
        entries: &[(&[u8], &[u8])],
    ) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as u64;
        let options = CacheOptions {
            clock: Arc::new(ManualClock::new(now_ms - age.as_millis() as u64)),
            ..CacheOptions::default()
        };
        let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
        let cache = coordinator
            .get_shared_cache_instance(&self.root(), tag, options)
            .expect("open the tag to seed");
        cache.set_many(entries, ttl).expect("seed entries");
        coordinator.reset().expect("flush the seeded entries");
    }

    /// The database file of `tag`.
    pub(crate) fn database(&self, tag: &str) -> PathBuf {
        self.root().join(tag).join("cache.redb")
    }
}

/// Runs `command` like [`run`], but gives up on it after `hang`: a child still running then is
/// killed and the test fails. A bound on a hang, not a timing the test relies on.
pub(crate) fn run_bounded(command: &mut Command, hang: Duration) -> Run {
    use std::io::Read as _;

    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).map(|_| bytes)
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).map(|_| text)
    });
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the binary") {
            break status;
        }
        if started.elapsed() > hang {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still ran after {hang:?}: an unbounded wait");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code().expect("exited, not killed"),
        stdout: out.join().expect("stdout reader").expect("stdout"),
        stderr: err.join().expect("stderr reader").expect("stderr is UTF-8"),
    }
}

pub(crate) fn run(command: &mut Command) -> Run {
    let output = command.output().expect("the binary runs");
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: output.stdout,
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

/// The `key` fields of a JSON array of key rows.
pub(crate) fn key_names(rows: &Value) -> Vec<String> {
    rows.as_array()
        .expect("an array of keys")
        .iter()
        .map(|row| row["key"].as_str().expect("a text key").to_owned())
        .collect()
}

/// Whether anything exists at `path` (without following a symlink).
pub(crate) fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

pub(crate) const DAY: Duration = Duration::from_secs(86_400);
