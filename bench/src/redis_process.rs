//! A `redis-server` child of a benchmark (Debian's package `redis-server`): on a free port
//! of `127.0.0.1`, no persistence, pinned with `taskset` when it is there, killed when
//! dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::server_process::{free_port, pinned};

/// A running `redis-server`, killed on drop.
pub struct RedisProcess {
    child: Child,
    addr: SocketAddr,
}

impl RedisProcess {
    /// Starts `redis-server` pinned to `cores` (a `taskset -c` list) and waits (at most
    /// 10 s) until it answers `PING`.
    pub fn start(cores: &str) -> RedisProcess {
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = pinned(std::path::Path::new("redis-server"), cores)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run redis-server (apt-get install redis-server)");
        let redis = RedisProcess { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on {addr} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    /// The URL to give `--redis`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Its process id (`taskset` runs it in its own place), to read `/proc/PID/stat`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut answer).is_ok() && {
            &answer == b"+PONG\r\n"
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
