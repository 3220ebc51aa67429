//! A real `redis-server` for the multi-node scenarios: started on a free port of
//! `127.0.0.1` with no persistence (or with `appendfsync always`, or speaking only TLS,
//! or with a password), stopped (killed) on drop. `scripts/test.sh` installs
//! Debian's `redis-server` package (built with TLS) when it is missing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `redis-server` process of this test.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// With persistence: the directory of its append-only file.
    aof_dir: Option<std::path::PathBuf>,
    /// TLS only: its certificate files.
    tls: Option<RedisTls>,
    /// The password of `requirepass`, if any.
    password: Option<String>,
}

/// The PEM files of a `redis-server` that speaks only TLS ([`RedisServer::start_tls`]).
#[derive(Clone, Debug)]
pub struct RedisTls {
    /// Its certificate (chain).
    pub cert: PathBuf,
    /// The certificate's private key.
    pub key: PathBuf,
    /// The CA it would check client certificates against (`--tls-ca-cert-file` is
    /// required; clients are not asked for one: `--tls-auth-clients no`).
    pub ca: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits (at most 10 s) until it answers
    /// `PING`.
    pub fn start() -> RedisServer {
        RedisServer::launch(false)
    }

    /// Like [`start`](Self::start), with `appendonly yes` and `appendfsync always` in a
    /// directory of its own: every write is on disk before Redis answers, and a
    /// [`restart`](Self::restart) after a [`kill`](Self::kill) keeps it all.
    pub fn start_persistent() -> RedisServer {
        RedisServer::launch(true)
    }

    /// Like [`start`](Self::start), speaking only TLS (no plain port) with `tls`'s
    /// certificate; [`url`](Self::url) is `rediss://`. Only [`url`](Self::url),
    /// [`kill`](Self::kill) and the like work on it: the queries are plain.
    pub fn start_tls(tls: RedisTls) -> RedisServer {
        RedisServer::launch_with(false, Some(tls), None)
    }

    /// Like [`start`](Self::start), with `requirepass password`; [`url`](Self::url)
    /// carries it (`redis://:password@…`), and the queries here authenticate with it.
    pub fn start_with_password(password: &str) -> RedisServer {
        RedisServer::launch_with(false, None, Some(password.to_string()))
    }

    fn launch(persistent: bool) -> RedisServer {
        RedisServer::launch_with(persistent, None, None)
    }

    fn launch_with(
        persistent: bool,
        tls: Option<RedisTls>,
        password: Option<String>,
    ) -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let aof_dir = persistent.then(|| {
            let dir =
                std::env::temp_dir().join(format!("sockeye-redis-{}-{port}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("a directory for the append-only file");
            dir
        });
        let mut server = RedisServer {
            port,
            child: None,
            aof_dir,
            tls,
            password,
        };
        server.restart();
        server
    }

    /// The URL to give `--redis`: `rediss://` for TLS, with the password if any.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let auth = self
            .password
            .as_ref()
            .map_or(String::new(), |p| format!(":{p}@"));
        format!("{scheme}://{auth}127.0.0.1:{}", self.port)
    }

    /// The URL with another password than the server's.
    pub fn url_with_password(&self, password: &str) -> String {
        format!("redis://:{password}@127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the server (SIGKILL: no goodbye to its clients) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a [`pause`](Self::pause)d server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server runs").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Starts the server again on the same port (after [`kill`](Self::kill)): empty, or
    /// with what its append-only file holds.
    pub fn restart(&mut self) {
        self.kill();
        let persistence: Vec<String> = match &self.aof_dir {
            None => vec!["--appendonly".into(), "no".into()],
            Some(dir) => vec![
                "--appendonly".into(),
                "yes".into(),
                "--appendfsync".into(),
                "always".into(),
                "--dir".into(),
                dir.display().to_string(),
            ],
        };
        let mut listen: Vec<String> = match &self.tls {
            None => vec!["--port".into(), self.port.to_string()],
            Some(tls) => vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                self.port.to_string(),
                "--tls-cert-file".into(),
                tls.cert.display().to_string(),
                "--tls-key-file".into(),
                tls.key.display().to_string(),
                "--tls-ca-cert-file".into(),
                tls.ca.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
        };
        if let Some(password) = &self.password {
            listen.extend(["--requirepass".into(), password.clone()]);
        }
        let child = Command::new("redis-server")
            .args(&listen)
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(&persistence)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run redis-server (Debian package redis-server; scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `LLEN key`: how many items the list holds (0 for none).
    pub fn list_length(&self, key: &str) -> u64 {
        self.integer(&["LLEN", key])
    }

    /// `HLEN key`: how many fields the hash holds (0 for none).
    pub fn hash_length(&self, key: &str) -> u64 {
        self.integer(&["HLEN", key])
    }

    /// How many times Redis refused a password (`INFO errorstats`: `WRONGPASS`).
    pub fn auth_failures(&self) -> u64 {
        let info = self.query(&["INFO", "errorstats"]);
        info.lines()
            .find_map(|l| l.strip_prefix("errorstat_WRONGPASS:count="))
            .map_or(0, |n| n.trim().parse().expect("a count"))
    }

    /// Runs a command whose answer is an integer.
    fn integer(&self, args: &[&str]) -> u64 {
        let text = self.query(args);
        text.trim()
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{args:?} answered {text:?}"))
    }

    /// Runs a command on a plain connection (authenticated with the password, if any)
    /// and returns its answer: the line of a simple one, the text of a bulk string.
    fn query(&self, args: &[&str]) -> String {
        assert!(self.tls.is_none(), "the queries here are plain, not TLS");
        let mut stream = TcpStream::connect(self.addr()).expect("connect to redis-server");
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let encode = |args: &[&str]| {
            let mut command = format!("*{}\r\n", args.len());
            for arg in args {
                command.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
            }
            command
        };
        if let Some(password) = &self.password {
            stream
                .write_all(encode(&["AUTH", password]).as_bytes())
                .expect("write to redis-server");
            let answer = read_line(&mut stream);
            assert_eq!(answer, "+OK\r\n", "AUTH answered {answer:?}");
        }
        stream
            .write_all(encode(args).as_bytes())
            .expect("write to redis-server");
        let line = read_line(&mut stream);
        match line
            .strip_prefix('$')
            .and_then(|n| n.trim().parse::<usize>().ok())
        {
            Some(len) => {
                let mut text = vec![0; len + 2];
                stream
                    .read_exact(&mut text)
                    .expect("an answer from redis-server");
                text.truncate(len);
                String::from_utf8_lossy(&text).into_owned()
            }
            None => line,
        }
    }

    /// Whether the server answers `PING` now (after `AUTH`, with a password). A TLS
    /// server: whether it accepts connections (Redis listens once it serves).
    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1))
        else {
            return false;
        };
        if self.tls.is_some() {
            return true;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let (ask, expected) = match &self.password {
            None => ("PING\r\n".to_string(), "+PONG\r\n".to_string()),
            Some(password) => (
                format!("AUTH {password}\r\nPING\r\n"),
                "+OK\r\n+PONG\r\n".to_string(),
            ),
        };
        if stream.write_all(ask.as_bytes()).is_err() {
            return false;
        }
        let mut answer = vec![0u8; expected.len()];
        stream.read_exact(&mut answer).is_ok() && answer == expected.as_bytes()
    }
}

/// One line of an answer, with its `\r\n`.
fn read_line(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n") {
        stream
            .read_exact(&mut byte)
            .expect("an answer from redis-server");
        answer.push(byte[0]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.resume();
        }
        self.kill();
        if let Some(dir) = &self.aof_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Waits until `condition` holds, checking every 10 ms, and panics naming `what` if it
/// does not within `limit`.
pub fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
