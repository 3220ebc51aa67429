//! The `sockeye` server binary as a child process of a benchmark: pinned to core 0 with
//! `taskset` when it is there (the benchmark runs on core 1), stopped when dropped; and
//! what a benchmark reads about its children (a free port, CPU time).

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `target/release/sockeye`, killed on drop.
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    /// Starts the server next to the running benchmark binary on `127.0.0.1:port` with
    /// `--runtime runtime` and `args`, pinned to core 0, and waits until it accepts
    /// connections.
    pub fn start(runtime: &str, port: u16, args: &[String]) -> ServerProcess {
        ServerProcess::start_pinned("0", runtime, port, args)
    }

    /// [`start`](Self::start) pinned to `cores` (a `taskset -c` list) instead.
    pub fn start_pinned(cores: &str, runtime: &str, port: u16, args: &[String]) -> ServerProcess {
        let exe = std::env::current_exe().expect("own path");
        let bin: PathBuf = exe.parent().expect("target dir").join("sockeye");
        assert!(
            bin.exists(),
            "{} missing: cargo build --release -p sockeye",
            bin.display()
        );
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let mut cmd = pinned(&bin, cores);
        cmd.args(["--listen", &addr.to_string(), "--runtime", runtime])
            .args(["--log-level", "error"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd.spawn().expect("start the server");
        let server = ServerProcess { child, addr };
        server.wait_listening();
        server
    }

    /// Wraps a child started some other way that will listen on `addr`.
    pub fn adopt(child: Child, addr: SocketAddr) -> ServerProcess {
        let server = ServerProcess { child, addr };
        server.wait_listening();
        server
    }

    fn wait_listening(&self) {
        for _ in 0..250 {
            if TcpStream::connect(self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the server on {} did not start", self.addr);
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id, to read `/proc/PID/status`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `taskset` is installed, to pin processes to cores.
pub fn have_taskset() -> bool {
    Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// `program` under `taskset -c cores` when taskset is installed, else as it is.
pub fn pinned(program: &std::path::Path, cores: &str) -> Command {
    if have_taskset() {
        let mut c = Command::new("taskset");
        c.args(["-c", cores]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A port on `127.0.0.1` that was free a moment ago (the kernel's pick for port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Seconds process `pid` has spent on a CPU so far, in user and kernel mode, all its
/// threads (utime + stime of `/proc/PID/stat`, in clock ticks of `getconf CLK_TCK`:
/// 10 ms at the usual 100 Hz). `None` where there is no such file.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces; the fields after it start at
    // field 3 (state), so utime (field 14) and stime (15) are the 12th and 13th.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks_per_second())
}

/// Seconds the threads of process `pid` that are alive now have spent on a CPU, to the
/// nanosecond (the first field of each `/proc/PID/task/TID/schedstat`): for phases too
/// short for the ticks of [`cpu_seconds`]. Threads that ended are not counted.
pub fn threads_cpu_seconds(pid: u32) -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread that ended since the listing has no file any more.
        if let Ok(stat) = std::fs::read_to_string(path) {
            ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(ns as f64 / 1e9)
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
