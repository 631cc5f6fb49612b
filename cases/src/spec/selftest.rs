//! Rows that exist to prove the harness reports what it should: off by
//! default, switched on by environment variables.

use crate::harness::*;
use crate::sys::wait::{Event, WaitCall, WaitOpts};
use std::time::Duration;

pub const WRONG_ENV: &str = "WAITCONF_SELFTEST_WRONG";
pub const HANG_ENV: &str = "WAITCONF_SELFTEST_HANG";

fn on(var: &str) -> bool {
    std::env::var(var).map(|v| v == "1").unwrap_or(false)
}

pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    if on(WRONG_ENV) {
        // A plain child exits with 7; the row claims 8. Must be a FAIL.
        out.push(Case::new("selftest::wrong_expectation::plain", Source::SelfTest("a deliberately wrong row"), |ctx| {
            let k = ctx.spawn_exited(Subject::Plain, 7)?;
            expect("waitpid(pid, &st, 0)", ctx.wait(WaitCall::WaitpidPid, &k, 0), reported(k.pid, Event::Exited(8)))
        }));
    }
    if on(HANG_ENV) {
        // A focused blocking wait on a child that never exits, while that
        // child has a child of its own: must be BROKEN by the timeout, and
        // nothing may be left behind.
        out.push(
            Case::new("selftest::hang::plain", Source::SelfTest("a deliberately hanging row"), |ctx| {
                let k = ctx.spawn(
                    Subject::Plain,
                    crate::sys::clone::Program::Run(Box::new(|| {
                        let (r, _w) = crate::sys::clone::pipe();
                        let g = crate::sys::clone::clone3(
                            &crate::sys::clone::Clone3Request::new(0, libc::SIGCHLD as u64),
                            crate::sys::clone::Program::AwaitThenExit { fd: std::os::fd::AsRawFd::as_raw_fd(&r), code: 0 },
                        );
                        let _ = g;
                        let mut b = [0u8; 1];
                        loop {
                            let _ = rustix::io::read(&r, &mut b);
                        }
                    })),
                )?;
                let _ = ctx.wait(WaitCall::WaitpidPid, &k, WaitOpts::WEXITED);
                fail("the hanging row returned")
            })
            .timeout(Duration::from_secs(1)),
        );
    }
    out
}
