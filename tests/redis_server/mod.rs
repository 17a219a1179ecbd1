//! A real `redis-server` for the tests: on a unix socket in a temporary directory (no TCP, no
//! persistence), killed and removed on drop. Without `redis-server` installed, the caller's
//! Redis test is skipped with a message, except under CI (`CI` set), where it fails.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Child,
    dir: PathBuf,
    pub socket: PathBuf,
}

impl RedisServer {
    /// The server, or `None` after printing that `what` is skipped (redis-server missing,
    /// outside CI). Panics if the server cannot be started for another reason.
    pub fn start_or_skip(what: &str) -> Option<Self> {
        match Self::start() {
            Ok(Some(s)) => Some(s),
            Ok(None) if std::env::var_os("CI").is_some() => {
                panic!("redis-server is not installed, and CI is set (.ci/run installs it)")
            }
            Ok(None) => {
                eprintln!(
                    "SKIPPED: {what} (redis-server is not installed; apt-get install redis-server)"
                );
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// `Ok(None)`: redis-server is not installed.
    fn start() -> Result<Option<Self>, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "shmstate-test-redis-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{dir:?}: {e}"))?;
        let socket = dir.join("redis.sock");
        let spawned = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                if e.kind() == std::io::ErrorKind::NotFound {
                    return Ok(None);
                }
                return Err(format!("redis-server: {e}"));
            }
        };
        let mut server = RedisServer { child, dir, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if server.socket.exists() && server.ping() {
                return Ok(Some(server));
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("redis-server exited: {status}"));
            }
            if Instant::now() > deadline {
                return Err("redis-server did not answer within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn ping(&self) -> bool {
        self.raw()
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// `unix:///...` URL of the socket.
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// A plain client connection, for checking what the code under test stored.
    pub fn raw(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
