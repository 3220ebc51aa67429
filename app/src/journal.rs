//! The journal file on its own thread: the server layer's records are appended and
//! synced there, so a commit's `fsync` never stalls the driver, and its outcome comes
//! back as an input.

use std::io;
use std::path::Path;
use std::sync::mpsc::{Receiver, Sender};
use std::thread;

use sockeye_core::journal::JournalState;

use super::THREAD_STACK_BYTES;
use crate::journal_file::JournalFile;

/// Opens the journal at `path` (compacting it to its live state) and returns what to
/// restore with the file.
pub(super) fn open(path: &Path, compact_bytes: u64) -> io::Result<(JournalFile, JournalState)> {
    let (mut file, replayed) = JournalFile::open(path)?;
    if file.torn_bytes() > 0 {
        log::warn!(
            "journal {}: cut off an uncommitted last batch ({} bytes at byte {}), left by a \
             crash before its commit; nothing acknowledged was in it",
            path.display(),
            file.torn_bytes(),
            file.len()
        );
    }
    file.set_compaction(compact_bytes, JournalFile::DEFAULT_COMPACT_GROWTH);
    // Start from the shortest file that says the same. Only an optimisation: a full disk
    // must not stop the server from starting on the journal it has.
    if let Err(e) = file.compact(replayed.state.records()) {
        log::warn!(
            "journal {}: not compacted at start ({e}); serving from it as it is",
            path.display()
        );
    }
    Ok((file, replayed.state))
}

/// Starts the thread that commits: each batch of encoded records it receives is
/// appended, synced, and its outcome handed to `report` (which answers whether the
/// driver is still there to hear it).
pub(super) fn spawn(
    mut file: JournalFile,
    report: impl Fn(Result<(), String>) -> bool + Send + 'static,
) -> io::Result<Sender<Vec<u8>>> {
    let (batches, queue) = std::sync::mpsc::channel::<Vec<u8>>();
    thread::Builder::new()
        .name("sockeye-journal".into())
        .stack_size(THREAD_STACK_BYTES)
        .spawn(move || commit_loop(&mut file, &queue, &report))?;
    Ok(batches)
}

fn commit_loop(
    file: &mut JournalFile,
    queue: &Receiver<Vec<u8>>,
    report: &dyn Fn(Result<(), String>) -> bool,
) {
    while let Ok(batch) = queue.recv() {
        file.append_encoded(&batch);
        let result = file.commit().map_err(|e| e.to_string());
        if let Some(e) = file.take_compaction_error() {
            log::warn!("journal: compaction failed ({e}); the journal stays as it is");
        }
        if !report(result) {
            return;
        }
    }
}
