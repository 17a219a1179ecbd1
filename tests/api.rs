//! The public API in one process: every operation, every error, expiry with a manual clock,
//! eviction, counters, statistics, verification, and the three kinds of region.

mod common;

use std::time::Duration;

use common::{ShmName, TempDir};
use shmstate::{Clock, Config, Error, Incompatibility, ManualClock, Store, Ttl, WhenFull};

fn small() -> Config {
    Config::new()
        .capacity(1000)
        .max_key_len(32)
        .max_value_len(64)
}

fn manual(store: Store) -> (Store, ManualClock) {
    let c = ManualClock::new(1_000_000);
    (store.with_clock(Clock::Manual(c.clone())), c)
}

#[test]
fn set_get_delete() {
    let s = Store::anonymous(&small()).unwrap();
    assert_eq!(s.get(b"a").unwrap(), None);
    s.set(b"a", b"1", None).unwrap();
    assert_eq!(s.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    s.set(b"a", b"22", None).unwrap();
    assert_eq!(s.get(b"a").unwrap().as_deref(), Some(&b"22"[..]));
    assert_eq!(s.len(), 1);
    assert!(s.delete(b"a").unwrap());
    assert!(!s.delete(b"a").unwrap());
    assert_eq!(s.get(b"a").unwrap(), None);
    assert!(s.is_empty());
    // Empty key and empty value are ordinary.
    s.set(b"", b"", None).unwrap();
    assert_eq!(s.get(b"").unwrap(), Some(vec![]));
    assert!(s.verify().unwrap().is_ok());
}

#[test]
fn get_into_reuses_and_clears() {
    let s = Store::anonymous(&small()).unwrap();
    s.set(b"k", b"value", None).unwrap();
    let mut buf = Vec::with_capacity(64);
    assert!(s.get_into(b"k", &mut buf).unwrap());
    assert_eq!(buf, b"value");
    assert!(!s.get_into(b"missing", &mut buf).unwrap());
    assert!(buf.is_empty());
    assert!(s.contains(b"k").unwrap());
    assert!(!s.contains(b"missing").unwrap());
}

#[test]
fn add_replace_cas() {
    let s = Store::anonymous(&small()).unwrap();
    assert!(!s.replace(b"k", b"x", None).unwrap());
    assert!(s.add(b"k", b"1", None).unwrap());
    assert!(!s.add(b"k", b"2", None).unwrap());
    assert_eq!(s.get(b"k").unwrap().unwrap(), b"1");
    assert!(s.replace(b"k", b"3", None).unwrap());
    assert_eq!(s.get(b"k").unwrap().unwrap(), b"3");

    // set-if-equal
    assert!(!s
        .compare_and_swap(b"k", Some(b"1"), Some(b"4"), None)
        .unwrap());
    assert!(s
        .compare_and_swap(b"k", Some(b"3"), Some(b"4"), None)
        .unwrap());
    assert_eq!(s.get(b"k").unwrap().unwrap(), b"4");
    // delete-if-equal
    assert!(!s.compare_and_swap(b"k", Some(b"3"), None, None).unwrap());
    assert!(s.compare_and_swap(b"k", Some(b"4"), None, None).unwrap());
    assert_eq!(s.get(b"k").unwrap(), None);
    // create-if-absent
    assert!(s.compare_and_swap(b"k", None, Some(b"5"), None).unwrap());
    assert!(!s.compare_and_swap(b"k", None, Some(b"6"), None).unwrap());
    assert_eq!(s.get(b"k").unwrap().unwrap(), b"5");
    // absent stays absent
    assert!(s.compare_and_swap(b"zz", None, None, None).unwrap());
    assert!(!s.contains(b"zz").unwrap());
    // prefix of the stored value does not match
    assert!(!s.compare_and_swap(b"k", Some(b""), None, None).unwrap());
    assert!(s.verify().unwrap().is_ok());
}

#[test]
fn incr_decimal() {
    let s = Store::anonymous(&small()).unwrap();
    assert_eq!(s.incr(b"n", 5, None).unwrap(), 5);
    assert_eq!(s.incr(b"n", -7, None).unwrap(), -2);
    assert_eq!(s.get(b"n").unwrap().unwrap(), b"-2");
    s.set(b"m", b"10", None).unwrap();
    assert_eq!(s.incr(b"m", 1, None).unwrap(), 11);
    s.set(b"t", b"ten", None).unwrap();
    assert!(matches!(s.incr(b"t", 1, None), Err(Error::NotAnInteger)));
    s.set(b"big", i64::MAX.to_string().as_bytes(), None)
        .unwrap();
    assert!(matches!(s.incr(b"big", 1, None), Err(Error::Overflow)));
    assert_eq!(
        s.get(b"big").unwrap().unwrap(),
        i64::MAX.to_string().as_bytes()
    );
    s.set(b"long", &[b'1'; 30], None).unwrap();
    assert!(matches!(s.incr(b"long", 1, None), Err(Error::NotAnInteger)));
}

#[test]
fn incr_needs_room_for_digits() {
    let s = Store::anonymous(&small().max_value_len(3)).unwrap();
    assert_eq!(s.incr(b"n", 999, None).unwrap(), 999);
    assert!(matches!(
        s.incr(b"n", 1, None),
        Err(Error::ValueTooLarge { len: 4, max: 3 })
    ));
    assert_eq!(s.get(b"n").unwrap().unwrap(), b"999");
}

#[test]
fn ttl_and_expiry_with_manual_clock() {
    let (s, clock) = manual(Store::anonymous(&small()).unwrap());
    s.set(b"a", b"1", Some(Duration::from_millis(100))).unwrap();
    s.set(b"b", b"2", None).unwrap();
    assert_eq!(
        s.ttl(b"a").unwrap(),
        Ttl::ExpiresIn(Duration::from_millis(100))
    );
    assert_eq!(s.ttl(b"b").unwrap(), Ttl::NoExpiry);
    assert_eq!(s.ttl(b"c").unwrap(), Ttl::NoKey);
    clock.advance(Duration::from_millis(99));
    assert!(s.contains(b"a").unwrap());
    clock.advance(Duration::from_millis(1));
    assert_eq!(s.get(b"a").unwrap(), None);
    assert_eq!(s.ttl(b"a").unwrap(), Ttl::NoKey);
    assert_eq!(s.len(), 2, "expired entries stay until reclaimed");
    // add treats an expired key as absent and reuses its slot.
    assert!(s.add(b"a", b"new", None).unwrap());
    assert_eq!(s.get(b"a").unwrap().unwrap(), b"new");
    assert_eq!(s.len(), 2);

    // expire / persist
    assert!(s.expire(b"b", Some(Duration::from_secs(1))).unwrap());
    assert_eq!(s.ttl(b"b").unwrap(), Ttl::ExpiresIn(Duration::from_secs(1)));
    assert!(s.expire(b"b", None).unwrap());
    assert_eq!(s.ttl(b"b").unwrap(), Ttl::NoExpiry);
    assert!(!s.expire(b"zz", None).unwrap());

    // incr keeps an existing TTL, sets one on create.
    assert_eq!(s.incr(b"r", 1, Some(Duration::from_secs(60))).unwrap(), 1);
    clock.advance(Duration::from_secs(30));
    assert_eq!(s.incr(b"r", 1, Some(Duration::from_secs(60))).unwrap(), 2);
    assert_eq!(
        s.ttl(b"r").unwrap(),
        Ttl::ExpiresIn(Duration::from_secs(30))
    );
    clock.advance(Duration::from_secs(30));
    assert_eq!(s.incr(b"r", 1, Some(Duration::from_secs(60))).unwrap(), 1);

    // flush_expired reclaims.
    for i in 0..10u8 {
        s.set(&[b'x', i], b"v", Some(Duration::from_millis(5)))
            .unwrap();
    }
    clock.advance(Duration::from_millis(5));
    assert_eq!(s.flush_expired().unwrap(), 10);
    assert!(s.stats().expirations >= 10);
    assert!(s.verify().unwrap().is_ok());

    assert!(matches!(
        s.set(b"z", b"v", Some(Duration::ZERO)),
        Err(Error::InvalidTtl { .. })
    ));
    assert!(matches!(
        s.set(b"z", b"v", Some(Duration::MAX)),
        Err(Error::InvalidTtl { .. })
    ));
    // Sub-millisecond TTLs round up rather than expiring at once.
    s.set(b"z", b"v", Some(Duration::from_micros(10))).unwrap();
    assert!(s.contains(b"z").unwrap());
}

#[test]
fn size_errors() {
    let s = Store::anonymous(&small()).unwrap();
    let long = [b'k'; 33];
    assert!(matches!(
        s.set(&long, b"v", None),
        Err(Error::KeyTooLong { len: 33, max: 32 })
    ));
    assert!(matches!(s.get(&long), Err(Error::KeyTooLong { .. })));
    assert!(matches!(
        s.set(b"k", &[0; 65], None),
        Err(Error::ValueTooLarge { len: 65, max: 64 })
    ));
    assert!(matches!(
        s.compare_and_swap(b"k", None, Some(&[0; 65]), None),
        Err(Error::ValueTooLarge { .. })
    ));
    // Boundaries are inclusive.
    s.set(&[b'k'; 32], &[7; 64], None).unwrap();
    assert_eq!(s.get(&[b'k'; 32]).unwrap().unwrap(), vec![7; 64]);
    // Messages say what to do.
    let msg = Error::ValueTooLarge { len: 65, max: 64 }.to_string();
    assert!(msg.contains("max_value_len"), "{msg}");
}

#[test]
fn refuses_when_full_and_recovers_after_delete() {
    let s = Store::anonymous(&Config::new().capacity(50).shards(1)).unwrap();
    let mut stored = Vec::new();
    let mut refused = 0;
    for i in 0..1000u32 {
        match s.set(&i.to_le_bytes(), b"v", None) {
            Ok(()) => stored.push(i),
            Err(Error::Full) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(stored.len() >= 50, "capacity honoured: {}", stored.len());
    assert!(refused > 0);
    assert_eq!(s.stats().full_refusals, refused);
    // Nothing stored was lost.
    for i in &stored {
        assert!(s.contains(&i.to_le_bytes()).unwrap());
    }
    assert!(s.delete(&stored[0].to_le_bytes()).unwrap());
    let before = s.stats().full_refusals;
    let mut placed = false;
    for i in 1000..2000u32 {
        if s.set(&i.to_le_bytes(), b"v", None).is_ok() {
            placed = true;
            break;
        }
    }
    assert!(placed, "a delete makes room again");
    assert!(s.stats().full_refusals >= before);
    assert!(s.verify().unwrap().is_ok());
}

#[test]
fn full_reclaims_expired_first() {
    let (s, clock) = manual(Store::anonymous(&Config::new().capacity(50).shards(1)).unwrap());
    let mut n = 0u32;
    while s
        .set(&n.to_le_bytes(), b"v", Some(Duration::from_millis(10)))
        .is_ok()
    {
        n += 1;
        assert!(n < 10_000);
    }
    clock.advance(Duration::from_millis(10));
    // Every old key has expired: new keys must find room.
    for i in 0..n {
        s.set(&(100_000 + i).to_le_bytes(), b"w", None).unwrap();
    }
    assert!(s.stats().expirations > 0);
    assert!(s.verify().unwrap().is_ok());
}

#[test]
fn evicts_when_configured() {
    let s = Store::anonymous(
        &Config::new()
            .capacity(64)
            .shards(1)
            .when_full(WhenFull::Evict),
    )
    .unwrap();
    for i in 0..5000u32 {
        s.set(&i.to_le_bytes(), &i.to_le_bytes(), None).unwrap();
        // A hot key read constantly keeps its reference bit.
        assert!(s.contains(&0u32.to_le_bytes()).unwrap() || i > 0);
    }
    let st = s.stats();
    assert!(st.evictions > 0, "{st:?}");
    assert_eq!(st.full_refusals, 0);
    assert!(st.entries <= st.slots);
    // The most recent key is present; values are never mixed up.
    assert_eq!(
        s.get(&4999u32.to_le_bytes()).unwrap().unwrap(),
        4999u32.to_le_bytes()
    );
    for i in 0..5000u32 {
        if let Some(v) = s.get(&i.to_le_bytes()).unwrap() {
            assert_eq!(v, i.to_le_bytes());
        }
    }
    assert!(s.verify().unwrap().is_ok());
}

#[test]
fn clear_keeps_counters() {
    let s = Store::anonymous(&small()).unwrap();
    for i in 0..100u32 {
        s.set(&i.to_le_bytes(), b"v", None).unwrap();
    }
    let c = s.counter("requests").unwrap();
    c.add(3);
    let g = s.generation();
    assert_eq!(s.clear().unwrap(), 100);
    assert!(s.is_empty());
    assert_eq!(s.get(&5u32.to_le_bytes()).unwrap(), None);
    assert_eq!(c.get(), 3);
    assert_eq!(s.generation(), g + 1);
    s.set(b"after", b"1", None).unwrap();
    assert!(s.verify().unwrap().is_ok());
}

#[test]
fn counters() {
    let s = Store::anonymous(&small().max_counters(4)).unwrap();
    let a = s.counter("a").unwrap();
    assert_eq!(a.add(5), 5);
    assert_eq!(a.add(-2), 3);
    a.set(10);
    assert_eq!(a.fetch_max(7), 10);
    assert_eq!(a.fetch_max(12), 10);
    assert_eq!(a.get(), 12);
    assert_eq!(a.swap(0), 12);
    assert_eq!(s.counter("a").unwrap().get(), 0);
    a.set(i64::MAX);
    assert_eq!(a.add(1), i64::MIN, "counters wrap");
    s.counter("b").unwrap();
    s.counter("c").unwrap();
    s.counter("d").unwrap();
    assert!(matches!(
        s.counter("e"),
        Err(Error::TooManyCounters { max: 4 })
    ));
    let mut names: Vec<_> = s.counters().unwrap().into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c", "d"]);
    assert!(matches!(
        s.counter(""),
        Err(Error::InvalidCounterName { .. })
    ));
    assert!(matches!(
        s.counter(&"x".repeat(113)),
        Err(Error::InvalidCounterName { .. })
    ));
    assert!(s.counter(&"x".repeat(112)).is_err(), "table is full");
    assert_eq!(s.stats().counters, 4);
    assert!(s.verify().unwrap().is_ok());
}

#[test]
fn counters_across_threads_are_exact() {
    let s = Store::anonymous(&small()).unwrap();
    std::thread::scope(|sc| {
        for _ in 0..4 {
            let s = s.clone();
            sc.spawn(move || {
                let c = s.counter("shared").unwrap();
                for _ in 0..10_000 {
                    c.add(1);
                    s.incr(b"k", 1, None).unwrap();
                }
            });
        }
    });
    assert_eq!(s.counter("shared").unwrap().get(), 40_000);
    assert_eq!(s.get(b"k").unwrap().unwrap(), b"40000");
}

#[test]
fn readers_never_see_torn_values_under_threads() {
    let s = Store::anonymous(&Config::new().capacity(100).max_value_len(1024)).unwrap();
    let keys: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'k', i]).collect();
    let value = |k: u8, gen: u32| -> Vec<u8> {
        let len = 8 + (gen as usize * 37) % 1000;
        let mut v = vec![k ^ (gen as u8); len];
        v[..4].copy_from_slice(&gen.to_le_bytes());
        v
    };
    for (i, k) in keys.iter().enumerate() {
        s.set(k, &value(i as u8, 0), None).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    std::thread::scope(|sc| {
        let writer = s.clone();
        let keys_w = keys.clone();
        sc.spawn(move || {
            let mut gen = 1u32;
            while std::time::Instant::now() < deadline && gen < 200_000 {
                for (i, k) in keys_w.iter().enumerate() {
                    writer.set(k, &value(i as u8, gen), None).unwrap();
                }
                gen += 1;
            }
        });
        for _ in 0..2 {
            let r = s.clone();
            let keys_r = keys.clone();
            sc.spawn(move || {
                let mut buf = Vec::new();
                let mut reads = 0u64;
                while std::time::Instant::now() < deadline && reads < 5_000_000 {
                    for (i, k) in keys_r.iter().enumerate() {
                        assert!(r.get_into(k, &mut buf).unwrap());
                        let gen = u32::from_le_bytes(buf[..4].try_into().unwrap());
                        assert_eq!(buf, value(i as u8, gen), "torn read");
                        reads += 1;
                    }
                }
            });
        }
    });
    assert!(s.verify().unwrap().is_ok());
}

#[test]
fn stats_count_operations() {
    let s = Store::anonymous(&small()).unwrap();
    s.set(b"a", b"1", None).unwrap();
    s.get(b"a").unwrap();
    s.get(b"a").unwrap();
    s.get(b"b").unwrap();
    s.delete(b"a").unwrap();
    let st = s.stats();
    assert_eq!((st.hits, st.misses, st.sets, st.deletes), (2, 1, 1, 1));
    assert_eq!(st.entries, 0);
    assert_eq!(st.capacity, 1000);
    assert!(st.slots >= 1000);
    assert_eq!(st.lock_recoveries, 0);
}

#[test]
fn config_round_trips_and_bad_config_is_refused() {
    let s = Store::anonymous(&small().shards(4).when_full(WhenFull::Evict)).unwrap();
    let c = s.config();
    assert_eq!(c.settings().capacity, 1000);
    assert_eq!(c.effective_shards(), 4);
    assert!(s.evicts());
    assert!(matches!(
        Store::anonymous(&Config::new().capacity(0)),
        Err(Error::InvalidConfig {
            field: "capacity",
            ..
        })
    ));
    assert!(matches!(
        Store::anonymous(&Config::new().max_value_len(u32::MAX)),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn named_create_open_unlink() {
    let name = ShmName::new("named");
    let a = Store::create(&name.0, &small()).unwrap();
    assert!(matches!(
        Store::create(&name.0, &small()),
        Err(Error::AlreadyExists { .. })
    ));
    a.set(b"k", b"from a", None).unwrap();
    let b = Store::open(&name.0).unwrap();
    assert_eq!(b.get(b"k").unwrap().unwrap(), b"from a");
    b.counter("c").unwrap().add(2);
    assert_eq!(a.counter("c").unwrap().get(), 2);
    let c = Store::open_or_create(&name.0, &small()).unwrap();
    assert_eq!(c.get(b"k").unwrap().unwrap(), b"from a");
    assert!(matches!(
        Store::open_or_create(&name.0, &small().max_value_len(65)),
        Err(Error::Incompatible {
            reason: Incompatibility::ConfigMismatch {
                field: "max_value_len"
            }
        })
    ));
    Store::unlink(&name.0).unwrap();
    assert!(matches!(Store::open(&name.0), Err(Error::NotFound { .. })));
    assert!(matches!(
        Store::unlink(&name.0),
        Err(Error::NotFound { .. })
    ));
    // Still usable after unlink.
    assert_eq!(a.get(b"k").unwrap().unwrap(), b"from a");
    assert!(matches!(
        Store::open("bad/name"),
        Err(Error::InvalidName { .. })
    ));
}

#[test]
fn file_backed_survives_reopen() {
    let dir = TempDir::new("file");
    let path = dir.file("state.shm");
    {
        let s = Store::create_file(&path, &small()).unwrap();
        s.set(b"persist", b"yes", Some(Duration::from_secs(3600)))
            .unwrap();
        s.counter("boots").unwrap().add(1);
    }
    let s = Store::open_file(&path).unwrap();
    assert_eq!(s.get(b"persist").unwrap().unwrap(), b"yes");
    assert!(matches!(s.ttl(b"persist").unwrap(), Ttl::ExpiresIn(_)));
    assert_eq!(s.counter("boots").unwrap().get(), 1);
    assert!(s.verify().unwrap().is_ok());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(matches!(
        Store::create_file(&path, &small()),
        Err(Error::AlreadyExists { .. })
    ));
    let t = Store::open_or_create_file(&path, &small()).unwrap();
    assert_eq!(t.get(b"persist").unwrap().unwrap(), b"yes");
}

#[test]
fn bad_files_are_specific_errors() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("bad");
    let write = |name: &str, bytes: &[u8], mode: u32| {
        let p = dir.file(name);
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    };

    // Random bytes.
    let mut x = 0x1234_5678_9abc_def0u64;
    let random: Vec<u8> = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let p = write("random", &random, 0o600);
    assert!(matches!(
        Store::open_file(&p),
        Err(Error::Incompatible {
            reason: Incompatibility::BadMagic
        })
    ));

    // Too small for a header, and empty.
    let p = write("tiny", b"SHMSTATE", 0o600);
    assert!(matches!(
        Store::open_file(&p),
        Err(Error::Incompatible {
            reason: Incompatibility::Size { .. }
        })
    ));
    let p = write("empty", b"", 0o600);
    assert!(matches!(
        Store::open_file(&p),
        Err(Error::NotInitialized { .. })
    ));

    // A real region, then damaged copies of it.
    let good = dir.file("good");
    drop(Store::create_file(&good, &small()).unwrap());
    let bytes = std::fs::read(&good).unwrap();

    let p = write("truncated", &bytes[..bytes.len() - 4096], 0o600);
    assert!(matches!(
        Store::open_file(&p),
        Err(Error::Incompatible {
            reason: Incompatibility::Size { .. }
        })
    ));

    let mut v2 = bytes.clone();
    v2[8..12].copy_from_slice(&99u32.to_le_bytes());
    let p = write("version", &v2, 0o600);
    assert!(matches!(
        Store::open_file(&p),
        Err(Error::Incompatible {
            reason: Incompatibility::Version {
                found: 99,
                expected: shmstate::FORMAT_VERSION
            }
        })
    ));

    let mut fp = bytes.clone();
    fp[16] ^= 0xff;
    let p = write("fingerprint", &fp, 0o600);
    assert!(matches!(
        Store::open_file(&p),
        Err(Error::Incompatible {
            reason: Incompatibility::Fingerprint { .. }
        })
    ));

    let mut cfg = bytes.clone();
    cfg[68..72].copy_from_slice(&u32::MAX.to_le_bytes()); // max_value_len
    let p = write("config", &cfg, 0o600);
    assert!(matches!(Store::open_file(&p), Err(Error::Corrupted { .. })));

    let mut unready = bytes.clone();
    unready[12..16].copy_from_slice(&0u32.to_le_bytes());
    let p = write("unready", &unready, 0o600);
    assert!(matches!(
        Store::open_file(&p),
        Err(Error::NotInitialized { .. })
    ));

    // Permissions and file types.
    let p = write("world", &bytes, 0o666);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert!(matches!(Store::open_file(&p), Err(Error::Insecure { .. })));
    let p = write("group", &bytes, 0o620);
    assert!(matches!(Store::open_file(&p), Err(Error::Insecure { .. })));
    let link = dir.file("link");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    assert!(matches!(
        Store::open_file(&link),
        Err(Error::Insecure { .. })
    ));
    assert!(matches!(
        Store::open_file(&dir.0),
        Err(Error::Insecure { .. }) | Err(Error::Io { .. })
    ));
    assert!(matches!(
        Store::open_file(dir.file("missing")),
        Err(Error::NotFound { .. })
    ));

    // The good copy still opens.
    let p = write("copy", &bytes, 0o600);
    assert!(Store::open_file(&p).unwrap().verify().unwrap().is_ok());
}

#[test]
fn scribbled_slots_are_reported_not_followed() {
    let s = Store::anonymous(&Config::new().capacity(100).shards(1).max_value_len(32)).unwrap();
    for i in 0..20u32 {
        s.set(&i.to_le_bytes(), b"value", None).unwrap();
    }
    assert!(s.verify().unwrap().is_ok());
    // SAFETY: the test deliberately corrupts the region; the store must cope.
    let (base, len) = unsafe { s.raw_region() };
    let region = unsafe { std::slice::from_raw_parts_mut(base, len) };
    // Find every live slot header (seq 2, key_len 4, val_len 5) and make its value length huge.
    let pattern = [2u8, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0];
    let mut hits = 0;
    for off in (0..len - 12).step_by(8) {
        if region[off..off + 12] == pattern {
            region[off + 8..off + 12].copy_from_slice(&u32::MAX.to_le_bytes());
            hits += 1;
        }
    }
    assert!(hits > 0);
    let mut corrupted = 0;
    for i in 0..20u32 {
        match s.get(&i.to_le_bytes()) {
            Ok(_) => {}
            Err(Error::Corrupted { .. }) => corrupted += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(corrupted > 0);
    let rep = s.verify().unwrap();
    assert!(!rep.is_ok());
    // Clearing rewrites the shard and makes it sound again.
    s.clear().unwrap();
    assert!(s.verify().unwrap().is_ok(), "{}", s.verify().unwrap());
}

#[test]
fn scan_pages_and_delete_prefix() {
    let s = Store::anonymous(&Config::new().capacity(5000).max_key_len(32)).unwrap();
    for i in 0..1000u32 {
        s.set(format!("user:{i}").as_bytes(), b"v", None).unwrap();
        s.set(format!("sess:{i}").as_bytes(), b"v", None).unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    let (mut cursor, mut calls) = (Some(0), 0);
    while let Some(c) = cursor {
        let (page, next) = s.scan(c, b"user:", 10).unwrap();
        assert!(page.len() <= 10);
        for k in page {
            assert!(k.starts_with(b"user:"));
            assert!(seen.insert(k), "a key was returned twice");
        }
        cursor = next;
        calls += 1;
        assert!(calls < 10_000, "scan does not terminate");
    }
    assert_eq!(seen.len(), 1000);
    let (all, _) = s.scan(0, b"", usize::MAX).unwrap();
    assert!(all.len() <= 2000);
    assert_eq!(s.scan(u64::MAX, b"", 10).unwrap(), (vec![], None));
    assert_eq!(s.delete_prefix(b"user:").unwrap(), 1000);
    assert_eq!(s.len(), 1000);
    assert!(!s.contains(b"user:5").unwrap());
    assert!(s.contains(b"sess:5").unwrap());
    assert_eq!(s.delete_prefix(b"user:").unwrap(), 0);
    assert!(s.verify().unwrap().is_ok());
}

#[test]
fn line_sized_slots_fill_whole_cache_lines() {
    let cfg = Config::new()
        .capacity(1000)
        .shards(2)
        .max_key_len(20)
        .max_value_len(256);
    let exact = Store::anonymous(&cfg).unwrap();
    assert_eq!(exact.config().settings().max_key_len, 20);
    let s = Store::anonymous(&cfg.clone().line_sized_slots(true)).unwrap();
    // 24-byte header + key room + 24-byte value field: 24 + 24 + 24 = 72, rounded to 128, so
    // the key room grows to 80.
    let max = s.config().settings().max_key_len;
    assert_eq!(max, 80);
    assert!(s.region_bytes() > exact.region_bytes());
    // The extra room is usable, and the limit is enforced at the new length.
    let k = vec![b'k'; 80];
    s.set(&k, b"v", None).unwrap();
    assert_eq!(s.get(&k).unwrap().as_deref(), Some(&b"v"[..]));
    assert!(matches!(
        s.set(&[b'k'; 81], b"v", None),
        Err(Error::KeyTooLong { len: 81, max: 80 })
    ));
    // Every slot starts on a line and slots are whole lines apart.
    let mut starts = std::collections::BTreeMap::new();
    for p in s.layout_map() {
        if let (shmstate::PartKind::Slot(_), Some(shard), Some(slot)) = (p.kind, p.shard, p.slot) {
            let e = starts.entry((shard, slot)).or_insert(usize::MAX);
            *e = (*e).min(p.range.start);
        }
    }
    assert!(starts.len() >= 1000);
    assert!(starts.values().all(|o| o % 64 == 0), "a slot off a line");
    let pairs: Vec<_> = starts.iter().collect();
    for w in pairs.windows(2) {
        let (((s0, _), o0), ((s1, _), o1)) = (w[0], w[1]);
        if s0 == s1 {
            assert_eq!(o1 - o0, 128, "slots of one shard are whole lines apart");
        }
    }
    // Reopening the geometry from the header gives the same store (the rounded length is
    // what the header holds).
    assert_eq!(
        Store::anonymous(&s.config()).unwrap().region_bytes(),
        s.region_bytes()
    );
    // Already whole lines (24 + 16 + 24 = 64): unchanged.
    let c = Config::new().max_key_len(16).max_value_len(32);
    assert_eq!(
        Store::anonymous(&c.line_sized_slots(true))
            .unwrap()
            .config()
            .settings()
            .max_key_len,
        16
    );
}

/// A store holds the number of entries it was configured for: neither the per-shard load limit
/// nor the bounded probe window refuses a key before `capacity` (each region has a fresh
/// random hash seed, so every trial places the keys differently). With a probe window of 16
/// groups, 5 of 6 fills of 200 000 keys failed between 97% and 99.9% of capacity.
#[test]
fn holds_its_configured_capacity() {
    for (cap, shards) in [(200_000u64, None), (50_000, Some(1)), (5_000, Some(64))] {
        for trial in 0..2 {
            let mut cfg = Config::new().capacity(cap).max_key_len(16).max_value_len(8);
            if let Some(n) = shards {
                cfg = cfg.shards(n);
            }
            let s = Store::anonymous(&cfg).unwrap();
            for i in 0..cap {
                let k = format!("key:{i:012}");
                if let Err(e) = s.set(k.as_bytes(), b"v", None) {
                    panic!("capacity {cap}, shards {shards:?}, trial {trial}: key {i}: {e}");
                }
            }
            assert_eq!(s.len(), cap);
            assert!(s.verify().unwrap().is_ok());
        }
    }
}
