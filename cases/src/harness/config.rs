//! Configuration: which bit is CLONE_WAIT_PID on the kernel under test, and
//! whether the feature really works there (the probe).

use std::os::fd::AsFd;

use crate::model::{mainline_bit_name, KernelFeatures};
use crate::sys::clone::{clone3, flags::*, Clone3Request, Program};
use crate::sys::proc::{kernel_release, kernel_version};
use crate::sys::wait::{wait, WaitCall, WaitOpts, WaitOutcome, WaitTarget};
use crate::sys::{pidfd, Errno};

/// The environment variable naming the bit.
pub const FLAG_ENV: &str = protocol::env::CLONE_WAIT_PID_FLAG;
/// The seed's value (CLONE_INTO_CGROUP in mainline since 5.7): never a default.
pub const SEED_BIT: u64 = 0x2_0000_0000;
/// The bit used when CLONE_WAIT_PID_FLAG is unset: bit 40, the 6.12 port's, which has no
/// mainline meaning (free in 6.12 and through 7.2). The probe then says whether the kernel
/// knows it; a kernel whose patch uses another bit needs CLONE_WAIT_PID_FLAG.
pub const DEFAULT_BIT: u64 = 1 << 40;

/// Parse the bit (the protocol's one grammar: 0x-hex, decimal or `bit:N`, one clone3-only bit).
pub use protocol::bit::parse_bit;

/// The configured bit (environment, else [`DEFAULT_BIT`]).
pub fn configured_bit() -> Result<u64, String> {
    match std::env::var(FLAG_ENV) {
        Ok(s) => parse_bit(&s),
        Err(_) => Ok(DEFAULT_BIT),
    }
}

/// What the probe found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    pub kernel_release: String,
    pub bit: u64,
    /// Some(reason) when the feature is absent: the kernel does not know the
    /// bit, or the bit has another mainline meaning. Nothing else.
    pub absent: Option<String>,
    /// Why the feature counts as present (empty when absent).
    #[serde(default)]
    pub reason: String,
    /// What each clone3 combination did, with the deviations from the
    /// seed's contract marked `unexpected:`. Never a reason for "absent": a
    /// kernel that knows the bit runs the rows, which fail by name.
    #[serde(default)]
    pub observed: String,
}

impl Probe {
    pub fn features(&self) -> KernelFeatures {
        let mut k = KernelFeatures::new(
            kernel_version_of(&self.kernel_release),
            if self.absent.is_none() {
                Some(self.bit)
            } else {
                None
            },
        );
        k.missing_ns = missing_namespaces();
        k
    }
}

/// CLONE_NEW* flags whose namespace type this kernel lacks: no
/// `/proc/self/ns/<type>` entry. A property of the kernel, so it is looked
/// up once per process (and inherited by the forked case processes): every
/// case asks, and eight procfs lookups per case were a tenth of a VM run's
/// test process under TCG.
pub fn missing_namespaces() -> u64 {
    static MISSING: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MISSING.get_or_init(lookup_missing_namespaces)
}

/// Each CLONE_NEW* flag and its `/proc/self/ns/` entry.
const NAMESPACES: [(u64, &str); 8] = [
    (CLONE_NEWNS, "mnt"),
    (CLONE_NEWUTS, "uts"),
    (CLONE_NEWIPC, "ipc"),
    (CLONE_NEWUSER, "user"),
    (CLONE_NEWPID, "pid"),
    (CLONE_NEWNET, "net"),
    (CLONE_NEWCGROUP, "cgroup"),
    (CLONE_NEWTIME, "time"),
];

fn lookup_missing_namespaces() -> u64 {
    NAMESPACES
        .iter()
        .filter(|(_, name)| !ns_entry_exists(name))
        .fold(0, |acc, (flag, _)| acc | flag)
}

fn ns_entry_exists(name: &str) -> bool {
    std::path::Path::new(&format!("/proc/self/ns/{name}")).exists()
}

/// Whether this kernel lacks the namespace type whose `/proc/self/ns/` entry is `name`: from
/// [`missing_namespaces`] for the eight clone3 knows, else looked up.
pub fn namespace_missing(name: &str) -> bool {
    match NAMESPACES.iter().find(|(_, n)| *n == name) {
        Some((flag, _)) => missing_namespaces() & flag != 0,
        None => !ns_entry_exists(name),
    }
}

fn kernel_version_of(rel: &str) -> (u32, u32) {
    crate::sys::proc::parse_version(rel)
}

/// One clone3 combination the probe tries with the bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combo {
    /// `bit | CLONE_PIDFD`, exit_signal SIGCHLD: the seed's way
    WithPidfd,
    /// `bit` alone, exit_signal SIGCHLD: the seed answers EINVAL
    Alone,
    /// `bit | CLONE_PIDFD`, exit_signal 0 (a clone child)
    WithPidfdNoSignal,
}

impl Combo {
    pub const ALL: [Combo; 3] = [Combo::WithPidfd, Combo::Alone, Combo::WithPidfdNoSignal];

    fn spell(self, bit: u64) -> String {
        match self {
            Combo::WithPidfd => format!("clone3(CLONE_PIDFD|{bit:#x}, SIGCHLD)"),
            Combo::Alone => format!("clone3({bit:#x}, SIGCHLD)"),
            Combo::WithPidfdNoSignal => format!("clone3(CLONE_PIDFD|{bit:#x}, exit_signal 0)"),
        }
    }
}

/// What the probe saw of a child clone3 made (it exits with [`PROBE_CODE`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildSeen {
    /// a generic `waitid(P_ALL, WEXITED|WNOHANG|WNOWAIT|__WALL)` after its
    /// exit reported it
    pub visible_to_all: bool,
    /// what the focused `waitid(P_PIDFD, WEXITED|__WALL)` reported
    pub focused_reap: WaitOutcome,
    /// how the probe got rid of it when the focused reap did not (empty
    /// when it did)
    pub cleanup: String,
}

/// clone3's answer for one combination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Accepted(ChildSeen),
    Refused(Errno),
}

/// The exit code of every probe child.
pub const PROBE_CODE: i32 = 42;

/// The probe's decision: present or absent, and why; plus the observations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub present: bool,
    pub reason: String,
    pub observed: String,
}

/// Decide from clone3's answers alone (a pure function; the observations
/// are reported, never decisive). Absent means: the bit has another mainline
/// meaning (`mainline`), or clone3 answered EINVAL for it in every
/// combination tried, which is what a kernel answers for any unknown bit
/// (clone3_args_valid). Any other answer in any combination, success or
/// another errno, means the kernel knows the bit: the feature is present and
/// its rows run.
pub fn decide(
    bit: u64,
    mainline: Option<(&str, (u32, u32))>,
    answers: &[(Combo, Answer)],
) -> Decision {
    let observed = describe(bit, answers);
    if let Some((name, (a, b))) = mainline {
        return Decision {
            present: false,
            reason: format!("bit {bit:#x} is {name} on this kernel (mainline since {a}.{b}), not CLONE_WAIT_PID"),
            observed,
        };
    }
    if answers.is_empty() {
        return Decision {
            present: false,
            reason: format!("no clone3 combination was tried with bit {bit:#x}"),
            observed,
        };
    }
    let knows: Vec<String> = answers
        .iter()
        .filter_map(|(c, a)| match a {
            Answer::Refused(Errno::EINVAL) => None,
            Answer::Refused(e) => Some(format!("{} answered {e}, not EINVAL", c.spell(bit))),
            Answer::Accepted(_) => Some(format!("{} accepted it", c.spell(bit))),
        })
        .collect();
    if knows.is_empty() {
        let tried: Vec<String> = answers.iter().map(|(c, _)| c.spell(bit)).collect();
        return Decision {
            present: false,
            reason: format!(
                "this kernel does not know bit {bit:#x}: EINVAL for every combination tried ({})",
                tried.join(", ")
            ),
            observed,
        };
    }
    Decision {
        present: true,
        reason: format!("the kernel knows bit {bit:#x}: {}", knows.join("; ")),
        observed,
    }
}

/// The observations in words, deviations from the seed marked.
fn describe(bit: u64, answers: &[(Combo, Answer)]) -> String {
    let mut parts = Vec::new();
    for (c, a) in answers {
        let mut p = format!("{}: ", c.spell(bit));
        match (c, a) {
            (Combo::Alone, Answer::Refused(Errno::EINVAL)) => {
                p.push_str("EINVAL (as the seed requires without CLONE_PIDFD)")
            }
            (Combo::Alone, Answer::Refused(e)) => p.push_str(&format!(
                "unexpected: {e} (the seed answers EINVAL without CLONE_PIDFD)"
            )),
            (_, Answer::Refused(e)) => p.push_str(&format!(
                "unexpected: refused with {e} (the seed accepts it with CLONE_PIDFD)"
            )),
            (_, Answer::Accepted(seen)) => {
                let mut bits = Vec::new();
                if *c == Combo::Alone {
                    bits.push(
                        "unexpected: accepted without CLONE_PIDFD (the seed answers EINVAL)"
                            .to_string(),
                    );
                }
                bits.push(if seen.visible_to_all {
                    "unexpected: visible to waitid(P_ALL)".to_string()
                } else {
                    "hidden from waitid(P_ALL)".to_string()
                });
                match seen.focused_reap {
                    WaitOutcome::Reported {
                        event: crate::sys::wait::Event::Exited(PROBE_CODE),
                        ..
                    } => bits.push(format!(
                        "waitid(P_PIDFD) reaped it with exit code {PROBE_CODE}"
                    )),
                    other => bits.push(format!(
                        "unexpected: waitid(P_PIDFD) gave {other}, want exit code {PROBE_CODE}"
                    )),
                }
                if !seen.cleanup.is_empty() {
                    bits.push(seen.cleanup.clone());
                }
                p.push_str(&format!("accepted; {}", bits.join("; ")));
            }
        }
        parts.push(p);
    }
    parts.join(". ")
}

impl Decision {
    pub fn into_probe(self, kernel_release: String, bit: u64) -> Probe {
        let (absent, reason) = if self.present {
            (None, self.reason)
        } else {
            (Some(self.reason), String::new())
        };
        Probe {
            kernel_release,
            bit,
            absent,
            reason,
            observed: self.observed,
        }
    }
}

impl Probe {
    /// Whether the feature is present and the observations deviate from
    /// the seed's contract (when absent, every refusal is expected).
    pub fn has_warnings(&self) -> bool {
        self.absent.is_none() && self.observed.contains("unexpected:")
    }
}

/// Probe the feature: clone3 with the bit in each [`Combo`]; every child
/// exits at once, is peeked at with a generic `waitid(P_ALL, ...|WNOWAIT)`
/// and reaped by pidfd (one made without CLONE_PIDFD through pidfd_open).
/// The decision is [`decide`]'s.
///
/// Call only in a process whose other children do not matter (it reaps only
/// its own children, by pidfd, but the generic peek could see others).
pub fn probe(bit: u64) -> Probe {
    let release = kernel_release();
    let mainline = mainline_bit_name(bit, kernel_version());
    let mut answers = Vec::new();
    if mainline.is_none() {
        for c in Combo::ALL {
            answers.push((c, try_combo(bit, c)));
        }
    }
    decide(bit, mainline, &answers).into_probe(release, bit)
}

fn try_combo(bit: u64, c: Combo) -> Answer {
    let (flags, sig) = match c {
        Combo::WithPidfd => (bit | CLONE_PIDFD, libc::SIGCHLD as u64),
        Combo::Alone => (bit, libc::SIGCHLD as u64),
        Combo::WithPidfdNoSignal => (bit | CLONE_PIDFD, 0),
    };
    let child = match clone3(&Clone3Request::new(flags, sig), Program::Exit(PROBE_CODE)) {
        Ok(c) => c,
        Err(e) => return Answer::Refused(e),
    };
    let pid = child.pid;
    // A child made without CLONE_PIDFD gets one through pidfd_open.
    let fd = match child.pidfd.as_ref().map(|f| f.try_clone()) {
        Some(Ok(f)) => Ok(f),
        Some(Err(e)) => Err(format!("dup(pidfd): {e}")),
        None => pidfd::open(pid, false).map_err(|e| format!("pidfd_open({pid}): {e}")),
    };
    let fd = match fd {
        Ok(f) => f,
        Err(why) => {
            // No pidfd at all: a focused waitpid(pid) reaps it.
            let t = WaitTarget::pid(pid);
            let reap = wait(WaitCall::WaitpidPid, t, WaitOpts(WaitOpts::WALL));
            return Answer::Accepted(ChildSeen {
                visible_to_all: false,
                focused_reap: reap,
                cleanup: format!(
                    "unexpected: {why}; waitpid(pid, __WALL) gave {reap} (visibility not probed)"
                ),
            });
        }
    };
    let _ = pidfd::poll_exit(fd.as_fd(), None);
    let target = WaitTarget {
        pid,
        pidfd: Some(std::os::fd::AsFd::as_fd(&fd)),
        pgid: 0,
    };
    let all = WaitOpts::WALL;
    let peek = wait(
        WaitCall::WaitidAll,
        target,
        WaitOpts(WaitOpts::WEXITED | WaitOpts::WNOHANG | WaitOpts::WNOWAIT | all),
    );
    let visible_to_all = matches!(peek, WaitOutcome::Reported { pid: p, .. } if p == pid);
    let focused_reap = wait(
        WaitCall::WaitidPidfd,
        target,
        WaitOpts(WaitOpts::WEXITED | all),
    );
    let cleanup = if matches!(focused_reap, WaitOutcome::Reported { pid: p, .. } if p == pid) {
        String::new()
    } else {
        // The focused reap did not take it: try waitid(P_PID), then, as this
        // process has no other child, a generic reap; say which worked.
        let by_pid = wait(
            WaitCall::WaitidPid,
            target,
            WaitOpts(WaitOpts::WEXITED | WaitOpts::WNOHANG | all),
        );
        if matches!(by_pid, WaitOutcome::Reported { pid: p, .. } if p == pid) {
            "reaped by waitid(P_PID) instead".to_string()
        } else {
            let by_all = wait(
                WaitCall::WaitidAll,
                target,
                WaitOpts(WaitOpts::WEXITED | WaitOpts::WNOHANG | all),
            );
            if matches!(by_all, WaitOutcome::Reported { pid: p, .. } if p == pid) {
                "reaped by waitid(P_ALL) instead".to_string()
            } else {
                format!("unexpected: no wait reaps it (waitid(P_PID) gave {by_pid}, waitid(P_ALL) gave {by_all}); it stays a zombie")
            }
        }
    };
    drop(child);
    Answer::Accepted(ChildSeen {
        visible_to_all,
        focused_reap,
        cleanup,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_need_agrees_with_proc_self_ns() {
        for (flag, name) in NAMESPACES {
            let absent = !std::path::Path::new(&format!("/proc/self/ns/{name}")).exists();
            assert_eq!(namespace_missing(name), absent, "{name}");
            assert_eq!(missing_namespaces() & flag != 0, absent, "{name}");
        }
        assert!(namespace_missing("no-such-namespace-type"));
    }
    #[test]
    fn seed_bit_parses() {
        // The grammar's own tests are in protocol::bit.
        assert_eq!(parse_bit("0x200000000"), Ok(SEED_BIT));
    }

    const BIT: u64 = 1 << 40;

    fn good_child() -> Answer {
        Answer::Accepted(ChildSeen {
            visible_to_all: false,
            focused_reap: WaitOutcome::Reported {
                pid: 9,
                event: crate::sys::wait::Event::Exited(PROBE_CODE),
            },
            cleanup: String::new(),
        })
    }

    fn answers(a: Answer, b: Answer, c: Answer) -> Vec<(Combo, Answer)> {
        vec![
            (Combo::WithPidfd, a),
            (Combo::Alone, b),
            (Combo::WithPidfdNoSignal, c),
        ]
    }

    #[test]
    fn unknown_bit_is_absent() {
        let r = Answer::Refused(Errno::EINVAL);
        let d = decide(BIT, None, &answers(r.clone(), r.clone(), r));
        assert!(!d.present);
        assert!(
            d.reason.contains("does not know bit 0x10000000000"),
            "{}",
            d.reason
        );
        assert!(
            d.reason.contains("exit_signal 0"),
            "every combination is named: {}",
            d.reason
        );
    }

    #[test]
    fn mainline_meaning_is_absent_whatever_clone3_said() {
        let d = decide(SEED_BIT, Some(("CLONE_INTO_CGROUP", (5, 7))), &[]);
        assert!(!d.present);
        assert!(
            d.reason.contains("CLONE_INTO_CGROUP") && d.reason.contains("5.7"),
            "{}",
            d.reason
        );
        let d = decide(
            SEED_BIT,
            Some(("CLONE_INTO_CGROUP", (5, 7))),
            &answers(good_child(), Answer::Refused(Errno::EINVAL), good_child()),
        );
        assert!(!d.present);
    }

    #[test]
    fn the_seeds_answers_are_present_without_warnings() {
        let d = decide(
            BIT,
            None,
            &answers(good_child(), Answer::Refused(Errno::EINVAL), good_child()),
        );
        assert!(d.present, "{d:?}");
        assert!(!d.observed.contains("unexpected:"), "{}", d.observed);
        let p = d.into_probe("6.12".into(), BIT);
        assert_eq!(p.absent, None);
        assert!(!p.has_warnings());
        assert!(p.features().wait_pid_bit == Some(BIT));
    }

    #[test]
    fn broken_patches_are_present_with_what_was_seen() {
        // Hidden from focused waits too, and visible to P_ALL.
        let wrong = Answer::Accepted(ChildSeen {
            visible_to_all: true,
            focused_reap: WaitOutcome::Failed(Errno::ECHILD),
            cleanup: "reaped by waitid(P_ALL) instead".into(),
        });
        let d = decide(
            BIT,
            None,
            &answers(wrong.clone(), Answer::Refused(Errno::EINVAL), wrong),
        );
        assert!(d.present);
        assert!(
            d.observed.contains("unexpected: visible to waitid(P_ALL)"),
            "{}",
            d.observed
        );
        assert!(
            d.observed
                .contains("unexpected: waitid(P_PIDFD) gave -1 ECHILD"),
            "{}",
            d.observed
        );
        // Loses the exit code.
        let lost = Answer::Accepted(ChildSeen {
            visible_to_all: false,
            focused_reap: WaitOutcome::Reported {
                pid: 9,
                event: crate::sys::wait::Event::Exited(0),
            },
            cleanup: String::new(),
        });
        let d = decide(
            BIT,
            None,
            &answers(lost, Answer::Refused(Errno::EINVAL), good_child()),
        );
        assert!(d.present);
        assert!(d.observed.contains("want exit code 42"), "{}", d.observed);
        // The CLONE_PIDFD requirement inverted: only the bit alone works.
        let r = Answer::Refused(Errno::EINVAL);
        let d = decide(BIT, None, &answers(r.clone(), good_child(), r.clone()));
        assert!(
            d.present,
            "accepted in one combination: the kernel knows the bit"
        );
        assert!(
            d.reason
                .contains("clone3(0x10000000000, SIGCHLD) accepted it"),
            "{}",
            d.reason
        );
        assert!(
            d.observed
                .contains("unexpected: accepted without CLONE_PIDFD"),
            "{}",
            d.observed
        );
        assert!(
            d.observed.contains("unexpected: refused with EINVAL"),
            "{}",
            d.observed
        );
        // Another errno than EINVAL: past the unknown-bit check, so known.
        let d = decide(
            BIT,
            None,
            &answers(Answer::Refused(Errno::EPERM), r.clone(), r),
        );
        assert!(d.present);
        assert!(d.reason.contains("EPERM"), "{}", d.reason);
        let p = d.into_probe("6.12".into(), BIT);
        assert!(p.has_warnings());
    }

    #[test]
    fn probe_on_this_kernel_is_consistent() {
        // Whatever this kernel is, the record is consistent: a reason for
        // exactly one of present/absent, and an observation per combination
        // clone3 was asked about.
        let p = probe(BIT);
        assert_eq!(p.bit, BIT);
        assert_eq!(p.absent.is_none(), !p.reason.is_empty());
        let tried = if mainline_bit_name(BIT, kernel_version()).is_some() {
            0
        } else {
            3
        };
        assert_eq!(
            p.observed.matches("clone3(").count(),
            tried,
            "{}",
            p.observed
        );
    }
}
