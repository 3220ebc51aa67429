//! `taskset -c 1 cargo run --release -p sockeye-bench --bin framing [-- --runs 9 --ms 100]`

fn main() {
    let options = sockeye_bench::Options::from_args(std::env::args().skip(1));
    sockeye_bench::run(&options);
}
