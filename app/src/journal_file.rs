//! The server journal on disk: [`sockeye_core::journal`] records appended to one file,
//! made durable in groups, replayed and compacted — at start by the caller, and while
//! running by [`JournalFile::commit`] itself once the file has grown enough.
//!
//! Why the running journal compacts itself: every message pushed and then delivered
//! stays in an append-only file, so without it a long-running server's journal grows
//! without bound even when its live state is tiny. Compacting whenever the file reaches
//! `growth` times its size after the last compaction (and at least `min_bytes`) keeps it
//! within a constant times the live state, and costs amortized O(1) per appended byte:
//! a compaction of an `L`-byte file reads `L` bytes and writes at most `L`, and since the
//! previous compaction left at most `L / growth`, at least `L × (growth − 1) / growth` of
//! them were appended since (at most `2 × growth / (growth − 1)` bytes of I/O, 8/3 for
//! the default 4, per appended byte).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use sockeye_core::journal::{encode_record, replay, Record, Replayed};

/// An open journal file. Records are buffered by [`append`](Self::append) and written and
/// synced by [`commit`](Self::commit): call `commit` before acknowledging anything the
/// records describe (a `202`, an `ACK` envelope), once per batch of changes. A `commit`
/// that leaves the file past its threshold also compacts it
/// ([`set_compaction`](Self::set_compaction)).
#[derive(Debug)]
pub struct JournalFile {
    file: File,
    path: PathBuf,
    pending: Vec<u8>,
    len: u64,
    /// The file's size after the last compaction (0 after open, so an uncompacted file
    /// is compacted by the first commit past `compact_min_bytes`): the growth threshold's
    /// base.
    base_len: u64,
    compact_min_bytes: u64,
    compact_growth: u64,
    compactions: u64,
    /// A compaction renamed the new file into place but could not sync the directory:
    /// the rename, and so every record appended since, is not durable until it is.
    dir_unsynced: bool,
    compaction_error: Option<io::Error>,
    /// Bytes of a torn record cut off the end at open.
    torn_bytes: u64,
}

impl JournalFile {
    /// Default of the smallest size at which a commit compacts: below it a journal is
    /// cheap enough to keep whole, and compacting it would only spend fsyncs.
    pub const DEFAULT_COMPACT_MIN_BYTES: u64 = 1 << 20;

    /// Default growth over the size after the last compaction before the next one: the
    /// file stays below 4× the live state it was last compacted to (plus the new file
    /// while a compaction writes it), at under 3 bytes of compaction I/O per appended
    /// byte.
    pub const DEFAULT_COMPACT_GROWTH: u32 = 4;

    /// Opens (or creates, readable by its owner only: it holds payloads and session
    /// tokens) the journal at `path` and replays it. A batch that never got its commit
    /// marker (a crash mid-write or between an append and its commit: whole records
    /// without a marker after them, then perhaps a prefix of one) is cut off, and
    /// [`torn_bytes`](Self::torn_bytes) says how much, for the caller to log. Anything
    /// else that is not a whole, consistent record (a bad checksum, a damaged length
    /// with whole records behind it) is an `InvalidData` error naming the file and the
    /// byte offset, and nothing is cut: the server should not start and silently lose
    /// what follows. Opening needs no free space.
    /// A compaction's temporary file left by a crash before its rename is deleted: until
    /// the rename, the journal itself is the old file, whole.
    pub fn open(path: impl AsRef<Path>) -> io::Result<(JournalFile, Replayed)> {
        let path = path.as_ref().to_path_buf();
        // Only tidiness: a compaction truncates the file it writes anyway.
        let _ = fs::remove_file(temp_path(&path));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| with_path(&path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| with_path(&path, e))?;
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
        let torn_bytes = bytes.len() as u64 - len;
        if torn_bytes > 0 {
            file.set_len(len).map_err(|e| with_path(&path, e))?;
            file.sync_data().map_err(|e| with_path(&path, e))?;
        }
        file.seek(SeekFrom::Start(len))?;
        Ok((
            JournalFile {
                file,
                path,
                pending: Vec::new(),
                len,
                base_len: 0,
                compact_min_bytes: Self::DEFAULT_COMPACT_MIN_BYTES,
                compact_growth: Self::DEFAULT_COMPACT_GROWTH.into(),
                compactions: 0,
                dir_unsynced: false,
                compaction_error: None,
                torn_bytes,
            },
            replayed,
        ))
    }

    /// Sets when [`commit`](Self::commit) compacts: once the file holds at least
    /// `min_bytes` and at least `growth` times its size after the last compaction.
    /// `growth` below 2 is taken as 2 (at 1, a journal of nothing but live state would be
    /// rewritten at every commit); `u64::MAX` bytes turns running compaction off.
    /// Defaults: [`DEFAULT_COMPACT_MIN_BYTES`](Self::DEFAULT_COMPACT_MIN_BYTES) and
    /// [`DEFAULT_COMPACT_GROWTH`](Self::DEFAULT_COMPACT_GROWTH).
    pub fn set_compaction(&mut self, min_bytes: u64, growth: u32) {
        self.compact_min_bytes = min_bytes;
        self.compact_growth = u64::from(growth.max(2));
    }

    /// Buffers a record; nothing is durable before [`commit`](Self::commit).
    pub fn append(&mut self, record: &Record) {
        encode_record(record, &mut self.pending);
    }

    /// Buffers records already encoded ([`encode_record`] each, one after another), as the
    /// server layer emits them; nothing is durable before [`commit`](Self::commit).
    pub fn append_encoded(&mut self, records: &[u8]) {
        self.pending.extend_from_slice(records);
    }

    /// Whether records wait for a commit.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes the buffered records and waits until they are on disk; then, if the file
    /// has passed its threshold, compacts it to the state its records describe.
    ///
    /// `Ok` means exactly that the records are durable. A failed compaction does not
    /// make it an error, because the records are durable all the same: a caller told
    /// otherwise would refuse (or retry, duplicating) a change that is in fact recorded.
    /// The old file stays the journal, whole, the next attempt waits until the file has
    /// grown by the growth factor again (so a persistent failure does not cost a
    /// whole-file read per commit), and the error waits in
    /// [`take_compaction_error`](Self::take_compaction_error) for the caller to log.
    ///
    /// A compaction reads the whole file while the caller waits (and, in the server,
    /// holds the journal's lock): with the growth threshold that is amortized O(1) per
    /// appended byte, and the file is at most `growth` times the live state or the
    /// minimum size, a few MiB with the defaults.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        // The marker makes the buffered records one batch: a crash that leaves only part
        // of this write on disk replays as if none of it was written.
        let unmarked = self.pending.len();
        encode_record(&Record::Commit, &mut self.pending);
        if let Err(e) = self
            .file
            .write_all(&self.pending)
            .and_then(|()| self.file.sync_data())
        {
            self.pending.truncate(unmarked);
            // Part of the batch may be in the file: cut it off so a retry, or the next
            // batch, follows the last whole record instead of the fragment (which would
            // read as corruption in the middle and stop the next start).
            let _ = self.file.set_len(self.len);
            let _ = self.file.seek(SeekFrom::Start(self.len));
            return Err(e);
        }
        self.len += self.pending.len() as u64;
        self.pending.clear();
        if self.dir_unsynced {
            // The records are in the new file, which a crash could still un-rename.
            sync_parent(&self.path)?;
            self.dir_unsynced = false;
        }
        if self.len >= self.compaction_threshold() {
            if let Err(e) = self.compact_committed() {
                self.base_len = self.len;
                self.compaction_error = Some(e);
            }
        }
        Ok(())
    }

    /// The size at which a commit compacts.
    fn compaction_threshold(&self) -> u64 {
        self.compact_min_bytes
            .max(self.base_len.saturating_mul(self.compact_growth))
    }

    /// Rewrites the file as its own committed records replay: what a restart would do.
    fn compact_committed(&mut self) -> io::Result<()> {
        let len = usize::try_from(self.len).map_err(io::Error::other)?;
        let mut bytes = vec![0; len];
        // Positioned: the append cursor stays at the end whatever happens here.
        self.file.read_exact_at(&mut bytes, 0)?;
        let replayed = replay(&bytes);
        if let Some(error) = replayed.error {
            // This process appended something its own replay refuses (a bug): keep every
            // byte for the operator rather than compact the tail away.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: not compacted: {error} at byte {}",
                    self.path.display(),
                    replayed.valid_len
                ),
            ));
        }
        drop(bytes); // the state owns copies of the payloads it keeps
        self.rewrite(replayed.state.records())
    }

    /// A compaction's failure since the last call, if any (see [`commit`](Self::commit)).
    pub fn take_compaction_error(&mut self) -> Option<io::Error> {
        self.compaction_error.take()
    }

    /// Compactions done since open (by [`commit`](Self::commit) or
    /// [`compact`](Self::compact)).
    pub fn compactions(&self) -> u64 {
        self.compactions
    }

    /// Bytes of an uncommitted last batch that [`open`](Self::open) cut off (0 if none).
    pub fn torn_bytes(&self) -> u64 {
        self.torn_bytes
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
    /// to a temporary file (the journal's name plus `.compacting`), synced, then renamed
    /// over the journal, so a crash leaves either the old or the new file whole. Pending
    /// records are committed first.
    pub fn compact(&mut self, records: impl IntoIterator<Item = Record>) -> io::Result<()> {
        self.commit()?;
        self.rewrite(records)
    }

    fn rewrite(&mut self, records: impl IntoIterator<Item = Record>) -> io::Result<()> {
        let mut bytes = Vec::new();
        let mut marked = false;
        for record in records {
            marked = record == Record::Commit;
            encode_record(&record, &mut bytes);
        }
        if !marked {
            encode_record(&Record::Commit, &mut bytes);
        }
        let tmp = temp_path(&self.path);
        let written = (|| -> io::Result<File> {
            let mut out = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            out.write_all(&bytes)?;
            out.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            Ok(out)
        })();
        let file = written.inspect_err(|_| {
            let _ = fs::remove_file(&tmp); // do not leave a second copy filling the disk
        })?;
        // The journal is the new file from the rename on: switch to it before anything
        // else can fail, or later records would go to the old, unlinked one.
        self.file = file; // its cursor is at the end, after what was written
        self.len = bytes.len() as u64;
        self.base_len = self.len;
        self.compactions += 1;
        self.dir_unsynced = true;
        sync_parent(&self.path)?;
        self.dir_unsynced = false;
        Ok(())
    }
}

/// `e`, saying which file it is about.
fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Where a compaction writes before its rename: `journal` → `journal.compacting`. The
/// name is appended (not put in place of an extension) so journals that differ only in
/// their extension do not share it.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".compacting");
    path.with_file_name(name)
}

/// Makes a rename in `path`'s directory durable.
fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sockeye_core::journal::{JournalState, SessionSnapshot};
    use sockeye_core::session::{Seq, SessionId, SessionToken};

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
    fn a_flipped_bit_in_a_middle_length_refuses_to_open_and_cuts_nothing() {
        let path = scratch("length");
        let (mut journal, _) = JournalFile::open(&path).unwrap();
        for n in 1..=3 {
            journal.append(&mail(n));
            journal.commit().unwrap();
        }
        drop(journal);
        let mut bytes = fs::read(&path).unwrap();
        let first = {
            let mut one = Vec::new();
            encode_record(&mail(1), &mut one);
            encode_record(&Record::Commit, &mut one);
            one.len()
        };
        bytes[first + 2] ^= 0x01; // the second record's length grows by 64 KiB
        fs::write(&path, &bytes).unwrap();
        let err = JournalFile::open(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let text = err.to_string();
        assert!(text.contains(&format!("at byte {first}")), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert_eq!(fs::read(&path).unwrap(), bytes, "nothing may be cut");
    }

    #[test]
    fn a_torn_tail_is_cut_and_counted() {
        let path = scratch("torn-count");
        let (mut journal, _) = JournalFile::open(&path).unwrap();
        journal.append(&mail(1));
        journal.commit().unwrap();
        journal.append(&mail(2));
        journal.commit().unwrap();
        drop(journal);
        let bytes = fs::read(&path).unwrap();
        // The cut tears the second batch's commit marker: that batch is cut whole.
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let (journal, replayed) = JournalFile::open(&path).unwrap();
        assert_eq!((replayed.records, replayed.torn_tail), (1, true));
        let mut one = Vec::new();
        encode_record(&mail(1), &mut one);
        encode_record(&Record::Commit, &mut one);
        assert_eq!(journal.torn_bytes(), (bytes.len() - 3 - one.len()) as u64);
        assert_eq!(journal.len(), one.len() as u64);
    }

    #[test]
    fn the_journal_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let path = scratch("mode");
        let (mut journal, _) = JournalFile::open(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        journal.append(&mail(1));
        journal.compact([mail(1)]).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn an_open_error_names_the_file() {
        let path = scratch("dir");
        fs::create_dir_all(&path).unwrap();
        let err = JournalFile::open(&path).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
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

    /// A deterministic mix of every kind of record, each consistent with `reference`
    /// (which it updates): sessions open, get messages, acks, voids, client deliveries
    /// and close; mailboxes fill and empty. Most of what is appended dies soon after, as
    /// in a server whose clients keep up.
    struct Traffic {
        reference: JournalState,
        rng: u64,
        next_session: u8,
    }

    impl Traffic {
        fn new() -> Self {
            Traffic {
                reference: JournalState::new(),
                rng: 0x9e37_79b9_7f4a_7c15,
                next_session: 0,
            }
        }

        fn roll(&mut self, n: u64) -> u64 {
            // xorshift64: reproducible without a dependency.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            self.rng % n
        }

        fn next(&mut self) -> Record {
            let sessions: Vec<SessionSnapshot> = self.reference.sessions().cloned().collect();
            let user = ["ann", "bob", "cy"][self.roll(3) as usize].to_string();
            let record = match (self.roll(10), sessions.get(self.roll(4) as usize)) {
                (0, _) if sessions.len() < 3 => {
                    self.next_session = self.next_session.wrapping_add(1);
                    Record::SessionOpened {
                        id: SessionId([self.next_session; 16]),
                        token: SessionToken([7; 16]),
                        user,
                        acked: Seq(0),
                        client_delivered: Seq(0),
                    }
                }
                (1 | 2, Some(s)) => Record::ServerSent {
                    id: s.id,
                    seq: Seq(s.acked.0 + s.unacked.len() as u64 + 1),
                    is_text: true,
                    payload: Bytes::from(vec![b'x'; 20]),
                },
                (3 | 4, Some(s)) => Record::ClientAcked {
                    id: s.id,
                    seq: Seq(s.acked.0 + s.unacked.len() as u64),
                },
                (5, Some(s)) if !s.unacked.is_empty() => Record::ServerVoided {
                    id: s.id,
                    seq: Seq(s.acked.0 + 1 + self.roll(s.unacked.len() as u64)),
                },
                (6, Some(s)) => Record::ClientDelivered {
                    id: s.id,
                    seq: Seq(s.client_delivered.0 + 1),
                },
                (7, Some(s)) if self.roll(4) == 0 => Record::SessionClosed { id: s.id },
                (8, _) => match self.reference.mailbox(&user).count() {
                    0 => mail_for(&user, self.rng),
                    waiting => Record::MailTaken {
                        user,
                        count: waiting as u32,
                    },
                },
                _ => mail_for(&user, self.rng),
            };
            self.reference
                .apply(&record)
                .expect("traffic stays consistent");
            record
        }
    }

    fn mail_for(user: &str, n: u64) -> Record {
        Record::MailQueued {
            user: user.into(),
            from: Some("svc".into()),
            queued_unix_ms: n,
            payload: Bytes::from(vec![b'm'; 24]),
        }
    }

    fn encoded_len(records: &[Record]) -> u64 {
        let mut bytes = Vec::new();
        for r in records {
            encode_record(r, &mut bytes);
        }
        bytes.len() as u64
    }

    #[test]
    fn a_running_journal_stays_bounded_and_replays_like_the_whole_log() {
        const MIN: u64 = 4096;
        const GROWTH: u32 = 4;
        let path = scratch("bounded");
        let (mut journal, _) = JournalFile::open(&path).unwrap();
        journal.set_compaction(MIN, GROWTH);
        let mut traffic = Traffic::new();
        let mut whole_log = Vec::new();
        let mut peak_live = 0;
        for step in 0..3000 {
            for _ in 0..1 + step % 3 {
                let record = traffic.next();
                encode_record(&record, &mut whole_log);
                journal.append(&record);
            }
            encode_record(&Record::Commit, &mut whole_log);
            journal.commit().unwrap();
            assert!(journal.take_compaction_error().is_none());
            // After a commit the file is under its threshold, max(MIN, GROWTH × its size
            // after the last compaction), or was just compacted to the live state; that
            // size was the live state then, so at most its peak so far.
            peak_live = peak_live.max(encoded_len(&traffic.reference.records()));
            let bound = MIN.max(u64::from(GROWTH) * peak_live);
            let on_disk = fs::read(&path).unwrap();
            assert_eq!(on_disk.len() as u64, journal.len(), "step {step}");
            assert!(
                journal.len() <= bound,
                "step {step}: {} > {bound}",
                journal.len()
            );
            // Every compaction kept exactly the state of every record ever committed.
            let replayed = replay(&on_disk);
            assert_eq!(replayed.error, None, "step {step}");
            assert_eq!(replayed.state, traffic.reference, "step {step}");
        }
        assert!(whole_log.len() as u64 > 20 * MIN, "{}", whole_log.len());
        assert!(journal.compactions() > 10, "{}", journal.compactions());
        drop(journal);
        let reference = replay(&whole_log);
        assert_eq!(reference.error, None);
        let (reopened, replayed) = JournalFile::open(&path).unwrap();
        assert!(!replayed.torn_tail);
        assert_eq!(replayed.state, reference.state);
        assert!(
            replayed.state.sessions().count() > 0,
            "the test keeps sessions live"
        );
        assert!(replayed.state.mailboxes().count() > 0, "and some mail");
        assert!(reopened.len() < MIN);
    }

    #[test]
    fn a_journal_of_live_state_is_not_rewritten_at_every_commit() {
        let path = scratch("live");
        let (mut journal, _) = JournalFile::open(&path).unwrap();
        journal.set_compaction(1024, 4);
        for n in 0..4000 {
            journal.append(&mail(n)); // nothing ever leaves: all of it stays live
            journal.commit().unwrap();
        }
        // Compactions at ~1 KiB, then each time the file grew to 4× its compacted size.
        // A compaction keeps every mail (23 bytes) but only one of the commit markers
        // (9 bytes each), so a compacted file is ~0.72 of the log: 0.7, 2.1, 6.2, 17.8 and
        // 51 KiB after compactions at 1, 3, 8.6, 25 and 71 KiB; the next is at ~204 KiB.
        assert!(journal.len() > 64 * 1024 && journal.len() < 204 * 1024);
        assert_eq!(journal.compactions(), 5);
        drop(journal);
        let (_, replayed) = JournalFile::open(&path).unwrap();
        assert!(replayed
            .state
            .mailbox("bob")
            .map(|m| m.queued_unix_ms)
            .eq(0..4000));
    }

    #[test]
    fn a_crash_before_the_rename_leaves_the_old_journal_whole() {
        let path = scratch("crash");
        let tmp = temp_path(&path);
        let (mut journal, _) = JournalFile::open(&path).unwrap();
        for n in 0..10 {
            journal.append(&mail(n));
        }
        journal.commit().unwrap();
        drop(journal);
        // The crash: the new file was (partly) written, never renamed.
        fs::write(&tmp, [1, 2, 3, 4, 5, 6, 7]).unwrap();
        let (mut journal, replayed) = JournalFile::open(&path).unwrap();
        assert!(replayed
            .state
            .mailbox("bob")
            .map(|m| m.queued_unix_ms)
            .eq(0..10));
        assert!(!tmp.exists(), "the leftover is removed at open");
        // A later compaction works as usual.
        journal.append(&Record::MailTaken {
            user: "bob".into(),
            count: 9,
        });
        journal.commit().unwrap();
        journal
            .compact(replay(&fs::read(&path).unwrap()).state.records())
            .unwrap();
        drop(journal);
        let (_, replayed) = JournalFile::open(&path).unwrap();
        assert!(replayed
            .state
            .mailbox("bob")
            .map(|m| m.queued_unix_ms)
            .eq([9]));
    }

    #[test]
    fn a_failed_compaction_keeps_the_journal_and_commits_and_is_retried_later() {
        let path = scratch("failing");
        let tmp = temp_path(&path);
        let (mut journal, _) = JournalFile::open(&path).unwrap();
        journal.set_compaction(1024, 4);
        fs::create_dir(&tmp).unwrap(); // the temporary file cannot be created
        let mut n = 0;
        let mut cycle = |journal: &mut JournalFile| {
            journal.append(&mail(n));
            journal.append(&Record::MailTaken {
                user: "bob".into(),
                count: 1,
            });
            n += 1;
            journal.commit()
        };
        while journal.len() < 1024 {
            cycle(&mut journal).unwrap();
        }
        assert!(journal.take_compaction_error().is_some());
        assert_eq!(journal.compactions(), 0);
        let failed_at = journal.len();
        // Not retried at every commit: only once the file has grown 4× again.
        let mut retries = 0;
        while journal.len() < 4 * failed_at {
            cycle(&mut journal).unwrap();
            if journal.take_compaction_error().is_some() {
                assert!(
                    journal.len() >= 4 * failed_at,
                    "retried at {}",
                    journal.len()
                );
                retries += 1;
            }
        }
        assert_eq!(retries, 1);
        fs::remove_dir(&tmp).unwrap();
        while journal.compactions() == 0 {
            cycle(&mut journal).unwrap();
        }
        assert!(journal.take_compaction_error().is_none());
        let mut marker = Vec::new();
        encode_record(&Record::Commit, &mut marker);
        assert_eq!(
            journal.len(),
            marker.len() as u64,
            "every mail was taken: only a commit marker is left"
        );
        journal.append(&mail(1000));
        journal.commit().unwrap();
        drop(journal);
        let (_, replayed) = JournalFile::open(&path).unwrap();
        assert!(replayed
            .state
            .mailbox("bob")
            .map(|m| m.queued_unix_ms)
            .eq([1000]));
    }
}
