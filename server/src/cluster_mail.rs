//! Offline mailboxes in Redis, with a cluster backend: a message for a user with no
//! connection on this node is published on their channel and, if no node received it,
//! appended to the list `<prefix>mail:<user>` in the same script (bounded by
//! [`Config::mailbox_size`](crate::Config), kept [`Config::mailbox_age`](crate::Config)
//! by `PEXPIRE`). A node takes the list (`LPOP key count`) once Redis confirmed its
//! subscription to the user's channel, and hands it to their connections there, oldest
//! first. Mail older
//! than `mailbox_age` comes out as a dead letter; a full mailbox refuses the new message
//! as one. The layer says what to run ([`Action::Command`](crate::Action)); the runtime
//! answers with [`Server::handle_reply`].
//!
//! While Redis is unreachable (or fails a command) mail stays in the node's own mailbox,
//! as without a backend.

use bytes::Bytes;
use sockeye_core::auth::UserId;
use sockeye_core::hub::{ConnId, Mail};
use sockeye_core::Instant;

use crate::cluster::Pending;
use crate::plain;
use crate::server::Server;
use crate::Level;

/// `EVAL` script: publishes `ARGV[1]` on `KEYS[1]`; if nobody received it, appends the
/// mail record `ARGV[2]` to the list `KEYS[2]` unless it holds `ARGV[3]` already, and
/// keeps the list `ARGV[4]` ms. Answers the subscriber count, 0 (stored) or -1 (full).
/// One script, so a subscription either sees the message or comes after it is stored.
pub(crate) const PUBLISH_OR_STORE: &str = "\
local n = redis.call('PUBLISH', KEYS[1], ARGV[1])
if n > 0 then return n end
if redis.call('LLEN', KEYS[2]) >= tonumber(ARGV[3]) then return -1 end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 0
";

/// A Redis answer, as the runtime hands it to [`Server::handle_reply`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// No value (a missing key).
    Nil,
    /// An integer.
    Int(i64),
    /// A string (bulk or simple).
    Data(Bytes),
    /// An array.
    List(Vec<Reply>),
}

impl Server {
    /// The answer to the [`Action::Command`](crate::Action) numbered `id`, or why it
    /// failed. Every command gets exactly one answer.
    pub fn handle_reply(&mut self, now: Instant, id: u64, result: Result<Reply, String>) {
        self.observe(now);
        self.on_reply(id, result);
        self.settle();
    }

    /// The answer to command `id` (reported by the runtime, or by the commit script
    /// that ran it).
    pub(crate) fn on_reply(&mut self, id: u64, result: Result<Reply, String>) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let Some(pending) = cluster.pending.remove(&id) else {
            return;
        };
        if let Err(e) = &result {
            self.metrics.cluster_publish_failures += 1;
            self.log(Level::Debug, format!("cluster: redis command failed: {e}"));
        }
        match pending {
            Pending::Stored {
                to,
                from,
                payload,
                push,
            } => self.mail_stored(to, from, payload, push, result),
            Pending::Fetched { user } => self.mail_fetched(&user, result),
            Pending::Admit { conn } => self.admission_answered(conn, result),
            Pending::Commit { written, deferred } => {
                self.sessions_committed(written, deferred, result)
            }
            Pending::Claim { conn, session } => self.claimed(conn, session, result),
            _ => {}
        }
    }

    fn mail_key(&self, user: &UserId) -> Option<Bytes> {
        let cluster = self.cluster.as_ref()?;
        Some(Bytes::from(
            cluster.channel(&format!("mail:{}", user.as_str())),
        ))
    }

    /// A message for `to`, who has no connection here: published to their connections
    /// on the other nodes or, if Redis counts no subscriber, appended to their mailbox
    /// in Redis, in one atomic script ([`PUBLISH_OR_STORE`]). A node that subscribes to
    /// the user and then takes the mailbox cannot miss it. `confirm`: a push's number,
    /// for the nodes that receive it to confirm (`cluster_confirm.rs`).
    pub(crate) fn deliver_or_store(
        &mut self,
        to: UserId,
        from: Option<UserId>,
        payload: Bytes,
        push: Option<(ConnId, usize)>,
        confirm: Option<u64>,
    ) {
        let (Some(key), Some((channel, envelope))) = (
            self.mail_key(&to),
            self.user_message(&to, from.as_ref(), &payload, confirm),
        ) else {
            return;
        };
        let data = std::str::from_utf8(&payload).unwrap_or("null");
        let from_json = match &from {
            Some(from) => serde_json::Value::from(from.as_str()).to_string(),
            None => "null".to_string(),
        };
        let record = format!(
            "{{\"at\":{},\"from\":{from_json},\"data\":{data}}}",
            self.unix_ms(self.now)
        );
        let args = vec![
            Bytes::from_static(b"EVAL"),
            Bytes::from_static(PUBLISH_OR_STORE.as_bytes()),
            Bytes::from_static(b"2"),
            Bytes::from(channel),
            key,
            envelope,
            Bytes::from(record),
            Bytes::from(self.config.mailbox_size.to_string()),
            Bytes::from(self.config.mailbox_age.as_millis().max(1).to_string()),
        ];
        self.metrics.cluster_published += 1;
        self.command(
            args,
            Pending::Stored {
                to,
                from,
                payload,
                push,
            },
        );
    }

    fn mail_stored(
        &mut self,
        to: UserId,
        from: Option<UserId>,
        payload: Bytes,
        push: Option<(ConnId, usize)>,
        result: Result<Reply, String>,
    ) {
        let (mut mailboxed, mut dead, mut connections, mut remote) = (0, 0, 0, 0);
        match result {
            Ok(Reply::Int(n)) if n > 0 => remote = n as u64,
            Ok(Reply::Int(0)) => mailboxed = 1,
            Ok(_) => {
                // Full: the new message is refused, as on one node.
                let text = plain::message(None, from.as_ref().map(UserId::as_str), &payload);
                self.dead_letter(to.as_str(), text.into(), "mailbox: mailbox full", false);
                dead = 1;
            }
            Err(_) if push.is_some() => {
                // Not known to be done: the push is answered 503.
                if let Some((conn, _)) = push {
                    self.push_failed(conn);
                }
            }
            Err(_) => {
                // A client's direct message: this node's mailbox, so nothing is lost.
                let now = self.now;
                let mail = Mail::new(now, from.clone(), payload.clone());
                let receipt = self.hub.restore_mail(now, &to, mail);
                if receipt.mailboxed > 0 {
                    let unix = self.unix_ms(now);
                    self.durable.mail_queued(&to, from.as_ref(), &payload, unix);
                }
                self.deliver();
                (mailboxed, dead, connections) = (
                    receipt.mailboxed,
                    receipt.dead_lettered,
                    receipt.connections,
                );
            }
        }
        if let Some((conn, index)) = push {
            if let Some(wait) = self.push_wait(conn, index) {
                wait.mailboxed += mailboxed;
                wait.dead_lettered += dead;
                wait.connections += connections;
                wait.remote = remote;
                wait.expected = remote;
                wait.published = true;
                // Stored, refused or kept here: no node to confirm it.
                wait.settle();
            }
            self.push_answer(conn);
        }
    }

    /// `user`'s first connection here arrived: their mail in Redis comes here.
    pub(crate) fn fetch_mail(&mut self, user: &UserId) {
        let Some(key) = self.mail_key(user) else {
            return;
        };
        let count = Bytes::from(self.config.mailbox_size.max(1).to_string());
        self.command(
            vec![Bytes::from_static(b"LPOP"), key, count],
            Pending::Fetched { user: user.clone() },
        );
    }

    fn mail_fetched(&mut self, user: &UserId, result: Result<Reply, String>) {
        let records = match result {
            Ok(Reply::List(items)) => items,
            Ok(Reply::Data(one)) => vec![Reply::Data(one)],
            _ => return,
        };
        let now = self.now;
        let now_ms = self.unix_ms(now);
        let max_age_ms = self.config.mailbox_age.as_millis() as u64;
        for record in records {
            let Reply::Data(record) = record else {
                continue;
            };
            let Ok(object) = plain::raw_object(&record) else {
                continue;
            };
            let Some(data) = object.get("data").map(|raw| raw.get().to_string()) else {
                continue;
            };
            let from = object
                .get("from")
                .and_then(|raw| plain::as_string(raw))
                .map(UserId);
            let at: u64 = object
                .get("at")
                .and_then(|raw| raw.get().parse().ok())
                .unwrap_or(now_ms);
            let age_ms = now_ms.saturating_sub(at);
            let payload = Bytes::from(data);
            if age_ms > max_age_ms {
                let text = plain::message(None, from.as_ref().map(UserId::as_str), &payload);
                self.dead_letter(user.as_str(), text.into(), "mailbox: expired", false);
                continue;
            }
            let queued_at = Instant::from_nanos(now.as_nanos().saturating_sub(age_ms * 1_000_000));
            // To their connections here; if they left meanwhile, this node's mailbox.
            let receipt = self.hub.restore_mail(
                now,
                user,
                Mail::new(queued_at, from.clone(), payload.clone()),
            );
            if receipt.mailboxed > 0 {
                let unix = self.unix_ms(now);
                self.durable
                    .mail_queued(user, from.as_ref(), &payload, unix);
            }
        }
        self.deliver();
    }
}
