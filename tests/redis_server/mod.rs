//! A real `redis-server` for the tests and the benchmarks (`benches/support` includes this
//! file): on a unix socket in a temporary directory, and on a loopback TCP port if asked, with
//! persistence off; killed and removed on drop. Without `redis-server` installed, a test is
//! skipped with a message, except under CI (`CI` set), where it fails; a benchmark prints the
//! reason its Redis baseline is skipped.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Child,
    dir: PathBuf,
    pub socket: PathBuf,
    /// The loopback TCP port, when started with one.
    pub port: Option<u16>,
}

impl RedisServer {
    /// The server, or `None` after printing that `what` is skipped (redis-server missing,
    /// outside CI). Panics if the server cannot be started for another reason.
    pub fn start_or_skip(what: &str) -> Option<Self> {
        match Self::launch(false) {
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

    /// The server (on a unix socket, plus a loopback TCP port with `tcp`), or why there is
    /// none, to print as the reason a baseline is skipped.
    pub fn start(tcp: bool) -> Result<Self, String> {
        Self::launch(tcp)?.ok_or_else(|| {
            "redis-server is not installed (apt-get install redis-server)".to_string()
        })
    }

    /// `Ok(None)`: redis-server is not installed.
    fn launch(tcp: bool) -> Result<Option<Self>, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "shmstate-redis-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{dir:?}: {e}"))?;
        let socket = dir.join("redis.sock");
        let port = if tcp {
            // A free port now; taken by redis-server a moment later (another process could
            // take it in between, which makes the start fail, not misbehave).
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            Some(l.local_addr().map_err(|e| e.to_string())?.port())
        } else {
            None
        };
        let spawned = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(port.unwrap_or(0).to_string())
            .arg("--unixsocket")
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
        // From here on, dropping `server` kills the child and removes the directory.
        let mut server = RedisServer {
            child,
            dir,
            socket,
            port,
        };
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

    /// A client connection over the unix socket.
    pub fn connect_unix(&self) -> redis::RedisResult<redis::Connection> {
        self.raw()
    }

    /// A client connection over loopback TCP (started with `tcp`).
    pub fn connect_tcp(&self) -> redis::RedisResult<redis::Connection> {
        let port = self.port.ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "started without TCP"))
        })?;
        redis::Client::open(format!("redis://127.0.0.1:{port}/"))?
            .get_connection_with_timeout(Duration::from_secs(2))
    }

    /// The server's process id (the benchmarks pin it to a CPU).
    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
