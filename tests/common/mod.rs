//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod forked;
pub mod linearize;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: tests run in parallel.
pub fn unique(prefix: &str) -> String {
    format!(
        "shmstate-test-{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Unlinks a shm object when dropped.
pub struct ShmName(pub String);

impl ShmName {
    pub fn new(prefix: &str) -> Self {
        ShmName(unique(prefix))
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        let _ = shmstate::Store::unlink(&self.0);
    }
}

/// A temporary directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let p = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir(&p).unwrap();
        TempDir(p)
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
