//! The permessage-deflate codec of RFC 7692 §7.2 for one connection, over miniz_oxide.
//!
//! - **Sending** (§7.2.1): a message is compressed as raw DEFLATE, flushed with an empty
//!   stored block, and those four last bytes `00 00 ff ff` are removed. With context
//!   takeover the compressor is kept for the next message; without it, it is dropped at
//!   the end of every message and allocated again for the next compressed one, so an
//!   idle connection holds no compressor.
//! - **Receiving** (§7.2.2): the payload is inflated as it arrives, frame by frame, with
//!   `00 00 ff ff` appended at the end of the message, in steps of at most the window
//!   (≤ 32 KiB of output each), and every step is handed to a sink that may refuse it (the
//!   message limit, the UTF-8 check), so inflating stops as soon as a limit is crossed.
//!   Without context takeover the decompressor and its window are dropped at the end of
//!   every message.
//!
//! # Window bits
//!
//! Our compressor (miniz_oxide) always keeps a 32 KiB window (15 bits) and has no way to
//! look back less far. When the agreement limits our side to `bits` < 15, the compressor
//! starts a fresh context every `2^bits` bytes of input (a sync flush, then a reset), so
//! no match can reach further back than the agreed window: the output stays one valid
//! DEFLATE stream, the peer's window is never exceeded, and only the ratio suffers (and
//! the reset's cost, about 230 KiB of memory cleared every `2^bits` bytes). An agreed 8 is
//! honoured as 8 (256 bytes) on our side.
//!
//! Our decompressor keeps a window of exactly `2^bits` bytes, `bits` being the window the
//! peer agreed to use, so a small negotiated window is memory saved. An agreed 8 counts
//! as 9: zlib cannot compress with a 256-byte window and silently uses 512 bytes when
//! asked for 8, so a zlib peer that agreed to 8 may refer up to 512 bytes back. A peer
//! that refers further back than the window fails the connection (1007).
//!
//! # Memory
//!
//! A compressor costs [`COMPRESSOR_BYTES`] (about 312 KiB: miniz_oxide's hash chains,
//! dictionary, LZ code and output buffers, whatever the level); a decompressor costs
//! [`INFLATER_STATE_BYTES`] plus its window. [`DeflateMemory`] reports what a connection
//! holds now.

use alloc::boxed::Box;
use alloc::vec;
use bytes::{Bytes, BytesMut};
use miniz_oxide::deflate::core::{
    compress_to_output, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};
use miniz_oxide::inflate::core::inflate_flags::TINFL_FLAG_HAS_MORE_INPUT;
use miniz_oxide::inflate::core::{decompress, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

use crate::handshake::{DeflateConfig, DeflateParams};
use crate::Side;

/// The empty stored block that ends every compressed message, removed by the sender and
/// appended by the receiver (RFC 7692 §7.2.1, §7.2.2).
pub(crate) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Heap and inline bytes of one miniz_oxide 0.8 compressor: its inline LZ code buffer
/// (64 KiB) and state, plus its boxes: the dictionary (32 KiB + 258), the hash and chain
/// tables (2 × 64 KiB), the output buffer (83 KiB) and the Huffman tables (4320 bytes).
/// Computed from miniz_oxide 0.8's buffer sizes (the workspace pins 0.8), not measured
/// at the allocator: the core forbids the `unsafe` a counting allocator needs.
pub const COMPRESSOR_BYTES: usize =
    core::mem::size_of::<CompressorOxide>() + 33_026 + 2 * 65_536 + 85_196 + 4_320;

/// Bytes of one decompressor's state (Huffman tables and bit buffer), its window aside.
pub const INFLATER_STATE_BYTES: usize = core::mem::size_of::<InflateState>();

/// The memory a connection's permessage-deflate codec holds now, as
/// [`Connection::deflate_memory`](crate::Connection::deflate_memory) reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeflateMemory {
    /// Bytes held by the compressor: [`COMPRESSOR_BYTES`] while one exists, else 0.
    pub compressor: usize,
    /// Bytes held by the decompressor: its state and its window, while one exists.
    pub decompressor: usize,
}

impl DeflateMemory {
    /// Both together.
    pub fn total(&self) -> usize {
        self.compressor + self.decompressor
    }
}

/// A compressed message could not be inflated, or the sink refused its output.
#[derive(Debug)]
pub(crate) enum InflateError<E> {
    /// The data is not valid DEFLATE, or refers back past the window.
    Corrupt,
    /// The sink refused a step of output.
    Sink(E),
}

/// Both directions of one connection's codec, set up from the handshake's agreement.
pub(crate) struct Deflate {
    pub(crate) params: DeflateParams,
    pub(crate) config: DeflateConfig,
    pub(crate) tx: Deflater,
    pub(crate) rx: Inflater,
}

impl Deflate {
    /// The codec for `side` under the agreed `params` and our policy `config`.
    pub(crate) fn new(side: Side, params: DeflateParams, config: &DeflateConfig) -> Self {
        let (our_reset, our_bits, peer_reset, peer_bits) = match side {
            Side::Server => (
                params.server_no_context_takeover,
                params.server_max_window_bits,
                params.client_no_context_takeover,
                params.client_max_window_bits,
            ),
            Side::Client => (
                params.client_no_context_takeover,
                params.client_max_window_bits,
                params.server_no_context_takeover,
                params.server_max_window_bits,
            ),
        };
        Deflate {
            params,
            config: config.clone(),
            // Our policy may drop the compressor after every message even where the
            // agreement lets us keep it: a compressor may always start afresh.
            tx: Deflater::new(config.level, our_reset || !config.keep_compressor, our_bits),
            rx: Inflater::new(peer_bits, peer_reset),
        }
    }

    /// What both directions hold now.
    pub(crate) fn memory(&self) -> DeflateMemory {
        DeflateMemory {
            compressor: self.tx.memory(),
            decompressor: self.rx.memory(),
        }
    }

    /// Frees both directions' state: the connection is over.
    pub(crate) fn release(&mut self) {
        self.tx.state = None;
        self.rx.state = None;
    }
}

/// The settings a compressor that keeps no context between messages compresses with:
/// two such compressors with equal keys turn the same message into the same bytes, so
/// a server's fan-out compresses it once for all of them
/// ([`Connection::prepare_compressed`](super::Connection::prepare_compressed)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ShareKey {
    level: u8,
    bits: u8,
}

impl ShareKey {
    /// `payload` as one whole message from a fresh compressor with these settings, its
    /// `00 00 ff ff` tail removed: what every connection with this key would send.
    /// Allocates a compressor (about 312 KiB) for the call, and the output.
    pub(crate) fn compress(self, payload: &[u8]) -> Bytes {
        Deflater::new(self.level, true, self.bits).compress(&[payload], true)
    }
}

/// Our direction: compresses the messages we send.
pub(crate) struct Deflater {
    flags: u32,
    /// `Some` when every message starts from a fresh context (`reset`).
    share: Option<ShareKey>,
    /// Our `*_no_context_takeover`: a fresh context for every message.
    reset: bool,
    /// `2^bits` when the agreement limits our window below miniz_oxide's 15 bits: the
    /// most input one context may cover (see the module docs).
    limit: Option<usize>,
    /// Bytes of input the current context has covered (counted only under `limit`).
    covered: usize,
    state: Option<Box<CompressorOxide>>,
}

impl Deflater {
    /// A compressor at `level` that resets after every message if `reset`, and uses at
    /// most a window of `bits` bits (8–15; more counts as 15).
    fn new(level: u8, reset: bool, bits: u8) -> Self {
        // Negative window bits: raw DEFLATE, no zlib header or checksum.
        let flags = create_comp_flags_from_zip_params(i32::from(level.min(10)), -15, 0);
        let bits = bits.clamp(8, 15);
        Deflater {
            flags,
            share: reset.then_some(ShareKey { level, bits }),
            reset,
            limit: (bits < 15).then_some(1 << bits),
            covered: 0,
            state: None,
        }
    }

    /// The key of a compressor that starts every message afresh; `None` if it keeps
    /// its context, so each message's bytes depend on the ones before.
    pub(crate) fn share_key(&self) -> Option<ShareKey> {
        self.share
    }

    fn memory(&self) -> usize {
        if self.state.is_some() {
            COMPRESSOR_BYTES
        } else {
            0
        }
    }

    /// Compresses the next piece of a message, `parts` one after the other, flushed so
    /// that the peer can inflate all of it on arrival; `fin` ends the message, whose
    /// output then loses its `00 00 ff ff` tail (RFC 7692 §7.2.1).
    ///
    /// Allocates the output (about the input's size, less when it compresses) and, at
    /// the start of a message without a kept context, the compressor.
    pub(crate) fn compress(&mut self, parts: &[&[u8]], fin: bool) -> Bytes {
        let flags = self.flags;
        let d = self
            .state
            .get_or_insert_with(|| Box::new(CompressorOxide::new(flags)));
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut out = BytesMut::with_capacity(len / 2 + 16);
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let mut input = *part;
            loop {
                // Under a limited window, a context covers at most `limit` bytes: the
                // one before was flushed when it filled, so a reset loses nothing.
                let room = match self.limit {
                    Some(limit) if self.covered == limit && !input.is_empty() => {
                        d.reset();
                        self.covered = 0;
                        limit
                    }
                    Some(limit) => limit - self.covered,
                    None => usize::MAX,
                };
                let (now, rest) = input.split_at(input.len().min(room));
                if self.limit.is_some() {
                    self.covered += now.len();
                }
                let full = self.limit == Some(self.covered);
                let flush = if (rest.is_empty() && last) || full {
                    TDEFLFlush::Sync
                } else {
                    TDEFLFlush::None
                };
                deflate_into(d, now, flush, &mut out);
                input = rest;
                if input.is_empty() {
                    break;
                }
            }
        }
        if fin {
            // A sync flush always ends with the empty stored block; if it ever did not,
            // sending the data whole is still valid: the peer's appended tail is one
            // more empty stored block.
            if out.ends_with(&TAIL) {
                out.truncate(out.len() - TAIL.len());
            }
            if self.reset {
                self.state = None;
                self.covered = 0;
            }
        }
        out.freeze()
    }
}

/// Compresses all of `input` into `out`, then flushes as `flush` asks.
fn deflate_into(d: &mut CompressorOxide, input: &[u8], flush: TDEFLFlush, out: &mut BytesMut) {
    let mut input = input;
    loop {
        // The callback takes every byte, so one call consumes all of the input; the loop
        // only guards against a compressor that stops early.
        let (status, consumed) = compress_to_output(d, input, flush, |chunk| {
            out.extend_from_slice(chunk);
            true
        });
        input = &input[consumed.min(input.len())..];
        if input.is_empty() || status != TDEFLStatus::Okay || consumed == 0 {
            debug_assert!(input.is_empty() && status == TDEFLStatus::Okay);
            break;
        }
    }
}

/// The peer's direction: a decompressor and its window.
struct InflateState {
    decompressor: DecompressorOxide,
    /// The last `2^bits` bytes inflated, as a ring that miniz_oxide writes into.
    window: Box<[u8]>,
    /// Where the next inflated byte goes in `window`.
    pos: usize,
}

/// The peer's direction: inflates the messages we receive.
pub(crate) struct Inflater {
    window_bits: u8,
    /// The peer's `*_no_context_takeover`: every message starts a fresh context.
    reset: bool,
    state: Option<Box<InflateState>>,
}

impl Inflater {
    fn new(window_bits: u8, reset: bool) -> Self {
        Inflater {
            // zlib's 8 is really 9 (module docs).
            window_bits: window_bits.clamp(9, 15),
            reset,
            state: None,
        }
    }

    fn memory(&self) -> usize {
        match &self.state {
            Some(state) => INFLATER_STATE_BYTES + state.window.len(),
            None => 0,
        }
    }

    /// Inflates the next piece of a compressed message, handing the output to `sink` in
    /// steps of at most the window size (≤ 32 KiB), and stops at the first step the
    /// sink refuses.
    ///
    /// A final block (BFINAL, which RFC 7692 §7.2.3.4 allows as a flush) ends one DEFLATE
    /// stream; whatever follows it, in this message or the next, is inflated as a new
    /// stream over the same window.
    ///
    /// Allocates the decompressor and its window at the start of a message without a
    /// kept context.
    pub(crate) fn inflate<E>(
        &mut self,
        input: &[u8],
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), InflateError<E>> {
        let bits = self.window_bits;
        let state = self.state.get_or_insert_with(|| {
            Box::new(InflateState {
                decompressor: DecompressorOxide::new(),
                window: vec![0u8; 1 << bits].into_boxed_slice(),
                pos: 0,
            })
        });
        let mask = state.window.len() - 1;
        let mut input = input;
        loop {
            let (status, consumed, written) = decompress(
                &mut state.decompressor,
                input,
                &mut state.window,
                state.pos,
                TINFL_FLAG_HAS_MORE_INPUT,
            );
            input = &input[consumed.min(input.len())..];
            if written > 0 {
                let end = (state.pos + written).min(state.window.len());
                sink(&state.window[state.pos..end]).map_err(InflateError::Sink)?;
                state.pos = end & mask;
            }
            match status {
                TINFLStatus::HasMoreOutput => {}
                TINFLStatus::NeedsMoreInput if input.is_empty() => return Ok(()),
                TINFLStatus::NeedsMoreInput if consumed > 0 || written > 0 => {}
                TINFLStatus::Done => {
                    state.decompressor.init();
                    if input.is_empty() {
                        return Ok(());
                    }
                }
                _ => return Err(InflateError::Corrupt),
            }
        }
    }

    /// Ends a compressed message: inflates the `00 00 ff ff` tail the sender removed,
    /// then keeps the context for the next message or drops it (and its memory).
    pub(crate) fn finish<E>(
        &mut self,
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), InflateError<E>> {
        self.inflate(&TAIL, sink)?;
        if self.reset {
            self.state = None;
        }
        Ok(())
    }

    /// Drops the context after a failed message: the connection is failing anyway.
    pub(crate) fn abort(&mut self) {
        self.state = None;
    }
}

#[cfg(test)]
mod tests;
