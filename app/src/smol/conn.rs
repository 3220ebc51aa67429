//! One connection's task: waits until its socket is readable, writable (only while a
//! write is blocked) or until the state pokes it, and hands each to the shared state.
//! It decides nothing: the layer does, through the state.

use std::net::TcpStream;
use std::rc::Rc;

use async_channel::Receiver;
use async_io::{Async, Timer};
use futures_lite::future;
use sockeye_server::ConnId;

use super::state::Shared;
use crate::LINGER;

/// What woke the task.
enum Woken {
    Readable(bool),
    Writable(bool),
    Poked,
}

pub(super) async fn run(
    state: Shared,
    conn: ConnId,
    stream: Rc<Async<TcpStream>>,
    poked: Receiver<()>,
) {
    let mut read_open = true;
    loop {
        let (blocked, finished, write_timeout) = {
            let s = state.borrow();
            let Some(link) = s.link(conn) else {
                return; // gone: the socket closes with the last reference
            };
            (link.blocked, link.finished, s.write_timeout)
        };
        if finished {
            linger(&state, conn, &stream, read_open).await;
            state.borrow_mut().forget(conn);
            return;
        }
        let readable = async {
            if read_open {
                Woken::Readable(stream.readable().await.is_ok())
            } else {
                future::pending().await
            }
        };
        let writable = async {
            if blocked {
                // A peer that takes nothing for this long is gone; keepalive would
                // have said so by then.
                let ready = future::or(async { stream.writable().await.is_ok() }, async {
                    Timer::after(write_timeout).await;
                    false
                });
                Woken::Writable(ready.await)
            } else {
                future::pending().await
            }
        };
        let poke = async {
            let _ = poked.recv().await;
            Woken::Poked
        };
        let woken = future::or(readable, future::or(writable, poke)).await;
        let mut s = state.borrow_mut();
        match woken {
            Woken::Readable(true) => read_open = s.read(conn),
            Woken::Writable(true) => s.writable(conn),
            Woken::Readable(false) | Woken::Writable(false) => s.gone(conn),
            Woken::Poked => {}
        }
    }
}

/// After FIN: reads (and drops) what the peer still sends until its own FIN, for at
/// most [`LINGER`], so unread request bytes do not turn into a reset that eats the
/// answer.
async fn linger(state: &Shared, conn: ConnId, stream: &Async<TcpStream>, mut read_open: bool) {
    let drain = async {
        while read_open {
            if stream.readable().await.is_err() {
                return;
            }
            read_open = state.borrow_mut().read(conn);
        }
    };
    future::or(drain, async {
        Timer::after(LINGER).await;
    })
    .await;
}
