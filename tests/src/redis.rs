//! A real `redis-server` for the multi-node scenarios: started on a free port of
//! `127.0.0.1` with no persistence (or with `appendfsync always`), stopped (killed) on
//! drop. `scripts/test.sh` installs
//! Debian's `redis-server` package when it is missing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `redis-server` process of this test.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// With persistence: the directory of its append-only file.
    aof_dir: Option<std::path::PathBuf>,
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

    fn launch(persistent: bool) -> RedisServer {
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
        };
        server.restart();
        server
    }

    /// The URL to give `--redis`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
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
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
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

    /// Runs a command whose answer is an integer.
    fn integer(&self, args: &[&str]) -> u64 {
        let mut stream = TcpStream::connect(self.addr()).expect("connect to redis-server");
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut command = format!("*{}\r\n", args.len());
        for arg in args {
            command.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream
            .write_all(command.as_bytes())
            .expect("write to redis-server");
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while !answer.ends_with(b"\r\n") {
            stream
                .read_exact(&mut byte)
                .expect("an answer from redis-server");
            answer.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&answer);
        text.trim()
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{args:?} answered {text:?}"))
    }

    /// Whether the server answers `PING` now.
    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
    }
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
