//! Durability as outputs: journal records go out as bytes to append, a commit is asked
//! for, and whatever depends on records (a push's 202, a client command's ACK, a DATA
//! envelope) waits for the commit that covers them.
//!
//! Group commit falls out of the bookkeeping: records appended while a commit is in
//! flight are covered by the next one, and one commit releases every answer waiting for
//! it. A commit is numbered by the order it was asked for; a record appended now is
//! durable once commit [`ticket`](Durable::ticket) has succeeded.

use std::collections::HashMap;

use bytes::Bytes;
use sockeye_core::auth::UserId;
use sockeye_core::journal::{encode_record, Record};

/// The layer's side of the journal.
#[derive(Debug, Default)]
pub(crate) struct Durable {
    enabled: bool,
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
    pub(crate) fn new(enabled: bool) -> Self {
        Durable {
            enabled,
            ..Durable::default()
        }
    }

    /// Whether records are kept at all (`--journal`).
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Appends a record (not yet durable); nothing without a journal.
    pub(crate) fn append(&mut self, record: &Record) {
        if self.enabled {
            encode_record(record, &mut self.unsent);
            self.dirty = true;
        }
    }

    /// The commit that makes everything appended so far durable. Without a journal, 0:
    /// always done.
    pub(crate) fn ticket(&self) -> u64 {
        if self.enabled && (self.dirty || !self.unsent.is_empty()) {
            self.started + 1
        } else if self.enabled {
            // Nothing new: whatever is in flight covers what was appended.
            self.started
        } else {
            0
        }
    }

    /// Records were appended that no commit was asked for yet: what the current input
    /// does depends on them.
    pub(crate) fn is_dirty(&self) -> bool {
        self.enabled && self.dirty
    }

    /// The number the next commit asked for will have.
    pub(crate) fn next_ticket(&self) -> u64 {
        self.started + 1
    }

    /// Whether commit `ticket` has finished (the runtime reported it, ok or not).
    pub(crate) fn is_finished(&self, ticket: u64) -> bool {
        ticket <= self.finished
    }

    /// The bytes to append and whether to ask for a commit now: only when none is in
    /// flight (the next one then covers everything appended meanwhile).
    pub(crate) fn take_commit(&mut self) -> Option<Bytes> {
        if !self.dirty || self.started > self.finished {
            return None;
        }
        self.dirty = false;
        self.started += 1;
        Some(Bytes::from(std::mem::take(&mut self.unsent)))
    }

    /// After a failed commit: ask again (its records are still pending in the file).
    pub(crate) fn force_dirty(&mut self) {
        if self.enabled {
            self.dirty = true;
        }
    }

    /// A commit is in flight.
    pub(crate) fn in_flight(&self) -> bool {
        self.started > self.finished
    }

    /// The runtime finished the commit in flight; returns its number.
    pub(crate) fn finish(&mut self) -> Option<u64> {
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
        if !self.enabled {
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
        if self.enabled && count > 0 {
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
        let mut d = Durable::new(true);
        assert_eq!(d.ticket(), 0);
        mail(&mut d);
        let first = d.ticket();
        assert_eq!(first, 1);
        assert!(d.take_commit().is_some());
        // Two more operations while commit 1 is in flight: both wait for commit 2.
        mail(&mut d);
        assert_eq!(d.ticket(), 2);
        mail(&mut d);
        assert_eq!(d.ticket(), 2);
        assert!(d.take_commit().is_none(), "one commit in flight at a time");
        assert_eq!(d.finish(), Some(1));
        assert!(d.is_finished(first) && !d.is_finished(2));
        assert!(!d.take_commit().unwrap().is_empty());
        assert_eq!(d.finish(), Some(2));
        assert!(d.is_settled());
    }

    #[test]
    fn without_a_journal_nothing_waits() {
        let mut d = Durable::new(false);
        mail(&mut d);
        assert_eq!(d.ticket(), 0);
        assert!(d.is_finished(0));
        assert!(d.take_commit().is_none());
    }
}
