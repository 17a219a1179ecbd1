//! Versioned namespaces: invalidate every key of a namespace at once, without a scan.
//!
//! A namespace `n` has a generation number stored under `0xFF 'G' n`. A key `k` of the
//! namespace is stored as `0xFF 'N' n ':' <generation, 8 bytes LE> k`, so bumping the
//! generation (one [`Store::incr`]) makes every old key unreachable at once; the old entries
//! then age out by their TTL, or are evicted on a [`WhenFull::Evict`](crate::WhenFull::Evict)
//! store. (Give namespaced keys a TTL, or use an evicting store: on a `Refuse` store, old
//! generations' keys without TTL stay until [`Store::clear`].)
//!
//! A missing generation word (first use, or evicted) is created from the wall clock in
//! microseconds, above any generation the lost word can have reached (fewer than one
//! invalidation per microsecond), so an old generation never comes back.

use std::time::Duration;

use super::{check_name, key, tag};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::store::Store;

/// Bound on the create-then-read loop of the generation word.
const ATTEMPTS: u32 = 8;

/// A namespace of keys that can be invalidated together. Cheap to clone.
///
/// Replaces the Redis "cache-version" idiom: `GET ns:users:ver`, then `GET users:<ver>:<key>`;
/// `INCR ns:users:ver` to invalidate (instead of `SCAN` + `DEL users:*`).
///
/// ```
/// # fn main() -> shmstate::Result<()> {
/// use shmstate::{Config, Namespace, Store};
/// use std::time::Duration;
/// let store = Store::anonymous(&Config::new())?;
/// let users = Namespace::new(&store, "users")?;
/// let ttl = Some(Duration::from_secs(300));
/// users.set(b"7", b"Ada", ttl)?;
/// users.set(b"8", b"Grace", ttl)?;
/// assert_eq!(users.get(b"7")?.as_deref(), Some(&b"Ada"[..]));
/// users.invalidate()?; // one increment: every key of the namespace is gone
/// assert_eq!(users.get(b"7")?, None);
/// assert_eq!(users.get(b"8")?, None);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Namespace {
    store: Store,
    name: Vec<u8>,
    gen_key: Vec<u8>,
}

impl Namespace {
    /// The namespace `name` (at most 32 bytes, no `:`). Keys of the namespace take
    /// `12 + name.len()` bytes of the store's `max_key_len` (64 by default).
    pub fn new(store: &Store, name: &str) -> Result<Self> {
        check_name("namespace name", name, 32, b":")?;
        Ok(Namespace {
            store: store.clone(),
            name: name.as_bytes().to_vec(),
            gen_key: key(tag::NAMESPACE_GEN, &[name.as_bytes()]),
        })
    }

    /// The current generation (created on first use).
    pub fn generation(&self) -> Result<u64> {
        let mut buf = Vec::with_capacity(20);
        for _ in 0..ATTEMPTS {
            if self.store.get_into(&self.gen_key, &mut buf)? {
                return std::str::from_utf8(&buf)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or(Error::BadRecord {
                        what: "namespace generation",
                    });
            }
            let us = Clock::System.now_ms().saturating_mul(1000);
            // Stored in decimal, as `incr` expects. Losing this race is fine: re-read.
            self.store
                .add(&self.gen_key, us.to_string().as_bytes(), None)?;
        }
        Err(Error::Contended { attempts: ATTEMPTS })
    }

    /// Invalidates every key of the namespace (one increment); returns the new generation.
    pub fn invalidate(&self) -> Result<u64> {
        self.generation()?; // make sure the word exists, so incr does not start from 0
        let g = self.store.incr(&self.gen_key, 1, None)?;
        u64::try_from(g).map_err(|_| Error::BadRecord {
            what: "namespace generation",
        })
    }

    /// The store key under which `k` lives in the current generation, for any other
    /// [`Store`] operation (`incr`, `compare_and_swap`, `expire`, ...).
    ///
    /// ```
    /// # fn main() -> shmstate::Result<()> {
    /// use shmstate::{Config, Namespace, Store};
    /// let store = Store::anonymous(&Config::new())?;
    /// let stats = Namespace::new(&store, "stats")?;
    /// assert_eq!(store.incr(&stats.key(b"views")?, 1, None)?, 1);
    /// let g = stats.generation()?;
    /// assert_eq!(stats.invalidate()?, g + 1);
    /// assert_eq!(store.incr(&stats.key(b"views")?, 1, None)?, 1); // fresh generation
    /// # Ok(()) }
    /// ```
    pub fn key(&self, k: &[u8]) -> Result<Vec<u8>> {
        let g = self.generation()?;
        Ok(key(
            tag::NAMESPACE,
            &[&self.name, b":", &g.to_le_bytes(), k],
        ))
    }

    /// The store-key prefix of every key of the namespace, all generations.
    fn all_generations_prefix(&self) -> Vec<u8> {
        key(tag::NAMESPACE, &[&self.name, b":"])
    }

    /// Deletes the keys of the current generation that start with `prefix` (the rare
    /// delete-by-prefix; Redis: `SCAN 0 MATCH users:<ver>:<prefix>*` + `DEL`). Locks each shard
    /// in turn and walks it, so it costs a pass over the whole table: prefer
    /// [`invalidate`](Namespace::invalidate) to drop a whole namespace. Returns how many keys
    /// were removed.
    ///
    /// ```
    /// # fn main() -> shmstate::Result<()> {
    /// use shmstate::{Config, Namespace, Store};
    /// let store = Store::anonymous(&Config::new())?;
    /// let ns = Namespace::new(&store, "sessions")?;
    /// ns.set(b"user7:a", b"1", None)?;
    /// ns.set(b"user7:b", b"2", None)?;
    /// ns.set(b"user8:a", b"3", None)?;
    /// assert_eq!(ns.delete_prefix(b"user7:")?, 2);
    /// assert!(ns.get(b"user8:a")?.is_some());
    /// # Ok(()) }
    /// ```
    pub fn delete_prefix(&self, prefix: &[u8]) -> Result<u64> {
        self.store.delete_prefix(&self.key(prefix)?)
    }

    /// Deletes the leftover keys of earlier generations (after [`invalidate`](Namespace::invalidate),
    /// on a store where they have no TTL and would otherwise stay until evicted). Walks the
    /// table with [`Store::scan`]; returns how many keys were removed.
    ///
    /// ```
    /// # fn main() -> shmstate::Result<()> {
    /// use shmstate::{Config, Namespace, Store};
    /// let store = Store::anonymous(&Config::new())?;
    /// let ns = Namespace::new(&store, "users")?;
    /// ns.set(b"7", b"old", None)?;
    /// ns.invalidate()?;
    /// ns.set(b"7", b"new", None)?;
    /// assert_eq!(ns.purge_old_generations()?, 1);
    /// assert_eq!(ns.get(b"7")?.as_deref(), Some(&b"new"[..]));
    /// # Ok(()) }
    /// ```
    pub fn purge_old_generations(&self) -> Result<u64> {
        let all = self.all_generations_prefix();
        let current = self.key(b"")?;
        let mut removed = 0;
        let mut cursor = Some(0);
        // `scan` moves the cursor forward on every call and ends after the last slot, so the
        // loop is bounded by the table size; the extra bound guards against a broken cursor.
        let mut pages = 0u64;
        while let Some(c) = cursor {
            pages += 1;
            if pages > 1 << 32 {
                return Err(Error::corrupted("scan cursor did not advance"));
            }
            let (keys, next) = self.store.scan(c, &all, 1024)?;
            for k in keys {
                if !k.starts_with(&current) && self.store.delete(&k)? {
                    removed += 1;
                }
            }
            cursor = next;
        }
        Ok(removed)
    }

    /// [`Store::get`] in the current generation.
    pub fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>> {
        self.store.get(&self.key(k)?)
    }

    /// [`Store::set`] in the current generation.
    pub fn set(&self, k: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.store.set(&self.key(k)?, value, ttl)
    }

    /// [`Store::delete`] in the current generation.
    pub fn delete(&self, k: &[u8]) -> Result<bool> {
        self.store.delete(&self.key(k)?)
    }
}
