//! The local spool: an append-only file of JSON-lines ledger events that could not go to the
//! database (channel full or closed, batch failed). Only the failure path touches it, so a mutex
//! around a buffered file is enough. It is fsynced per batch, never per event.
//!
//! Replay never reads the file being appended to: the live file is first renamed to
//! `<spool>.replaying` (under the mutex, so no append is lost between the two), and the writer
//! reads that one while new failures start a fresh live file. The rotated file is deleted once
//! every line is in the database; a crash before then replays it again, which the ledger's
//! idempotency makes harmless. Lines that can never be written (unparseable, or refused by the
//! database as invalid) are moved to `<spool>.rejected` and logged, never dropped silently.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tollgate_core::LedgerEvent;

use super::lock;

const WRITE_BUFFER_BYTES: usize = 256 * 1024;

#[derive(Debug)]
pub(crate) struct Spool {
    path: PathBuf,
    replaying: PathBuf,
    rejected: PathBuf,
    live: Mutex<Live>,
    /// Bytes in the live file.
    live_bytes: AtomicU64,
    /// Bytes of the rotated file not yet replayed.
    replay_bytes: AtomicU64,
    /// Events that could not be written even to the spool (each was logged with its JSON).
    pub(crate) lost: AtomicU64,
    /// Lines moved to the rejected file.
    pub(crate) rejected_lines: AtomicU64,
}

#[derive(Debug, Default)]
struct Live {
    file: Option<BufWriter<File>>,
    /// Written since the last fsync.
    dirty: bool,
}

impl Spool {
    /// A spool at `path`, picking up whatever a previous process left there and in its
    /// `.replaying` file. Creates the parent directory if needed.
    pub(crate) fn open(path: PathBuf) -> Spool {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Err(error) = fs::create_dir_all(dir)
        {
            tracing::error!(%error, dir = %dir.display(), "cannot create the ledger spool directory");
        }
        let replaying = sibling(&path, "replaying");
        let rejected = sibling(&path, "rejected");
        let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        Spool {
            live_bytes: AtomicU64::new(size(&path)),
            replay_bytes: AtomicU64::new(size(&replaying)),
            path,
            replaying,
            rejected,
            live: Mutex::new(Live::default()),
            lost: AtomicU64::new(0),
            rejected_lines: AtomicU64::new(0),
        }
    }

    pub(crate) fn replaying_path(&self) -> &Path {
        &self.replaying
    }

    /// Bytes waiting to be replayed, live and rotated.
    pub(crate) fn pending_bytes(&self) -> u64 {
        self.live_bytes.load(Ordering::Relaxed) + self.replay_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn live_bytes(&self) -> u64 {
        self.live_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn set_replay_bytes(&self, bytes: u64) {
        self.replay_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Appends events (buffered; durable after the next [`sync`](Spool::sync)). Returns how many
    /// were written; each one that was not is logged with its JSON.
    pub(crate) fn append(&self, events: &[LedgerEvent]) -> usize {
        let lines: Vec<Vec<u8>> = events.iter().map(to_line).collect();
        let mut live = lock(&self.live);
        let mut written = 0;
        for line in &lines {
            match self.write_line(&mut live, line) {
                Ok(()) => written += 1,
                Err(error) => self.log_lost(line, &error),
            }
        }
        written
    }

    fn write_line(&self, live: &mut Live, line: &[u8]) -> io::Result<()> {
        if live.file.is_none() {
            let mut file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&self.path)?;
            // A process killed mid-line leaves a partial last line; start on a fresh one so the
            // next event is not glued to it (the partial line alone is rejected at replay).
            if !ends_with_newline(&mut file)? {
                file.write_all(b"\n")?;
                self.live_bytes.fetch_add(1, Ordering::Relaxed);
            }
            live.file = Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file));
        }
        if let Some(file) = live.file.as_mut() {
            file.write_all(line)?;
            live.dirty = true;
            self.live_bytes
                .fetch_add(line.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn log_lost(&self, line: &[u8], error: &io::Error) {
        self.lost.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            %error,
            spool = %self.path.display(),
            event = %String::from_utf8_lossy(line).trim_end(),
            "ledger event could not be written to the database or the spool; this log line is \
             its only record"
        );
    }

    /// Flushes and fsyncs whatever was appended since the last sync.
    pub(crate) fn sync(&self) {
        let mut live = lock(&self.live);
        if let Err(error) = sync_live(&mut live) {
            tracing::error!(%error, spool = %self.path.display(), "ledger spool fsync failed");
        }
    }

    /// Renames the live file to `.replaying` if it holds anything and no rotated file is waiting.
    /// Returns whether there is now a rotated file to replay.
    pub(crate) fn rotate(&self) -> io::Result<bool> {
        if self.replaying.exists() {
            return Ok(true);
        }
        let mut live = lock(&self.live);
        sync_live(&mut live)?;
        live.file = None;
        if fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0) == 0 {
            return Ok(false);
        }
        fs::rename(&self.path, &self.replaying)?;
        sync_dir(&self.path);
        let bytes = self.live_bytes.swap(0, Ordering::Relaxed);
        self.replay_bytes.store(bytes, Ordering::Relaxed);
        Ok(true)
    }

    /// Deletes the fully replayed rotated file.
    pub(crate) fn finish_replay(&self) -> io::Result<()> {
        fs::remove_file(&self.replaying)?;
        sync_dir(&self.replaying);
        self.replay_bytes.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Moves a line that can never be written to the rejected file, loudly.
    pub(crate) fn reject(&self, line: &[u8], reason: &str) {
        self.rejected_lines.fetch_add(1, Ordering::Relaxed);
        let text = String::from_utf8_lossy(line);
        tracing::error!(
            reason,
            event = %text.trim_end(),
            rejected = %self.rejected.display(),
            "ledger event rejected; kept in the rejected file for a person to look at"
        );
        let mut line = line.to_vec();
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.rejected)
            .and_then(|mut file| {
                file.write_all(&line)?;
                file.sync_data()
            });
        if let Err(error) = written {
            tracing::error!(%error, "cannot write the ledger rejected file; the line above is the only record");
        }
    }
}

/// The event as one spool line.
pub(crate) fn to_line(event: &LedgerEvent) -> Vec<u8> {
    // Serialising a struct of strings and integers cannot fail; Debug is the fallback record.
    let mut line = serde_json::to_vec(event).unwrap_or_else(|error| {
        format!(
            "{{\"unserialisable\":{:?},\"error\":{:?}}}",
            format!("{event:?}"),
            error.to_string()
        )
        .into_bytes()
    });
    line.push(b'\n');
    line
}

/// True for an empty file or one whose last byte is a newline.
fn ends_with_newline(file: &mut File) -> io::Result<bool> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    io::Read::read_exact(file, &mut last)?;
    Ok(last[0] == b'\n')
}

fn sync_live(live: &mut Live) -> io::Result<()> {
    if !live.dirty {
        return Ok(());
    }
    if let Some(file) = live.file.as_mut() {
        file.flush()?;
        file.get_ref().sync_data()?;
    }
    live.dirty = false;
    Ok(())
}

/// Makes a rename or delete durable. Best effort: not every filesystem allows it.
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Reads the rotated file a chunk at a time from a byte offset.
pub(crate) struct ReplayReader {
    reader: BufReader<File>,
    len: u64,
}

/// One chunk of the rotated file: the events in it, lines that do not parse, and where it ends.
pub(crate) struct Chunk {
    pub(crate) events: Vec<LedgerEvent>,
    pub(crate) bad_lines: Vec<Vec<u8>>,
    pub(crate) end: u64,
    pub(crate) eof: bool,
}

impl ReplayReader {
    pub(crate) fn open(path: &Path, offset: u64) -> io::Result<ReplayReader> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(offset))?;
        Ok(ReplayReader {
            reader: BufReader::new(file),
            len,
        })
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Up to `max_events` events starting at `offset` (where the reader stands).
    pub(crate) fn next_chunk(&mut self, offset: u64, max_events: usize) -> io::Result<Chunk> {
        let mut chunk = Chunk {
            events: Vec::with_capacity(max_events.min(1024)),
            bad_lines: Vec::new(),
            end: offset,
            eof: false,
        };
        let mut line = Vec::new();
        while chunk.events.len() < max_events {
            line.clear();
            let read = self.reader.read_until(b'\n', &mut line)?;
            if read == 0 {
                chunk.eof = true;
                break;
            }
            chunk.end += read as u64;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<LedgerEvent>(&line) {
                Ok(event) => chunk.events.push(event),
                Err(_) => chunk.bad_lines.push(line.clone()),
            }
        }
        if chunk.end >= self.len {
            chunk.eof = true;
        }
        Ok(chunk)
    }
}
