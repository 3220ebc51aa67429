//! Pushes confirmed by every node that received them, so a 202 for a push that crossed
//! nodes is the same promise as one that did not.
//!
//! Redis's answer to `PUBLISH` says how many nodes received a push, not that they kept
//! it: a node that dies after receiving a push for one of its reliable sessions, and
//! before that session's record of it reached Redis, would take the push with it. So a
//! push's envelope carries a number (`"ack"`), and each node that receives it answers on
//! the publishing node's own channel (`<prefix>node:<id>`, `got`) once what the push
//! caused there is durable: at once for plain connections and without a journal or
//! Redis sessions, after the group commit that holds the sessions' records otherwise.
//! The publishing node answers 202 only when as many subscribers confirmed as Redis
//! counted receivers (its own subscription, when Redis still or already had it, counts
//! and confirms when its own copy comes back); a node whose commit failed answers `"ok":false`, and a node that never
//! answers (it died) leaves the push unconfirmed after [`CONFIRM_TIMEOUT`]: both are a
//! 503 (the push may have reached some receivers, as the answer says).

use std::collections::{BTreeMap, VecDeque};

use core::time::Duration;
use sockeye_core::hub::ConnId;
use sockeye_core::Instant;

use crate::server::Server;

/// How long a push waits for the nodes that received it to confirm it.
pub(crate) const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// Both sides of the confirmations: the pushes this node published that wait for
/// them, and the confirmations this node owes others, each waiting for a commit.
#[derive(Debug)]
pub(crate) struct Confirms {
    next: u64,
    /// Confirmation number → push `index` of the request on `conn`.
    waiting: BTreeMap<u64, (ConnId, usize)>,
    /// When each number gives up (in number order: one timeout for all).
    deadlines: VecDeque<(Instant, u64)>,
    /// Confirmations owed: the commit they wait for, the node, the number.
    owed: VecDeque<(u64, String, u64)>,
}

impl Confirms {
    pub(crate) fn new() -> Confirms {
        Confirms {
            next: 1,
            waiting: BTreeMap::new(),
            deadlines: VecDeque::new(),
            owed: VecDeque::new(),
        }
    }

    /// A number for push `index` of the request on `conn`, confirmed by `now` +
    /// [`CONFIRM_TIMEOUT`] or given up.
    pub(crate) fn begin(&mut self, now: Instant, conn: ConnId, index: usize) -> u64 {
        let n = self.next;
        self.next += 1;
        self.waiting.insert(n, (conn, index));
        self.deadlines.push_back((now + CONFIRM_TIMEOUT, n));
        n
    }

    /// The push number `n` is for, if it still waits.
    pub(crate) fn push_of(&self, n: u64) -> Option<(ConnId, usize)> {
        self.waiting.get(&n).copied()
    }

    /// Push number `n` no longer waits (answered, or given up).
    pub(crate) fn end(&mut self, n: u64) {
        self.waiting.remove(&n);
    }

    /// The next deadline of a push still waiting.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.front().map(|(at, _)| *at)
    }

    /// The pushes whose time ran out by `now` (and that still wait).
    fn expired(&mut self, now: Instant) -> Vec<(ConnId, usize)> {
        let mut out = Vec::new();
        while let Some(&(at, n)) = self.deadlines.front() {
            if at > now {
                break;
            }
            self.deadlines.pop_front();
            if let Some(push) = self.waiting.remove(&n) {
                out.push(push);
            }
        }
        out
    }
}

impl Server {
    /// A pushed message from `node`, numbered `n` there, was relayed to this node's
    /// connections: confirm it once that is durable.
    pub(crate) fn owe_confirmation(&mut self, node: String, n: u64) {
        let ticket = self.durable.ticket();
        if self.durable.is_finished(ticket) {
            return self.confirm_to(&node, n, true);
        }
        if let Some(cluster) = &mut self.cluster {
            cluster.confirms.owed.push_back((ticket, node, n));
        }
    }

    /// Commit `done` finished (`ok` or not): the confirmations that waited for it go.
    pub(crate) fn release_confirmations(&mut self, done: u64, ok: bool) {
        let mut due = Vec::new();
        if let Some(cluster) = &mut self.cluster {
            while cluster
                .confirms
                .owed
                .front()
                .is_some_and(|(ticket, ..)| *ticket <= done)
            {
                let (_, node, n) = cluster.confirms.owed.pop_front().expect("checked");
                due.push((node, n));
            }
        }
        for (node, n) in due {
            self.confirm_to(&node, n, ok);
        }
    }

    /// Publishes `got` for push `n` on `node`'s channel, at once: it depends on nothing
    /// that waits for a commit.
    fn confirm_to(&mut self, node: &str, n: u64, ok: bool) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let channel = cluster.node_channel(node);
        let fields = format!(",\"ack\":{n},\"ok\":{ok}");
        let payload = crate::cluster::envelope(cluster.node_id(), "got", &fields);
        self.publish_now(channel, payload, crate::cluster::Pending::Fire);
    }

    /// A node confirmed push `n` of this node (or said it could not keep it).
    pub(crate) fn confirmation(&mut self, n: u64, ok: bool) {
        let Some((conn, index)) = self.cluster.as_ref().and_then(|c| c.confirms.push_of(n)) else {
            return;
        };
        if !ok {
            self.push_failed(conn);
        }
        let all = self.push_wait(conn, index).is_some_and(|wait| {
            wait.confirmed += 1;
            wait.settle()
        });
        if all {
            if let Some(cluster) = &mut self.cluster {
                cluster.confirms.end(n);
            }
            self.push_answer(conn);
        }
    }

    /// Pushes that were not confirmed in time: answered 503.
    pub(crate) fn confirmations_timeout(&mut self, now: Instant) {
        let expired = match &mut self.cluster {
            Some(cluster) => cluster.confirms.expired(now),
            None => return,
        };
        for (conn, index) in expired {
            self.push_failed(conn);
            if let Some(wait) = self.push_wait(conn, index) {
                wait.unconfirmed = true;
                wait.done = true;
            }
            self.push_answer(conn);
        }
    }
}
