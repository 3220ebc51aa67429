//! `cargo bench -p sockeye-bench` runs the same program as the `framing` binary.

fn main() {
    let options = sockeye_bench::Options::from_args(std::env::args().skip(1));
    sockeye_bench::run(&options);
}
