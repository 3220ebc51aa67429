//! The journal's disk as the runtime's file makes it: appends stay in memory until a
//! commit writes them with a commit marker and syncs; a crash keeps what was synced and
//! any prefix of a write in flight.

use sockeye_core::journal::{encode_record, Record};
use sockeye_core::SeededEntropy;

use super::below;

/// The simulated journal file.
#[derive(Debug, Default)]
pub(crate) struct Disk {
    /// Synced bytes: what every crash keeps.
    durable: Vec<u8>,
    /// Appended, not yet part of a commit.
    pending: Vec<u8>,
    /// The outstanding commit's write: its records and their marker.
    writing: Option<Vec<u8>>,
    /// Commits asked for, finished and failed.
    pub(crate) commits: (u64, u64, u64),
}

impl Disk {
    /// A disk whose file holds `bytes` (cut to what replayed).
    pub(crate) fn from_file(bytes: Vec<u8>) -> Disk {
        Disk {
            durable: bytes,
            ..Disk::default()
        }
    }

    pub(crate) fn append(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// [`crate::Action::Commit`]: the write of everything appended so far begins.
    pub(crate) fn begin_commit(&mut self) -> Result<(), String> {
        if self.writing.is_some() {
            return Err("a second commit was asked for while one is outstanding".into());
        }
        let mut write = std::mem::take(&mut self.pending);
        encode_record(&Record::Commit, &mut write);
        self.writing = Some(write);
        self.commits.0 += 1;
        Ok(())
    }

    pub(crate) fn is_committing(&self) -> bool {
        self.writing.is_some()
    }

    /// The outstanding commit ends: synced, or failed (its records stay appended for the
    /// next commit, as the runtime's file keeps them).
    pub(crate) fn finish_commit(&mut self, ok: bool) {
        let Some(mut write) = self.writing.take() else {
            return;
        };
        if ok {
            self.commits.1 += 1;
            self.durable.extend_from_slice(&write);
        } else {
            self.commits.2 += 1;
            write.truncate(write.len() - marker_len());
            write.extend_from_slice(&self.pending);
            self.pending = write;
        }
    }

    /// The file a crash leaves: the synced bytes and any prefix of a write in flight.
    pub(crate) fn crash(&self, rng: &mut SeededEntropy) -> Vec<u8> {
        let mut file = self.durable.clone();
        if let Some(write) = &self.writing {
            let kept = below(rng, write.len() as u64 + 1) as usize;
            file.extend_from_slice(&write[..kept]);
        }
        file
    }
}

fn marker_len() -> usize {
    let mut marker = Vec::new();
    encode_record(&Record::Commit, &mut marker);
    marker.len()
}
