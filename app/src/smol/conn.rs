//! One connection's task: waits until its socket is readable, writable (only while a
//! write is blocked) or until the state pokes it, and hands each to the shared state.
//! It decides nothing: the layer does, through the state.
//!
//! The task is a hand-written future rather than an `async fn`: every idle connection
//! keeps one, and this one is a few words (its id, the state, two optional timers) where
//! an `async fn` racing three futures held about 450 bytes, plus a channel of about 800
//! to poke it. The state pokes it by waking the waker it left in its [`Link`].
//!
//! [`Link`]: super::state::Link

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_io::Timer;
use sockeye_server::ConnId;

use super::state::Shared;
use crate::LINGER;

/// The task of connection `conn`.
pub(super) struct ConnTask {
    state: Shared,
    conn: ConnId,
    /// The peer may still send: its FIN or an error ends this.
    read_open: bool,
    /// While a write is blocked: when the peer counts as gone.
    stalled: Option<Timer>,
    /// After FIN: when to stop waiting for the peer's own.
    linger: Option<Timer>,
}

impl ConnTask {
    pub(super) fn new(state: Shared, conn: ConnId) -> Self {
        ConnTask {
            state,
            conn,
            read_open: true,
            stalled: None,
            linger: None,
        }
    }

    /// After FIN: reads (and drops) what the peer still sends until its own FIN, for at
    /// most [`LINGER`], so unread request bytes do not turn into a reset that eats the
    /// answer. Then the connection is forgotten and the socket closes.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let linger = self.linger.get_or_insert_with(|| Timer::after(LINGER));
        let mut s = self.state.borrow_mut();
        while self.read_open && Pin::new(&mut *linger).poll(cx).is_pending() {
            let Some(link) = s.link(self.conn) else {
                return Poll::Ready(());
            };
            match link.stream.poll_readable(cx) {
                Poll::Ready(Ok(())) => self.read_open = s.read(self.conn),
                Poll::Ready(Err(_)) => break,
                Poll::Pending => return Poll::Pending,
            }
        }
        s.forget(self.conn);
        Poll::Ready(())
    }
}

impl Future for ConnTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            let mut s = this.state.borrow_mut();
            let write_timeout: Duration = s.write_timeout;
            let Some(link) = s.link_mut(this.conn) else {
                return Poll::Ready(()); // gone: the socket closed with its link
            };
            link.listen(cx.waker());
            if link.finished {
                drop(s);
                return this.poll_linger(cx);
            }
            if this.read_open {
                match link.stream.poll_readable(cx) {
                    Poll::Ready(Ok(())) => {
                        this.read_open = s.read(this.conn);
                        continue;
                    }
                    Poll::Ready(Err(_)) => {
                        s.gone(this.conn);
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            if link.blocked {
                // A peer that takes nothing for this long is gone; keepalive would
                // have said so by then.
                let stalled = this
                    .stalled
                    .get_or_insert_with(|| Timer::after(write_timeout));
                match link.stream.poll_writable(cx) {
                    Poll::Ready(Ok(())) => {
                        this.stalled = None;
                        s.writable(this.conn);
                        continue;
                    }
                    Poll::Ready(Err(_)) => {
                        s.gone(this.conn);
                        continue;
                    }
                    Poll::Pending => {}
                }
                if Pin::new(stalled).poll(cx).is_ready() {
                    this.stalled = None;
                    s.gone(this.conn);
                    continue;
                }
            } else {
                this.stalled = None;
            }
            return Poll::Pending;
        }
    }
}
