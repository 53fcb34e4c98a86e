//! One server per database: an exclusive `flock` on the database file
//! itself, so that the lock follows the file and not its name. A hard link,
//! a symlink or a bind mount reaches the same file, hence the same lock
//! (the redo log's own lock is by name: a hard link to `overc.db` has a
//! redo log of its own, and two servers wrote one database through them).
//!
//! `flock` locks are apart from the POSIX locks SQLite takes on the same
//! file, but closing *any* descriptor of the file drops every POSIX lock
//! this process holds on it. So the descriptor is opened before SQLite
//! opens the file and closed after SQLite closed it, and a second store of
//! this process on the same file is refused before the file is opened at
//! all (the registry below), since closing the refused descriptor would
//! drop the first store's locks.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};

/// The files (device, inode) this process holds locked.
static HELD: Mutex<Option<HashSet<(u64, u64)>>> = Mutex::new(None);

fn held() -> MutexGuard<'static, Option<HashSet<(u64, u64)>>> {
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// The lock on a database file; released when dropped.
#[derive(Debug)]
pub(super) struct DbLock {
    /// Kept open for the lock's sake.
    _file: File,
    id: (u64, u64),
}

fn in_use(path: &Path) -> Error {
    Error::Storage(format!(
        "the database {} is in use by another overc-server (or another store of this \
         process), perhaps under another name: a hard link, a symlink or a bind mount of \
         the same file; stop that one first",
        path.display()
    ))
}

impl DbLock {
    /// Opens (creating if need be) the database file at `path` and locks it.
    ///
    /// # Errors
    /// [`Error::Storage`] when the file is locked by another process or
    /// by another store of this one, or cannot be opened.
    pub(super) fn take(path: &Path) -> Result<DbLock> {
        let cannot = |e: std::io::Error| {
            Error::Storage(format!("cannot open database {}: {e}", path.display()))
        };
        let before = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        let mut held = held();
        let set = held.get_or_insert_with(HashSet::new);
        if before.is_some_and(|id| set.contains(&id)) {
            return Err(in_use(path));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            // SQLite's own mode for new files.
            .mode(0o644)
            .open(path)
            .map_err(cannot)?;
        let meta = file.metadata().map_err(cannot)?;
        let id = (meta.dev(), meta.ino());
        if set.contains(&id) {
            // Renamed in between onto a file this process holds: closing
            // this descriptor would drop that store's POSIX locks.
            std::mem::forget(file);
            return Err(in_use(path));
        }
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(in_use(path)),
            Err(e) => return Err(cannot(e.into())),
        }
        set.insert(id);
        Ok(DbLock { _file: file, id })
    }
}

impl DbLock {
    /// Takes a shared lock on the existing database file at `path`, opened
    /// read-only: held by readers that must not see a server write (a
    /// copy), refused while a server holds it, and refusing servers while
    /// held.
    ///
    /// # Errors
    /// [`Error::Storage`] when there is no such file, it is locked by a
    /// server (of this process or another), or cannot be opened.
    pub(crate) fn share(path: &Path) -> Result<DbLock> {
        let cannot = |e: std::io::Error| {
            Error::Storage(format!("cannot open database {}: {e}", path.display()))
        };
        let mut held = held();
        let set = held.get_or_insert_with(HashSet::new);
        let file = File::open(path).map_err(cannot)?;
        let meta = file.metadata().map_err(cannot)?;
        let id = (meta.dev(), meta.ino());
        if set.contains(&id) {
            // Closing this descriptor would drop that store's POSIX locks.
            std::mem::forget(file);
            return Err(in_use(path));
        }
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(in_use(path)),
            Err(e) => return Err(cannot(e.into())),
        }
        set.insert(id);
        Ok(DbLock { _file: file, id })
    }
}

impl Drop for DbLock {
    fn drop(&mut self) {
        if let Some(set) = held().as_mut() {
            set.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hard_link_reaches_the_same_lock() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("overc.db");
        let first = DbLock::take(&db).unwrap();
        let link = dir.path().join("other.db");
        std::fs::hard_link(&db, &link).unwrap();
        let e = DbLock::take(&link).unwrap_err().to_string();
        assert!(e.contains("in use by another overc-server"), "{e}");
        assert!(e.contains("hard link"), "{e}");
        drop(first);
        DbLock::take(&link).unwrap();
    }

    #[test]
    fn a_shared_lock_refuses_a_server_and_is_refused_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("overc.db");
        let e = DbLock::share(&db).unwrap_err().to_string();
        assert!(e.contains("cannot open database"), "{e}");
        let server = DbLock::take(&db).unwrap();
        let e = DbLock::share(&db).unwrap_err().to_string();
        assert!(e.contains("in use by another overc-server"), "{e}");
        drop(server);
        let reader = DbLock::share(&db).unwrap();
        assert!(DbLock::take(&db).is_err());
        drop(reader);
        // Another process's server (another open file description).
        let other = File::open(&db).unwrap();
        rustix::fs::flock(&other, rustix::fs::FlockOperation::LockExclusive).unwrap();
        assert!(
            DbLock::share(&db)
                .unwrap_err()
                .to_string()
                .contains("in use")
        );
    }

    #[test]
    fn another_process_holding_the_file_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("overc.db");
        // The lock of another open file description, as another process has.
        let other = File::create(&db).unwrap();
        rustix::fs::flock(&other, rustix::fs::FlockOperation::LockExclusive).unwrap();
        let e = DbLock::take(&db).unwrap_err().to_string();
        assert!(e.contains("in use"), "{e}");
        drop(other);
        DbLock::take(&db).unwrap();
    }
}
