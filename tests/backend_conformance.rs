//! One behaviour suite for [`StateBackend`], run against the shared-memory [`Store`] and (with
//! the `redis` feature) against a real `redis-server` started on a unix socket in a temporary
//! directory. Where the two backends legitimately differ, the case asserts the documented
//! difference for each (see `src/backend/mod.rs`).
//!
//! Without `redis-server` installed, the Redis half is skipped with a message, except under
//! CI (the `CI` environment variable set), where it fails: `.ci/run` installs it.

use std::time::Duration;

use shmstate::{Config, Error, StateBackend, Store, Ttl};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Shm,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Redis,
}

type Case = fn(&dyn StateBackend, Flavor);

/// Every case, in order. Each uses its own keys, so the order does not matter.
const CASES: &[(&str, Case)] = &[
    ("get_set_add_delete", get_set_add_delete),
    ("binary_keys_and_values", binary_keys_and_values),
    ("ttl_and_expiry", ttl_and_expiry),
    ("expire_and_persist", expire_and_persist),
    ("invalid_ttls", invalid_ttls),
    ("incr", incr),
    ("incr_errors", incr_errors),
    ("compare_and_swap", compare_and_swap),
    ("counters", counters),
    ("lock_exclusive_token_fence", lock_exclusive_token_fence),
    ("lock_release_only_by_owner", lock_release_only_by_owner),
    ("lock_extend", lock_extend),
    ("lock_drop_releases", lock_drop_releases),
    ("lock_errors", lock_errors),
    ("rate_limit", rate_limit),
    ("sizes", sizes),
];

fn run_suite(b: &dyn StateBackend, flavor: Flavor) {
    let t0 = std::time::Instant::now();
    for (name, case) in CASES {
        eprintln!("[{flavor:?}] {name}");
        case(b, flavor);
    }
    eprintln!(
        "[{flavor:?}] {} cases passed in {:?}",
        CASES.len(),
        t0.elapsed()
    );
}

fn store() -> Store {
    Store::anonymous(&Config::new().capacity(10_000).max_value_len(256)).unwrap()
}

#[test]
fn shm_store_conforms() {
    let s = store();
    assert_eq!(s.backend_name(), "shm");
    run_suite(&s, Flavor::Shm);
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn expires_within(t: Ttl, max: Duration) -> bool {
    matches!(t, Ttl::ExpiresIn(d) if d > Duration::ZERO && d <= max)
}

// ---------------------------------------------------------------------------------------------
// Cases

fn get_set_add_delete(b: &dyn StateBackend, _: Flavor) {
    assert_eq!(b.get(b"basic:k").unwrap(), None);
    b.set(b"basic:k", b"v1", None).unwrap();
    assert_eq!(b.get(b"basic:k").unwrap().as_deref(), Some(&b"v1"[..]));
    b.set(b"basic:k", b"v2", None).unwrap(); // overwrite
    assert_eq!(b.get(b"basic:k").unwrap().as_deref(), Some(&b"v2"[..]));
    assert!(!b.add(b"basic:k", b"v3", None).unwrap()); // present: not stored
    assert_eq!(b.get(b"basic:k").unwrap().as_deref(), Some(&b"v2"[..]));
    assert!(b.add(b"basic:new", b"a", None).unwrap());
    assert_eq!(b.get(b"basic:new").unwrap().as_deref(), Some(&b"a"[..]));
    assert!(b.delete(b"basic:k").unwrap());
    assert!(!b.delete(b"basic:k").unwrap()); // already gone
    assert_eq!(b.get(b"basic:k").unwrap(), None);
    assert!(b.add(b"basic:k", b"again", None).unwrap());
    // The empty value is a value.
    b.set(b"basic:empty", b"", None).unwrap();
    assert_eq!(b.get(b"basic:empty").unwrap().as_deref(), Some(&b""[..]));
}

fn binary_keys_and_values(b: &dyn StateBackend, _: Flavor) {
    let keys: [&[u8]; 5] = [
        b"bin:\0\x01\xff",
        b"bin:\r\n*3\r\n$3\r\nSET",
        b"bin: space {tag}",
        b"bin:\xc3\x28 not utf-8",
        b"bin:\0",
    ];
    for (i, k) in keys.iter().enumerate() {
        let v = [0u8, 255, b'\r', b'\n', i as u8];
        b.set(k, &v, None).unwrap();
        assert_eq!(b.get(k).unwrap().as_deref(), Some(&v[..]), "{k:?}");
    }
    // Distinct keys stay distinct (no truncation at NUL).
    assert_eq!(b.get(b"bin:\0").unwrap().unwrap()[4], 4);
    assert!(b
        .compare_and_swap(
            b"bin:\0",
            Some(&[0, 255, b'\r', b'\n', 4]),
            Some(b"\0"),
            None
        )
        .unwrap());
    assert_eq!(b.get(b"bin:\0").unwrap().as_deref(), Some(&b"\0"[..]));
    for k in keys {
        assert!(b.delete(k).unwrap());
    }
}

fn ttl_and_expiry(b: &dyn StateBackend, _: Flavor) {
    assert_eq!(b.ttl(b"ttl:none").unwrap(), Ttl::NoKey);
    b.set(b"ttl:forever", b"x", None).unwrap();
    assert_eq!(b.ttl(b"ttl:forever").unwrap(), Ttl::NoExpiry);
    b.set(b"ttl:hour", b"x", Some(Duration::from_secs(3600)))
        .unwrap();
    assert!(expires_within(
        b.ttl(b"ttl:hour").unwrap(),
        Duration::from_secs(3600)
    ));
    assert!(
        matches!(b.ttl(b"ttl:hour").unwrap(), Ttl::ExpiresIn(d) if d > Duration::from_secs(3590))
    );
    // `set` without a TTL replaces the TTL too.
    b.set(b"ttl:hour", b"y", None).unwrap();
    assert_eq!(b.ttl(b"ttl:hour").unwrap(), Ttl::NoExpiry);

    // Expiry: gone for get, ttl, delete and add alike.
    b.set(b"ttl:short", b"x", Some(ms(80))).unwrap();
    assert!(b.add(b"ttl:short-add", b"x", Some(ms(80))).unwrap());
    assert!(expires_within(b.ttl(b"ttl:short").unwrap(), ms(80)));
    std::thread::sleep(ms(160));
    assert_eq!(b.get(b"ttl:short").unwrap(), None);
    assert_eq!(b.ttl(b"ttl:short").unwrap(), Ttl::NoKey);
    assert!(!b.delete(b"ttl:short").unwrap());
    assert!(b.add(b"ttl:short-add", b"fresh", None).unwrap());
    assert_eq!(
        b.get(b"ttl:short-add").unwrap().as_deref(),
        Some(&b"fresh"[..])
    );
}

fn expire_and_persist(b: &dyn StateBackend, _: Flavor) {
    assert!(!b.expire(b"exp:missing", Some(ms(1000))).unwrap());
    assert!(!b.expire(b"exp:missing", None).unwrap());
    b.set(b"exp:k", b"x", None).unwrap();
    assert!(b.expire(b"exp:k", Some(Duration::from_secs(60))).unwrap());
    assert!(expires_within(
        b.ttl(b"exp:k").unwrap(),
        Duration::from_secs(60)
    ));
    // Removing the TTL of a key that has one, and of a key that has none: both "existed".
    assert!(b.expire(b"exp:k", None).unwrap());
    assert_eq!(b.ttl(b"exp:k").unwrap(), Ttl::NoExpiry);
    assert!(b.expire(b"exp:k", None).unwrap());
    // A short TTL set later expires the key.
    assert!(b.expire(b"exp:k", Some(ms(60))).unwrap());
    std::thread::sleep(ms(130));
    assert_eq!(b.get(b"exp:k").unwrap(), None);
    assert!(!b.expire(b"exp:k", Some(ms(1000))).unwrap());
}

fn invalid_ttls(b: &dyn StateBackend, _: Flavor) {
    let zero = Some(Duration::ZERO);
    let is_invalid = |r: shmstate::Result<bool>| matches!(r, Err(Error::InvalidTtl { .. }));
    assert!(matches!(
        b.set(b"bad:ttl", b"x", zero),
        Err(Error::InvalidTtl { .. })
    ));
    assert!(is_invalid(b.add(b"bad:ttl", b"x", zero)));
    assert!(is_invalid(b.expire(b"bad:ttl", zero)));
    assert!(is_invalid(b.compare_and_swap(
        b"bad:ttl",
        None,
        Some(b"x"),
        zero
    )));
    assert!(matches!(
        b.incr(b"bad:ttl", 1, zero),
        Err(Error::InvalidTtl { .. })
    ));
    assert!(matches!(
        b.set(b"bad:ttl", b"x", Some(Duration::MAX)),
        Err(Error::InvalidTtl { .. })
    ));
    // Nothing was written by the refused calls.
    assert_eq!(b.get(b"bad:ttl").unwrap(), None);
    // Below a millisecond rounds up to one, on both.
    b.set(b"bad:sub-ms", b"x", Some(Duration::from_micros(10)))
        .unwrap();
}

fn incr(b: &dyn StateBackend, _: Flavor) {
    assert_eq!(b.incr(b"incr:a", 5, None).unwrap(), 5);
    assert_eq!(b.incr(b"incr:a", -7, None).unwrap(), -2);
    assert_eq!(b.get(b"incr:a").unwrap().as_deref(), Some(&b"-2"[..])); // decimal ASCII
    assert_eq!(b.ttl(b"incr:a").unwrap(), Ttl::NoExpiry);
    b.set(b"incr:b", b"10", None).unwrap();
    assert_eq!(b.incr(b"incr:b", 1, None).unwrap(), 11);
    assert_eq!(b.incr(b"incr:big", i64::MAX, None).unwrap(), i64::MAX); // exact, no doubles

    // TTL on creation only.
    assert_eq!(b.incr(b"incr:t", 1, Some(ms(60_000))).unwrap(), 1);
    assert!(expires_within(b.ttl(b"incr:t").unwrap(), ms(60_000)));
    assert_eq!(b.incr(b"incr:t", 1, Some(ms(5))).unwrap(), 2); // keeps the 60 s TTL
    assert!(matches!(b.ttl(b"incr:t").unwrap(), Ttl::ExpiresIn(d) if d > ms(50_000)));
    b.set(b"incr:forever", b"1", None).unwrap();
    assert_eq!(b.incr(b"incr:forever", 1, Some(ms(5))).unwrap(), 2);
    assert_eq!(b.ttl(b"incr:forever").unwrap(), Ttl::NoExpiry);
    // An existing key keeps its TTL through increments without one, too.
    b.set(b"incr:keep", b"1", Some(ms(60_000))).unwrap();
    assert_eq!(b.incr(b"incr:keep", 1, None).unwrap(), 2);
    assert!(matches!(b.ttl(b"incr:keep").unwrap(), Ttl::ExpiresIn(_)));
    // An expired counter starts over, with the new TTL.
    assert_eq!(b.incr(b"incr:short", 3, Some(ms(50))).unwrap(), 3);
    std::thread::sleep(ms(110));
    assert_eq!(b.incr(b"incr:short", 3, Some(ms(60_000))).unwrap(), 3);
    assert!(matches!(b.ttl(b"incr:short").unwrap(), Ttl::ExpiresIn(d) if d > ms(50_000)));
}

fn incr_errors(b: &dyn StateBackend, _: Flavor) {
    for v in [&b"abc"[..], b"1.5", b"", b"99999999999999999999"] {
        b.set(b"incr:nan", v, None).unwrap();
        assert!(
            matches!(b.incr(b"incr:nan", 1, None), Err(Error::NotAnInteger)),
            "{v:?}"
        );
        assert!(matches!(
            b.incr(b"incr:nan", 1, Some(ms(1000))),
            Err(Error::NotAnInteger)
        ));
        // Unchanged, TTL included.
        assert_eq!(b.get(b"incr:nan").unwrap().as_deref(), Some(v));
        assert_eq!(b.ttl(b"incr:nan").unwrap(), Ttl::NoExpiry);
    }
    b.set(b"incr:max", i64::MAX.to_string().as_bytes(), None)
        .unwrap();
    assert!(matches!(b.incr(b"incr:max", 1, None), Err(Error::Overflow)));
    assert!(matches!(
        b.incr(b"incr:max", 1, Some(ms(1000))),
        Err(Error::Overflow)
    ));
    assert_eq!(b.incr(b"incr:max", -1, None).unwrap(), i64::MAX - 1);
}

fn compare_and_swap(b: &dyn StateBackend, _: Flavor) {
    // absent -> value: create if absent.
    assert!(b
        .compare_and_swap(b"cas:k", None, Some(b"v1"), None)
        .unwrap());
    assert!(!b
        .compare_and_swap(b"cas:k", None, Some(b"v2"), None)
        .unwrap());
    assert_eq!(b.get(b"cas:k").unwrap().as_deref(), Some(&b"v1"[..]));
    // value -> value: set if equal.
    assert!(!b
        .compare_and_swap(b"cas:k", Some(b"wrong"), Some(b"v2"), None)
        .unwrap());
    assert!(!b
        .compare_and_swap(b"cas:k", Some(b"v"), Some(b"v2"), None)
        .unwrap()); // a prefix is not equal
    assert!(b
        .compare_and_swap(b"cas:k", Some(b"v1"), Some(b"v2"), Some(ms(60_000)))
        .unwrap());
    assert_eq!(b.get(b"cas:k").unwrap().as_deref(), Some(&b"v2"[..]));
    assert!(expires_within(b.ttl(b"cas:k").unwrap(), ms(60_000)));
    // A swap without a TTL leaves the new value without one (as `set` does).
    assert!(b
        .compare_and_swap(b"cas:k", Some(b"v2"), Some(b"v3"), None)
        .unwrap());
    assert_eq!(b.ttl(b"cas:k").unwrap(), Ttl::NoExpiry);
    // value -> absent: delete if equal.
    assert!(!b
        .compare_and_swap(b"cas:k", Some(b"v2"), None, None)
        .unwrap());
    assert!(b
        .compare_and_swap(b"cas:k", Some(b"v3"), None, None)
        .unwrap());
    assert_eq!(b.get(b"cas:k").unwrap(), None);
    // absent -> absent: succeeds exactly when the key is absent.
    assert!(b.compare_and_swap(b"cas:k", None, None, None).unwrap());
    assert!(!b
        .compare_and_swap(b"cas:k", Some(b"v3"), None, None)
        .unwrap());
    b.set(b"cas:k", b"x", None).unwrap();
    assert!(!b.compare_and_swap(b"cas:k", None, None, None).unwrap());
    assert_eq!(b.get(b"cas:k").unwrap().as_deref(), Some(&b"x"[..]));
    // The empty value is not the absent key.
    b.set(b"cas:empty", b"", None).unwrap();
    assert!(!b
        .compare_and_swap(b"cas:empty", None, Some(b"y"), None)
        .unwrap());
    assert!(b
        .compare_and_swap(b"cas:empty", Some(b""), Some(b"y"), None)
        .unwrap());
    // An expired key is absent.
    b.set(b"cas:exp", b"old", Some(ms(50))).unwrap();
    std::thread::sleep(ms(110));
    assert!(!b
        .compare_and_swap(b"cas:exp", Some(b"old"), Some(b"new"), None)
        .unwrap());
    assert!(b
        .compare_and_swap(b"cas:exp", None, Some(b"new"), None)
        .unwrap());
}

fn counters(b: &dyn StateBackend, f: Flavor) {
    assert_eq!(b.counter_get("conf.requests").unwrap(), 0);
    assert_eq!(b.counter_add("conf.requests", 1).unwrap(), 1);
    assert_eq!(b.counter_add("conf.requests", 41).unwrap(), 42);
    assert_eq!(b.counter_add("conf.requests", -2).unwrap(), 40);
    assert_eq!(b.counter_get("conf.requests").unwrap(), 40);
    assert_eq!(b.counter_get("conf.other").unwrap(), 0); // independent
                                                         // Counters are not data keys.
    assert_eq!(b.get(b"conf.requests").unwrap(), None);
    assert!(matches!(
        b.counter_add("", 1),
        Err(Error::InvalidCounterName { .. })
    ));
    assert!(matches!(
        b.counter_get(&"n".repeat(113)),
        Err(Error::InvalidCounterName { .. })
    ));
    // Documented difference: the store's counters are atomics that wrap; Redis's INCRBY
    // refuses to overflow.
    assert_eq!(b.counter_add("conf.wrap", i64::MAX).unwrap(), i64::MAX);
    match f {
        Flavor::Shm => assert_eq!(b.counter_add("conf.wrap", 1).unwrap(), i64::MIN),
        Flavor::Redis => {
            assert!(matches!(
                b.counter_add("conf.wrap", 1),
                Err(Error::Overflow)
            ));
            assert_eq!(b.counter_get("conf.wrap").unwrap(), i64::MAX);
        }
    }
}

fn lock_exclusive_token_fence(b: &dyn StateBackend, _: Flavor) {
    let lease = Duration::from_secs(30);
    let first = b.try_lock("conf-job", lease).unwrap().expect("free");
    assert_eq!(first.name(), "conf-job");
    assert_ne!(first.token(), 0);
    // Exclusive, and not reentrant.
    assert!(b.try_lock("conf-job", lease).unwrap().is_none());
    // Exclusive across threads too.
    std::thread::scope(|s| {
        s.spawn(|| assert!(b.try_lock("conf-job", lease).unwrap().is_none()));
    });
    // Other names are independent.
    let other = b.try_lock("conf-other", lease).unwrap().expect("free");
    let (t1, f1) = (first.token(), first.fence());
    assert!(b.release(first).unwrap());
    let second = b.try_lock("conf-job", lease).unwrap().expect("released");
    assert_ne!(second.token(), t1);
    assert!(second.fence() > f1, "{} > {f1}", second.fence());
    let f2 = second.fence();
    assert!(b.release(second).unwrap());
    let third = b.try_lock("conf-job", lease).unwrap().unwrap();
    assert!(third.fence() > f2);
    assert!(b.release(third).unwrap());
    assert!(b.release(other).unwrap());
}

fn lock_release_only_by_owner(b: &dyn StateBackend, _: Flavor) {
    let stale = b.try_lock("conf-lease", ms(60)).unwrap().expect("free");
    assert!(b.try_lock("conf-lease", ms(60)).unwrap().is_none());
    std::thread::sleep(ms(130)); // the lease runs out
    let mut taker = b
        .try_lock("conf-lease", Duration::from_secs(30))
        .unwrap()
        .expect("taken over after the lease");
    assert!(taker.fence() > stale.fence());
    let mut stale = stale;
    // The former holder can neither extend nor release the new holder's lock.
    assert!(!b.extend(&mut stale, Duration::from_secs(30)).unwrap());
    assert!(!b.release(stale).unwrap());
    assert!(b.try_lock("conf-lease", ms(60)).unwrap().is_none()); // still held
    assert!(b.extend(&mut taker, Duration::from_secs(30)).unwrap());
    assert!(b.release(taker).unwrap());
    let again = b.try_lock("conf-lease", ms(60)).unwrap().expect("free");
    assert!(b.release(again).unwrap());
}

fn lock_extend(b: &dyn StateBackend, f: Flavor) {
    let mut g = b.try_lock("conf-extend", ms(80)).unwrap().expect("free");
    assert!(b.extend(&mut g, Duration::from_secs(30)).unwrap());
    std::thread::sleep(ms(160)); // past the original lease
    assert!(b.try_lock("conf-extend", ms(80)).unwrap().is_none());
    assert!(b.release(g).unwrap());

    // Documented difference: a lease that ran out with nobody taking the lock over can still
    // be extended on the store (its record stays until replaced), not on Redis (the key
    // expired).
    let mut late = b.try_lock("conf-late", ms(50)).unwrap().expect("free");
    std::thread::sleep(ms(120));
    let extended = b.extend(&mut late, Duration::from_secs(30)).unwrap();
    match f {
        Flavor::Shm => {
            assert!(extended);
            assert!(b.try_lock("conf-late", ms(50)).unwrap().is_none());
            assert!(b.release(late).unwrap());
        }
        Flavor::Redis => {
            assert!(!extended);
            assert!(!b.release(late).unwrap());
        }
    }
}

fn lock_drop_releases(b: &dyn StateBackend, _: Flavor) {
    let g = b
        .try_lock("conf-drop", Duration::from_secs(30))
        .unwrap()
        .expect("free");
    drop(g);
    let g = b
        .try_lock("conf-drop", Duration::from_secs(30))
        .unwrap()
        .expect("released by drop");
    assert!(b.release(g).unwrap());
}

fn lock_errors(b: &dyn StateBackend, _: Flavor) {
    let invalid = |r: shmstate::Result<Option<shmstate::LockHandle>>| {
        matches!(r, Err(Error::InvalidArgument { .. }))
    };
    assert!(invalid(b.try_lock("conf-zero", Duration::ZERO)));
    assert!(invalid(b.try_lock("", Duration::from_secs(1))));
    let mut g = b
        .try_lock("conf-err", Duration::from_secs(5))
        .unwrap()
        .unwrap();
    assert!(matches!(
        b.extend(&mut g, Duration::ZERO),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(b.release(g).unwrap());
}

fn rate_limit(b: &dyn StateBackend, _: Flavor) {
    let window = ms(400);
    let client = b"\x00rate:203.0.113.9";
    // The store's windows are aligned to multiples of their length: start early in one, so
    // that the five checks below cannot straddle a boundary.
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    while now_ms() % 400 > 100 {
        std::thread::sleep(ms(5));
    }
    let mut denied = None;
    for i in 1..=5u64 {
        let d = b.rate_limit(client, 3, window).unwrap();
        assert_eq!(d.limit, 3);
        if i <= 3 {
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 3 - i);
            assert_eq!(d.retry_after, Duration::ZERO);
            assert!(d.reset_after <= window);
        } else {
            assert!(!d.allowed, "request {i}");
            assert_eq!(d.remaining, 0);
            assert!(
                d.retry_after > Duration::ZERO && d.retry_after <= window,
                "{:?}",
                d.retry_after
            );
            denied = Some(d);
        }
    }
    // Clients, and windows of another length, count separately.
    assert!(b.rate_limit(b"rate:other", 3, window).unwrap().allowed);
    assert!(b.rate_limit(client, 3, ms(60_000)).unwrap().allowed);
    // After retry_after, the client is allowed again.
    std::thread::sleep(denied.unwrap().retry_after + ms(30));
    let d = b.rate_limit(client, 3, window).unwrap();
    assert!(d.allowed && d.remaining == 2, "{d:?}");
    // Refused arguments.
    assert!(matches!(
        b.rate_limit(client, 0, window),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        b.rate_limit(client, 3, Duration::ZERO),
        Err(Error::InvalidArgument { .. })
    ));
}

fn sizes(b: &dyn StateBackend, f: Flavor) {
    // Documented difference: the store's slots are fixed-size (this one: 256-byte values, 64
    // byte keys); Redis takes up to 512 MB.
    let big = vec![7u8; 1000];
    let long_key = vec![b'k'; 100];
    match f {
        Flavor::Shm => {
            assert!(matches!(
                b.set(b"size:big", &big, None),
                Err(Error::ValueTooLarge { .. })
            ));
            assert!(matches!(
                b.set(&long_key, b"x", None),
                Err(Error::KeyTooLong { .. })
            ));
        }
        Flavor::Redis => {
            b.set(b"size:big", &big, None).unwrap();
            assert_eq!(b.get(b"size:big").unwrap().unwrap(), big);
            b.set(&long_key, b"x", None).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Redis

#[cfg(feature = "redis")]
mod redis_server;

#[cfg(feature = "redis")]
mod redis_half {
    use super::redis_server::RedisServer;
    use super::*;
    use shmstate::{BackendErrorKind, RedisBackend, RedisOptions};
    use std::time::Instant;

    fn connect(server: &RedisServer) -> shmstate::Result<RedisBackend> {
        RedisBackend::with_options(
            &server.url(),
            RedisOptions::new()
                .connect_timeout(Duration::from_secs(2))
                .io_timeout(Duration::from_secs(2)),
        )
    }

    #[test]
    fn redis_conforms() {
        let Some(server) = RedisServer::start_or_skip("the Redis half of the conformance suite")
        else {
            return;
        };
        let b = connect(&server).unwrap();
        assert_eq!(b.backend_name(), "redis");
        run_suite(&b, Flavor::Redis);

        // A key prefix separates applications sharing one server.
        let app =
            RedisBackend::with_options(&server.url(), RedisOptions::new().key_prefix("app2:"))
                .unwrap();
        app.set(b"basic:new", b"app2's", None).unwrap();
        assert_eq!(b.get(b"basic:new").unwrap().as_deref(), Some(&b"a"[..]));
        assert_eq!(
            b.get(b"app2:basic:new").unwrap().as_deref(),
            Some(&b"app2's"[..])
        );

        // Lock handles belong to their backend.
        let s = store();
        let shm_lock = StateBackend::try_lock(&s, "conf-x", Duration::from_secs(5))
            .unwrap()
            .unwrap();
        let redis_lock = b
            .try_lock("conf-x", Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert!(matches!(
            b.release(shm_lock),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            s.release(redis_lock),
            Err(Error::InvalidArgument { .. })
        ));
        // Redis lock names may not contain braces (they would move the fence key to another
        // cluster slot).
        assert!(matches!(
            b.try_lock("a{b}", Duration::from_secs(1)),
            Err(Error::InvalidArgument { .. })
        ));

        // Many threads at once, each on its own pooled connection: increments are atomic.
        std::thread::scope(|sc| {
            for _ in 0..8 {
                sc.spawn(|| {
                    for _ in 0..100 {
                        b.incr(b"threads", 1, None).unwrap();
                    }
                });
            }
        });
        assert_eq!(b.get(b"threads").unwrap().as_deref(), Some(&b"800"[..]));

        // A script cache flush (or a server restart) is survived: scripts are loaded again.
        let mut raw = server.raw().unwrap();
        redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query::<()>(&mut raw)
            .unwrap();
        assert!(b
            .compare_and_swap(b"flushed", None, Some(b"1"), None)
            .unwrap());

        // A key of another Redis type: a typed server error, not a panic.
        redis::cmd("LPUSH")
            .arg("a-list")
            .arg("x")
            .query::<i64>(&mut raw)
            .unwrap();
        assert!(matches!(
            b.get(b"a-list"),
            Err(Error::Backend {
                kind: BackendErrorKind::Server,
                ..
            })
        ));
        assert!(matches!(
            b.compare_and_swap(b"a-list", None, Some(b"1"), None),
            Err(Error::Backend {
                kind: BackendErrorKind::Server,
                ..
            })
        ));

        // The server goes away: network errors are their own error kind.
        let url = server.url();
        drop(raw);
        drop(server);
        let e = b.get(b"basic:new").unwrap_err();
        assert!(
            matches!(
                e,
                Error::Backend {
                    kind: BackendErrorKind::Disconnected | BackendErrorKind::Connect,
                    ..
                }
            ),
            "{e}"
        );
        // Fresh connections are refused (no socket), quickly.
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(matches!(
                b.get(b"basic:new"),
                Err(Error::Backend {
                    kind: BackendErrorKind::Connect | BackendErrorKind::Disconnected,
                    ..
                })
            ));
        }
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(matches!(
            RedisBackend::connect(&url),
            Err(Error::Backend {
                kind: BackendErrorKind::Connect,
                ..
            })
        ));
        assert!(matches!(
            RedisBackend::connect("no-such-scheme://x"),
            Err(Error::Backend {
                kind: BackendErrorKind::Config,
                ..
            })
        ));
    }
}
