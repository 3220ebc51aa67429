//! Offline mailboxes in Redis, with a cluster backend: mail for a user who is online on
//! no node is appended to the list `<prefix>mail:<user>` (`RPUSH`, bounded by
//! [`Config::mailbox_size`](crate::Config), kept [`Config::mailbox_age`](crate::Config)
//! by `PEXPIRE`), and the node where the user's first connection arrives takes it
//! (`LPOP key count`) and hands it to their connections there, oldest first. Mail older
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
            _ => {}
        }
        self.settle();
    }

    fn mail_key(&self, user: &UserId) -> Option<Bytes> {
        let cluster = self.cluster.as_ref()?;
        Some(Bytes::from(
            cluster.channel(&format!("mail:{}", user.as_str())),
        ))
    }

    /// Appends mail for `to` (online nowhere) to its list in Redis.
    pub(crate) fn store_mail(
        &mut self,
        to: UserId,
        from: Option<UserId>,
        payload: Bytes,
        push: Option<(ConnId, usize)>,
    ) {
        let Some(key) = self.mail_key(&to) else {
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
        let args = vec![Bytes::from_static(b"RPUSH"), key, Bytes::from(record)];
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
        let (mut mailboxed, mut dead, mut connections) = (0, 0, 0);
        let key = self.mail_key(&to).unwrap_or_default();
        match result {
            Ok(Reply::Int(length)) if length > self.config.mailbox_size as i64 => {
                // Full: the new message is refused, as on one node.
                self.command(vec![Bytes::from_static(b"RPOP"), key], Pending::Fire);
                let text = plain::message(None, from.as_ref().map(UserId::as_str), &payload);
                self.dead_letter(to.as_str(), text.into(), "mailbox: mailbox full", false);
                dead = 1;
            }
            Ok(_) => {
                let age = self.config.mailbox_age.as_millis().to_string();
                let expire = vec![Bytes::from_static(b"PEXPIRE"), key, Bytes::from(age)];
                self.command(expire, Pending::Fire);
                mailboxed = 1;
            }
            Err(_) => {
                // Redis failed it: this node's mailbox, so nothing is lost.
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
                wait.done = true;
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
