//! Container logs in docker's json-file format: one JSON object per line,
//! `{"log":"…\n","stream":"stdout","time":"<RFC 3339, ns>"}`, so tools that
//! read docker's logs read ours. The file is capped: when it passes
//! `max_size` it is rotated to `<file>.1` … `<file>.<keep>` and the oldest
//! dropped, so a container that floods stdout cannot fill the disk.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which of the container's outputs a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of a container's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub log: String,
    pub stream: Stream,
    pub time: DateTime<Utc>,
}

/// Appends entries, splitting output at newlines, rotating past the cap.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    keep: u32,
    /// A partial line per stream, held until its newline arrives (bounded by
    /// `max_size` so a line without end is still written).
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens `path` for appending; `max_size` bytes per file, `keep` rotated
    /// files besides the live one.
    pub fn open(path: &Path, max_size: u64, keep: u32) -> Result<LogWriter> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(Error::io(path))?;
        let size = file.metadata().map_err(Error::io(path))?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_size: max_size.max(1024),
            keep,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Records output as it arrives from the container.
    pub fn write(&mut self, stream: Stream, bytes: &[u8]) -> Result<()> {
        let index = stream as usize;
        let mut pending = std::mem::take(&mut self.pending[index]);
        pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(offset) = pending[start..].iter().position(|&b| b == b'\n') {
            let end = start + offset + 1;
            self.append(stream, &pending[start..end])?;
            start = end;
        }
        pending.drain(..start);
        if pending.len() as u64 >= self.max_size / 2 {
            self.append(stream, &pending)?;
            pending.clear();
        }
        self.pending[index] = pending;
        Ok(())
    }

    /// Writes out partial lines (at stream end).
    pub fn flush(&mut self) -> Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let pending = std::mem::take(&mut self.pending[stream as usize]);
            if !pending.is_empty() {
                self.append(stream, &pending)?;
            }
        }
        self.file.sync_data().map_err(Error::io(&self.path))
    }

    fn append(&mut self, stream: Stream, line: &[u8]) -> Result<()> {
        let entry = LogEntry {
            log: String::from_utf8_lossy(line).into_owned(),
            stream,
            time: Utc::now(),
        };
        let mut json =
            serde_json::to_vec(&EntryOut::from(&entry)).map_err(|source| Error::CorruptState {
                path: self.path.clone(),
                source,
            })?;
        json.push(b'\n');
        if self.size > 0 && self.size + json.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&json).map_err(Error::io(&self.path))?;
        self.size += json.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        if self.keep == 0 {
            self.file.set_len(0).map_err(Error::io(&self.path))?;
        } else {
            for n in (1..self.keep).rev() {
                let _ = fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1));
            }
            fs::rename(&self.path, rotated(&self.path, 1)).map_err(Error::io(&self.path))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(Error::io(&self.path))?;
        }
        self.size = 0;
        Ok(())
    }
}

/// Serialises the time as docker does: RFC 3339 with nanoseconds, `Z`.
#[derive(Serialize)]
struct EntryOut<'a> {
    log: &'a str,
    stream: Stream,
    time: String,
}

impl<'a> From<&'a LogEntry> for EntryOut<'a> {
    fn from(e: &'a LogEntry) -> Self {
        EntryOut {
            log: &e.log,
            stream: e.stream,
            time: e.time.to_rfc3339_opts(SecondsFormat::Nanos, true),
        }
    }
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Reads every entry still on disk, oldest first (rotated files, then the
/// live one). Lines that do not parse (a torn last line after a crash) are
/// skipped.
pub fn read_all(path: &Path, keep: u32) -> Result<Vec<LogEntry>> {
    let mut files: Vec<PathBuf> = (1..=keep).rev().map(|n| rotated(path, n)).collect();
    files.push(path.to_path_buf());
    let mut entries = Vec::new();
    for file in files {
        let Ok(f) = File::open(&file) else { continue };
        for line in BufReader::new(f).lines() {
            let line = line.map_err(Error::io(&file))?;
            if let Ok(entry) = serde_json::from_str::<LogEntry>(&line) {
                entries.push(entry);
            }
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("isola-logs-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn splits_lines_per_stream_and_keeps_partials() {
        let dir = scratch("lines");
        let path = dir.join("ctr.log");
        let mut w = LogWriter::open(&path, 1 << 20, 1).unwrap();
        w.write(Stream::Stdout, b"hel").unwrap();
        w.write(Stream::Stderr, b"oops\n").unwrap();
        w.write(Stream::Stdout, b"lo\nwor").unwrap();
        w.flush().unwrap();
        let got: Vec<_> = read_all(&path, 1)
            .unwrap()
            .into_iter()
            .map(|e| (e.stream, e.log))
            .collect();
        assert_eq!(
            got,
            vec![
                (Stream::Stderr, "oops\n".to_string()),
                (Stream::Stdout, "hello\n".to_string()),
                (Stream::Stdout, "wor".to_string()),
            ]
        );
        let raw = fs::read_to_string(&path).unwrap();
        assert!(
            raw.contains(r#""stream":"stderr""#) && raw.contains('Z'),
            "{raw}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_flood_stays_within_the_cap() {
        let dir = scratch("flood");
        let path = dir.join("ctr.log");
        let mut w = LogWriter::open(&path, 64 * 1024, 2).unwrap();
        let line = [b'x'; 100];
        for _ in 0..20_000 {
            w.write(Stream::Stdout, &line).unwrap();
            w.write(Stream::Stdout, b"\n").unwrap();
        }
        w.flush().unwrap();
        let total: u64 = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(total <= 3 * 64 * 1024, "{total} bytes on disk");
        let entries = read_all(&path, 2).unwrap();
        assert!(!entries.is_empty() && entries.iter().all(|e| e.log.len() == 101));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_endless_line_is_still_written() {
        let dir = scratch("endless");
        let path = dir.join("ctr.log");
        let mut w = LogWriter::open(&path, 4096, 1).unwrap();
        for _ in 0..100 {
            w.write(Stream::Stdout, &[b'y'; 100]).unwrap();
        }
        assert!(fs::metadata(&path).unwrap().len() > 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}
