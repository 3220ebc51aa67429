//! `GET /ws`: the upgrade (validated by the core's handshake, then auth and limits), and
//! the connection's thread: read, feed the core, act on messages.
//!
//! A client that offers `sockeye.v1` is served in **reliable mode**: it gets a session of
//! the server's [`SessionRegistry`](crate::SessionRegistry) (resumable after a cut) and
//! speaks the same JSON commands inside DATA envelopes; the registry's events reach the
//! hub through [`events`](super::events). Everyone else is served in **plain JSON mode**
//! (`docs/PROTOCOL.md` §10). Both modes share [`on_command`].

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use bytes::Bytes;
use sockeye_core::auth::UserId;
use sockeye_core::handshake::Request;
use sockeye_core::hub::ConnId;
use sockeye_core::session::envelope::parse_resume_header;
use sockeye_core::session::SUBPROTOCOL;
use sockeye_core::{CloseCode, Message, ServerHandshake};

use super::conn::{ConnHandle, Queued};
use super::http::{self, Head};
use super::identity::identify;
use super::log::log_at;
use super::metrics::{Metrics, Rejection};
use super::plain::{self, ClientMessage, Refused};
use super::state::Origin;
use super::Shared;
use crate::reliable::resume_value;
use crate::time;
use crate::transport::{write_timeout, Transport};

/// Bytes read from a socket at a time. Small, because every idle connection holds one;
/// a larger message simply takes more reads.
const READ_CHUNK: usize = 2048;

/// How long to wait for the client's FIN after ours.
const LINGER: Duration = Duration::from_millis(500);

/// How a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Plain JSON messages (`docs/PROTOCOL.md` §10).
    Plain,
    /// `sockeye.v1`: the same JSON inside DATA envelopes of a resumable session.
    Reliable,
}

/// Chooses the mode for an upgrade request that offered `protocols`: reliable if it
/// offered `sockeye.v1`, plain JSON otherwise.
fn choose_mode<'a>(mut protocols: impl Iterator<Item = &'a str>) -> Mode {
    if protocols.any(|p| p == SUBPROTOCOL) {
        Mode::Reliable
    } else {
        Mode::Plain
    }
}

fn refuse(shared: &Shared, stream: TcpStream, status: u16, answer: &[u8]) {
    shared.metrics.reject(Rejection::from_status(status));
    log_at!(Debug, "upgrade refused with {status}");
    http::answer_and_close(stream, answer);
}

/// Serves a request for `/ws` whose head (and maybe first frames) is in `buf`.
///
/// The upgrade runs in its own frame ([`upgrade`]), gone before a plain connection settles
/// in: a thread's stack pages stay resident once touched, so what sits on the stack above
/// an idle connection's [`drive`] costs every connection for its whole life.
pub(super) fn serve(shared: &Shared, stream: TcpStream, head: Head, buf: Vec<u8>) {
    if let Some((handle, stream)) = upgrade(shared, stream, head, buf) {
        drive(shared, &handle, stream);
        shared.state.disconnect(handle.id, &shared.metrics);
        Metrics::add(&shared.metrics.connections_closed, 1);
        log_at!(Debug, "connection {} closed", handle.id.0);
    }
}

/// Validates the upgrade (the core's handshake, then auth) and, in plain mode, checks the
/// limits, accepts and registers the connection with the hub: the connection to drive.
/// `None` if it was refused (answered already), or if it was a `sockeye.v1` connection,
/// served to its end by [`serve_reliable`]. Each step runs in a frame of its own, so the
/// deepest point of the stack is one step's, not all of them at once.
#[inline(never)]
fn upgrade(
    shared: &Shared,
    stream: TcpStream,
    head: Head,
    buf: Vec<u8>,
) -> Option<(Arc<ConnHandle>, TcpStream)> {
    if shared
        .shutting_down
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        let answer = http::text(503, "server shutting down");
        refuse(shared, stream, 503, &answer);
        return None;
    }
    let request = match handshake(shared, &buf) {
        Ok(request) => request,
        Err((status, answer)) => {
            refuse(shared, stream, status, &answer);
            return None;
        }
    };
    // The head's bytes now live on in `request` (frames that followed it included); free
    // ours before the connection settles in for a long life.
    drop(buf);
    let user = match identify(&shared.config, &head) {
        Ok(user) => user,
        Err(why) => {
            refuse(shared, stream, 401, &http::text(401, &why));
            return None;
        }
    };
    drop(head);
    if choose_mode(request.protocols()) == Mode::Reliable {
        serve_reliable(shared, stream, request, user);
        return None;
    }
    register(shared, stream, request, user)
}

/// The core validates the upgrade from the bytes of the head (method, version, key, ...):
/// the request, or the status and answer to refuse it with.
#[inline(never)]
fn handshake(shared: &Shared, buf: &[u8]) -> Result<Request, (u16, Bytes)> {
    let now = time::now();
    let mut handshake = ServerHandshake::new(&shared.ws_config, now);
    match handshake.handle_bytes(now, buf) {
        Ok(Some(request)) => Ok(request),
        Ok(None) => Err((400, http::text(400, "malformed http head").into())),
        Err(e) => Err((e.status(), e.response())),
    }
}

/// A plain-mode connection of `user`: checks the limits, accepts the upgrade and registers
/// the connection with the hub, which queues the welcome (and any mailbox) behind the 101.
#[inline(never)]
fn register(
    shared: &Shared,
    stream: TcpStream,
    request: Request,
    user: UserId,
) -> Option<(Arc<ConnHandle>, TcpStream)> {
    if let Err(refusal) = shared.state.admit(&user) {
        let answer = http::text(503, &format!("{refusal}"));
        refuse(shared, stream, 503, &answer);
        return None;
    }
    let handle = match accept(shared, request, &user, &stream) {
        Ok(handle) => handle,
        Err(e) => {
            // Out of descriptors for the write half, most likely: the client hears why.
            if super::is_out_of_descriptors(&e) {
                shared.out_of_descriptors(&e);
            } else {
                log_at!(Warn, "cannot set up a connection: {e}");
            }
            let answer = http::text(503, "server busy: cannot take a connection now");
            refuse(shared, stream, 503, &answer);
            return None;
        }
    };
    shared.descriptors_again();
    let id = handle.id;
    // The 101 is still queued in the core: a refusal here (another connection of the same
    // user won the last slot) can still be answered 503.
    if let Err(refusal) =
        shared
            .state
            .connect(&handle, plain::welcome(user.as_str()), &shared.metrics)
    {
        let answer = http::text(503, &format!("{refusal}"));
        refuse(shared, stream, 503, &answer);
        return None;
    }
    log_at!(
        Debug,
        "connection {} open for user {:?} (plain mode)",
        id.0,
        user.as_str()
    );
    Some((handle, stream))
}

/// Accepts the upgrade (the core queues the 101) into a new connection of `user` on the
/// write half of `stream`. Out of line: the connection is built here, by value.
#[inline(never)]
fn accept(
    shared: &Shared,
    request: Request,
    user: &UserId,
    stream: &TcpStream,
) -> io::Result<Arc<ConnHandle>> {
    let conn = request.accept(time::now(), None, shared.ws_config.clone());
    let id = shared.state.next_conn_id();
    let writer = stream.try_clone()?;
    ConnHandle::new(
        id,
        user.clone(),
        conn,
        writer,
        shared.config.max_queue_bytes,
    )
}

/// Serves a `sockeye.v1` connection of authenticated `user`: checks the limits, attaches
/// a session (new, or resumed if the client owns it), registers it with the hub, and
/// drives it until it ends; the session then waits for a resume. Out of line: its frame
/// is large, and the plain connections' stacks have no room for it.
#[inline(never)]
fn serve_reliable(shared: &Shared, stream: TcpStream, request: Request, user: UserId) {
    // A session belongs to the user who opened it: nobody else may resume it.
    let claimed = resume_value(&request)
        .and_then(|value| parse_resume_header(&value).ok())
        .map(|resume| resume.session_id);
    // Someone else's session is answered as an unknown one (`docs/PROTOCOL.md` §6.3): a
    // new session, refused "unknown", so the answer does not tell that the id exists.
    let mut takes_over = false;
    let mut may_resume = true;
    if let Some(session) = claimed {
        if let Some(owner) = shared.state.session_owner(session) {
            may_resume = owner == user;
            takes_over = may_resume && shared.state.session_conn(session).is_some();
        }
    }
    // A resume that takes over a connection the server has not seen drop yet replaces
    // it rather than adding one; `connect_reliable` checks the limits again either way.
    if !takes_over {
        if let Err(refusal) = shared.state.admit(&user) {
            let answer = http::text(503, &format!("{refusal}"));
            return refuse(shared, stream, 503, &answer);
        }
    }
    let transport = match Transport::new(stream, write_timeout(&shared.ws_config)) {
        Ok(transport) => transport,
        Err(e) => {
            log_at!(Warn, "cannot set up a connection: {e}");
            return;
        }
    };
    let conn = match shared.registry.attach(
        transport,
        request,
        &shared.ws_config,
        user.as_str(),
        may_resume,
    ) {
        Ok(conn) => conn,
        Err(e) => {
            // Answered already (400 for a malformed resume value, 503 for a full store).
            let status = match &e {
                crate::Error::Store(e) => e.status(),
                _ => 400,
            };
            shared.metrics.reject(Rejection::from_status(status));
            log_at!(Debug, "reliable upgrade refused: {e}");
            return;
        }
    };
    let session = conn.session_id();
    let id = shared.state.next_conn_id();
    if let Err(refusal) = shared
        .state
        .connect_reliable(id, &user, session, &shared.metrics)
    {
        // Another connection of the user won the last slot after `admit`: the 101 is on
        // its way already, so the refusal is a close; the session waits for a resume.
        log_at!(
            Debug,
            "reliable connection refused after upgrade: {refusal}"
        );
        shared.registry.disconnect(session, CloseCode::new(1013));
        let _ = conn.run();
        return;
    }
    log_at!(
        Debug,
        "connection {} open for user {:?} (reliable mode)",
        id.0,
        user.as_str()
    );
    if let Err(e) = conn.run() {
        log_at!(Debug, "reliable connection {} ended: {e}", id.0);
    }
    // Not at once: the event thread may still act on commands this connection's session
    // delivered just before the end.
    super::events::connection_ended(shared, id);
    Metrics::add(&shared.metrics.connections_closed, 1);
    log_at!(Debug, "connection {} closed", id.0);
}

/// The connection's thread: waits for bytes or the core's next deadline, feeds the core,
/// acts on the messages it yields, until the connection is over. Out of line, so its
/// locals are not added to the frame that stays under the upgrade.
#[inline(never)]
fn drive(shared: &Shared, handle: &Arc<ConnHandle>, mut stream: TcpStream) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut messages = Vec::new();
    let mut read_timeout = None;
    let mut eof = false;
    loop {
        let (finished, deadline) = {
            let mut w = handle.lock();
            let now = time::now();
            if w.conn.poll_timeout().is_some_and(|d| d <= now) {
                w.conn.handle_timeout(now);
            }
            w.take_events(&mut messages);
            w.try_flush();
            if !w.has_pending() {
                // Most connections sit idle for long: keep no buffer while they do.
                w.conn.release_idle_buffers();
            }
            if w.is_finished() || eof {
                w.finish();
                (true, None)
            } else {
                (false, w.next_deadline())
            }
        };
        for message in messages.drain(..) {
            on_plain_message(shared, handle, message);
        }
        if finished {
            break;
        }
        let timeout = deadline.map(time::until);
        if timeout != read_timeout && stream.set_read_timeout(timeout).is_ok() {
            read_timeout = timeout;
        }
        let input = stream.read(&mut buf);
        let mut w = handle.lock();
        let now = time::now();
        match input {
            Ok(0) => {
                w.conn.handle_eof(now);
                eof = true;
            }
            Ok(n) => w.conn.handle_bytes(now, &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => {
                w.conn.handle_eof(now);
                eof = true;
            }
        }
    }
    if !eof {
        linger(&mut stream, &mut buf);
    }
}

/// After our FIN, reads and discards until the client's FIN (or [`LINGER`]), so bytes it
/// still sends do not turn into a reset that could destroy our close frame.
fn linger(stream: &mut TcpStream, buf: &mut [u8]) {
    let deadline = StdInstant::now() + LINGER;
    let _ = stream.set_read_timeout(Some(LINGER));
    while StdInstant::now() < deadline {
        match stream.read(buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// One message from a plain-mode client.
fn on_plain_message(shared: &Shared, handle: &Arc<ConnHandle>, message: Message) {
    let Message::Text(text) = message else {
        Metrics::add(&shared.metrics.messages_in, 1);
        handle.close(
            CloseCode::UNSUPPORTED_DATA,
            "binary messages are not supported in plain JSON mode",
        );
        return;
    };
    match on_command(shared, handle.id, &text, None) {
        Err(why) => handle.close(CloseCode::POLICY_VIOLATION, why),
        Ok(Some(reply)) => {
            if handle.send_text(reply) == Queued::SlowConsumer {
                Metrics::add(&shared.metrics.slow_consumers, 1);
            }
        }
        Ok(None) => {}
    }
}

/// One JSON command (`docs/PROTOCOL.md` §10) from connection `id`, in either mode: acts
/// on it and returns the reply to send back, if any. `Err` is a violation: close the
/// connection 1008 with that reason.
///
/// `origin` is the reliable message (session, sequence number) the command came in: it
/// is journaled as delivered with the command's effects.
pub(super) fn on_command(
    shared: &Shared,
    id: ConnId,
    text: &[u8],
    origin: Origin,
) -> Result<Option<String>, &'static str> {
    let metrics = &shared.metrics;
    Metrics::add(&metrics.messages_in, 1);
    Ok(match plain::parse(text) {
        Err(Refused::Violation(why)) => return Err(why),
        Err(Refused::Error(why)) => Some(plain::error(why)),
        Ok(ClientMessage::Join { room }) => match shared.state.join(id, &room, origin, metrics) {
            Ok(members) => Some(plain::joined(&room, members.iter().map(UserId::as_str))),
            Err(e) => Some(plain::error(&e.to_string())),
        },
        Ok(ClientMessage::Leave { room }) => match shared.state.leave(id, &room, origin, metrics) {
            Ok(()) => Some(plain::left(&room)),
            Err(e) => Some(plain::error(&e.to_string())),
        },
        Ok(ClientMessage::ToRoom { room, data }) => shared
            .state
            .publish(id, &room, Bytes::from(data), origin, metrics)
            .err()
            .map(|e| plain::error(&e.to_string())),
        Ok(ClientMessage::ToUser { to, data }) => shared
            .state
            .send_to_user(id, &UserId(to), Bytes::from(data), origin, metrics)
            .err()
            .map(|e| plain::error(&e.to_string())),
    })
}
