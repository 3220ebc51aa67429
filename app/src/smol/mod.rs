//! The `smol` runtime (`--runtime smol`): one thread runs an `async-io` reactor and a
//! single-thread executor; the server layer lives there, and every connection is a task.
//!
//! Why one thread: the layer decides everything and is cheap to drive, so a second core
//! is better spent on the kernel's TCP work and on the journal's `fsync` (its own
//! thread, as in the threads runtime). What an idle connection costs is its socket's
//! registration, a small task and the layer's own state: reads go into one buffer
//! shared by every connection, and bytes are taken from the layer only when the socket
//! can take them, so no connection holds a buffer while it has nothing to move. Writes
//! wait for the flusher task, so what arrives together leaves in one write per
//! connection.

mod conn;
mod state;

use std::future::Future;
use std::net::TcpStream;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::thread::{self, JoinHandle};

use async_channel::{Receiver, Sender};
use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use futures_lite::future;

use crate::descriptors::out_of_descriptors;
use crate::{journal, Parts};
use sockeye_std::accept::{is_out_of_descriptors, Spare, ACCEPT_BACKOFF};
use state::{Shared, State};

/// The thread of a running server and how to tell it to stop.
pub(crate) struct Handle {
    shutdown: Sender<()>,
    thread: JoinHandle<usize>,
}

impl Handle {
    /// Shuts the layer down gracefully and waits for the thread (the number of
    /// connections still open when it gave up waiting).
    pub(crate) fn stop(self) -> usize {
        let _ = self.shutdown.send_blocking(());
        self.thread.join().unwrap_or(0)
    }
}

pub(crate) fn start(parts: Parts) -> std::io::Result<Handle> {
    let (shutdown, shutdown_rx) = async_channel::bounded(1);
    let (commits, commits_rx) = async_channel::unbounded();
    let journal = match parts.journal {
        Some(file) => Some(journal::spawn(file, move |result| {
            commits.send_blocking(result).is_ok()
        })?),
        None => None,
    };
    let (reports, reports_rx) = async_channel::unbounded();
    let backend = match &parts.redis {
        Some(settings) => Some(crate::redis::Backend::start(settings, move |report| {
            reports.send_blocking(report).is_ok()
        })?),
        None => None,
    };
    let listener = Async::new(parts.listener)?;
    let (server, clock, grace, write_timeout) =
        (parts.server, parts.clock, parts.grace, parts.write_timeout);
    let tls = parts.tls;
    let thread = thread::Builder::new()
        .name("sockeye-smol".into())
        .spawn(move || {
            let ex = Rc::new(LocalExecutor::new());
            let (state, done) = State::new(server, clock, journal, write_timeout, backend);
            ex.spawn(cluster_loop(Rc::clone(&state), reports_rx))
                .detach();
            let main = serve(
                &ex,
                state,
                (listener, tls),
                shutdown_rx,
                commits_rx,
                done,
                grace,
            );
            async_io::block_on(ex.run(main))
        })?;
    Ok(Handle { shutdown, thread })
}

/// Runs every task until the layer stopped after a shutdown (or the shutdown gave up
/// waiting); returns how many connections were still open.
async fn serve(
    ex: &Rc<LocalExecutor<'static>>,
    state: Shared,
    (listener, tls): (Async<std::net::TcpListener>, crate::TlsConfig),
    shutdown: Receiver<()>,
    commits: Receiver<Result<(), String>>,
    done: Receiver<()>,
    grace: std::time::Duration,
) -> usize {
    let accept = ex.spawn(accept_loop(Rc::clone(ex), Rc::clone(&state), listener, tls));
    ex.spawn(timer_loop(Rc::clone(&state))).detach();
    ex.spawn(Flusher(Rc::clone(&state))).detach();
    ex.spawn(commit_loop(Rc::clone(&state), commits)).detach();
    let stopped = async {
        let _ = done.recv().await;
    };
    let shut = async {
        let _ = shutdown.recv().await;
        // Stop accepting (the listener closes with the task), then let the layer close
        // every connection; it cuts what is left after the grace, and this is the
        // backstop if even that does not end them.
        drop(accept);
        state.borrow_mut().shutdown();
        Timer::after(grace * 2).await;
    };
    future::or(stopped, shut).await;
    let open = state.borrow().open_connections();
    open
}

async fn accept_loop(
    ex: Rc<LocalExecutor<'static>>,
    state: Shared,
    listener: Async<std::net::TcpListener>,
    tls: crate::TlsConfig,
) {
    let mut spare = Spare::new();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => accept(&ex, &state, stream, &tls),
            Err(e) if is_out_of_descriptors(&e) => {
                out_of_descriptors(&e);
                spare.refuse_one(|| listener.get_ref().accept().ok().map(|(s, _)| s));
                Timer::after(ACCEPT_BACKOFF).await;
            }
            Err(e) => {
                log::warn!("accept failed: {e}");
                Timer::after(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// A new connection: the layer hears of it, and it gets a task (and its TLS session,
/// when the server serves TLS; the handshake runs in the task's reads and writes).
fn accept(
    ex: &LocalExecutor<'static>,
    state: &Shared,
    stream: Async<TcpStream>,
    tls: &crate::TlsConfig,
) {
    let _ = stream.get_ref().set_nodelay(true);
    let session = match tls {
        #[cfg(feature = "tls")]
        Some(config) => match rustls::ServerConnection::new(std::sync::Arc::clone(config)) {
            Ok(mut session) => {
                // What it buffers is bounded by the state's write batches.
                session.set_buffer_limit(None);
                Some(session)
            }
            Err(e) => {
                log::warn!("cannot start a TLS session: {e}");
                return;
            }
        },
        #[cfg(not(feature = "tls"))]
        Some(never) => match *never {},
        None => None,
    };
    let conn = state.borrow_mut().accept(stream, session);
    ex.spawn(conn::ConnTask::new(Rc::clone(state), conn))
        .detach();
}

/// Sleeps until the layer's deadline (or until it changed) and runs its timers.
async fn timer_loop(state: Shared) {
    let poke = state.borrow().timer_poke();
    loop {
        let wait = state.borrow_mut().arm_timer();
        let sleep = async {
            match wait {
                Some(wait) => {
                    Timer::after(wait).await;
                }
                None => future::pending::<()>().await,
            }
        };
        let poked = async {
            let _ = poke.recv().await;
        };
        future::or(sleep, poked).await;
        state.borrow_mut().handle_timeout();
    }
}

/// Writes the connections the layer has bytes for. The state wakes it when it lists
/// one, and the executor runs it after the tasks woken before: everything that arrived
/// together (pushes from several publishers, a read that brought many messages) is in
/// the layer by then and goes out in one write per connection.
struct Flusher(Shared);

impl Future for Flusher {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.0.borrow_mut();
        state.flush_dirty();
        state.listen_flusher(cx.waker());
        Poll::Pending
    }
}

/// Reports each journal commit the journal thread finished.
async fn commit_loop(state: Shared, commits: Receiver<Result<(), String>>) {
    while let Ok(result) = commits.recv().await {
        state.borrow_mut().committed(result);
    }
}

/// Hands the layer what the Redis threads report.
async fn cluster_loop(state: Shared, reports: Receiver<crate::redis::Report>) {
    while let Ok(report) = reports.recv().await {
        state.borrow_mut().cluster(report);
    }
}
