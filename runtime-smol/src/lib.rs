//! # sockeye-smol
//!
//! The async runtime for `sockeye-core` on `smol` / `async-io`. A placeholder until its own
//! issue: it re-exports the core so the workspace shape is in place.

pub use sockeye_core as core;
