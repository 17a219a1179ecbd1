//! The pre-fork example server (`examples/server.rs`), run as a real process tree: endpoints
//! over loopback HTTP/1.1, per-IP rate limiting, a SIGKILLed worker restarted by the master
//! with all state intact, and SIGTERM shutting everything down. With the `redis` feature, the
//! same server on `--backend redis` against a real `redis-server`. Every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

#[cfg(feature = "redis")]
mod redis_server;

const LIMIT: u64 = 20;

/// The example's binary, (re)built by `cargo build --example server` so that it is never stale
/// (`cargo test --test server` alone does not build examples; when it is fresh this is a no-op).
fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/server-<hash> -> target/<profile>/examples/server
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "--example", "server"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    if cfg!(feature = "redis") {
        build.args(["--features", "redis"]);
    }
    assert!(build.status().expect("run cargo").success());
    let bin = profile_dir.join("examples").join("server");
    assert!(bin.exists(), "{bin:?} missing");
    bin
}

/// Kills the master (its workers die with it: PR_SET_PDEATHSIG) if the test fails midway.
struct Server {
    child: Child,
    lines: Receiver<String>,
}

impl Server {
    /// The next line of the master's stdout containing `needle`, within `timeout`.
    fn wait_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(e) => panic!("no line containing {needle:?} within {timeout:?}: {e}"),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn worker(&self) -> i32 {
        self.header("x-worker-pid").unwrap().parse().unwrap()
    }
}

/// One HTTP/1.1 request from source address `from` (any 127.x.y.z works on Linux loopback;
/// the server rate-limits per source address). Retried (at most 50 times) when the connection
/// is refused or reset before a response: a worker that was just killed can leave connections
/// in its accept queue, which the kernel resets.
fn request(port: u16, from: Ipv4Addr, method: &str, path: &str, body: &str) -> Reply {
    let mut last = None;
    for _ in 0..50 {
        match try_request(port, from, method, path, body) {
            Ok(r) => return r,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{method} {path}: {last:?}");
}

fn try_request(
    port: u16,
    from: Ipv4Addr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<Reply> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::new(IpAddr::V4(from), 0).into())?;
    let to = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    s.connect_timeout(&to.into(), Duration::from_secs(5))?;
    let mut tcp: TcpStream = s.into();
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    tcp.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no full response"))?;
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    Ok(Reply {
        status: status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad("bad status line"))?,
        headers: headers.replace("\r\n", "\n"),
        body: body.to_owned(),
    })
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Starts the server with two workers, the test's rate limit and `extra` options; returns it
/// and its port once it listens.
fn start_server(bin: &std::path::Path, extra: &[&str]) -> (Server, u16) {
    let mut child = Command::new(bin)
        .args(["--workers", "2", "--port", "0", "--rate-limit"])
        .arg(LIMIT.to_string())
        .args(["--rate-window", "60", "--session-ttl", "600"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let server = Server { child, lines };
    let ready = server.wait_line("listening on http://127.0.0.1:", Duration::from_secs(30));
    let port: u16 = ready
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    (server, port)
}

/// SIGTERMs the master and waits (bounded) for it to exit successfully.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
fn stop_server(mut server: Server) {
    let master = server.child.id() as i32;
    // SAFETY: kill has no memory effects; `master` is the server we started.
    assert_eq!(unsafe { libc::kill(master, libc::SIGTERM) }, 0);
    server.wait_line("stopped", Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = server.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "master did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn prefork_server_end_to_end() {
    let (server, port) = start_server(&server_binary(), &[]);

    // Each request from its own loopback address, so these stay under the rate limit.
    let mut next_ip = 0u32;
    let mut req = |method: &str, path: &str, body: &str| {
        next_ip += 1;
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 1, 0, 0)) + next_ip);
        request(port, ip, method, path, body)
    };

    // The global counter, across whichever workers answer.
    for want in 1..=5 {
        let r = req("POST", "/counter", "");
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, format!("{want}\n").as_str())
        );
    }
    assert_eq!(req("GET", "/counter", "").body, "5\n");
    assert_eq!(req("DELETE", "/counter", "").status, 405);

    // Sessions.
    let r = req("POST", "/session", "alice's session");
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body.contains("\"ttl\":600"), "{}", r.body);
    let id = r.body.split('"').nth(3).unwrap().to_owned();
    assert_eq!(
        r.header("location"),
        Some(format!("/session/{id}").as_str())
    );
    let r = req("GET", &format!("/session/{id}"), "");
    assert_eq!((r.status, r.body.as_str()), (200, "alice's session"));
    assert_eq!(
        req("GET", &format!("/session/{}", "0".repeat(32)), "").status,
        404
    );
    assert_eq!(req("GET", "/session/../../etc/passwd", "").status, 404);
    assert_eq!(req("POST", "/session", &"x".repeat(2000)).status, 413);
    assert_eq!(req("GET", "/nope", "").status, 404);

    // Metrics: the library's exposition, with the server's counters.
    let r = req("GET", "/metrics", "");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(r
        .body
        .contains("shmstate_counter_value{name=\"server.counter\"} 5\n"));
    assert!(r.body.contains("# TYPE shmstate_sets_total counter\n"));

    // Rate limiting: one address gets LIMIT requests per window, then 429 + Retry-After.
    let limited = Ipv4Addr::new(127, 0, 0, 2);
    for _ in 0..LIMIT {
        assert_eq!(request(port, limited, "GET", "/counter", "").status, 200);
    }
    let r = request(port, limited, "GET", "/counter", "");
    assert_eq!(r.status, 429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Other clients are not affected; /metrics is never limited.
    assert_eq!(req("GET", "/counter", "").status, 200);
    assert_eq!(request(port, limited, "GET", "/metrics", "").status, 200);

    // Kill a worker: the master restarts it, and the new worker sees all the state.
    let victim = req("GET", "/counter", "").worker();
    // SAFETY: kill has no memory effects; `victim` is a worker of the server we started.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    let line = server.wait_line("restarted as pid", Duration::from_secs(20));
    let fresh: i32 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_ne!(fresh, victim);
    let mut seen_fresh = false;
    for _ in 0..300 {
        let r = req("GET", &format!("/session/{id}"), "");
        if r.worker() == fresh {
            assert_eq!((r.status, r.body.as_str()), (200, "alice's session"));
            seen_fresh = true;
            break;
        }
    }
    assert!(seen_fresh, "the restarted worker {fresh} never answered");
    let r = req("POST", "/counter", "");
    assert_eq!(r.body, "6\n");
    let r = req("GET", "/metrics", "");
    assert!(r
        .body
        .contains("shmstate_counter_value{name=\"server.worker_restarts\"} 1\n"));

    // SIGTERM: the master forwards it, the workers drain and exit, then the master.
    let mut workers = vec![fresh];
    for _ in 0..50 {
        let w = req("GET", "/metrics", "").worker();
        if !workers.contains(&w) {
            workers.push(w);
            break;
        }
    }
    let master = server.child.id() as i32;
    // SAFETY: as above, on the master we started.
    assert_eq!(unsafe { libc::kill(master, libc::SIGTERM) }, 0);
    server.wait_line("stopped", Duration::from_secs(20));
    let mut server = server;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = server.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "master did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    for w in workers {
        assert!(!alive(w), "worker {w} still alive");
    }
    assert!(TcpStream::connect_timeout(
        &SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        Duration::from_secs(2)
    )
    .is_err());
}

/// The same server with `--backend redis`: the application state lives in Redis, so a second
/// server (a new master with a new store, as on another host) sees it.
#[cfg(feature = "redis")]
#[test]
fn prefork_server_on_redis() {
    let Some(redis) = redis_server::RedisServer::start_or_skip("the Redis-backed server test")
    else {
        return;
    };
    let bin = server_binary();
    let url = redis.url();
    let args = ["--backend", "redis", "--redis-url", url.as_str()];
    let (server, port) = start_server(&bin, &args);
    let mut next_ip = 0u32;
    let mut req = |port: u16, method: &str, path: &str, body: &str| {
        next_ip += 1;
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 2, 0, 0)) + next_ip);
        request(port, ip, method, path, body)
    };
    for want in 1..=3 {
        let r = req(port, "POST", "/counter", "");
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, format!("{want}\n").as_str())
        );
    }
    let r = req(port, "POST", "/session", "bob's session");
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body.split('"').nth(3).unwrap().to_owned();
    let r = req(port, "GET", &format!("/session/{id}"), "");
    assert_eq!((r.status, r.body.as_str()), (200, "bob's session"));
    let r = req(port, "GET", "/metrics", "");
    assert!(r.body.contains("server_global_counter 3\n"), "{}", r.body);
    // The state is in Redis, under the documented keys.
    let mut raw = redis.raw().unwrap();
    let stored: Option<String> = redis::cmd("GET")
        .arg("shmstate:counter:server.counter")
        .query(&mut raw)
        .unwrap();
    assert_eq!(stored.as_deref(), Some("3"));
    // Rate limiting, counted in Redis.
    let limited = Ipv4Addr::new(127, 0, 0, 3);
    for _ in 0..LIMIT {
        assert_eq!(request(port, limited, "GET", "/counter", "").status, 200);
    }
    let r = request(port, limited, "GET", "/counter", "");
    assert_eq!(r.status, 429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    stop_server(server);

    // Another server, as on another host: same counter, same session, same rate limit.
    let (server, port2) = start_server(&bin, &args);
    assert_eq!(req(port2, "POST", "/counter", "").body, "4\n");
    let r = req(port2, "GET", &format!("/session/{id}"), "");
    assert_eq!((r.status, r.body.as_str()), (200, "bob's session"));
    assert_eq!(request(port2, limited, "GET", "/counter", "").status, 429);
    stop_server(server);

    // Redis unreachable: the master refuses to start, with a clear message.
    drop(raw);
    drop(redis);
    let out = Command::new(&bin)
        .args(["--workers", "1", "--port", "0"])
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("redis at unix://"), "{err}");
}
