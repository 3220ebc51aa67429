//! The cluster backend's bytes (`--redis`): two threads, each with its own Redis
//! connection, carry out the layer's [`Action::Publish`](sockeye_server::Action),
//! `Subscribe` and `Unsubscribe` and report back as [`Report`]s. The layer decides what
//! to publish and which channels it needs; this only moves bytes, reconnects with
//! backoff, and says when Redis is reachable.
//!
//! - The **publisher** sends each `PUBLISH` in the order the layer gave them (one
//!   connection: Redis keeps that order for every subscriber) and answers each with the
//!   subscriber count or the error. While Redis is down it answers at once with an
//!   error, and tries to reconnect after a backoff (100 ms doubling to 2 s).
//! - The **subscriber** holds a connection in pub/sub mode, applies the layer's
//!   subscriptions, and hands every message on. After a reconnect it drops commands
//!   from before (the layer asks for every channel again once both are up).
//!
//! Why threads and the blocking client rather than an async one: the blocking client
//! is the `redis` crate with no optional features (the smallest build), and the same
//! two threads serve both runtimes.

// Without the feature only the refusal and the types remain.
#![cfg_attr(not(feature = "redis"), allow(dead_code, unused_imports))]

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::THREAD_STACK_BYTES;

/// First wait before reconnecting; doubled after every failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a command may wait for Redis's answer before the connection is taken as
/// lost.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the subscriber waits for a message before it looks for new subscriptions.
const SUBSCRIBER_POLL: Duration = Duration::from_millis(20);

/// What the backend threads tell the runtime, which hands it to the layer.
#[derive(Debug)]
pub(crate) enum Report {
    /// Both connections are up (`Server::handle_cluster_up`).
    Up,
    /// One of them failed (`Server::handle_cluster_down`).
    Down(String),
    /// A subscription is confirmed (`Server::handle_subscribed`).
    Subscribed(String),
    /// A message on a subscribed channel (`Server::handle_remote`).
    Message(String, Vec<u8>),
    /// The outcome of publication `id` (`Server::handle_published`).
    Published(u64, Result<u64, String>),
    /// The answer to command `id` (`Server::handle_reply`).
    Replied(u64, Result<sockeye_server::Reply, String>),
}

/// What the publisher thread runs, in order: a publication, or a command (the
/// mailboxes).
enum Job {
    Publish(u64, String, Bytes),
    Command(u64, Vec<Bytes>),
}

/// A subscription change for the subscriber thread.
enum Subscription {
    Subscribe(String),
    Unsubscribe(String),
}

/// The two threads, as the runtime drives them.
pub(crate) struct Backend {
    /// `None` once dropped: the publisher then sends what is queued and ends.
    publish: Option<Sender<Job>>,
    subscribe: Sender<Subscription>,
    /// Disconnected once the publisher thread ended.
    published_all: Receiver<()>,
}

/// How long a stopping server waits for its last publications (the leaves and the
/// goodbye of a graceful shutdown) to reach Redis.
const FLUSH_AT_STOP: Duration = Duration::from_secs(1);

impl Drop for Backend {
    fn drop(&mut self) {
        drop(self.publish.take());
        let _ = self.published_all.recv_timeout(FLUSH_AT_STOP);
    }
}

#[cfg(feature = "redis")]
/// Which of the two connections are up, and what the runtime was last told.
#[derive(Default)]
struct Links {
    publisher: bool,
    subscriber: bool,
    told_up: bool,
}

#[cfg(feature = "redis")]
type Reporter = Arc<dyn Fn(Report) -> bool + Send + Sync>;

#[cfg(feature = "redis")]
/// Sets one link's state and tells the runtime when "both up" changes. Held under the
/// lock, so reports of up and down cannot pass each other.
fn set_link(links: &Mutex<Links>, report: &Reporter, publisher: bool, up: bool, why: &str) {
    let mut links = links.lock().unwrap_or_else(|e| e.into_inner());
    if publisher {
        links.publisher = up;
    } else {
        links.subscriber = up;
    }
    let both = links.publisher && links.subscriber;
    if both != links.told_up {
        links.told_up = both;
        report(if both {
            Report::Up
        } else {
            Report::Down(why.to_string())
        });
    }
}

impl Backend {
    /// Without the `redis` feature: refused.
    #[cfg(not(feature = "redis"))]
    pub(crate) fn start(
        url: &str,
        _report: impl Fn(Report) -> bool + Send + Sync + 'static,
    ) -> std::io::Result<Backend> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("--redis {url:?}: this build has no Redis support (feature `redis`)"),
        ))
    }

    /// Checks `url` and starts both threads; `report` carries what they learn to the
    /// runtime (and answers whether it is still there).
    #[cfg(feature = "redis")]
    pub(crate) fn start(
        url: &str,
        report: impl Fn(Report) -> bool + Send + Sync + 'static,
    ) -> std::io::Result<Backend> {
        let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
        let target = crate::config::RedisTarget::parse(url).map_err(&invalid)?;
        let mut settings = redis::RedisConnectionInfo::default().set_db(target.db);
        if let Some(user) = &target.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &target.password {
            settings = settings.set_password(password);
        }
        let info = redis::IntoConnectionInfo::into_connection_info(redis::ConnectionAddr::Tcp(
            target.host,
            target.port,
        ))
        .map_err(|e| invalid(e.to_string()))?
        .set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(|e| invalid(format!("--redis: {e}")))?;
        let report: Reporter = Arc::new(report);
        let links = Arc::new(Mutex::new(Links::default()));
        let (publish, publications) = mpsc::channel();
        let (subscribe, subscriptions) = mpsc::channel();
        let (done, published_all) = mpsc::channel::<()>();
        {
            let (client, report, links) = (client.clone(), Arc::clone(&report), Arc::clone(&links));
            thread::Builder::new()
                .name("sockeye-redis-pub".into())
                .stack_size(THREAD_STACK_BYTES)
                .spawn(move || {
                    publisher(&client, &publications, &report, &links);
                    drop(done);
                })?;
        }
        thread::Builder::new()
            .name("sockeye-redis-sub".into())
            .stack_size(THREAD_STACK_BYTES)
            .spawn(move || subscriber(&client, &subscriptions, &report, &links))?;
        Ok(Backend {
            publish: Some(publish),
            subscribe,
            published_all,
        })
    }

    /// Carries out a publication (answered by a [`Report::Published`]).
    pub(crate) fn publish(&self, id: u64, channel: String, payload: Bytes) -> bool {
        self.job(Job::Publish(id, channel, payload))
    }

    /// Runs a command (answered by a [`Report::Replied`]).
    pub(crate) fn command(&self, id: u64, args: Vec<Bytes>) -> bool {
        self.job(Job::Command(id, args))
    }

    fn job(&self, job: Job) -> bool {
        self.publish.as_ref().is_some_and(|p| p.send(job).is_ok())
    }

    pub(crate) fn subscribe(&self, channel: String) {
        let _ = self.subscribe.send(Subscription::Subscribe(channel));
    }

    pub(crate) fn unsubscribe(&self, channel: String) {
        let _ = self.subscribe.send(Subscription::Unsubscribe(channel));
    }
}

/// Hands a report of the Redis threads to the layer.
pub(crate) fn hand_over(
    server: &mut sockeye_server::Server,
    now: sockeye_core::Instant,
    report: Report,
) {
    match report {
        Report::Up => server.handle_cluster_up(now),
        Report::Down(why) => server.handle_cluster_down(now, &why),
        Report::Subscribed(channel) => server.handle_subscribed(now, &channel),
        Report::Message(channel, payload) => server.handle_remote(now, &channel, &payload),
        Report::Published(id, result) => server.handle_published(now, id, result),
        Report::Replied(id, result) => server.handle_reply(now, id, result),
    }
}

/// Carries out one of the layer's cluster actions; a publication with no backend to
/// take it is answered as failed at once.
pub(crate) fn carry_out(
    backend: Option<&Backend>,
    server: &mut sockeye_server::Server,
    now: sockeye_core::Instant,
    action: sockeye_server::Action,
) {
    use sockeye_server::Action;
    match action {
        Action::Publish {
            id,
            channel,
            payload,
        } => {
            let sent = backend.is_some_and(|b| b.publish(id, channel, payload));
            if !sent {
                server.handle_published(now, id, Err("no redis thread to publish".into()));
            }
        }
        Action::Command { id, args } => {
            let sent = backend.is_some_and(|b| b.command(id, args));
            if !sent {
                server.handle_reply(now, id, Err("no redis thread to run it".into()));
            }
        }
        Action::Subscribe(channel) => {
            if let Some(backend) = backend {
                backend.subscribe(channel);
            }
        }
        Action::Unsubscribe(channel) => {
            if let Some(backend) = backend {
                backend.unsubscribe(channel);
            }
        }
        _ => {}
    }
}

#[cfg(feature = "redis")]
/// Backoff between reconnection attempts.
struct Backoff {
    wait: Duration,
    next: Instant,
}

#[cfg(feature = "redis")]
impl Backoff {
    fn new() -> Backoff {
        Backoff {
            wait: MIN_BACKOFF,
            next: Instant::now(),
        }
    }

    fn due(&self) -> bool {
        Instant::now() >= self.next
    }

    fn failed(&mut self) {
        self.next = Instant::now() + self.wait;
        self.wait = (self.wait * 2).min(MAX_BACKOFF);
    }

    fn succeeded(&mut self) {
        self.wait = MIN_BACKOFF;
    }

    fn left(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }
}

#[cfg(feature = "redis")]
fn publisher(
    client: &redis::Client,
    publications: &Receiver<Job>,
    report: &Reporter,
    links: &Mutex<Links>,
) {
    let mut connection: Option<redis::Connection> = None;
    let mut backoff = Backoff::new();
    let mut last_error = String::from("not connected yet");
    loop {
        if connection.is_none() && backoff.due() {
            match client.get_connection_with_timeout(CONNECT_TIMEOUT) {
                Ok(c) => {
                    // A Redis that hangs fails the publication instead of holding it.
                    let _ = c.set_read_timeout(Some(ANSWER_TIMEOUT));
                    let _ = c.set_write_timeout(Some(ANSWER_TIMEOUT));
                    backoff.succeeded();
                    connection = Some(c);
                    set_link(links, report, true, true, "");
                }
                Err(e) => {
                    backoff.failed();
                    last_error = e.to_string();
                    log::debug!("redis publisher: cannot connect: {e}");
                }
            }
        }
        let wait = match connection {
            Some(_) => Duration::from_secs(3600),
            None => backoff.left().max(Duration::from_millis(1)),
        };
        let job = match publications.recv_timeout(wait) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let (id, command) = match &job {
            Job::Publish(id, channel, payload) => {
                let mut command = redis::cmd("PUBLISH");
                command.arg(channel).arg(&payload[..]);
                (*id, command)
            }
            Job::Command(id, args) => {
                let mut command = redis::cmd(std::str::from_utf8(&args[0]).unwrap_or("PING"));
                for arg in &args[1..] {
                    command.arg(&arg[..]);
                }
                (*id, command)
            }
        };
        let result = match &mut connection {
            None => Err(format!("redis unreachable: {last_error}")),
            Some(c) => match command.query::<redis::Value>(c) {
                Ok(value) => Ok(value),
                Err(e) => {
                    if e.is_io_error()
                        || e.is_connection_dropped()
                        || !redis::ConnectionLike::is_open(c)
                    {
                        connection = None;
                        last_error = e.to_string();
                        backoff.failed();
                        set_link(links, report, true, false, &last_error);
                    }
                    Err(e.to_string())
                }
            },
        };
        // A runtime that is gone hears nothing more, but what it queued still goes out
        // (the leaves and goodbye of a graceful shutdown).
        let _ = report(match job {
            Job::Publish(..) => Report::Published(
                id,
                result.and_then(|value| match value {
                    redis::Value::Int(n) => Ok(n.max(0) as u64),
                    other => Err(format!("PUBLISH answered {other:?}")),
                }),
            ),
            Job::Command(..) => Report::Replied(id, result.map(reply)),
        });
    }
}

/// A Redis value as the layer reads it.
#[cfg(feature = "redis")]
fn reply(value: redis::Value) -> sockeye_server::Reply {
    use redis::Value;
    use sockeye_server::Reply;
    match value {
        Value::Int(n) => Reply::Int(n),
        Value::BulkString(bytes) => Reply::Data(Bytes::from(bytes)),
        Value::SimpleString(text) => Reply::Data(Bytes::from(text)),
        Value::Okay => Reply::Data(Bytes::from_static(b"OK")),
        Value::Array(items) | Value::Set(items) => {
            Reply::List(items.into_iter().map(reply).collect())
        }
        Value::Map(pairs) => Reply::List(
            pairs
                .into_iter()
                .flat_map(|(key, value)| [reply(key), reply(value)])
                .collect(),
        ),
        _ => Reply::Nil,
    }
}

#[cfg(feature = "redis")]
fn subscriber(
    client: &redis::Client,
    subscriptions: &Receiver<Subscription>,
    report: &Reporter,
    links: &Mutex<Links>,
) {
    let mut backoff = Backoff::new();
    loop {
        let mut connection = match client.get_connection_with_timeout(CONNECT_TIMEOUT) {
            Ok(c) => c,
            Err(e) => {
                log::debug!("redis subscriber: cannot connect: {e}");
                backoff.failed();
                thread::sleep(backoff.left());
                // The runtime is gone (its end of the channel dropped): so is this thread.
                if gone(subscriptions) {
                    return;
                }
                continue;
            }
        };
        backoff.succeeded();
        let mut pubsub = connection.as_pubsub();
        if pubsub.set_read_timeout(Some(SUBSCRIBER_POLL)).is_err() {
            continue;
        }
        // What was asked of the connection that failed: the layer asks again once up.
        if gone(subscriptions) {
            return;
        }
        set_link(links, report, false, true, "");
        let why = loop {
            let mut failed = None;
            loop {
                let change = match subscriptions.try_recv() {
                    Ok(change) => change,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                };
                // Redis's answer may take longer than a poll: a timeout there would be
                // taken for a failure.
                let _ = pubsub.set_read_timeout(Some(ANSWER_TIMEOUT));
                let done = match &change {
                    Subscription::Subscribe(channel) => pubsub.subscribe(channel),
                    Subscription::Unsubscribe(channel) => pubsub.unsubscribe(channel),
                };
                let _ = pubsub.set_read_timeout(Some(SUBSCRIBER_POLL));
                match (done, change) {
                    (Ok(()), Subscription::Subscribe(channel)) => {
                        if !report(Report::Subscribed(channel)) {
                            return;
                        }
                    }
                    (Ok(()), Subscription::Unsubscribe(_)) => {}
                    (Err(e), _) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            if let Some(why) = failed {
                break why;
            }
            match pubsub.get_message() {
                Ok(message) => {
                    let channel = message.get_channel_name().to_string();
                    let payload = message.get_payload_bytes().to_vec();
                    if !report(Report::Message(channel, payload)) {
                        return;
                    }
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => break e.to_string(),
            }
        };
        log::warn!("redis subscriber: connection lost: {why}");
        set_link(links, report, false, false, &why);
        backoff.failed();
        thread::sleep(backoff.left());
        if gone(subscriptions) {
            return;
        }
    }
}

/// Whether the runtime dropped its end; drops what it asked for before (the layer asks
/// for every channel again once Redis is back).
#[cfg(feature = "redis")]
fn gone(subscriptions: &Receiver<Subscription>) -> bool {
    loop {
        match subscriptions.try_recv() {
            Ok(_) => {}
            Err(TryRecvError::Empty) => return false,
            Err(TryRecvError::Disconnected) => return true,
        }
    }
}
