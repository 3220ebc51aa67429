//! Socket reads bounded by the core's deadline (for the handshakes and the open
//! connection alike), and the whole writes of a handshake, before a
//! [`WebSocket`](crate::WebSocket) exists.

use std::io;
use std::time::Duration;

use async_io::Timer;
use futures_lite::{future, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use sockeye_core::Instant;
use sockeye_std::Clock;

/// What one read produced.
pub(crate) enum Input {
    /// This many bytes arrived at the start of the buffer.
    Bytes(usize),
    /// The peer closed its side.
    Eof,
    /// The deadline passed first.
    Timeout,
}

/// Reads once into `buf`, or gives up at `deadline` (on `clock`).
pub(crate) async fn read(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut [u8],
    deadline: Option<Instant>,
    clock: Clock,
) -> io::Result<Input> {
    let read = async {
        loop {
            match stream.read(buf).await {
                Ok(0) => return Ok(Input::Eof),
                Ok(n) => return Ok(Input::Bytes(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    };
    let timer = async {
        passed(deadline, clock).await;
        Ok(Input::Timeout)
    };
    future::or(read, timer).await
}

/// Completes when `deadline` (on `clock`) passes; never without one.
pub(crate) async fn passed(deadline: Option<Instant>, clock: Clock) {
    match deadline {
        Some(at) => {
            Timer::at(clock.to_std(at)).await;
        }
        None => future::pending::<()>().await,
    }
}

/// Writes all of `bytes`, failing with `TimedOut` if the peer takes nothing for `limit`.
pub(crate) async fn write_all(
    stream: &mut (impl AsyncWrite + Unpin),
    bytes: &[u8],
    limit: Duration,
) -> io::Result<()> {
    let timeout = async {
        Timer::after(limit).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer took no bytes in time",
        ))
    };
    future::or(
        async {
            stream.write_all(bytes).await?;
            stream.flush().await
        },
        timeout,
    )
    .await
}
