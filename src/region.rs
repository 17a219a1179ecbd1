//! Getting a mapping: anonymous shared memory (inherited across `fork`), a named POSIX shm
//! object, or a file. Also the checks an object must pass before we map it, and the `flock`
//! protocol that tells an opener whether the creator finished and whether it is the only user.
//!
//! # The flock protocol (named objects and files)
//!
//! | who                        | holds              | when                                   |
//! |----------------------------|--------------------|----------------------------------------|
//! | creator                    | `LOCK_EX`          | from `O_EXCL` create until `READY`     |
//! | every opener (and creator) | `LOCK_SH`          | for as long as its `Store` lives       |
//! | opener that gets `LOCK_EX` | `LOCK_EX` briefly  | it is the only user: it re-initializes |
//! |                            |                    | the mutexes and repairs every shard    |
//!
//! The last row matters for files that outlive a reboot (and shm objects whose users all
//! died): a mutex word can still name a thread that no longer exists, which no kernel will ever
//! mark as dead. The only user may safely re-initialize it.
//!
//! On Linux, POSIX shm objects are files in `/dev/shm` (that is what glibc's `shm_open` opens),
//! so both kinds share one code path and both are opened with `O_NOFOLLOW`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::mm::{MapFlags, ProtFlags};

use crate::error::{Error, Result};
use crate::raw::RawRegion;

/// Where POSIX shm objects live on Linux.
const SHM_DIR: &str = "/dev/shm";
/// How long an opener waits for a creator to finish initializing.
const INIT_WAIT: Duration = Duration::from_secs(5);

/// An owned `MAP_SHARED` mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    raw: RawRegion,
    /// Kept open so our `LOCK_SH` lives as long as the mapping (`None` for anonymous memory).
    fd: Option<OwnedFd>,
    /// What was opened, for messages and tools.
    pub(crate) origin: Origin,
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
        })
    }

    fn from_fd(fd: OwnedFd, len: usize, origin: Origin) -> Result<Self> {
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
        })
    }

    /// Converts our exclusive creation/recovery lock into the shared "I use it" lock.
    pub(crate) fn downgrade(&self) -> Result<()> {
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

/// Validates a POSIX shm name and returns its path under `/dev/shm`.
pub(crate) fn shm_path(name: &str) -> Result<PathBuf> {
    let bad = |reason| Error::InvalidName {
        name: name.to_owned(),
        reason,
    };
    let n = name.strip_prefix('/').unwrap_or(name);
    if n.is_empty() {
        return Err(bad("empty"));
    }
    if n.len() > 250 {
        return Err(bad("longer than 250 bytes"));
    }
    if n.contains('/') {
        return Err(bad("contains '/' after the first character"));
    }
    if n.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    if n == "." || n == ".." {
        return Err(bad("is '.' or '..'"));
    }
    Ok(Path::new(SHM_DIR).join(n))
}

/// Checks an opened object: a regular file, owned by us, not writable by group or others.
/// Returns its size.
fn check_secure(fd: &OwnedFd, path: &Path) -> Result<u64> {
    let st = rustix::fs::fstat(fd).map_err(|e| Error::io("fstat", e))?;
    let insecure = |reason| Error::Insecure {
        path: path.to_owned(),
        reason,
    };
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(insecure("not a regular file"));
    }
    if st.st_uid != rustix::process::geteuid().as_raw() {
        return Err(insecure("owned by another user"));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(insecure("writable by group or others (chmod go-w)"));
    }
    u64::try_from(st.st_size).map_err(|_| insecure("negative size"))
}

fn open_flags() -> OFlags {
    OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn map_open_err(e: rustix::io::Errno, path: &Path) -> Error {
    if e == rustix::io::Errno::LOOP {
        Error::Insecure {
            path: path.to_owned(),
            reason: "is a symbolic link",
        }
    } else {
        Error::io("open", e)
    }
}

/// Creates `path` with `O_EXCL`, mode 0600, sized `len`, holding `LOCK_EX`. The caller
/// initializes the region, marks it ready, then calls [`Mapping::downgrade`].
/// `Ok(None)` if it already exists.
pub(crate) fn create(path: &Path, len: usize, origin: Origin) -> Result<Option<Mapping>> {
    let fd = match rustix::fs::open(
        path,
        open_flags() | OFlags::CREATE | OFlags::EXCL,
        Mode::RUSR | Mode::WUSR,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::EXIST) => return Ok(None),
        Err(e) => return Err(map_open_err(e, path)),
    };
    let cleanup = |e: Error| {
        let _ = rustix::fs::unlink(path);
        e
    };
    rustix::fs::flock(&fd, FlockOperation::LockExclusive)
        .map_err(|e| cleanup(Error::io("flock(LOCK_EX)", e)))?;
    rustix::fs::ftruncate(&fd, len as u64).map_err(|e| cleanup(Error::io("ftruncate", e)))?;
    Mapping::from_fd(fd, len, origin).map(Some).map_err(cleanup)
}

/// What [`open`] found.
pub(crate) struct Opened {
    pub(crate) mapping: Mapping,
    /// We hold `LOCK_EX`: no other process uses the region. The caller re-initializes the
    /// mutexes, repairs, then calls [`Mapping::downgrade`].
    pub(crate) sole_user: bool,
}

/// Opens an existing object, waiting (bounded) for its creator to finish. The caller must
/// still validate the header; `is_ready` reads the init word of a candidate mapping.
pub(crate) fn open(
    path: &Path,
    origin: Origin,
    is_ready: impl Fn(&RawRegion) -> bool,
) -> Result<Opened> {
    let fd = rustix::fs::open(path, open_flags(), Mode::empty()).map_err(|e| match e {
        rustix::io::Errno::NOENT => Error::NotFound {
            path: path.to_owned(),
        },
        e => map_open_err(e, path),
    })?;
    check_secure(&fd, path)?;
    let start = Instant::now();
    let not_init = |reason| Error::NotInitialized {
        path: path.to_owned(),
        reason,
    };
    loop {
        let sole_user = match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => true,
            Err(rustix::io::Errno::WOULDBLOCK) => {
                match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockShared) {
                    Ok(()) => false,
                    Err(rustix::io::Errno::WOULDBLOCK) => {
                        // A creator is initializing, or a sole opener is recovering.
                        if start.elapsed() > INIT_WAIT {
                            return Err(not_init("another process held it exclusively for 5 s"));
                        }
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    Err(e) => return Err(Error::io("flock(LOCK_SH)", e)),
                }
            }
            Err(e) => return Err(Error::io("flock(LOCK_EX)", e)),
        };
        let size = check_secure(&fd, path)?;
        if size == 0 {
            // Either the creator is between `open(O_EXCL)` and `flock` (microseconds), or it
            // died there. Let go of our lock so it can take its own, and look again.
            let _ = rustix::fs::flock(&fd, FlockOperation::Unlock);
            if start.elapsed() > Duration::from_millis(500) {
                return Err(not_init(
                    "the object is empty (its creator died before sizing it)",
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let len = usize::try_from(size).map_err(|_| Error::corrupted("size exceeds usize"))?;
        if size < crate::layout::HEADER_SIZE as u64 {
            return Err(Error::Incompatible {
                reason: crate::error::Incompatibility::Size {
                    actual: size,
                    expected: crate::layout::HEADER_SIZE as u64,
                },
            });
        }
        let fd2 = fd
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io("dup", e))?;
        let mapping = Mapping::from_fd(fd2, len, origin.clone())?;
        if !is_ready(mapping.raw()) {
            // Nobody holds LOCK_EX, so no creator is working on it. If it carries our magic (or
            // nothing yet), its creator died mid-initialization; anything else is not a
            // shmstate region, which the header check reports.
            let magic = read_magic(mapping.raw());
            if magic == crate::layout::MAGIC || magic == [0; 8] {
                return Err(not_init(
                    "its creator died during initialization; unlink and recreate",
                ));
            }
        }
        // `fd` (the original) is dropped here; its lock lives on through the dup in `mapping`
        // (flock locks belong to the open file description, shared by dups).
        return Ok(Opened { mapping, sole_user });
    }
}

/// The 8 magic bytes at offset 0.
pub(crate) fn read_magic(raw: &RawRegion) -> [u8; 8] {
    raw.u64_at(0)
        .load(std::sync::atomic::Ordering::Relaxed)
        .to_ne_bytes()
}

/// Removes a shm object or file.
pub(crate) fn unlink(path: &Path) -> Result<()> {
    rustix::fs::unlink(path).map_err(|e| Error::io("unlink", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shm_names() {
        assert_eq!(shm_path("/abc").unwrap(), Path::new("/dev/shm/abc"));
        assert_eq!(shm_path("abc").unwrap(), Path::new("/dev/shm/abc"));
        for bad in ["", "/", "a/b", "..", ".", "a\0b", &"x".repeat(300)] {
            assert!(
                matches!(shm_path(bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn anonymous_is_zeroed_and_shared_len() {
        let m = Mapping::anonymous(4096).unwrap();
        assert_eq!(m.raw().len(), 4096);
        assert_eq!(
            m.raw()
                .u64_at(4088)
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }
}
