//! Masking (RFC 6455 §5.3): XOR with a 4-byte key, cycling.
//!
//! Unmasking touches every payload byte, so it dominates large messages. This works on
//! 64-byte blocks with a pre-rotated key the compiler turns into wide vector XORs, without
//! `unsafe`. [`put_masked`] does the same while copying, so bytes that must move anyway
//! are unmasked in the same pass.

use bytes::BufMut;

/// Bytes masked per step: the compiler unrolls a 64-byte XOR into full-width vector ops.
const BLOCK: usize = 64;

/// `key` rotated to start at payload byte `offset`.
#[inline]
fn rotated(key: [u8; 4], offset: usize) -> [u8; 4] {
    // Byte i of the little-endian word is key[i]; rotating right by one byte makes byte i
    // key[i + 1], which is where a payload resumed at an offset of 1 stands in the key.
    u32::from_le_bytes(key)
        .rotate_right(8 * (offset % 4) as u32)
        .to_le_bytes()
}

/// `key` repeated over a block. Built only for payloads of a block or more, and from
/// whole words, not byte by byte: this runs for every frame, and a 64-iteration byte loop
/// here cost more than masking a small payload.
fn wide(key: [u8; 4]) -> [u8; BLOCK] {
    let mut wide = [0u8; BLOCK];
    for w in wide.chunks_exact_mut(4) {
        w.copy_from_slice(&key);
    }
    wide
}

/// XORs `buf` with `key`, where `buf[0]` is byte `offset` of the payload.
///
/// Masking twice with the same key and offset is the identity. `offset` lets a payload be
/// unmasked in pieces as its bytes arrive.
///
/// Inlined: most frames are small, and a payload under a block costs only a few word
/// XORs, less than a call. Blocks are masked out of line.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotated(key, offset);
    let rest = if buf.len() >= BLOCK {
        mask_blocks(buf, key)
    } else {
        buf
    };
    mask_tail(rest, key);
}

/// Masks the whole blocks at the front of `buf` with `key` (already rotated) and returns
/// the bytes after them.
fn mask_blocks(buf: &mut [u8], key: [u8; 4]) -> &mut [u8] {
    let wide = wide(key);
    let mut blocks = buf.chunks_exact_mut(BLOCK);
    for block in &mut blocks {
        for (b, k) in block.iter_mut().zip(wide.iter()) {
            *b ^= *k;
        }
    }
    blocks.into_remainder()
}

/// Appends `src` to `dst` masked with `key`, where `src[0]` is byte `offset` of the
/// payload: the same bytes as copying and then [`apply_mask`], in one pass over memory.
pub fn put_masked(dst: &mut impl BufMut, src: &[u8], key: [u8; 4], offset: usize) {
    let key = rotated(key, offset);
    let mut rest = src;
    if rest.len() >= BLOCK {
        let wide = wide(key);
        let mut blocks = rest.chunks_exact(BLOCK);
        for block in &mut blocks {
            let mut out = [0u8; BLOCK];
            for ((o, b), k) in out.iter_mut().zip(block).zip(wide.iter()) {
                *o = *b ^ *k;
            }
            dst.put_slice(&out);
        }
        rest = blocks.remainder();
    }
    let mut out = [0u8; BLOCK];
    let out = &mut out[..rest.len()];
    out.copy_from_slice(rest);
    mask_tail(out, key);
    dst.put_slice(out);
}

/// Masks the bytes after the last whole block with `key` already rotated: whole words,
/// then one half word, then at most three bytes. A 16-byte payload is two XORs.
#[inline]
fn mask_tail(rest: &mut [u8], key: [u8; 4]) {
    // The same four bytes twice, in either byte order.
    let half = u32::from_ne_bytes(key);
    let key_word = u64::from(half) | (u64::from(half) << 32);
    let mut words = rest.chunks_exact_mut(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(w) ^ key_word).to_ne_bytes());
    }
    let mut rest = words.into_remainder();
    if rest.len() >= 4 {
        let (word, after) = rest.split_at_mut(4);
        let mut w = [0u8; 4];
        w.copy_from_slice(word);
        word.copy_from_slice(&(u32::from_ne_bytes(w) ^ half).to_ne_bytes());
        rest = after;
    }
    for (b, k) in rest.iter_mut().zip(key) {
        *b ^= k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn rfc6455_5_7_masked_hello() {
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }

    proptest! {
        #[test]
        fn matches_bytewise_masking(data in proptest::collection::vec(any::<u8>(), 0..300),
                                    key in any::<[u8; 4]>(), offset in 0usize..16) {
            let mut fast = data.clone();
            let mut slow = data.clone();
            apply_mask(&mut fast, key, offset);
            naive(&mut slow, key, offset);
            prop_assert_eq!(fast, slow);
        }

        #[test]
        fn put_masked_equals_copy_then_mask(data in proptest::collection::vec(any::<u8>(), 0..300),
                                            key in any::<[u8; 4]>(), offset in 0usize..16) {
            let mut copied = data.clone();
            apply_mask(&mut copied, key, offset);
            let mut put = Vec::from(&b"head"[..]);
            put_masked(&mut put, &data, key, offset);
            prop_assert_eq!(&put[..4], b"head");
            prop_assert_eq!(&put[4..], &copied[..]);
        }

        #[test]
        fn masking_twice_is_identity(data in proptest::collection::vec(any::<u8>(), 0..300),
                                     key in any::<[u8; 4]>(), offset in 0usize..16) {
            let mut buf = data.clone();
            apply_mask(&mut buf, key, offset);
            apply_mask(&mut buf, key, offset);
            prop_assert_eq!(buf, data);
        }

        #[test]
        fn masking_in_pieces_equals_masking_whole(data in proptest::collection::vec(any::<u8>(), 0..300),
                                                  key in any::<[u8; 4]>(), cut in 0usize..300) {
            let cut = cut.min(data.len());
            let mut whole = data.clone();
            apply_mask(&mut whole, key, 0);
            let mut pieces: Vec<u8> = data.clone();
            let (a, b) = pieces.split_at_mut(cut);
            apply_mask(a, key, 0);
            apply_mask(b, key, cut);
            prop_assert_eq!(whole, pieces);
        }
    }
}
