//! The bookkeeping of reliable sessions kept in Redis (with a cluster backend): which
//! journal records of which session go into the next commit, as what.
//!
//! Each session is a Redis list of batches, `<prefix>sess:<id>:<token>` (one element per
//! commit: encoded [`Record`]s ending with [`Record::Commit`], so concatenating the list
//! and [`replay`](sockeye_core::journal::replay)ing it rebuilds the session), beside the
//! key `…:owner` that names the node holding it. The sink keeps a mirror of every session
//! this node holds (a [`JournalState`]; its payloads are the session's own `Bytes`, so it
//! costs little), from which it writes a session whole when it is new in Redis, after a
//! write whose outcome is unknown, and every [`MAX_ELEMENTS`] batches: the list stays
//! short, and a retried write never doubles a record.
//!
//! The sink decides nothing about when: the layer's group commit ([`Durable`]) asks it
//! for a [`SinkBatch`] when a commit starts, and says how it ended.
//!
//! [`Durable`]: crate::durable::Durable

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use sockeye_core::journal::{encode_record, JournalState, Record, SessionSnapshot};
use sockeye_core::session::SessionToken;
use sockeye_core::{Instant, Seq, SessionId};

/// Batches a session's list holds before it is written anew as one.
pub(crate) const MAX_ELEMENTS: usize = 32;

/// How one session is written by a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteKind {
    /// One more batch at the end of its list.
    Append,
    /// Its whole state, in place of the list.
    Rewrite,
    /// Nothing new: its keys are kept for another resume window.
    Touch,
    /// It ended: its keys go.
    Delete,
}

impl WriteKind {
    /// The script's name for it.
    pub(crate) fn code(self) -> &'static [u8] {
        match self {
            WriteKind::Append => b"a",
            WriteKind::Rewrite => b"r",
            WriteKind::Touch => b"t",
            WriteKind::Delete => b"d",
        }
    }
}

/// One session's part of a commit.
#[derive(Clone, Debug)]
pub(crate) struct SessionWrite {
    pub(crate) id: SessionId,
    pub(crate) token: SessionToken,
    /// The user it belongs to.
    pub(crate) user: String,
    pub(crate) kind: WriteKind,
    /// Encoded records ending with a commit marker (empty for a touch or delete).
    pub(crate) blob: Bytes,
}

/// A publication that waits for the commit of the records that caused it, and runs in
/// the same Redis script: a command's cross-node effect and its record are one step, so a
/// node that dies leaves both or neither.
#[derive(Clone, Debug)]
pub(crate) struct Deferred {
    /// The id its outcome is reported under (as `handle_published` or `handle_reply`).
    pub(crate) id: u64,
    /// The session whose delivery caused it: skipped if that session was taken over.
    pub(crate) cause: Option<SessionId>,
    pub(crate) op: DeferredOp,
}

/// What a [`Deferred`] does.
#[derive(Clone, Debug)]
pub(crate) enum DeferredOp {
    /// `PUBLISH channel payload`.
    Publish { channel: Bytes, payload: Bytes },
    /// `cluster_mail::PUBLISH_OR_STORE`'s arguments after its key count: channel, list,
    /// envelope, record, limit, age.
    Store([Bytes; 6]),
    /// Message `seq`, which its cause's command put into `session` (another session of
    /// this node), is void if Redis refuses the cause's records: the node that took the
    /// cause over acts on the command again. `blob` is the void record and a commit
    /// marker, appended to `session`'s list in the same script.
    Void {
        session: SessionId,
        seq: Seq,
        blob: Bytes,
    },
}

/// What became of a session another node took over before this one's commit.
#[derive(Debug, Default)]
pub(crate) struct Forgotten {
    /// Its records no commit carried.
    pub(crate) unwritten: Vec<Record>,
    /// The ids of the publications its commands caused that will not run.
    pub(crate) dropped: Vec<u64>,
    /// Messages its commands put into other sessions here, now to be void.
    pub(crate) voids: Vec<(SessionId, Seq)>,
}

/// What one commit writes to Redis.
#[derive(Clone, Debug, Default)]
pub(crate) struct SinkBatch {
    pub(crate) sessions: Vec<SessionWrite>,
    pub(crate) deferred: Vec<Deferred>,
}

/// The sessions this node holds in Redis.
#[derive(Debug, Default)]
pub(crate) struct SessionSink {
    mirror: JournalState,
    /// Records since the last commit began, per session (an entry without records: a
    /// touch).
    pending: BTreeMap<SessionId, Vec<Record>>,
    /// Sessions to write whole at the next commit.
    rewrite: BTreeSet<SessionId>,
    /// Sessions that ended since the last commit began, and their users.
    closed: BTreeMap<SessionId, (SessionToken, String)>,
    /// Batches in each session's list.
    elements: BTreeMap<SessionId, usize>,
    deferred: Vec<Deferred>,
    /// The sessions the commit in flight writes.
    in_flight: Vec<SessionId>,
    /// When each session's keys were last written, oldest first, so a session that
    /// writes nothing for long (an idle connection) is kept alive in Redis in time.
    written_at: BTreeMap<SessionId, Instant>,
    by_age: BTreeSet<(Instant, SessionId)>,
}

impl SessionSink {
    /// Whether `record` is a session's (mailbox records stay with the journal).
    pub(crate) fn takes(record: &Record) -> bool {
        !matches!(
            record,
            Record::MailQueued { .. } | Record::MailTaken { .. } | Record::Commit
        )
    }

    /// A record of a session this node holds, for the next commit.
    pub(crate) fn add(&mut self, record: &Record) {
        match record {
            Record::SessionOpened { id, .. } => {
                if self.mirror.apply(record).is_ok() {
                    self.rewrite.insert(*id);
                    self.pending.remove(id);
                    self.closed.remove(id);
                }
            }
            Record::SessionClosed { id } => {
                if let Some(s) = self.mirror.session(id) {
                    let closed = (s.token, s.user.clone());
                    let _ = self.mirror.apply(record);
                    self.pending.remove(id);
                    self.rewrite.remove(id);
                    self.elements.remove(id);
                    self.closed.insert(*id, closed);
                }
            }
            _ => {
                let Some(id) = session_of(record) else {
                    return;
                };
                // A record that does not follow (a session this node does not hold)
                // has no place in Redis either.
                if self.mirror.apply(record).is_ok() && !self.rewrite.contains(&id) {
                    self.pending.entry(id).or_default().push(record.clone());
                }
            }
        }
    }

    /// Keeps `id`'s keys another resume window at the next commit (its connection ended:
    /// the window starts now).
    pub(crate) fn touch(&mut self, id: SessionId) {
        if self.mirror.session(&id).is_some() {
            self.pending.entry(id).or_default();
        }
    }

    /// A publication for the next commit.
    pub(crate) fn defer(&mut self, deferred: Deferred) {
        self.deferred.push(deferred);
    }

    /// Publications of a commit that failed: they go first in the next one.
    pub(crate) fn requeue(&mut self, mut deferred: Vec<Deferred>) {
        deferred.append(&mut self.deferred);
        self.deferred = deferred;
    }

    /// Whether the next commit has anything to write.
    pub(crate) fn is_dirty(&self) -> bool {
        !self.pending.is_empty()
            || !self.rewrite.is_empty()
            || !self.closed.is_empty()
            || !self.deferred.is_empty()
    }

    /// What the commit that begins at `now` writes.
    pub(crate) fn take(&mut self, now: Instant) -> SinkBatch {
        let mut batch = SinkBatch::default();
        let mut ids: BTreeSet<SessionId> = std::mem::take(&mut self.rewrite);
        let pending = std::mem::take(&mut self.pending);
        ids.extend(pending.keys().copied());
        for id in ids {
            let Some((token, user)) = self.mirror.session(&id).map(|s| (s.token, s.user.clone()))
            else {
                continue;
            };
            let elements = self.elements.get(&id).copied().unwrap_or(0);
            let records = pending.get(&id);
            let rewrite = elements == 0 || elements >= MAX_ELEMENTS || records.is_none();
            let (kind, blob) = match records {
                Some(records) if records.is_empty() && !rewrite => (WriteKind::Touch, Bytes::new()),
                Some(records) if !rewrite => {
                    self.elements.insert(id, elements + 1);
                    (WriteKind::Append, encode(records))
                }
                _ => {
                    self.elements.insert(id, 1);
                    (
                        WriteKind::Rewrite,
                        encode(
                            &self
                                .mirror
                                .session(&id)
                                .map(SessionSnapshot::records)
                                .unwrap_or_default(),
                        ),
                    )
                }
            };
            batch.sessions.push(SessionWrite {
                id,
                token,
                user,
                kind,
                blob,
            });
        }
        for (id, (token, user)) in std::mem::take(&mut self.closed) {
            batch.sessions.push(SessionWrite {
                id,
                token,
                user,
                kind: WriteKind::Delete,
                blob: Bytes::new(),
            });
        }
        batch.deferred = std::mem::take(&mut self.deferred);
        self.in_flight = batch.sessions.iter().map(|w| w.id).collect();
        for w in &batch.sessions {
            if w.kind == WriteKind::Delete {
                self.unage(w.id);
            } else {
                self.age(w.id, now);
            }
        }
        batch
    }

    fn age(&mut self, id: SessionId, at: Instant) {
        self.unage(id);
        self.written_at.insert(id, at);
        self.by_age.insert((at, id));
    }

    fn unage(&mut self, id: SessionId) {
        if let Some(at) = self.written_at.remove(&id) {
            self.by_age.remove(&(at, id));
        }
    }

    /// Sessions whose keys were last written `age` or longer before `now`: touched, so
    /// Redis keeps them (their keys live one resume window after each write).
    pub(crate) fn refresh(&mut self, now: Instant, age: core::time::Duration) -> bool {
        let stale: Vec<SessionId> = self
            .by_age
            .iter()
            .take_while(|(at, _)| *at + age <= now)
            .map(|(_, id)| *id)
            .collect();
        for &id in &stale {
            // Counted as written now: not asked again until the touch is old too.
            self.age(id, now);
            self.touch(id);
        }
        !stale.is_empty()
    }

    /// The commit in flight failed, or may have (a timeout, a dropped connection): each
    /// session it wrote is written whole next time, so a write that did happen is not
    /// doubled.
    pub(crate) fn failed(&mut self) {
        for id in std::mem::take(&mut self.in_flight) {
            self.lost(id);
        }
    }

    /// The commit in flight is done.
    pub(crate) fn succeeded(&mut self) {
        self.in_flight.clear();
    }

    /// Redis no longer had `id`'s list (it expired): written whole next time.
    pub(crate) fn lost(&mut self, id: SessionId) {
        if self.mirror.session(&id).is_some() {
            self.elements.remove(&id);
            self.pending.remove(&id);
            self.rewrite.insert(id);
        }
    }

    /// Another node holds `id` now: this node writes nothing more of it, and runs none
    /// of the publications its commands caused that wait for a commit (the new owner
    /// acts on those commands: their deliveries were never recorded). Returns the records
    /// no commit has carried yet (what the new owner never saw) and the ids of the
    /// publications dropped.
    pub(crate) fn forget(&mut self, id: SessionId) -> Forgotten {
        let _ = self.mirror.apply(&Record::SessionClosed { id });
        let unwritten = self.pending.remove(&id).unwrap_or_default();
        let mut dropped = Vec::new();
        let mut voids = Vec::new();
        self.deferred.retain(|d| {
            let keep = d.cause != Some(id);
            if !keep {
                match d.op {
                    DeferredOp::Void { session, seq, .. } => voids.push((session, seq)),
                    _ => dropped.push(d.id),
                }
            }
            keep
        });
        self.rewrite.remove(&id);
        self.closed.remove(&id);
        self.elements.remove(&id);
        self.unage(id);
        Forgotten {
            unwritten,
            dropped,
            voids,
        }
    }

    /// A session this node took over from Redis, whose list holds `elements` batches.
    pub(crate) fn adopt(&mut self, snapshot: &SessionSnapshot, elements: usize) {
        let _ = self.forget(snapshot.id);
        for record in snapshot.records() {
            let _ = self.mirror.apply(&record);
        }
        self.elements.insert(snapshot.id, elements.max(1));
    }

    /// A session restored from this node's journal file: written whole at the next
    /// commit (Redis may not have it).
    pub(crate) fn seed(&mut self, snapshot: &SessionSnapshot) {
        self.adopt(snapshot, 0);
        self.elements.remove(&snapshot.id);
        self.rewrite.insert(snapshot.id);
    }
}

/// The session a record is about.
fn session_of(record: &Record) -> Option<SessionId> {
    match record {
        Record::SessionOpened { id, .. }
        | Record::ServerSent { id, .. }
        | Record::ClientAcked { id, .. }
        | Record::ServerVoided { id, .. }
        | Record::ClientDelivered { id, .. }
        | Record::SessionClosed { id }
        | Record::SessionJoined { id, .. }
        | Record::SessionLeft { id, .. } => Some(*id),
        _ => None,
    }
}

/// The messages for the client among `records`.
pub(crate) fn sent_payloads(records: &[Record]) -> impl Iterator<Item = &bytes::Bytes> {
    records.iter().filter_map(|r| match r {
        Record::ServerSent { payload, .. } => Some(payload),
        _ => None,
    })
}

/// The records of one batch of a session's list.
pub(crate) fn decode(blob: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(Some((record, used))) = sockeye_core::journal::decode_record(&blob[at..]) {
        out.push(record);
        at += used;
    }
    out
}

/// Records as one batch of a session's list.
fn encode(records: &[Record]) -> Bytes {
    let mut out = Vec::new();
    for record in records {
        encode_record(record, &mut out);
    }
    encode_record(&Record::Commit, &mut out);
    Bytes::from(out)
}
