//! Counters for `GET /metrics`, in the Prometheus text exposition format (version 0.0.4).
//! Plain counters owned by the layer: nothing here allocates until a scrape renders the
//! page.

use std::fmt::Write as _;

/// Why a handshake (or any HTTP request on the WebSocket path) was refused, one label
/// value each, in the order they are rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// 400 or 405: not a valid upgrade request.
    BadRequest,
    /// 426: not an upgrade, or the wrong WebSocket version.
    UpgradeRequired,
    /// 401: missing, forged or expired user token.
    Unauthorized,
    /// 403: origin refused.
    Forbidden,
    /// 408: the head was too slow to arrive.
    Timeout,
    /// 431: the head was too large.
    HeadTooLarge,
    /// 503: over the global or per-user connection limit, or shutting down.
    OverLimit,
}

const REJECTIONS: [(Rejection, &str); 7] = [
    (Rejection::BadRequest, "bad_request"),
    (Rejection::UpgradeRequired, "upgrade_required"),
    (Rejection::Unauthorized, "unauthorized"),
    (Rejection::Forbidden, "forbidden"),
    (Rejection::Timeout, "timeout"),
    (Rejection::HeadTooLarge, "head_too_large"),
    (Rejection::OverLimit, "over_limit"),
];

impl Rejection {
    /// The rejection an HTTP status stands for.
    pub(crate) fn from_status(status: u16) -> Rejection {
        match status {
            401 => Rejection::Unauthorized,
            403 => Rejection::Forbidden,
            408 => Rejection::Timeout,
            426 => Rejection::UpgradeRequired,
            431 => Rejection::HeadTooLarge,
            503 => Rejection::OverLimit,
            _ => Rejection::BadRequest,
        }
    }
}

/// The server's counters. Gauges owned by the hub (mailboxes) are read from it at scrape
/// time and passed to [`render`](Self::render).
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) connections_opened: u64,
    pub(crate) connections_closed: u64,
    rejected: [u64; REJECTIONS.len()],
    pub(crate) messages_in: u64,
    pub(crate) messages_out: u64,
    pub(crate) slow_consumers: u64,
    pub(crate) pushes: u64,
    pub(crate) http_requests: u64,
    pub(crate) resends: u64,
    pub(crate) resumes: u64,
    pub(crate) dead_letters: u64,
    pub(crate) journal_failures: u64,
    /// Publications handed to the cluster backend (Redis).
    pub(crate) cluster_published: u64,
    /// Messages from other nodes acted on.
    pub(crate) cluster_received: u64,
    /// Publications the backend reported as failed.
    pub(crate) cluster_publish_failures: u64,
    /// Pushes answered 503 because the backend was down or failed them.
    pub(crate) cluster_refused: u64,
    /// Client messages delivered on this node only because the backend was down.
    pub(crate) cluster_unrouted: u64,
    /// Times the backend went down.
    pub(crate) cluster_outages: u64,
    /// Reliable sessions this node took over from another through Redis.
    pub(crate) cluster_takeovers: u64,
    /// Commits of reliable sessions to Redis that failed (no ACK).
    pub(crate) cluster_commit_failures: u64,
}

/// The cluster backend's gauges, sampled at scrape time (only with a backend).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ClusterGauges {
    pub(crate) up: bool,
    pub(crate) subscriptions: u64,
    pub(crate) nodes: u64,
}

/// Values the hub (and, for compression, the connections) own, sampled when `/metrics`
/// is scraped.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HubGauges {
    pub(crate) users: u64,
    /// Reliable sessions this node holds (connected or waiting for a resume).
    pub(crate) sessions: u64,
    pub(crate) rooms: u64,
    pub(crate) mailbox_depth: u64,
    pub(crate) mailbox_bytes: u64,
    pub(crate) mailbox_drops: u64,
    /// Connections that agreed to permessage-deflate.
    pub(crate) deflate_connections: u64,
    /// What their compressors and decompressors hold.
    pub(crate) deflate_bytes: u64,
    /// With a cluster backend (`--redis`).
    pub(crate) cluster: Option<ClusterGauges>,
}

impl Metrics {
    pub(crate) fn reject(&mut self, why: Rejection) {
        let index = REJECTIONS
            .iter()
            .position(|(r, _)| *r == why)
            .expect("every rejection has a label");
        self.rejected[index] += 1;
    }

    /// Connections open right now.
    pub(crate) fn connections_open(&self) -> u64 {
        self.connections_opened
            .saturating_sub(self.connections_closed)
    }

    /// The whole `/metrics` page.
    pub(crate) fn render(&self, hub: &HubGauges) -> String {
        let mut out = String::with_capacity(2048);
        let get = |c: &u64| *c;
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = write!(
                out,
                "# HELP sockeye_{name} {help}\n# TYPE sockeye_{name} {kind}\nsockeye_{name} {value}\n"
            );
        };
        metric(
            "connections_open",
            "gauge",
            "WebSocket connections open now.",
            self.connections_open(),
        );
        metric(
            "connections_total",
            "counter",
            "WebSocket connections accepted.",
            get(&self.connections_opened),
        );
        metric(
            "messages_in_total",
            "counter",
            "Messages received from WebSocket clients.",
            get(&self.messages_in),
        );
        metric(
            "messages_out_total",
            "counter",
            "Messages queued to WebSocket clients.",
            get(&self.messages_out),
        );
        metric(
            "pushes_total",
            "counter",
            "Accepted POST /api/push requests.",
            get(&self.pushes),
        );
        metric(
            "http_requests_total",
            "counter",
            "HTTP requests other than WebSocket upgrades.",
            get(&self.http_requests),
        );
        metric(
            "slow_consumers_total",
            "counter",
            "Connections closed because their outgoing queue filled.",
            get(&self.slow_consumers),
        );
        metric(
            "resends_total",
            "counter",
            "Reliable (sockeye.v1) messages resent.",
            get(&self.resends),
        );
        metric(
            "resumes_total",
            "counter",
            "Reliable (sockeye.v1) sessions resumed.",
            get(&self.resumes),
        );
        metric(
            "dead_letters_total",
            "counter",
            "Messages given up with a dead-letter record.",
            get(&self.dead_letters),
        );
        metric(
            "journal_commit_failures_total",
            "counter",
            "Journal commits that failed (the push or command was not acknowledged).",
            get(&self.journal_failures),
        );
        metric("users", "gauge", "Users with a live connection.", hub.users);
        metric(
            "sessions",
            "gauge",
            "Reliable sessions held here (connected or waiting for a resume).",
            hub.sessions,
        );
        metric(
            "rooms",
            "gauge",
            "Rooms with at least one member.",
            hub.rooms,
        );
        metric(
            "mailbox_depth",
            "gauge",
            "Messages waiting in offline users' mailboxes.",
            hub.mailbox_depth,
        );
        metric(
            "mailbox_bytes",
            "gauge",
            "Bytes offline users' mailboxes hold, as counted against --mailbox-bytes.",
            hub.mailbox_bytes,
        );
        metric(
            "mailbox_drops_total",
            "counter",
            "Mailbox messages dropped (a bound or age) as dead letters.",
            hub.mailbox_drops,
        );
        if cfg!(feature = "deflate") {
            metric(
                "deflate_connections",
                "gauge",
                "Open connections that agreed to permessage-deflate.",
                hub.deflate_connections,
            );
            metric(
                "deflate_memory_bytes",
                "gauge",
                "Bytes their compressors and decompressors hold now.",
                hub.deflate_bytes,
            );
        }
        if let Some(cluster) = hub.cluster {
            metric(
                "cluster_up",
                "gauge",
                "1 while the cluster backend (Redis) is reachable, else 0.",
                u64::from(cluster.up),
            );
            metric(
                "cluster_subscriptions",
                "gauge",
                "Channels the backend confirmed this node is subscribed to.",
                cluster.subscriptions,
            );
            metric(
                "cluster_nodes",
                "gauge",
                "Other nodes heard from recently.",
                cluster.nodes,
            );
            metric(
                "cluster_published_total",
                "counter",
                "Publications handed to the backend.",
                get(&self.cluster_published),
            );
            metric(
                "cluster_received_total",
                "counter",
                "Messages from other nodes acted on.",
                get(&self.cluster_received),
            );
            metric(
                "cluster_publish_failures_total",
                "counter",
                "Publications the backend failed.",
                get(&self.cluster_publish_failures),
            );
            metric(
                "cluster_session_takeovers_total",
                "counter",
                "Reliable sessions resumed here that another node held.",
                get(&self.cluster_takeovers),
            );
            metric(
                "cluster_session_commit_failures_total",
                "counter",
                "Commits of reliable sessions to Redis that failed (nothing acknowledged).",
                get(&self.cluster_commit_failures),
            );
            metric(
                "cluster_refused_total",
                "counter",
                "Pushes answered 503 because the backend was down or failed them.",
                get(&self.cluster_refused),
            );
            metric(
                "cluster_unrouted_total",
                "counter",
                "Client messages delivered on this node only while the backend was down.",
                get(&self.cluster_unrouted),
            );
            metric(
                "cluster_outages_total",
                "counter",
                "Times the backend went down.",
                get(&self.cluster_outages),
            );
        }
        out.push_str(
            "# HELP sockeye_handshakes_rejected_total WebSocket handshakes refused, by reason.\n\
             # TYPE sockeye_handshakes_rejected_total counter\n",
        );
        for (i, (_, label)) in REJECTIONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "sockeye_handshakes_rejected_total{{reason=\"{label}\"}} {}",
                get(&self.rejected[i])
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_every_family_and_moves() {
        let mut m = Metrics::default();
        m.connections_opened += 3;
        m.connections_closed += 1;
        m.reject(Rejection::from_status(503));
        let page = m.render(&HubGauges::default());
        assert!(page.contains("sockeye_connections_open 2\n"));
        assert!(page.contains("sockeye_handshakes_rejected_total{reason=\"over_limit\"} 1\n"));
        assert!(page.contains("sockeye_resends_total 0\n"));
        assert!(page.contains("sockeye_mailbox_depth 0\n"));
        for line in page.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("sockeye_"), "{line}");
        }
    }
}
