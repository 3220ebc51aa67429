//! Incremental frame decoding over a `BytesMut`, unmasking in place as bytes arrive.
//!
//! The decoder consumes a header as soon as it is complete and checks it before any of
//! its payload is buffered (size limit, masking rule by role, RSV bits, control frame
//! rules). Payload bytes are unmasked in place as they arrive, so a caller can validate a
//! partial text payload before the frame ends ([`FrameDecoder::partial`]). A complete
//! payload is split off the buffer as `Bytes` without copying.

use bytes::{Buf, Bytes, BytesMut};

use super::header::{FrameHeader, MAX_CONTROL_PAYLOAD};
use super::mask::{apply_mask, put_masked};
use crate::error::{ConnectionError, LimitError, ProtocolError};
use crate::Side;

/// Most bytes reserved for a frame on the word of its header, before they arrive.
const RESERVE_AHEAD_MAX: usize = 1 << 20;

/// Room made past the end of a frame still arriving: the read that completes it usually
/// carries on into the next one, by up to a typical socket read.
const READ_SLACK: usize = 64 << 10;

/// Frames of a size the buffer is given room for when it must move one (see `make_room`).
const ROOM_FRAMES: usize = 4;

/// Makes room for the rest of a frame of `len` payload bytes whose header was just read
/// and consumed, while `buf` holds only the start of its payload (not yet unmasked).
/// Returns how many bytes at the front of `buf` it unmasked on the way.
///
/// Left to itself, the buffer grows as reads arrive until the frame's end no longer
/// fits, and then `BytesMut` moves nearly the whole frame (or reallocates, copying the
/// consumed prefix as well). Making room now moves only the bytes buffered so far. When
/// they must move, the buffer gets room for several frames of this size, so the next
/// few frames arrive in place and the moves amortize as a `Vec`'s do: within the same
/// allocation if it is ours alone and big enough (it stays in cache), otherwise into a
/// fresh one (the old one stays with the payloads still using it), unmasking in the same
/// pass. Capped, so a header alone never makes us hold more than `RESERVE_AHEAD_MAX` for
/// bytes not yet received.
fn make_room(buf: &mut BytesMut, len: usize, mask: Option<[u8; 4]>) -> usize {
    // Only what has not arrived yet needs room: most of the frame may be buffered already.
    let want = len.saturating_sub(buf.len()).min(RESERVE_AHEAD_MAX) + READ_SLACK;
    if buf.capacity() - buf.len() >= want {
        return 0;
    }
    // The slack is counted once: small frames keep the buffer near one read's size.
    let roomy = want.max(len.saturating_mul(ROOM_FRAMES).min(RESERVE_AHEAD_MAX) + READ_SLACK);
    if buf.try_reclaim(roomy) || buf.try_reclaim(want) {
        return 0;
    }
    let mut fresh = BytesMut::with_capacity(buf.len() + roomy);
    match mask {
        Some(key) => put_masked(&mut fresh, buf, key, 0),
        None => fresh.extend_from_slice(buf),
    }
    *buf = fresh;
    buf.len()
}

/// Takes `skip` bytes (a header) and then a payload of `len` bytes, already unmasked, off
/// the front of `buf`, without copying.
#[inline(always)]
fn take_payload(buf: &mut BytesMut, skip: usize, len: usize) -> Bytes {
    let mut frame = buf.split_to(skip + len).freeze();
    // A frozen `Bytes`'s `advance` only moves a pointer; a `BytesMut`'s checks its
    // representation first.
    frame.advance(skip);
    frame
}

/// A whole frame with its payload unmasked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The header as received (the mask key is kept for reference; the payload is clear).
    pub header: FrameHeader,
    /// The unmasked payload.
    pub payload: Bytes,
}

/// Decodes frames one at a time from a growing buffer.
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    side: Side,
    max_frame_bytes: u64,
    allowed_rsv: u8,
    current: Option<FrameHeader>,
    unmasked: usize,
}

impl FrameDecoder {
    /// A decoder for frames received by `side`, rejecting payloads over `max_frame_bytes`.
    pub fn new(side: Side, max_frame_bytes: u64) -> Self {
        FrameDecoder {
            side,
            max_frame_bytes,
            allowed_rsv: 0,
            current: None,
            unmasked: 0,
        }
    }

    /// Allows RSV bits that a negotiated extension defines (none by default).
    pub fn set_allowed_rsv(&mut self, rsv: u8) {
        self.allowed_rsv = rsv & 0x07;
    }

    /// Decodes the next frame from the front of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed; the bytes seen so far stay consumed
    /// or unmasked, so call again with the same buffer once more bytes are appended. After
    /// an error the decoder's state is unspecified: stop feeding it.
    ///
    /// Allocates when a frame's header arrives without all of its payload and `buf` lacks
    /// room for the rest of it: room for a few frames of that size (at most 1 MiB) plus
    /// 64 KiB, so the buffer need not move the frame later and rarely moves the next ones.
    #[inline]
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ConnectionError> {
        if let Some(frame) = self.decode_whole(buf) {
            return Ok(Some(frame));
        }
        self.decode_in_parts(buf)
    }

    /// Appends received bytes to `buf`, as `buf.extend_from_slice(data)` would, but
    /// unmasks the payload bytes of a frame in progress on the way in: one pass over
    /// memory instead of a copy and then an unmask in place, which is most of the cost of
    /// a large frame that arrives over many reads. Call it instead of extending `buf`
    /// yourself, then [`decode`](Self::decode) as usual.
    #[inline]
    pub fn extend(&mut self, buf: &mut BytesMut, data: &[u8]) {
        if let Some(FrameHeader {
            mask: Some(key),
            payload_len,
            ..
        }) = self.current
        {
            // Only when everything buffered is this frame's payload, already unmasked:
            // the new bytes then continue it at offset `unmasked`.
            if buf.len() == self.unmasked {
                let len = usize::try_from(payload_len).unwrap_or(usize::MAX);
                let n = data.len().min(len.saturating_sub(self.unmasked));
                put_masked(buf, &data[..n], key, self.unmasked);
                self.unmasked += n;
                buf.extend_from_slice(&data[n..]);
                return;
            }
        }
        buf.extend_from_slice(data);
    }

    /// The common case, inlined into the caller: a frame that arrived whole and passes
    /// the header checks is split off in one go. Anything else (a partial frame, a frame
    /// that breaks a rule) is left untouched for [`decode_in_parts`](Self::decode_in_parts)
    /// to decode again and report.
    #[inline(always)]
    pub(crate) fn decode_whole(&self, buf: &mut BytesMut) -> Option<Frame> {
        if self.current.is_some() {
            return None;
        }
        let Ok(Some((header, header_len))) = FrameHeader::decode(buf) else {
            return None;
        };
        if self.check(&header).is_err() {
            return None;
        }
        Self::take_whole(buf, header, header_len)
    }

    /// [`decode`](Self::decode) for a frame in progress, a header still arriving, or an
    /// error.
    #[inline(never)]
    pub(crate) fn decode_in_parts(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<Frame>, ConnectionError> {
        let header = match self.current {
            Some(header) => header,
            None => {
                let Some((header, header_len)) = FrameHeader::decode(buf)? else {
                    return Ok(None);
                };
                self.check(&header)?;
                if let Some(frame) = Self::take_whole(buf, header, header_len) {
                    return Ok(Some(frame));
                }
                buf.advance(header_len);
                let len = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
                self.unmasked = make_room(buf, len, header.mask);
                self.current = Some(header);
                header
            }
        };
        // `check` bounded the length by `max_frame_bytes`; on targets where that exceeds
        // the address space the frame cannot be held anyway.
        let len = usize::try_from(header.payload_len).map_err(|_| LimitError::FrameTooLarge {
            len: header.payload_len,
            max: self.max_frame_bytes,
        })?;
        let available = buf.len().min(len);
        if let Some(key) = header.mask {
            if available > self.unmasked {
                apply_mask(&mut buf[self.unmasked..available], key, self.unmasked);
            }
        }
        self.unmasked = available;
        if available < len {
            return Ok(None);
        }
        let payload = take_payload(buf, 0, len);
        self.current = None;
        self.unmasked = 0;
        Ok(Some(Frame { header, payload }))
    }

    /// A frame whose header was checked, if all of it arrived: split header and payload
    /// off in one go, without recording a frame in progress.
    #[inline(always)]
    fn take_whole(buf: &mut BytesMut, header: FrameHeader, header_len: usize) -> Option<Frame> {
        let len = usize::try_from(header.payload_len).ok()?;
        if buf.len() - header_len < len {
            return None;
        }
        let end = header_len + len;
        if let Some(key) = header.mask {
            apply_mask(&mut buf[header_len..end], key, 0);
        }
        let payload = take_payload(buf, header_len, len);
        Some(Frame { header, payload })
    }

    /// The header of the frame whose payload is still arriving, and how many bytes at the
    /// front of the buffer are its payload, already unmasked.
    pub fn partial(&self) -> Option<(&FrameHeader, usize)> {
        self.current.as_ref().map(|h| (h, self.unmasked))
    }

    #[inline]
    fn check(&self, header: &FrameHeader) -> Result<(), ConnectionError> {
        // §5.2: "MUST be 0 unless an extension is negotiated that defines meanings for
        // non-zero values".
        if header.rsv & !self.allowed_rsv != 0 {
            return Err(ProtocolError::ReservedBits.into());
        }
        // §5.1: "a server MUST close the connection upon receiving a frame that is not
        // masked" and "a client MUST close a connection if it detects a masked frame".
        match (self.side, header.mask.is_some()) {
            (Side::Server, false) => return Err(ProtocolError::UnmaskedClientFrame.into()),
            (Side::Client, true) => return Err(ProtocolError::MaskedServerFrame.into()),
            _ => {}
        }
        if header.opcode.is_control() {
            // §5.5: "All control frames MUST have a payload length of 125 bytes or less
            // and MUST NOT be fragmented."
            if header.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(ProtocolError::ControlFrameTooLong.into());
            }
            if !header.fin {
                return Err(ProtocolError::FragmentedControlFrame.into());
            }
        }
        if header.payload_len > self.max_frame_bytes {
            return Err(LimitError::FrameTooLarge {
                len: header.payload_len,
                max: self.max_frame_bytes,
            }
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::encode::encode_frame;
    use super::super::header::OpCode;
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    fn header(opcode: OpCode, fin: bool, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask,
            payload_len: 0,
        }
    }

    fn decode_stream(
        side: Side,
        bytes: &[u8],
        chunks: &[usize],
    ) -> Result<Vec<Frame>, ConnectionError> {
        let mut decoder = FrameDecoder::new(side, 1 << 20);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut rest = bytes;
        let mut sizes = chunks.iter().cycle();
        let mut read = 0usize;
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
            // Both ways of appending, mixed: `extend` (unmasking on the way in) must give
            // the same frames as appending the raw bytes.
            read += 1;
            if read % 3 == 0 {
                buf.extend_from_slice(&rest[..n]);
            } else {
                decoder.extend(&mut buf, &rest[..n]);
            }
            rest = &rest[n..];
            while let Some(frame) = decoder.decode(&mut buf)? {
                frames.push(frame);
            }
        }
        Ok(frames)
    }

    #[test]
    fn rfc6455_5_7_masked_hello_decodes_on_server() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let frames = decode_stream(Side::Server, &bytes, &[1]).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(&frames[0].payload[..], b"Hello");
    }

    #[test]
    fn rfc6455_5_1_server_rejects_unmasked_frame() {
        let err = decode_stream(Side::Server, &[0x81, 0x00], &[2]).unwrap_err();
        assert_eq!(err, ProtocolError::UnmaskedClientFrame.into());
    }

    #[test]
    fn rfc6455_5_1_client_rejects_masked_frame() {
        let err = decode_stream(Side::Client, &[0x81, 0x80, 1, 2, 3, 4], &[6]).unwrap_err();
        assert_eq!(err, ProtocolError::MaskedServerFrame.into());
    }

    #[test]
    fn rfc6455_5_2_rsv_bits_rejected_without_extension() {
        for rsv in [0x40u8, 0x20, 0x10] {
            let err = decode_stream(Side::Client, &[0x81 | rsv, 0x00], &[2]).unwrap_err();
            assert_eq!(err, ProtocolError::ReservedBits.into());
        }
    }

    #[test]
    fn rfc6455_5_5_control_frame_rules() {
        let err = decode_stream(Side::Client, &[0x89, 0x7E, 0x00, 0x7E], &[4]).unwrap_err();
        assert_eq!(err, ProtocolError::ControlFrameTooLong.into());
        let err = decode_stream(Side::Client, &[0x09, 0x00], &[2]).unwrap_err();
        assert_eq!(err, ProtocolError::FragmentedControlFrame.into());
    }

    #[test]
    fn oversized_frame_rejected_at_header_before_payload_is_buffered() {
        let mut decoder = FrameDecoder::new(Side::Client, 100);
        let mut buf = BytesMut::from(&[0x82u8, 0x7E, 0x00, 0x80][..]);
        let err = decoder.decode(&mut buf).unwrap_err();
        assert_eq!(err, LimitError::FrameTooLarge { len: 128, max: 100 }.into());
    }

    #[test]
    fn partial_reports_unmasked_prefix() {
        let mut out = BytesMut::new();
        encode_frame(
            header(OpCode::Text, true, Some([9, 8, 7, 6])),
            b"abcdef",
            &mut out,
        );
        let mut decoder = FrameDecoder::new(Side::Server, 1 << 20);
        let mut buf = BytesMut::from(&out[..out.len() - 2]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        let (h, n) = decoder.partial().unwrap();
        assert_eq!((h.opcode, n), (OpCode::Text, 4));
        assert_eq!(&buf[..n], b"abcd");
        buf.extend_from_slice(&out[out.len() - 2..]);
        assert_eq!(
            &decoder.decode(&mut buf).unwrap().unwrap().payload[..],
            b"abcdef"
        );
        assert!(decoder.partial().is_none());
    }

    fn arb_frame(masked: bool) -> impl Strategy<Value = (FrameHeader, Vec<u8>)> {
        let data = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            proptest::collection::vec(any::<u8>(), 60_000..70_000),
        ];
        (any::<bool>(), 0usize..3, any::<[u8; 4]>(), data).prop_map(
            move |(fin, kind, key, data)| {
                let opcode = [OpCode::Continuation, OpCode::Text, OpCode::Binary][kind];
                (header(opcode, fin, masked.then_some(key)), data)
            },
        )
    }

    fn arb_control(masked: bool) -> impl Strategy<Value = (FrameHeader, Vec<u8>)> {
        (
            0usize..3,
            any::<[u8; 4]>(),
            proptest::collection::vec(any::<u8>(), 0..=125),
        )
            .prop_map(move |(kind, key, data)| {
                let opcode = [OpCode::Close, OpCode::Ping, OpCode::Pong][kind];
                (header(opcode, true, masked.then_some(key)), data)
            })
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity_in_any_chunking(
            masked in any::<bool>(),
            frames in proptest::collection::vec(prop_oneof![arb_frame(true), arb_control(true)], 1..8),
            chunks in proptest::collection::vec(1usize..300, 1..20),
        ) {
            let side = if masked { Side::Server } else { Side::Client };
            let mut wire = BytesMut::new();
            let mut expected = Vec::new();
            for (mut h, data) in frames {
                if !masked { h.mask = None; }
                encode_frame(h, &data, &mut wire);
                h.payload_len = data.len() as u64;
                expected.push((h, data));
            }
            for chunking in [&chunks[..], &[1][..], &[usize::MAX][..]] {
                let got = decode_stream(side, &wire, chunking).unwrap();
                prop_assert_eq!(got.len(), expected.len());
                for (frame, (h, data)) in got.iter().zip(&expected) {
                    prop_assert_eq!(&frame.header, h);
                    prop_assert_eq!(&frame.payload[..], &data[..]);
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_nor_overbuffer(
            bytes in proptest::collection::vec(any::<u8>(), 0..2000),
            side in prop_oneof![Just(Side::Client), Just(Side::Server)],
        ) {
            let mut decoder = FrameDecoder::new(side, 256);
            let mut buf = BytesMut::new();
            for b in bytes {
                buf.extend_from_slice(&[b]);
                match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => prop_assert!(frame.payload.len() <= 256),
                    Ok(None) => prop_assert!(buf.len() <= 256 + super::super::MAX_HEADER_LEN),
                    Err(_) => break,
                }
            }
        }
    }
}
