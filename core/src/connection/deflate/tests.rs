//! The codec alone: the RFC 7692 §7.2.3 examples, round trips, bounded inflation.

use alloc::vec::Vec;

use super::*;

fn inflate_all(inflater: &mut Inflater, pieces: &[&[u8]]) -> Result<Vec<u8>, InflateError<()>> {
    let mut out = Vec::new();
    let mut sink = |step: &[u8]| -> Result<(), ()> {
        out.extend_from_slice(step);
        Ok(())
    };
    for piece in pieces {
        inflater.inflate(piece, &mut sink)?;
    }
    inflater.finish(&mut sink)?;
    Ok(out)
}

fn takeover() -> Inflater {
    Inflater::new(15, false)
}

#[test]
fn rfc7692_7_2_3_1_hello_compressed() {
    let mut d = Deflater::new(6, false, 15);
    assert_eq!(
        &d.compress(&[b"Hello"], true)[..],
        [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
    );
    let wire = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(inflate_all(&mut takeover(), &[&wire]).unwrap(), b"Hello");
    // The same message in two fragments (0x41 0x03 f2 48 cd, 0x80 0x04 c9 c9 07 00).
    assert_eq!(
        inflate_all(&mut takeover(), &[&wire[..3], &wire[3..]]).unwrap(),
        b"Hello"
    );
}

#[test]
fn rfc7692_7_2_3_2_sharing_the_window() {
    let first = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let second = [0xf2, 0x00, 0x11, 0x00, 0x00];
    let mut inflater = takeover();
    assert_eq!(inflate_all(&mut inflater, &[&first]).unwrap(), b"Hello");
    assert_eq!(inflate_all(&mut inflater, &[&second]).unwrap(), b"Hello");
    // Our compressor, keeping its context, refers back the same way.
    let mut d = Deflater::new(6, false, 15);
    assert_eq!(&d.compress(&[b"Hello"], true)[..], first);
    assert_eq!(&d.compress(&[b"Hello"], true)[..], second);
    // Without context takeover the second message stands alone.
    let mut d = Deflater::new(6, true, 15);
    assert_eq!(&d.compress(&[b"Hello"], true)[..], first);
    assert_eq!(&d.compress(&[b"Hello"], true)[..], first);
}

#[test]
fn rfc7692_7_2_3_3_no_compression_block() {
    let wire = [
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    assert_eq!(inflate_all(&mut takeover(), &[&wire]).unwrap(), b"Hello");
}

#[test]
fn rfc7692_7_2_3_4_bfinal_set() {
    let wire = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    let mut inflater = takeover();
    assert_eq!(inflate_all(&mut inflater, &[&wire]).unwrap(), b"Hello");
    // The connection goes on: later messages still inflate, with the window kept.
    let later = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(inflate_all(&mut inflater, &[&later]).unwrap(), b"Hello");
    assert_eq!(
        inflate_all(&mut inflater, &[&[0xf2, 0x00, 0x11, 0x00, 0x00]]).unwrap(),
        b"Hello"
    );
    // A new stream after a final block, in the same message.
    let mut both = Vec::from(&wire[..7]);
    both.extend_from_slice(&later);
    assert_eq!(
        inflate_all(&mut takeover(), &[&both]).unwrap(),
        b"HelloHello"
    );
}

#[test]
fn rfc7692_7_2_3_5_two_blocks_in_one_message() {
    let wire = [
        0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
    ];
    assert_eq!(inflate_all(&mut takeover(), &[&wire]).unwrap(), b"Hello");
}

#[test]
fn rfc7692_7_2_3_6_empty_message() {
    // §7.2.3.6: an empty message compressed is a single 0x00.
    assert_eq!(inflate_all(&mut takeover(), &[&[0x00]]).unwrap(), b"");
    assert_eq!(inflate_all(&mut takeover(), &[]).unwrap(), b"");
    let mut d = Deflater::new(6, false, 15);
    let empty = d.compress(&[b""], true);
    assert_eq!(inflate_all(&mut takeover(), &[&empty]).unwrap(), b"");
}

#[test]
fn corrupt_data_and_far_references_fail() {
    // BTYPE 11 is reserved.
    assert!(matches!(
        inflate_all(&mut takeover(), &[&[0xff]]),
        Err(InflateError::Corrupt)
    ));
    // "Hello" then a match 1000 bytes back: beyond a 9-bit (512-byte) window.
    let mut d = Deflater::new(6, false, 15);
    let mut data = Vec::from(&b"0123456789"[..]);
    data.extend((0..990).map(|i| (i * 7 % 251) as u8));
    data.extend_from_slice(b"0123456789");
    let wire = d.compress(&[&data], true);
    assert_eq!(inflate_all(&mut takeover(), &[&wire]).unwrap(), data);
    assert!(matches!(
        inflate_all(&mut Inflater::new(9, false), &[&wire]),
        Err(InflateError::Corrupt)
    ));
}

#[test]
fn output_comes_in_bounded_steps_and_stops_when_refused() {
    // 1 MiB of zeros compresses to about a kilobyte.
    let zeros = alloc::vec![0u8; 1 << 20];
    let wire = Deflater::new(9, true, 15).compress(&[&zeros], true);
    assert!(wire.len() < 2048, "{}", wire.len());
    for bits in [9u8, 12, 15] {
        let mut inflater = Inflater::new(bits, true);
        let mut total = 0usize;
        let mut steps = 0usize;
        let mut sink = |step: &[u8]| -> Result<(), ()> {
            assert!(step.len() <= 1 << bits);
            total += step.len();
            steps += 1;
            if total > 100_000 {
                Err(())
            } else {
                Ok(())
            }
        };
        assert!(matches!(
            inflater.inflate(&wire, &mut sink),
            Err(InflateError::Sink(()))
        ));
        assert!(total <= 100_000 + (1 << bits), "{bits}: {total}");
        assert!(steps > 1);
    }
}

#[test]
fn memory_is_held_only_as_agreed() {
    let mut d = Deflater::new(6, true, 15);
    assert_eq!(d.memory(), 0);
    let wire = d.compress(&[b"Hello Hello Hello"], false);
    assert_eq!(d.memory(), COMPRESSOR_BYTES);
    let mut tail = Vec::from(&wire[..]);
    tail.extend_from_slice(&d.compress(&[b"!"], true));
    assert_eq!(
        d.memory(),
        0,
        "no context takeover: dropped after the message"
    );
    let mut keep = Deflater::new(6, false, 15);
    keep.compress(&[b"x"], true);
    assert_eq!(keep.memory(), COMPRESSOR_BYTES);

    let mut inflater = Inflater::new(10, true);
    assert_eq!(inflater.memory(), 0);
    let mut sink = |_: &[u8]| -> Result<(), ()> { Ok(()) };
    inflater.inflate(&tail, &mut sink).unwrap();
    assert_eq!(inflater.memory(), INFLATER_STATE_BYTES + 1024);
    inflater.finish(&mut sink).unwrap();
    assert_eq!(inflater.memory(), 0);
    // 8 bits counts as 9.
    let mut small = Inflater::new(8, false);
    inflate_all(&mut small, &[&tail]).unwrap();
    assert_eq!(small.memory(), INFLATER_STATE_BYTES + 512);
}

/// An inflater whose window is exactly `bits` bits, 8 included (the codec's own counts 8
/// as 9), so a reference one byte too far fails.
fn exact(bits: u8) -> Inflater {
    Inflater {
        window_bits: bits,
        reset: false,
        state: None,
    }
}

/// Text with repeats near and far: lines that come back after 300 bytes and after 5000.
fn far_and_near() -> Vec<u8> {
    let mut data = Vec::new();
    for i in 0..400u32 {
        let line = alloc::format!("line {} of the log, status {}\n", i % 97, i % 7);
        data.extend_from_slice(line.as_bytes());
    }
    data
}

#[test]
fn a_limited_window_is_never_exceeded() {
    let data = far_and_near();
    // The full window refers further back than 512 bytes: an exact 9-bit inflater fails.
    let wide = Deflater::new(6, false, 15).compress(&[&data], true);
    assert!(matches!(
        inflate_all(&mut exact(9), &[&wide]),
        Err(InflateError::Corrupt)
    ));
    for bits in 8..=14u8 {
        let mut d = Deflater::new(6, false, bits);
        let mut inflater = exact(bits);
        // Twice, keeping the context between messages: the second message may refer
        // to the first, but never past the window. Then in pieces of odd sizes.
        for _ in 0..2 {
            let wire = d.compress(&[&data], true);
            assert!(wire.len() < data.len() / 2, "{bits}: {}", wire.len());
            assert_eq!(
                inflate_all(&mut inflater, &[&wire]).unwrap(),
                data,
                "{bits}"
            );
        }
        let pieces: Vec<&[u8]> = data.chunks(333).collect();
        let mut wire = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let fin = i + 1 == pieces.len();
            wire.extend_from_slice(&d.compress(&[piece, b"", piece], fin));
        }
        let doubled: Vec<u8> = pieces
            .iter()
            .flat_map(|p| p.iter().chain(p.iter()))
            .copied()
            .collect();
        assert_eq!(
            inflate_all(&mut inflater, &[&wire]).unwrap(),
            doubled,
            "{bits}"
        );
    }
}

#[test]
fn a_limited_window_resets_at_its_size() {
    // Exactly one window's worth, then more: the second context starts afresh.
    let mut d = Deflater::new(6, false, 9);
    let data = alloc::vec![b'a'; 512];
    let first = d.compress(&[&data], true);
    let second = d.compress(&[b"a"], true);
    let mut inflater = exact(9);
    assert_eq!(inflate_all(&mut inflater, &[&first]).unwrap(), data);
    assert_eq!(inflate_all(&mut inflater, &[&second]).unwrap(), b"a");
    // Without context takeover every message starts afresh anyway.
    let mut d = Deflater::new(6, true, 9);
    for _ in 0..3 {
        let wire = d.compress(&[&data[..300]], true);
        assert_eq!(inflate_all(&mut exact(9), &[&wire]).unwrap(), &data[..300]);
        assert_eq!(d.memory(), 0);
    }
}
