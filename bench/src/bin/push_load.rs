//! Durable pushes per second: the `sockeye` server (in process, on its std driver) under
//! `POST /api/push` load at concurrency 1, 16 and 64, with `--journal` and without. With
//! the journal every 202 waits for an `fsync`; pushes that arrive while one runs share the
//! next (group commit), so durable throughput should approach memory-only as concurrency
//! grows. A benchmark, not a test: it prints numbers and ratios and never fails on speed.
//!
//! `taskset -c 0,1 cargo run --release -p sockeye-bench --bin push_load -- --secs 3 --runs 3 [--runtime threads]`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sockeye::{start, Level, Runtime, ServerConfig};

/// One push on a fresh connection; whether it was answered 202.
fn push(addr: SocketAddr, request: &[u8]) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_nodelay(true);
    if stream.write_all(request).is_err() {
        return false;
    }
    let mut answer = Vec::with_capacity(256);
    let _ = stream.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 202 ")
}

/// Pushes/s over `secs` at `concurrency`, journal or not.
fn run(
    runtime: Runtime,
    journal: bool,
    concurrency: usize,
    secs: f64,
    dir: &std::path::Path,
) -> f64 {
    let mut config = ServerConfig::default();
    config.runtime = runtime;
    config.listen = "127.0.0.1:0".into();
    config.log_level = Level::Error;
    config.mailbox_size = 10_000_000;
    config.mailbox_bytes = usize::MAX;
    if journal {
        let path = dir.join(format!("journal-{concurrency}"));
        let _ = std::fs::remove_file(&path);
        config.journal = Some(path);
    }
    let server = start(config).expect("start the server");
    let addr = server.local_addr();
    let body = r#"{"user":"offline","data":{"text":"your order was paid"}}"#;
    let request = format!(
        "POST /api/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (stop, done, request) = (Arc::clone(&stop), Arc::clone(&done), request.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if push(addr, &request) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    server.shutdown();
    rate
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: f64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let secs = flag("--secs", 2.0);
    let runs = flag("--runs", 3.0) as usize;
    let runtime = match args
        .iter()
        .position(|a| a == "--runtime")
        .and_then(|i| args.get(i + 1))
    {
        Some(r) if r == "threads" => Runtime::Threads,
        _ => Runtime::Smol,
    };
    let dir = std::env::temp_dir().join(format!("sockeye-push-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    println!(
        "pushes/s on the {:?} runtime, median of {runs} runs of {secs} s (each push a new \
         connection)",
        runtime
    );
    println!("| concurrency | memory only | --journal | journal / memory |");
    println!("|---|---|---|---|");
    for concurrency in [1, 16, 64] {
        let memory = median(
            (0..runs)
                .map(|_| run(runtime, false, concurrency, secs, &dir))
                .collect(),
        );
        let durable = median(
            (0..runs)
                .map(|_| run(runtime, true, concurrency, secs, &dir))
                .collect(),
        );
        println!(
            "| {concurrency} | {memory:.0} | {durable:.0} | {:.2} |",
            durable / memory
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
