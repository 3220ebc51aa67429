//! The cluster backend's bytes (`--redis`): two threads, each with its own Redis
//! connection, carry out the layer's [`Action::Publish`](sockeye_server::Action),
//! `Subscribe` and `Unsubscribe` and report back as [`Report`]s. The layer decides what
//! to publish and which channels it needs; this only moves bytes, reconnects with
//! backoff, and says when Redis is reachable.
//!
//! - The **publisher** sends the `PUBLISH`es and commands in the order the layer gave
//!   them (one connection: Redis keeps that order for every subscriber), everything
//!   queued as one pipeline (at most 256 jobs or about 256 KiB of commands),
//!   and answers each, in order, with Redis's reply or the error;
//!   a job whose reply was not read when the connection failed is answered as failed
//!   (Redis may still have run it). A batch gets [`ANSWER_TIMEOUT`] for all its
//!   replies. Scripts go by their SHA-1 (`EVALSHA`) once the connection sent their text
//!   (`EVAL`). While Redis is down it answers at once with an error, and tries to
//!   reconnect after a backoff (100 ms doubling to 2 s).
//! - The **subscriber** holds a connection in pub/sub mode, applies the layer's
//!   subscriptions, and hands every message on. After a reconnect it drops commands
//!   from before (the layer asks for every channel again once both are up).
//!
//! Both connections go to the same [`Settings`]: a `rediss://` URL is TLS (the `redis`
//! crate's rustls support, with the `tls` feature), verified against the platform's roots
//! or the CA file of `--redis-ca-cert`; a password in the URL is sent with `AUTH` on
//! every connection.
//!
//! Why threads and the blocking client rather than an async one: the blocking client
//! is the `redis` crate with no optional features but TLS (the smallest build), and the
//! same two threads serve both runtimes.

// Without the feature only the refusal and the types remain.
#![cfg_attr(not(feature = "redis"), allow(dead_code, unused_imports))]

use std::path::{Path, PathBuf};
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
/// How long a batch of commands may wait for Redis's answers before the connection is
/// taken as lost.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the subscriber waits for a message before it looks for new subscriptions.
const SUBSCRIBER_POLL: Duration = Duration::from_millis(20);

/// Where the backend connects: `--redis` and `--redis-ca-cert`.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// The URL, `redis://…` or `rediss://…` (checked by [`Backend::start`]).
    pub(crate) url: String,
    /// With `rediss://`: the PEM file of the CA certificates to trust instead of the
    /// platform's roots.
    pub(crate) ca_cert: Option<PathBuf>,
}

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
        settings: &Settings,
        _report: impl Fn(Report) -> bool + Send + Sync + 'static,
    ) -> std::io::Result<Backend> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!(
                "--redis {:?}: this build has no Redis support (feature `redis`)",
                settings.url
            ),
        ))
    }

    /// Checks the settings (the URL, and reads the CA file) and starts both threads;
    /// `report` carries what they learn to the runtime (and answers whether it is still
    /// there).
    #[cfg(feature = "redis")]
    pub(crate) fn start(
        settings: &Settings,
        report: impl Fn(Report) -> bool + Send + Sync + 'static,
    ) -> std::io::Result<Backend> {
        let client = client(settings)?;
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

#[cfg(feature = "redis")]
/// The client both threads connect with: `settings.url` parsed by sockeye (see
/// [`RedisTarget`](crate::config::RedisTarget)), with TLS for `rediss://`.
fn client(settings: &Settings) -> std::io::Result<redis::Client> {
    let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
    let target = crate::config::RedisTarget::parse(&settings.url).map_err(&invalid)?;
    let mut redis_settings = redis::RedisConnectionInfo::default().set_db(target.db);
    if let Some(user) = &target.username {
        redis_settings = redis_settings.set_username(user);
    }
    if let Some(password) = &target.password {
        redis_settings = redis_settings.set_password(password);
    }
    let address = if target.tls {
        redis::ConnectionAddr::TcpTls {
            host: target.host,
            port: target.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        redis::ConnectionAddr::Tcp(target.host, target.port)
    };
    let info = redis::IntoConnectionInfo::into_connection_info(address)
        .map_err(|e| invalid(e.to_string()))?
        .set_redis_settings(redis_settings);
    if target.tls {
        tls_client(info, settings.ca_cert.as_deref())
    } else {
        redis::Client::open(info).map_err(|e| invalid(format!("--redis: {e}")))
    }
}

#[cfg(all(feature = "redis", feature = "tls"))]
/// A `rediss://` client: the server's certificate is verified for the URL's host against
/// the CA certificates of `ca_cert` if given, else the platform's roots (read at every
/// connect, by the `redis` crate).
fn tls_client(
    info: redis::ConnectionInfo,
    ca_cert: Option<&Path>,
) -> std::io::Result<redis::Client> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
    // The `redis` crate builds its rustls configuration with the process's default
    // crypto provider: make that ring, the listener's (sockeye-std's `tls`), unless the
    // program installed one of its own first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root_cert = match ca_cert {
        None => None,
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                std::io::Error::new(e.kind(), format!("--redis-ca-cert {}: {e}", path.display()))
            })?;
            // An empty store would fail every handshake with a less helpful error.
            let certificates = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(format!("--redis-ca-cert {}: {e}", path.display())))?;
            if certificates.is_empty() {
                return Err(invalid(format!(
                    "--redis-ca-cert {}: no PEM certificate in it",
                    path.display()
                )));
            }
            Some(pem)
        }
    };
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert,
    };
    redis::Client::build_with_tls(info, certificates).map_err(|e| invalid(format!("--redis: {e}")))
}

#[cfg(all(feature = "redis", not(feature = "tls")))]
/// Without the `tls` feature `rediss://` is refused when the flags are parsed; this is
/// for a [`Settings`] made otherwise.
fn tls_client(_: redis::ConnectionInfo, _: Option<&Path>) -> std::io::Result<redis::Client> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "TLS to Redis (rediss://) is not in this build (feature `tls`)",
    ))
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
/// At most this many jobs go out as one pipeline...
const MAX_BATCH_JOBS: usize = 256;
/// ... or about this many bytes of commands (a batch stops after the job that passes it).
const MAX_BATCH_BYTES: usize = 256 * 1024;

#[cfg(feature = "redis")]
/// A job of a batch, and whether a script of it goes as its whole text (`EVAL`) even if
/// the connection loaded it already: its `EVALSHA` was answered `NOSCRIPT`.
type Queued = (Job, bool);

#[cfg(feature = "redis")]
/// The scripts of the mailbox and session commands, by text: their SHA-1, and which of
/// them the current connection's Redis holds (it ran their `EVAL`), so `EVALSHA` does.
#[derive(Default)]
struct Scripts {
    sha: std::collections::HashMap<Bytes, String>,
    loaded: std::collections::HashSet<String>,
}

#[cfg(feature = "redis")]
impl Scripts {
    /// Writes `command` of a job as Redis receives it: an `EVAL` of a script this
    /// connection already ran as `EVALSHA`, unless `full`.
    fn encode(&mut self, args: &[Bytes], full: bool, out: &mut Vec<u8>) {
        let mut command = redis::cmd(std::str::from_utf8(&args[0]).unwrap_or("PING"));
        let mut rest = &args[1..];
        if &args[0][..] == b"EVAL" && !rest.is_empty() {
            let script = &rest[0];
            let sha = self.sha.entry(script.clone()).or_insert_with(|| {
                use sha1::Digest;
                let digest = sha1::Sha1::digest(&script[..]);
                digest.iter().map(|b| format!("{b:02x}")).collect()
            });
            // `EVAL` puts the script into Redis's cache (until a restart or a
            // `SCRIPT FLUSH`), so the commands after it in the pipeline may name it.
            if !full && self.loaded.contains(sha.as_str()) {
                command = redis::cmd("EVALSHA");
                command.arg(sha.as_str());
                rest = &rest[1..];
            } else {
                self.loaded.insert(sha.clone());
            }
        }
        for arg in rest {
            command.arg(&arg[..]);
        }
        command.write_packed_command(out);
    }
}

#[cfg(feature = "redis")]
/// What Redis answered one job of a pipeline.
enum Answer {
    Value(redis::Value),
    /// `NOSCRIPT`: the job did not run (the script cache was flushed).
    NoScript,
    Failed(String),
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
    // Whether the failures since the last connection were logged as a warning: the
    // first is (a wrong password or an untrusted certificate shows at once, even before
    // the node was ever up), the retries after it only at debug level.
    let mut warned = false;
    let mut scripts = Scripts::default();
    // Jobs to run again at the start of the next batch (a `NOSCRIPT`).
    let mut again: std::collections::VecDeque<Queued> = std::collections::VecDeque::new();
    let mut packed = Vec::new();
    loop {
        if connection.is_none() && backoff.due() {
            match client.get_connection_with_timeout(CONNECT_TIMEOUT) {
                Ok(c) => {
                    // A Redis that hangs fails the batch instead of holding it.
                    let _ = c.set_read_timeout(Some(ANSWER_TIMEOUT));
                    let _ = c.set_write_timeout(Some(ANSWER_TIMEOUT));
                    backoff.succeeded();
                    warned = false;
                    // A new connection may be a restarted Redis, with no scripts.
                    scripts.loaded.clear();
                    connection = Some(c);
                    set_link(links, report, true, true, "");
                }
                Err(e) => {
                    backoff.failed();
                    last_error = e.to_string();
                    if warned {
                        log::debug!("redis publisher: cannot connect: {e}");
                    } else {
                        warned = true;
                        log::warn!("redis: cannot connect (trying again with a backoff): {e}");
                    }
                }
            }
        }
        let mut batch: Vec<Queued> = again.drain(..).collect();
        if batch.is_empty() {
            let wait = match connection {
                Some(_) => Duration::from_secs(3600),
                None => backoff.left().max(Duration::from_millis(1)),
            };
            match publications.recv_timeout(wait) {
                Ok(job) => batch.push((job, false)),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        // Whatever else is queued goes in the same pipeline, in the order given: one
        // connection, so Redis runs (and publishes) them in that order.
        packed.clear();
        let mut jobs = Vec::with_capacity(batch.len());
        let mut queued = batch.into_iter();
        while let Some((job, full)) = queued.next().or_else(|| {
            let room = jobs.len() < MAX_BATCH_JOBS && packed.len() < MAX_BATCH_BYTES;
            room.then(|| publications.try_recv().ok())
                .flatten()
                .map(|job| (job, false))
        }) {
            match &job {
                Job::Publish(_, channel, payload) => redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(&payload[..])
                    .write_packed_command(&mut packed),
                Job::Command(_, args) => scripts.encode(args, full, &mut packed),
            }
            jobs.push(job);
        }
        // The jobs Redis did not answer (the connection failed, or there was none) are
        // failed, never reported done: Redis may still have run those it received, as
        // for one publication that timed out (the 503 says so).
        let (mut answers, lost, mut link_lost) = match &mut connection {
            None => (
                Vec::new(),
                format!("redis unreachable: {last_error}"),
                false,
            ),
            Some(c) => match run(c, &packed, jobs.len()) {
                Ok(answers) => (answers, String::new(), false),
                Err((answers, e)) => {
                    connection = None;
                    last_error = e;
                    backoff.failed();
                    let lost = format!("redis connection lost before its answer: {last_error}");
                    (answers, lost, true)
                }
            },
        };
        // As with one command at a time: what Redis answered, then that the link is
        // down, then the jobs it failed.
        let answered = answers.len();
        answers.resize_with(jobs.len(), || Answer::Failed(lost.clone()));
        // A `NOSCRIPT` job did not run; it runs again (as `EVAL`) only if no job after it
        // in this batch ran, so that nothing passes it. Before one that ran, it fails.
        let ran_after = answers
            .iter()
            .rposition(|a| !matches!(a, Answer::NoScript))
            .map_or(0, |i| i + 1);
        if answers.iter().any(|a| matches!(a, Answer::NoScript)) {
            scripts.loaded.clear();
        }
        for (i, (job, answer)) in jobs.into_iter().zip(answers).enumerate() {
            if i == answered && link_lost {
                link_lost = false;
                set_link(links, report, true, false, &last_error);
            }
            let result = match answer {
                Answer::NoScript if i >= ran_after => {
                    again.push_back((job, true));
                    continue;
                }
                Answer::NoScript => Err("NOSCRIPT: redis lost the script (not run)".to_string()),
                Answer::Value(value) => Ok(value),
                Answer::Failed(e) => Err(e),
            };
            // A runtime that is gone hears nothing more, but what it queued still goes
            // out (the leaves and goodbye of a graceful shutdown).
            let _ = report(match job {
                Job::Publish(id, ..) => Report::Published(
                    id,
                    result.and_then(|value| match value {
                        redis::Value::Int(n) => Ok(n.max(0) as u64),
                        other => Err(format!("PUBLISH answered {other:?}")),
                    }),
                ),
                Job::Command(id, _) => Report::Replied(id, result.map(reply)),
            });
        }
    }
}

#[cfg(feature = "redis")]
/// Sends the `count` commands in `packed` as one pipeline and reads their answers in
/// order, all within [`ANSWER_TIMEOUT`]. If the connection fails, the answers read so
/// far and why: the connection is then unusable (the rest of the answers are lost).
fn run(
    connection: &mut redis::Connection,
    packed: &[u8],
    count: usize,
) -> Result<Vec<Answer>, (Vec<Answer>, String)> {
    let mut answers = Vec::with_capacity(count);
    if count == 0 {
        return Ok(answers);
    }
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    if let Err(e) = connection.send_packed_command(packed) {
        return Err((answers, e.to_string()));
    }
    while answers.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err((answers, "redis did not answer in time".to_string()));
        }
        let _ = connection.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        answers.push(match connection.recv_response() {
            Ok(redis::Value::ServerError(e)) if e.code() == "NOSCRIPT" => Answer::NoScript,
            Ok(redis::Value::ServerError(e)) => Answer::Failed(e.to_string()),
            Ok(value) => Answer::Value(value),
            Err(e) => return Err((answers, e.to_string())),
        });
    }
    Ok(answers)
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

#[cfg(all(test, feature = "redis"))]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};

    /// Runs the publisher over `jobs`, all queued before it starts (so they go out as
    /// one batch), until it ran them all; what it reported, in order.
    fn publish_all(client: &redis::Client, jobs: Vec<Job>) -> Vec<Report> {
        let (send, receive) = mpsc::channel();
        for job in jobs {
            send.send(job).unwrap();
        }
        drop(send);
        let reports = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::clone(&reports);
        let report: Reporter = Arc::new(move |r| {
            into.lock().unwrap().push(r);
            true
        });
        // The subscriber's link up, so that the publisher's changes are reported.
        let links = Links {
            subscriber: true,
            ..Links::default()
        };
        publisher(client, &receive, &report, &Mutex::new(links));
        let reports = std::mem::take(&mut *reports.lock().unwrap());
        reports
    }

    fn client(port: u16) -> redis::Client {
        redis::Client::open(
            redis::IntoConnectionInfo::into_connection_info(redis::ConnectionAddr::Tcp(
                "127.0.0.1".into(),
                port,
            ))
            .unwrap(),
        )
        .unwrap()
    }

    /// Reads one command (an array of bulk strings) as a fake Redis receives it.
    fn read_command(reader: &mut impl BufRead) -> Option<Vec<String>> {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let count: usize = line.trim().strip_prefix('*')?.parse().ok()?;
        let mut args = Vec::new();
        for _ in 0..count {
            line.clear();
            reader.read_line(&mut line).ok()?;
            let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
            let mut arg = vec![0; len + 2];
            reader.read_exact(&mut arg).ok()?;
            arg.truncate(len);
            args.push(String::from_utf8(arg).ok()?);
        }
        Some(args)
    }

    #[test]
    fn a_connection_lost_mid_batch_fails_every_job_not_answered() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // A Redis that answers the first 3 of 10 publications, then closes.
        let fake = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            let mut published = 0;
            while published < 10 {
                let command = read_command(&mut reader).expect("a command");
                if command[0] == "PUBLISH" {
                    published += 1;
                } else {
                    // The client's set-up (`CLIENT SETINFO`).
                    writer.write_all(b"+OK\r\n").unwrap();
                }
            }
            writer.write_all(b":1\r\n:2\r\n:3\r\n").unwrap();
            drop(writer);
            drop(reader);
        });
        let jobs = (0..10)
            .map(|id| Job::Publish(id, "c".into(), Bytes::from_static(b"x")))
            .collect();
        let reports = publish_all(&client(port), jobs);
        fake.join().unwrap();
        let told: Vec<String> = reports
            .iter()
            .map(|r| match r {
                Report::Up => "up".to_string(),
                Report::Down(_) => "down".to_string(),
                Report::Published(id, Ok(n)) => format!("{id}:{n}"),
                Report::Published(id, Err(_)) => format!("{id}:err"),
                other => format!("{other:?}"),
            })
            .collect();
        let mut expected = vec!["up", "0:1", "1:2", "2:3", "down"];
        let failed: Vec<String> = (3..10).map(|id| format!("{id}:err")).collect();
        expected.extend(failed.iter().map(String::as_str));
        assert_eq!(told, expected);
    }

    #[test]
    fn a_noscript_runs_again_only_if_nothing_after_it_ran() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // A Redis whose script cache is flushed after the first `EVAL`.
        let fake = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            let mut seen = Vec::new();
            while seen.len() < 5 {
                let command = read_command(&mut reader).expect("a command");
                let answer: &[u8] = match command[0].as_str() {
                    "EVAL" => b"$1\r\nx\r\n",
                    "EVALSHA" => b"-NOSCRIPT No matching script.\r\n",
                    "PUBLISH" => b":1\r\n",
                    _ => {
                        writer.write_all(b"+OK\r\n").unwrap();
                        continue;
                    }
                };
                // The batch's four commands are all in before any is answered; then the
                // one run again.
                seen.push((command[0].clone(), answer));
                match seen.len() {
                    0..=3 => {}
                    4 => seen.iter().for_each(|(_, a)| writer.write_all(a).unwrap()),
                    _ => writer.write_all(answer).unwrap(),
                }
            }
            seen.into_iter().map(|(name, _)| name).collect::<Vec<_>>()
        });
        let reports = publish_all(
            &client(port),
            vec![
                echo(1, "a"),
                echo(2, "b"),
                Job::Publish(3, "c".into(), Bytes::from_static(b"x")),
                echo(4, "d"),
            ],
        );
        // Job 2 did not run, but job 3 did after it: running 2 now would pass 3. Job 4,
        // the last, runs again as `EVAL`.
        assert_eq!(
            fake.join().unwrap(),
            ["EVAL", "EVALSHA", "PUBLISH", "EVALSHA", "EVAL"]
        );
        let told = outcomes(&reports);
        assert_eq!(told[0], "1:x");
        assert!(told[1].starts_with("2:Err(\"NOSCRIPT"), "{told:?}");
        assert_eq!(told[2..], ["3:Ok(1)", "4:x"]);
    }

    /// A `redis-server` of this test on a free port, with no persistence; `None` (the
    /// test is skipped) without one installed.
    struct RealRedis {
        port: u16,
        child: Child,
    }

    impl RealRedis {
        fn start(port: u16) -> Option<RealRedis> {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            let server = RealRedis { port, child };
            let start = Instant::now();
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "redis-server did not start"
                );
                thread::sleep(Duration::from_millis(20));
            }
            Some(server)
        }

        fn query(&self, args: &[&str]) -> redis::Value {
            let mut connection = client(self.port).get_connection().unwrap();
            let mut command = redis::cmd(args[0]);
            for arg in &args[1..] {
                command.arg(*arg);
            }
            command.query(&mut connection).unwrap()
        }

        /// How often Redis ran `name` (`INFO commandstats`).
        fn calls(&self, name: &str) -> u64 {
            let redis::Value::BulkString(info) = self.query(&["INFO", "commandstats"]) else {
                panic!("INFO answered no text");
            };
            let info = String::from_utf8(info).unwrap();
            let prefix = format!("cmdstat_{name}:calls=");
            info.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|rest| rest.split(',').next())
                .map_or(0, |n| n.parse().unwrap())
        }
    }

    impl RealRedis {
        /// How many commands Redis answered `NOSCRIPT` (`INFO errorstats`).
        fn noscripts(&self) -> u64 {
            let redis::Value::BulkString(info) = self.query(&["INFO", "errorstats"]) else {
                panic!("INFO answered no text");
            };
            let info = String::from_utf8(info).unwrap();
            info.lines()
                .find_map(|l| l.strip_prefix("errorstat_NOSCRIPT:count="))
                .map_or(0, |n| n.trim().parse().unwrap())
        }
    }

    impl Drop for RealRedis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port()
    }

    const ECHO: &str = "return ARGV[1]";

    fn echo(id: u64, text: &'static str) -> Job {
        Job::Command(
            id,
            [b"EVAL".as_slice(), ECHO.as_bytes(), b"0", text.as_bytes()]
                .map(Bytes::from_static)
                .to_vec(),
        )
    }

    /// The outcomes of the publications and commands, in the order reported.
    fn outcomes(reports: &[Report]) -> Vec<String> {
        reports
            .iter()
            .filter_map(|r| match r {
                Report::Published(id, result) => Some(format!("{id}:{result:?}")),
                Report::Replied(id, Ok(sockeye_server::Reply::Data(data))) => {
                    Some(format!("{id}:{}", String::from_utf8_lossy(data)))
                }
                Report::Replied(id, result) => Some(format!("{id}:{result:?}")),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn scripts_go_by_sha_in_order_and_survive_a_flush_and_a_restart() {
        let port = free_port();
        let Some(redis) = RealRedis::start(port) else {
            eprintln!("no redis-server: skipped");
            return;
        };
        let client = client(port);
        let reports = publish_all(
            &client,
            vec![
                echo(1, "a"),
                Job::Publish(2, "c".into(), Bytes::from_static(b"x")),
                echo(3, "b"),
                echo(4, "c"),
            ],
        );
        assert_eq!(outcomes(&reports), ["1:a", "2:Ok(0)", "3:b", "4:c"]);
        assert_eq!((redis.calls("eval"), redis.calls("evalsha")), (1, 2));

        // A flushed script cache: the `EVALSHA`s are answered NOSCRIPT and run again.
        redis.query(&["SCRIPT", "FLUSH"]);
        let (send, receive) = mpsc::channel();
        let reports = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::clone(&reports);
        let report: Reporter = Arc::new(move |r| {
            into.lock().unwrap().push(r);
            true
        });
        // One publisher across the flush, so it believes the script is loaded.
        send.send(echo(5, "d")).unwrap();
        let running = thread::spawn(move || {
            publisher(&client, &receive, &report, &Mutex::new(Links::default()))
        });
        let wait_for = |n: usize| {
            let start = Instant::now();
            while outcomes(&reports.lock().unwrap()).len() < n {
                assert!(start.elapsed() < Duration::from_secs(20), "no answer");
                thread::sleep(Duration::from_millis(10));
            }
        };
        wait_for(1);
        redis.query(&["SCRIPT", "FLUSH"]);
        send.send(echo(6, "e")).unwrap();
        send.send(echo(7, "f")).unwrap();
        wait_for(3);
        assert!(redis.noscripts() >= 1, "no EVALSHA was answered NOSCRIPT");
        // A restart empties the cache too: the new connection sends the text again.
        drop(redis);
        let redis = RealRedis::start(port).expect("redis-server again");
        let mut id = 8;
        let start = Instant::now();
        loop {
            send.send(echo(id, "g")).unwrap();
            wait_for(id as usize - 4);
            let last = outcomes(&reports.lock().unwrap()).pop().unwrap();
            if last == format!("{id}:g") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "not back: {last}"
            );
            thread::sleep(Duration::from_millis(50));
            id += 1;
        }
        drop(send);
        running.join().unwrap();
        let all = outcomes(&reports.lock().unwrap());
        assert_eq!(all[..3], ["5:d", "6:e", "7:f"]);
        assert!(redis.calls("eval") >= 1);
        assert!(all.iter().all(|o| !o.contains("NOSCRIPT")), "{all:?}");
    }
}
