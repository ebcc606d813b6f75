//! File descriptors of the rescue shell: [`In`] and [`Out`] are shared (cloned like `dup`ed
//! descriptors; a pipe's reader sees EOF when the last writer clone is dropped), over pipes, the
//! SSH channel, the in-memory files of [`Vfs`], `/dev/null`, `/dev/zero` and the disk
//! ([`BlockDevice`]).

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

/// The server's disk, `/dev/sda`: a (sparse) file of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// The backing file; it exists and is `size` bytes long.
    pub path: PathBuf,
    /// Its size in bytes (what `blockdev --getsize64` prints).
    pub size: u64,
}

impl BlockDevice {
    /// Creates (or resizes) the backing file as a sparse file of `size` bytes.
    pub fn create(path: PathBuf, size: u64) -> io::Result<BlockDevice> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        f.set_len(size)?;
        Ok(BlockDevice { path, size })
    }

    /// Discards every block: afterwards the device reads as zeros (`blkdiscard`).
    pub async fn discard(&self) -> io::Result<()> {
        let f = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .await?;
        f.set_len(0).await?;
        f.set_len(self.size).await?;
        f.sync_all().await
    }

    /// Reads up to `len` bytes from offset 0 (fewer if the device is smaller).
    pub fn read_prefix(&self, len: u64) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let f = std::fs::File::open(&self.path)?;
        let mut buf = Vec::new();
        f.take(len.min(self.size)).read_to_end(&mut buf)?;
        Ok(buf)
    }
}

const VFS_LIMIT: usize = 256 * 1024 * 1024;

/// The rescue system's RAM file system (`/tmp`, `/root`, ...): whole files in memory, 256 MiB
/// in all.
#[derive(Debug, Clone, Default)]
pub struct Vfs(Arc<StdMutex<HashMap<String, Vec<u8>>>>);

impl Vfs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A file's content.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.lock().get(path).cloned()
    }

    /// Whether a file exists.
    pub fn exists(&self, path: &str) -> bool {
        self.lock().contains_key(path)
    }

    /// Creates or truncates a file.
    pub fn create(&self, path: &str) {
        self.lock().insert(path.to_string(), Vec::new());
    }

    /// Replaces a file.
    pub fn put(&self, path: &str, data: Vec<u8>) -> io::Result<()> {
        let mut files = self.lock();
        let used: usize = files
            .iter()
            .filter(|(p, _)| *p != path)
            .map(|(_, d)| d.len())
            .sum();
        if used + data.len() > VFS_LIMIT {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        files.insert(path.to_string(), data);
        Ok(())
    }

    /// Appends to a file (creating it).
    pub fn append(&self, path: &str, data: &[u8]) -> io::Result<()> {
        let mut files = self.lock();
        let used: usize = files.values().map(Vec::len).sum();
        if used + data.len() > VFS_LIMIT {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        files
            .entry(path.to_string())
            .or_default()
            .extend_from_slice(data);
        Ok(())
    }

    /// Removes a file; whether it existed.
    pub fn remove(&self, path: &str) -> bool {
        self.lock().remove(path).is_some()
    }

    /// The files' paths and sizes.
    pub fn list(&self) -> Vec<(String, usize)> {
        let mut v: Vec<_> = self
            .lock()
            .iter()
            .map(|(p, d)| (p.clone(), d.len()))
            .collect();
        v.sort();
        v
    }
}

/// Where reads come from.
pub enum Source {
    /// End of file at once (`/dev/null`, a closed descriptor).
    Empty,
    /// Endless zeros (`/dev/zero`).
    Zero,
    /// Endless pseudo-random bytes (`/dev/urandom`).
    Random(u64),
    /// A pipe or the SSH channel.
    Stream(Box<dyn AsyncRead + Send + Unpin>),
    /// An in-memory file, from an offset.
    Bytes(Vec<u8>, usize),
    /// The disk (file, offset, size).
    Disk(Arc<std::fs::File>, u64, u64),
}

impl Source {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Empty => Ok(0),
            Source::Zero => {
                buf.fill(0);
                Ok(buf.len())
            }
            Source::Random(state) => {
                for b in buf.iter_mut() {
                    *state ^= *state << 13;
                    *state ^= *state >> 7;
                    *state ^= *state << 17;
                    *b = *state as u8;
                }
                Ok(buf.len())
            }
            Source::Stream(r) => r.read(buf).await,
            Source::Bytes(data, pos) => {
                let n = buf.len().min(data.len() - *pos);
                buf[..n].copy_from_slice(&data[*pos..*pos + n]);
                *pos += n;
                Ok(n)
            }
            Source::Disk(f, pos, size) => {
                let left = size.saturating_sub(*pos);
                let want = (buf.len() as u64).min(left) as usize;
                if want == 0 {
                    return Ok(0);
                }
                let (f, at) = (f.clone(), *pos);
                let data = tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    let mut b = vec![0u8; want];
                    let n = f.read_at(&mut b, at)?;
                    b.truncate(n);
                    Ok::<_, io::Error>(b)
                })
                .await
                .map_err(io::Error::other)??;
                buf[..data.len()].copy_from_slice(&data);
                *pos += data.len() as u64;
                Ok(data.len())
            }
        }
    }
}

/// A readable descriptor, shared by its clones.
#[derive(Clone)]
pub struct In(Arc<Mutex<Source>>);

impl In {
    /// A descriptor reading `source`.
    pub fn new(source: Source) -> In {
        In(Arc::new(Mutex::new(source)))
    }

    /// Reads some bytes; 0 at end of file.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.lock().await.read(buf).await
    }

    /// Reads everything to the end.
    pub async fn read_to_end(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.read(&mut buf).await?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }
}

/// Where writes go.
pub enum Sink {
    /// Discarded (`/dev/null`).
    Null,
    /// A pipe or the SSH channel.
    Stream(Box<dyn AsyncWrite + Send + Unpin>),
    /// An in-memory file (appended to).
    File(Vfs, String),
    /// Collected in memory (command substitution).
    Capture(Arc<StdMutex<Vec<u8>>>),
    /// The disk (file, offset, size); every write is positional and complete when it returns.
    Disk(Arc<std::fs::File>, u64, u64),
    /// Always fails with `ENOSPC` (`/dev/full`).
    Full,
}

impl Sink {
    async fn write_all(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Null => Ok(buf.len()),
            Sink::Stream(w) => w.write_all(buf).await.map(|()| buf.len()),
            Sink::File(vfs, path) => vfs.append(path, buf).map(|()| buf.len()),
            Sink::Capture(c) => {
                c.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend_from_slice(buf);
                Ok(buf.len())
            }
            Sink::Disk(f, pos, size) => {
                let room = size.saturating_sub(*pos);
                let n = (buf.len() as u64).min(room) as usize;
                let (f, at, data) = (f.clone(), *pos, buf[..n].to_vec());
                tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    f.write_all_at(&data, at)
                })
                .await
                .map_err(io::Error::other)??;
                *pos += n as u64;
                if n < buf.len() {
                    return Err(io::Error::from(io::ErrorKind::StorageFull));
                }
                Ok(n)
            }
            Sink::Full => Err(io::Error::from(io::ErrorKind::StorageFull)),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stream(w) => w.flush().await,
            _ => Ok(()),
        }
    }

    async fn sync(&mut self) -> io::Result<()> {
        match self {
            Sink::Disk(f, _, _) => {
                let f = f.clone();
                tokio::task::spawn_blocking(move || f.sync_all())
                    .await
                    .map_err(io::Error::other)?
            }
            other => other.flush().await,
        }
    }
}

/// A writable descriptor, shared by its clones.
#[derive(Clone)]
pub struct Out(Arc<Mutex<Sink>>);

impl Out {
    /// A descriptor writing to `sink`.
    pub fn new(sink: Sink) -> Out {
        Out(Arc::new(Mutex::new(sink)))
    }

    /// `/dev/null`.
    pub fn null() -> Out {
        Out::new(Sink::Null)
    }

    /// Writes all of `buf`; `StorageFull` after writing what fit on the disk.
    pub async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        self.0.lock().await.write_all(buf).await.map(|_| ())
    }

    /// Writes a string.
    pub async fn print(&self, s: &str) -> io::Result<()> {
        self.write_all(s.as_bytes()).await
    }

    /// Flushes buffered bytes.
    pub async fn flush(&self) -> io::Result<()> {
        self.0.lock().await.flush().await
    }

    /// Flushes and, for the disk, `fsync`s.
    pub async fn sync(&self) -> io::Result<()> {
        self.0.lock().await.sync().await
    }
}

/// Opens the disk for writing at `offset` (no truncation, like a block device).
pub async fn disk_writer(dev: &BlockDevice, offset: u64) -> io::Result<Out> {
    let f = std::fs::OpenOptions::new().write(true).open(&dev.path)?;
    Ok(Out::new(Sink::Disk(Arc::new(f), offset, dev.size)))
}

/// Opens the disk for reading at `offset`.
pub async fn disk_reader(dev: &BlockDevice, offset: u64) -> io::Result<In> {
    let f = std::fs::File::open(&dev.path)?;
    Ok(In::new(Source::Disk(Arc::new(f), offset, dev.size)))
}

/// A pipe: what is written to the [`Out`] is read from the [`In`].
pub fn pipe() -> (Out, In) {
    // A duplex rather than a simplex: dropping one end gives the other EOF / EPIPE.
    let (w, r) = tokio::io::duplex(64 * 1024);
    (
        Out::new(Sink::Stream(Box::new(w))),
        In::new(Source::Stream(Box::new(r))),
    )
}

/// The three standard descriptors of a command.
#[derive(Clone)]
pub struct Stdio {
    /// 0.
    pub stdin: In,
    /// 1.
    pub stdout: Out,
    /// 2.
    pub stderr: Out,
}

/// Whether an I/O error is a write to a pipe whose reader went away (the writer dies of
/// SIGPIPE, status 141).
pub fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// The `strerror` text of an I/O error, as coreutils print it.
pub fn strerror(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::StorageFull => "No space left on device".into(),
        io::ErrorKind::NotFound => "No such file or directory".into(),
        io::ErrorKind::PermissionDenied => "Permission denied".into(),
        io::ErrorKind::BrokenPipe => "Broken pipe".into(),
        io::ErrorKind::IsADirectory => "Is a directory".into(),
        _ => e.to_string(),
    }
}
