//! A VFS that hands SQLite's WAL writes to the kernel in one piece per commit.
//!
//! SQLite writes each WAL frame with two `pwrite`s, the 24-byte frame header and then the page, so a commit of a
//! group of messages (about 90 pages at a few thousand messages a second) costs some 180 system calls, each of
//! which walks the page cache for the pages it touches. This VFS wraps the platform's default one: every file
//! but the WAL is the default VFS's own, untouched; the WAL's writes are gathered in memory while they are
//! contiguous and written with one `pwrite` when SQLite syncs the file, and before anything could look at the
//! file itself (a read of a gathered range, its size, a truncation, a file control, closing).
//!
//! Nothing is acknowledged that is not on disk: a commit ends with a sync of the WAL (`synchronous = FULL`,
//! which [`super::open_connection`] sets and checks), the sync writes what was gathered first, and only after the
//! sync does SQLite publish the commit to other connections in the WAL index. A process that dies with frames
//! still gathered loses only frames of a transaction that had not committed, as it would have lost them anyway.
//!
//! The crate's `unsafe` code, but for one `Send` in `statements`: a VFS is a table of C callbacks over memory
//! SQLite owns.
#![allow(unsafe_code)]

use std::{
    ffi::{c_char, c_int, c_void, CStr},
    mem::{align_of, size_of},
    ptr,
    sync::OnceLock,
};

use rusqlite::ffi;

/// The name connections open the database with.
pub const VFS_NAME: &CStr = c"natter-wal-writes";

/// Gathered bytes past which they are written at once, so a large transaction does not hold them all.
const MAX_GATHERED: usize = 4 << 20;
/// The most the unix VFS writes in one call (it masks a write's length with `0x1ffff`), in whole pages.
const MAX_WRITE: usize = 0x1f000;
/// A buffer that grew past this is given back after it is written.
const KEPT_CAPACITY: usize = 1 << 20;

/// Registers the VFS (once per process); returns false if SQLite has no default VFS to wrap.
pub fn register() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| unsafe {
        let inner = ffi::sqlite3_vfs_find(ptr::null());
        if inner.is_null() {
            return false;
        }
        let vfs = Box::leak(Box::new(ffi::sqlite3_vfs {
            // Version 2: the system-call hooks of version 3 are only for SQLite's own tests.
            iVersion: (*inner).iVersion.min(2),
            szOsFile: (inner_offset() + (*inner).szOsFile as usize) as c_int,
            mxPathname: (*inner).mxPathname,
            pNext: ptr::null_mut(),
            zName: VFS_NAME.as_ptr(),
            pAppData: inner.cast(),
            xOpen: Some(open),
            xDelete: Some(delete),
            xAccess: Some(access),
            xFullPathname: Some(full_pathname),
            xDlOpen: Some(dl_open),
            xDlError: Some(dl_error),
            xDlSym: Some(dl_sym),
            xDlClose: Some(dl_close),
            xRandomness: Some(randomness),
            xSleep: Some(sleep),
            xCurrentTime: Some(current_time),
            xGetLastError: Some(get_last_error),
            xCurrentTimeInt64: Some(current_time_int64),
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        }));
        ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK
    })
}

/// A WAL file: SQLite's file header, then what is gathered; the default VFS's file follows at [`inner_offset`].
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    /// Bytes not yet written, starting at file offset `start`.
    gathered: Vec<u8>,
    start: i64,
}

const fn inner_offset() -> usize {
    let align = 16;
    size_of::<WalFile>().div_ceil(align) * align
}

unsafe fn inner_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    (*vfs).pAppData.cast()
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let inner = inner_vfs(vfs);
    let Some(inner_open) = (*inner).xOpen else { return ffi::SQLITE_CANTOPEN };
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // Every other file is the default VFS's own; the space SQLite gave is large enough for it.
        return inner_open(inner, name, file, flags, out_flags);
    }
    debug_assert_eq!(file as usize % align_of::<WalFile>(), 0);
    let inner_file = file.cast::<u8>().add(inner_offset()).cast::<ffi::sqlite3_file>();
    (*file).pMethods = ptr::null();
    let rc = inner_open(inner, name, inner_file, flags, out_flags);
    if rc != ffi::SQLITE_OK {
        if let Some(close) = (*inner_file).pMethods.as_ref().and_then(|methods| methods.xClose) {
            close(inner_file);
        }
        return rc;
    }
    ptr::write(
        file.cast::<WalFile>(),
        WalFile {
            base: ffi::sqlite3_file { pMethods: &WAL_METHODS },
            inner: inner_file,
            gathered: Vec::new(),
            start: 0,
        },
    );
    ffi::SQLITE_OK
}

unsafe fn wal<'a>(file: *mut ffi::sqlite3_file) -> &'a mut WalFile {
    &mut *file.cast::<WalFile>()
}

unsafe fn methods<'a>(file: *mut ffi::sqlite3_file) -> &'a ffi::sqlite3_io_methods {
    &*(*file).pMethods
}

impl WalFile {
    fn end(&self) -> i64 {
        self.start + self.gathered.len() as i64
    }

    /// Writes what is gathered with one call of the default VFS.
    unsafe fn flush(&mut self) -> c_int {
        if self.gathered.is_empty() {
            return ffi::SQLITE_OK;
        }
        let Some(write) = methods(self.inner).xWrite else { return ffi::SQLITE_IOERR_WRITE };
        let mut rc = ffi::SQLITE_OK;
        let mut offset = self.start;
        for chunk in self.gathered.chunks(MAX_WRITE) {
            #[cfg(test)]
            tests::KERNEL_WRITES.with(|writes| writes.set(writes.get() + 1));
            rc = write(self.inner, chunk.as_ptr().cast(), chunk.len() as c_int, offset);
            if rc != ffi::SQLITE_OK {
                break;
            }
            offset += chunk.len() as i64;
        }
        self.gathered.clear();
        if self.gathered.capacity() > KEPT_CAPACITY {
            self.gathered = Vec::new();
        }
        rc
    }

    /// Gathers a write: appended when it continues what is gathered, copied over it when it falls inside;
    /// anything else first writes what is gathered and starts anew at its offset.
    unsafe fn gather(&mut self, data: &[u8], offset: i64) -> c_int {
        let end = offset + data.len() as i64;
        if !self.gathered.is_empty() && offset >= self.start && end <= self.end() {
            let at = (offset - self.start) as usize;
            self.gathered[at..at + data.len()].copy_from_slice(data);
            return ffi::SQLITE_OK;
        }
        if self.gathered.is_empty() || offset != self.end() {
            let rc = self.flush();
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            self.start = offset;
        }
        self.gathered.extend_from_slice(data);
        if self.gathered.len() >= MAX_GATHERED {
            return self.flush();
        }
        ffi::SQLITE_OK
    }

    fn overlaps(&self, offset: i64, amount: c_int) -> bool {
        !self.gathered.is_empty() && offset < self.end() && offset + i64::from(amount) > self.start
    }
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(wal_close),
    xRead: Some(wal_read),
    xWrite: Some(wal_write),
    xTruncate: Some(wal_truncate),
    xSync: Some(wal_sync),
    xFileSize: Some(wal_file_size),
    xLock: Some(wal_lock),
    xUnlock: Some(wal_unlock),
    xCheckReservedLock: Some(wal_check_reserved_lock),
    xFileControl: Some(wal_file_control),
    xSectorSize: Some(wal_sector_size),
    xDeviceCharacteristics: Some(wal_device_characteristics),
    xShmMap: Some(wal_shm_map),
    xShmLock: Some(wal_shm_lock),
    xShmBarrier: Some(wal_shm_barrier),
    xShmUnmap: Some(wal_shm_unmap),
    xFetch: Some(wal_fetch),
    xUnfetch: Some(wal_unfetch),
};

/// Calls the default VFS's method `$method` on the inner file, or returns `$missing` if it has none.
macro_rules! inner_call {
    ($file:expr, $method:ident, $missing:expr $(, $arg:expr)*) => {{
        let wal = wal($file);
        match methods(wal.inner).$method {
            Some(method) => method(wal.inner $(, $arg)*),
            None => $missing,
        }
    }};
}

unsafe extern "C" fn wal_close(file: *mut ffi::sqlite3_file) -> c_int {
    let wal = wal(file);
    let flushed = wal.flush();
    let closed = match methods(wal.inner).xClose {
        Some(close) => close(wal.inner),
        None => ffi::SQLITE_OK,
    };
    ptr::drop_in_place(&mut wal.gathered);
    (*file).pMethods = ptr::null();
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

unsafe extern "C" fn wal_read(file: *mut ffi::sqlite3_file, out: *mut c_void, amount: c_int, offset: i64) -> c_int {
    let wal = wal(file);
    if wal.overlaps(offset, amount) {
        let rc = wal.flush();
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    inner_call!(file, xRead, ffi::SQLITE_IOERR_READ, out, amount, offset)
}

unsafe extern "C" fn wal_write(file: *mut ffi::sqlite3_file, data: *const c_void, amount: c_int, offset: i64) -> c_int {
    let data = std::slice::from_raw_parts(data.cast::<u8>(), amount.max(0) as usize);
    wal(file).gather(data, offset)
}

unsafe extern "C" fn wal_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    let rc = wal(file).flush();
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    inner_call!(file, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, size)
}

unsafe extern "C" fn wal_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    let rc = wal(file).flush();
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    inner_call!(file, xSync, ffi::SQLITE_IOERR_FSYNC, flags)
}

unsafe extern "C" fn wal_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    let rc = wal(file).flush();
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    inner_call!(file, xFileSize, ffi::SQLITE_IOERR_FSTAT, size)
}

unsafe extern "C" fn wal_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    inner_call!(file, xLock, ffi::SQLITE_IOERR_LOCK, level)
}

unsafe extern "C" fn wal_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    inner_call!(file, xUnlock, ffi::SQLITE_IOERR_UNLOCK, level)
}

unsafe extern "C" fn wal_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    inner_call!(file, xCheckReservedLock, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK, out)
}

unsafe extern "C" fn wal_file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    // A file control may act on the file itself (sizes, hints, persistence), so it sees everything written.
    let rc = wal(file).flush();
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    inner_call!(file, xFileControl, ffi::SQLITE_NOTFOUND, op, arg)
}

unsafe extern "C" fn wal_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    inner_call!(file, xSectorSize, 4096)
}

unsafe extern "C" fn wal_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    inner_call!(file, xDeviceCharacteristics, 0)
}

unsafe extern "C" fn wal_shm_map(
    file: *mut ffi::sqlite3_file,
    page: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    inner_call!(file, xShmMap, ffi::SQLITE_IOERR_SHMMAP, page, size, extend, out)
}

unsafe extern "C" fn wal_shm_lock(file: *mut ffi::sqlite3_file, offset: c_int, n: c_int, flags: c_int) -> c_int {
    inner_call!(file, xShmLock, ffi::SQLITE_IOERR_SHMLOCK, offset, n, flags)
}

unsafe extern "C" fn wal_shm_barrier(file: *mut ffi::sqlite3_file) {
    inner_call!(file, xShmBarrier, ())
}

unsafe extern "C" fn wal_shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    inner_call!(file, xShmUnmap, ffi::SQLITE_OK, delete)
}

unsafe extern "C" fn wal_fetch(
    file: *mut ffi::sqlite3_file,
    offset: i64,
    amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // Memory-mapped reads would bypass what is gathered; SQLite reads through xRead when none is given.
    let rc = wal(file).flush();
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    inner_call!(
        file,
        xFetch,
        {
            *out = ptr::null_mut();
            ffi::SQLITE_OK
        },
        offset,
        amount,
        out
    )
}

unsafe extern "C" fn wal_unfetch(file: *mut ffi::sqlite3_file, offset: i64, page: *mut c_void) -> c_int {
    inner_call!(file, xUnfetch, ffi::SQLITE_OK, offset, page)
}

// The rest of the VFS is the default one's, called with its own handle.

unsafe extern "C" fn delete(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, sync_dir: c_int) -> c_int {
    let inner = inner_vfs(vfs);
    (*inner).xDelete.map_or(ffi::SQLITE_IOERR_DELETE, |f| f(inner, name, sync_dir))
}

unsafe extern "C" fn access(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, flags: c_int, out: *mut c_int) -> c_int {
    let inner = inner_vfs(vfs);
    (*inner).xAccess.map_or(ffi::SQLITE_IOERR_ACCESS, |f| f(inner, name, flags, out))
}

unsafe extern "C" fn full_pathname(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    let inner = inner_vfs(vfs);
    (*inner).xFullPathname.map_or(ffi::SQLITE_CANTOPEN, |f| f(inner, name, n, out))
}

unsafe extern "C" fn dl_open(vfs: *mut ffi::sqlite3_vfs, name: *const c_char) -> *mut c_void {
    let inner = inner_vfs(vfs);
    (*inner).xDlOpen.map_or(ptr::null_mut(), |f| f(inner, name))
}

unsafe extern "C" fn dl_error(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) {
    let inner = inner_vfs(vfs);
    if let Some(f) = (*inner).xDlError {
        f(inner, n, out)
    }
}

unsafe extern "C" fn dl_sym(
    vfs: *mut ffi::sqlite3_vfs,
    handle: *mut c_void,
    symbol: *const c_char,
) -> Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)> {
    let inner = inner_vfs(vfs);
    (*inner).xDlSym.and_then(|f| f(inner, handle, symbol))
}

unsafe extern "C" fn dl_close(vfs: *mut ffi::sqlite3_vfs, handle: *mut c_void) {
    let inner = inner_vfs(vfs);
    if let Some(f) = (*inner).xDlClose {
        f(inner, handle)
    }
}

unsafe extern "C" fn randomness(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    let inner = inner_vfs(vfs);
    (*inner).xRandomness.map_or(0, |f| f(inner, n, out))
}

unsafe extern "C" fn sleep(vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    let inner = inner_vfs(vfs);
    (*inner).xSleep.map_or(0, |f| f(inner, micros))
}

unsafe extern "C" fn current_time(vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    let inner = inner_vfs(vfs);
    (*inner).xCurrentTime.map_or(ffi::SQLITE_ERROR, |f| f(inner, out))
}

unsafe extern "C" fn get_last_error(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    let inner = inner_vfs(vfs);
    (*inner).xGetLastError.map_or(0, |f| f(inner, n, out))
}

unsafe extern "C" fn current_time_int64(vfs: *mut ffi::sqlite3_vfs, out: *mut i64) -> c_int {
    let inner = inner_vfs(vfs);
    (*inner).xCurrentTimeInt64.map_or(ffi::SQLITE_ERROR, |f| f(inner, out))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use rusqlite::Connection;

    use super::super::open_connection;

    thread_local! {
        /// Writes of gathered WAL bytes handed to the default VFS on this thread.
        pub(super) static KERNEL_WRITES: Cell<u64> = const { Cell::new(0) };
    }

    fn rows(connection: &Connection) -> (i64, i64) {
        connection
            .query_row("SELECT COUNT(*), COALESCE(SUM(length(body)), 0) FROM t", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap()
    }

    /// Small and large transactions, one that spills pages into the WAL before it commits and reads them back
    /// (a tiny page cache), a rolled-back one, and WAL restarts: every other connection sees exactly what was
    /// committed, and so does the database opened again.
    #[test]
    fn what_is_committed_is_what_every_connection_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("natter.db");
        let writer = open_connection(&path).unwrap();
        let reader = open_connection(&path).unwrap();
        writer
            .execute_batch("PRAGMA cache_size = 8; CREATE TABLE t (k INTEGER PRIMARY KEY, body BLOB NOT NULL)")
            .unwrap();
        let mut expected = (0, 0);
        for (round, (count, size)) in
            [(1, 10), (50, 300), (2000, 1000), (20, 5000), (6000, 900)].into_iter().enumerate()
        {
            writer.execute_batch("BEGIN IMMEDIATE").unwrap();
            for _ in 0..count {
                writer.execute("INSERT INTO t (body) VALUES (randomblob(?1))", [size]).unwrap();
            }
            // Rewrites pages this transaction already wrote to the WAL.
            writer.execute("UPDATE t SET body = randomblob(length(body)) WHERE k % 7 = ?1", [round as i64]).unwrap();
            writer.execute_batch("COMMIT").unwrap();
            expected = (expected.0 + count, expected.1 + count * size);
            assert_eq!(rows(&reader), expected, "after round {round}");

            writer.execute_batch("BEGIN IMMEDIATE").unwrap();
            writer.execute("INSERT INTO t (body) SELECT body FROM t", []).unwrap();
            writer.execute_batch("ROLLBACK").unwrap();
            assert_eq!(rows(&reader), expected, "after rolling back in round {round}");
            if round % 2 == 1 {
                reader.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
            }
        }
        drop((writer, reader));
        let again = open_connection(&path).unwrap();
        assert_eq!(rows(&again), expected);
        let check: String = again.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
        assert_eq!(check, "ok");
    }

    /// A commit of many pages reaches the kernel in a few writes, not two per page.
    #[test]
    fn a_commit_of_many_pages_is_written_in_few_calls() {
        let dir = tempfile::tempdir().unwrap();
        let connection = open_connection(&dir.path().join("natter.db")).unwrap();
        connection.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, body BLOB NOT NULL)").unwrap();
        let before = KERNEL_WRITES.get();
        // About 100 pages of 4 KiB: 400 KB in writes of at most 124 KiB.
        connection
            .execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
                 INSERT INTO t (body) SELECT randomblob(3000) FROM n",
                [],
            )
            .unwrap();
        let writes = KERNEL_WRITES.get() - before;
        assert!((1..=12).contains(&writes), "{writes} writes for one commit of about 100 pages");
    }
}
