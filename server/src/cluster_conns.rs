//! Per-user connection limits across nodes, with a cluster backend: each node keeps
//! its count of a user's connections in the hash `<prefix>conns:<user>` (field: its node
//! id), and an upgrade waits for the hash (`HGETALL`) before it is admitted: the
//! connections of the user on the other nodes that are alive (heard from within three
//! beats) count against [`Config::max_connections_per_user`](crate::Config) with this
//! node's own. Fields of nodes that are gone are ignored and removed. Without an answer
//! (Redis failed it) only this node's connections count.

use bytes::Bytes;
use sockeye_core::auth::UserId;
use sockeye_core::handshake::Request;
use sockeye_core::hub::{ConnId, Refusal};

use crate::cluster::Pending;
use crate::cluster_mail::Reply;
use crate::conn::Phase;
use crate::server::Server;

/// How long a user's count stays in Redis after its last change (a node that died
/// leaves its field behind; the others ignore it, and it goes with the key).
const COUNT_TTL_MS: &str = "86400000";

impl Server {
    fn conns_key(&self, user: &UserId) -> Option<Bytes> {
        let cluster = self.cluster.as_ref()?;
        Some(Bytes::from(
            cluster.channel(&format!("conns:{}", user.as_str())),
        ))
    }

    /// Whether one more connection of `user` fits: this node's limits, and with
    /// [`Server::remote_conns`] the user's connections elsewhere.
    pub(crate) fn admit(&self, user: &UserId) -> Result<(), Refusal> {
        self.hub.admit(user)?;
        let here = self.hub.connections_of(user).count();
        if here + self.remote_conns >= self.config.max_connections_per_user {
            return Err(Refusal::TooManyForUser);
        }
        Ok(())
    }

    /// Parks the upgrade of `user` on `conn` until Redis says how many connections they
    /// have on the other nodes.
    pub(crate) fn ask_admission(&mut self, conn: ConnId, upgrade: Request, user: UserId) {
        let Some(key) = self.conns_key(&user) else {
            return self.upgrade_as(conn, upgrade, user);
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.phase = Phase::AwaitingAdmission {
                upgrade: Box::new(upgrade),
                user,
            };
        }
        self.command(
            vec![Bytes::from_static(b"HGETALL"), key],
            Pending::Admit { conn },
        );
    }

    /// Redis answered the admission of the upgrade on `conn`.
    pub(crate) fn admission_answered(&mut self, conn: ConnId, result: Result<Reply, String>) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !matches!(c.phase, Phase::AwaitingAdmission { .. }) {
            return;
        }
        let Phase::AwaitingAdmission { upgrade, user } =
            std::mem::replace(&mut c.phase, Phase::Done)
        else {
            return;
        };
        let mut remote = 0;
        let mut gone = Vec::new();
        if let (Ok(Reply::List(items)), Some(cluster)) = (&result, &self.cluster) {
            for pair in items.chunks(2) {
                let [Reply::Data(node), Reply::Data(count)] = pair else {
                    continue;
                };
                let node = String::from_utf8_lossy(node).into_owned();
                if cluster.is_self(&node) {
                    continue;
                }
                if !cluster.is_alive(&node) {
                    gone.push(Bytes::from(node));
                    continue;
                }
                remote += std::str::from_utf8(count)
                    .ok()
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0);
            }
        }
        if let (false, Some(key)) = (gone.is_empty(), self.conns_key(&user)) {
            let mut args = vec![Bytes::from_static(b"HDEL"), key];
            args.extend(gone);
            self.command(args, Pending::Fire);
        }
        self.remote_conns = remote;
        self.upgrade_as(conn, *upgrade, user);
        self.remote_conns = 0;
    }

    /// This node's count of `user`'s connections changed: Redis hears it.
    pub(crate) fn publish_count(&mut self, user: &UserId, count: usize) {
        let (Some(key), Some(cluster)) = (self.conns_key(user), &self.cluster) else {
            return;
        };
        let node = Bytes::from(cluster.node_id().to_string());
        if count == 0 {
            self.command(vec![Bytes::from_static(b"HDEL"), key, node], Pending::Fire);
            return;
        }
        let set = vec![
            Bytes::from_static(b"HSET"),
            key.clone(),
            node,
            Bytes::from(count.to_string()),
        ];
        self.command(set, Pending::Fire);
        let expire = vec![
            Bytes::from_static(b"PEXPIRE"),
            key,
            Bytes::from_static(COUNT_TTL_MS.as_bytes()),
        ];
        self.command(expire, Pending::Fire);
    }
}
