//! Bytes every player of a stream is sent, kept once in an append-only in-memory file so the
//! kernel can send the same pages to every player instead of copying them in per player.
//!
//! A plain `writev` copies each player's bytes from user memory into its socket's buffers: at
//! 3 Mbit/s the copy is most of a delivery node's CPU. After a player's start, the players of a
//! stream are sent the same bytes: HTTP-FLV players each frame's chunk-framed FLV tag, RTMP
//! players with the same chunk size and message stream id each frame's chunked message
//! ([`crate::relay::Frame::chunked`]). So a [`SharedStore`] (one per stream for HTTP-FLV, one
//! per stream and chunking key for RTMP) appends each frame's bytes once to an anonymous file
//! (`memfd_create(2)`) and hands out [`Span`]s of it; a player's batch is then one
//! `sendfile(2)` of consecutive spans (`send_spans`), after the player's own bytes (its
//! response head or FLV header, its RTMP control and status messages) went out by a vectored
//! write, and its socket buffers reference the file's pages instead of holding copies.
//!
//! Safety of the pages: after `sendfile` returns, the kernel may still reference the pages it
//! sent (queued, unacknowledged or in a loopback receiver's queue). A store therefore never
//! writes a byte twice: it only appends past its file's end, and when a file is full it starts a
//! new one rather than reusing the old. A file is closed once no span refers to it (frames hold
//! their spans, so that is when the relay's ring has let go of its frames); pages the kernel
//! still references stay alive until it lets go of them.
//!
//! Memory: a stream's files hold a second copy of the frames its players were sent this way
//! (the frames' own buffers stay with the relay's ring), up to [`FILE_CAPACITY`] beyond what
//! the ring holds; it is shared memory (`Shmem` in `/proc/meminfo`), not the process's RSS,
//! and per stream, not per player. At most [`MAX_LIVE_FILES`] files are alive at once.
//!
//! Where in-memory files are unavailable (not Linux, past [`MAX_LIVE_FILES`], or the node is
//! out of file descriptors or memory), [`SharedStore::append`] returns `None` and the caller
//! writes the frame's bytes with a vectored write as before.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use streamr_net::WriteClock;
use tokio::net::TcpStream;

/// Size of each in-memory file: a stream's frames are appended until the next would not fit,
/// then a new file starts. 2 MiB holds some 5 s of a 3 Mbit/s stream (the relay's ring holds a
/// GOP or two), so a few files per stream are alive at once, and a stream keeps at most about
/// this much beyond what its ring holds. Unit tests use 64 KiB, so their streams cross many
/// files.
pub const FILE_CAPACITY: u64 = if cfg!(test) {
    64 * 1024
} else {
    2 * 1024 * 1024
};

/// Most in-memory files alive in the process (all stores together): each is a file descriptor
/// and up to [`FILE_CAPACITY`] of memory, so past this, appends fail and frames go out by
/// vectored writes rather than take descriptors the connection budgets count on.
pub const MAX_LIVE_FILES: usize = 256;

static LIVE_FILES: AtomicUsize = AtomicUsize::new(0);

/// One append-only in-memory file.
#[derive(Debug)]
pub struct SharedFile {
    #[cfg(target_os = "linux")]
    file: std::fs::File,
    /// Never read where files cannot be made: keeps the type inhabited for the docs only.
    #[cfg(not(target_os = "linux"))]
    _private: (),
}

impl Drop for SharedFile {
    fn drop(&mut self) {
        LIVE_FILES.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SharedFile {
    /// The file, for `sendfile(2)` and for reading back in tests.
    #[cfg(target_os = "linux")]
    pub fn file(&self) -> &std::fs::File {
        &self.file
    }
}

/// A range of a [`SharedFile`] holding bytes appended once.
#[derive(Debug, Clone)]
pub struct Span {
    file: Arc<SharedFile>,
    offset: u64,
    len: u64,
}

impl Span {
    /// The file the bytes are in.
    pub fn file(&self) -> &Arc<SharedFile> {
        &self.file
    }

    /// Where the bytes start in the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// How many bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty span.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the bytes end in the file.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }

    /// Extends this span by `next` when `next` starts where this one ends in the same file (a
    /// stream's consecutive frames usually do): the two then go out in one `sendfile`.
    pub fn try_extend(&mut self, next: &Span) -> bool {
        if Arc::ptr_eq(&self.file, &next.file) && self.end() == next.offset {
            self.len = self.len.saturating_add(next.len);
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Tail {
    file: Arc<SharedFile>,
    len: u64,
    capacity: u64,
}

/// A stream's append-only store of shared bytes (see the module docs). Appending takes a lock
/// once per frame (not per player); the first player to send a frame appends it.
#[derive(Debug)]
pub struct SharedStore {
    tail: Mutex<Option<Tail>>,
    file_capacity: u64,
}

impl Default for SharedStore {
    fn default() -> Self {
        SharedStore::with_file_capacity(FILE_CAPACITY)
    }
}

impl SharedStore {
    /// A store whose files hold `file_capacity` bytes each (a longer append gets a file of its
    /// own length).
    pub fn with_file_capacity(file_capacity: u64) -> Self {
        SharedStore {
            tail: Mutex::new(None),
            file_capacity: file_capacity.max(1),
        }
    }

    /// Whether this build can make shared files at all (Linux).
    pub fn is_supported() -> bool {
        cfg!(target_os = "linux")
    }

    /// Appends `bytes` and returns where they are; `None` when no in-memory file can be made or
    /// written (the caller then sends its own copy of the bytes).
    pub fn append(&self, bytes: &[u8]) -> Option<Span> {
        let len = u64::try_from(bytes.len()).ok()?;
        let mut tail = match self.tail.lock() {
            Ok(guard) => guard,
            // Appends keep the tail consistent between statements.
            Err(poisoned) => poisoned.into_inner(),
        };
        let fits = tail
            .as_ref()
            .is_some_and(|tail| tail.len.saturating_add(len) <= tail.capacity);
        if !fits {
            // The old file stays alive while spans refer to it; nothing is written to it again.
            *tail = None;
            let capacity = self.file_capacity.max(len);
            *tail = Some(Tail {
                file: Arc::new(new_file()?),
                len: 0,
                capacity,
            });
        }
        let current = tail.as_mut()?;
        let offset = current.len;
        if let Err(error) = write_at(&current.file, bytes, offset) {
            tracing::debug!(%error, "writing to a shared in-memory file failed");
            // What was partly written is never read; the next append starts a new file.
            *tail = None;
            return None;
        }
        current.len = offset.saturating_add(len);
        Some(Span {
            file: current.file.clone(),
            offset,
            len,
        })
    }
}

#[cfg(target_os = "linux")]
fn new_file() -> Option<SharedFile> {
    use rustix::fs::{memfd_create, MemfdFlags};
    let live = LIVE_FILES.fetch_add(1, Ordering::Relaxed);
    if live >= MAX_LIVE_FILES {
        LIVE_FILES.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    match memfd_create("streamr-shared", MemfdFlags::CLOEXEC) {
        // Counted above; the drop gives it back.
        Ok(fd) => Some(SharedFile {
            file: std::fs::File::from(fd),
        }),
        Err(error) => {
            LIVE_FILES.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(%error, "memfd_create failed; frames go out by vectored writes");
            None
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn new_file() -> Option<SharedFile> {
    None
}

#[cfg(target_os = "linux")]
fn write_at(file: &SharedFile, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.file.write_all_at(bytes, offset)
}

#[cfg(not(target_os = "linux"))]
fn write_at(_file: &SharedFile, _bytes: &[u8], _offset: u64) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// Most bytes asked of one `sendfile` call (Linux sends at most 2 GiB - 4 KiB per call).
#[cfg(target_os = "linux")]
const MAX_SENDFILE: u64 = 1 << 30;

/// Sends `spans` with `sendfile(2)` on `socket`, then waits for room under `clock`: fails with
/// [`io::ErrorKind::TimedOut`] once the player has taken nothing for the clock's timeout. A
/// player keeping up takes it at once, without a deadline timer.
#[cfg(target_os = "linux")]
pub(crate) async fn send_spans(
    socket: &TcpStream,
    spans: &[Span],
    clock: &mut WriteClock,
) -> io::Result<u64> {
    let mut total = 0u64;
    for span in spans {
        let mut offset = span.offset();
        let end = span.end();
        while offset < end {
            let count = usize::try_from((end - offset).min(MAX_SENDFILE)).unwrap_or(1 << 20);
            let sent = std::future::poll_fn(|cx| {
                let polled = poll_sendfile(cx, socket, span.file(), &mut offset, count);
                clock.check(cx, polled, |&sent| sent > 0)
            })
            .await?;
            if sent == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "peer accepts no more bytes",
                ));
            }
            total = total.saturating_add(sent as u64);
        }
    }
    Ok(total)
}

/// One `sendfile(2)` of up to `count` bytes of `file` from `offset` (advanced past what was
/// sent), once the socket has room: pending, with the task's waker registered, while it has
/// none.
#[cfg(target_os = "linux")]
fn poll_sendfile(
    cx: &mut std::task::Context<'_>,
    socket: &TcpStream,
    file: &SharedFile,
    offset: &mut u64,
    count: usize,
) -> std::task::Poll<io::Result<usize>> {
    use std::task::Poll;
    use tokio::io::Interest;
    loop {
        // Tried first: a socket with room sends without registering anything.
        let sent = socket.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(socket, file.file(), Some(&mut *offset), count)
                .map_err(io::Error::from)
        });
        match sent {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                match socket.poll_write_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            done => return Poll::Ready(done),
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) async fn send_spans(
    _socket: &TcpStream,
    _spans: &[Span],
    _clock: &mut WriteClock,
) -> io::Result<u64> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Collects the spans of consecutive frames into `spans`, merging each with the one before it
/// where they touch. `false` (and `spans` cleared) as soon as one frame has no span: the caller
/// then sends the batch by vectored writes instead.
pub(crate) fn collect_spans(
    frames: impl IntoIterator<Item = Option<Span>>,
    spans: &mut Vec<Span>,
) -> bool {
    for span in frames {
        let Some(span) = span else {
            spans.clear();
            return false;
        };
        if !spans.last_mut().is_some_and(|last| last.try_extend(&span)) {
            spans.push(span);
        }
    }
    true
}

#[cfg(test)]
#[cfg(target_os = "linux")]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn read(span: &Span) -> Vec<u8> {
        let mut out = vec![0; usize::try_from(span.len()).unwrap()];
        span.file()
            .file()
            .read_exact_at(&mut out, span.offset())
            .unwrap();
        out
    }

    #[test]
    fn appended_bytes_read_back_and_consecutive_spans_merge() {
        let store = SharedStore::default();
        let a = store.append(b"hello ").unwrap();
        let b = store.append(b"world").unwrap();
        assert_eq!(read(&a), b"hello ");
        assert_eq!(read(&b), b"world");
        let mut merged = a.clone();
        assert!(merged.try_extend(&b));
        assert_eq!(read(&merged), b"hello world");
        // Not in order: no merge.
        let mut back = b.clone();
        assert!(!back.try_extend(&a));
    }

    #[test]
    fn a_full_file_rotates_and_old_bytes_stay_unchanged() {
        let store = SharedStore::with_file_capacity(10);
        let first = store.append(b"0123456").unwrap();
        let second = store.append(b"789").unwrap();
        assert!(Arc::ptr_eq(first.file(), second.file()));
        // Past the capacity: a new file, and spans across files never merge.
        let third = store.append(b"abcdef").unwrap();
        assert!(!Arc::ptr_eq(first.file(), third.file()));
        assert_eq!(third.offset(), 0);
        let mut joined = second.clone();
        assert!(!joined.try_extend(&third));
        // Longer than a file: a file of its own.
        let big = vec![7u8; 25];
        let fourth = store.append(&big).unwrap();
        assert_eq!(read(&fourth), big);
        // Nothing written later changed what earlier spans hold.
        assert_eq!(read(&first), b"0123456");
        assert_eq!(read(&second), b"789");
        assert_eq!(read(&third), b"abcdef");
        // A rotated-away file lives while a span refers to it, and is closed after.
        let old_file = Arc::downgrade(first.file());
        drop((first, second, joined));
        assert!(old_file.upgrade().is_none());
    }
}
