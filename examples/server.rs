//! A pre-fork HTTP server whose workers share state through one `shmstate` store.
//!
//! The master creates an anonymous store, reserves the port, and forks N workers (default: one
//! per CPU). Each worker builds its own single-threaded tokio runtime *after* the fork (a
//! multi-threaded process must never fork), binds the port with `SO_REUSEPORT` so the kernel
//! spreads connections over the workers, and serves with hyper:
//!
//! | route | what |
//! |---|---|
//! | `POST /counter` | increments the global counter, returns the new value |
//! | `GET /counter` | the global counter |
//! | `POST /session` | stores the body (at most 1 KiB) as a session with a TTL; `201` with `{"id":…,"ttl":…}` |
//! | `GET /session/{id}` | the session's data, or `404` once expired |
//! | `GET /metrics` | the store's statistics and counters, Prometheus text format |
//!
//! Every route but `/metrics` is rate limited per client IP (fixed window): over the limit the
//! answer is `429` with `Retry-After`. Every answer carries `x-worker-pid`.
//!
//! The master restarts a worker that dies (the new one inherits the same store, so it sees all
//! state), and on SIGTERM or SIGINT forwards SIGTERM to the workers, which stop accepting,
//! finish their requests (at most 5 s), and exit; the master waits for them (at most 10 s,
//! then SIGKILL) and exits.
//!
//! ```sh
//! cargo run --release --example server -- --workers 2 --port 8080
//! curl -X POST localhost:8080/counter
//! ```
//!
//! Options: `--workers N`, `--bind ADDR` (default 127.0.0.1), `--port P` (default 8080, 0 picks
//! one), `--rate-limit N` requests per `--rate-window SECS` (default 100 per 1 s; 0 disables),
//! `--session-ttl SECS` (default 1800), `--capacity N` (default 100 000 entries),
//! `--backend shm|redis` (default shm) and `--redis-url URL` (default
//! `redis://127.0.0.1:6379/`; `unix:///path/to/redis.sock` for a unix socket).
//!
//! State access goes through the small [`Backend`] trait: the handlers do not know the store.
//! `--backend redis` (built with `--features redis`) keeps the application state (the global
//! counter, sessions, rate limits) in Redis through the library's `RedisBackend`, so several
//! hosts can share it; the supervision counters (worker starts and restarts, requests served
//! by this host) stay in the host's store.
//!
//! ```sh
//! cargo run --release --features redis --example server -- --backend redis --redis-url unix:///run/redis/redis.sock
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
#[cfg(feature = "redis")]
use shmstate::StateBackend;
use shmstate::{Config, Counter, Store, Ttl};
use socket2::{Domain, Socket, Type};

/// Largest session body.
const MAX_SESSION_BYTES: usize = 1024;
/// Counter of workers that reached `listen` (the master waits for all at startup).
const WORKER_STARTS: &str = "server.worker_starts";
/// How long the master waits for the first workers to listen.
const STARTUP_WAIT: Duration = Duration::from_secs(30);
/// How long a worker lets in-flight requests finish after SIGTERM.
const WORKER_GRACE: Duration = Duration::from_secs(5);
/// How long the master waits for its workers after SIGTERM before SIGKILL.
const MASTER_GRACE: Duration = Duration::from_secs(10);
/// How often the master checks for dead workers and signals.
const SUPERVISE_TICK: Duration = Duration::from_millis(20);
/// A worker slot restarted this many times within `CRASH_WINDOW` is restarted only after
/// `CRASH_BACKOFF` (a worker that dies at start must not turn the master into a fork loop).
const CRASH_LIMIT: u32 = 5;
const CRASH_WINDOW: Duration = Duration::from_secs(10);
const CRASH_BACKOFF: Duration = Duration::from_secs(1);
/// Threads (and Redis connections) per worker for the Redis backend's blocking calls: the
/// number of requests a worker can have waiting on Redis at once.
const BLOCKING_THREADS: usize = 64;

// ---------------------------------------------------------------------------------------------
// Configuration

#[derive(Debug, Clone)]
struct Options {
    workers: usize,
    bind: IpAddr,
    port: u16,
    rate_limit: u64,
    rate_window: Duration,
    session_ttl: Duration,
    capacity: u64,
    backend: BackendChoice,
}

/// Where the application state lives.
#[derive(Debug, Clone)]
enum BackendChoice {
    /// The store shared by this host's workers.
    Shm,
    /// A Redis server at this URL.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Redis(String),
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut o = Options {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            rate_limit: 100,
            rate_window: Duration::from_secs(1),
            session_ttl: Duration::from_secs(1800),
            capacity: 100_000,
            backend: BackendChoice::Shm,
        };
        let mut redis_url = "redis://127.0.0.1:6379/".to_owned();
        let mut use_redis = false;
        let mut args = args.peekable();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or(format!("{flag} needs a value"));
            let num = |v: String| -> Result<u64, String> {
                v.parse()
                    .map_err(|_| format!("{flag}: {v:?} is not a number"))
            };
            match flag.as_str() {
                "--workers" => o.workers = num(value()?)?.clamp(1, 256) as usize,
                "--bind" => {
                    let v = value()?;
                    o.bind = v
                        .parse()
                        .map_err(|_| format!("--bind: bad address {v:?}"))?;
                }
                "--port" => {
                    o.port = u16::try_from(num(value()?)?).map_err(|_| "--port: too large")?;
                }
                "--rate-limit" => o.rate_limit = num(value()?)?,
                "--rate-window" => o.rate_window = Duration::from_secs(num(value()?)?.max(1)),
                "--session-ttl" => o.session_ttl = Duration::from_secs(num(value()?)?.max(1)),
                "--capacity" => o.capacity = num(value()?)?,
                "--backend" => match value()?.as_str() {
                    "shm" => use_redis = false,
                    "redis" => use_redis = true,
                    v => return Err(format!("--backend: {v:?} is neither shm nor redis")),
                },
                "--redis-url" => redis_url = value()?,
                "-h" | "--help" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown option {other:?}\n{USAGE}")),
            }
        }
        if use_redis {
            if !cfg!(feature = "redis") {
                return Err("--backend redis: this build has no Redis support \
                            (build the example with --features redis)"
                    .to_owned());
            }
            o.backend = BackendChoice::Redis(redis_url);
        }
        Ok(o)
    }
}

const USAGE: &str = "usage: server [--workers N] [--bind ADDR] [--port P] [--rate-limit N] \
[--rate-window SECS] [--session-ttl SECS] [--capacity N] [--backend shm|redis] [--redis-url URL]";

// ---------------------------------------------------------------------------------------------
// State access: everything the handlers need, behind one trait.

/// An error from the state backend, shown to clients as `503`.
#[derive(Debug)]
struct BackendError(String);

impl From<shmstate::Error> for BackendError {
    fn from(e: shmstate::Error) -> Self {
        BackendError(e.to_string())
    }
}

/// The outcome of counting one request against a client's rate limit.
enum Admission {
    Allowed,
    /// Over the limit; retry after this many whole seconds.
    Limited {
        retry_after_secs: u64,
    },
}

/// The state the handlers use. Methods return futures so that a networked backend (Redis)
/// can implement them; the shared-memory one completes at once.
trait Backend: Send + Sync + 'static {
    /// Adds one to the global counter and returns the new value.
    fn counter_incr(&self) -> impl Future<Output = Result<i64, BackendError>> + Send;
    /// The global counter.
    fn counter_get(&self) -> impl Future<Output = Result<i64, BackendError>> + Send;
    /// Stores a session; `false` if the id was taken.
    fn session_put(
        &self,
        id: &str,
        data: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;
    /// A session's data, if it exists and has not expired.
    fn session_get(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, BackendError>> + Send;
    /// Counts one request of `client` in the current fixed window of length `window`.
    fn admit(
        &self,
        client: IpAddr,
        limit: u64,
        window: Duration,
    ) -> impl Future<Output = Result<Admission, BackendError>> + Send;
    /// Records that this worker is accepting connections.
    fn listening(&self);
    /// Metrics in the Prometheus text format.
    fn metrics(&self) -> impl Future<Output = Result<String, BackendError>> + Send;
}

/// The shared-memory backend: one `shmstate` store inherited from the master.
struct ShmBackend {
    store: Store,
    counter: Counter,
    requests: Counter,
    limited: Counter,
    starts: Counter,
}

impl ShmBackend {
    fn new(store: Store) -> shmstate::Result<Self> {
        Ok(ShmBackend {
            counter: store.counter("server.counter")?,
            requests: store.counter("server.requests")?,
            limited: store.counter("server.rate_limited")?,
            starts: store.counter(WORKER_STARTS)?,
            store,
        })
    }
}

fn session_key(id: &str) -> String {
    format!("session:{id}")
}

impl Backend for ShmBackend {
    async fn counter_incr(&self) -> Result<i64, BackendError> {
        Ok(self.counter.add(1))
    }

    async fn counter_get(&self) -> Result<i64, BackendError> {
        Ok(self.counter.get())
    }

    async fn session_put(
        &self,
        id: &str,
        data: &[u8],
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        Ok(self
            .store
            .add(session_key(id).as_bytes(), data, Some(ttl))?)
    }

    async fn session_get(&self, id: &str) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.store.get(session_key(id).as_bytes())?)
    }

    async fn admit(
        &self,
        client: IpAddr,
        limit: u64,
        window: Duration,
    ) -> Result<Admission, BackendError> {
        self.requests.add(1);
        // Fixed window: the key's TTL is set when the first request of the window creates it.
        let key = format!("rl:{client}");
        let n = self.store.incr(key.as_bytes(), 1, Some(window))?;
        if u64::try_from(n).unwrap_or(u64::MAX) <= limit {
            return Ok(Admission::Allowed);
        }
        self.limited.add(1);
        let retry_after_secs = match self.store.ttl(key.as_bytes())? {
            Ttl::ExpiresIn(d) => d.as_millis().div_ceil(1000).max(1) as u64,
            // Expired in between: the next request opens a new window.
            Ttl::NoKey | Ttl::NoExpiry => 1,
        };
        Ok(Admission::Limited { retry_after_secs })
    }

    fn listening(&self) {
        self.starts.add(1);
    }

    async fn metrics(&self) -> Result<String, BackendError> {
        Ok(shmstate::prometheus(&self.store)?)
    }
}

/// The Redis backend: the library's `RedisBackend` for the application state, this host's
/// store for the supervision counters.
///
/// `RedisBackend` blocks, so each call runs on tokio's blocking thread pool (at most
/// [`BLOCKING_THREADS`] per worker), each with its own pooled connection: a worker keeps
/// that many requests in flight instead of serializing them on one connection.
#[cfg(feature = "redis")]
struct RedisStateBackend {
    redis: shmstate::RedisBackend,
    store: Store,
    requests: Counter,
    limited: Counter,
    starts: Counter,
}

/// The Redis name of the global counter.
#[cfg(feature = "redis")]
const GLOBAL_COUNTER: &str = "server.counter";

#[cfg(feature = "redis")]
impl RedisStateBackend {
    fn new(store: Store, url: &str) -> shmstate::Result<Self> {
        Ok(RedisStateBackend {
            redis: shmstate::RedisBackend::with_options(
                url,
                shmstate::RedisOptions::new().max_idle(BLOCKING_THREADS),
            )?,
            requests: store.counter("server.requests")?,
            limited: store.counter("server.rate_limited")?,
            starts: store.counter(WORKER_STARTS)?,
            store,
        })
    }

    /// Runs `f` on the blocking pool.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&shmstate::RedisBackend) -> shmstate::Result<T> + Send + 'static,
    ) -> Result<T, BackendError> {
        let redis = self.redis.clone();
        match tokio::task::spawn_blocking(move || f(&redis)).await {
            Ok(r) => Ok(r?),
            Err(e) => Err(BackendError(format!("blocking task failed: {e}"))),
        }
    }
}

#[cfg(feature = "redis")]
impl Backend for RedisStateBackend {
    async fn counter_incr(&self) -> Result<i64, BackendError> {
        self.call(|r| r.counter_add(GLOBAL_COUNTER, 1)).await
    }

    async fn counter_get(&self) -> Result<i64, BackendError> {
        self.call(|r| r.counter_get(GLOBAL_COUNTER)).await
    }

    async fn session_put(
        &self,
        id: &str,
        data: &[u8],
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let (key, data) = (session_key(id), data.to_vec());
        self.call(move |r| r.add(key.as_bytes(), &data, Some(ttl)))
            .await
    }

    async fn session_get(&self, id: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let key = session_key(id);
        self.call(move |r| r.get(key.as_bytes())).await
    }

    async fn admit(
        &self,
        client: IpAddr,
        limit: u64,
        window: Duration,
    ) -> Result<Admission, BackendError> {
        self.requests.add(1);
        let key = client.to_string();
        let d = self
            .call(move |r| r.rate_limit(key.as_bytes(), limit, window))
            .await?;
        if d.allowed {
            return Ok(Admission::Allowed);
        }
        self.limited.add(1);
        Ok(Admission::Limited {
            retry_after_secs: d.retry_after.as_millis().div_ceil(1000).max(1) as u64,
        })
    }

    fn listening(&self) {
        self.starts.add(1);
    }

    async fn metrics(&self) -> Result<String, BackendError> {
        let mut m = shmstate::prometheus(&self.store)?;
        let global = self.call(|r| r.counter_get(GLOBAL_COUNTER)).await?;
        m.push_str(
            "# HELP server_global_counter The global counter (POST /counter), kept in Redis.\n\
             # TYPE server_global_counter gauge\n",
        );
        m.push_str(&format!("server_global_counter {global}\n"));
        Ok(m)
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

struct App<B> {
    backend: B,
    opts: Options,
    pid: HeaderValue,
}

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

fn unavailable(e: BackendError) -> Resp {
    eprintln!(
        "worker {}: state backend error: {}",
        std::process::id(),
        e.0
    );
    text(StatusCode::SERVICE_UNAVAILABLE, "state unavailable\n")
}

/// A new session id: 128 random bits in hex.
fn new_session_id() -> Option<String> {
    let mut b = [0u8; 16];
    // SAFETY: `b` is a writable buffer of exactly `b.len()` bytes; getrandom writes at most
    // that many and we check how many it wrote.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    (n == b.len() as isize).then(|| b.iter().map(|x| format!("{x:02x}")).collect())
}

fn valid_session_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

async fn route<B: Backend>(app: &App<B>, req: Request<Incoming>, peer: SocketAddr) -> Resp {
    let path = req.uri().path().to_owned();
    if path == "/metrics" {
        if req.method() != Method::GET {
            return method_not_allowed("GET");
        }
        return match app.backend.metrics().await {
            Ok(m) => {
                let mut r = text(StatusCode::OK, m);
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(shmstate::PROMETHEUS_CONTENT_TYPE),
                );
                r
            }
            Err(e) => unavailable(e),
        };
    }

    if app.opts.rate_limit > 0 {
        match app
            .backend
            .admit(peer.ip(), app.opts.rate_limit, app.opts.rate_window)
            .await
        {
            Ok(Admission::Allowed) => {}
            Ok(Admission::Limited { retry_after_secs }) => {
                let mut r = text(StatusCode::TOO_MANY_REQUESTS, "too many requests\n");
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
                return r;
            }
            Err(e) => return unavailable(e),
        }
    }

    match (req.method().clone(), path.as_str()) {
        (Method::POST, "/counter") => match app.backend.counter_incr().await {
            Ok(v) => text(StatusCode::OK, format!("{v}\n")),
            Err(e) => unavailable(e),
        },
        (Method::GET, "/counter") => match app.backend.counter_get().await {
            Ok(v) => text(StatusCode::OK, format!("{v}\n")),
            Err(e) => unavailable(e),
        },
        (_, "/counter") => method_not_allowed("GET, POST"),
        (Method::POST, "/session") => {
            let body = match Limited::new(req.into_body(), MAX_SESSION_BYTES)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("session data is limited to {MAX_SESSION_BYTES} bytes\n"),
                    )
                }
            };
            let Some(id) = new_session_id() else {
                return text(StatusCode::INTERNAL_SERVER_ERROR, "no randomness\n");
            };
            match app
                .backend
                .session_put(&id, &body, app.opts.session_ttl)
                .await
            {
                Ok(true) => {
                    let ttl = app.opts.session_ttl.as_secs();
                    let mut r = text(
                        StatusCode::CREATED,
                        format!("{{\"id\":\"{id}\",\"ttl\":{ttl}}}\n"),
                    );
                    r.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    if let Ok(loc) = HeaderValue::from_str(&format!("/session/{id}")) {
                        r.headers_mut().insert(LOCATION, loc);
                    }
                    r
                }
                // 2^-128: a collision means the randomness is broken.
                Ok(false) => text(StatusCode::INTERNAL_SERVER_ERROR, "session id collision\n"),
                Err(e) => unavailable(e),
            }
        }
        (_, "/session") => method_not_allowed("POST"),
        (m, p) if p.starts_with("/session/") => {
            if m != Method::GET {
                return method_not_allowed("GET");
            }
            let id = &p["/session/".len()..];
            if !valid_session_id(id) {
                return text(StatusCode::NOT_FOUND, "no such session\n");
            }
            match app.backend.session_get(id).await {
                Ok(Some(data)) => {
                    let mut r = text(StatusCode::OK, data);
                    r.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    r
                }
                Ok(None) => text(StatusCode::NOT_FOUND, "no such session\n"),
                Err(e) => unavailable(e),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn handle<B: Backend>(
    app: Arc<App<B>>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Resp, Infallible> {
    let mut r = route(&app, req, peer).await;
    r.headers_mut().insert("x-worker-pid", app.pid.clone());
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// Worker

/// A listening socket on `addr` that shares the port with the other workers.
fn reuseport_socket(addr: SocketAddr, listen: bool) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    if listen {
        s.listen(1024)?;
        s.set_nonblocking(true)?;
    }
    Ok(s)
}

/// Runs one worker until SIGTERM/SIGINT; returns the process exit code.
fn worker(store: Store, opts: Options, addr: SocketAddr) -> i32 {
    let me = std::process::id();
    // After the fork: the runtime serves on this one thread (plus, for the Redis backend,
    // threads for blocking calls; this process never forks).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("worker {me}: runtime: {e}");
            return 1;
        }
    };
    fn app<B>(backend: B, opts: &Options) -> Arc<App<B>> {
        Arc::new(App {
            backend,
            opts: opts.clone(),
            pid: HeaderValue::from(std::process::id()),
        })
    }
    let served = match &opts.backend {
        BackendChoice::Shm => match ShmBackend::new(store) {
            Ok(b) => rt.block_on(serve(app(b, &opts), addr)),
            Err(e) => {
                eprintln!("worker {me}: {e}");
                return 1;
            }
        },
        #[cfg(feature = "redis")]
        BackendChoice::Redis(url) => match RedisStateBackend::new(store, url) {
            Ok(b) => rt.block_on(serve(app(b, &opts), addr)),
            Err(e) => {
                eprintln!("worker {me}: redis at {url}: {e}");
                return 1;
            }
        },
        #[cfg(not(feature = "redis"))]
        BackendChoice::Redis(_) => {
            eprintln!("worker {me}: built without Redis support");
            return 1;
        }
    };
    match served {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("worker {me}: {e}");
            1
        }
    }
}

async fn serve<B: Backend>(app: Arc<App<B>>, addr: SocketAddr) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let listener = tokio::net::TcpListener::from_std(reuseport_socket(addr, true)?.into())?;
    // Tell the master this worker accepts connections (it waits for all before saying so).
    app.backend.listening();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let http = {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10));
        b
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    // Out of file descriptors and the like: back off instead of spinning.
                    Err(e) => {
                        eprintln!("worker {}: accept: {e}", std::process::id());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let conn = http.serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(move |req| handle(app.clone(), req, peer)),
                );
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    // Client errors (resets, timeouts) end only that connection.
                    let _ = conn.await;
                });
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    // Stop accepting, let in-flight requests finish (bounded), close idle keep-alives.
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(WORKER_GRACE) => {
            eprintln!("worker {}: requests still running after {WORKER_GRACE:?}, exiting", std::process::id());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Master

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

fn set_signal(sig: libc::c_int, handler: libc::sighandler_t) -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; we then set the
    // handler, which is either SIG_DFL or `on_stop_signal` (async-signal-safe).
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Threads of this process (forking is only sound with exactly one).
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

struct Slot {
    pid: libc::pid_t,
    restarts: Vec<Instant>,
}

/// Forks one worker; returns its pid (in the master).
fn spawn_worker(store: &Store, opts: &Options, addr: SocketAddr) -> std::io::Result<libc::pid_t> {
    if thread_count() != 1 {
        return Err(std::io::Error::other(
            "refusing to fork a multi-threaded process",
        ));
    }
    // SAFETY: getpid has no preconditions.
    let master = unsafe { libc::getpid() };
    // SAFETY: the process has exactly one thread (checked above), so the child gets a
    // consistent copy of every lock and allocator state.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid > 0 {
        return Ok(pid);
    }
    // Child. Die with the master (even if it is SIGKILLed), and take the default signal
    // dispositions back before the runtime installs its own handlers.
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and has no memory effects.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != master {
        std::process::exit(0); // the master died before prctl took effect
    }
    let _ = set_signal(libc::SIGTERM, libc::SIG_DFL);
    let _ = set_signal(libc::SIGINT, libc::SIG_DFL);
    std::process::exit(worker(store.clone(), opts.clone(), addr));
}

fn describe_status(status: libc::c_int) -> String {
    if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    }
}

/// Reaps one dead child without blocking.
fn reap() -> Option<(libc::pid_t, libc::c_int)> {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer; WNOHANG makes the call non-blocking.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (pid > 0).then_some((pid, status))
}

fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    let opts = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    if let Err(e) = master(opts) {
        eprintln!("server: {e}");
        std::process::exit(1);
    }
}

fn master(opts: Options) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::anonymous(
        &Config::new()
            .capacity(opts.capacity)
            .max_key_len(64)
            .max_value_len(MAX_SESSION_BYTES as u32),
    )?;
    let restarts = store.counter("server.worker_restarts")?;
    // Fail fast if Redis is unreachable (the connection is closed again before the fork;
    // every worker opens its own).
    #[cfg(feature = "redis")]
    if let BackendChoice::Redis(url) = &opts.backend {
        drop(shmstate::RedisBackend::connect(url).map_err(|e| format!("redis at {url}: {e}"))?);
    }
    // Reserve the port (bound, never listening: the kernel hands connections only to the
    // workers' listening sockets). With --port 0 this also picks the port all workers share.
    let reservation = reuseport_socket(SocketAddr::new(opts.bind, opts.port), false)?;
    let addr = reservation
        .local_addr()?
        .as_socket()
        .ok_or("bound socket has no IP address")?;
    set_signal(
        libc::SIGTERM,
        on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
    )?;
    set_signal(
        libc::SIGINT,
        on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
    )?;

    let mut slots = Vec::with_capacity(opts.workers);
    for i in 0..opts.workers {
        let pid = spawn_worker(&store, &opts, addr)?;
        say(format_args!("worker {i} started pid {pid}"));
        slots.push(Slot {
            pid,
            restarts: Vec::new(),
        });
    }
    let starts = store.counter(WORKER_STARTS)?;
    let deadline = Instant::now() + STARTUP_WAIT;
    while starts.get() < opts.workers as i64
        && Instant::now() < deadline
        && !STOP.load(Ordering::SeqCst)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    if starts.get() < opts.workers as i64 {
        eprintln!(
            "server: only {} of {} workers listening after {STARTUP_WAIT:?}",
            starts.get(),
            opts.workers
        );
    }
    say(format_args!(
        "listening on http://{addr} (master pid {}, {} workers, {} backend)",
        std::process::id(),
        opts.workers,
        match opts.backend {
            BackendChoice::Shm => "shm",
            BackendChoice::Redis(_) => "redis",
        }
    ));

    // Supervise: restart dead workers until asked to stop.
    let mut pending: Vec<(usize, Instant)> = Vec::new();
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(SUPERVISE_TICK);
        for _ in 0..=slots.len() {
            let Some((pid, status)) = reap() else { break };
            let Some(i) = slots.iter().position(|s| s.pid == pid) else {
                continue;
            };
            slots[i].pid = 0;
            let now = Instant::now();
            slots[i]
                .restarts
                .retain(|t| now.duration_since(*t) < CRASH_WINDOW);
            let at = if slots[i].restarts.len() as u32 >= CRASH_LIMIT {
                now + CRASH_BACKOFF
            } else {
                now
            };
            say(format_args!(
                "worker {i} (pid {pid}) {}",
                describe_status(status)
            ));
            pending.push((i, at));
        }
        let now = Instant::now();
        let mut k = 0;
        while k < pending.len() {
            let (i, at) = pending[k];
            if at > now {
                k += 1;
                continue;
            }
            pending.swap_remove(k);
            match spawn_worker(&store, &opts, addr) {
                Ok(pid) => {
                    slots[i].pid = pid;
                    slots[i].restarts.push(now);
                    restarts.add(1);
                    say(format_args!("worker {i} restarted as pid {pid}"));
                }
                Err(e) => {
                    eprintln!("server: restarting worker {i}: {e}");
                    pending.push((i, now + CRASH_BACKOFF));
                    k = pending.len(); // retry on a later tick
                }
            }
        }
    }

    // Shutdown: forward SIGTERM, wait (bounded), then SIGKILL what is left.
    say(format_args!("shutting down"));
    for s in slots.iter().filter(|s| s.pid > 0) {
        // SAFETY: kill has no memory effects; `s.pid` is our unreaped child.
        unsafe { libc::kill(s.pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + MASTER_GRACE;
    while slots.iter().any(|s| s.pid > 0) {
        while let Some((pid, status)) = reap() {
            if let Some(s) = slots.iter_mut().find(|s| s.pid == pid) {
                say(format_args!("worker pid {pid} {}", describe_status(status)));
                s.pid = 0;
            }
        }
        if Instant::now() >= deadline {
            for s in slots.iter_mut().filter(|s| s.pid > 0) {
                eprintln!("server: worker pid {} did not stop, killing it", s.pid);
                // SAFETY: as above; then a blocking wait for that one child.
                unsafe {
                    libc::kill(s.pid, libc::SIGKILL);
                    libc::waitpid(s.pid, std::ptr::null_mut(), 0);
                }
                s.pid = 0;
            }
            break;
        }
        std::thread::sleep(SUPERVISE_TICK);
    }
    drop(reservation);
    say(format_args!("stopped"));
    Ok(())
}
