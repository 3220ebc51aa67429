//! The server journal on disk: [`sockeye_core::journal`] records appended to one file,
//! made durable in groups, replayed and compacted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sockeye_core::journal::{encode_record, replay, Record, Replayed};

/// An open journal file. Records are buffered by [`append`](Self::append) and written and
/// synced by [`commit`](Self::commit): call `commit` before acknowledging anything the
/// records describe (a `202`, an `ACK` envelope), once per batch of changes.
#[derive(Debug)]
pub struct JournalFile {
    file: File,
    path: PathBuf,
    pending: Vec<u8>,
    len: u64,
}

impl JournalFile {
    /// Opens (or creates) the journal at `path` and replays it. A torn record at the end
    /// (a crash mid-write) is cut off. A corrupt or inconsistent record in the middle is an
    /// `InvalidData` error: the server should not start and silently lose what follows.
    pub fn open(path: impl AsRef<Path>) -> io::Result<(JournalFile, Replayed)> {
        let path = path.as_ref().to_path_buf();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let replayed = replay(&bytes);
        if let Some(error) = &replayed.error {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: {error} at byte {} ({} records before it)",
                    path.display(),
                    replayed.valid_len,
                    replayed.records
                ),
            ));
        }
        let len = replayed.valid_len as u64;
        if len < bytes.len() as u64 {
            file.set_len(len)?;
            file.sync_data()?;
        }
        file.seek(SeekFrom::Start(len))?;
        Ok((
            JournalFile {
                file,
                path,
                pending: Vec::new(),
                len,
            },
            replayed,
        ))
    }

    /// Buffers a record; nothing is durable before [`commit`](Self::commit).
    pub fn append(&mut self, record: &Record) {
        encode_record(record, &mut self.pending);
    }

    /// Whether records wait for a commit.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes the buffered records and waits until they are on disk.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.pending)?;
        self.file.sync_data()?;
        self.len += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Bytes on disk.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file holds no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Replaces the file with `records` (the current state, from
    /// [`JournalState::records`](sockeye_core::journal::JournalState::records)): written
    /// to a temporary file, synced, then renamed over the journal, so a crash leaves
    /// either the old or the new file whole. Pending records are committed first.
    pub fn compact(&mut self, records: impl IntoIterator<Item = Record>) -> io::Result<()> {
        self.commit()?;
        let mut bytes = Vec::new();
        for record in records {
            encode_record(&record, &mut bytes);
        }
        let tmp = self.path.with_extension("compacting");
        {
            let mut out = File::create(&tmp)?;
            out.write_all(&bytes)?;
            out.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename itself durable.
            File::open(dir)?.sync_all()?;
        }
        let mut file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        file.seek(SeekFrom::End(0))?;
        self.file = file;
        self.len = bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sockeye-journal-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir.join("journal")
    }

    fn mail(n: u64) -> Record {
        Record::MailQueued {
            user: "bob".into(),
            from: None,
            queued_unix_ms: n,
            payload: Bytes::from(format!("{n}")),
        }
    }

    #[test]
    fn committed_records_survive_a_reopen_and_pending_ones_do_not() {
        let path = scratch("reopen");
        let (mut journal, replayed) = JournalFile::open(&path).unwrap();
        assert_eq!(replayed.records, 0);
        journal.append(&mail(1));
        journal.append(&mail(2));
        journal.commit().unwrap();
        journal.append(&mail(3)); // never committed: a crash here loses only this
        drop(journal);
        let (_, replayed) = JournalFile::open(&path).unwrap();
        let got: Vec<u64> = replayed
            .state
            .mailbox("bob")
            .map(|m| m.queued_unix_ms)
            .collect();
        assert_eq!(got, [1, 2]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_appending_continues_after_it() {
        let path = scratch("torn");
        let (mut journal, _) = JournalFile::open(&path).unwrap();
        journal.append(&mail(1));
        journal.commit().unwrap();
        let whole = journal.len();
        drop(journal);
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[9, 0, 0, 0, 1])
            .unwrap();
        let (mut journal, replayed) = JournalFile::open(&path).unwrap();
        assert!(replayed.torn_tail);
        assert_eq!(fs::metadata(&path).unwrap().len(), whole);
        journal.append(&mail(2));
        journal.commit().unwrap();
        drop(journal);
        let (_, replayed) = JournalFile::open(&path).unwrap();
        assert_eq!((replayed.records, replayed.torn_tail), (2, false));
    }

    #[test]
    fn corruption_in_the_middle_refuses_to_open() {
        let path = scratch("corrupt");
        let (mut journal, _) = JournalFile::open(&path).unwrap();
        journal.append(&mail(1));
        journal.append(&mail(2));
        journal.commit().unwrap();
        drop(journal);
        let mut bytes = fs::read(&path).unwrap();
        bytes[10] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let err = JournalFile::open(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn compaction_keeps_the_state_and_shrinks_the_file() {
        let path = scratch("compact");
        let (mut journal, _) = JournalFile::open(&path).unwrap();
        for n in 0..100 {
            journal.append(&mail(n));
        }
        journal.append(&Record::MailTaken {
            user: "bob".into(),
            count: 99,
        });
        journal.commit().unwrap();
        let before = journal.len();
        let (_, replayed) = JournalFile::open(&path).unwrap();
        journal.compact(replayed.state.records()).unwrap();
        assert!(journal.len() < before / 10, "{} vs {before}", journal.len());
        journal.append(&mail(100));
        journal.commit().unwrap();
        drop(journal);
        let (_, replayed) = JournalFile::open(&path).unwrap();
        let got: Vec<u64> = replayed
            .state
            .mailbox("bob")
            .map(|m| m.queued_unix_ms)
            .collect();
        assert_eq!(got, [99, 100]);
    }
}
