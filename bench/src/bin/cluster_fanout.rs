//! Cross-node push and room fan-out: two `sockeye` nodes on one `redis-server` (`--redis`)
//! with `--members` plain-mode connections (default 10,000) in one room, half on each
//! node, beside one node without Redis holding all of them, measured in the same run. A
//! benchmark, not a test: it prints numbers and ratios and never fails on speed.
//!
//! Every push goes through node A's `POST /api/push`, so in the cluster half the room is
//! reached through Redis (node B). Measured on each setup, after every member joined and a
//! warm-up push reached all of them:
//!
//! - **room push**: publish-to-last-delivery of single pushes to the room (median of
//!   `--rounds`), also split by node: the last member on A (local) and on B (via Redis);
//! - **room burst**: deliveries/s of `--burst` room pushes sent as one batch request;
//! - **user push**: publish-to-delivery of single pushes to a user whose one connection
//!   is on node B (on the single node: on it), median of `--rounds`;
//! - **user burst**: deliveries/s of `--user-burst` pushes to that user as one batch;
//! - **CPU**: Redis's over the measurements (utime + stime from `/proc/PID/stat`), as
//!   CPU-seconds and as a share of the measured wall time; the nodes' and Redis's per
//!   delivery or push (from their threads' `/proc/PID/task/TID/schedstat`, to the
//!   nanosecond, as a phase of pushes to one user is too short for 10 ms ticks); the
//!   load generator's; and how long the members took to connect and join, with Redis's
//!   and the nodes' CPU meanwhile. On a shared machine the CPU per delivery is the
//!   steadier comparison: wall times move with what else runs on the cores.
//!
//! `redis-server` (Debian's package) is started on a free port of 127.0.0.1 with no
//! persistence and killed at the end. The servers (Redis and the nodes) are pinned to
//! `--server-cores` (default core 0) with `taskset`, so the cluster gets the same CPU as
//! the single node; run the benchmark itself on the other core. Each of `--runs` runs
//! measures both setups, one after the other (the order alternates between runs); the
//! table shows the medians over the runs. A setup whose warm-up pushes do not reach
//! every member within 30 s is started again with new processes (at most three times),
//! and the output says so, with how the connections of members that ended did. The
//! members are in this process on one `async-io` thread, so it holds `--members` sockets
//! plus a few (the open-file limit must allow that).
//!
//! ```sh
//! cargo build --release -p sockeye -p sockeye-bench
//! taskset -c 1 target/release/cluster_fanout --runs 3
//! ```

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::Timer;
use sockeye_bench::members::{
    batch_body, delivered, median, member, open_room, push_body, spawn_post, Seen,
};
use sockeye_bench::redis_process::RedisProcess;
use sockeye_bench::server_process::{
    cpu_seconds, free_port, have_taskset, threads_cpu_seconds, ServerProcess,
};

/// The room every member joins, as a push names it.
const ROOM: &str = r#""room":"big""#;
/// The user the user pushes go to, as a push names it (its connection is on the last
/// node).
const USER: &str = r#""user":"target""#;
/// How long one push may take to reach everyone before the run is given up.
const DELIVERY_LIMIT: Duration = Duration::from_secs(60);
/// How long a warm-up push waits before another is tried (a node may not have confirmed
/// its subscriptions yet, and pub/sub keeps nothing for it).
const WARM_UP_WAIT: Duration = Duration::from_secs(2);
const WARM_UP_TRIES: usize = 15;
/// How many times a setup is started when its warm-up fails (some members missed every
/// warm-up push: once in about ten two-node runs in the loaded runs of 2026-12-04).
const SETUP_TRIES: usize = 3;

#[derive(Clone, Debug)]
struct Args {
    members: usize,
    rounds: usize,
    burst: usize,
    user_burst: usize,
    runs: usize,
    runtime: String,
    server_cores: String,
    /// `--only one` or `--only two`: measure just that setup.
    only: Option<String>,
}

impl Args {
    fn parse() -> Args {
        let args: Vec<String> = std::env::args().collect();
        let value = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let number = |name: &str, default: usize| {
            value(name).map_or(default, |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} needs a number, not {v:?}"))
            })
        };
        Args {
            members: number("--members", 10_000).max(2),
            rounds: number("--rounds", 9).max(1),
            burst: number("--burst", 20).max(1),
            // The push API takes at most 1,000 pushes per request.
            user_burst: number("--user-burst", 1000).clamp(1, 1000),
            runs: number("--runs", 3).max(1),
            runtime: value("--runtime").unwrap_or_else(|| "smol".into()),
            server_cores: value("--server-cores").unwrap_or_else(|| "0".into()),
            only: value("--only"),
        }
    }
}

/// One setup's numbers from one run.
#[derive(Clone, Debug, Default)]
struct Measured {
    /// From the first connection until every member had joined.
    joins: Used,
    /// Median publish-to-last-delivery of single room pushes, ms: anywhere, on node A,
    /// on node B.
    room_ms: f64,
    room_local_ms: f64,
    room_remote_ms: Option<f64>,
    /// Deliveries/s of a room burst sent as one batch.
    room_rate: f64,
    /// Median publish-to-delivery of single user pushes, ms.
    user_ms: f64,
    /// Deliveries/s of a user burst sent as one batch.
    user_rate: f64,
    /// The room pushes (single and burst), the user pushes, and both.
    room: Used,
    user: Used,
    measured: Used,
}

/// CPU-seconds so far of Redis, of all nodes together, and of this process (the load
/// generator), at a moment: Redis's and this process's as utime + stime
/// (`/proc/PID/stat`, in 10 ms ticks), Redis's and the nodes' also to the nanosecond
/// (their threads' `schedstat`), for the per-push figures of short phases.
#[derive(Clone, Copy, Debug)]
struct Cpu {
    at: Instant,
    redis_ticks: Option<f64>,
    redis: Option<f64>,
    nodes: f64,
    me: f64,
}

/// Wall seconds between two [`Cpu`] readings, and the CPU-seconds used in them.
#[derive(Clone, Copy, Debug, Default)]
struct Used {
    secs: f64,
    redis_ticks: Option<f64>,
    redis: Option<f64>,
    nodes: f64,
    me: f64,
}

impl Cpu {
    fn used_since(&self, before: &Cpu) -> Used {
        let minus = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
        Used {
            secs: self.at.duration_since(before.at).as_secs_f64(),
            redis_ticks: minus(self.redis_ticks, before.redis_ticks),
            redis: minus(self.redis, before.redis),
            nodes: self.nodes - before.nodes,
            me: self.me - before.me,
        }
    }
}

impl Used {
    /// `cpu` as a percentage of the wall time.
    fn percent(&self, cpu: f64) -> f64 {
        100.0 * cpu / self.secs
    }
}

/// The processes of one setup: one node alone, or two on one Redis.
struct Setup {
    redis: Option<RedisProcess>,
    nodes: Vec<ServerProcess>,
}

impl Setup {
    fn start(args: &Args, clustered: bool) -> Setup {
        let redis = clustered.then(|| RedisProcess::start(&args.server_cores));
        let mut flags = vec![
            "--max-connections".to_string(),
            (args.members + 100).to_string(),
        ];
        if let Some(redis) = &redis {
            flags.extend(["--redis".into(), redis.url()]);
            flags.extend(["--redis-prefix".into(), "bench:".into()]);
        }
        let nodes = (0..if clustered { 2 } else { 1 })
            .map(|_| {
                ServerProcess::start_pinned(&args.server_cores, &args.runtime, free_port(), &flags)
            })
            .collect();
        Setup { redis, nodes }
    }

    fn cpu(&self) -> Cpu {
        Cpu {
            at: Instant::now(),
            redis_ticks: self.redis.as_ref().and_then(|r| cpu_seconds(r.pid())),
            redis: self
                .redis
                .as_ref()
                .and_then(|r| threads_cpu_seconds(r.pid())),
            nodes: self
                .nodes
                .iter()
                .map(|n| threads_cpu_seconds(n.pid()).unwrap_or(f64::NAN))
                .sum(),
            me: cpu_seconds(std::process::id()).unwrap_or(f64::NAN),
        }
    }
}

/// Push numbers handed out in order, so that every push of a run has its own.
struct Numbers(Cell<usize>);

impl Numbers {
    fn take(&self, count: usize) -> std::ops::Range<usize> {
        let from = self.0.get();
        self.0.set(from + count);
        from..from + count
    }
}

/// How many pushes one run makes at most, for the members' tables.
fn pushes_per_run(args: &Args) -> usize {
    2 * WARM_UP_TRIES + 2 * args.rounds + args.burst + args.user_burst
}

/// Where the members of each node and the user record what they receive.
struct Receivers {
    /// Per node: its members' table and how many members it has.
    rooms: Vec<(Rc<RefCell<Seen>>, usize)>,
    user: Rc<RefCell<Seen>>,
}

impl Receivers {
    /// Waits until push `k` reached every member; panics after [`DELIVERY_LIMIT`].
    async fn room_got(&self, k: usize) {
        for (node, (seen, count)) in self.rooms.iter().enumerate() {
            assert!(
                delivered(seen, k, *count, DELIVERY_LIMIT).await,
                "room push {k} reached {} of node {node}'s {count} members; connections \
                 ended (by close code): {{{}}}",
                seen.borrow().got(k),
                seen.borrow().closed()
            );
        }
    }

    async fn user_got(&self, k: usize) {
        assert!(
            delivered(&self.user, k, 1, DELIVERY_LIMIT).await,
            "user push {k} was not delivered"
        );
    }

    /// When the last member of each node got push `k`.
    fn room_last(&self, k: usize) -> Vec<Instant> {
        self.rooms
            .iter()
            .map(|(seen, _)| seen.borrow().last(k).expect("delivered"))
            .collect()
    }
}

/// Pushes `to` through `addr` from `numbers` until one reaches everyone `missed` waits
/// for (within [`WARM_UP_WAIT`] each; it says who did not get push `k`, if any); after
/// [`WARM_UP_TRIES`], the last answer of `missed`.
async fn warm_up<F, Fut>(
    addr: SocketAddr,
    to: &str,
    numbers: &Numbers,
    missed: F,
) -> Result<(), String>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let mut why = String::new();
    for _ in 0..WARM_UP_TRIES {
        let k = numbers.take(1).start;
        let pusher = spawn_post(addr, push_body(to, k));
        let missing = missed(k).await;
        pusher.join().expect("warm-up push");
        match missing {
            None => return Ok(()),
            Some(w) => why = w,
        }
    }
    Err(format!(
        "no warm-up push to {to} reached everyone in {WARM_UP_TRIES} tries; the last: {why}"
    ))
}

fn ms(from: Instant, to: Instant) -> f64 {
    to.duration_since(from).as_secs_f64() * 1e3
}

/// Starts a setup, fills the room, measures, and stops it; what went wrong if the
/// warm-up pushes did not reach every member.
fn measure(args: &Args, clustered: bool) -> Result<Measured, String> {
    let setup = Setup::start(args, clustered);
    let addrs: Vec<SocketAddr> = setup.nodes.iter().map(|n| n.addr()).collect();
    let publisher = addrs[0];
    let per_node = args.members / addrs.len();
    let pushes = pushes_per_run(args);
    let receivers = Receivers {
        rooms: addrs
            .iter()
            .enumerate()
            .map(|(i, _)| {
                // The last node takes what does not divide evenly.
                let count = if i + 1 == addrs.len() {
                    args.members - per_node * i
                } else {
                    per_node
                };
                (Seen::shared(pushes), count)
            })
            .collect(),
        user: Seen::shared(pushes),
    };
    let numbers = Numbers(Cell::new(0));
    let mut m = Measured::default();
    let ex = LocalExecutor::new();
    let result = async_io::block_on(ex.run(async {
        let before = setup.cpu();
        for (i, (&addr, (seen, count))) in addrs.iter().zip(&receivers.rooms).enumerate() {
            open_room(&ex, addr, &format!("n{i}m"), *count, "big", seen).await;
        }
        m.joins = setup.cpu().used_since(&before);
        let user_ready = Rc::new(Cell::new(0));
        let user_node = *addrs.last().expect("a node");
        ex.spawn(member(
            user_node,
            "target".into(),
            None,
            Rc::clone(&receivers.user),
            Rc::clone(&user_ready),
        ))
        .detach();
        while user_ready.get() == 0 {
            Timer::after(Duration::from_millis(1)).await;
        }
        let receivers = &receivers;
        warm_up(publisher, ROOM, &numbers, |k| async move {
            for (node, (seen, count)) in receivers.rooms.iter().enumerate() {
                if !delivered(seen, k, *count, WARM_UP_WAIT).await {
                    let seen = seen.borrow();
                    return Some(format!(
                        "{} of node {node}'s {count} members got it; connections ended \
                         (by close code): {{{}}}",
                        seen.got(k),
                        seen.closed()
                    ));
                }
            }
            None
        })
        .await?;
        warm_up(publisher, USER, &numbers, |k| async move {
            let got = delivered(&receivers.user, k, 1, WARM_UP_WAIT).await;
            (!got).then(|| "the user's connection did not get it".to_string())
        })
        .await?;

        let measuring = setup.cpu();
        let (mut all, mut local, mut remote) = (Vec::new(), Vec::new(), Vec::new());
        for k in numbers.take(args.rounds) {
            let pusher = spawn_post(publisher, push_body(ROOM, k));
            receivers.room_got(k).await;
            let sent = pusher.join().expect("room push");
            let last = receivers.room_last(k);
            all.push(ms(sent, *last.iter().max().expect("a node")));
            local.push(ms(sent, last[0]));
            if let Some(&b) = last.get(1) {
                remote.push(ms(sent, b));
            }
        }
        (m.room_ms, m.room_local_ms) = (median(all), median(local));
        m.room_remote_ms = (!remote.is_empty()).then(|| median(remote));

        let burst = numbers.take(args.burst);
        let pusher = spawn_post(publisher, batch_body(ROOM, burst.start, burst.end));
        for k in burst.clone() {
            receivers.room_got(k).await;
        }
        let sent = pusher.join().expect("room burst");
        let last = burst
            .flat_map(|k| receivers.room_last(k))
            .max()
            .expect("delivered");
        m.room_rate = (args.members * args.burst) as f64 / last.duration_since(sent).as_secs_f64();

        let room_done = setup.cpu();
        m.room = room_done.used_since(&measuring);

        let mut user = Vec::new();
        for k in numbers.take(args.rounds) {
            let pusher = spawn_post(publisher, push_body(USER, k));
            receivers.user_got(k).await;
            let sent = pusher.join().expect("user push");
            user.push(ms(
                sent,
                receivers.user.borrow().last(k).expect("delivered"),
            ));
        }
        m.user_ms = median(user);

        let burst = numbers.take(args.user_burst);
        let pusher = spawn_post(publisher, batch_body(USER, burst.start, burst.end));
        for k in burst.clone() {
            receivers.user_got(k).await;
        }
        let sent = pusher.join().expect("user burst");
        let seen = receivers.user.borrow();
        let last = burst.filter_map(|k| seen.last(k)).max().expect("delivered");
        m.user_rate = args.user_burst as f64 / last.duration_since(sent).as_secs_f64();

        let done = setup.cpu();
        m.user = done.used_since(&room_done);
        m.measured = done.used_since(&measuring);
        Ok(())
    }));
    drop(setup);
    result.map(|()| m)
}

/// The median over the runs of one number.
fn med(runs: &[Measured], get: impl Fn(&Measured) -> Option<f64>) -> Option<f64> {
    let values: Vec<f64> = runs.iter().filter_map(get).collect();
    (!values.is_empty()).then(|| median(values))
}

fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.decimals$}"))
}

/// One table row: the single node, the cluster, and cluster / single.
fn row(name: &str, one: Option<f64>, two: Option<f64>, decimals: usize) {
    let ratio = one.zip(two).map(|(a, b)| b / a);
    println!(
        "| {name} | {} | {} | {} |",
        cell(one, decimals),
        cell(two, decimals),
        cell(ratio, 2)
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    let args = Args::parse();
    let pinned = if have_taskset() {
        format!(
            "redis-server and the nodes pinned to core(s) {}",
            args.server_cores
        )
    } else {
        "nothing pinned (no taskset)".into()
    };
    println!(
        "cross-node fan-out: {} members in one room, {} runs, `--runtime {}`; {pinned}; \
         load average {} at the start",
        args.members,
        args.runs,
        args.runtime,
        load_average()
    );
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        // Alternate which setup goes first, so a change in the machine's load does not
        // always hit the same one.
        for clustered in [run % 2 == 1, run % 2 == 0] {
            let key = if clustered { "two" } else { "one" };
            if args.only.as_deref().is_some_and(|only| only != key) {
                continue;
            }
            let name = if clustered { "2 nodes" } else { "1 node" };
            let mut m = measure(&args, clustered);
            for _ in 1..SETUP_TRIES {
                let Err(why) = &m else { break };
                println!(
                    "run {}: {name}: {why}; once more with new processes",
                    run + 1
                );
                m = measure(&args, clustered);
            }
            let m = m.unwrap_or_else(|why| panic!("{name}, {SETUP_TRIES} times: {why}"));
            println!(
                "run {}: {}: room {:.1} ms, {:.0} deliveries/s; user {:.2} ms, {:.0}/s; \
                 joins {:.1} s; load average {}",
                run + 1,
                name,
                m.room_ms,
                m.room_rate,
                m.user_ms,
                m.user_rate,
                m.joins.secs,
                load_average()
            );
            if clustered { &mut two } else { &mut one }.push(m);
        }
    }
    println!();
    println!(
        "| median of {} runs | 1 node, no Redis ({} members) | 2 nodes + Redis ({} + {}) | 2 nodes / 1 node |",
        args.runs,
        args.members,
        args.members / 2,
        args.members - args.members / 2
    );
    println!("|---|---|---|---|");
    let both = |name: &str, get: &dyn Fn(&Measured) -> Option<f64>, decimals: usize| {
        row(name, med(&one, get), med(&two, get), decimals);
    };
    both(
        &format!(
            "room push: publish to last delivery (ms, median of {})",
            args.rounds
        ),
        &|m| Some(m.room_ms),
        1,
    );
    both(
        "… last delivery on node A, the publisher's (ms)",
        &|m| Some(m.room_local_ms),
        1,
    );
    both(
        "… last delivery on node B, via Redis (ms)",
        &|m| m.room_remote_ms,
        1,
    );
    both(
        &format!(
            "room burst: {} pushes as one batch (deliveries/s)",
            args.burst
        ),
        &|m| Some(m.room_rate),
        0,
    );
    both(
        &format!(
            "user push (connection on node B): publish to delivery (ms, median of {})",
            args.rounds
        ),
        &|m| Some(m.user_ms),
        2,
    );
    both(
        &format!(
            "user burst: {} pushes as one batch (deliveries/s)",
            args.user_burst
        ),
        &|m| Some(m.user_rate),
        0,
    );
    let room_deliveries = (args.members * (args.rounds + args.burst)) as f64;
    let user_pushes = (args.rounds + args.user_burst) as f64;
    both(
        "room pushes: nodes' CPU per delivery (µs, all nodes)",
        &|m| Some(1e6 * m.room.nodes / room_deliveries),
        2,
    );
    // Not per push: the room phase lasts seconds for a few dozen publications, so
    // Redis's idle work (its timer, the nodes' beats) would be most of a per-push figure.
    both(
        &format!(
            "room pushes: Redis CPU ({} publications, ms)",
            args.rounds + args.burst
        ),
        &|m| m.room.redis.map(|c| 1e3 * c),
        1,
    );
    both(
        "user pushes: nodes' CPU per push (µs, all nodes)",
        &|m| Some(1e6 * m.user.nodes / user_pushes),
        2,
    );
    both(
        "user pushes: Redis CPU per push (µs)",
        &|m| m.user.redis.map(|c| 1e6 * c / user_pushes),
        1,
    );
    both(
        "all measurements: wall time (s)",
        &|m| Some(m.measured.secs),
        2,
    );
    both(
        "… Redis CPU (s, utime + stime)",
        &|m| m.measured.redis_ticks,
        2,
    );
    both(
        "… Redis CPU (% of the wall time)",
        &|m| m.measured.redis_ticks.map(|c| m.measured.percent(c)),
        1,
    );
    both(
        "… nodes' CPU (% of the wall time, all nodes)",
        &|m| Some(m.measured.percent(m.measured.nodes)),
        1,
    );
    both(
        "… load generator's CPU (% of the wall time)",
        &|m| Some(m.measured.percent(m.measured.me)),
        1,
    );
    both(
        "members connected and joined (s)",
        &|m| Some(m.joins.secs),
        2,
    );
    both(
        "… Redis CPU meanwhile (s, utime + stime)",
        &|m| m.joins.redis_ticks,
        2,
    );
    both(
        "… nodes' CPU meanwhile (s, all nodes)",
        &|m| Some(m.joins.nodes),
        2,
    );
    println!();
    println!("load average at the end: {}", load_average());
}
