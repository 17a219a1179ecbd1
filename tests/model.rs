//! State-machine test: random operation sequences against a `HashMap` model with a manual
//! clock. Every result must match the model, and `verify()` must be clean at the end. Values
//! run from empty to nearly three pages: inline (at most 24 bytes), one heap block of every
//! size class, and large values of whole pages and tails; the heap is big enough for every key
//! to hold the largest value at once, so no write is refused.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use shmstate::{Clock, Config, Error, ManualClock, Store, Ttl};

#[derive(Debug, Clone)]
enum Op {
    Get(u8),
    Set(u8, Vec<u8>, Option<u16>),
    Add(u8, Vec<u8>, Option<u16>),
    Replace(u8, Vec<u8>, Option<u16>),
    Delete(u8),
    Cas(u8, Option<Vec<u8>>, Option<Vec<u8>>, Option<u16>),
    Incr(u8, i8, Option<u16>),
    Ttl(u8),
    Expire(u8, Option<u16>),
    Advance(u16),
    FlushExpired,
    Clear,
}

/// Keys from a small set, so operations collide.
fn key(k: u8) -> Vec<u8> {
    format!("key-{}", k % 24).into_bytes()
}

/// The longest value generated (two pages and most of a third).
const MAX_VALUE: usize = 12_400;

/// `len` bytes from a seed (cheap to generate and to shrink: by length).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(u32::from(seed)) as u8
                ^ seed
        })
        .collect()
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..40),
        2 => (0i64..100).prop_map(|n| n.to_string().into_bytes()),
        // One heap block (25 ..= 2040 bytes), every class.
        2 => (25usize..2100, any::<u8>()).prop_map(|(n, s)| pattern(n, s)),
        // Whole pages, tails, short last pages.
        1 => (2041usize..=MAX_VALUE, any::<u8>()).prop_map(|(n, s)| pattern(n, s)),
        // Around page boundaries.
        1 => (0usize..3, 0usize..48, any::<u8>())
            .prop_map(|(p, d, s)| pattern(((p + 1) * 4096 + d).saturating_sub(24), s)),
    ]
}

fn ttl() -> impl Strategy<Value = Option<u16>> {
    prop_oneof![Just(None), (1u16..500).prop_map(Some)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u8>().prop_map(Op::Get),
        4 => (any::<u8>(), value(), ttl()).prop_map(|(k, v, t)| Op::Set(k, v, t)),
        2 => (any::<u8>(), value(), ttl()).prop_map(|(k, v, t)| Op::Add(k, v, t)),
        2 => (any::<u8>(), value(), ttl()).prop_map(|(k, v, t)| Op::Replace(k, v, t)),
        2 => any::<u8>().prop_map(Op::Delete),
        3 => (any::<u8>(), proptest::option::of(value()), proptest::option::of(value()), ttl())
            .prop_map(|(k, e, n, t)| Op::Cas(k, e, n, t)),
        3 => (any::<u8>(), any::<i8>(), ttl()).prop_map(|(k, d, t)| Op::Incr(k, d, t)),
        1 => any::<u8>().prop_map(Op::Ttl),
        1 => (any::<u8>(), ttl()).prop_map(|(k, t)| Op::Expire(k, t)),
        2 => (0u16..300).prop_map(Op::Advance),
        1 => Just(Op::FlushExpired),
        1 => Just(Op::Clear),
    ]
}

#[derive(Default)]
struct Model {
    now: u64,
    map: HashMap<Vec<u8>, (Vec<u8>, u64)>, // value, expires (0 = never)
}

impl Model {
    fn live(&mut self, k: &[u8]) -> Option<(Vec<u8>, u64)> {
        let now = self.now;
        // Expired entries stay in the model until overwritten, deleted or flushed, as in the
        // store (which reclaims lazily); they are simply not visible.
        match self.map.get(k) {
            Some((_, e)) if *e != 0 && now >= *e => None,
            other => other.cloned(),
        }
    }
    fn exp(&self, t: Option<u16>) -> u64 {
        t.map_or(0, |ms| self.now + u64::from(ms))
    }
}

fn parse(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.starts_with('0') && s.len() > 1)
    {
        return None;
    }
    s.parse().ok()
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let clock = ManualClock::new(1_000_000);
    // Room in each shard for all 24 keys at the longest value: writes are never refused.
    let cfg = Config::new()
        .capacity(64)
        .shards(2)
        .max_key_len(16)
        .max_value_len(MAX_VALUE as u32)
        .memory(1 << 20);
    let s = Store::anonymous(&cfg)
        .unwrap()
        .with_clock(Clock::Manual(clock.clone()));
    let mut m = Model {
        now: clock.now_ms(),
        ..Model::default()
    };
    let d = |t: Option<u16>| t.map(|ms| Duration::from_millis(u64::from(ms)));
    for op in ops {
        match op {
            Op::Get(k) => {
                let k = key(k);
                prop_assert_eq!(s.get(&k).unwrap(), m.live(&k).map(|(v, _)| v));
            }
            Op::Set(k, v, t) => {
                let k = key(k);
                s.set(&k, &v, d(t)).unwrap();
                let e = m.exp(t);
                m.map.insert(k, (v, e));
            }
            Op::Add(k, v, t) => {
                let k = key(k);
                let want = m.live(&k).is_none();
                prop_assert_eq!(s.add(&k, &v, d(t)).unwrap(), want);
                if want {
                    let e = m.exp(t);
                    m.map.insert(k, (v, e));
                }
            }
            Op::Replace(k, v, t) => {
                let k = key(k);
                let want = m.live(&k).is_some();
                prop_assert_eq!(s.replace(&k, &v, d(t)).unwrap(), want);
                if want {
                    let e = m.exp(t);
                    m.map.insert(k, (v, e));
                }
            }
            Op::Delete(k) => {
                let k = key(k);
                let want = m.live(&k).is_some();
                prop_assert_eq!(s.delete(&k).unwrap(), want);
                m.map.remove(&k);
            }
            Op::Cas(k, exp, new, t) => {
                let k = key(k);
                let cur = m.live(&k).map(|(v, _)| v);
                let want = cur == exp;
                prop_assert_eq!(
                    s.compare_and_swap(&k, exp.as_deref(), new.as_deref(), d(t))
                        .unwrap(),
                    want
                );
                if want {
                    match new {
                        Some(v) => {
                            let e = m.exp(t);
                            m.map.insert(k, (v, e));
                        }
                        // Deleting a live key removes it; "absent stays absent" leaves an
                        // expired entry for lazy reclamation, as the store does.
                        None if cur.is_some() => {
                            m.map.remove(&k);
                        }
                        None => {}
                    }
                }
            }
            Op::Incr(k, delta, t) => {
                let k = key(k);
                let delta = i64::from(delta);
                let got = s.incr(&k, delta, d(t));
                match m.live(&k) {
                    None => {
                        prop_assert_eq!(got.unwrap(), delta);
                        let e = m.exp(t);
                        m.map.insert(k, (delta.to_string().into_bytes(), e));
                    }
                    Some((v, e)) => match parse(&v) {
                        None => prop_assert!(matches!(got, Err(Error::NotAnInteger)), "{:?}", got),
                        Some(old) => {
                            let new = old + delta;
                            prop_assert_eq!(got.unwrap(), new);
                            m.map.insert(k, (new.to_string().into_bytes(), e));
                        }
                    },
                }
            }
            Op::Ttl(k) => {
                let k = key(k);
                let want = match m.live(&k) {
                    None => Ttl::NoKey,
                    Some((_, 0)) => Ttl::NoExpiry,
                    Some((_, e)) => Ttl::ExpiresIn(Duration::from_millis(e - m.now)),
                };
                prop_assert_eq!(s.ttl(&k).unwrap(), want);
            }
            Op::Expire(k, t) => {
                let k = key(k);
                let e = m.exp(t);
                let want = match m.map.get_mut(&k) {
                    Some(entry) if entry.1 == 0 || m.now < entry.1 => {
                        entry.1 = e;
                        true
                    }
                    _ => false,
                };
                prop_assert_eq!(s.expire(&k, d(t)).unwrap(), want);
            }
            Op::Advance(ms) => {
                clock.advance(Duration::from_millis(u64::from(ms)));
                m.now += u64::from(ms);
            }
            Op::FlushExpired => {
                let now = m.now;
                let before = m.map.len();
                m.map.retain(|_, (_, e)| *e == 0 || now < *e);
                // The store may already have reclaimed some expired entries lazily.
                prop_assert!(s.flush_expired().unwrap() <= before as u64);
                prop_assert_eq!(s.len(), m.map.len() as u64);
            }
            Op::Clear => {
                s.clear().unwrap();
                m.map.clear();
            }
        }
        let rep_len = s.len();
        let now = m.now;
        let live = m.map.values().filter(|(_, e)| *e == 0 || now < *e).count() as u64;
        // Expired entries may or may not have been reclaimed yet.
        prop_assert!(rep_len >= live && rep_len <= m.map.len() as u64);
        // The heap holds the bytes of the values longer than 24 bytes: every live one, and
        // expired ones not reclaimed yet.
        let heap = |all: bool| -> u64 {
            m.map
                .values()
                .filter(|(v, e)| v.len() > 24 && (all || *e == 0 || now < *e))
                .map(|(v, _)| v.len() as u64)
                .sum()
        };
        let vb = s.stats().value_bytes;
        prop_assert!(
            vb >= heap(false) && vb <= heap(true),
            "value bytes {} not within [{}, {}]",
            vb,
            heap(false),
            heap(true)
        );
    }
    let rep = s.verify().unwrap();
    prop_assert!(rep.is_ok(), "{}", rep);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..200)) {
        run(ops)?;
    }
}
