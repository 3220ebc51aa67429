//! The one thread that takes the reliable sessions' events ([`SessionRegistry::next_events`])
//! and acts on them: commands from clients go to the hub (the same JSON as plain mode,
//! through [`on_command`]), and resumes and dead letters are counted.
//!
//! The server's sessions confirm deliveries (`SessionConfig::confirm_deliveries`): a
//! client's command is acknowledged only after the hub acted on it and the journal holds
//! what it did, so an acknowledged command survives a crash. Each batch of events is
//! confirmed at once, after it was acted on ([`SessionRegistry::confirm`]).

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use sockeye_core::hub::ConnId;
use sockeye_core::{CloseCode, Seq, SessionEvent, SessionId};

use super::log::log_at;
use super::metrics::Metrics;
use super::ws::on_command;
use super::Shared;

/// Events taken at once.
const BATCH: usize = 64;

/// How long one wait for events lasts, so the thread notices the server stopping.
const WAIT: Duration = Duration::from_millis(100);

/// Takes the registry's events until the server stops.
pub(super) fn event_loop(shared: &Shared) {
    let mut events = Vec::with_capacity(BATCH);
    let mut acted = Vec::with_capacity(BATCH);
    while !shared.stopped.load(Ordering::SeqCst) {
        shared.registry.next_events(Some(WAIT), BATCH, &mut events);
        act_on(shared, &mut events, &mut acted);
        take_out_ended(shared, &mut events, &mut acted);
    }
}

/// Acts on `events`, then confirms the client commands among them to their sessions.
fn act_on(
    shared: &Shared,
    events: &mut Vec<(SessionId, SessionEvent)>,
    acted: &mut Vec<(SessionId, Seq)>,
) {
    for (session, event) in events.drain(..) {
        if let SessionEvent::Delivered { seq, .. } = &event {
            acted.push((session, *seq));
        }
        on_event(shared, session, event);
    }
    if !acted.is_empty() {
        shared.registry.confirm(acted);
        acted.clear();
    }
}

/// Takes the reliable connections that ended out of the hub, but only after acting on
/// every event queued before they ended: a client's last commands, delivered just
/// before its connection dropped, still count as its connection's.
fn take_out_ended(
    shared: &Shared,
    events: &mut Vec<(SessionId, SessionEvent)>,
    acted: &mut Vec<(SessionId, Seq)>,
) {
    let ended = std::mem::take(&mut *shared.ended.lock().unwrap_or_else(|p| p.into_inner()));
    if ended.is_empty() {
        return;
    }
    // Everything those connections' sessions delivered is queued by now.
    while shared
        .registry
        .next_events(Some(Duration::ZERO), BATCH, events)
        > 0
    {
        act_on(shared, events, acted);
    }
    for id in ended {
        shared.state.disconnect(id, &shared.metrics);
    }
}

/// A reliable connection `id` ended: the event thread takes it out of the hub soon
/// (see [`take_out_ended`]).
pub(super) fn connection_ended(shared: &Shared, id: ConnId) {
    shared
        .ended
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(id);
}

fn on_event(shared: &Shared, session: SessionId, event: SessionEvent) {
    let metrics = &shared.metrics;
    match event {
        SessionEvent::Delivered {
            seq,
            payload,
            is_text,
        } => on_delivered(shared, session, seq, &payload, is_text),
        SessionEvent::DeadLetter {
            reason,
            possibly_delivered,
            ..
        } => {
            Metrics::add(&metrics.dead_letters, 1);
            log_at!(
                Debug,
                "dead letter in a reliable session: {reason:?} (possibly delivered: {possibly_delivered})"
            );
        }
        SessionEvent::Resumed { .. } => Metrics::add(&metrics.resumes, 1),
        SessionEvent::SessionLost { session_id, reason } => {
            log_at!(Debug, "reliable session lost: {reason:?}");
            shared.state.forget_session(session_id);
        }
        _ => {}
    }
}

/// A client's command, delivered by its session exactly once and in order.
fn on_delivered(shared: &Shared, session: SessionId, seq: Seq, payload: &[u8], is_text: bool) {
    let Some(conn) = shared.state.session_conn(session) else {
        // The connection left the hub (a slow consumer, a race with its end): the
        // command cannot be attributed to a live connection.
        Metrics::add(&shared.metrics.dead_letters, 1);
        log_at!(Debug, "command from a session without a connection dropped");
        return;
    };
    if !is_text {
        Metrics::add(&shared.metrics.messages_in, 1);
        shared
            .registry
            .disconnect(session, CloseCode::UNSUPPORTED_DATA);
        return;
    }
    match on_command(shared, conn, payload, Some((session, seq))) {
        Err(why) => {
            log_at!(Debug, "reliable connection {} closed: {why}", conn.0);
            shared
                .registry
                .disconnect(session, CloseCode::POLICY_VIOLATION);
        }
        Ok(Some(reply)) => {
            if shared
                .registry
                .send(session, Bytes::from(reply), true)
                .is_err()
            {
                Metrics::add(&shared.metrics.slow_consumers, 1);
                shared
                    .registry
                    .disconnect(session, CloseCode::POLICY_VIOLATION);
            }
        }
        Ok(None) => {}
    }
}
