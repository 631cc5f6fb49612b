//! The probe against the kernel's declared build: a kernel built with
//! CLONE_WAIT_PID must show it. A patch that makes clone3 refuse the bit in
//! every combination looks exactly like a kernel without the feature, so
//! only the expectation of whoever built the kernel (the runner passes the
//! profile's `[expect] feature`) tells the two apart.

use crate::harness::*;

/// `present` or `absent`: what the kernel under test is built to do; set by
/// the runner from the profile (or `--expect-feature`).
pub const EXPECT_ENV: &str = protocol::env::WAITCONF_EXPECT_FEATURE;

const WHY: &str = "a kernel built with CLONE_WAIT_PID must accept the bit: one whose clone3 refuses it everywhere \
                   is a broken patch, not an absent feature (and a kernel built without it must not accept it)";

pub fn cases() -> Vec<Case> {
    vec![Case::new("probe::feature::as_expected", Source::Design(WHY), |ctx| {
        let want = match std::env::var(EXPECT_ENV) {
            Ok(v) if !v.trim().is_empty() => v,
            _ => return Err(Stop::Skip(format!("no expectation: {EXPECT_ENV} is unset (the runner sets it from the profile)"))),
        };
        let present = ctx.probe.absent.is_none();
        match (want.trim(), present) {
            ("present", true) | ("absent", false) => Ok(()),
            ("present", false) => fail(format!(
                "the kernel is built with CLONE_WAIT_PID at bit {:#x}, but the probe finds it absent: {}",
                ctx.bit(),
                ctx.probe.absent.clone().unwrap_or_default()
            )),
            ("absent", true) => fail(format!(
                "the kernel is built without CLONE_WAIT_PID, but the probe finds bit {:#x} present: {}",
                ctx.bit(),
                ctx.probe.reason
            )),
            (other, _) => broken(format!("{EXPECT_ENV}={other:?}: want present or absent")),
        }
    })
    .expects(format!("the probe's verdict equals {EXPECT_ENV} (present or absent); skip when it is unset"))]
}
