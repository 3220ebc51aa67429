//! Durability as outputs: journal records go out as bytes to append, a commit is asked
//! for, and whatever depends on records (a push's 202, a client command's ACK, a DATA
//! envelope) waits for the commit that covers them.
//!
//! Group commit falls out of the bookkeeping: records appended while a commit is in
//! flight are covered by the next one, and one commit releases every answer waiting for
//! it. A commit is numbered by the order it was asked for; a record appended now is
//! durable once commit [`ticket`](Durable::ticket) has succeeded.
//!
//! A commit has up to two parts: the journal file (`--journal`) and, with a cluster
//! backend, the reliable sessions' records in Redis ([`SessionSink`]). It succeeds once
//! every part it has succeeded; one failed part fails it, and what waited is answered
//! as failed.

use std::collections::HashMap;

use bytes::Bytes;
use sockeye_core::auth::UserId;
use sockeye_core::journal::{encode_record, Record, SessionSnapshot};
use sockeye_core::SessionId;

use crate::session_sink::{SessionSink, SinkBatch};

/// What a commit that begins writes.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Bytes to append to the journal file, then commit (`None`: no journal).
    pub(crate) journal: Option<Bytes>,
    /// Sessions to write to Redis (`None`: no cluster backend).
    pub(crate) redis: Option<SinkBatch>,
}

/// The layer's side of the journal.
#[derive(Debug, Default)]
pub(crate) struct Durable {
    /// A journal file (`--journal`).
    journal: bool,
    /// Reliable sessions in Redis (a cluster backend).
    pub(crate) sink: Option<SessionSink>,
    /// Parts of the commit in flight not yet reported, and whether those reported
    /// succeeded.
    parts: u8,
    parts_ok: bool,
    /// Encoded records not yet handed to the runtime.
    unsent: Vec<u8>,
    /// Records were appended since the last commit was asked for.
    dirty: bool,
    /// Commits asked for, and commits the runtime reported done (ok or not).
    started: u64,
    finished: u64,
    /// Messages the journal holds in each mailbox (queued, not yet taken), so a connect
    /// records how many it took.
    depth: HashMap<UserId, u32>,
}

impl Durable {
    /// With a journal file (`journal`), with reliable sessions in Redis (`redis`), both
    /// or neither.
    pub(crate) fn new(journal: bool, redis: bool) -> Self {
        Durable {
            journal,
            sink: redis.then(SessionSink::default),
            ..Durable::default()
        }
    }

    /// Whether records are kept at all (`--journal`, or sessions in Redis).
    pub(crate) fn enabled(&self) -> bool {
        self.journal || self.sink.is_some()
    }

    /// Appends a record (not yet durable); nothing without a journal or sessions in
    /// Redis.
    pub(crate) fn append(&mut self, record: &Record) {
        if self.journal {
            encode_record(record, &mut self.unsent);
            self.dirty = true;
        }
        if let Some(sink) = &mut self.sink {
            if SessionSink::takes(record) {
                sink.add(record);
                self.dirty = true;
            }
        }
    }

    /// Whether Redis's part of the next commit has something to write: what the current
    /// input publishes may wait for it ([`SessionSink::defer`]).
    pub(crate) fn sink_dirty(&self) -> bool {
        self.dirty && self.sink.as_ref().is_some_and(SessionSink::is_dirty)
    }

    /// Sessions in Redis not written for `age`: their keys are kept another resume
    /// window by the next commit.
    pub(crate) fn refresh(&mut self, now: sockeye_core::Instant, age: core::time::Duration) {
        if self
            .sink
            .as_mut()
            .is_some_and(|sink| sink.refresh(now, age))
        {
            self.dirty = true;
        }
    }

    /// A session's connection ended: its keys in Redis are kept another resume window
    /// from now.
    pub(crate) fn touch(&mut self, id: SessionId) {
        if let Some(sink) = &mut self.sink {
            sink.touch(id);
            self.dirty = true;
        }
    }

    /// This node took session `snapshot` over from Redis, where its list holds
    /// `elements` batches: the journal file learns it whole, Redis has it.
    pub(crate) fn adopt(&mut self, snapshot: &SessionSnapshot, elements: usize) {
        if self.journal {
            for record in snapshot.records() {
                encode_record(&record, &mut self.unsent);
            }
            self.dirty = true;
        }
        if let Some(sink) = &mut self.sink {
            sink.adopt(snapshot, elements);
        }
    }

    /// Another node took session `id` over: this node's copy ends without a word (the
    /// journal file closes it, Redis keeps it for the new owner).
    /// Returns the session's records no commit to Redis carried yet, the ids of the
    /// publications its commands caused that will not run, and the messages they put
    /// into other sessions here.
    pub(crate) fn taken(&mut self, id: SessionId) -> crate::session_sink::Forgotten {
        if self.journal {
            encode_record(&Record::SessionClosed { id }, &mut self.unsent);
            self.dirty = true;
        }
        self.sink
            .as_mut()
            .map(|sink| sink.forget(id))
            .unwrap_or_default()
    }

    /// A session restored from the journal file at start: Redis gets it whole at the
    /// next commit.
    pub(crate) fn seed(&mut self, snapshot: &SessionSnapshot) {
        if let Some(sink) = &mut self.sink {
            sink.seed(snapshot);
            self.dirty = true;
        }
    }

    /// The commit that makes everything appended so far durable. Without a journal, 0:
    /// always done.
    pub(crate) fn ticket(&self) -> u64 {
        if self.enabled() && (self.dirty || !self.unsent.is_empty()) {
            self.started + 1
        } else if self.enabled() {
            // Nothing new: whatever is in flight covers what was appended.
            self.started
        } else {
            0
        }
    }

    /// Records were appended that no commit was asked for yet: what the current input
    /// does depends on them.
    pub(crate) fn is_dirty(&self) -> bool {
        self.enabled() && self.dirty
    }

    /// The number the next commit asked for will have.
    pub(crate) fn next_ticket(&self) -> u64 {
        self.started + 1
    }

    /// Whether commit `ticket` has finished (the runtime reported it, ok or not).
    pub(crate) fn is_finished(&self, ticket: u64) -> bool {
        ticket <= self.finished
    }

    /// What to write and whether to begin a commit now: only when none is in flight
    /// (the next one then covers everything appended meanwhile).
    pub(crate) fn take_commit(&mut self, now: sockeye_core::Instant) -> Option<Batch> {
        if !self.dirty || self.started > self.finished {
            return None;
        }
        self.dirty = false;
        self.started += 1;
        let journal = self
            .journal
            .then(|| Bytes::from(std::mem::take(&mut self.unsent)));
        let redis = self.sink.as_mut().map(|sink| sink.take(now));
        self.parts = u8::from(journal.is_some()) + u8::from(redis.is_some());
        self.parts_ok = true;
        Some(Batch { journal, redis })
    }

    /// After a failed commit: ask again (its records are still pending in the file, and
    /// the sessions it wrote to Redis are written whole).
    pub(crate) fn force_dirty(&mut self) {
        if self.enabled() {
            self.dirty = true;
        }
    }

    /// One part of the commit in flight reported: once every part has, the commit's
    /// number and whether it succeeded as a whole.
    pub(crate) fn part_done(&mut self, ok: bool) -> Option<(u64, bool)> {
        if !self.in_flight() {
            return None;
        }
        self.parts_ok &= ok;
        self.parts = self.parts.saturating_sub(1);
        if self.parts > 0 {
            return None;
        }
        let ok = self.parts_ok;
        if let Some(sink) = &mut self.sink {
            if ok {
                sink.succeeded();
            } else {
                sink.failed();
            }
        }
        self.finish().map(|done| (done, ok))
    }

    /// A commit is in flight.
    pub(crate) fn in_flight(&self) -> bool {
        self.started > self.finished
    }

    /// The runtime finished the commit in flight; returns its number.
    fn finish(&mut self) -> Option<u64> {
        if self.started > self.finished {
            self.finished += 1;
            Some(self.finished)
        } else {
            None
        }
    }

    /// Everything appended was asked to be committed and has been.
    pub(crate) fn is_settled(&self) -> bool {
        !self.dirty && !self.in_flight()
    }

    /// A message was put in `user`'s mailbox.
    pub(crate) fn mail_queued(
        &mut self,
        user: &UserId,
        from: Option<&UserId>,
        payload: &Bytes,
        unix_ms: u64,
    ) {
        if !self.journal {
            return;
        }
        self.append(&Record::MailQueued {
            user: user.as_str().into(),
            from: from.map(|f| f.as_str().into()),
            queued_unix_ms: unix_ms,
            payload: payload.clone(),
        });
        *self.depth.entry(user.clone()).or_insert(0) += 1;
    }

    /// A mailbox restored at start holds `count` messages.
    pub(crate) fn mail_restored(&mut self, user: &UserId, count: u32) {
        if self.journal && count > 0 {
            self.depth.insert(user.clone(), count);
        }
    }

    /// `user` connected: their mailbox is empty now (delivered, or dead-lettered).
    pub(crate) fn mailbox_emptied(&mut self, user: &UserId) {
        if let Some(count) = self.depth.remove(user).filter(|&c| c > 0) {
            self.append(&Record::MailTaken {
                user: user.as_str().into(),
                count,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(durable: &mut Durable) {
        durable.mail_queued(&UserId("kim".into()), None, &Bytes::from_static(b"1"), 0);
    }

    #[test]
    fn records_appended_during_a_commit_share_the_next_one() {
        let mut d = Durable::new(true, false);
        assert_eq!(d.ticket(), 0);
        mail(&mut d);
        let first = d.ticket();
        assert_eq!(first, 1);
        assert!(d.take_commit(sockeye_core::Instant::ZERO).is_some());
        // Two more operations while commit 1 is in flight: both wait for commit 2.
        mail(&mut d);
        assert_eq!(d.ticket(), 2);
        mail(&mut d);
        assert_eq!(d.ticket(), 2);
        assert!(
            d.take_commit(sockeye_core::Instant::ZERO).is_none(),
            "one commit in flight at a time"
        );
        assert_eq!(d.part_done(true), Some((1, true)));
        assert!(d.is_finished(first) && !d.is_finished(2));
        assert!(!d
            .take_commit(sockeye_core::Instant::ZERO)
            .unwrap()
            .journal
            .unwrap()
            .is_empty());
        assert_eq!(d.part_done(true), Some((2, true)));
        assert!(d.is_settled());
    }

    #[test]
    fn without_a_journal_nothing_waits() {
        let mut d = Durable::new(false, false);
        mail(&mut d);
        assert_eq!(d.ticket(), 0);
        assert!(d.is_finished(0));
        assert!(d.take_commit(sockeye_core::Instant::ZERO).is_none());
    }
}
