//! Fuzz entry points (unstable; behind `cfg(fuzzing)` or the `sim` feature).
//!
//! Each `fuzz/fuzz_targets/*.rs` is a one-liner calling a function here, and a unit test
//! runs every function over the committed corpus on stable.
