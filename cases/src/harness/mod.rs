//! The engine: runs each case in its own process, with timeouts, leak checks
//! and LTP-style outcomes.

pub mod case;
pub mod config;
pub mod engine;
pub mod executor;
pub mod zygote;

pub use case::*;
