//! The whole server under seeded simulation: see `sockeye_server::sim`.
//!
//! `SOCKEYE_SIM_SEEDS=N` runs N seeds (the soak); `SOCKEYE_SIM_SEED=S` runs one, for
//! replaying a failure.

use sockeye_server::sim::run_seed;

#[test]
fn every_seed_keeps_every_promise() {
    if let Ok(seed) = std::env::var("SOCKEYE_SIM_SEED") {
        let seed: u64 = seed.parse().expect("SOCKEYE_SIM_SEED is a number");
        let stats = run_seed(seed).unwrap_or_else(|e| panic!("{e}"));
        println!("{stats:?}");
        return;
    }
    let seeds: u64 = std::env::var("SOCKEYE_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mut total = sockeye_server::sim::Stats::default();
    let mut failures = Vec::new();
    for seed in 0..seeds {
        match run_seed(seed) {
            Ok(stats) => {
                total.steps += stats.steps;
                total.crashes += stats.crashes;
                total.cuts += stats.cuts;
                total.deliveries += stats.deliveries;
                total.promises += stats.promises;
                total.dead_letters += stats.dead_letters;
                total.pushes.0 += stats.pushes.0;
                total.peers.0 += stats.peers.0;
                total.commits.2 += stats.commits.2;
            }
            Err(e) => {
                failures.push(e);
                if failures.len() >= 5 {
                    break;
                }
            }
        }
    }
    println!("{seeds} seeds: {total:?}");
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The sweep reaches what it is for.
    assert!(total.crashes > 0 && total.cuts > 0 && total.promises > 0);
    assert!(total.dead_letters > 0 && total.commits.2 > 0 && total.peers.0 > 0);
}

/// The fuzz body over pseudo-random operation sequences and its committed seeds.
#[test]
fn the_fuzz_body_survives_random_operations_and_its_seeds() {
    use sockeye_core::Entropy;
    let mut rng = sockeye_core::SeededEntropy::new(9);
    for i in 0..3000u64 {
        let mut data = vec![0u8; (rng.next_u64() % (64 + i)) as usize];
        rng.fill(&mut data);
        sockeye_server::sim::server_ops(&data);
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/server_ops");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/seeds/server_ops") {
        sockeye_server::sim::server_ops(&std::fs::read(entry.unwrap().path()).unwrap());
        seeds += 1;
    }
    assert!(seeds >= 5, "only {seeds} seeds");
}
