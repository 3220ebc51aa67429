//! The server's settings: command-line flags with environment-variable equivalents, through
//! `clap` (derive, `env`). `clap` tokenizes, applies the precedence (a flag wins over its
//! variable, the last of a repeated flag wins), writes `--help`, `--version` and the usage
//! errors; the values go through sockeye's own parsers (sizes, durations, switches), whose
//! errors name the flag or the variable the bad value came from.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};

use super::log::Level;

/// Which runtime drives the server layer (`--runtime`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Runtime {
    /// Blocking sockets: a reader and a writer thread per connection (`threads`).
    Threads,
    /// `async-io`: every connection a task on one thread, no buffer held while idle
    /// (`smol`).
    Smol,
}

/// Everything the `sockeye` server can be told at start.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Address to listen on (`--listen`, `SOCKEYE_LISTEN`).
    pub listen: String,
    /// The runtime that drives the server (`--runtime smol|threads`; smol by default: it
    /// holds a tenth of the memory per idle connection and one descriptor instead of
    /// two, and serves several times the pushes per second on this project's benchmarks).
    pub runtime: Runtime,
    /// HMAC secret for user tokens; `None` is development mode (`--secret`).
    pub secret: Option<String>,
    /// Key a backend must present to `POST /api/push` (`--api-key`).
    pub api_key: Option<String>,
    /// Most WebSocket connections open at once.
    pub max_connections: usize,
    /// Most WebSocket connections one user may have open at once.
    pub max_connections_per_user: usize,
    /// Largest frame payload accepted from a client (close 1009 beyond).
    pub max_frame_bytes: usize,
    /// Largest message accepted from a client (close 1009 beyond); also the largest push
    /// body.
    pub max_message_bytes: usize,
    /// Bytes that may wait to be written to one connection; a consumer that lets more pile
    /// up is disconnected.
    pub max_queue_bytes: usize,
    /// Ping a connection after this long without hearing from it.
    pub ping_interval: Duration,
    /// Drop a connection that does not answer a ping within this long.
    pub pong_timeout: Duration,
    /// How long a reliable (`sockeye.v1`) session is kept for resume.
    pub session_expiry: Duration,
    /// Most messages waiting in one offline user's mailbox.
    pub mailbox_size: usize,
    /// Age after which a waiting mailbox message becomes a dead letter.
    pub mailbox_age: Duration,
    /// Bytes all mailboxes may hold together (each message counts its payload plus a
    /// fixed overhead).
    pub mailbox_bytes: usize,
    /// Messages one sending user may have waiting in mailboxes at once.
    pub mailbox_sender_messages: usize,
    /// Bytes one sending user may have waiting in mailboxes at once.
    pub mailbox_sender_bytes: usize,
    /// Rooms where a join or leave would reach more connections than this go without
    /// presence.
    pub presence_max_recipients: usize,
    /// Append-only journal file: offline mailboxes and reliable sessions survive a restart.
    pub journal: Option<PathBuf>,
    /// The running journal is compacted once it is this large and 4× its size after the
    /// last compaction (see `JournalFile::set_compaction`).
    pub journal_compact_bytes: usize,
    /// Many nodes as one service on this Redis
    /// (`redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, or `rediss://…` for TLS with the
    /// `tls` feature): pushes, room messages and presence cross nodes. `None`: one node.
    pub redis: Option<String>,
    /// PEM file of the CA certificates a `rediss://` [`redis`](Self::redis) must present
    /// a certificate of (`--redis-ca-cert`), instead of the platform's roots: for a Redis
    /// with a certificate of its own CA. `None`: the platform's roots.
    pub redis_ca_cert: Option<PathBuf>,
    /// Put before every Redis channel name, so several services share one Redis.
    pub redis_prefix: String,
    /// How much to log (`--log-level`): the level of the stderr logger that [`start`](crate::start)
    /// and [`run`](crate::run) install, unless the program installed a `log` logger of its
    /// own first.
    pub log_level: Level,
    /// Largest HTTP request head (431 beyond).
    pub max_head_bytes: usize,
    /// How long a client may take to send its request head and body (408 beyond).
    pub head_timeout: Duration,
    /// How long a graceful shutdown waits for connections to close.
    pub shutdown_grace: Duration,
    /// Answer permessage-deflate offers on `/ws` (`--deflate`); off by default.
    pub deflate: bool,
    /// The largest window (9–15 bits) a client may compress with (`--deflate-window-bits`):
    /// what each connection's decompressor keeps, `2^bits` bytes.
    pub deflate_window_bits: u8,
    /// Neither side keeps its compression context between messages
    /// (`--deflate-no-context-takeover`): no compressor (about 312 KiB) or decompressor is
    /// held by an idle connection, at the cost of setting one up for every message.
    pub deflate_no_context_takeover: bool,
    /// Messages shorter than this go uncompressed (`--deflate-min-size`).
    pub deflate_min_bytes: usize,
    /// Compression level, 0 (store) to 10 (`--deflate-level`): speed against ratio; the
    /// compressor's memory is the same at every level.
    pub deflate_level: u8,
    /// PEM certificate chain (leaf first) to serve TLS with (`--tls-cert`); with
    /// [`tls_key`](Self::tls_key), every connection is TLS (`wss://`, `https://`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of [`tls_cert`](Self::tls_cert) (`--tls-key`).
    pub tls_key: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:9001".into(),
            runtime: Runtime::Smol,
            secret: None,
            api_key: None,
            max_connections: 10_000,
            max_connections_per_user: 32,
            max_frame_bytes: 64 * 1024,
            max_message_bytes: 64 * 1024,
            max_queue_bytes: 256 * 1024,
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(20),
            session_expiry: Duration::from_secs(120),
            mailbox_size: 100,
            mailbox_age: Duration::from_secs(3600),
            mailbox_bytes: 64 << 20,
            mailbox_sender_messages: 1_000,
            mailbox_sender_bytes: 4 << 20,
            presence_max_recipients: 256,
            journal: None,
            journal_compact_bytes: 1 << 20,
            redis: None,
            redis_ca_cert: None,
            redis_prefix: "sockeye:".into(),
            log_level: Level::Info,
            max_head_bytes: 8 * 1024,
            head_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(3),
            deflate: false,
            deflate_window_bits: 15,
            deflate_no_context_takeover: false,
            deflate_min_bytes: 64,
            deflate_level: 6,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    /// Run the server.
    Run(Box<ServerConfig>),
    /// Print [`help`] and exit 0 (`--help`, `-h`).
    Help,
    /// Print [`version`] and exit 0 (`--version`, `-V`).
    Version,
}

/// Where `--redis` points: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, or `rediss://…`
/// for TLS. The user name and password are taken as written (no percent-decoding), up to
/// the last `@`, so a password may hold `:`, `/` or `@`.
///
/// Parsed here rather than by the Redis client: its URL parser pulls in full IDNA
/// (Unicode host names), about 400 KB of the binary, for host names nobody gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RedisTarget {
    /// `rediss://`: TLS, the server's certificate verified for `host`.
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) db: i64,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
}

impl RedisTarget {
    /// Parses a `--redis` URL, or says what is wrong with it.
    pub(crate) fn parse(url: &str) -> Result<RedisTarget, String> {
        let example = "a Redis URL like redis://127.0.0.1:6379/0";
        let (tls, rest) = match url.strip_prefix("rediss://") {
            Some(rest) => (true, rest),
            None => (
                false,
                url.strip_prefix("redis://")
                    .ok_or_else(|| format!("{url:?} is not {example}"))?,
            ),
        };
        if tls && !cfg!(feature = "tls") {
            return Err("TLS to Redis (rediss://) is not in this build (feature `tls`)".into());
        }
        // The credentials end at the last `@`: a password may hold `/` as well.
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => (Some(credentials), rest),
            None => (None, rest),
        };
        let (address, db) = match rest.split_once('/') {
            Some((address, "")) => (address, 0),
            Some((address, db)) => (
                address,
                db.parse()
                    .map_err(|_| format!("{db:?} is not a database number"))?,
            ),
            None => (rest, 0),
        };
        let (username, password) = match credentials.map(|c| c.split_once(':')) {
            None => (None, None),
            Some(Some((user, password))) => (
                (!user.is_empty()).then(|| user.to_string()),
                Some(password.to_string()),
            ),
            Some(None) => (None, credentials.map(str::to_string)),
        };
        let port_of = |port: &str| {
            port.parse::<u16>()
                .map_err(|_| format!("{port:?} is not a port number"))
        };
        // `[::1]:6379`: an IPv6 address in brackets.
        let (host, port) = match address.strip_prefix('[').and_then(|a| a.split_once(']')) {
            Some((host, "")) => (host, 6379),
            Some((host, port)) => match port.strip_prefix(':') {
                Some(port) => (host, port_of(port)?),
                None => return Err(format!("{url:?} is not {example}")),
            },
            None => match address.rsplit_once(':') {
                Some((host, port)) => (host, port_of(port)?),
                None => (address, 6379),
            },
        };
        if host.is_empty() {
            return Err(format!("{url:?} names no host: {example}"));
        }
        Ok(RedisTarget {
            tls,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            db,
            username,
            password,
        })
    }
}

/// The text before the flags in `--help`.
const ABOUT: &str = "\
sockeye: a small WebSocket push/chat server

Clients speak plain JSON mode (browsers, at most once) or reliable mode: a client that
offers the sockeye.v1 subprotocol gets every message numbered, acknowledged and resent
until acknowledged, delivered once and in order, and resumes its session after a cut
(for --session-expiry), or learns which of its messages were dead-lettered.

Every flag can also be set by the environment variable shown; a flag wins.
Sizes take K/KiB/M/MiB suffixes, durations ms/s/m/h (plain numbers are seconds);
switches (--deflate) need no value, or take =true|false.";

/// The text after the flags in `--help`.
const AFTER_HELP: &str = "\
Endpoints: GET /ws (WebSocket: plain JSON mode, or reliable mode with sockeye.v1),
POST /api/push, GET /healthz, GET /metrics, GET / (demo page), GET /sockeye.js and
GET /sockeye.d.ts (the JavaScript client, plain and reliable mode).

TLS: --tls-cert and --tls-key (PEM files) make every connection TLS (wss://
and https://); or terminate TLS at a reverse proxy in front of plain ws://.
--redis rediss://HOST:PORT is TLS to Redis, verified against the platform's
roots or the CA certificates of --redis-ca-cert.

permessage-deflate (--deflate) compresses each message per connection; with
context takeover (the default) a connection that has sent a compressed message
keeps a compressor of about 312 KiB, and one that received one a decompressor of
about 43 KiB (a 15-bit window): --deflate-no-context-takeover keeps neither.";

/// The command line as `clap` sees it. Every field is optional: a flag not given (nor
/// its variable) keeps [`ServerConfig::default`], the one place the defaults live; the
/// help line of each shows it in brackets.
#[derive(Parser, Debug)]
#[command(
    name = "sockeye",
    version,
    about = ABOUT,
    after_help = AFTER_HELP,
    args_override_self = true,
    // `--deflate-level -1` is a bad level, not an unknown flag `-1`.
    allow_negative_numbers = true
)]
struct Flags {
    /// address to listen on [127.0.0.1:9001]
    #[arg(long, env = "SOCKEYE_LISTEN", value_name = "ADDR", value_parser = Value(parse_listen))]
    listen: Option<String>,
    /// smol (a task per connection, one thread) or threads (two per connection) [smol]
    #[arg(long, env = "SOCKEYE_RUNTIME", value_name = "RUNTIME", value_parser = Value(parse_runtime))]
    runtime: Option<Runtime>,
    /// HMAC secret for user tokens; without it: development mode
    #[arg(long, env = "SOCKEYE_SECRET", value_parser = Value(parse_text))]
    secret: Option<String>,
    /// key for POST /api/push (Bearer or X-Api-Key)
    #[arg(long, env = "SOCKEYE_API_KEY", value_name = "KEY", value_parser = Value(parse_text))]
    api_key: Option<String>,
    /// most WebSocket connections [10000]
    #[arg(long, env = "SOCKEYE_MAX_CONNECTIONS", value_name = "N", value_parser = Value(parse_count))]
    max_connections: Option<usize>,
    /// most connections per user [32]
    #[arg(long, env = "SOCKEYE_MAX_CONNECTIONS_PER_USER", value_name = "N", value_parser = Value(parse_count))]
    max_connections_per_user: Option<usize>,
    /// largest frame from a client [64KiB]
    #[arg(long, env = "SOCKEYE_MAX_FRAME_BYTES", value_name = "SIZE", value_parser = Value(parse_bytes))]
    max_frame_bytes: Option<usize>,
    /// largest message or push body [64KiB]
    #[arg(long, env = "SOCKEYE_MAX_MESSAGE_BYTES", value_name = "SIZE", value_parser = Value(parse_bytes))]
    max_message_bytes: Option<usize>,
    /// outgoing bytes queued per connection [256KiB]
    #[arg(long, env = "SOCKEYE_MAX_QUEUE_BYTES", value_name = "SIZE", value_parser = Value(parse_bytes))]
    max_queue_bytes: Option<usize>,
    /// ping idle connections after [30s]
    #[arg(long, env = "SOCKEYE_PING_INTERVAL", value_name = "DURATION", value_parser = Value(parse_duration))]
    ping_interval: Option<Duration>,
    /// drop connections silent after a ping for [20s]
    #[arg(long, env = "SOCKEYE_PONG_TIMEOUT", value_name = "DURATION", value_parser = Value(parse_duration))]
    pong_timeout: Option<Duration>,
    /// keep reliable (sockeye.v1) sessions for resume [120s]
    #[arg(long, env = "SOCKEYE_SESSION_EXPIRY", value_name = "DURATION", value_parser = Value(parse_duration))]
    session_expiry: Option<Duration>,
    /// messages kept per offline user [100]
    #[arg(long, env = "SOCKEYE_MAILBOX_SIZE", value_name = "N", value_parser = Value(parse_count))]
    mailbox_size: Option<usize>,
    /// age before a mailbox message is dead [1h]
    #[arg(long, env = "SOCKEYE_MAILBOX_AGE", value_name = "DURATION", value_parser = Value(parse_duration))]
    mailbox_age: Option<Duration>,
    /// bytes all mailboxes may hold together [64MiB]
    #[arg(long, env = "SOCKEYE_MAILBOX_BYTES", value_name = "SIZE", value_parser = Value(parse_bytes))]
    mailbox_bytes: Option<usize>,
    /// mailbox messages one sending user may have waiting [1000]
    #[arg(long, env = "SOCKEYE_MAILBOX_SENDER_MESSAGES", value_name = "N", value_parser = Value(parse_count))]
    mailbox_sender_messages: Option<usize>,
    /// mailbox bytes one sending user may have waiting [4MiB]
    #[arg(long, env = "SOCKEYE_MAILBOX_SENDER_BYTES", value_name = "SIZE", value_parser = Value(parse_bytes))]
    mailbox_sender_bytes: Option<usize>,
    /// announce joins and leaves only to rooms of at most this many others [256]
    #[arg(long, env = "SOCKEYE_PRESENCE_MAX_RECIPIENTS", value_name = "N", value_parser = Value(parse_count))]
    presence_max_recipients: Option<usize>,
    /// append-only journal: mailboxes and reliable sessions survive a restart
    #[arg(long, env = "SOCKEYE_JOURNAL", value_name = "PATH", value_parser = Value(parse_path))]
    journal: Option<PathBuf>,
    /// compact the journal past this and 4x its last compaction [1MiB]
    #[arg(long, env = "SOCKEYE_JOURNAL_COMPACT_BYTES", value_name = "SIZE", value_parser = Value(parse_bytes))]
    journal_compact_bytes: Option<usize>,
    /// redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB]: many nodes as one service (pushes,
    /// rooms, presence); rediss:// is TLS
    #[arg(long, env = "SOCKEYE_REDIS", value_name = "URL", value_parser = Value(parse_redis))]
    redis: Option<String>,
    /// PEM CA certificates to verify a rediss:// Redis with [the platform's roots]
    #[arg(long, env = "SOCKEYE_REDIS_CA_CERT", value_name = "PATH", value_parser = Value(parse_path))]
    redis_ca_cert: Option<PathBuf>,
    /// prefix of every Redis channel, so services can share one Redis [sockeye:]
    #[arg(long, env = "SOCKEYE_REDIS_PREFIX", value_name = "PREFIX", value_parser = Value(parse_any))]
    redis_prefix: Option<String>,
    /// answer permessage-deflate offers (RFC 7692) [off]
    #[arg(long, env = "SOCKEYE_DEFLATE", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = Value(parse_switch))]
    deflate: Option<bool>,
    /// largest window (9-15 bits) clients may compress with [15]
    #[arg(long, env = "SOCKEYE_DEFLATE_WINDOW_BITS", value_name = "BITS", value_parser = Value(parse_window_bits))]
    deflate_window_bits: Option<u8>,
    /// no compression context kept between messages, either way [off]
    #[arg(long, env = "SOCKEYE_DEFLATE_NO_CONTEXT_TAKEOVER", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = Value(parse_switch))]
    deflate_no_context_takeover: Option<bool>,
    /// send messages shorter than this uncompressed [64]
    #[arg(long, env = "SOCKEYE_DEFLATE_MIN_SIZE", value_name = "SIZE", value_parser = Value(parse_bytes))]
    deflate_min_size: Option<usize>,
    /// compression level, 0 (store) to 10 (best; 1 is fastest) [6]
    #[arg(long, env = "SOCKEYE_DEFLATE_LEVEL", value_name = "LEVEL", value_parser = Value(parse_deflate_level))]
    deflate_level: Option<u8>,
    /// PEM certificate chain: serve TLS (wss://, https://) with --tls-key
    #[arg(long, env = "SOCKEYE_TLS_CERT", value_name = "PATH", value_parser = Value(parse_path))]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, env = "SOCKEYE_TLS_KEY", value_name = "PATH", value_parser = Value(parse_path))]
    tls_key: Option<PathBuf>,
    /// error, warn, info, debug [info]
    #[arg(long, env = "SOCKEYE_LOG_LEVEL", value_name = "LEVEL", value_parser = Value(Level::parse))]
    log_level: Option<Level>,
}

/// A flag's value parser: one of sockeye's own, whose error `clap` reports prefixed with
/// where the value came from (`--pong-timeout: …` or `SOCKEYE_PONG_TIMEOUT: …`), so an
/// operator knows whether to fix the command line or the environment.
#[derive(Clone, Copy)]
struct Value<T>(fn(&str) -> Result<T, String>);

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Value<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        self.parse_ref_(cmd, arg, value, ValueSource::CommandLine)
    }

    fn parse_ref_(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
        source: ValueSource,
    ) -> Result<T, clap::Error> {
        let from = match (source, arg.and_then(clap::Arg::get_env)) {
            (ValueSource::EnvVariable, Some(name)) => name.to_string_lossy().into_owned(),
            _ => format!("--{}", arg.and_then(clap::Arg::get_long).unwrap_or("?")),
        };
        let parsed = match value.to_str() {
            Some(text) => (self.0)(text),
            None => Err(format!("{value:?} is not UTF-8")),
        };
        parsed.map_err(|why| {
            let mut cmd = cmd.clone();
            cmd.error(ErrorKind::ValueValidation, format!("{from}: {why}"))
        })
    }
}

/// The `clap` command of [`Flags`]. No variable's value is shown in `--help`: some hold
/// secrets.
fn command() -> clap::Command {
    Flags::command().mut_args(|arg| arg.hide_env_values(true))
}

/// The text `--help` prints.
pub fn help() -> String {
    command().render_help().to_string()
}

/// The text `--version` prints: `sockeye 0.1.0`.
pub fn version() -> String {
    command().render_version()
}

/// Parses the command line (without the program name), falling back to the `SOCKEYE_*`
/// environment variables for flags not given. An error is the message for the operator
/// (with the usage and a pointer to `--help`); the binary prints it and exits with
/// status 2.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut cmd = command();
    let matches =
        match cmd.try_get_matches_from_mut(std::iter::once("sockeye".to_string()).chain(args)) {
            Ok(matches) => matches,
            Err(e) => {
                return match e.kind() {
                    ErrorKind::DisplayHelp => Ok(Command::Help),
                    ErrorKind::DisplayVersion => Ok(Command::Version),
                    _ => Err(e.render().to_string()),
                }
            }
        };
    let flags = Flags::from_arg_matches(&matches).map_err(|e| e.render().to_string())?;
    let config = flags.into_config().map_err(|why| {
        cmd.error(ErrorKind::ValueValidation, why)
            .render()
            .to_string()
    })?;
    Ok(Command::Run(Box::new(config)))
}

impl Flags {
    /// The defaults with every given value in place, checked as a whole.
    fn into_config(self) -> Result<ServerConfig, String> {
        let mut c = ServerConfig::default();
        macro_rules! set {
            ($($flag:ident => $field:ident),* $(,)?) => {
                $(if let Some(value) = self.$flag { c.$field = value; })*
            };
        }
        set! {
            listen => listen, runtime => runtime, max_connections => max_connections,
            max_connections_per_user => max_connections_per_user,
            max_frame_bytes => max_frame_bytes, max_message_bytes => max_message_bytes,
            max_queue_bytes => max_queue_bytes, ping_interval => ping_interval,
            pong_timeout => pong_timeout, session_expiry => session_expiry,
            mailbox_size => mailbox_size, mailbox_age => mailbox_age,
            mailbox_bytes => mailbox_bytes, mailbox_sender_messages => mailbox_sender_messages,
            mailbox_sender_bytes => mailbox_sender_bytes,
            presence_max_recipients => presence_max_recipients,
            journal_compact_bytes => journal_compact_bytes, redis_prefix => redis_prefix,
            deflate => deflate, deflate_window_bits => deflate_window_bits,
            deflate_no_context_takeover => deflate_no_context_takeover,
            deflate_min_size => deflate_min_bytes, deflate_level => deflate_level,
            log_level => log_level,
        }
        c.secret = self.secret;
        c.api_key = self.api_key;
        c.journal = self.journal;
        c.redis = self.redis;
        c.redis_ca_cert = self.redis_ca_cert;
        c.tls_cert = self.tls_cert;
        c.tls_key = self.tls_key;
        if c.max_connections_per_user == 0 || c.max_connections == 0 {
            return Err("connection limits must be at least 1".into());
        }
        if c.deflate && !cfg!(feature = "deflate") {
            return Err(
                "--deflate: this build has no permessage-deflate (feature `deflate`)".into(),
            );
        }
        match (&c.tls_cert, &c.tls_key) {
            (Some(_), None) => return Err("--tls-cert needs --tls-key".into()),
            (None, Some(_)) => return Err("--tls-key needs --tls-cert".into()),
            (Some(_), Some(_)) if !cfg!(feature = "tls") => {
                return Err("--tls-cert: this build has no TLS (feature `tls`)".into())
            }
            _ => {}
        }
        if c.redis.is_some() && !cfg!(feature = "redis") {
            return Err("--redis: this build has no Redis support (feature `redis`)".into());
        }
        let tls_redis = c
            .redis
            .as_deref()
            .is_some_and(|url| url.starts_with("rediss://"));
        if c.redis_ca_cert.is_some() && !tls_redis {
            return Err("--redis-ca-cert needs a rediss:// --redis (TLS to Redis)".into());
        }
        if c.max_frame_bytes > c.max_message_bytes {
            c.max_frame_bytes = c.max_message_bytes;
        }
        Ok(c)
    }
}

fn parse_text(value: &str) -> Result<String, String> {
    if value.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(value.to_string())
    }
}

fn parse_any(value: &str) -> Result<String, String> {
    Ok(value.to_string())
}

fn parse_path(value: &str) -> Result<PathBuf, String> {
    parse_text(value).map(PathBuf::from)
}

fn parse_listen(value: &str) -> Result<String, String> {
    value
        .parse::<std::net::SocketAddr>()
        .map_err(|_| format!("{value:?} is not an address like 127.0.0.1:9001"))?;
    Ok(value.to_string())
}

fn parse_redis(value: &str) -> Result<String, String> {
    let url = parse_text(value)?;
    RedisTarget::parse(&url)?;
    Ok(url)
}

fn parse_runtime(value: &str) -> Result<Runtime, String> {
    match value {
        "threads" => Ok(Runtime::Threads),
        "smol" => Ok(Runtime::Smol),
        _ => Err(format!("{value:?} is not a runtime: threads or smol")),
    }
}

/// On or off: `true`, `1`, `on`, `yes` or `false`, `0`, `off`, `no`.
fn parse_switch(value: &str) -> Result<bool, String> {
    match value {
        "true" | "1" | "on" | "yes" => Ok(true),
        "false" | "0" | "off" | "no" => Ok(false),
        _ => Err(format!("{value:?} is not on or off (true or false)")),
    }
}

fn parse_deflate_level(value: &str) -> Result<u8, String> {
    value
        .parse()
        .ok()
        .filter(|level| *level <= 10)
        .ok_or_else(|| format!("{value:?} is not a compression level from 0 to 10"))
}

fn parse_window_bits(value: &str) -> Result<u8, String> {
    value
        .parse()
        .ok()
        .filter(|bits| (9..=15).contains(bits))
        .ok_or_else(|| format!("{value:?} is not a window size from 9 to 15 bits"))
}

fn parse_count(value: &str) -> Result<usize, String> {
    value
        .parse()
        .map_err(|_| format!("{value:?} is not a whole number"))
}

/// `65536`, `64K`, `64KiB`, `1M`, `1MiB` (K and M are binary: 1024 and 1024²).
fn parse_bytes(value: &str) -> Result<usize, String> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let scale: usize = match unit {
        "" | "B" => 1,
        "K" | "KiB" | "k" | "KB" => 1024,
        "M" | "MiB" | "MB" => 1024 * 1024,
        _ => return Err(format!("{value:?} is not a size like 65536, 64KiB or 1MiB")),
    };
    let n: usize = number
        .parse()
        .map_err(|_| format!("{value:?} is not a size like 65536, 64KiB or 1MiB"))?;
    match n.checked_mul(scale) {
        Some(0) => Err("must be at least 1 byte".into()),
        Some(bytes) => Ok(bytes),
        None => Err(format!("{value:?} is too large")),
    }
}

/// `30`, `30s`, `500ms`, `2m`, `1h`.
fn parse_duration(value: &str) -> Result<Duration, String> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let bad = || format!("{value:?} is not a duration like 30s, 500ms, 2m or 1h");
    let n: u64 = number.parse().map_err(|_| bad())?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// `clap` reads the process environment: tests that set `SOCKEYE_*` take turns.
    static ENV: Mutex<()> = Mutex::new(());

    /// Parses `args` with exactly the `SOCKEYE_*` variables of `env` set.
    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<ServerConfig, String> {
        let _turn = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let names: Vec<String> = command()
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        for name in &names {
            std::env::remove_var(name);
        }
        for (name, value) in env {
            std::env::set_var(name, value);
        }
        let result = parse(args.iter().map(|s| s.to_string()));
        for name in &names {
            std::env::remove_var(name);
        }
        match result? {
            Command::Run(config) => Ok(*config),
            Command::Help => Err("help".into()),
            Command::Version => Err("version".into()),
        }
    }

    #[test]
    fn tls_needs_both_files_from_flags_or_env() {
        assert!(run(&["--tls-cert", "c.pem"], &[])
            .unwrap_err()
            .contains("--tls-key"));
        assert!(run(&[], &[("SOCKEYE_TLS_KEY", "k.pem")])
            .unwrap_err()
            .contains("--tls-cert"));
        let both = run(&["--tls-cert=c.pem"], &[("SOCKEYE_TLS_KEY", "k.pem")]);
        if cfg!(feature = "tls") {
            let c = both.unwrap();
            assert_eq!(c.tls_cert, Some(PathBuf::from("c.pem")));
            assert_eq!(c.tls_key, Some(PathBuf::from("k.pem")));
        } else {
            assert!(both.unwrap_err().contains("feature `tls`"));
        }
    }

    #[test]
    fn defaults_work_without_flags() {
        assert_eq!(run(&[], &[]).unwrap(), ServerConfig::default());
    }

    #[test]
    fn flags_both_forms_and_env_and_flag_wins() {
        let c = run(
            &[
                "--listen",
                "0.0.0.0:80",
                "--max-queue-bytes=1MiB",
                "--ping-interval",
                "500ms",
            ],
            &[
                ("SOCKEYE_LISTEN", "1.2.3.4:5"),
                ("SOCKEYE_MAILBOX_SIZE", "7"),
                ("SOCKEYE_JOURNAL_COMPACT_BYTES", "64KiB"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen, "0.0.0.0:80");
        assert_eq!(c.max_queue_bytes, 1 << 20);
        assert_eq!(c.ping_interval, Duration::from_millis(500));
        assert_eq!(c.mailbox_size, 7);
        assert_eq!(c.journal_compact_bytes, 64 << 10);
        // A repeated flag: the last one wins.
        let c = run(&["--mailbox-size", "1", "--mailbox-size=2"], &[]).unwrap();
        assert_eq!(c.mailbox_size, 2);
    }

    #[test]
    fn bad_values_say_which_flag() {
        let e = run(&["--max-connections", "lots"], &[]).unwrap_err();
        assert!(e.contains("--max-connections") && e.contains("lots"), "{e}");
        let e = run(&[], &[("SOCKEYE_PONG_TIMEOUT", "soon")]).unwrap_err();
        assert!(e.contains("SOCKEYE_PONG_TIMEOUT: \"soon\""), "{e}");
        let e = run(&["--pong-timeout", "soon"], &[]).unwrap_err();
        assert!(e.contains("--pong-timeout: \"soon\""), "{e}");
        let e = run(&["--nope", "1"], &[]).unwrap_err();
        assert!(e.contains("unexpected argument '--nope'"), "{e}");
        let e = run(&["--secret"], &[]).unwrap_err();
        assert!(e.contains("a value is required for '--secret"), "{e}");
        let e = run(&["serve"], &[]).unwrap_err();
        assert!(e.contains("unexpected argument 'serve'"), "{e}");
        assert!(run(&["--listen", "here"], &[]).is_err());
        assert!(run(&["--log-level", "loud"], &[]).is_err());
        assert!(run(&["--runtime", "tokio"], &[]).is_err());
        assert_eq!(
            run(&["--runtime", "smol"], &[]).unwrap().runtime,
            Runtime::Smol
        );
        assert!(run(&["--max-frame-bytes", "0"], &[]).is_err());
        let e = run(&["--max-connections", "0"], &[]).unwrap_err();
        assert!(e.contains("connection limits must be at least 1"), "{e}");
        // Every error ends by pointing at the help.
        assert!(e.contains("--help"), "{e}");
    }

    #[test]
    #[cfg(feature = "deflate")]
    fn deflate_flags_switches_and_limits() {
        let c = run(&[], &[]).unwrap();
        assert!(!c.deflate && !c.deflate_no_context_takeover);
        // A switch alone does not take the next argument as its value.
        let c = run(
            &[
                "--deflate",
                "--deflate-window-bits",
                "10",
                "--deflate-no-context-takeover",
                "--deflate-min-size=1KiB",
            ],
            &[],
        )
        .unwrap();
        assert!(c.deflate && c.deflate_no_context_takeover);
        assert_eq!((c.deflate_window_bits, c.deflate_min_bytes), (10, 1024));
        assert_eq!(c.deflate_level, 6);
        assert_eq!(
            run(&["--deflate-level", "1"], &[]).unwrap().deflate_level,
            1
        );
        assert_eq!(
            run(&[], &[("SOCKEYE_DEFLATE_LEVEL", "10")])
                .unwrap()
                .deflate_level,
            10
        );
        for bad in ["11", "-1", "fast"] {
            let e = run(&["--deflate-level", bad], &[]).unwrap_err();
            assert!(e.contains("--deflate-level"), "{e}");
        }
        assert!(run(&[], &[("SOCKEYE_DEFLATE", "1")]).unwrap().deflate);
        assert!(
            !run(&["--deflate=off"], &[("SOCKEYE_DEFLATE", "on")])
                .unwrap()
                .deflate
        );
        let e = run(&["--deflate=maybe"], &[]).unwrap_err();
        assert!(e.contains("--deflate: \"maybe\" is not on or off"), "{e}");
        // Without `=`, what follows a switch is an argument of its own.
        assert!(run(&["--deflate", "off"], &[]).is_err());
        for bad in ["8", "16", "x"] {
            let e = run(&["--deflate-window-bits", bad], &[]).unwrap_err();
            assert!(e.contains("--deflate-window-bits"), "{e}");
        }
    }

    #[test]
    fn help_lists_every_flag_and_its_env_and_reliable_mode() {
        let text = help();
        let cmd = command();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" || long == "version" {
                continue;
            }
            let env = format!("SOCKEYE_{}", long.replace('-', "_").to_ascii_uppercase());
            assert_eq!(arg.get_env(), Some(OsStr::new(&env)), "--{long}");
            assert!(text.contains(&format!("--{long}")), "--{long}");
            assert!(text.contains(&env), "{env}");
        }
        assert!(text.contains("reliable mode") && text.contains("sockeye.v1"));
        assert!(matches!(parse(["--help".to_string()]), Ok(Command::Help)));
        assert!(matches!(parse(["-h".to_string()]), Ok(Command::Help)));
        assert!(matches!(
            parse(["--version".to_string()]),
            Ok(Command::Version)
        ));
        assert_eq!(
            version().trim(),
            concat!("sockeye ", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn help_never_shows_an_environment_value() {
        let _turn = ENV.lock().unwrap_or_else(|e| e.into_inner());
        std::env::set_var("SOCKEYE_SECRET", "hunter2");
        let text = help();
        std::env::remove_var("SOCKEYE_SECRET");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn redis_is_a_url_from_the_flag_or_the_environment() {
        let c = run(&[], &[]).unwrap();
        assert_eq!((c.redis, c.redis_prefix.as_str()), (None, "sockeye:"));
        let c = run(
            &[
                "--redis",
                "redis://127.0.0.1:6379/2",
                "--redis-prefix=chat:",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.redis.as_deref(), Some("redis://127.0.0.1:6379/2"));
        assert_eq!(c.redis_prefix, "chat:");
        let c = run(&[], &[("SOCKEYE_REDIS", "redis://r:6379")]).unwrap();
        assert_eq!(c.redis.as_deref(), Some("redis://r:6379"));
        assert!(run(&["--redis", "127.0.0.1:6379"], &[]).is_err());
        assert!(run(&["--redis", "redis://r:port"], &[]).is_err());
        assert!(run(&["--redis", "redis://:6379"], &[]).is_err());
        let target = RedisTarget::parse("redis://app:s3cret@cache.local:6380/3").unwrap();
        assert_eq!(
            target,
            RedisTarget {
                tls: false,
                host: "cache.local".into(),
                port: 6380,
                db: 3,
                username: Some("app".into()),
                password: Some("s3cret".into()),
            }
        );
        let target = RedisTarget::parse("redis://:pw@[::1]").unwrap();
        assert_eq!((target.host.as_str(), target.port), ("::1", 6379));
        assert_eq!(
            (target.username, target.password.as_deref()),
            (None, Some("pw"))
        );
        // A password is taken as written, up to the last `@`: `/`, `:` and `@` in it too.
        let target = RedisTarget::parse("redis://u:a/b:c@d@h:1/2").unwrap();
        assert_eq!(
            (target.username.as_deref(), target.password.as_deref()),
            (Some("u"), Some("a/b:c@d"))
        );
        assert_eq!((target.host.as_str(), target.port, target.db), ("h", 1, 2));
    }

    #[test]
    fn rediss_is_tls_with_the_tls_feature_and_takes_a_ca_file() {
        let with_ca = run(
            &[
                "--redis",
                "rediss://:pw@r:6380/1",
                "--redis-ca-cert",
                "ca.pem",
            ],
            &[],
        );
        if cfg!(feature = "tls") {
            let c = with_ca.unwrap();
            assert_eq!(c.redis.as_deref(), Some("rediss://:pw@r:6380/1"));
            assert_eq!(c.redis_ca_cert, Some(PathBuf::from("ca.pem")));
            let target = RedisTarget::parse("rediss://r").unwrap();
            assert!(target.tls);
            assert_eq!((target.host.as_str(), target.port), ("r", 6379));
            let c = run(
                &[],
                &[
                    ("SOCKEYE_REDIS", "rediss://r:6380"),
                    ("SOCKEYE_REDIS_CA_CERT", "/etc/ca.pem"),
                ],
            )
            .unwrap();
            assert_eq!(c.redis_ca_cert, Some(PathBuf::from("/etc/ca.pem")));
            // Without a CA file: the platform's roots.
            assert_eq!(
                run(&["--redis", "rediss://r"], &[]).unwrap().redis_ca_cert,
                None
            );
        } else {
            let e = with_ca.unwrap_err();
            assert!(
                e.contains("--redis: TLS to Redis") && e.contains("feature `tls`"),
                "{e}"
            );
        }
        // A CA file is for TLS to Redis only.
        for args in [
            &["--redis-ca-cert", "ca.pem"][..],
            &["--redis", "redis://r", "--redis-ca-cert", "ca.pem"],
        ] {
            let e = run(args, &[]).unwrap_err();
            assert!(e.contains("--redis-ca-cert needs a rediss://"), "{e}");
        }
        assert!(run(&["--redis", "redis://r", "--redis-ca-cert="], &[]).is_err());
    }
}
