//! Configuration: which bit is CLONE_WAIT_PID on the kernel under test, and
//! whether the feature really works there (the probe).

use std::os::fd::AsFd;

use crate::model::{mainline_bit_name, KernelFeatures};
use crate::sys::clone::{clone3, flags::*, Clone3Request, Program};
use crate::sys::proc::{kernel_release, kernel_version};
use crate::sys::wait::{wait, WaitCall, WaitOpts, WaitOutcome, WaitTarget};
use crate::sys::{pidfd, Errno};

/// The environment variable naming the bit.
pub const FLAG_ENV: &str = "CLONE_WAIT_PID_FLAG";
/// The seed's value (CLONE_INTO_CGROUP in mainline since 5.7).
pub const SEED_BIT: u64 = 0x2_0000_0000;

/// Parse the bit: one bit, above the legacy 32-bit word. Accepts 0x-hex,
/// decimal, or `bit:N`.
pub fn parse_bit(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(&h.replace('_', ""), 16)
    } else if let Some(n) = s.strip_prefix("bit:") {
        n.parse::<u32>().ok().filter(|n| *n < 64).map(|n| 1u64 << n).ok_or(())
            .or_else(|_| "x".parse::<u64>())
    } else {
        s.parse::<u64>()
    }
    .map_err(|_| format!("{FLAG_ENV}={s:?}: not a number (want e.g. 0x200000000 or bit:33)"))?;
    if v.count_ones() != 1 {
        return Err(format!("{FLAG_ENV}={s}: must be exactly one bit, got {:#x}", v));
    }
    if v <= CLONE_LEGACY_FLAGS {
        return Err(format!("{FLAG_ENV}={v:#x}: bits 0-31 are the legacy clone flags; CLONE_WAIT_PID is a clone3-only bit (32-63)"));
    }
    Ok(v)
}

/// The configured bit (environment, else the seed's).
pub fn configured_bit() -> Result<u64, String> {
    match std::env::var(FLAG_ENV) {
        Ok(s) => parse_bit(&s),
        Err(_) => Ok(SEED_BIT),
    }
}

/// What the probe found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    pub kernel_release: String,
    pub bit: u64,
    /// Some(reason) when the feature is absent.
    pub absent: Option<String>,
}

impl Probe {
    pub fn features(&self) -> KernelFeatures {
        let mut k =
            KernelFeatures::new(kernel_version_of(&self.kernel_release), if self.absent.is_none() { Some(self.bit) } else { None });
        k.missing_ns = missing_namespaces();
        k
    }
}

/// CLONE_NEW* flags whose namespace type this kernel lacks: no
/// `/proc/self/ns/<type>` entry.
pub fn missing_namespaces() -> u64 {
    [
        (CLONE_NEWNS, "mnt"),
        (CLONE_NEWUTS, "uts"),
        (CLONE_NEWIPC, "ipc"),
        (CLONE_NEWUSER, "user"),
        (CLONE_NEWPID, "pid"),
        (CLONE_NEWNET, "net"),
        (CLONE_NEWCGROUP, "cgroup"),
        (CLONE_NEWTIME, "time"),
    ]
    .iter()
    .filter(|(_, name)| !std::path::Path::new(&format!("/proc/self/ns/{name}")).exists())
    .fold(0, |acc, (flag, _)| acc | flag)
}

fn kernel_version_of(rel: &str) -> (u32, u32) {
    crate::sys::proc::parse_version(rel)
}

/// Probe the feature: clone3 with the bit and CLONE_PIDFD, the child exits
/// at once; a generic `waitid(P_ALL, WEXITED|WNOHANG|WNOWAIT)` must not see
/// it, and `waitid(P_PIDFD, WEXITED)` must reap it with its exit code.
///
/// Call only in a process whose other children do not matter (it reaps only
/// its own child, by pidfd, but the generic peek could see others).
pub fn probe(bit: u64) -> Probe {
    let release = kernel_release();
    let version = kernel_version();
    let mainline = mainline_bit_name(bit, version);
    let name_it = |what: String| match mainline {
        Some((name, (a, b))) => format!("{what}; bit {bit:#x} is {name} on this kernel (mainline since {a}.{b}), not CLONE_WAIT_PID"),
        None => what,
    };
    let req = Clone3Request::new(bit | CLONE_PIDFD, libc::SIGCHLD as u64);
    let child = match clone3(&req, Program::Exit(42)) {
        Ok(c) => c,
        Err(e) => {
            let why = if e == Errno::EINVAL && mainline.is_none() {
                format!("clone3(CLONE_PIDFD|{bit:#x}) failed with EINVAL: this kernel does not know bit {bit:#x}")
            } else {
                format!("clone3(CLONE_PIDFD|{bit:#x}) failed with {e}")
            };
            return Probe { kernel_release: release, bit, absent: Some(name_it(why)) };
        }
    };
    let fd = child.pidfd.as_ref().expect("CLONE_PIDFD gives a pidfd");
    let _ = pidfd::poll_exit(fd.as_fd(), None);
    let target = WaitTarget { pid: child.pid, pidfd: std::os::fd::AsRawFd::as_raw_fd(fd), pgid: 0 };
    let peek = wait(WaitCall::WaitidAll, target, WaitOpts(WaitOpts::WEXITED | WaitOpts::WNOHANG | WaitOpts::WNOWAIT));
    let reap = wait(WaitCall::WaitidPidfd, target, WaitOpts(WaitOpts::WEXITED));
    let mut absent = None;
    if let WaitOutcome::Reported { pid, .. } = peek {
        if pid == child.pid {
            absent = Some(name_it(format!("the child made with bit {bit:#x} is visible to waitid(P_ALL)")));
        }
    }
    if absent.is_none() {
        match reap {
            WaitOutcome::Reported { pid, event: crate::sys::wait::Event::Exited(42) } if pid == child.pid => {}
            other => {
                absent = Some(name_it(format!(
                    "waitid(P_PIDFD) did not reap the child made with bit {bit:#x} (got {other}); the bit means something else here"
                )))
            }
        }
    }
    Probe { kernel_release: release, bit, absent }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn bits() {
        assert_eq!(parse_bit("0x200000000"), Ok(SEED_BIT));
        assert_eq!(parse_bit("bit:40"), Ok(1 << 40));
        assert_eq!(parse_bit("1099511627776"), Ok(1 << 40));
        assert!(parse_bit("0x3").is_err());
        assert!(parse_bit("0x1000").unwrap_err().contains("legacy"));
        assert!(parse_bit("0x300000000").unwrap_err().contains("exactly one bit"));
        assert!(parse_bit("CLONE_FOO").unwrap_err().contains("not a number"));
        assert!(parse_bit("bit:64").is_err());
    }
}
