//! The hub seed sweep and the checks on the check itself.

use super::*;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// `SOCKEYE_SEED=<n>` replays one seed; `SOCKEYE_SEEDS=<count>` widens the sweep
/// (default 300).
#[test]
fn hub_seed_sweep() {
    let seeds: Vec<u64> = match env_u64("SOCKEYE_SEED") {
        Some(seed) => alloc::vec![seed],
        None => (0..env_u64("SOCKEYE_SEEDS").unwrap_or(300)).collect(),
    };
    let mut total = HubSimStats::default();
    for &seed in &seeds {
        match run_seed(seed) {
            Ok(s) => {
                total.steps += s.steps;
                total.refused += s.refused;
                total.deliveries += s.deliveries;
                total.mailboxed += s.mailboxed;
                total.drained += s.drained;
                total.dead_letters += s.dead_letters;
                total.presence += s.presence;
            }
            Err(e) => panic!(
                "seed {seed} failed: {e}\n  replay: SOCKEYE_SEED={seed} cargo test -p sockeye-core --features sim hub_seed_sweep"
            ),
        }
    }
    std::eprintln!("{} seeds: {total:?}", seeds.len());
    // The sweep must reach every path it claims to check.
    if seeds.len() >= 100 {
        assert!(total.refused > 0 && total.mailboxed > 0 && total.drained > 0);
        assert!(total.dead_letters > 0 && total.presence > 0);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    /// The same check with shrinking: a failure comes back as a short operation list.
    #[test]
    fn arbitrary_operation_sequences_agree_with_the_model(
        ops in proptest::collection::vec(proptest::prelude::any::<(u8, u8, u8)>(), 0..300)
    ) {
        let mut check = HubCheck::new(small_config());
        for (a, b, c) in ops {
            let op = Op::decode(a, b, c);
            if let Err(e) = check.apply(op) {
                proptest::prop_assert!(false, "{}", e);
            }
        }
        if let Err(e) = check.finish() {
            proptest::prop_assert!(false, "{}", e);
        }
    }
}

#[test]
fn byte_triples_reach_every_kind_of_operation() {
    // The fuzz target and the proptest draw operations through `decode`: if a kind of
    // operation were unreachable, neither would ever exercise it.
    let mut kinds = std::collections::BTreeSet::new();
    for a in 0..=255u8 {
        for b in [0u8, 1, 127, 255] {
            let op = Op::decode(a, b, a.wrapping_mul(7));
            assert_eq!(op, Op::decode(a, b, a.wrapping_mul(7)), "deterministic");
            let name = format!("{op:?}");
            kinds.insert(std::string::String::from(
                name.split([' ', '{']).next().unwrap_or(""),
            ));
        }
    }
    let expected = [
        "Advance",
        "Connect",
        "Disconnect",
        "Join",
        "Leave",
        "Publish",
        "PushEveryone",
        "PushRoom",
        "PushUser",
        "Send",
        "Transfer",
    ];
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), expected);
}

#[test]
fn the_check_catches_a_wrong_model() {
    // Sanity: the comparison is not vacuous. A push to an offline user is mailboxed;
    // if the ledger forgot it, the state check must fail.
    let mut check = HubCheck::new(small_config());
    check.apply(Op::PushUser { to: 1 }).unwrap();
    check.waiting.clear();
    assert!(check.check_state(&Op::PushEveryone).is_err());
}
