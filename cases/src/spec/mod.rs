//! The case table: what the kernel should do, one row per statement. Each
//! module is a group; names are `group::call::situation::variant`.

use crate::harness::Case;

pub mod focused;
pub mod generic;
pub mod selftest;

pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(generic::cases());
    v.extend(focused::cases());
    v.extend(selftest::cases());
    v
}
