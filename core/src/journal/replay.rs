//! Replaying a journal into the state it describes, and writing that state back out as
//! a compact journal.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use bytes::Bytes;

use super::codec::{decode_record, JournalError};
use super::Record;
use crate::session::{Seq, SessionId, SessionToken};

/// A message to the client still held by a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentRecord {
    /// Its sequence number.
    pub seq: Seq,
    /// Whether it is text.
    pub is_text: bool,
    /// The message; `None` once given up (resent as a void sequence number).
    pub payload: Option<Bytes>,
}

/// What the journal knows of one live session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSnapshot {
    /// Its id.
    pub id: SessionId,
    /// The secret that resumes it.
    pub token: SessionToken,
    /// The user it belongs to.
    pub user: String,
    /// Every message to the client up to here is acknowledged.
    pub acked: Seq,
    /// The unacknowledged messages to the client: `acked + 1`, `acked + 2`, … in order.
    pub unacked: VecDeque<SentRecord>,
    /// The last client message the server delivered.
    pub client_delivered: Seq,
    /// The rooms it is in.
    pub rooms: BTreeSet<String>,
}

impl SessionSnapshot {
    fn next_seq(&self) -> u64 {
        self.acked.0 + self.unacked.len() as u64 + 1
    }
}

/// A message waiting in an offline mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailRecord {
    /// The sending user, if any.
    pub from: Option<String>,
    /// When it was queued, in milliseconds since the Unix epoch.
    pub queued_unix_ms: u64,
    /// The message.
    pub payload: Bytes,
}

/// The durable state a journal describes: live sessions and non-empty mailboxes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalState {
    sessions: BTreeMap<SessionId, SessionSnapshot>,
    mailboxes: BTreeMap<String, VecDeque<MailRecord>>,
}

impl JournalState {
    /// Nothing recorded.
    pub fn new() -> Self {
        JournalState::default()
    }

    /// Applies one record. A record that does not follow from the state (a message
    /// numbered out of order, an ack of something never sent, a session that does not
    /// exist) is refused with [`JournalError::Inconsistent`] and changes nothing.
    pub fn apply(&mut self, record: &Record) -> Result<(), JournalError> {
        use JournalError::Inconsistent;
        match record {
            Record::SessionOpened {
                id,
                token,
                user,
                acked,
                client_delivered,
            } => {
                if self.sessions.contains_key(id) {
                    return Err(Inconsistent("session opened twice"));
                }
                if acked.0 == u64::MAX {
                    return Err(Inconsistent("session numbering exhausted"));
                }
                self.sessions.insert(
                    *id,
                    SessionSnapshot {
                        id: *id,
                        token: *token,
                        user: user.clone(),
                        acked: *acked,
                        unacked: VecDeque::new(),
                        client_delivered: *client_delivered,
                        rooms: BTreeSet::new(),
                    },
                );
            }
            Record::ServerSent {
                id,
                seq,
                is_text,
                payload,
            } => {
                let s = self.session_mut(id)?;
                if seq.0 != s.next_seq() || seq.0 == u64::MAX {
                    return Err(Inconsistent("message numbered out of order"));
                }
                s.unacked.push_back(SentRecord {
                    seq: *seq,
                    is_text: *is_text,
                    payload: Some(payload.clone()),
                });
            }
            Record::ClientAcked { id, seq } => {
                let s = self.session_mut(id)?;
                if seq.0 < s.acked.0 || seq.0 >= s.next_seq() {
                    return Err(Inconsistent("ack outside the window"));
                }
                let settled = (seq.0 - s.acked.0) as usize;
                s.unacked.drain(..settled);
                s.acked = *seq;
            }
            Record::ServerVoided { id, seq } => {
                let s = self.session_mut(id)?;
                let Some(offset) = seq.0.checked_sub(s.acked.0 + 1) else {
                    return Err(Inconsistent("void of a settled message"));
                };
                let entry = usize::try_from(offset)
                    .ok()
                    .and_then(|i| s.unacked.get_mut(i))
                    .ok_or(Inconsistent("void of a message never sent"))?;
                entry.payload = None;
            }
            Record::ClientDelivered { id, seq } => {
                let s = self.session_mut(id)?;
                if *seq < s.client_delivered {
                    return Err(Inconsistent("client delivery went backwards"));
                }
                s.client_delivered = *seq;
            }
            Record::SessionJoined { id, room } => {
                self.session_mut(id)?.rooms.insert(room.clone());
            }
            Record::SessionLeft { id, room } => {
                self.session_mut(id)?.rooms.remove(room);
            }
            Record::SessionClosed { id } => {
                self.sessions
                    .remove(id)
                    .ok_or(Inconsistent("close of an unknown session"))?;
            }
            Record::MailQueued {
                user,
                from,
                queued_unix_ms,
                payload,
            } => {
                self.mailboxes
                    .entry(user.clone())
                    .or_default()
                    .push_back(MailRecord {
                        from: from.clone(),
                        queued_unix_ms: *queued_unix_ms,
                        payload: payload.clone(),
                    });
            }
            Record::MailTaken { user, count } => {
                let count = *count as usize;
                let mailbox = self
                    .mailboxes
                    .get_mut(user)
                    .filter(|m| m.len() >= count)
                    .ok_or(Inconsistent("more mail taken than queued"))?;
                mailbox.drain(..count);
                if mailbox.is_empty() {
                    self.mailboxes.remove(user);
                }
            }
            Record::Commit => {}
        }
        Ok(())
    }

    fn session_mut(&mut self, id: &SessionId) -> Result<&mut SessionSnapshot, JournalError> {
        self.sessions
            .get_mut(id)
            .ok_or(JournalError::Inconsistent("record for an unknown session"))
    }

    /// The live sessions, by id.
    pub fn sessions(&self) -> impl Iterator<Item = &SessionSnapshot> {
        self.sessions.values()
    }

    /// One session.
    pub fn session(&self, id: &SessionId) -> Option<&SessionSnapshot> {
        self.sessions.get(id)
    }

    /// `user`'s waiting mail, oldest first.
    pub fn mailbox(&self, user: &str) -> impl Iterator<Item = &MailRecord> {
        self.mailboxes.get(user).into_iter().flatten()
    }

    /// Every user with waiting mail, and that mail, oldest first.
    pub fn mailboxes(&self) -> impl Iterator<Item = (&str, &VecDeque<MailRecord>)> {
        self.mailboxes
            .iter()
            .map(|(user, mail)| (user.as_str(), mail))
    }

    /// The shortest journal that replays to this state, for compaction: each session
    /// opened at its current numbering followed by its rooms and unacknowledged messages, then
    /// every mailbox, and the [`Record::Commit`] that makes them one batch.
    pub fn records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for s in self.sessions.values() {
            out.extend(s.records());
        }
        for (user, mail) in &self.mailboxes {
            for m in mail {
                out.push(Record::MailQueued {
                    user: user.clone(),
                    from: m.from.clone(),
                    queued_unix_ms: m.queued_unix_ms,
                    payload: m.payload.clone(),
                });
            }
        }
        out.push(Record::Commit);
        out
    }
}

impl SessionSnapshot {
    /// The shortest records that rebuild this session alone, as
    /// [`JournalState::records`] writes it (without the commit marker): opened at its
    /// current numbering, its rooms, its unacknowledged messages.
    pub fn records(&self) -> Vec<Record> {
        let s = self;
        let mut out = vec![Record::SessionOpened {
            id: s.id,
            token: s.token,
            user: s.user.clone(),
            acked: s.acked,
            client_delivered: s.client_delivered,
        }];
        for room in &s.rooms {
            out.push(Record::SessionJoined {
                id: s.id,
                room: room.clone(),
            });
        }
        for m in &s.unacked {
            out.push(Record::ServerSent {
                id: s.id,
                seq: m.seq,
                is_text: m.is_text,
                payload: m.payload.clone().unwrap_or_default(),
            });
            if m.payload.is_none() {
                out.push(Record::ServerVoided {
                    id: s.id,
                    seq: m.seq,
                });
            }
        }
        out
    }
}

/// What [`replay`] made of a journal file.
#[derive(Debug)]
pub struct Replayed {
    /// The state of every record up to `valid_len`.
    pub state: JournalState,
    /// Records applied.
    pub records: usize,
    /// Bytes that hold whole, committed, consistent batches: truncate the file here
    /// before appending.
    pub valid_len: usize,
    /// The file ends inside a record: a crash mid-append, which lost nothing that was
    /// acknowledged (acknowledgements wait for the record to be durable).
    pub torn_tail: bool,
    /// Whole records after the last commit marker, left out (a crash between an append
    /// and its commit).
    pub uncommitted: usize,
    /// Corruption in the batch that starts at `valid_len`: a bad checksum, an undecodable
    /// or inconsistent record.
    /// Records after it are not applied; a server should refuse to start rather than
    /// silently drop what follows.
    pub error: Option<JournalError>,
}

/// Replays a whole journal file: every whole batch (records up to a [`Record::Commit`]).
/// Records after the last commit marker were never committed, so nothing acknowledged
/// depended on them: they are left out, and `valid_len` ends before them.
pub fn replay(file: &[u8]) -> Replayed {
    let mut state = JournalState::new();
    let mut pos = 0;
    let mut records = 0;
    // The records of the batch being read, applied at its commit marker.
    let mut batch: Vec<Record> = Vec::new();
    let mut committed = 0;
    loop {
        let (torn_tail, error) = match decode_record(&file[pos..]) {
            Ok(Some((Record::Commit, used))) => {
                let mut failed = None;
                for record in batch.drain(..) {
                    if let Err(e) = state.apply(&record) {
                        failed = Some(e);
                        break;
                    }
                    records += 1;
                }
                if let Some(e) = failed {
                    // The batch is void as a whole: the state is the one before it, which
                    // replaying the committed prefix rebuilds (once, on this error path).
                    let mut before = replay(&file[..committed]);
                    before.error = Some(e);
                    return before;
                }
                pos += used;
                committed = pos;
                continue;
            }
            Ok(Some((record, used))) => {
                batch.push(record);
                pos += used;
                continue;
            }
            Ok(None) if pos < file.len() && holds_a_whole_record(&file[pos + 1..]) => {
                (false, Some(JournalError::DamagedLength))
            }
            Ok(None) => (pos < file.len(), None),
            Err(e) => (false, Some(e)),
        };
        let uncommitted = if error.is_none() { batch.len() } else { 0 };
        return Replayed {
            state,
            records,
            valid_len: committed,
            torn_tail,
            uncommitted,
            error,
        };
    }
}

/// Whether a whole, checksummed record starts anywhere in `tail`.
///
/// A torn tail is a prefix of the one record a crash interrupted, so it holds no whole
/// record after its start; a tail that does is a damaged length field in the middle of
/// the file, and cutting it off would destroy every record behind it. (A payload that
/// itself embeds an encoded record can make a real torn tail look damaged: the server
/// then refuses to start and names the offset, which loses nothing.)
fn holds_a_whole_record(tail: &[u8]) -> bool {
    (0..tail.len()).any(|at| matches!(decode_record(&tail[at..]), Ok(Some(_))))
}

#[cfg(test)]
mod tests {
    use super::super::encode_record;
    use super::*;

    const ID: SessionId = SessionId([1; 16]);

    fn opened(id: SessionId) -> Record {
        Record::SessionOpened {
            id,
            token: SessionToken([2; 16]),
            user: "alice".into(),
            acked: Seq(0),
            client_delivered: Seq(0),
        }
    }

    fn sent(seq: u64) -> Record {
        Record::ServerSent {
            id: ID,
            seq: Seq(seq),
            is_text: true,
            payload: Bytes::from(alloc::format!("m{seq}")),
        }
    }

    /// A journal that committed each record on its own.
    fn file(records: &[Record]) -> Vec<u8> {
        let mut buf = Vec::new();
        for r in records {
            encode_record(r, &mut buf);
            if *r != Record::Commit {
                encode_record(&Record::Commit, &mut buf);
            }
        }
        buf
    }

    #[test]
    fn a_batch_is_replayed_whole_or_not_at_all() {
        let mut whole = file(&[opened(ID)]);
        let committed = whole.len();
        for r in [sent(1), sent(2), Record::Commit] {
            encode_record(&r, &mut whole);
        }
        for cut in committed..whole.len() {
            let r = replay(&whole[..cut]);
            assert_eq!(r.error, None, "cut at {cut}");
            assert_eq!((r.records, r.valid_len), (1, committed), "cut at {cut}");
            assert!(r.state.session(&ID).unwrap().unacked.is_empty());
        }
        let r = replay(&whole);
        assert_eq!((r.records, r.valid_len, r.uncommitted), (3, whole.len(), 0));
        let mut one_out = whole.clone();
        one_out.truncate(whole.len() - 9); // the commit marker: length, checksum, kind
        assert_eq!(replay(&one_out).uncommitted, 2);
    }

    fn mail(user: &str, n: u64) -> Record {
        Record::MailQueued {
            user: user.into(),
            from: None,
            queued_unix_ms: n,
            payload: Bytes::from(alloc::format!("p{n}")),
        }
    }

    #[test]
    fn a_session_keeps_exactly_its_unacknowledged_messages() {
        let log = [
            opened(ID),
            sent(1),
            sent(2),
            sent(3),
            Record::ClientAcked {
                id: ID,
                seq: Seq(1),
            },
            Record::ServerVoided {
                id: ID,
                seq: Seq(3),
            },
            Record::ClientDelivered {
                id: ID,
                seq: Seq(7),
            },
        ];
        let r = replay(&file(&log));
        assert_eq!(
            (r.records, r.torn_tail, r.error.clone()),
            (log.len(), false, None)
        );
        let s = r.state.session(&ID).unwrap();
        assert_eq!(s.acked, Seq(1));
        assert_eq!(s.client_delivered, Seq(7));
        let unacked: Vec<_> = s
            .unacked
            .iter()
            .map(|m| (m.seq.0, m.payload.clone()))
            .collect();
        assert_eq!(unacked, [(2, Some(Bytes::from("m2"))), (3, None)]);
    }

    #[test]
    fn mailboxes_are_fifo_and_disappear_when_empty() {
        let log = [
            mail("bob", 1),
            mail("bob", 2),
            mail("carol", 3),
            Record::MailTaken {
                user: "bob".into(),
                count: 1,
            },
            Record::MailTaken {
                user: "carol".into(),
                count: 1,
            },
        ];
        let r = replay(&file(&log));
        assert_eq!(r.error, None);
        let bob: Vec<_> = r.state.mailbox("bob").map(|m| m.queued_unix_ms).collect();
        assert_eq!(bob, [2]);
        assert_eq!(r.state.mailboxes().count(), 1);
    }

    #[test]
    fn inconsistent_records_stop_the_replay_where_they_are() {
        let cases: [(&[Record], &str); 6] = [
            (&[opened(ID), sent(2)], "message numbered out of order"),
            (
                &[
                    opened(ID),
                    sent(1),
                    Record::ClientAcked {
                        id: ID,
                        seq: Seq(2),
                    },
                ],
                "ack outside the window",
            ),
            (
                &[
                    opened(ID),
                    Record::ServerVoided {
                        id: ID,
                        seq: Seq(1),
                    },
                ],
                "void of a message never sent",
            ),
            (&[sent(1)], "record for an unknown session"),
            (&[opened(ID), opened(ID)], "session opened twice"),
            (
                &[
                    mail("bob", 1),
                    Record::MailTaken {
                        user: "bob".into(),
                        count: 2,
                    },
                ],
                "more mail taken than queued",
            ),
        ];
        for (log, why) in cases {
            let bytes = file(log);
            let r = replay(&bytes);
            assert_eq!(r.error, Some(JournalError::Inconsistent(why)), "{log:?}");
            assert_eq!(r.records, log.len() - 1);
            assert_eq!(r.valid_len, file(&log[..log.len() - 1]).len());
        }
    }

    #[test]
    fn a_torn_tail_keeps_every_whole_record() {
        let log = [opened(ID), sent(1), sent(2)];
        let whole = file(&log);
        let two = file(&log[..2]).len();
        for cut in two + 1..whole.len() {
            let r = replay(&whole[..cut]);
            // Inside the third record, or after it and before its commit marker.
            assert!(r.torn_tail || r.uncommitted == 1, "cut at {cut}");
            assert!(r.error.is_none(), "cut at {cut}");
            assert_eq!((r.records, r.valid_len), (2, two));
        }
        let r = replay(&whole);
        assert!(!r.torn_tail);
        assert_eq!(r.valid_len, whole.len());
    }

    #[test]
    fn a_damaged_length_in_the_middle_is_not_a_torn_tail() {
        let log = [opened(ID), sent(1), sent(2), sent(3)];
        let whole = file(&log);
        let first = file(&log[..1]).len();
        // Flip a high bit of the second record's length: it now reaches past the end.
        for bit in [16u8, 20, 23] {
            let mut damaged = whole.clone();
            damaged[first + usize::from(bit / 8)] ^= 1 << (bit % 8);
            let r = replay(&damaged);
            assert_eq!(r.error, Some(JournalError::DamagedLength), "bit {bit}");
            assert!(!r.torn_tail);
            assert_eq!((r.records, r.valid_len), (1, first));
        }
    }

    fn joined(room: &str) -> Record {
        Record::SessionJoined {
            id: ID,
            room: room.into(),
        }
    }

    #[test]
    fn a_session_keeps_its_rooms_until_it_leaves_or_closes() {
        let r = replay(&file(&[
            opened(ID),
            joined("lobby"),
            joined("news"),
            joined("lobby"),
        ]));
        assert_eq!(r.error, None);
        let rooms: Vec<&str> = r
            .state
            .session(&ID)
            .unwrap()
            .rooms
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(rooms, ["lobby", "news"]);
        let left = Record::SessionLeft {
            id: ID,
            room: "lobby".into(),
        };
        let r = replay(&file(&[opened(ID), joined("lobby"), left]));
        assert!(r.state.session(&ID).unwrap().rooms.is_empty());
        // A room record for a session the journal does not know is corruption.
        let r = replay(&file(&[joined("lobby")]));
        assert!(matches!(r.error, Some(JournalError::Inconsistent(_))));
    }

    #[test]
    fn compaction_replays_to_the_same_state() {
        let other = SessionId([3; 16]);
        let log = [
            opened(ID),
            opened(other),
            sent(1),
            sent(2),
            sent(3),
            Record::ClientAcked {
                id: ID,
                seq: Seq(1),
            },
            Record::ServerVoided {
                id: ID,
                seq: Seq(2),
            },
            Record::ClientDelivered {
                id: ID,
                seq: Seq(4),
            },
            Record::SessionClosed { id: other },
            joined("lobby"),
            joined("news"),
            Record::SessionLeft {
                id: ID,
                room: "news".into(),
            },
            mail("bob", 1),
            mail("bob", 2),
            Record::MailTaken {
                user: "bob".into(),
                count: 1,
            },
        ];
        let r = replay(&file(&log));
        assert_eq!(r.error, None);
        let compact = r.state.records();
        assert!(compact.len() < log.len());
        let again = replay(&file(&compact));
        assert_eq!(again.error, None);
        assert_eq!(again.state, r.state);
    }
}
