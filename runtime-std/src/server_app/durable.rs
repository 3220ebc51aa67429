//! `--journal PATH`: offline mailboxes that survive a restart, on the core's journal
//! format (`sockeye_core::journal`, [`JournalFile`]).
//!
//! Each message the hub puts in a mailbox is appended as a `MailQueued` record and made
//! durable before the push is answered 202; a user's connect empties their mailbox
//! (delivered, or expired and dead-lettered), recorded as one `MailTaken`. At start the
//! file is replayed and every mailbox restored with `Hub::restore_mail`, keeping the
//! original queueing time so age limits still apply.
//!
//! Reliable sessions are journaled by the registry itself through the same file
//! ([`SessionLog`]): opened, each message queued for the client, the client's acks,
//! given-up messages, and each client message delivered. A client's command is
//! journaled as delivered in the same commit as what it made the hub do (the state's
//! commit gate, [`SharedFile`]), and acknowledged only after that commit
//! (`SessionConfig::confirm_deliveries`), so a crash keeps a command and its effects
//! or neither, and the client resends exactly those it lost. No DATA goes out before
//! its record is durable. At start sessions are restored with `SessionStore::restore`
//! and wait for their clients to resume.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sockeye_core::auth::UserId;
use sockeye_core::journal::{JournalState, Record, SessionSnapshot};
use sockeye_core::Instant;

use super::log::log_at;
use crate::reliable::SessionLog;
use crate::JournalFile;

/// The open journal and how many records each user's mailbox holds in it.
#[derive(Debug)]
pub(super) struct Journal {
    file: SharedFile,
    /// Messages the journal holds in each mailbox (queued, not yet taken).
    depth: HashMap<UserId, u32>,
}

/// The journal file, shared by the hub's state and the session registry, and the gate
/// that keeps one hub operation's records in one commit.
///
/// A commit writes every record appended so far, whoever appended it. A hub operation
/// (a command, a push) appends several records (what it queued for each recipient, and
/// for a client's command that it was delivered) and must reach the disk whole: a
/// crash after half of them would lose or repeat part of an acknowledged message. So
/// the state holds the [`CommitGate`] through each operation, and the registry's
/// commits (made outside its own lock) wait for it. Lock order: the state, then the
/// gate, then the registry, then the file.
#[derive(Clone, Debug)]
struct SharedFile {
    file: Arc<Mutex<JournalFile>>,
    gate: CommitGate,
}

/// Held by whoever is appending an operation's records; a commit from elsewhere waits.
pub(super) type CommitGate = Arc<Mutex<()>>;

impl SharedFile {
    fn lock(&self) -> MutexGuard<'_, JournalFile> {
        self.file.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SessionLog for SharedFile {
    fn append(&self, record: Record) {
        self.lock().append(&record);
    }

    fn commit(&self) -> bool {
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        match commit(&mut self.lock()) {
            Ok(()) => true,
            Err(e) => {
                log_at!(Error, "journal commit failed: {e}");
                false
            }
        }
    }
}

/// What a journal held at start.
pub(super) struct Opened {
    pub(super) journal: Journal,
    /// Mail to restore, oldest first per user.
    pub(super) mail: Vec<Restored>,
    /// Sessions to restore.
    pub(super) sessions: Vec<SessionSnapshot>,
}

/// A message restored from the journal, for `Hub::restore_mail`.
pub(super) struct Restored {
    pub(super) user: UserId,
    pub(super) from: Option<UserId>,
    pub(super) queued_at: Instant,
    pub(super) payload: Bytes,
}

impl Journal {
    /// Opens (or creates) the journal at `path` and returns it with what to restore; it
    /// compacts itself while running once past `compact_bytes` (and 4× its last
    /// compaction).
    pub(super) fn open(path: &Path, compact_bytes: u64, now: Instant) -> io::Result<Opened> {
        let (mut file, replayed) = JournalFile::open(path)?;
        if file.torn_bytes() > 0 {
            log_at!(
                Warn,
                "journal {}: cut off an uncommitted last batch ({} bytes at byte {}), left \
                 by a crash before its commit; nothing acknowledged was in it",
                path.display(),
                file.torn_bytes(),
                file.len()
            );
        }
        file.set_compaction(compact_bytes, JournalFile::DEFAULT_COMPACT_GROWTH);
        let state: JournalState = replayed.state;
        // Start from the shortest file that says the same; from here the commits keep
        // it within a constant times the live state. Only an optimisation: a full disk
        // must not stop the server from starting on the journal it has.
        if let Err(e) = file.compact(state.records()) {
            log_at!(
                Warn,
                "journal {}: not compacted at start ({e}); serving from it as it is",
                path.display()
            );
        }
        let mut depth = HashMap::new();
        let mut restored = Vec::new();
        let now_ms = unix_ms();
        for (user, mail) in state.mailboxes() {
            depth.insert(UserId(user.to_string()), mail.len() as u32);
            for m in mail {
                let age = Duration::from_millis(now_ms.saturating_sub(m.queued_unix_ms));
                restored.push(Restored {
                    user: UserId(user.to_string()),
                    from: m.from.clone().map(UserId),
                    queued_at: Instant::from_nanos(
                        now.as_nanos().saturating_sub(age.as_nanos() as u64),
                    ),
                    payload: m.payload.clone(),
                });
            }
        }
        let sessions = state.sessions().cloned().collect();
        Ok(Opened {
            journal: Journal {
                file: SharedFile {
                    file: Arc::new(Mutex::new(file)),
                    gate: CommitGate::default(),
                },
                depth,
            },
            mail: restored,
            sessions,
        })
    }

    /// The gate the state holds through each operation (see [`SharedFile`]).
    pub(super) fn gate(&self) -> CommitGate {
        Arc::clone(&self.file.gate)
    }

    /// The handle the session registry journals through.
    pub(super) fn session_log(&self) -> Arc<dyn SessionLog> {
        Arc::new(self.file.clone())
    }

    /// A message was put in `user`'s mailbox.
    pub(super) fn mail_queued(&mut self, user: &UserId, from: Option<&UserId>, payload: &Bytes) {
        self.file.append(Record::MailQueued {
            user: user.as_str().into(),
            from: from.map(|f| f.as_str().into()),
            queued_unix_ms: unix_ms(),
            payload: payload.clone(),
        });
        *self.depth.entry(user.clone()).or_insert(0) += 1;
    }

    /// `user` connected: their mailbox is empty now.
    pub(super) fn mailbox_emptied(&mut self, user: &UserId) {
        if let Some(count) = self.depth.remove(user).filter(|&c| c > 0) {
            self.file.append(Record::MailTaken {
                user: user.as_str().into(),
                count,
            });
        }
    }

    /// Makes what was appended durable (before anything that depends on it is answered).
    pub(super) fn commit(&mut self) -> io::Result<()> {
        commit(&mut self.file.lock())
    }
}

/// Commits, and logs what a compaction the commit ran did: the commit's own result is
/// only whether the records are durable.
fn commit(file: &mut JournalFile) -> io::Result<()> {
    let compactions = file.compactions();
    file.commit()?;
    if let Some(e) = file.take_compaction_error() {
        log_at!(
            Warn,
            "journal compaction failed, the journal keeps growing until a retry: {e}"
        );
    } else if file.compactions() > compactions {
        log_at!(Debug, "journal compacted to {} bytes", file.len());
    }
    Ok(())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
