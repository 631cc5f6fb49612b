//! Fuzzing support shared by the cargo-fuzz targets (fuzz/) and the
//! regression rows of the case table.
//!
//! - [`clone3`]: the `clone3_flags` input, its executor and its oracle
//!   (model::clone3_verdict + model::predict_wait);
//! - [`tree`]: the `wait_sequence` program, its driver and the stateful
//!   process-tree model built on model::predict_wait;
//! - [`worker`]: the long-lived executor process a campaign talks to;
//! - [`isolate`]: signal, SIGCHLD, leftover-child and fd hygiene;
//! - [`regress`]: findings saved under `cases/regressions/`, embedded in the
//!   binary, and run as rows by [`regression_cases`].

pub mod clone3;
pub mod common;
pub mod isolate;
pub mod regress;
pub mod tree;
pub mod worker;

pub use regress::{regression_cases, RegressionCase};
