//! Just enough of RFC 6455 for a benchmark's own clients: masked client text frames built
//! by hand (with a zero key, so the payload goes as it is) and the server's frames read
//! back from a buffer, so the load generator costs little next to the server it measures.

/// A masked client text frame with mask key 0 (the payload is sent as it is).
pub fn client_text_frame(payload: &[u8]) -> Vec<u8> {
    client_frame(0x1, payload)
}

/// A final masked client frame of `opcode` (`0xA` for a pong) with mask key 0.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let first = 0x80 | (opcode & 0x0f);
    let mut out = Vec::with_capacity(payload.len() + 14);
    match payload.len() {
        n if n < 126 => out.extend_from_slice(&[first, 0x80 | n as u8]),
        n if n <= usize::from(u16::MAX) => {
            out.extend_from_slice(&[first, 0x80 | 126]);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.extend_from_slice(&[first, 0x80 | 127]);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
    out
}

/// The upgrade request of a benchmark client for `path_and_query`.
pub fn upgrade_request(path_and_query: &str) -> String {
    format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Where the head of an HTTP answer ends in `buf` (just past the blank line), if it has.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// Calls `each(opcode, payload)` for every whole unmasked frame at the start of `buf`
/// and returns how many bytes they took; a partial frame at the end is left.
pub fn server_frames(buf: &[u8], mut each: impl FnMut(u8, &[u8])) -> usize {
    server_frames_raw(buf, |b0, payload| each(b0 & 0x0f, payload))
}

/// [`server_frames`] handing over each frame's whole first byte (FIN, RSV1–3, opcode)
/// instead of its opcode: RSV1 marks a compressed message.
pub fn server_frames_raw(buf: &[u8], mut each: impl FnMut(u8, &[u8])) -> usize {
    let mut at = 0;
    while buf.len() >= at + 2 {
        let len7 = usize::from(buf[at + 1] & 0x7f);
        let (len, head) = match len7 {
            126 if buf.len() >= at + 4 => (
                usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]])),
                4,
            ),
            127 if buf.len() >= at + 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[at + 2..at + 10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            126 | 127 => break,
            n => (n, 2),
        };
        if buf.len() < at + head + len {
            break;
        }
        each(buf[at], &buf[at + head..at + head + len]);
        at += head + len;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_back_whole_and_partial_ones_left() {
        let mut wire = vec![0x81, 3];
        wire.extend_from_slice(b"abc");
        wire.extend_from_slice(&[0x82, 126, 0x01, 0x00]);
        wire.extend_from_slice(&[7u8; 256]);
        wire.extend_from_slice(&[0x81, 5, b'x']);
        let mut seen = Vec::new();
        let used = server_frames(&wire, |op, p| seen.push((op, p.len())));
        assert_eq!(seen, [(1, 3), (2, 256)]);
        assert_eq!(used, wire.len() - 3);
        assert_eq!(
            &client_text_frame(b"hi")[..],
            &[0x81, 0x82, 0, 0, 0, 0, b'h', b'i']
        );
        assert_eq!(client_text_frame(&[b'a'; 300])[1], 0x80 | 126);
        assert_eq!(
            &client_frame(0xA, b"p")[..],
            &[0x8A, 0x81, 0, 0, 0, 0, b'p']
        );
        assert_eq!(head_end(b"HTTP/1.1 101 OK\r\n\r\nrest"), Some(19));
    }
}
