//! A registry of worker processes, and gauges kept per worker and summed on read.
//!
//! A registry `r` with `max` slots keeps slot `i` under the store key `0xFF 'W' r ':' i` (i as
//! 2 bytes LE). A slot is absent (free) or holds a record:
//!
//! ```text
//! offset  size  field
//!      0     4  magic "WRK1"
//!      4     4  state: 1 = LIVE (a registered worker), 2 = REAPING (its gauges are being zeroed)
//!      8     8  token: random, unique per registration
//!     16    20  process: the worker (LIVE) or the reaper (REAPING): boot id, pid, start time
//!     36     4  label length
//!     40     n  label (at most 64 bytes)
//! ```
//!
//! A worker's gauge `g` is the named counter `w.<r>.<g>.<i>` (lock-free, one atomic add). A
//! reader sums the counters of LIVE slots whose worker is alive. A slot whose worker is dead is
//! reaped by whoever notices (a reader, a registrant, [`Workers::reap`]): it swaps the record to
//! REAPING under its own identity (so exactly one reaper wins), zeroes the slot's counters, then
//! frees the slot. A reaper that dies midway leaves a REAPING record naming a dead process,
//! which the next reaper takes over. A new worker only claims a free slot, so it never loses
//! its own contributions to a late reaper.

use super::{check_name, key, tag};
use super::{u32_at, u64_at};
use crate::counter::Counter;
use crate::error::{Error, Result};
use crate::process::{self, ProcId, PROC_ID_LEN};
use crate::store::Store;

const MAGIC: u32 = u32::from_le_bytes(*b"WRK1");
const LIVE: u32 = 1;
const REAPING: u32 = 2;
const HEADER: usize = 40;
/// Longest worker label.
pub const MAX_LABEL: usize = 64;
/// Most slots a registry can have.
pub const MAX_WORKERS: u32 = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    state: u32,
    token: u64,
    proc_: ProcId,
    label: String,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER + self.label.len()];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.state.to_le_bytes());
        b[8..16].copy_from_slice(&self.token.to_le_bytes());
        self.proc_.encode(&mut b[16..16 + PROC_ID_LEN]);
        b[36..40].copy_from_slice(&(self.label.len() as u32).to_le_bytes());
        b[HEADER..].copy_from_slice(self.label.as_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<Record> {
        let bad = Error::BadRecord {
            what: "worker registry slot",
        };
        if b.len() < HEADER || u32_at(b, 0) != MAGIC {
            return Err(bad);
        }
        let state = u32_at(b, 4);
        let len = u32_at(b, 36) as usize;
        if (state != LIVE && state != REAPING) || len > MAX_LABEL || HEADER + len != b.len() {
            return Err(bad);
        }
        Ok(Record {
            state,
            token: u64_at(b, 8),
            proc_: ProcId::decode(&b[16..16 + PROC_ID_LEN]),
            label: String::from_utf8(b[HEADER..].to_vec()).map_err(|_| bad)?,
        })
    }
}

/// A live worker, as listed by [`Workers::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// The registry slot.
    pub slot: u32,
    /// Process id.
    pub pid: u32,
    /// Start time of the process, in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    pub start_time: u64,
    /// The label given at registration.
    pub label: String,
}

/// A registry of worker processes with per-worker gauges. Cheap to clone.
///
/// Replaces the Redis idiom of a `HSET workers <id> <info>` heartbeat hash plus per-worker
/// `HINCRBY gauge:<name> <worker> <delta>` fields summed with `HVALS`, and a janitor that
/// expires workers whose heartbeat stopped: here death is detected exactly (pid plus start
/// time), with no heartbeat, and a dead worker's contributions vanish when it is reaped.
///
/// ```
/// # fn main() -> shmstate::Result<()> {
/// use shmstate::{Config, Store, Workers};
/// let store = Store::anonymous(&Config::new())?;
/// let workers = Workers::new(&store, "http", 16)?;
/// // In each worker process, after fork:
/// let me = workers.register("worker-1")?;
/// let conns = me.gauge("connections")?;
/// conns.add(1)?; // connection accepted: one atomic add
/// conns.add(1)?;
/// conns.add(-1)?; // connection closed
/// // Anywhere (a metrics endpoint):
/// assert_eq!(workers.gauge_total("connections")?, 1);
/// assert_eq!(workers.list()?.len(), 1);
/// drop(me); // deregisters: its contributions are gone
/// assert_eq!(workers.gauge_total("connections")?, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Workers {
    store: Store,
    name: String,
    max: u32,
}

/// Outcome of inspecting one slot.
enum Slot {
    Free,
    Live(Record),
    /// Being reaped by a live process, or foreign/unreadable: not counted.
    Busy,
}

impl Workers {
    /// The registry `name` (at most 16 bytes; no `.` or `:`) with `max_workers` slots (at most
    /// [`MAX_WORKERS`]). Every process must use the same `max_workers` for a name.
    pub fn new(store: &Store, name: &str, max_workers: u32) -> Result<Self> {
        check_name("registry name", name, 16, b".:")?;
        if max_workers == 0 || max_workers > MAX_WORKERS {
            return Err(Error::InvalidArgument {
                what: "max_workers",
                reason: "must be 1..=4096",
            });
        }
        Ok(Workers {
            store: store.clone(),
            name: name.to_owned(),
            max: max_workers,
        })
    }

    fn slot_key(&self, i: u32) -> Vec<u8> {
        key(
            tag::WORKER,
            &[self.name.as_bytes(), b":", &(i as u16).to_le_bytes()],
        )
    }

    fn counter_prefix(&self) -> String {
        format!("w.{}.", self.name)
    }

    /// Reads slot `i`, reaping it if its worker (or its reaper) is dead.
    fn inspect(&self, i: u32, me: &ProcId) -> Result<Slot> {
        let k = self.slot_key(i);
        let Some(v) = self.store.get(&k)? else {
            return Ok(Slot::Free);
        };
        let rec = match Record::decode(&v) {
            Ok(r) => r,
            Err(_) => return Ok(Slot::Busy),
        };
        if !process::is_dead(&rec.proc_) {
            return Ok(if rec.state == LIVE {
                Slot::Live(rec)
            } else {
                Slot::Busy
            });
        }
        // Dead worker, or dead reaper: reap (or finish its reaping) under our identity.
        let reaping = Record {
            state: REAPING,
            token: rec.token,
            proc_: *me,
            label: rec.label.clone(),
        };
        let reaping = reaping.encode();
        if !self
            .store
            .compare_and_swap(&k, Some(&v), Some(&reaping), None)?
        {
            return Ok(Slot::Busy); // someone else changed it first
        }
        self.zero_slot(i)?;
        self.store
            .compare_and_swap(&k, Some(&reaping), None, None)?;
        Ok(Slot::Free)
    }

    /// Zeroes every gauge counter of slot `i`.
    fn zero_slot(&self, i: u32) -> Result<()> {
        let prefix = self.counter_prefix();
        let suffix = format!(".{i}");
        for (name, _) in self.store.counters()? {
            if name.starts_with(&prefix)
                && name.ends_with(&suffix)
                && name.len() > prefix.len() + suffix.len()
            {
                // Exactly slot i: the text after the last '.' is the slot number.
                if name.rsplit('.').next() == Some(&suffix[1..]) {
                    self.store.counter(&name)?.set(0);
                }
            }
        }
        Ok(())
    }

    /// Registers this process under `label` (at most 64 bytes) in a free slot, reaping dead
    /// workers' slots as needed. Fails with [`Error::RegistryFull`] if every slot is held by a
    /// live worker. Register in each worker *after* `fork`: the registration names its process.
    pub fn register(&self, label: &str) -> Result<Worker> {
        if label.len() > MAX_LABEL {
            return Err(Error::InvalidArgument {
                what: "worker label",
                reason: "longer than 64 bytes",
            });
        }
        let me = process::current()?;
        let rec = Record {
            state: LIVE,
            token: process::unique_token(),
            proc_: me,
            label: label.to_owned(),
        };
        let bytes = rec.encode();
        for i in 0..self.max {
            if let Slot::Free = self.inspect(i, &me)? {
                if self
                    .store
                    .compare_and_swap(&self.slot_key(i), None, Some(&bytes), None)?
                {
                    // Counters of a free slot are zero (zeroed by whoever freed it).
                    return Ok(Worker {
                        registry: self.clone(),
                        slot: i,
                        record: bytes,
                        pid: me.pid,
                        done: false,
                    });
                }
            }
        }
        Err(Error::RegistryFull { max: self.max })
    }

    /// The live workers. Dead workers found on the way are reaped.
    pub fn list(&self) -> Result<Vec<WorkerInfo>> {
        let me = process::current()?;
        let mut out = Vec::new();
        for i in 0..self.max {
            if let Slot::Live(r) = self.inspect(i, &me)? {
                out.push(WorkerInfo {
                    slot: i,
                    pid: r.proc_.pid,
                    start_time: r.proc_.start,
                    label: r.label,
                });
            }
        }
        Ok(out)
    }

    /// Reaps every dead worker now; returns how many slots were freed.
    pub fn reap(&self) -> Result<usize> {
        let me = process::current()?;
        let mut n = 0;
        for i in 0..self.max {
            let k = self.slot_key(i);
            let was_taken = self.store.contains(&k)?;
            if was_taken && matches!(self.inspect(i, &me)?, Slot::Free) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The sum of gauge `gauge` over the live workers. Dead workers found on the way are
    /// reaped first, so a crashed worker's contribution is never counted. Costs one lock-free
    /// read and one `/proc` read per occupied slot, plus one pass over the counter table:
    /// meant for metrics scrapes, not for every request. The sum wraps on overflow, as the
    /// gauges themselves do.
    pub fn gauge_total(&self, gauge: &str) -> Result<i64> {
        // Gauges wrap like counters (and any process can set one), so the sum wraps too.
        Ok(self
            .gauge_by_worker(gauge)?
            .iter()
            .fold(0i64, |sum, (_, v)| sum.wrapping_add(*v)))
    }

    /// Gauge `gauge` of each live worker.
    pub fn gauge_by_worker(&self, gauge: &str) -> Result<Vec<(WorkerInfo, i64)>> {
        let live = self.list()?;
        let prefix = format!("{}{gauge}.", self.counter_prefix());
        let counters = self.store.counters()?;
        Ok(live
            .into_iter()
            .map(|w| {
                let name = format!("{prefix}{}", w.slot);
                let v = counters
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(0, |(_, v)| *v);
                (w, v)
            })
            .collect())
    }
}

/// This process's registration in a [`Workers`] registry. Dropping it deregisters (zeroes the
/// worker's gauges and frees the slot); a worker that crashes is reaped by the others instead.
///
/// ```
/// # fn main() -> shmstate::Result<()> {
/// use shmstate::{Config, Store, Workers};
/// let store = Store::anonymous(&Config::new())?;
/// let registry = Workers::new(&store, "jobs", 4)?;
/// let me = registry.register("queue-consumer")?;
/// let busy = me.gauge("busy")?;
/// busy.set(1)?;
/// assert_eq!(registry.list()?[0].label, "queue-consumer");
/// assert_eq!(registry.reap()?, 0); // no dead workers
/// assert!(me.deregister()?);
/// assert_eq!(registry.gauge_total("busy")?, 0);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Worker {
    registry: Workers,
    slot: u32,
    record: Vec<u8>,
    pid: u32,
    done: bool,
}

impl Worker {
    /// The registry slot this worker holds.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// This worker's gauge `name` (at most 64 bytes; the counter `w.<registry>.<name>.<slot>`
    /// needs room in the store's `max_counters`). Resolve once, then each update is one atomic
    /// instruction.
    pub fn gauge(&self, name: &str) -> Result<Gauge> {
        check_name("gauge name", name, 64, b"")?;
        let counter = self.registry.store.counter(&format!(
            "{}{name}.{}",
            self.registry.counter_prefix(),
            self.slot
        ))?;
        Ok(Gauge {
            counter,
            pid: self.pid,
        })
    }

    /// Deregisters now; returns whether the slot was still ours (`false`: another process
    /// judged us dead and reaped it, which cannot happen while we live).
    pub fn deregister(mut self) -> Result<bool> {
        self.deregister_inner()
    }

    fn deregister_inner(&mut self) -> Result<bool> {
        if self.done || crate::process::my_pid() != self.pid {
            return Ok(false);
        }
        self.done = true;
        let k = self.registry.slot_key(self.slot);
        if self.registry.store.get(&k)?.as_deref() != Some(&self.record[..]) {
            return Ok(false);
        }
        // Zero first, then free: a newcomer only takes a free slot, with zeroed gauges.
        self.registry.zero_slot(self.slot)?;
        self.registry
            .store
            .compare_and_swap(&k, Some(&self.record), None, None)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // On error the slot stays registered until its process exits and is reaped.
        let _ = self.deregister_inner();
    }
}

/// One worker's contribution to a gauge. Cheap to clone; updates are one atomic instruction.
/// Usable only in the process that registered the worker (a forked child gets
/// [`Error::NotOwner`]: register the child itself).
#[derive(Debug, Clone)]
pub struct Gauge {
    counter: Counter,
    pid: u32,
}

impl Gauge {
    /// Adds `delta` (negative to decrease); returns this worker's new value.
    #[inline]
    pub fn add(&self, delta: i64) -> Result<i64> {
        self.check()?;
        Ok(self.counter.add(delta))
    }

    /// Sets this worker's value.
    #[inline]
    pub fn set(&self, v: i64) -> Result<()> {
        self.check()?;
        self.counter.set(v);
        Ok(())
    }

    /// This worker's value.
    pub fn get(&self) -> i64 {
        self.counter.get()
    }

    #[inline]
    fn check(&self) -> Result<()> {
        if crate::process::my_pid() != self.pid {
            return Err(Error::NotOwner { owner: self.pid });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry slot naming our pid with another start time (a dead worker whose pid was
    /// reused), and one left REAPING by a reaper that died: both are reaped by the next reader,
    /// and their gauges zeroed.
    #[test]
    fn reused_pid_and_dead_reaper_are_reaped() {
        let store = Store::anonymous(&crate::Config::new().max_counters(16)).unwrap();
        let reg = Workers::new(&store, "t", 4).unwrap();
        let me = process::current().unwrap();
        let ghost = ProcId {
            start: me.start.wrapping_add(7),
            ..me
        };
        for (slot, state) in [(0u32, LIVE), (1, REAPING)] {
            let rec = Record {
                state,
                token: 9,
                proc_: ghost,
                label: "ghost".into(),
            };
            store.set(&reg.slot_key(slot), &rec.encode(), None).unwrap();
            store.counter(&format!("w.t.conns.{slot}")).unwrap().set(10);
        }
        let live = reg.register("live").unwrap();
        assert_eq!(live.slot(), 0, "the reused-pid slot was reaped and reused");
        live.gauge("conns").unwrap().add(1).unwrap();
        assert_eq!(reg.gauge_total("conns").unwrap(), 1);
        assert_eq!(store.counter("w.t.conns.1").unwrap().get(), 0);
        assert!(
            !store.contains(&reg.slot_key(1)).unwrap(),
            "dead reaper's slot freed"
        );
        let list = reg.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].pid, list[0].start_time), (me.pid, me.start));
        // A foreign value in a slot is skipped, never counted, never panics.
        store.set(&reg.slot_key(2), b"junk", None).unwrap();
        assert_eq!(reg.list().unwrap().len(), 1);
    }

    /// Gauges are counters any process can set: the total of extreme values wraps (as the
    /// gauges do) instead of overflowing, which would panic in a debug build.
    #[test]
    fn gauge_total_wraps_instead_of_overflowing() {
        let store = Store::anonymous(&crate::Config::new().max_counters(16)).unwrap();
        let reg = Workers::new(&store, "t", 4).unwrap();
        let a = reg.register("a").unwrap();
        let b = reg.register("b").unwrap();
        a.gauge("g").unwrap().set(i64::MAX).unwrap();
        b.gauge("g").unwrap().set(2).unwrap();
        assert_eq!(reg.gauge_total("g").unwrap(), i64::MIN + 1);
    }
}
