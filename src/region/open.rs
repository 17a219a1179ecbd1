//! Opening named shm objects and files: the checks an object must pass before we map it, and
//! the `flock` protocol that tells an opener whether the creator finished and whether it is the
//! only user.
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
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, Mode, OFlags};

use super::header;
use super::layout::{HEADER_SIZE, MAGIC};
use super::map::{Mapping, Origin};
use crate::error::{Error, Incompatibility, Result};

/// Where POSIX shm objects live on Linux.
const SHM_DIR: &str = "/dev/shm";
/// How long an opener waits for a creator to finish initializing.
const INIT_WAIT: Duration = Duration::from_secs(5);
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
    Mapping::from_fd(fd, len, origin, true)
        .map(Some)
        .map_err(cleanup)
}

/// Opens an existing object, waiting (bounded) for its creator to finish. The caller must
/// still validate the header. If we got `LOCK_EX`, no other process uses the region:
/// [`Mapping::sole_user`] then says so, and the caller re-initializes the mutexes, repairs,
/// then calls [`Mapping::downgrade`].
pub(crate) fn open(path: &Path, origin: Origin) -> Result<Mapping> {
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
        if size < HEADER_SIZE as u64 {
            return Err(Error::Incompatible {
                reason: Incompatibility::Size {
                    actual: size,
                    expected: HEADER_SIZE as u64,
                },
            });
        }
        let fd2 = fd
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io("dup", e))?;
        let mapping = Mapping::from_fd(fd2, len, origin.clone(), sole_user)?;
        if !header::is_ready(mapping.raw()) {
            // Nobody holds LOCK_EX, so no creator is working on it. If it carries our magic (or
            // nothing yet), its creator died mid-initialization; anything else is not a
            // shmstate region, which the header check reports.
            let magic = header::read_magic(mapping.raw());
            if magic == MAGIC || magic == [0; 8] {
                return Err(not_init(
                    "its creator died during initialization; unlink and recreate",
                ));
            }
        }
        // `fd` (the original) is dropped here; its lock lives on through the dup in `mapping`
        // (flock locks belong to the open file description, shared by dups).
        return Ok(mapping);
    }
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
}
