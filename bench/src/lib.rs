//! Framing throughput of `sockeye-core` next to tungstenite, fastwebsockets and a plain
//! `memcpy`, on the server side: decoding masked client frames and encoding unmasked
//! frames, for payloads from 16 B to 1 MiB.
//!
//! This is a benchmark, not a test: it asserts correctness once per implementation and
//! prints timings, but never fails on speed. Run it pinned to one core:
//!
//! ```text
//! taskset -c 1 cargo run --release -p sockeye-bench --bin framing [-- --runs 9 --ms 100]
//! ```
//!
//! Every implementation runs over the same in-memory socket ([`stream::MemStream`]), for
//! the same batch of messages (about [`BATCH_WIRE_BYTES`] of wire per batch, at least one
//! message). A measurement repeats whole batches for at least `--ms` milliseconds; it is
//! taken `--runs` times and the median is printed.

pub mod decode;
pub mod encode;
pub mod members;
pub mod redis_process;
pub mod server_process;
pub mod stream;
pub mod wire;
pub mod ws_frames;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use decode::DecodeCase;
use encode::EncodeCase;

/// Payload sizes measured by default.
pub const SIZES: [usize; 5] = [16, 125, 1 << 10, 64 << 10, 1 << 20];

/// Wire bytes per batch, so that every size moves the same amount of memory.
pub const BATCH_WIRE_BYTES: usize = 4 << 20;

/// Read size of the "64K reads" rows: what a runtime's read buffer might hold.
pub const RUNTIME_READ_BYTES: usize = 64 << 10;

/// Command-line settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Measurements per row; the median is reported.
    pub runs: usize,
    /// Minimum length of one measurement.
    pub min_run: Duration,
    /// Payload sizes to measure.
    pub sizes: Vec<usize>,
    /// Measure decoding.
    pub decode: bool,
    /// Measure encoding.
    pub encode: bool,
    /// Only time rows whose name contains this (for profiling one implementation).
    pub only: Option<String>,
    /// Time with the wall clock even where on-CPU time is available.
    pub wall_clock: bool,
    /// A quick correctness pass (as under `cargo test`): timings mean nothing, so the
    /// targets are not judged.
    pub smoke: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            runs: 9,
            min_run: Duration::from_millis(100),
            sizes: SIZES.to_vec(),
            decode: true,
            encode: true,
            only: None,
            smoke: false,
            wall_clock: false,
        }
    }
}

impl Options {
    /// Parses `--runs N`, `--ms N`, `--sizes 16,1024`, `--decode-only`, `--encode-only`,
    /// `--only NAME-PART`, `--wall`;
    /// ignores anything else (such as the `--bench` that `cargo bench` passes).
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Self {
        let mut options = Options::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--runs" => options.runs = parse::<usize>(args.next(), "--runs").max(1),
                "--ms" => options.min_run = Duration::from_millis(parse(args.next(), "--ms")),
                "--sizes" => {
                    let list = args.next().unwrap_or_default();
                    options.sizes = list
                        .split(',')
                        .map(|s| parse(Some(s.into()), "--sizes"))
                        .collect();
                }
                "--only" => options.only = args.next(),
                "--wall" => options.wall_clock = true,
                "--decode-only" => options.encode = false,
                "--encode-only" => options.decode = false,
                _ => {}
            }
        }
        options
    }
}

fn parse<T: std::str::FromStr>(value: Option<String>, flag: &str) -> T {
    value
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{flag} needs a number"))
}

/// What a row is compared against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sockeye,
    Tungstenite,
    FastWebSockets,
    Copy,
}

/// One measured implementation at one size.
#[derive(Clone, Debug)]
struct Row {
    name: &'static str,
    kind: Kind,
    /// Median nanoseconds per message.
    ns: f64,
    /// (slowest − fastest) / median over the runs.
    spread: f64,
}

/// Measures a run in nanoseconds: the benchmark thread's own time on the CPU where Linux
/// reports it, so time spent descheduled by other load on a shared machine is left out;
/// wall-clock time otherwise (or with `--wall`).
enum Clock {
    OnCpu(u64),
    Wall(Instant),
}

impl Clock {
    fn start(wall: bool) -> Clock {
        match thread_cpu_ns() {
            Some(ns) if !wall => Clock::OnCpu(ns),
            _ => Clock::Wall(Instant::now()),
        }
    }

    fn elapsed_ns(&self) -> f64 {
        match self {
            Clock::OnCpu(start) => thread_cpu_ns().map_or(f64::NAN, |now| (now - start) as f64),
            Clock::Wall(start) => start.elapsed().as_nanos() as f64,
        }
    }
}

/// Nanoseconds this thread has spent running, from the first field of
/// `/proc/thread-self/schedstat` (Linux; updated at least every scheduler tick, so a run
/// of 100 ms or more is measured to within a few percent).
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// A checked implementation, ready to be timed batch by batch.
struct Timed<'a> {
    name: &'static str,
    kind: Kind,
    msgs: usize,
    batch: Box<dyn FnMut() + 'a>,
}

/// Times every case `runs` times, taking the cases in turn within each run so that a
/// change in machine load hits all of them alike (the machine is shared). Each
/// measurement repeats whole batches for at least `min_run`, after one warm-up batch
/// that also sizes it. Returns the median ns per message and the spread of each case.
fn time_interleaved(options: &Options, cases: Vec<Timed<'_>>) -> Vec<Row> {
    let mut cases: Vec<(Timed<'_>, usize, Vec<f64>)> = cases
        .into_iter()
        .filter(|c| {
            options
                .only
                .as_ref()
                .is_none_or(|only| c.name.contains(only.as_str()))
        })
        .map(|mut c| {
            (c.batch)();
            let start = Instant::now();
            (c.batch)();
            let one = start.elapsed().as_nanos().max(1);
            let batches = options.min_run.as_nanos().div_ceil(one).max(1) as usize;
            (c, batches, Vec::new())
        })
        .collect();
    for _ in 0..options.runs {
        for (case, batches, samples) in &mut cases {
            let clock = Clock::start(options.wall_clock);
            for _ in 0..*batches {
                (case.batch)();
            }
            samples.push(clock.elapsed_ns() / (*batches * case.msgs) as f64);
        }
    }
    cases
        .into_iter()
        .map(|(case, _, mut samples)| {
            samples.sort_by(f64::total_cmp);
            let median = samples[samples.len() / 2];
            Row {
                name: case.name,
                kind: case.kind,
                ns: median,
                spread: (samples[samples.len() - 1] - samples[0]) / median,
            }
        })
        .collect()
}

/// How many messages of `len` bytes fill about [`BATCH_WIRE_BYTES`].
pub fn batch_count(len: usize) -> usize {
    let frame = wire::header(len, Some([0; 4])).len() + len;
    BATCH_WIRE_BYTES.div_ceil(frame).max(1)
}

/// Checks one batch of `case` with `check`, then hands it over for timing.
fn decode_case<'a>(
    mut case: impl DecodeCase + 'a,
    kind: Kind,
    check: impl FnOnce(&[Vec<u8>]),
    msgs: usize,
) -> Timed<'a> {
    let name = case.name();
    let mut first = Vec::new();
    case.batch(|p| first.push(p.to_vec()));
    check(&first);
    Timed {
        name,
        kind,
        msgs,
        batch: Box::new(move || {
            case.batch(|p| {
                black_box(p);
            })
        }),
    }
}

/// Checks the output of one batch from a fresh case, then hands another over for timing.
fn encode_case<'a, C: EncodeCase + 'a>(
    make: impl Fn() -> C,
    kind: Kind,
    expected: &[u8],
    msgs: usize,
) -> Timed<'a> {
    let mut first = make();
    let name = first.name();
    first.batch();
    let got = first.into_output();
    assert_eq!(got.len(), expected.len(), "{name}: output length");
    assert!(got == expected, "{name}: output differs");
    let mut case = make();
    Timed {
        name,
        kind,
        msgs,
        batch: Box::new(move || {
            case.batch();
            black_box(&mut case);
        }),
    }
}

fn decode_rows(options: &Options, len: usize) -> Vec<Row> {
    let payload = wire::payload(len);
    let count = batch_count(len);
    let wire: Arc<[u8]> = wire::masked_frames(&payload, count).into();
    let expect_payloads = |got: &[Vec<u8>]| {
        assert_eq!(got.len(), count, "decoded message count");
        assert!(
            got.iter().all(|p| p[..] == payload[..]),
            "a payload differs"
        );
    };
    let expect_wire = |got: &[Vec<u8>]| {
        assert!(got.len() == 1 && got[0][..] == wire[..], "copy differs");
    };
    let cases = vec![
        decode_case(
            decode::SockeyeDecoder::new(wire.clone(), usize::MAX, "sockeye FrameDecoder (1 read)"),
            Kind::Sockeye,
            expect_payloads,
            count,
        ),
        decode_case(
            decode::SockeyeDecoder::new(
                wire.clone(),
                RUNTIME_READ_BYTES,
                "sockeye FrameDecoder (64K reads)",
            ),
            Kind::Sockeye,
            expect_payloads,
            count,
        ),
        decode_case(
            decode::SockeyeConnection::new(wire.clone(), usize::MAX, "sockeye Connection (1 read)"),
            Kind::Sockeye,
            expect_payloads,
            count,
        ),
        decode_case(
            decode::SockeyeConnection::new(
                wire.clone(),
                RUNTIME_READ_BYTES,
                "sockeye Connection (64K reads)",
            ),
            Kind::Sockeye,
            expect_payloads,
            count,
        ),
        decode_case(
            decode::Tungstenite::new(wire.clone(), count),
            Kind::Tungstenite,
            expect_payloads,
            count,
        ),
        decode_case(
            decode::FastWebSockets::new(wire.clone(), count),
            Kind::FastWebSockets,
            expect_payloads,
            count,
        ),
        decode_case(
            decode::PlainCopy::new(wire.clone()),
            Kind::Copy,
            expect_wire,
            count,
        ),
    ];
    time_interleaved(options, cases)
}

fn encode_rows(options: &Options, len: usize) -> Vec<Row> {
    let payload = Bytes::from(wire::payload(len));
    let count = batch_count(len);
    let expected = wire::unmasked_frames(&payload, count);
    let n = expected.len();
    let copy_expected: Vec<u8> = payload.iter().copied().cycle().take(len * count).collect();
    let p = || payload.clone();
    let cases = vec![
        encode_case(
            || encode::SockeyeConnection::new(p(), count, n),
            Kind::Sockeye,
            &expected,
            count,
        ),
        encode_case(
            || encode::SockeyeConnectionSlice::new(p(), count, n),
            Kind::Sockeye,
            &expected,
            count,
        ),
        encode_case(
            || encode::SockeyeEncodeFrame::new(p(), count, n),
            Kind::Sockeye,
            &expected,
            count,
        ),
        encode_case(
            || encode::Tungstenite::new(p(), count, n, true),
            Kind::Tungstenite,
            &expected,
            count,
        ),
        encode_case(
            || encode::Tungstenite::new(p(), count, n, false),
            Kind::Tungstenite,
            &expected,
            count,
        ),
        encode_case(
            || encode::FastWebSockets::new(p(), count, n),
            Kind::FastWebSockets,
            &expected,
            count,
        ),
        encode_case(
            || encode::PlainCopy::new(p(), count, len * count),
            Kind::Copy,
            &copy_expected,
            count,
        ),
    ];
    time_interleaved(options, cases)
}

/// The fastest row of a kind: each library is compared at its best.
fn best(rows: &[Row], kind: Kind) -> f64 {
    rows.iter()
        .filter(|r| r.kind == kind)
        .map(|r| r.ns)
        .fold(f64::INFINITY, f64::min)
}

fn print_table(title: &str, rows: &[Row], len: usize) {
    let tung = best(rows, Kind::Tungstenite);
    let fws = best(rows, Kind::FastWebSockets);
    let copy = best(rows, Kind::Copy);
    println!("{title}");
    println!(
        "  {:<38} {:>9} {:>9} {:>11} {:>7} {:>7} {:>7} {:>7}",
        "implementation", "MB/s", "Mmsg/s", "ns/msg", "spread", "/tung", "/fws", "/copy"
    );
    for r in rows {
        println!(
            "  {:<38} {:>9.0} {:>9.3} {:>11.1} {:>6.1}% {:>7.2} {:>7.2} {:>7.2}",
            r.name,
            len as f64 * 1e3 / r.ns,
            1e3 / r.ns,
            r.ns,
            r.spread * 100.0,
            r.ns / tung,
            r.ns / fws,
            r.ns / copy,
        );
    }
    println!();
}

fn size_label(len: usize) -> String {
    match len {
        l if l >= 1 << 20 && l % (1 << 20) == 0 => format!("{} MiB", l >> 20),
        l if l >= 1 << 10 && l % (1 << 10) == 0 => format!("{} KiB", l >> 10),
        l => format!("{l} B"),
    }
}

/// One line per sockeye row: `ratio` of its median, and whether `ok` holds for it.
fn sockeye_rows(
    rows: &[Row],
    ratio: impl Fn(f64) -> f64,
    ok: impl Fn(f64) -> bool,
    unit: &str,
) -> Vec<String> {
    rows.iter()
        .filter(|r| r.kind == Kind::Sockeye)
        .map(|r| {
            let x = ratio(r.ns);
            let verdict = if ok(x) { "met" } else { "MISSED" };
            format!("    {:<38} {x:>6.2}{unit:<15} {verdict}", r.name)
        })
        .collect()
}

/// Runs the whole benchmark and prints the tables and the targets.
pub fn run(options: &Options) {
    let clock = match Clock::start(options.wall_clock) {
        Clock::OnCpu(_) => "on-CPU time of the benchmark thread",
        Clock::Wall(_) => "wall-clock time",
    };
    println!(
        "sockeye framing benchmark: {} runs of >= {} ms per row, median shown, timed by \
         {clock}; ratios are time / reference time (lower is better; references are each \
         library's fastest row).",
        options.runs,
        options.min_run.as_millis()
    );
    println!();
    let mut targets = Vec::new();
    for &len in &options.sizes {
        let count = batch_count(len);
        let label = size_label(len);
        if options.decode {
            let rows = decode_rows(options, len);
            let wire_len = count * (wire::header(len, Some([0; 4])).len() + len);
            print_table(
                &format!(
                    "DECODE {label}: {count} masked frames per batch ({:.2} MiB wire)",
                    wire_len as f64 / f64::from(1 << 20)
                ),
                &rows,
                len,
            );
            if len <= 125 {
                let tung = best(&rows, Kind::Tungstenite);
                targets.push(format!("decode {label}: >= 2x faster than tungstenite"));
                targets.extend(sockeye_rows(
                    &rows,
                    |ns| tung / ns,
                    |x| x >= 2.0,
                    "x faster",
                ));
            }
            if len >= 64 << 10 {
                let copy = best(&rows, Kind::Copy);
                targets.push(format!("decode {label}: within 1.3x of plain copy"));
                targets.extend(sockeye_rows(
                    &rows,
                    |ns| ns / copy,
                    |x| x <= 1.3,
                    "x copy's time",
                ));
            }
        }
        if options.encode {
            let rows = encode_rows(options, len);
            print_table(
                &format!("ENCODE {label}: {count} unmasked frames per batch"),
                &rows,
                len,
            );
            let fws = best(&rows, Kind::FastWebSockets);
            targets.push(format!(
                "encode {label}: at least as fast as fastwebsockets"
            ));
            targets.extend(sockeye_rows(
                &rows,
                |ns| ns / fws,
                |x| x <= 1.0,
                "x its time",
            ));
        }
    }
    if options.smoke {
        println!("smoke run (outputs checked; timings are not meaningful, targets not judged)");
        return;
    }
    println!("targets (medians of this run):");
    for t in targets {
        println!("  {t}");
    }
}
