//! `cargo bench -p sockeye-bench` runs the same program as the `framing` binary.
//!
//! `cargo test --all-targets` runs this target too, without `--bench`: it then checks
//! every implementation's output on two sizes and times them only briefly, so the test
//! suite stays fast and still catches a benchmark that measures nothing.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut options = sockeye_bench::Options::from_args(args.iter().cloned());
    if !args.iter().any(|a| a == "--bench") {
        options.runs = 1;
        options.min_run = std::time::Duration::from_millis(1);
        options.sizes = vec![125, 64 << 10];
        options.smoke = true;
    }
    sockeye_bench::run(&options);
}
