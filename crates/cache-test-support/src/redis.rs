//! A `redis-server` for the tests of the remote tier: started by the test on a unix socket in a
//! temp directory (no TCP port, no persistence), stopped by its pid when dropped.
//!
//! Where `redis-server` is missing, [`RedisServer::start`] returns `None` after saying so, and
//! the test skips; under `CI=true` it panics instead, so CI cannot pass by skipping
//! (`.ci/run` installs the server from the distribution's packages).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A running `redis-server`, killed on drop.
pub struct RedisServer {
    child: Child,
    socket: PathBuf,
    _dir: TempDir,
}

impl RedisServer {
    /// Starts a server, or returns `None` (after printing why) when `redis-server` is not
    /// installed and `CI` is not `true`.
    pub fn start() -> Option<RedisServer> {
        Self::start_with(&[])
    }

    /// [`RedisServer::start`] with extra arguments (for example `["--maxmemory", "1mb"]`).
    pub fn start_with(extra: &[&str]) -> Option<RedisServer> {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("redis.sock");
        let spawned = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--unixsocketperm",
                "700",
            ])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "redis-server is not installed, and CI=true: .ci/run installs it"
                );
                // A test harness telling the person running it why a test did nothing.
                #[allow(clippy::print_stderr)]
                {
                    eprintln!(
                        "skipped: redis-server is not installed (apt-get install redis-server)"
                    );
                }
                return None;
            }
            Err(err) => panic!("starting redis-server: {err}"),
        };
        let server = RedisServer {
            child,
            socket,
            _dir: dir,
        };
        server.wait_until_ready();
        Some(server)
    }

    /// The endpoint for `GLOVEBOX_CACHE_REMOTE`.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    /// The server's unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The server's pid (to stop, continue or kill it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one command in the inline protocol and returns the raw reply.
    pub fn command(&self, line: &str) -> String {
        let mut stream = UnixStream::connect(&self.socket).expect("connect to redis-server");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("send");
        let mut reply = vec![0u8; 64 * 1024];
        let n = stream.read(&mut reply).expect("reply");
        String::from_utf8_lossy(&reply[..n]).into_owned()
    }

    /// Sends `signal` (`-STOP`, `-CONT`, `-KILL`) to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Waits for the server to answer PING, bounded only against a hang (a busy machine may be
    /// slow to start it; this is not a timing assertion).
    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut stream) = UnixStream::connect(&self.socket) {
                let mut reply = [0u8; 7];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read_exact(&mut reply).is_ok()
                    && &reply == b"+PONG\r\n"
                {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A stopped server must be continued to die of a TERM; KILL needs neither.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
