//! The hub and the connections it routes to, behind one lock.
//!
//! Every hub call is followed, under the same lock, by delivering what the hub handed out
//! ([`Hub::poll_outbound`]) to the connections' queues, so deliveries keep the hub's
//! order. Queuing never blocks for long (see [`conn`](super::conn)).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use sockeye_core::auth::UserId;
use sockeye_core::hub::{
    ConnId, Delivery, Hub, HubConfig, HubError, OutMessage, PushReceipt, Refusal, Target,
};
use sockeye_core::CloseCode;

use super::config::ServerConfig;
use super::conn::{ConnHandle, Queued};
use super::log::log_at;
use super::metrics::{HubGauges, Metrics};
use super::plain;
use crate::time;

/// The hub plus a handle for each of its connections.
pub(super) struct State {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
}

struct Inner {
    hub: Hub,
    conns: HashMap<u64, Arc<ConnHandle>>,
}

impl State {
    pub(super) fn new(config: &ServerConfig) -> State {
        let hub_config = HubConfig {
            max_connections: config.max_connections,
            max_connections_per_user: config.max_connections_per_user,
            mailbox_max_messages: config.mailbox_size,
            mailbox_max_age: config.mailbox_age,
            ..HubConfig::default()
        };
        State {
            inner: Mutex::new(Inner {
                hub: Hub::new(hub_config),
                conns: HashMap::new(),
            }),
            next_id: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Hub calls do not panic on any input; if one ever did, the hub is still the best
        // state we have, so keep serving rather than poison every later request.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh connection id.
    pub(super) fn next_conn_id(&self) -> ConnId {
        ConnId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Whether `user` may open one more connection now (checked before the upgrade;
    /// [`connect`](Self::connect) checks again atomically).
    pub(super) fn admit(&self, user: &UserId) -> Result<(), Refusal> {
        self.lock().hub.admit(user)
    }

    /// Registers an upgraded connection: queues `first` (the welcome) ahead of anything the
    /// hub delivers on connect (the user's mailbox).
    pub(super) fn connect(
        &self,
        handle: &Arc<ConnHandle>,
        first: String,
        metrics: &Metrics,
    ) -> Result<(), Refusal> {
        let mut inner = self.lock();
        inner.hub.connect(
            time::now(),
            handle.id,
            handle.user.clone(),
            Delivery::AtMostOnce,
        )?;
        inner.conns.insert(handle.id.0, Arc::clone(handle));
        // Counted before the client can hear of it, so a scrape after the welcome sees it.
        Metrics::add(&metrics.connections_opened, 1);
        handle.send_text(first);
        inner.deliver(metrics);
        Ok(())
    }

    /// Removes a connection: its rooms see it leave.
    pub(super) fn disconnect(&self, id: ConnId, metrics: &Metrics) {
        let mut inner = self.lock();
        inner.conns.remove(&id.0);
        inner.hub.disconnect(time::now(), id);
        inner.deliver(metrics);
    }

    /// `id` joins `room`; returns who is in it now.
    pub(super) fn join(
        &self,
        id: ConnId,
        room: &str,
        metrics: &Metrics,
    ) -> Result<Vec<UserId>, HubError> {
        let mut inner = self.lock();
        let result = inner.hub.join(id, room).map(|()| inner.hub.members(room));
        inner.deliver(metrics);
        result
    }

    /// `id` leaves `room`.
    pub(super) fn leave(&self, id: ConnId, room: &str, metrics: &Metrics) -> Result<(), HubError> {
        let mut inner = self.lock();
        let result = inner.hub.leave(id, room);
        inner.deliver(metrics);
        result
    }

    /// `id` publishes `data` (JSON text) to `room`.
    pub(super) fn publish(
        &self,
        id: ConnId,
        room: &str,
        data: Bytes,
        metrics: &Metrics,
    ) -> Result<usize, HubError> {
        let mut inner = self.lock();
        let result = inner.hub.publish(time::now(), id, room, data);
        inner.deliver(metrics);
        result
    }

    /// `id` sends `data` (JSON text) to every connection of `to`.
    pub(super) fn send_to_user(
        &self,
        id: ConnId,
        to: &UserId,
        data: Bytes,
        metrics: &Metrics,
    ) -> Result<PushReceipt, HubError> {
        let mut inner = self.lock();
        let result = inner.hub.send_to_user(time::now(), id, to, data);
        inner.deliver(metrics);
        result
    }

    /// A push from the backend (`POST /api/push`).
    pub(super) fn push(&self, target: Target, data: Bytes, metrics: &Metrics) -> PushReceipt {
        let mut inner = self.lock();
        let receipt = inner.hub.push(time::now(), target, data);
        inner.deliver(metrics);
        receipt
    }

    /// Acts on the hub's deadlines; returns how long until the next one.
    pub(super) fn handle_timeout(&self, metrics: &Metrics) -> Duration {
        let mut inner = self.lock();
        let now = time::now();
        inner.hub.handle_timeout(now);
        inner.deliver(metrics);
        inner
            .hub
            .poll_timeout()
            .map(|at| at.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(1))
    }

    /// Starts closing every connection with 1001; returns how many there were.
    pub(super) fn close_all(&self) -> usize {
        let inner = self.lock();
        for handle in inner.conns.values() {
            handle.close(CloseCode::GOING_AWAY, "server shutting down");
        }
        inner.conns.len()
    }

    /// The hub's gauges for `/metrics`.
    pub(super) fn gauges(&self) -> HubGauges {
        let inner = self.lock();
        let stats = inner.hub.stats();
        HubGauges {
            users: stats.users as u64,
            rooms: stats.rooms as u64,
            mailbox_depth: stats.mailbox_messages as u64,
            mailbox_drops: stats.mail_expired + stats.mail_overflowed,
        }
    }
}

impl Inner {
    /// Queues everything the hub handed out to its connections, and counts dead letters.
    fn deliver(&mut self, metrics: &Metrics) {
        while let Some(out) = self.hub.poll_outbound() {
            let Some(handle) = self.conns.get(&out.to.0) else {
                continue;
            };
            let text = match &out.message {
                OutMessage::Message {
                    from,
                    room,
                    payload,
                } => {
                    Metrics::add(&metrics.messages_out, 1);
                    plain::message(room.as_deref(), from.as_ref().map(UserId::as_str), payload)
                }
                OutMessage::Presence { room, user, joined } => {
                    plain::presence(room, user.as_str(), *joined)
                }
            };
            if handle.send_text(text) == Queued::SlowConsumer {
                Metrics::add(&metrics.slow_consumers, 1);
                log_at!(
                    Info,
                    "closing slow consumer: connection {} of user {:?}",
                    handle.id.0,
                    handle.user.as_str()
                );
            }
        }
        while let Some(dead) = self.hub.poll_dead_letter() {
            Metrics::add(&metrics.dead_letters, 1);
            log_at!(
                Debug,
                "dead letter for user {:?}: {}",
                dead.user.as_str(),
                dead.reason
            );
        }
    }
}
