//! The JSON commands of both modes, and the one fan-out loop that hands what the hub
//! routed to each connection: encoded once per message, queued under the slow-consumer
//! rule.

use std::sync::Arc;

use bytes::Bytes;
use sockeye_core::auth::UserId;
use sockeye_core::hub::{ConnId, Mail, OutMessage, Target};
use sockeye_core::journal::Record;
use sockeye_core::{CloseCode, Message, PreparedMessage, SessionId};

use crate::conn::Phase;
use crate::plain::{self, ClientMessage, Refused};
use crate::server::Server;
use crate::Level;

/// Members a `joined` answer lists at most; a larger room's answer lists the first ones
/// and says how many there are.
const MEMBERS_LISTED: usize = 100;

impl Server {
    /// One message from a plain-mode client.
    pub(crate) fn on_plain_message(&mut self, conn: ConnId, message: Message) {
        let Message::Text(text) = message else {
            self.metrics.messages_in += 1;
            return self.close_ws(
                conn,
                CloseCode::UNSUPPORTED_DATA,
                "binary messages are not supported in plain JSON mode",
            );
        };
        match self.on_command(conn, &text) {
            Err(why) => self.close_ws(conn, CloseCode::POLICY_VIOLATION, why),
            Ok(Some(reply)) => self.send_plain(conn, Bytes::from(reply), false),
            Ok(None) => {}
        }
    }

    /// A reliable session's rooms survive a restart as they survive a resume: its join or
    /// leave is journaled in the batch of the command's `ClientDelivered`, so the command's
    /// ACK and its reply wait for the same commit. Plain connections have no session to
    /// come back to.
    fn journal_membership(&mut self, conn: ConnId, room: &str, joined: bool) {
        let Some((id, _)) = self.session_of(conn) else {
            return;
        };
        let room = room.to_string();
        self.durable.append(&if joined {
            Record::SessionJoined { id, room }
        } else {
            Record::SessionLeft { id, room }
        });
    }

    /// One JSON command (`docs/PROTOCOL.md` §10) from connection `conn`, in either mode:
    /// acts on it and returns the reply, if any. `Err` is a violation: close 1008.
    pub(crate) fn on_command(
        &mut self,
        conn: ConnId,
        text: &[u8],
    ) -> Result<Option<String>, &'static str> {
        self.metrics.messages_in += 1;
        let now = self.now;
        let reply = match plain::parse(text) {
            Err(Refused::Violation(why)) => return Err(why),
            Err(Refused::Error(why)) => Some(plain::error(why)),
            Ok(ClientMessage::Join { room }) => match self.hub.join(conn, &room) {
                Ok(()) => {
                    self.journal_membership(conn, &room, true);
                    let (members, count) = self.members_page(&room, MEMBERS_LISTED);
                    Some(plain::joined(
                        &room,
                        members.iter().map(UserId::as_str),
                        count,
                    ))
                }
                Err(e) => Some(plain::error(&e.to_string())),
            },
            Ok(ClientMessage::Leave { room }) => match self.hub.leave(conn, &room) {
                Ok(()) => {
                    self.journal_membership(conn, &room, false);
                    Some(plain::left(&room))
                }
                Err(e) => Some(plain::error(&e.to_string())),
            },
            Ok(ClientMessage::ToRoom { room, data }) => {
                match self
                    .hub
                    .publish(now, conn, &room, Bytes::from(data.clone()))
                {
                    Err(e) => Some(plain::error(&e.to_string())),
                    Ok(_) => self.cross_nodes(conn, &Target::Room(room), data.as_bytes()),
                }
            }
            Ok(ClientMessage::ToUser { to, data }) => {
                let to = UserId(to);
                let data = Bytes::from(data);
                let reply = self.cross_nodes(conn, &Target::User(to.clone()), &data);
                if self.cluster_up() && !self.hub.is_online(&to) {
                    // Not here: the other nodes first, this node's mailbox if none took it.
                    let from = self.hub.user_of(conn).cloned();
                    self.publish_direct(&to, from, data);
                    self.deliver();
                    return Ok(reply);
                }
                match self.hub.send_to_user(now, conn, &to, data.clone()) {
                    Ok(_) if reply.is_some() => reply,
                    Ok(receipt) => {
                        if receipt.mailboxed > 0 {
                            let from = self.hub.user_of(conn).cloned();
                            let unix = self.unix_ms(now);
                            self.durable.mail_queued(&to, from.as_ref(), &data, unix);
                        }
                        // The dead letter is reported as always; the sender hears it too,
                        // so a client at its mailbox share knows its message went nowhere.
                        (receipt.dead_lettered > 0)
                            .then(|| plain::error("not delivered: the addressee is offline and its mailbox has no room"))
                    }
                    Err(e) => Some(plain::error(&e.to_string())),
                }
            }
        };
        self.deliver();
        Ok(reply)
    }

    /// A client's message delivered here goes to the other nodes too (a direct message
    /// to a user with no connection here goes by `publish_direct`). While the backend is
    /// down it stays on this node, and the sender hears so.
    fn cross_nodes(&mut self, conn: ConnId, target: &Target, data: &[u8]) -> Option<String> {
        self.cluster.as_ref()?;
        if self.cluster_down() {
            self.metrics.cluster_unrouted += 1;
            return Some(plain::error(
                "delivered on this node only: the cluster backend is unreachable",
            ));
        }
        let online_here = match target {
            Target::User(user) => self.hub.is_online(user),
            _ => true,
        };
        if online_here {
            let from = self.hub.user_of(conn).cloned();
            self.publish_message(target, from.as_ref(), data, None, None);
        }
        None
    }

    /// Starts closing connection `conn`'s WebSocket.
    pub(crate) fn close_ws(&mut self, conn: ConnId, code: CloseCode, reason: &str) {
        let now = self.now;
        if let Some(ws) = self.conns.get_mut(&conn).and_then(|c| c.ws_mut()) {
            let _ = ws.close(now, code, reason);
        }
        self.touch(conn);
    }

    /// Queues text on a plain connection, unless it is a slow consumer: then it is
    /// closed 1008 and the text dropped (plain mode is at most once). A text whose cause
    /// is not committed yet waits for that commit, one behind a mailbox still being
    /// framed waits behind it, and the mailbox itself (while [`Server::mail_flush`]
    /// names the connection) is framed as the queue drains.
    pub(crate) fn send_plain(&mut self, conn: ConnId, text: Bytes, is_message: bool) {
        self.send_plain_framed(conn, text, is_message, None);
    }

    /// [`send_plain`](Self::send_plain) with the text already framed for many
    /// connections: sent as that shared frame when it goes out at once.
    fn send_plain_framed(
        &mut self,
        conn: ConnId,
        text: Bytes,
        is_message: bool,
        framed: Option<&PreparedMessage>,
    ) {
        let now = self.now;
        let max = self.config.max_queue_bytes;
        // Records not yet committed are this input's cause (a client command's
        // delivery): a crash before their commit would have it done again, so what it
        // sends waits for that commit.
        let ticket = self.durable.ticket();
        let cause_durable = !self.durable.is_dirty();
        let flushing_mail = self.mail_flush == Some(conn);
        let cause = self.cause;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if flushing_mail && is_message {
            // The mailbox handed out at connect: framed as the queue drains.
            c.mail.push_back((text, is_message, false));
            c.backlog = true;
            return;
        }
        let queued = c.queued_bytes() + c.mail_live_bytes;
        let hold = !c.held.is_empty() || !cause_durable;
        let behind_mail = !c.mail.is_empty();
        let Some(ws) = c.ws_mut() else {
            return;
        };
        if !matches!(ws.state(), sockeye_core::State::Open) {
            return;
        }
        if queued > 0 && queued + text.len() > max {
            let _ = ws.close(now, CloseCode::POLICY_VIOLATION, "slow consumer");
            self.metrics.slow_consumers += 1;
            self.touch(conn);
            let user = self.hub.user_of(conn).map(|u| u.as_str().to_string());
            return self.log(
                Level::Info,
                format!(
                    "closing slow consumer: connection {} of user {user:?}",
                    conn.0
                ),
            );
        }
        if hold {
            // Its cause is not durable yet: it goes out once it is, in order.
            c.hold(ticket, text, is_message, cause);
        } else if behind_mail {
            // Behind the mailbox still being framed.
            c.mail_live_bytes += text.len();
            c.mail.push_back((text, is_message, true));
        } else if match framed {
            Some(framed) => ws.send_prepared(now, framed),
            None => ws.send(now, Message::Text(text)),
        }
        .is_ok()
            && is_message
        {
            self.metrics.messages_out += 1;
        }
        self.touch(conn);
    }

    /// Frames a plain connection's mailbox while its queue holds less than
    /// `max_queue_bytes` (at connect, and as the runtime drains the queue).
    pub(crate) fn pull_mail(&mut self, conn: ConnId) {
        let now = self.now;
        let max = self.config.max_queue_bytes;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        loop {
            c.take_transmits();
            if c.queued_bytes() >= max {
                c.backlog = !c.mail.is_empty();
                return;
            }
            let Some((text, is_message, live)) = c.mail.pop_front() else {
                c.backlog = false;
                return;
            };
            if live {
                c.mail_live_bytes -= text.len();
            }
            if let Some(ws) = c.ws_mut() {
                if ws.send(now, Message::Text(text)).is_ok() && is_message {
                    self.metrics.messages_out += 1;
                }
            }
        }
    }

    /// Commit `done` finished: plain texts held for it go out, or on failure wait for
    /// the next commit (their cause stays done in memory and is committed again).
    pub(crate) fn release_plain(&mut self, done: u64, ok: bool) {
        let now = self.now;
        let next = self.durable.next_ticket();
        let mut released = Vec::new();
        for (conn, c) in &mut self.conns {
            if c.held.front().is_none_or(|(ticket, ..)| *ticket > done) {
                continue;
            }
            if !ok {
                for (ticket, ..) in c.held.iter_mut() {
                    *ticket = (*ticket).max(next);
                }
                continue;
            }
            let texts = c.release_held(done);
            for (text, is_message) in texts {
                if !c.mail.is_empty() {
                    c.mail_live_bytes += text.len();
                    c.mail.push_back((text, is_message, true));
                    continue;
                }
                // Moving what the WebSocket framed into the queue first: the send
                // cannot be refused as full, whatever the burst.
                c.take_transmits();
                if let Some(ws) = c.ws_mut() {
                    if ws.send(now, Message::Text(text)).is_ok() && is_message {
                        self.metrics.messages_out += 1;
                    }
                }
            }
            released.push(*conn);
        }
        for conn in released {
            self.touch(conn);
        }
    }

    /// Queues text in the session of a reliable connection or ghost (journaled with a
    /// journal). A full session is a slow consumer: its connection is closed 1008, it
    /// leaves the hub (the session waits for a resume and joins its rooms again then),
    /// and the message goes back to the hub.
    fn send_reliable(
        &mut self,
        conn: ConnId,
        session: SessionId,
        text: Bytes,
        message: Option<&OutMessage>,
    ) -> bool {
        let now = self.now;
        let Some(s) = self.store.get_mut(session) else {
            return false;
        };
        match s.send(now, text.clone(), true) {
            Ok(seq) => {
                self.durable.append(&Record::ServerSent {
                    id: session,
                    seq,
                    is_text: true,
                    payload: text,
                });
                self.defer_void(session, seq);
                self.hold(session);
                if matches!(message, Some(OutMessage::Message { .. })) {
                    self.metrics.messages_out += 1;
                }
                self.schedule_drive(conn);
                true
            }
            Err(e) => {
                self.metrics.slow_consumers += 1;
                let what = if self.ghosts.contains_key(&conn) {
                    "detached session of"
                } else {
                    "closing reliable"
                };
                self.log(
                    Level::Info,
                    format!("slow consumer: {what} connection {} ({e})", conn.0),
                );
                self.close_ws(conn, CloseCode::POLICY_VIOLATION, "slow consumer");
                self.note_eviction(session);
                self.leave_hub(conn, session);
                if let (Some(message), Some(owner)) = (message, self.owners.get(&session)) {
                    let user = owner.user.clone();
                    self.hand_back(&user, message.clone());
                }
                false
            }
        }
    }

    /// Holds `session`'s outgoing envelopes until what was just appended is durable.
    pub(crate) fn hold(&mut self, session: SessionId) {
        if self.durable.enabled() {
            let ticket = self.durable.ticket();
            self.held.insert(session, ticket);
        }
    }

    /// A message a reliable connection could not take: one for a user goes back to the
    /// hub (their other connections, or the mailbox); a room message is a dead letter.
    fn hand_back(&mut self, user: &UserId, message: OutMessage) {
        let OutMessage::Message {
            from,
            room,
            payload,
        } = message
        else {
            return;
        };
        if let Some(room) = room {
            let text = plain::message(Some(&room), from.as_ref().map(UserId::as_str), &payload);
            return self.dead_letter(
                user.as_str(),
                text.into(),
                "room message for a slow consumer",
                false,
            );
        }
        let now = self.now;
        let receipt =
            self.hub
                .restore_mail(now, user, Mail::new(now, from.clone(), payload.clone()));
        if receipt.mailboxed > 0 {
            let unix = self.unix_ms(now);
            self.durable
                .mail_queued(user, from.as_ref(), &payload, unix);
        }
    }

    /// Hands everything the hub routed to its connections, and counts its dead letters.
    pub(crate) fn deliver(&mut self) {
        // A room message reaches every member as the same bytes: encoded as JSON once,
        // and framed once for every plain connection it goes out to at once (and
        // compressed once for those that agreed to permessage-deflate without context
        // takeover).
        let mut last: Option<(Arc<OutMessage>, PreparedMessage)> = None;
        while let Some(out) = self.hub.poll_outbound() {
            if !last
                .as_ref()
                .is_some_and(|(message, _)| Arc::ptr_eq(message, &out.message))
            {
                last = None;
            }
            if self.cluster_hides(&out.message) {
                // Present on another node: nothing new for this one's members.
                continue;
            }
            let (_, framed) = last.get_or_insert_with(|| {
                let framed = PreparedMessage::new(&Message::text(encode(&out.message)));
                (Arc::clone(&out.message), framed)
            });
            let text = framed.payload();
            let is_message = matches!(*out.message, OutMessage::Message { .. });
            if let Some(&session) = self.ghosts.get(&out.to) {
                // A detached session's ghost: into its window, for the resume (also
                // while the socket it had is still being closed).
                self.send_reliable(out.to, session, text, Some(&out.message));
                continue;
            }
            match self.conns.get(&out.to).map(|c| &c.phase) {
                Some(Phase::Plain { ws, .. }) => {
                    // Compressed once, too, for the members whose connections keep no
                    // compression context (they all compress it to the same bytes).
                    #[cfg(feature = "deflate")]
                    ws.prepare_compressed(framed);
                    #[cfg(not(feature = "deflate"))]
                    let _ = ws;
                    self.send_plain_framed(out.to, text, is_message, Some(&*framed))
                }
                Some(Phase::Reliable { session, .. }) => {
                    let session = *session;
                    self.send_reliable(out.to, session, text, Some(&out.message));
                }
                _ => {}
            }
        }
        while let Some(dead) = self.hub.poll_dead_letter() {
            let text = plain::message(None, dead.from.as_ref().map(UserId::as_str), &dead.payload);
            let reason = format!("mailbox: {}", dead.reason);
            self.dead_letter(dead.user.as_str(), text.into(), &reason, false);
        }
    }

    /// Counts, logs and reports a message given up.
    pub(crate) fn dead_letter(
        &mut self,
        user: &str,
        message: Bytes,
        reason: &str,
        possibly_delivered: bool,
    ) {
        self.metrics.dead_letters += 1;
        self.log(
            Level::Debug,
            format!("dead letter for user {user:?}: {reason} (possibly delivered: {possibly_delivered})"),
        );
        self.actions
            .push_back(crate::Action::DeadLetter(crate::DeadLetter {
                user: user.to_string(),
                message,
                reason: reason.to_string(),
                possibly_delivered,
            }));
    }

    /// A reply to a reliable client's command, in its session.
    pub(crate) fn reply_reliable(&mut self, conn: ConnId, session: SessionId, reply: String) {
        self.send_reliable(conn, session, Bytes::from(reply), None);
    }
}

/// The JSON text a delivery is sent as.
fn encode(message: &OutMessage) -> String {
    match message {
        OutMessage::Message {
            from,
            room,
            payload,
        } => plain::message(room.as_deref(), from.as_ref().map(UserId::as_str), payload),
        OutMessage::Presence { room, user, joined } => {
            plain::presence(room, user.as_str(), *joined)
        }
    }
}
