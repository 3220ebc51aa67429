//! The RFC 6455 frame codec: pure functions and a small incremental decoder over byte
//! buffers. Nothing here knows about connection state; [`crate::connection`] applies the
//! rules that span frames (fragmentation, UTF-8, the closing handshake).

mod close;
mod decode;
mod encode;
mod header;
mod mask;

pub use close::{decode_close_payload, encode_close_payload, CloseCode};
pub use decode::{Frame, FrameDecoder};
pub use encode::{encode_frame, encode_frame_parts, HeaderBuf};
pub use header::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
pub use mask::{apply_mask, put_masked};
