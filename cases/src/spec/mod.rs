//! The case table: what the kernel should do, one row per statement. Each
//! module is a group; names are `group::call::situation::variant`.

use crate::harness::Case;

pub mod clone3;
pub mod focused;
pub mod generic;
pub mod grid;
pub mod mainline;
pub mod open;
pub mod probe;
pub mod regress;
pub mod reparent;
pub mod selftest;
pub mod util;

pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(generic::cases());
    v.extend(focused::cases());
    v.extend(clone3::cases());
    v.extend(reparent::cases());
    v.extend(open::cases());
    v.extend(probe::cases());
    v.extend(mainline::cases());
    v.extend(regress::cases());
    v.extend(selftest::cases());
    v
}
