//! The mapping itself: an owned `MAP_SHARED` range of anonymous shared memory (inherited
//! across `fork`), of a named shm object or of a file, unmapped on drop; and [`SoleUser`], the
//! proof that no other thread of any process uses the region's locks yet (or any more).
//!
//! One of the few files allowed `unsafe` (`mmap`/`munmap`, and heap memory under Miri).
#![allow(unsafe_code)]

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::ptr::NonNull;

use rustix::fs::FlockOperation;
use rustix::mm::{MapFlags, ProtFlags};

use super::raw::RawRegion;
use crate::error::{Error, Result};

/// An owned `MAP_SHARED` mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    raw: RawRegion,
    /// Kept open so our `LOCK_SH` lives as long as the mapping (`None` for anonymous memory).
    fd: Option<OwnedFd>,
    /// What was opened, for messages and tools.
    pub(crate) origin: Origin,
    /// No other thread of any process uses the region's locks: we created it and have not
    /// marked it ready, or we hold `LOCK_EX` on it (see [`SoleUser`]).
    sole: bool,
}

/// Proof that no thread of any process uses (locks, waits on, is about to lock) the mutexes of
/// a region: only [`Mapping::sole_user`] makes one, while the mapping was just created (nobody
/// else can have it before it is marked ready) or is held with `LOCK_EX` (the flock protocol of
/// `open.rs`). It borrows the mapping, so [`Mapping::downgrade`] (`&mut`) ends it. Initializing a
/// mutex requires one ([`RobustMutex::init`](crate::sync::RobustMutex::init)).
pub(crate) struct SoleUser<'a> {
    raw: &'a RawRegion,
}

impl<'a> SoleUser<'a> {
    /// The region's bytes.
    pub(crate) fn raw(&self) -> &'a RawRegion {
        self.raw
    }
}

/// What a mapping was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Anonymous shared memory, inherited across `fork`.
    Anonymous,
    /// A named POSIX shm object.
    Shm(String),
    /// A file.
    File(PathBuf),
}

impl Mapping {
    pub(crate) fn raw(&self) -> &RawRegion {
        &self.raw
    }

    /// [`SoleUser`] while no other thread of any process can use the region's locks.
    pub(crate) fn sole_user(&self) -> Option<SoleUser<'_>> {
        self.sole.then_some(SoleUser { raw: &self.raw })
    }

    /// Anonymous `MAP_SHARED` zero-filled memory.
    #[cfg(not(miri))]
    pub(crate) fn anonymous(len: usize) -> Result<Self> {
        // SAFETY: a fresh anonymous mapping aliases nothing.
        let p = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
            )
        }
        .map_err(|e| Error::io("mmap (anonymous)", e))?;
        let base = NonNull::new(p.cast::<u8>()).ok_or(Error::corrupted("mmap returned null"))?;
        Ok(Mapping {
            // SAFETY: `len` bytes at `base` stay mapped until `Drop` (page aligned).
            raw: unsafe { RawRegion::new(base, len) },
            fd: None,
            origin: Origin::Anonymous,
            sole: true,
        })
    }

    /// Under Miri (which cannot map shared memory): zero-filled heap memory with the same
    /// alignment, so the table logic runs unchanged on it (`cargo miri test`).
    #[cfg(miri)]
    pub(crate) fn anonymous(len: usize) -> Result<Self> {
        let layout = std::alloc::Layout::from_size_align(len, MIRI_ALIGN)
            .map_err(|_| Error::corrupted("region too large"))?;
        // SAFETY: `layout` has a non-zero size (the layout module never asks for 0 bytes).
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let base = NonNull::new(p).ok_or(Error::corrupted("allocation failed"))?;
        Ok(Mapping {
            // SAFETY: `len` bytes at `base` stay allocated until `Drop`.
            raw: unsafe { RawRegion::new(base, len) },
            fd: None,
            origin: Origin::Anonymous,
            sole: true,
        })
    }

    /// Maps `len` bytes of `fd`; `sole`: we created it, or hold `LOCK_EX` on it.
    pub(super) fn from_fd(fd: OwnedFd, len: usize, origin: Origin, sole: bool) -> Result<Self> {
        // SAFETY: mapping a file descriptor creates no Rust references; the region is accessed
        // only through `RawRegion`, which tolerates concurrent writers.
        let p = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )
        }
        .map_err(|e| Error::io("mmap", e))?;
        let base = NonNull::new(p.cast::<u8>()).ok_or(Error::corrupted("mmap returned null"))?;
        Ok(Mapping {
            // SAFETY: `len` bytes at `base` stay mapped until `Drop` (page aligned).
            raw: unsafe { RawRegion::new(base, len) },
            fd: Some(fd),
            origin,
            sole,
        })
    }

    /// Converts our exclusive creation/recovery lock into the shared "I use it" lock: other
    /// processes may use the region from now on (ends [`SoleUser`]).
    pub(crate) fn downgrade(&mut self) -> Result<()> {
        self.sole = false;
        if let Some(fd) = &self.fd {
            rustix::fs::flock(fd, FlockOperation::LockShared)
                .map_err(|e| Error::io("flock(LOCK_SH)", e))?;
        }
        Ok(())
    }
}

/// Alignment of the heap-backed region under Miri (a page, as `mmap` gives).
#[cfg(miri)]
const MIRI_ALIGN: usize = 4096;

impl Drop for Mapping {
    fn drop(&mut self) {
        #[cfg(miri)]
        if self.fd.is_none() {
            let layout = std::alloc::Layout::from_size_align(self.raw.len(), MIRI_ALIGN)
                .expect("validated when allocated");
            // SAFETY: allocated in `anonymous` with this layout; nothing borrows it any more.
            unsafe { std::alloc::dealloc(self.raw.base(), layout) };
            return;
        }
        // SAFETY: we own the mapping; guards and counters borrow it through an `Arc`, so no
        // lock of this mapping is held and no reference into it remains.
        unsafe {
            let _ = rustix::mm::munmap(self.raw.base().cast(), self.raw.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_is_zeroed_and_shared_len() {
        let mut m = Mapping::anonymous(4096).unwrap();
        assert_eq!(m.raw().len(), 4096);
        assert_eq!(
            m.raw()
                .u64_at(4088)
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        assert!(m.sole_user().is_some());
        m.downgrade().unwrap();
        assert!(m.sole_user().is_none());
    }
}
