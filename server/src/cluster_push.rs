//! `POST /api/push` with a cluster backend: each push is delivered to this node's
//! connections and published (or, for a user with no connection here, published or
//! stored in one step); the answer waits until Redis answered for every push of the
//! request and every node that received one confirmed it (`cluster_confirm.rs`), and is
//! a 503 if Redis was down or failed one, or a node did not confirm.

use sockeye_core::hub::{ConnId, Target};

use crate::answer;
use crate::conn::Phase;
use crate::server::Server;

/// One push of a request waiting for the backend: what is known so far.
#[derive(Debug)]
pub(crate) struct PushWait {
    pub(crate) connections: usize,
    pub(crate) mailboxed: usize,
    pub(crate) dead_lettered: usize,
    /// Nodes that received it (Redis's count, less this node).
    pub(crate) remote: u64,
    /// Redis answered its publication.
    pub(crate) published: bool,
    /// Subscribers Redis counted, this node's own subscription included when Redis
    /// still (or already) had it: each confirms, this node when its own copy comes back.
    pub(crate) expected: u64,
    /// Confirmations so far (`cluster_confirm.rs`), and its number there.
    pub(crate) confirmed: u64,
    pub(crate) confirm: Option<u64>,
    /// Not confirmed in time by every node that received it.
    pub(crate) unconfirmed: bool,
    pub(crate) done: bool,
}

impl PushWait {
    fn new() -> PushWait {
        PushWait {
            connections: 0,
            mailboxed: 0,
            dead_lettered: 0,
            remote: 0,
            published: false,
            expected: 0,
            confirmed: 0,
            confirm: None,
            unconfirmed: false,
            done: false,
        }
    }

    /// Done once Redis answered and every subscriber it counted confirmed; returns
    /// whether.
    pub(crate) fn settle(&mut self) -> bool {
        self.done |= self.published && self.confirmed >= self.expected;
        self.done
    }
}

impl Server {
    /// A push request with a backend: each push is delivered to this node's connections
    /// and published; the answer waits until the backend answered every publication.
    /// While it is down the request is refused whole, before anything is delivered.
    pub(crate) fn cluster_push(
        &mut self,
        conn: ConnId,
        pushes: Vec<crate::push::Push>,
        batch: bool,
    ) {
        if self.cluster_down() {
            self.metrics.cluster_refused += 1;
            return self.answer(
                conn,
                answer::json_error(
                    503,
                    "push not accepted: the cluster backend (redis) is unreachable",
                ),
            );
        }
        if !self.cluster_hears_confirmations() {
            // The nodes' confirmations could not reach this node yet.
            self.metrics.cluster_refused += 1;
            return self.answer(
                conn,
                answer::json_error(
                    503,
                    "push not accepted: this node is still subscribing to the cluster backend (redis)",
                ),
            );
        }
        let now = self.now;
        let mut waits = Vec::with_capacity(pushes.len());
        for (index, (target, data)) in pushes.into_iter().enumerate() {
            let mut wait = PushWait::new();
            self.metrics.pushes += 1;
            let confirm = self
                .cluster
                .as_mut()
                .map(|c| c.confirms.begin(now, conn, index));
            wait.confirm = confirm;
            match &target {
                Target::User(user) if !self.hub.is_online(user) => {
                    let user = user.clone();
                    self.deliver_or_store(user, None, data, Some((conn, index)), confirm);
                }
                _ => {
                    let receipt = self.hub.push(now, target.clone(), data.clone());
                    wait.connections = receipt.connections;
                    self.publish_message(&target, None, &data, Some((conn, index)), confirm);
                }
            }
            waits.push((target, wait));
        }
        self.deliver();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.phase = Phase::AwaitingCluster {
                waits,
                batch,
                failed: false,
            };
        }
    }

    /// Push `index` of the request on `conn` was published (or not).
    pub(crate) fn push_published(
        &mut self,
        conn: ConnId,
        index: usize,
        result: &Result<u64, String>,
    ) {
        let remote = {
            let Some(Phase::AwaitingCluster { waits, .. }) =
                self.conns.get(&conn).map(|c| &c.phase)
            else {
                return;
            };
            let Some((target, _)) = waits.get(index) else {
                return;
            };
            self.remote_receivers(target, result)
        };
        let all_done = {
            let Some(Phase::AwaitingCluster { waits, failed, .. }) =
                self.conns.get_mut(&conn).map(|c| &mut c.phase)
            else {
                return;
            };
            let Some((_, wait)) = waits.get_mut(index) else {
                return;
            };
            wait.published = true;
            match (remote, result) {
                (Some(n), Ok(counted)) => {
                    wait.remote = n;
                    wait.expected = *counted;
                    wait.settle();
                }
                _ => {
                    *failed = true;
                    wait.done = true;
                }
            }
            waits.iter().all(|(_, w)| w.done)
        };
        if all_done {
            self.push_answer(conn);
        }
    }

    /// Marks the push request on `conn` as failed (answered 503 once all are done).
    pub(crate) fn push_failed(&mut self, conn: ConnId) {
        if let Some(Phase::AwaitingCluster { failed, .. }) =
            self.conns.get_mut(&conn).map(|c| &mut c.phase)
        {
            *failed = true;
        }
    }

    /// Push `index` of the request waiting on `conn`.
    pub(crate) fn push_wait(&mut self, conn: ConnId, index: usize) -> Option<&mut PushWait> {
        match self.conns.get_mut(&conn).map(|c| &mut c.phase) {
            Some(Phase::AwaitingCluster { waits, .. }) => waits.get_mut(index).map(|(_, w)| w),
            _ => None,
        }
    }

    /// Answers the push request on `conn` once every push of it is done.
    pub(crate) fn push_answer(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !matches!(&c.phase, Phase::AwaitingCluster { waits, .. } if waits.iter().all(|(_, w)| w.done))
        {
            return;
        }
        let Phase::AwaitingCluster {
            waits,
            batch,
            failed,
        } = std::mem::replace(&mut c.phase, Phase::Done)
        else {
            return;
        };
        if let Some(cluster) = &mut self.cluster {
            for n in waits.iter().filter_map(|(_, w)| w.confirm) {
                cluster.confirms.end(n);
            }
        }
        if failed {
            self.metrics.cluster_refused += 1;
            let why = if waits.iter().any(|(_, w)| w.unconfirmed) {
                "push not confirmed by every node that received it (one may have died); it may have reached some receivers"
            } else {
                "push not confirmed by the cluster backend (redis) or a node that received it; it may have reached some receivers"
            };
            return self.answer(conn, answer::json_error(503, why));
        }
        let receipts = waits
            .iter()
            .map(|(_, w)| {
                serde_json::json!({
                    "connections": w.connections,
                    "mailboxed": w.mailboxed,
                    "dead_lettered": w.dead_lettered,
                    "remote_nodes": w.remote,
                })
            })
            .collect();
        self.finish_push(conn, receipts, batch);
    }
}
