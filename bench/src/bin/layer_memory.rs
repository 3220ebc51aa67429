//! Heap bytes the server layer keeps per idle connection, counted by a global allocator:
//! N plain-mode WebSocket connections are accepted and upgraded by hand (no sockets), their
//! output drained, and the live heap compared with before. The runtime's own cost (socket,
//! task or threads) comes on top; `scripts/footprint.sh` measures the whole process.
//!
//! `cargo run --release -p sockeye-bench --bin layer_memory -- 10000`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use sockeye_core::{Instant, SeededEntropy};
use sockeye_server::{Config, Server};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |s| s.parse().expect("N is a number"));
    let mut config = Config::default();
    config.max_connections = n + 1;
    config.max_connections_per_user = n + 1;
    let now = Instant::ZERO;
    let mut server = Server::new(config, now, 0, Box::new(SeededEntropy::new(1)), None);
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..n {
        let conn = server.handle_accept(now);
        let request = format!(
            "GET /ws?user=u{i} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        server.handle_bytes(now, conn, request.as_bytes());
        while server.poll_action().is_some() {}
        while server.poll_transmit(conn).is_some() {}
        while server.poll_action().is_some() {}
    }
    let per = (LIVE.load(Ordering::Relaxed) - before) as f64 / n as f64;
    println!("server layer: {per:.0} heap bytes per idle plain connection ({n} connections)");
}
