//! [`StateBackend`] over a Redis server (cargo feature `redis`), for state shared by more than
//! one host.
//!
//! Single-key operations are native commands, atomic on the server: `GET`, `SET [NX] [PX]`,
//! `DEL`, `INCRBY`, `PTTL`, `PEXPIRE`. The read-decide-write ones are Lua scripts (run with
//! `EVALSHA`, loaded with `SCRIPT LOAD` on first use and again after a `NOSCRIPT`):
//! compare-and-swap, persist-if-exists, lock acquisition (`SET NX PX` plus the fencing
//! `INCR`), release and extension only by the owner, and the fixed-window count with its
//! TTL. `incr` with a TTL on creation is a `MULTI`/`EXEC` of `SET key 0 NX PX ttl` and
//! `INCRBY` (a script would return the count through a Lua number, a double, and lose
//! precision above 2^53).
//!
//! Key layout and connection handling: see [`RedisBackend`].

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use redis::{Client, Cmd, Connection, ErrorKind, FromRedisValue, RedisError, ServerErrorKind};

use super::{foreign_handle, rate_args, ttl_ms, LockHandle, LockState, StateBackend};
use crate::error::{BackendErrorKind, Error, Result};
use crate::primitives::{check_name, ms_ceil};
use crate::process::{self, my_pid};
use crate::{Decision, Ttl};

/// Options of a [`RedisBackend`].
///
/// ```
/// use shmstate::RedisOptions;
/// use std::time::Duration;
/// let opts = RedisOptions::new()
///     .key_prefix("app1:")
///     .connect_timeout(Duration::from_millis(500))
///     .io_timeout(Duration::from_secs(1))
///     .max_idle(32);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Prepended to every key (default: none), so that several applications can share one
    /// server. Avoid `{` and `}` in it unless it is a whole Redis Cluster hash tag.
    pub key_prefix: Vec<u8>,
    /// Bound on opening a connection (default 2 s).
    pub connect_timeout: Duration,
    /// Bound on each command's write and reply (default 2 s).
    pub io_timeout: Duration,
    /// Idle connections kept for reuse (default 64); more are opened when more threads
    /// operate at once, and closed after use.
    pub max_idle: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            key_prefix: Vec::new(),
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(2),
            max_idle: 64,
        }
    }
}

impl RedisOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`key_prefix`](RedisOptions::key_prefix).
    pub fn key_prefix(mut self, prefix: impl AsRef<[u8]>) -> Self {
        self.key_prefix = prefix.as_ref().to_vec();
        self
    }

    /// Sets [`connect_timeout`](RedisOptions::connect_timeout) (zero is raised to 1 ms).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d.max(Duration::from_millis(1));
        self
    }

    /// Sets [`io_timeout`](RedisOptions::io_timeout) (zero is raised to 1 ms).
    pub fn io_timeout(mut self, d: Duration) -> Self {
        self.io_timeout = d.max(Duration::from_millis(1));
        self
    }

    /// Sets [`max_idle`](RedisOptions::max_idle).
    pub fn max_idle(mut self, n: usize) -> Self {
        self.max_idle = n;
        self
    }
}

/// The [`StateBackend`] over a Redis server (cargo feature `redis`). Cheap to clone (one
/// `Arc`); clones share the connection pool. Safe to use from many threads at once: each
/// operation uses its own pooled connection.
///
/// ```no_run
/// use shmstate::{RedisBackend, StateBackend};
/// # fn main() -> shmstate::Result<()> {
/// let backend = RedisBackend::connect("unix:///run/redis/redis.sock")?; // or redis://10.0.0.5:6379/0
/// backend.set(b"k", b"v", None)?;
/// # Ok(()) }
/// ```
///
/// # Keys
///
/// | what | Redis key |
/// |---|---|
/// | data key `k` | `<prefix>k` |
/// | counter `n` | `<prefix>shmstate:counter:n` |
/// | lock `n` | `<prefix>shmstate:lock:{n}` (value: the owner token), fence `<prefix>shmstate:lock:{n}:fence` |
/// | rate limit | `<prefix>shmstate:rl:<window ms>:<client>` |
///
/// Every script touches one key, except lock acquisition, whose two keys share the hash tag
/// `{n}` and so one Redis Cluster slot. (This client talks to one server; it is not a
/// cluster client.)
///
/// # Connections
///
/// A pool of blocking connections, each with the configured connect and I/O timeouts: an
/// operation takes an idle connection or opens one, and returns it afterwards unless it
/// failed at the transport level (a timed-out connection may still carry a late reply). The
/// pool belongs to the process: a child forked after connecting opens its own connections.
#[derive(Clone)]
pub struct RedisBackend {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    opts: RedisOptions,
    pool: Mutex<Pool>,
}

struct Pool {
    /// The process the idle connections belong to.
    pid: u32,
    idle: Vec<Connection>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("server", &self.shared.client.get_connection_info().addr())
            .field("opts", &self.shared.opts)
            .finish_non_exhaustive()
    }
}

/// A Lua script and its SHA-1 as the server reported it (the same on every server).
struct Lua {
    src: &'static str,
    sha: OnceLock<String>,
}

impl Lua {
    const fn new(src: &'static str) -> Self {
        Lua {
            src,
            sha: OnceLock::new(),
        }
    }
}

/// KEYS[1]; ARGV: has_expected ("1"/"0"), expected, has_new, new, ttl ms ("0": none).
static CAS: Lua = Lua::new(
    r"local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then return 0 end
elseif cur then
  return 0
end
if ARGV[3] == '1' then
  if ARGV[5] == '0' then
    redis.call('SET', KEYS[1], ARGV[4])
  else
    redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
  end
else
  redis.call('DEL', KEYS[1])
end
return 1",
);

/// KEYS[1]. `PERSIST` alone answers 0 both for "no key" and for "had no TTL".
static PERSIST: Lua = Lua::new(
    r"if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('PERSIST', KEYS[1])
return 1",
);

/// KEYS: lock, fence (same hash slot); ARGV: token, lease ms. Returns the fence, or nil.
static LOCK_ACQUIRE: Lua = Lua::new(
    r"if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return false",
);

/// KEYS[1] lock; ARGV: token.
static LOCK_RELEASE: Lua = Lua::new(
    r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0",
);

/// KEYS[1] lock; ARGV: token, lease ms.
static LOCK_EXTEND: Lua = Lua::new(
    r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0",
);

/// KEYS[1] window counter; ARGV: window ms. Returns {count, ms left}. A counter without a
/// TTL (new, or one whose TTL was removed) gets the window.
static RATE: Lua = Lua::new(
    r"local n = redis.call('INCRBY', KEYS[1], 1)
local t = redis.call('PTTL', KEYS[1])
if t < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  t = tonumber(ARGV[1])
end
return {n, t}",
);

fn load(con: &mut Connection, lua: &Lua) -> redis::RedisResult<String> {
    let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(lua.src).query(con)?;
    let _ = lua.sha.set(sha.clone());
    Ok(sha)
}

/// Runs `lua` with `EVALSHA` (loading it first if needed, and again after `NOSCRIPT`: the
/// server restarted or its script cache was flushed). `args` adds the key count, keys and
/// arguments.
fn eval<T: FromRedisValue>(
    con: &mut Connection,
    lua: &Lua,
    args: impl Fn(&mut Cmd),
) -> redis::RedisResult<T> {
    let sha = match lua.sha.get() {
        Some(s) => s.clone(),
        None => load(con, lua)?,
    };
    let mut c = redis::cmd("EVALSHA");
    c.arg(&sha);
    args(&mut c);
    match c.query(con) {
        Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            load(con, lua)?;
            c.query(con)
        }
        r => r,
    }
}

/// Whether the connection must be thrown away after `e` (the stream may hold a late or
/// partial reply).
fn broken(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.kind() == ErrorKind::Parse
}

/// Maps a client error to a typed crate error. Server errors that mean the same as a store
/// error become that error.
fn map_err(op: &'static str, e: RedisError) -> Error {
    let text = e.to_string();
    // A server error can also arrive as a parse error (an error reply inside a MULTI/EXEC
    // result converted to a number).
    let server = matches!(
        e.kind(),
        ErrorKind::Server(_) | ErrorKind::Extension | ErrorKind::Parse
    );
    if server && text.contains("not an integer") {
        return Error::NotAnInteger;
    }
    if server && text.contains("overflow") {
        return Error::Overflow;
    }
    let kind = if e.is_timeout() {
        BackendErrorKind::Timeout
    } else if e.is_connection_refusal() {
        BackendErrorKind::Connect
    } else if e.is_io_error() || e.is_connection_dropped() {
        BackendErrorKind::Disconnected
    } else {
        match e.kind() {
            ErrorKind::Server(_) | ErrorKind::Extension => BackendErrorKind::Server,
            ErrorKind::AuthenticationFailed => BackendErrorKind::Connect,
            ErrorKind::InvalidClientConfig => BackendErrorKind::Config,
            _ => BackendErrorKind::Protocol,
        }
    };
    Error::Backend {
        kind,
        op,
        source: Box::new(e),
    }
}

fn protocol(op: &'static str, what: &'static str) -> Error {
    Error::Backend {
        kind: BackendErrorKind::Protocol,
        op,
        source: what.into(),
    }
}

impl RedisBackend {
    /// Connects to the server at `url` (`redis://host:port/db`, `unix:///path/to/socket`,
    /// `redis+unix:///path?db=N`) with the default [`RedisOptions`], and checks that it
    /// answers (`PING`).
    pub fn connect(url: &str) -> Result<Self> {
        Self::with_options(url, RedisOptions::default())
    }

    /// Connects to the server at `url` with `opts`, and checks that it answers (`PING`).
    pub fn with_options(url: &str, opts: RedisOptions) -> Result<Self> {
        let client = Client::open(url).map_err(|e| Error::Backend {
            kind: BackendErrorKind::Config,
            op: "connect",
            source: Box::new(e),
        })?;
        let backend = RedisBackend {
            shared: Arc::new(Shared {
                client,
                opts,
                pool: Mutex::new(Pool {
                    pid: my_pid(),
                    idle: Vec::new(),
                }),
            }),
        };
        backend.run("ping", |c| redis::cmd("PING").query::<String>(c))?;
        Ok(backend)
    }

    /// The options this backend was made with.
    pub fn options(&self) -> &RedisOptions {
        &self.shared.opts
    }

    fn checkout(&self) -> Result<Connection> {
        {
            let mut pool = self.shared.pool.lock().unwrap_or_else(|p| p.into_inner());
            let me = my_pid();
            if pool.pid != me {
                // Forked: these sockets are shared with the parent. Never write to them, and
                // do not close them either (the parent's copies stay open regardless, but a
                // client library could send something on drop).
                for c in pool.idle.drain(..) {
                    std::mem::forget(c);
                }
                pool.pid = me;
            }
            if let Some(c) = pool.idle.pop() {
                return Ok(c);
            }
        }
        let o = &self.shared.opts;
        let map = |e| map_err("connect", e);
        let c = self
            .shared
            .client
            .get_connection_with_timeout(o.connect_timeout)
            .map_err(|e| match map(e) {
                // Whatever the transport said, the connection was never made.
                Error::Backend { op, source, .. } => Error::Backend {
                    kind: BackendErrorKind::Connect,
                    op,
                    source,
                },
                other => other,
            })?;
        c.set_read_timeout(Some(o.io_timeout)).map_err(map)?;
        c.set_write_timeout(Some(o.io_timeout)).map_err(map)?;
        Ok(c)
    }

    fn checkin(&self, c: Connection) {
        let mut pool = self.shared.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.pid == my_pid() && pool.idle.len() < self.shared.opts.max_idle {
            pool.idle.push(c);
        }
    }

    /// Runs `f` on a pooled connection.
    fn run<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let mut c = self.checkout()?;
        match f(&mut c) {
            Ok(v) => {
                self.checkin(c);
                Ok(v)
            }
            Err(e) => {
                if !broken(&e) {
                    self.checkin(c);
                }
                Err(map_err(op, e))
            }
        }
    }

    fn key(&self, parts: &[&[u8]]) -> Vec<u8> {
        let prefix = &self.shared.opts.key_prefix;
        let mut k = Vec::with_capacity(prefix.len() + parts.iter().map(|p| p.len()).sum::<usize>());
        k.extend_from_slice(prefix);
        for p in parts {
            k.extend_from_slice(p);
        }
        k
    }

    fn lock_keys(&self, name: &str) -> Result<(Vec<u8>, Vec<u8>)> {
        // Braces would change the key's Redis Cluster hash tag, and so could put the lock and
        // its fence counter in different slots.
        check_name("lock name", name, 4096, b"{}")?;
        let lock = self.key(&[b"shmstate:lock:{", name.as_bytes(), b"}"]);
        let mut fence = lock.clone();
        fence.extend_from_slice(b":fence");
        Ok((lock, fence))
    }

    fn counter_key(&self, name: &str) -> Result<Vec<u8>> {
        crate::counter::validate_name(name)?;
        Ok(self.key(&[b"shmstate:counter:", name.as_bytes()]))
    }

    fn release_raw(&self, key: &[u8], token: &[u8]) -> Result<bool> {
        self.run("release", |c| {
            eval::<i64>(c, &LOCK_RELEASE, |cmd| {
                cmd.arg(1).arg(key).arg(token);
            })
        })
        .map(|n| n == 1)
    }
}

/// A lock acquired on Redis: the key and owner token. Releases on drop (best effort), in the
/// acquiring process only.
pub(crate) struct RedisLock {
    backend: RedisBackend,
    key: Vec<u8>,
    token: Vec<u8>,
    pid: u32,
    done: bool,
}

impl std::fmt::Debug for RedisLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLock")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl RedisLock {
    fn usable(&self) -> bool {
        !self.done && self.pid == my_pid()
    }

    fn release(&mut self) -> Result<bool> {
        if !self.usable() {
            return Ok(false);
        }
        self.done = true;
        self.backend.release_raw(&self.key, &self.token)
    }
}

impl Drop for RedisLock {
    fn drop(&mut self) {
        // An error (server unreachable) leaves the lock to expire with its lease.
        let _ = self.release();
    }
}

impl StateBackend for RedisBackend {
    fn backend_name(&self) -> &'static str {
        "redis"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let k = self.key(&[key]);
        self.run("get", |c| redis::cmd("GET").arg(&k).query(c))
    }

    fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let ms = ttl.map(ttl_ms).transpose()?;
        let k = self.key(&[key]);
        self.run("set", |c| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&k).arg(value);
            if let Some(ms) = ms {
                cmd.arg("PX").arg(ms);
            }
            cmd.query::<()>(c)
        })
    }

    fn add(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<bool> {
        let ms = ttl.map(ttl_ms).transpose()?;
        let k = self.key(&[key]);
        self.run("add", |c| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&k).arg(value).arg("NX");
            if let Some(ms) = ms {
                cmd.arg("PX").arg(ms);
            }
            cmd.query::<bool>(c)
        })
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        let k = self.key(&[key]);
        self.run("delete", |c| redis::cmd("DEL").arg(&k).query::<i64>(c))
            .map(|n| n > 0)
    }

    fn incr(&self, key: &[u8], delta: i64, ttl_on_create: Option<Duration>) -> Result<i64> {
        let ms = ttl_on_create.map(ttl_ms).transpose()?;
        let k = self.key(&[key]);
        match ms {
            None => self.run("incr", |c| {
                redis::cmd("INCRBY").arg(&k).arg(delta).query::<i64>(c)
            }),
            // Create at 0 with the TTL if absent, then add: INCRBY keeps an existing TTL.
            Some(ms) => self
                .run("incr", |c| {
                    redis::pipe()
                        .atomic()
                        .cmd("SET")
                        .arg(&k)
                        .arg(0)
                        .arg("NX")
                        .arg("PX")
                        .arg(ms)
                        .ignore()
                        .cmd("INCRBY")
                        .arg(&k)
                        .arg(delta)
                        .query::<(i64,)>(c)
                })
                .map(|(n,)| n),
        }
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        let ms = ttl.map(ttl_ms).transpose()?.unwrap_or(0);
        let k = self.key(&[key]);
        let flag = |o: Option<&[u8]>| if o.is_some() { "1" } else { "0" };
        self.run("compare_and_swap", |c| {
            eval::<i64>(c, &CAS, |cmd| {
                cmd.arg(1)
                    .arg(&k)
                    .arg(flag(expected))
                    .arg(expected.unwrap_or_default())
                    .arg(flag(new))
                    .arg(new.unwrap_or_default())
                    .arg(ms);
            })
        })
        .map(|n| n == 1)
    }

    fn ttl(&self, key: &[u8]) -> Result<Ttl> {
        let k = self.key(&[key]);
        let ms = self.run("ttl", |c| redis::cmd("PTTL").arg(&k).query::<i64>(c))?;
        Ok(match ms {
            -2 => Ttl::NoKey,
            -1 => Ttl::NoExpiry,
            ms => Ttl::ExpiresIn(Duration::from_millis(
                u64::try_from(ms).map_err(|_| protocol("ttl", "negative PTTL"))?,
            )),
        })
    }

    fn expire(&self, key: &[u8], ttl: Option<Duration>) -> Result<bool> {
        let ms = ttl.map(ttl_ms).transpose()?;
        let k = self.key(&[key]);
        let n = self.run("expire", |c| match ms {
            Some(ms) => redis::cmd("PEXPIRE").arg(&k).arg(ms).query::<i64>(c),
            None => eval::<i64>(c, &PERSIST, |cmd| {
                cmd.arg(1).arg(&k);
            }),
        })?;
        Ok(n == 1)
    }

    fn counter_add(&self, name: &str, delta: i64) -> Result<i64> {
        let k = self.counter_key(name)?;
        self.run("counter_add", |c| {
            redis::cmd("INCRBY").arg(&k).arg(delta).query::<i64>(c)
        })
    }

    fn counter_get(&self, name: &str) -> Result<i64> {
        let k = self.counter_key(name)?;
        let v: Option<Vec<u8>> = self.run("counter_get", |c| redis::cmd("GET").arg(&k).query(c))?;
        match v {
            None => Ok(0),
            Some(b) => std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(Error::BadRecord {
                    what: "counter key holds a non-integer",
                }),
        }
    }

    fn try_lock(&self, name: &str, lease: Duration) -> Result<Option<LockHandle>> {
        let (lock, fence_key) = self.lock_keys(name)?;
        let lease_ms = ms_ceil("lease", lease)?;
        let token = process::unique_token().max(1);
        let value = format!("{token:016x}").into_bytes();
        let fence: Option<i64> = self.run("try_lock", |c| {
            eval(c, &LOCK_ACQUIRE, |cmd| {
                cmd.arg(2)
                    .arg(&lock)
                    .arg(&fence_key)
                    .arg(&value)
                    .arg(lease_ms);
            })
        })?;
        let Some(fence) = fence else { return Ok(None) };
        let state = LockState::Redis(RedisLock {
            backend: self.clone(),
            key: lock,
            token: value,
            pid: my_pid(),
            done: false,
        });
        let fence = u64::try_from(fence).map_err(|_| Error::BadRecord {
            what: "lock fence counter is negative",
        })?;
        Ok(Some(LockHandle::new(name, token, fence, state)))
    }

    fn release(&self, lock: LockHandle) -> Result<bool> {
        match lock.state {
            LockState::Redis(mut l) => l.release(),
            LockState::Shm(_) => Err(foreign_handle()),
        }
    }

    fn extend(&self, lock: &mut LockHandle, lease: Duration) -> Result<bool> {
        let lease_ms = ms_ceil("lease", lease)?;
        let LockState::Redis(l) = &lock.state else {
            return Err(foreign_handle());
        };
        if !l.usable() {
            return Ok(false);
        }
        self.run("extend", |c| {
            eval::<i64>(c, &LOCK_EXTEND, |cmd| {
                cmd.arg(1).arg(&l.key).arg(&l.token).arg(lease_ms);
            })
        })
        .map(|n| n == 1)
    }

    fn rate_limit(&self, client: &[u8], limit: u64, window: Duration) -> Result<Decision> {
        let window_ms = rate_args(limit, window)?;
        let k = self.key(&[
            b"shmstate:rl:",
            window_ms.to_string().as_bytes(),
            b":",
            client,
        ]);
        let (n, left_ms): (i64, i64) = self.run("rate_limit", |c| {
            eval(c, &RATE, |cmd| {
                cmd.arg(1).arg(&k).arg(window_ms);
            })
        })?;
        let n = u64::try_from(n).map_err(|_| Error::BadRecord {
            what: "fixed-window count is negative",
        })?;
        let left = Duration::from_millis(u64::try_from(left_ms).unwrap_or(0));
        let allowed = n <= limit;
        Ok(Decision {
            allowed,
            limit,
            remaining: limit.saturating_sub(n),
            retry_after: if allowed { Duration::ZERO } else { left },
            reset_after: left,
        })
    }
}
