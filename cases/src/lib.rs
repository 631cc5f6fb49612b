//! wait-conformance: the case table (semantics), the harness (engine) and
//! the syscall layer, kept apart.

pub mod fuzzing;
pub mod harness;
pub mod model;
pub mod spec;
pub mod sys;
