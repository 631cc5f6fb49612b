//! Rows that exist to prove the harness reports what it should: off by
//! default, switched on by environment variables.

use crate::harness::*;
use crate::sys::wait::{Event, WaitCall, WaitOpts};
use std::time::Duration;

pub const WRONG_ENV: &str = protocol::env::WAITCONF_SELFTEST_WRONG;
pub const HANG_ENV: &str = protocol::env::WAITCONF_SELFTEST_HANG;

fn on(var: &str) -> bool {
    std::env::var(var).map(|v| v == "1").unwrap_or(false)
}

pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    if on(WRONG_ENV) {
        // A plain child exits with 7; the row claims 8. Must be a FAIL.
        out.push(Case::new(
            "selftest::wrong_expectation::plain",
            Source::SelfTest("a deliberately wrong row"),
            |ctx| {
                let k = ctx.spawn_exited(Subject::Plain, 7)?;
                expect(
                    "waitpid(pid, &st, 0)",
                    ctx.wait(WaitCall::WaitpidPid, &k, 0),
                    reported(k.pid, Event::Exited(8)),
                )
            },
        ));
    }
    if on(HANG_ENV) {
        // The case process blocks outside any kernel wait (reading a pipe it
        // holds both ends of), while its child, which has a child of its
        // own, never exits: the harness's own hang, BROKEN by the timeout,
        // and nothing may be left behind.
        out.push(
            Case::new(
                "selftest::hang::plain",
                Source::SelfTest("a deliberately hanging row (outside a wait)"),
                |ctx| {
                    let _k = ctx.spawn(
                        Subject::Plain,
                        crate::sys::clone::Program::Run(Box::new(|| {
                            let (r, _w) = crate::sys::clone::pipe();
                            let g = crate::sys::clone::clone3(
                                &crate::sys::clone::Clone3Request::new(
                                    0,
                                    crate::sys::signal::SIGCHLD as u64,
                                ),
                                crate::sys::clone::Program::AwaitThenExit {
                                    fd: std::os::fd::AsRawFd::as_raw_fd(&r),
                                    code: 0,
                                },
                            );
                            let _ = g;
                            let mut b = [0u8; 1];
                            loop {
                                let _ = crate::sys::io::read(&r, &mut b);
                            }
                        })),
                    )?;
                    let (r, _w) = crate::sys::clone::pipe();
                    let mut b = [0u8; 1];
                    let _ = crate::sys::io::read(&r, &mut b);
                    fail("the hanging row returned")
                },
            )
            .timeout(Duration::from_secs(1)),
        );
        // A focused blocking wait on a live child that never exits (kept
        // alive by a pipe nobody writes): the kernel legitimately never
        // returns, and a row expecting it to return must come out FAIL
        // naming the call, with the stuck tasks' stacks.
        out.push(
            Case::new(
                "selftest::hang_in_wait::plain",
                Source::SelfTest("a row whose wait the kernel never completes"),
                |ctx| {
                    let k = ctx.spawn_live(Subject::Plain, 0)?;
                    let got = ctx.wait(WaitCall::WaitidPid, &k, WaitOpts::WEXITED);
                    fail(format!("the blocking wait returned {got}"))
                },
            )
            .expects(
                "waitid(P_PID, pid, WEXITED) returns once the child exits (it never does here)",
            )
            .timeout(Duration::from_secs(1)),
        );
    }
    out
}
