#![doc = include_str!("../../../docs/testing.md")]

mod harness;
mod inline;

pub use harness::{Attempt, Harness, HarnessBuilder, DRAIN_LIMIT};
pub use switchyard_core::{JobContext, TestClock};
