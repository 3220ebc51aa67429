//! The `sockeye.v1` envelope codec: one envelope per binary WebSocket message.
//!
//! Plain functions over slices, as every codec in the core: [`decode`] borrows from its
//! input and returns the envelope plus the bytes it consumed, or an [`EnvelopeError`];
//! [`encode`] appends to a `BufMut`. Because WebSocket frames the message, a short
//! envelope is malformed, not incomplete; [`decode_message`] also insists that the
//! envelope fills the whole message. Integers are LEB128 varints of at most 10 bytes in
//! their minimal form. Nothing here panics on any input. The byte layouts, with worked
//! examples that the tests below check byte for byte, are in `docs/PROTOCOL.md`.

use alloc::string::String;
use bytes::BufMut;

use super::token::{SessionId, SessionToken};
use super::Seq;
use crate::error::EnvelopeError;

/// Kind byte of a DATA envelope.
pub const KIND_DATA: u8 = 0x01;
/// Kind byte of an ACK envelope.
pub const KIND_ACK: u8 = 0x02;
/// Kind byte of a WELCOME envelope.
pub const KIND_WELCOME: u8 = 0x03;
/// Kind byte of a RESUME envelope.
pub const KIND_RESUME: u8 = 0x04;
/// Kind byte of an ERROR envelope.
pub const KIND_ERROR: u8 = 0x05;

/// DATA flag: the payload is UTF-8 text.
pub const FLAG_TEXT: u8 = 0x01;
/// DATA flag: the sender gave this sequence number up (it was dead-lettered); the
/// receiver skips it without delivering anything. The payload is empty.
pub const FLAG_VOID: u8 = 0x02;

/// Longest varint: 10 bytes carry 64 bits.
pub const MAX_VARINT_LEN: usize = 10;

/// Longest reason accepted in an ERROR envelope we send; longer ones are cut at a char
/// boundary so the envelope stays small.
pub const MAX_ERROR_REASON: usize = 123;

/// What the server says about the session in its WELCOME.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WelcomeStatus {
    /// 0: the client asked for no session; this is a new one.
    New,
    /// 1: the session the client asked for is resumed.
    Resumed,
    /// 2: refused: no such session (or the token did not match); this is a new one.
    RefusedUnknown,
    /// 3: refused: the session expired; this is a new one. `last_delivered` still says
    /// how far the server delivered the old session's messages.
    RefusedExpired,
}

impl WelcomeStatus {
    fn to_byte(self) -> u8 {
        match self {
            WelcomeStatus::New => 0,
            WelcomeStatus::Resumed => 1,
            WelcomeStatus::RefusedUnknown => 2,
            WelcomeStatus::RefusedExpired => 3,
        }
    }

    fn from_byte(b: u8) -> Result<Self, EnvelopeError> {
        Ok(match b {
            0 => WelcomeStatus::New,
            1 => WelcomeStatus::Resumed,
            2 => WelcomeStatus::RefusedUnknown,
            3 => WelcomeStatus::RefusedExpired,
            other => return Err(EnvelopeError::InvalidStatus(other)),
        })
    }
}

/// A DATA envelope: one reliable message, or the tombstone of a dead-lettered one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Data<'a> {
    /// The payload is UTF-8 text.
    pub is_text: bool,
    /// The sender dead-lettered this message: skip `seq`, deliver nothing.
    pub is_void: bool,
    /// This message's sequence number (from 1, per session and direction).
    pub seq: Seq,
    /// Piggybacked cumulative ack of the other direction (0: nothing yet).
    pub ack: Seq,
    /// The message itself (the rest of the WebSocket message).
    pub payload: &'a [u8],
}

/// The server's first envelope on every connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// What became of the session the client asked for.
    pub status: WelcomeStatus,
    /// The session in force from now on.
    pub session_id: SessionId,
    /// The secret that resumes it.
    pub token: SessionToken,
    /// The last client sequence number the server delivered (for a refused resume: in
    /// the old session, if the server still remembers it; else 0).
    pub last_delivered: Seq,
    /// How long the server keeps the session after a disconnect, in seconds.
    pub expiry_secs: u64,
}

/// The client's request to resume, carried in the upgrade request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    /// The session to resume.
    pub session_id: SessionId,
    /// Its secret.
    pub token: SessionToken,
    /// The last server sequence number the client delivered.
    pub last_delivered: Seq,
}

/// One decoded envelope, borrowing its payload and reason from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Envelope<'a> {
    /// 0x01: a message.
    Data(Data<'a>),
    /// 0x02: a cumulative acknowledgement.
    Ack {
        /// Every sequence number up to and including this one was delivered (0: none).
        ack: Seq,
    },
    /// 0x03: the server's greeting.
    Welcome(Welcome),
    /// 0x04: a resume request (in the upgrade request, never in-band).
    Resume(Resume),
    /// 0x05: the sender saw a protocol violation and is closing the connection.
    Error {
        /// One of the codes in `docs/PROTOCOL.md`.
        code: u16,
        /// A short human-readable reason.
        reason: &'a str,
    },
}

/// Decodes one varint from the front of `buf`: the value and the bytes it used.
pub fn decode_varint(buf: &[u8]) -> Result<(u64, usize), EnvelopeError> {
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().enumerate().take(MAX_VARINT_LEN) {
        let bits = u64::from(byte & 0x7f);
        // The 10th byte may only carry the 64th bit.
        if i == MAX_VARINT_LEN - 1 && byte > 1 {
            return Err(EnvelopeError::VarintOverflow);
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            // Minimal form: a multi-byte varint never ends in a zero byte.
            if i > 0 && byte == 0 {
                return Err(EnvelopeError::NonMinimalVarint);
            }
            return Ok((value, i + 1));
        }
    }
    if buf.len() >= MAX_VARINT_LEN {
        Err(EnvelopeError::VarintOverflow)
    } else {
        Err(EnvelopeError::Truncated)
    }
}

/// Appends `value` as a minimal varint.
pub fn encode_varint(mut value: u64, out: &mut impl BufMut) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// Bytes [`encode_varint`] writes for `value`.
pub fn varint_len(value: u64) -> usize {
    let bits = 64 - value.max(1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// A cursor over an envelope's bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, EnvelopeError> {
        let b = *self.buf.get(self.pos).ok_or(EnvelopeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, EnvelopeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let (value, used) = decode_varint(rest)?;
        self.pos += used;
        Ok(value)
    }

    fn array16(&mut self) -> Result<[u8; 16], EnvelopeError> {
        let end = self.pos.checked_add(16).ok_or(EnvelopeError::Truncated)?;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or(EnvelopeError::Truncated)?;
        let mut out = [0u8; 16];
        out.copy_from_slice(bytes);
        self.pos = end;
        Ok(out)
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        rest
    }
}

/// Decodes the envelope at the front of `buf`: the value and the bytes consumed.
///
/// DATA and ERROR run to the end of `buf` (their payload is the rest of the message).
pub fn decode(buf: &[u8]) -> Result<(Envelope<'_>, usize), EnvelopeError> {
    let mut r = Reader { buf, pos: 0 };
    let kind = r.byte().map_err(|_| EnvelopeError::Empty)?;
    let envelope = match kind {
        KIND_DATA => {
            let flags = r.byte()?;
            if flags & !(FLAG_TEXT | FLAG_VOID) != 0 {
                return Err(EnvelopeError::ReservedFlags(flags));
            }
            let seq = r.varint()?;
            if seq == 0 {
                return Err(EnvelopeError::ZeroSeq);
            }
            let ack = Seq(r.varint()?);
            let payload = r.rest();
            let is_void = flags & FLAG_VOID != 0;
            if is_void && (flags & FLAG_TEXT != 0 || !payload.is_empty()) {
                return Err(EnvelopeError::VoidWithPayload);
            }
            Envelope::Data(Data {
                is_text: flags & FLAG_TEXT != 0,
                is_void,
                seq: Seq(seq),
                ack,
                payload,
            })
        }
        KIND_ACK => Envelope::Ack {
            ack: Seq(r.varint()?),
        },
        KIND_WELCOME => {
            let status = WelcomeStatus::from_byte(r.byte()?)?;
            Envelope::Welcome(Welcome {
                status,
                session_id: SessionId(r.array16()?),
                token: SessionToken(r.array16()?),
                last_delivered: Seq(r.varint()?),
                expiry_secs: r.varint()?,
            })
        }
        KIND_RESUME => Envelope::Resume(Resume {
            session_id: SessionId(r.array16()?),
            token: SessionToken(r.array16()?),
            last_delivered: Seq(r.varint()?),
        }),
        KIND_ERROR => {
            let hi = r.byte()?;
            let lo = r.byte()?;
            let reason =
                core::str::from_utf8(r.rest()).map_err(|_| EnvelopeError::InvalidReason)?;
            Envelope::Error {
                code: u16::from_be_bytes([hi, lo]),
                reason,
            }
        }
        other => return Err(EnvelopeError::UnknownKind(other)),
    };
    Ok((envelope, r.pos))
}

/// Decodes a whole WebSocket message as exactly one envelope.
pub fn decode_message(buf: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    let (envelope, used) = decode(buf)?;
    if used != buf.len() {
        return Err(EnvelopeError::TrailingBytes);
    }
    Ok(envelope)
}

/// Appends the encoding of `envelope` to `out`.
///
/// Senders keep ERROR reasons short with [`truncate_reason`].
pub fn encode(envelope: &Envelope<'_>, out: &mut impl BufMut) {
    match envelope {
        Envelope::Data(d) => {
            out.put_u8(KIND_DATA);
            let mut flags = 0;
            if d.is_text {
                flags |= FLAG_TEXT;
            }
            if d.is_void {
                flags |= FLAG_VOID;
            }
            out.put_u8(flags);
            encode_varint(d.seq.0, out);
            encode_varint(d.ack.0, out);
            out.put_slice(d.payload);
        }
        Envelope::Ack { ack } => {
            out.put_u8(KIND_ACK);
            encode_varint(ack.0, out);
        }
        Envelope::Welcome(w) => {
            out.put_u8(KIND_WELCOME);
            out.put_u8(w.status.to_byte());
            out.put_slice(w.session_id.as_bytes());
            out.put_slice(w.token.as_bytes());
            encode_varint(w.last_delivered.0, out);
            encode_varint(w.expiry_secs, out);
        }
        Envelope::Resume(r) => {
            out.put_u8(KIND_RESUME);
            out.put_slice(r.session_id.as_bytes());
            out.put_slice(r.token.as_bytes());
            encode_varint(r.last_delivered.0, out);
        }
        Envelope::Error { code, reason } => {
            out.put_u8(KIND_ERROR);
            out.put_u16(*code);
            out.put_slice(reason.as_bytes());
        }
    }
}

/// Bytes a DATA envelope adds in front of its payload.
pub fn data_header_len(seq: Seq, ack: Seq) -> usize {
    2 + varint_len(seq.0) + varint_len(ack.0)
}

/// `reason` cut to at most [`MAX_ERROR_REASON`] bytes at a char boundary.
pub fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_ERROR_REASON {
        return reason;
    }
    let mut end = MAX_ERROR_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// The `Sockeye-Resume` header value (or `sockeye_resume` query value): the RESUME
/// envelope in unpadded base64url.
pub fn resume_header_value(resume: &Resume) -> String {
    use base64::Engine;
    let mut buf = alloc::vec::Vec::with_capacity(1 + 32 + MAX_VARINT_LEN);
    encode(&Envelope::Resume(*resume), &mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Parses a `Sockeye-Resume` header (or `sockeye_resume` query) value.
pub fn parse_resume_header(value: &[u8]) -> Result<Resume, EnvelopeError> {
    use base64::Engine;
    // 1 + 16 + 16 + 10 bytes at most: 58 base64 characters; refuse more before decoding.
    if value.len() > 60 {
        return Err(EnvelopeError::TrailingBytes);
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| EnvelopeError::InvalidBase64)?;
    match decode_message(&bytes)? {
        Envelope::Resume(r) => Ok(r),
        _ => Err(EnvelopeError::UnexpectedKind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    fn enc(e: &Envelope<'_>) -> Vec<u8> {
        let mut v = Vec::new();
        encode(e, &mut v);
        v
    }

    fn ids() -> (SessionId, SessionToken) {
        let mut id = [0u8; 16];
        let mut tok = [0u8; 16];
        for i in 0..16 {
            id[i] = i as u8;
            tok[i] = 0xa0 + i as u8;
        }
        (SessionId(id), SessionToken(tok))
    }

    // ---- The worked examples of docs/PROTOCOL.md, byte for byte. ----

    #[test]
    fn protocol_md_example_data_text() {
        // DATA, text, seq 1, ack 0, "hi"
        let bytes = [0x01, 0x01, 0x01, 0x00, b'h', b'i'];
        let e = Envelope::Data(Data {
            is_text: true,
            is_void: false,
            seq: Seq(1),
            ack: Seq(0),
            payload: b"hi",
        });
        assert_eq!(enc(&e), bytes);
        assert_eq!(decode_message(&bytes), Ok(e));
    }

    #[test]
    fn protocol_md_example_data_binary_with_piggybacked_ack() {
        // DATA, binary, seq 300, ack 5, payload DE AD
        let bytes = [0x01, 0x00, 0xac, 0x02, 0x05, 0xde, 0xad];
        let e = Envelope::Data(Data {
            is_text: false,
            is_void: false,
            seq: Seq(300),
            ack: Seq(5),
            payload: &[0xde, 0xad],
        });
        assert_eq!(enc(&e), bytes);
        assert_eq!(decode_message(&bytes), Ok(e));
    }

    #[test]
    fn protocol_md_example_void() {
        // DATA, void, seq 7, ack 2
        let bytes = [0x01, 0x02, 0x07, 0x02];
        let e = Envelope::Data(Data {
            is_text: false,
            is_void: true,
            seq: Seq(7),
            ack: Seq(2),
            payload: &[],
        });
        assert_eq!(enc(&e), bytes);
        assert_eq!(decode_message(&bytes), Ok(e));
    }

    #[test]
    fn protocol_md_example_ack() {
        let bytes = [0x02, 0x80, 0x01];
        let e = Envelope::Ack { ack: Seq(128) };
        assert_eq!(enc(&e), bytes);
        assert_eq!(decode_message(&bytes), Ok(e));
    }

    #[test]
    fn protocol_md_example_welcome() {
        let (id, token) = ids();
        let mut bytes = Vec::from([0x03, 0x01]);
        bytes.extend(0x00..=0x0f);
        bytes.extend(0xa0..=0xaf);
        bytes.extend([0x04, 0xac, 0x02]); // last delivered 4, expiry 300 s
        let e = Envelope::Welcome(Welcome {
            status: WelcomeStatus::Resumed,
            session_id: id,
            token,
            last_delivered: Seq(4),
            expiry_secs: 300,
        });
        assert_eq!(enc(&e), bytes);
        assert_eq!(decode_message(&bytes), Ok(e));
    }

    #[test]
    fn protocol_md_example_resume_and_its_header() {
        let (id, token) = ids();
        let mut bytes = Vec::from([0x04]);
        bytes.extend(0x00..=0x0f);
        bytes.extend(0xa0..=0xaf);
        bytes.push(0x09); // last delivered 9
        let r = Resume {
            session_id: id,
            token,
            last_delivered: Seq(9),
        };
        assert_eq!(enc(&Envelope::Resume(r)), bytes);
        let header = resume_header_value(&r);
        assert_eq!(header, "BAABAgMEBQYHCAkKCwwNDg-goaKjpKWmp6ipqqusra6vCQ");
        assert_eq!(parse_resume_header(header.as_bytes()), Ok(r));
    }

    #[test]
    fn protocol_md_example_error() {
        let bytes = [0x05, 0x00, 0x02, b'g', b'a', b'p'];
        let e = Envelope::Error {
            code: 2,
            reason: "gap",
        };
        assert_eq!(enc(&e), bytes);
        assert_eq!(decode_message(&bytes), Ok(e));
    }

    // ---- Bad input. ----

    #[test]
    fn varints_are_minimal_and_bounded() {
        assert_eq!(decode_varint(&[0x00]), Ok((0, 1)));
        assert_eq!(decode_varint(&[0x7f]), Ok((127, 1)));
        assert_eq!(decode_varint(&[0x80, 0x01]), Ok((128, 2)));
        assert_eq!(
            decode_varint(&[0x80, 0x00]),
            Err(EnvelopeError::NonMinimalVarint)
        );
        assert_eq!(decode_varint(&[0x80]), Err(EnvelopeError::Truncated));
        assert_eq!(decode_varint(&[]), Err(EnvelopeError::Truncated));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(decode_varint(&max), Ok((u64::MAX, 10)));
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(decode_varint(&over), Err(EnvelopeError::VarintOverflow));
        let long = [0x80; 11];
        assert_eq!(decode_varint(&long), Err(EnvelopeError::VarintOverflow));
    }

    #[test]
    fn malformed_envelopes_are_named() {
        assert_eq!(decode(&[]), Err(EnvelopeError::Empty));
        assert_eq!(decode(&[0x09]), Err(EnvelopeError::UnknownKind(9)));
        assert_eq!(
            decode(&[0x01, 0x04, 0x01, 0x00]),
            Err(EnvelopeError::ReservedFlags(4))
        );
        assert_eq!(
            decode(&[0x01, 0x00, 0x00, 0x00]),
            Err(EnvelopeError::ZeroSeq)
        );
        assert_eq!(
            decode(&[0x01, 0x02, 0x01, 0x00, 0x55]),
            Err(EnvelopeError::VoidWithPayload)
        );
        assert_eq!(decode(&[0x03, 0x07]), Err(EnvelopeError::InvalidStatus(7)));
        assert_eq!(decode(&[0x03, 0x00, 1, 2]), Err(EnvelopeError::Truncated));
        assert_eq!(
            decode(&[0x05, 0x00, 0x01, 0xff]),
            Err(EnvelopeError::InvalidReason)
        );
        assert_eq!(
            decode_message(&[0x02, 0x01, 0x00]),
            Err(EnvelopeError::TrailingBytes)
        );
        assert_eq!(
            parse_resume_header(b"AgE"),
            Err(EnvelopeError::UnexpectedKind)
        );
        assert_eq!(
            parse_resume_header(b"!!"),
            Err(EnvelopeError::InvalidBase64)
        );
    }

    #[test]
    fn long_error_reasons_are_cut_at_a_char_boundary() {
        let reason = "é".repeat(100);
        let got = truncate_reason(&reason);
        assert!(got.len() <= MAX_ERROR_REASON && reason.starts_with(got));
        assert_eq!(truncate_reason("short"), "short");
    }

    proptest! {
        #[test]
        fn varint_roundtrip(v: u64) {
            let mut buf = Vec::new();
            encode_varint(v, &mut buf);
            prop_assert_eq!(buf.len(), varint_len(v));
            prop_assert_eq!(decode_varint(&buf), Ok((v, buf.len())));
        }

        #[test]
        fn data_roundtrip(text: bool, seq in 1u64.., ack: u64, payload: Vec<u8>) {
            let e = Envelope::Data(Data { is_text: text, is_void: false, seq: Seq(seq), ack: Seq(ack), payload: &payload });
            let bytes = enc(&e);
            prop_assert_eq!(bytes.len(), data_header_len(Seq(seq), Seq(ack)) + payload.len());
            prop_assert_eq!(decode_message(&bytes), Ok(e));
        }

        #[test]
        fn decode_never_panics_and_consumes_at_most_its_input(bytes: Vec<u8>) {
            if let Ok((e, used)) = decode(&bytes) {
                prop_assert!(used <= bytes.len());
                // What decodes re-encodes to the same bytes (the codec is canonical).
                prop_assert_eq!(&enc(&e)[..], &bytes[..used]);
            }
        }
    }
}
