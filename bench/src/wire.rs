//! Test payloads and the wire bytes that carry them, built here by hand (not with the
//! codec under test) so that checking a decoder's output against them means something.

/// A deterministic pseudo-random payload (xorshift), so masking is never a no-op.
pub fn payload(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ len as u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A FIN binary frame header with the minimal length encoding (RFC 6455 §5.2).
pub fn header(len: usize, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut out = vec![0x82];
    match len {
        0..=125 => out.push(mask_bit | len as u8),
        126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    out
}

/// `count` masked client-to-server binary frames carrying `payload`, each with its own key.
pub fn masked_frames(payload: &[u8], count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * (payload.len() + 14));
    for i in 0..count {
        let key = (i as u32)
            .wrapping_mul(0x9E37_79B9)
            .wrapping_add(0x1234_5678);
        let key = key.to_be_bytes();
        out.extend_from_slice(&header(payload.len(), Some(key)));
        out.extend(payload.iter().enumerate().map(|(j, b)| b ^ key[j % 4]));
    }
    out
}

/// `count` unmasked server-to-client binary frames carrying `payload`.
pub fn unmasked_frames(payload: &[u8], count: usize) -> Vec<u8> {
    let head = header(payload.len(), None);
    let mut out = Vec::with_capacity(count * (head.len() + payload.len()));
    for _ in 0..count {
        out.extend_from_slice(&head);
        out.extend_from_slice(payload);
    }
    out
}
