//! The server's settings: command-line flags with environment-variable equivalents, parsed
//! by hand (no argument-parsing crate: the binary's size matters on small hosts).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Many nodes as one service on this Redis (`redis://HOST:PORT[/DB]`): pushes, room
    /// messages and presence cross nodes. `None`: one node.
    pub redis: Option<String>,
    /// Put before every Redis channel name, so several services share one Redis.
    pub redis_prefix: String,
    /// How much to log.
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
    /// Print [`help`] and exit 0.
    Help,
}

/// Where `--redis` points: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`.
///
/// Parsed here rather than by the Redis client: its URL parser pulls in full IDNA
/// (Unicode host names), about 400 KB of the binary, for host names nobody gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RedisTarget {
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
        if url.starts_with("rediss://") {
            return Err("TLS to Redis (rediss://) is not in this build".into());
        }
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| format!("{url:?} is not {example}"))?;
        let (authority, db) = match rest.split_once('/') {
            Some((authority, "")) => (authority, 0),
            Some((authority, db)) => (
                authority,
                db.parse()
                    .map_err(|_| format!("{db:?} is not a database number"))?,
            ),
            None => (rest, 0),
        };
        let (credentials, address) = match authority.rsplit_once('@') {
            Some((credentials, address)) => (Some(credentials), address),
            None => (None, authority),
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

/// What kind of value a flag takes.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Count,
    Bytes,
    Duration,
    Level,
    Runtime,
    /// On or off: `--flag` alone is on, or `--flag=true|false` (also 1/0, on/off, yes/no).
    Switch,
}

/// One flag: its name, value kind and help line; its environment variable is derived.
struct Flag {
    name: &'static str,
    kind: Kind,
    help: &'static str,
}

const FLAGS: &[Flag] = &[
    flag(
        "listen",
        Kind::Text,
        "address to listen on [127.0.0.1:9001]",
    ),
    flag(
        "secret",
        Kind::Text,
        "HMAC secret for user tokens; without it: development mode",
    ),
    flag(
        "api-key",
        Kind::Text,
        "key for POST /api/push (Bearer or X-Api-Key)",
    ),
    flag(
        "max-connections",
        Kind::Count,
        "most WebSocket connections [10000]",
    ),
    flag(
        "max-connections-per-user",
        Kind::Count,
        "most connections per user [32]",
    ),
    flag(
        "max-frame-bytes",
        Kind::Bytes,
        "largest frame from a client [64KiB]",
    ),
    flag(
        "max-message-bytes",
        Kind::Bytes,
        "largest message or push body [64KiB]",
    ),
    flag(
        "max-queue-bytes",
        Kind::Bytes,
        "outgoing bytes queued per connection [256KiB]",
    ),
    flag(
        "ping-interval",
        Kind::Duration,
        "ping idle connections after [30s]",
    ),
    flag(
        "pong-timeout",
        Kind::Duration,
        "drop connections silent after a ping for [20s]",
    ),
    flag(
        "session-expiry",
        Kind::Duration,
        "keep reliable sessions for resume [120s]",
    ),
    flag(
        "mailbox-size",
        Kind::Count,
        "messages kept per offline user [100]",
    ),
    flag(
        "mailbox-age",
        Kind::Duration,
        "age before a mailbox message is dead [1h]",
    ),
    flag(
        "mailbox-bytes",
        Kind::Bytes,
        "bytes all mailboxes may hold together [64MiB]",
    ),
    flag(
        "mailbox-sender-messages",
        Kind::Count,
        "mailbox messages one sending user may have waiting [1000]",
    ),
    flag(
        "mailbox-sender-bytes",
        Kind::Bytes,
        "mailbox bytes one sending user may have waiting [4MiB]",
    ),
    flag(
        "presence-max-recipients",
        Kind::Count,
        "announce joins and leaves only to rooms of at most this many others [256]",
    ),
    flag(
        "journal",
        Kind::Text,
        "append-only journal: mailboxes and sessions survive a restart",
    ),
    flag(
        "journal-compact-bytes",
        Kind::Bytes,
        "compact the journal past this and 4x its last compaction [1MiB]",
    ),
    flag(
        "redis",
        Kind::Text,
        "redis://HOST:PORT[/DB]: many nodes as one service (pushes, rooms, presence)",
    ),
    flag(
        "redis-prefix",
        Kind::Text,
        "prefix of every Redis channel, so services can share one Redis [sockeye:]",
    ),
    flag(
        "deflate",
        Kind::Switch,
        "answer permessage-deflate offers (RFC 7692) [off]",
    ),
    flag(
        "deflate-window-bits",
        Kind::Count,
        "largest window (9-15 bits) clients may compress with [15]",
    ),
    flag(
        "deflate-no-context-takeover",
        Kind::Switch,
        "no compression context kept between messages, either way [off]",
    ),
    flag(
        "deflate-min-size",
        Kind::Bytes,
        "send messages shorter than this uncompressed [64]",
    ),
    flag(
        "deflate-level",
        Kind::Count,
        "compression level, 0 (store) to 10 (best; 1 is fastest) [6]",
    ),
    flag(
        "tls-cert",
        Kind::Text,
        "PEM certificate chain: serve TLS (wss://, https://) with --tls-key",
    ),
    flag("tls-key", Kind::Text, "PEM private key of --tls-cert"),
    flag("log-level", Kind::Level, "error, warn, info, debug [info]"),
    flag(
        "runtime",
        Kind::Runtime,
        "smol (a task per connection, one thread) or threads (two per connection) [smol]",
    ),
];

const fn flag(name: &'static str, kind: Kind, help: &'static str) -> Flag {
    Flag { name, kind, help }
}

/// The environment variable of `--some-flag`: `SOCKEYE_SOME_FLAG`.
fn env_name(flag: &Flag) -> String {
    let mut name = String::from("SOCKEYE_");
    name.extend(flag.name.chars().map(|c| {
        if c == '-' {
            '_'
        } else {
            c.to_ascii_uppercase()
        }
    }));
    name
}

/// The text `--help` prints.
pub fn help() -> String {
    let mut out = String::from(
        "sockeye: a small WebSocket push/chat server\n\n\
         usage: sockeye [--flag value | --flag=value]...\n\n\
         Every flag can also be set by the environment variable shown; a flag wins.\n\
         Sizes take K/KiB/M/MiB suffixes, durations ms/s/m/h (plain numbers are seconds);\n\
         switches (--deflate) need no value, or take =true|false.\n\n",
    );
    for f in FLAGS {
        let _ = writeln!(out, "  --{:<27} {:<35} {}", f.name, env_name(f), f.help);
    }
    out.push_str(
        "\nEndpoints: GET /ws (WebSocket, plain JSON mode), POST /api/push, GET /healthz,\n\
         GET /metrics, GET / (demo page), GET /sockeye.js and GET /sockeye.d.ts\n\
         (the JavaScript client).\n\n\
         TLS: --tls-cert and --tls-key (PEM files) make every connection TLS (wss://\n\
         and https://); or terminate TLS at a reverse proxy in front of plain ws://.\n\n\
         permessage-deflate (--deflate) compresses each message per connection; with\n\
         context takeover (the default) a connection that has sent a compressed message\n\
         keeps a compressor of about 312 KiB, and one that received one a decompressor of\n\
         about 43 KiB (a 15-bit window): --deflate-no-context-takeover keeps neither.\n",
    );
    out
}

/// Parses the command line (without the program name), falling back to the environment
/// through `env` for flags not given. An error is a message for the operator; the binary
/// prints it and exits with status 2.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, String> {
    let mut given: Vec<(&'static Flag, String)> = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(Command::Help);
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument {arg:?} (flags start with --)"));
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (body, None),
        };
        let flag = FLAGS
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| format!("unknown flag --{name} (see --help)"))?;
        let value = match (inline, flag.kind) {
            (Some(value), _) => value,
            (None, Kind::Switch) => "true".into(),
            (None, _) => args
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?,
        };
        given.push((flag, value));
    }
    let mut config = ServerConfig::default();
    for flag in FLAGS {
        let from_args = given.iter().rev().find(|(f, _)| f.name == flag.name);
        let (value, source) = match from_args {
            Some((_, v)) => (v.clone(), format!("--{}", flag.name)),
            None => match env(&env_name(flag)) {
                Some(v) => (v, env_name(flag)),
                None => continue,
            },
        };
        apply(&mut config, flag, &value).map_err(|why| format!("{source}: {why}"))?;
    }
    if config.max_connections_per_user == 0 || config.max_connections == 0 {
        return Err("connection limits must be at least 1".into());
    }
    if config.deflate && !cfg!(feature = "deflate") {
        return Err("--deflate: this build has no permessage-deflate (feature `deflate`)".into());
    }
    match (&config.tls_cert, &config.tls_key) {
        (Some(_), None) => return Err("--tls-cert needs --tls-key".into()),
        (None, Some(_)) => return Err("--tls-key needs --tls-cert".into()),
        (Some(_), Some(_)) if !cfg!(feature = "tls") => {
            return Err("--tls-cert: this build has no TLS (feature `tls`)".into())
        }
        _ => {}
    }
    if !(9..=15).contains(&config.deflate_window_bits) {
        return Err(format!(
            "--deflate-window-bits: {} is not a window size from 9 to 15 bits",
            config.deflate_window_bits
        ));
    }
    if config.redis.is_some() && !cfg!(feature = "redis") {
        return Err("--redis: this build has no Redis support (feature `redis`)".into());
    }
    if config.max_frame_bytes > config.max_message_bytes {
        config.max_frame_bytes = config.max_message_bytes;
    }
    Ok(Command::Run(Box::new(config)))
}

fn apply(config: &mut ServerConfig, flag: &Flag, value: &str) -> Result<(), String> {
    let text = || -> Result<String, String> {
        if value.is_empty() {
            Err("must not be empty".into())
        } else {
            Ok(value.to_string())
        }
    };
    match (flag.name, flag.kind) {
        ("listen", _) => {
            value
                .parse::<std::net::SocketAddr>()
                .map_err(|_| format!("{value:?} is not an address like 127.0.0.1:9001"))?;
            config.listen = value.into();
        }
        ("secret", _) => config.secret = Some(text()?),
        ("api-key", _) => config.api_key = Some(text()?),
        ("journal", _) => config.journal = Some(PathBuf::from(text()?)),
        ("tls-cert", _) => config.tls_cert = Some(PathBuf::from(text()?)),
        ("tls-key", _) => config.tls_key = Some(PathBuf::from(text()?)),
        ("redis", _) => {
            let url = text()?;
            RedisTarget::parse(&url)?;
            config.redis = Some(url);
        }
        ("redis-prefix", _) => config.redis_prefix = value.to_string(),
        ("log-level", _) => config.log_level = Level::parse(value)?,
        ("runtime", _) => {
            config.runtime = match value {
                "threads" => Runtime::Threads,
                "smol" => Runtime::Smol,
                _ => return Err(format!("{value:?} is not a runtime: threads or smol")),
            }
        }
        (name, Kind::Switch) => {
            let on = match value {
                "true" | "1" | "on" | "yes" => true,
                "false" | "0" | "off" | "no" => false,
                _ => return Err(format!("{value:?} is not on or off (true or false)")),
            };
            match name {
                "deflate" => config.deflate = on,
                _ => config.deflate_no_context_takeover = on,
            }
        }
        ("deflate-level", _) => {
            config.deflate_level = value
                .parse()
                .ok()
                .filter(|level| *level <= 10)
                .ok_or_else(|| format!("{value:?} is not a compression level from 0 to 10"))?;
        }
        ("deflate-window-bits", _) => {
            config.deflate_window_bits = value
                .parse()
                .map_err(|_| format!("{value:?} is not a window size from 9 to 15 bits"))?;
        }
        (name, Kind::Count) => {
            let n = parse_count(value)?;
            match name {
                "max-connections" => config.max_connections = n,
                "max-connections-per-user" => config.max_connections_per_user = n,
                "mailbox-sender-messages" => config.mailbox_sender_messages = n,
                "presence-max-recipients" => config.presence_max_recipients = n,
                _ => config.mailbox_size = n,
            }
        }
        (name, Kind::Bytes) => {
            let n = parse_bytes(value)?;
            match name {
                "max-frame-bytes" => config.max_frame_bytes = n,
                "max-message-bytes" => config.max_message_bytes = n,
                "max-queue-bytes" => config.max_queue_bytes = n,
                "mailbox-bytes" => config.mailbox_bytes = n,
                "mailbox-sender-bytes" => config.mailbox_sender_bytes = n,
                "deflate-min-size" => config.deflate_min_bytes = n,
                _ => config.journal_compact_bytes = n,
            }
        }
        (name, Kind::Duration) => {
            let d = parse_duration(value)?;
            match name {
                "ping-interval" => config.ping_interval = d,
                "pong-timeout" => config.pong_timeout = d,
                "session-expiry" => config.session_expiry = d,
                _ => config.mailbox_age = d,
            }
        }
        (name, _) => return Err(format!("unhandled flag {name}")),
    }
    Ok(())
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

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<ServerConfig, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match parse(args.iter().map(|s| s.to_string()), |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })? {
            Command::Run(config) => Ok(*config),
            Command::Help => Err("help".into()),
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
    }

    #[test]
    fn bad_values_say_which_flag() {
        let e = run(&["--max-connections", "lots"], &[]).unwrap_err();
        assert!(e.contains("--max-connections") && e.contains("lots"), "{e}");
        let e = run(&[], &[("SOCKEYE_PONG_TIMEOUT", "soon")]).unwrap_err();
        assert!(e.starts_with("SOCKEYE_PONG_TIMEOUT"), "{e}");
        assert!(run(&["--nope", "1"], &[])
            .unwrap_err()
            .contains("unknown flag"));
        assert!(run(&["--secret"], &[])
            .unwrap_err()
            .contains("needs a value"));
        assert!(run(&["--listen", "here"], &[]).is_err());
        assert!(run(&["--log-level", "loud"], &[]).is_err());
        assert!(run(&["--runtime", "tokio"], &[]).is_err());
        assert_eq!(
            run(&["--runtime", "smol"], &[]).unwrap().runtime,
            Runtime::Smol
        );
        assert!(run(&["--max-frame-bytes", "0"], &[]).is_err());
    }

    #[test]
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
        assert!(e.starts_with("--deflate:"), "{e}");
        for bad in ["8", "16", "x"] {
            let e = run(&["--deflate-window-bits", bad], &[]).unwrap_err();
            assert!(e.contains("--deflate-window-bits"), "{e}");
        }
    }

    #[test]
    fn help_lists_every_flag_and_its_env() {
        let text = help();
        for f in FLAGS {
            assert!(text.contains(&format!("--{}", f.name)));
            assert!(text.contains(&env_name(f)));
        }
        assert!(matches!(
            parse(["--help".to_string()], |_| None),
            Ok(Command::Help)
        ));
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
        assert!(run(&["--redis", "rediss://r:6380"], &[]).is_err());
        assert!(run(&["--redis", "redis://r:port"], &[]).is_err());
        assert!(run(&["--redis", "redis://:6379"], &[]).is_err());
        let target = RedisTarget::parse("redis://app:s3cret@cache.local:6380/3").unwrap();
        assert_eq!(
            target,
            RedisTarget {
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
    }
}
