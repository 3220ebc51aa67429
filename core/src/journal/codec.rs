//! The byte format of journal records.
//!
//! Each record is framed as `[length: u32 LE] [crc32 of body: u32 LE] [body]`, so a
//! torn write at the end of the file (a crash mid-append) is told apart from
//! corruption in the middle. The body is a kind byte and the record's fields: varints
//! (as in `sockeye.v1` envelopes), strings and payloads as a varint length and bytes,
//! ids and tokens as 16 raw bytes.

use alloc::string::String;
use alloc::vec::Vec;
use bytes::{BufMut, Bytes};
use core::fmt;

use super::Record;
use crate::session::envelope::{decode_varint, encode_varint};
use crate::session::{Seq, SessionId, SessionToken};

/// The largest record body accepted: a 16 MiB message plus its fields. A length above it
/// is corruption, never a reason to allocate.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024 + 1024;

const FRAME_HEADER: usize = 8;

const KIND_SESSION_OPENED: u8 = 1;
const KIND_SERVER_SENT: u8 = 2;
const KIND_CLIENT_ACKED: u8 = 3;
const KIND_SERVER_VOIDED: u8 = 4;
const KIND_CLIENT_DELIVERED: u8 = 5;
const KIND_SESSION_CLOSED: u8 = 6;
const KIND_MAIL_QUEUED: u8 = 7;
const KIND_MAIL_TAKEN: u8 = 8;
const KIND_COMMIT: u8 = 9;
const KIND_SESSION_JOINED: u8 = 10;
const KIND_SESSION_LEFT: u8 = 11;

/// Why bytes are not a journal record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JournalError {
    /// The frame's length is over [`MAX_RECORD_BYTES`].
    TooLong(u64),
    /// The body does not match its checksum.
    BadChecksum,
    /// An unknown record kind.
    UnknownKind(u8),
    /// The body ends inside a field, or has bytes after the last one.
    Malformed,
    /// A string field is not UTF-8.
    InvalidUtf8,
    /// A record that does not follow from the ones before it (replay).
    Inconsistent(&'static str),
    /// A record's length runs past the end of the file although whole records follow
    /// it: its length field is damaged, so the tail is not a torn write (replay).
    DamagedLength,
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::TooLong(n) => write!(f, "journal record of {n} bytes is over the limit"),
            JournalError::BadChecksum => f.write_str("journal record checksum mismatch"),
            JournalError::UnknownKind(k) => write!(f, "unknown journal record kind {k}"),
            JournalError::Malformed => f.write_str("malformed journal record"),
            JournalError::InvalidUtf8 => f.write_str("journal record string is not UTF-8"),
            JournalError::Inconsistent(why) => write!(f, "inconsistent journal: {why}"),
            JournalError::DamagedLength => {
                f.write_str("journal record length runs past whole records after it")
            }
        }
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !data.iter().fold(!0u32, |crc, &b| {
        TABLE[usize::from((crc as u8) ^ b)] ^ (crc >> 8)
    })
}

/// Appends `record`, framed, to `out`.
pub fn encode_record(record: &Record, out: &mut impl BufMut) {
    let mut body = Vec::new();
    encode_body(record, &mut body);
    out.put_u32_le(body.len() as u32);
    out.put_u32_le(crc32(&body));
    out.put_slice(&body);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn encode_body(record: &Record, out: &mut Vec<u8>) {
    match record {
        Record::SessionOpened {
            id,
            token,
            user,
            acked,
            client_delivered,
        } => {
            out.push(KIND_SESSION_OPENED);
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(token.as_bytes());
            put_bytes(out, user.as_bytes());
            encode_varint(acked.0, out);
            encode_varint(client_delivered.0, out);
        }
        Record::ServerSent {
            id,
            seq,
            is_text,
            payload,
        } => {
            out.push(KIND_SERVER_SENT);
            out.extend_from_slice(id.as_bytes());
            encode_varint(seq.0, out);
            out.push(u8::from(*is_text));
            put_bytes(out, payload);
        }
        Record::ClientAcked { id, seq } => session_seq(out, KIND_CLIENT_ACKED, id, *seq),
        Record::ServerVoided { id, seq } => session_seq(out, KIND_SERVER_VOIDED, id, *seq),
        Record::ClientDelivered { id, seq } => session_seq(out, KIND_CLIENT_DELIVERED, id, *seq),
        Record::SessionClosed { id } => {
            out.push(KIND_SESSION_CLOSED);
            out.extend_from_slice(id.as_bytes());
        }
        Record::MailQueued {
            user,
            from,
            queued_unix_ms,
            payload,
        } => {
            out.push(KIND_MAIL_QUEUED);
            put_bytes(out, user.as_bytes());
            match from {
                Some(from) => {
                    out.push(1);
                    put_bytes(out, from.as_bytes());
                }
                None => out.push(0),
            }
            encode_varint(*queued_unix_ms, out);
            put_bytes(out, payload);
        }
        Record::MailTaken { user, count } => {
            out.push(KIND_MAIL_TAKEN);
            put_bytes(out, user.as_bytes());
            encode_varint(u64::from(*count), out);
        }
        Record::SessionJoined { id, room } => session_room(out, KIND_SESSION_JOINED, id, room),
        Record::SessionLeft { id, room } => session_room(out, KIND_SESSION_LEFT, id, room),
        Record::Commit => out.push(KIND_COMMIT),
    }
}

fn session_room(out: &mut Vec<u8>, kind: u8, id: &SessionId, room: &str) {
    out.push(kind);
    out.extend_from_slice(id.as_bytes());
    put_bytes(out, room.as_bytes());
}

fn session_seq(out: &mut Vec<u8>, kind: u8, id: &SessionId, seq: Seq) {
    out.push(kind);
    out.extend_from_slice(id.as_bytes());
    encode_varint(seq.0, out);
}

/// Decodes the record at the start of `buf`: `Ok(Some((record, used)))`, `Ok(None)` when
/// `buf` ends inside the record (more bytes to come, or a torn tail), or an error for
/// bytes that can never become a record.
pub fn decode_record(buf: &[u8]) -> Result<Option<(Record, usize)>, JournalError> {
    let Some(header) = buf.get(..FRAME_HEADER) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let len = len as usize;
    if len > MAX_RECORD_BYTES {
        return Err(JournalError::TooLong(len as u64));
    }
    let Some(body) = buf.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Ok(None);
    };
    if crc32(body) != crc {
        return Err(JournalError::BadChecksum);
    }
    let bytes = Bytes::copy_from_slice(body);
    let record = decode_body(&bytes)?;
    Ok(Some((record, FRAME_HEADER + len)))
}

/// A cursor over one record body.
struct Reader<'a> {
    body: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], JournalError> {
        let end = self.pos.checked_add(n).ok_or(JournalError::Malformed)?;
        let slice = self
            .body
            .get(self.pos..end)
            .ok_or(JournalError::Malformed)?;
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, JournalError> {
        Ok(self.take(1)?[0])
    }

    fn array16(&mut self) -> Result<[u8; 16], JournalError> {
        let mut a = [0u8; 16];
        a.copy_from_slice(self.take(16)?);
        Ok(a)
    }

    fn varint(&mut self) -> Result<u64, JournalError> {
        let rest = self.body.get(self.pos..).unwrap_or_default();
        let (value, used) = decode_varint(rest).map_err(|_| JournalError::Malformed)?;
        self.pos += used;
        Ok(value)
    }

    fn len(&mut self) -> Result<usize, JournalError> {
        let n = self.varint()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.body.len() - self.pos)
            .ok_or(JournalError::Malformed)
    }

    fn bytes(&mut self) -> Result<Bytes, JournalError> {
        let n = self.len()?;
        let start = self.pos;
        self.take(n)?;
        Ok(self.body.slice(start..start + n))
    }

    fn string(&mut self) -> Result<String, JournalError> {
        let n = self.len()?;
        let raw = self.take(n)?;
        core::str::from_utf8(raw)
            .map(String::from)
            .map_err(|_| JournalError::InvalidUtf8)
    }

    fn id(&mut self) -> Result<SessionId, JournalError> {
        self.array16().map(SessionId)
    }

    fn seq(&mut self) -> Result<Seq, JournalError> {
        self.varint().map(Seq)
    }

    fn flag(&mut self) -> Result<bool, JournalError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(JournalError::Malformed),
        }
    }
}

fn decode_body(body: &Bytes) -> Result<Record, JournalError> {
    let mut r = Reader { body, pos: 0 };
    let record = match r.u8()? {
        KIND_SESSION_OPENED => Record::SessionOpened {
            id: r.id()?,
            token: SessionToken(r.array16()?),
            user: r.string()?,
            acked: r.seq()?,
            client_delivered: r.seq()?,
        },
        KIND_SERVER_SENT => Record::ServerSent {
            id: r.id()?,
            seq: r.seq()?,
            is_text: r.flag()?,
            payload: r.bytes()?,
        },
        KIND_CLIENT_ACKED => Record::ClientAcked {
            id: r.id()?,
            seq: r.seq()?,
        },
        KIND_SERVER_VOIDED => Record::ServerVoided {
            id: r.id()?,
            seq: r.seq()?,
        },
        KIND_CLIENT_DELIVERED => Record::ClientDelivered {
            id: r.id()?,
            seq: r.seq()?,
        },
        KIND_SESSION_CLOSED => Record::SessionClosed { id: r.id()? },
        KIND_MAIL_QUEUED => Record::MailQueued {
            user: r.string()?,
            from: if r.flag()? { Some(r.string()?) } else { None },
            queued_unix_ms: r.varint()?,
            payload: r.bytes()?,
        },
        KIND_MAIL_TAKEN => Record::MailTaken {
            user: r.string()?,
            count: u32::try_from(r.varint()?).map_err(|_| JournalError::Malformed)?,
        },
        KIND_SESSION_JOINED => Record::SessionJoined {
            id: r.id()?,
            room: r.string()?,
        },
        KIND_SESSION_LEFT => Record::SessionLeft {
            id: r.id()?,
            room: r.string()?,
        },
        KIND_COMMIT => Record::Commit,
        other => return Err(JournalError::UnknownKind(other)),
    };
    if r.pos != body.len() {
        return Err(JournalError::Malformed);
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record> {
        let id = SessionId([7; 16]);
        alloc::vec![
            Record::SessionOpened {
                id,
                token: SessionToken([9; 16]),
                user: "alice".into(),
                acked: Seq(0),
                client_delivered: Seq(5),
            },
            Record::ServerSent {
                id,
                seq: Seq(1),
                is_text: true,
                payload: Bytes::from_static(b"hi")
            },
            Record::ServerSent {
                id,
                seq: Seq(300),
                is_text: false,
                payload: Bytes::new()
            },
            Record::ClientAcked { id, seq: Seq(1) },
            Record::ServerVoided { id, seq: Seq(2) },
            Record::ClientDelivered {
                id,
                seq: Seq(u64::MAX)
            },
            Record::SessionJoined {
                id,
                room: "lobby".into()
            },
            Record::SessionLeft {
                id,
                room: "".into()
            },
            Record::SessionClosed { id },
            Record::MailQueued {
                user: "bob".into(),
                from: Some("alice".into()),
                queued_unix_ms: 1_700_000_000_123,
                payload: Bytes::from_static(b"{}"),
            },
            Record::MailQueued {
                user: "".into(),
                from: None,
                queued_unix_ms: 0,
                payload: Bytes::new()
            },
            Record::MailTaken {
                user: "bob".into(),
                count: u32::MAX
            },
        ]
    }

    #[test]
    fn crc32_matches_the_check_value() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn every_record_round_trips() {
        for record in samples() {
            let mut buf = Vec::new();
            encode_record(&record, &mut buf);
            assert_eq!(decode_record(&buf), Ok(Some((record.clone(), buf.len()))));
        }
    }

    #[test]
    fn a_mail_record_has_the_documented_layout() {
        let mut buf = Vec::new();
        let record = Record::MailTaken {
            user: "bo".into(),
            count: 3,
        };
        encode_record(&record, &mut buf);
        let body = [KIND_MAIL_TAKEN, 2, b'b', b'o', 3];
        let mut expected = Vec::from(5u32.to_le_bytes());
        expected.extend(crc32(&body).to_le_bytes());
        expected.extend(body);
        assert_eq!(buf, expected);
    }

    #[test]
    fn every_prefix_is_incomplete_not_an_error() {
        for record in samples() {
            let mut buf = Vec::new();
            encode_record(&record, &mut buf);
            for end in 0..buf.len() {
                assert_eq!(
                    decode_record(&buf[..end]),
                    Ok(None),
                    "{record:?} cut at {end}"
                );
            }
        }
    }

    #[test]
    fn a_flipped_bit_is_caught_by_the_checksum() {
        let mut buf = Vec::new();
        encode_record(&samples()[1], &mut buf);
        for i in FRAME_HEADER * 8..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert_eq!(decode_record(&bad), Err(JournalError::BadChecksum));
        }
    }

    #[test]
    fn a_huge_length_is_refused_before_waiting_for_it() {
        let mut buf = Vec::from(u32::MAX.to_le_bytes());
        buf.extend([0; 4]);
        assert_eq!(
            decode_record(&buf),
            Err(JournalError::TooLong(u64::from(u32::MAX)))
        );
    }

    #[test]
    fn bodies_with_trailing_or_missing_bytes_are_malformed() {
        for body in [
            &[KIND_SESSION_CLOSED][..],
            &[KIND_MAIL_TAKEN, 1, b'x', 1, 0],
            &[KIND_SERVER_SENT],
        ] {
            let mut buf = Vec::from((body.len() as u32).to_le_bytes());
            buf.extend(crc32(body).to_le_bytes());
            buf.extend(body);
            assert_eq!(
                decode_record(&buf),
                Err(JournalError::Malformed),
                "{body:?}"
            );
        }
        let body = [99u8];
        let mut buf = Vec::from(1u32.to_le_bytes());
        buf.extend(crc32(&body).to_le_bytes());
        buf.extend(body);
        assert_eq!(decode_record(&buf), Err(JournalError::UnknownKind(99)));
    }
}
