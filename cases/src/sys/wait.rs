//! Every wait call of the seed as one enum, with one normalised outcome.
//!
//! Which library makes each call:
//! - waitpid through nix, which decodes the status word including the core
//!   dump bit and ptrace stops; rustix has every waitpid form, but its
//!   `WaitStatus` does not tell a core dump apart.
//! - wait(3) through libc: it is a libc function (wait4(-1, &st, 0, NULL)
//!   on x86_64), not a system call either crate wraps.
//! - wait4(2) through libc: neither rustix nor nix has it (rusage).
//! - waitid(2) through libc: rustix's `WaitIdStatus` has no `si_pid` and
//!   its `WaitId::PidFd` cannot name a closed fd; nix's waitid folds
//!   `si_code` into a status enum; the cases assert the exact
//!   `si_code`/`si_status`/`si_pid` the kernel filled in.
//! - the status-word macros (WIFEXITED...) through libc: nix's decoder
//!   refuses signal numbers its `Signal` enum lacks (realtime ones).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::errno::Errno;

/// Option bits, in waitid's vocabulary (`<linux/wait.h>`).
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct WaitOpts(pub u32);

impl WaitOpts {
    pub const WNOHANG: u32 = 0x0000_0001;
    pub const WUNTRACED: u32 = 0x0000_0002;
    pub const WSTOPPED: u32 = 0x0000_0002;
    pub const WEXITED: u32 = 0x0000_0004;
    pub const WCONTINUED: u32 = 0x0000_0008;
    pub const WNOWAIT: u32 = 0x0100_0000;
    pub const WNOTHREAD: u32 = 0x2000_0000;
    pub const WALL: u32 = 0x4000_0000;
    pub const WCLONE: u32 = 0x8000_0000;

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }

    /// Human form, e.g. `WEXITED|WNOHANG`.
    pub fn describe(self) -> String {
        let names = [
            (Self::WNOHANG, "WNOHANG"),
            (Self::WSTOPPED, "WSTOPPED"),
            (Self::WEXITED, "WEXITED"),
            (Self::WCONTINUED, "WCONTINUED"),
            (Self::WNOWAIT, "WNOWAIT"),
            (Self::WNOTHREAD, "__WNOTHREAD"),
            (Self::WALL, "__WALL"),
            (Self::WCLONE, "__WCLONE"),
        ];
        let v: Vec<&str> = names
            .iter()
            .filter(|(b, _)| self.0 & b != 0)
            .map(|(_, n)| *n)
            .collect();
        if v.is_empty() {
            "0".into()
        } else {
            v.join("|")
        }
    }
}

/// The wait calls of the seed. Generic ones consider any child (of a group);
/// focused ones name exactly one.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum WaitCall {
    /// `wait4(-1, &st, opts, &ru)`
    Wait4Any,
    /// `waitpid(-1, &st, opts)`
    WaitpidAny,
    /// `wait(&st)` (no options)
    Wait,
    /// `waitid(P_ALL, 0, &si, opts)`
    WaitidAll,
    /// `waitid(P_PGID, pgid, &si, opts)`
    WaitidPgid,
    /// `waitid(P_PGID, 0, &si, opts)`: the caller's group (5.4+)
    WaitidPgidZero,
    /// `waitpid(-pgid, &st, opts)`
    WaitpidNegPgid,
    /// `wait4(-pgid, &st, opts, &ru)`
    Wait4NegPgid,
    /// `waitpid(0, &st, opts)`: the caller's group
    WaitpidZero,
    /// `waitpid(pid, &st, opts)`
    WaitpidPid,
    /// `wait4(pid, &st, opts, &ru)`
    Wait4Pid,
    /// `waitid(P_PID, pid, &si, opts)`
    WaitidPid,
    /// `waitid(P_PIDFD, pidfd, &si, opts)`
    WaitidPidfd,
}

impl WaitCall {
    pub const GENERIC: [WaitCall; 9] = [
        WaitCall::Wait4Any,
        WaitCall::WaitpidAny,
        WaitCall::Wait,
        WaitCall::WaitidAll,
        WaitCall::WaitidPgid,
        WaitCall::WaitidPgidZero,
        WaitCall::WaitpidNegPgid,
        WaitCall::Wait4NegPgid,
        WaitCall::WaitpidZero,
    ];
    pub const FOCUSED: [WaitCall; 4] = [
        WaitCall::WaitpidPid,
        WaitCall::Wait4Pid,
        WaitCall::WaitidPid,
        WaitCall::WaitidPidfd,
    ];

    pub fn is_focused(self) -> bool {
        Self::FOCUSED.contains(&self)
    }

    /// waitid-family calls take WEXITED explicitly and report siginfo.
    pub fn is_waitid(self) -> bool {
        matches!(
            self,
            WaitCall::WaitidAll
                | WaitCall::WaitidPgid
                | WaitCall::WaitidPgidZero
                | WaitCall::WaitidPid
                | WaitCall::WaitidPidfd
        )
    }

    /// `wait()` takes no options at all.
    pub fn takes_options(self) -> bool {
        self != WaitCall::Wait
    }

    /// Stable identifier used in case names.
    pub fn id(self) -> &'static str {
        match self {
            WaitCall::Wait4Any => "wait4_any",
            WaitCall::WaitpidAny => "waitpid_any",
            WaitCall::Wait => "wait",
            WaitCall::WaitidAll => "waitid_all",
            WaitCall::WaitidPgid => "waitid_pgid",
            WaitCall::WaitidPgidZero => "waitid_pgid0",
            WaitCall::WaitpidNegPgid => "waitpid_neg_pgid",
            WaitCall::Wait4NegPgid => "wait4_neg_pgid",
            WaitCall::WaitpidZero => "waitpid_zero",
            WaitCall::WaitpidPid => "waitpid_pid",
            WaitCall::Wait4Pid => "wait4_pid",
            WaitCall::WaitidPid => "waitid_pid",
            WaitCall::WaitidPidfd => "waitid_pidfd",
        }
    }

    /// The call as C source, for details.
    pub fn spell(self, opts: WaitOpts) -> String {
        let o = opts.describe();
        match self {
            WaitCall::Wait4Any => format!("wait4(-1, &st, {o}, &ru)"),
            WaitCall::WaitpidAny => format!("waitpid(-1, &st, {o})"),
            WaitCall::Wait => "wait(&st)".into(),
            WaitCall::WaitidAll => format!("waitid(P_ALL, 0, &si, {o})"),
            WaitCall::WaitidPgid => format!("waitid(P_PGID, pgid, &si, {o})"),
            WaitCall::WaitidPgidZero => format!("waitid(P_PGID, 0, &si, {o})"),
            WaitCall::WaitpidNegPgid => format!("waitpid(-pgid, &st, {o})"),
            WaitCall::Wait4NegPgid => format!("wait4(-pgid, &st, {o}, &ru)"),
            WaitCall::WaitpidZero => format!("waitpid(0, &st, {o})"),
            WaitCall::WaitpidPid => format!("waitpid(pid, &st, {o})"),
            WaitCall::Wait4Pid => format!("wait4(pid, &st, {o}, &ru)"),
            WaitCall::WaitidPid => format!("waitid(P_PID, pid, &si, {o})"),
            WaitCall::WaitidPidfd => format!("waitid(P_PIDFD, pidfd, &si, {o})"),
        }
    }
}

/// What a child reported (serialisable: the fuzz observations carry it).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, serde::Serialize, serde::Deserialize)]
pub enum Event {
    /// exited with this code (`CLD_EXITED`)
    Exited(i32),
    /// killed by this signal (`CLD_KILLED`)
    Killed(i32),
    /// killed by this signal, core dumped (`CLD_DUMPED`)
    Dumped(i32),
    /// stopped by this signal (`CLD_STOPPED`; wait4 reports ptrace stops here too)
    Stopped(i32),
    /// ptrace stop (`CLD_TRAPPED`, waitid only)
    Trapped(i32),
    /// continued (`CLD_CONTINUED`)
    Continued,
}

/// The normalised result of one wait call.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum WaitOutcome {
    Reported {
        pid: i32,
        event: Event,
    },
    /// WNOHANG and nothing ready: return value 0 (waitid: `si_pid == 0`).
    NothingReady,
    Failed(Errno),
}

impl std::fmt::Display for WaitOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitOutcome::Reported { pid, event } => write!(f, "pid {pid} {event:?}"),
            WaitOutcome::NothingReady => f.write_str("0 (nothing ready)"),
            WaitOutcome::Failed(e) => write!(f, "-1 {e}"),
        }
    }
}

/// Who the call is about: the child (pid, pidfd) and the process group.
/// `pidfd` borrows the caller's pidfd for the call; without one,
/// `waitid(P_PIDFD)` passes -1 and the kernel answers EBADF.
#[derive(Clone, Copy, Debug)]
pub struct WaitTarget<'fd> {
    pub pid: i32,
    pub pidfd: Option<BorrowedFd<'fd>>,
    pub pgid: i32,
}

impl<'fd> WaitTarget<'fd> {
    /// A child named by pid only (no pidfd), in no particular group.
    pub fn pid(pid: i32) -> Self {
        WaitTarget {
            pid,
            pidfd: None,
            pgid: 0,
        }
    }

    /// A child with its pidfd.
    pub fn with_pidfd(pid: i32, pidfd: BorrowedFd<'fd>) -> Self {
        WaitTarget {
            pid,
            pidfd: Some(pidfd),
            pgid: 0,
        }
    }

    /// The same target with process group `pgid`.
    pub fn in_group(self, pgid: i32) -> Self {
        WaitTarget { pgid, ..self }
    }

    /// The same target owning a duplicate of the pidfd (fcntl
    /// F_DUPFD_CLOEXEC, through rustix), for a call another thread makes:
    /// the duplicate names the same pidfd file and is closed when the
    /// [`OwnedTarget`] is dropped.
    pub fn to_owned_target(self) -> Result<OwnedTarget, Errno> {
        let pidfd = self
            .pidfd
            .map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 0))
            .transpose()?;
        Ok(OwnedTarget {
            pid: self.pid,
            pidfd,
            pgid: self.pgid,
        })
    }
}

/// A [`WaitTarget`] that owns its pidfd (see [`WaitTarget::to_owned_target`]).
#[derive(Debug)]
pub struct OwnedTarget {
    pub pid: i32,
    pub pidfd: Option<OwnedFd>,
    pub pgid: i32,
}

impl OwnedTarget {
    pub fn target(&self) -> WaitTarget<'_> {
        WaitTarget {
            pid: self.pid,
            pidfd: self.pidfd.as_ref().map(|f| f.as_fd()),
            pgid: self.pgid,
        }
    }
}

/// The numbers /proc/<tid>/syscall shows for a task blocked in wait4(2) or
/// waitid(2) (libc: the only one of the three that publishes syscall
/// numbers).
pub const WAIT_SYSCALL_NUMBERS: [i64; 2] = [libc::SYS_wait4, libc::SYS_waitid];

const P_ALL: libc::idtype_t = 0;
const P_PID: libc::idtype_t = 1;
const P_PGID: libc::idtype_t = 2;
const P_PIDFD: libc::idtype_t = 3;

/// Make the call once (announced, when a case process switched that on:
/// see [`super::announce`]).
pub fn wait(call: WaitCall, target: WaitTarget<'_>, opts: WaitOpts) -> WaitOutcome {
    let _inside = super::announce::enter(|| describe_call(call, target, opts), None);
    wait_unannounced(call, target, opts)
}

/// The call as C source with the pid or group it names.
pub fn describe_call(call: WaitCall, target: WaitTarget<'_>, opts: WaitOpts) -> String {
    let s = call.spell(opts);
    match call {
        _ if call.is_focused() => format!("{s} on pid {}", target.pid),
        WaitCall::WaitidPgid | WaitCall::WaitpidNegPgid | WaitCall::Wait4NegPgid => {
            format!("{s} with pgid {}", target.pgid)
        }
        _ => s,
    }
}

fn wait_unannounced(call: WaitCall, target: WaitTarget<'_>, opts: WaitOpts) -> WaitOutcome {
    // wait4 and waitpid: WEXITED is implicit; everything else passes as is
    // (so WNOWAIT reaches the kernel, which rejects it there).
    let legacy_opts = (opts.0 & !WaitOpts::WEXITED) as i32;
    match call {
        WaitCall::Wait4Any => wait4(-1, legacy_opts),
        WaitCall::Wait4NegPgid => wait4(-target.pgid, legacy_opts),
        WaitCall::Wait4Pid => wait4(target.pid, legacy_opts),
        WaitCall::WaitpidAny => waitpid(-1, legacy_opts),
        WaitCall::WaitpidNegPgid => waitpid(-target.pgid, legacy_opts),
        WaitCall::WaitpidZero => waitpid(0, legacy_opts),
        WaitCall::WaitpidPid => waitpid(target.pid, legacy_opts),
        WaitCall::Wait => {
            let mut st = 0;
            // SAFETY: st is a valid out-pointer for the status word.
            let r = unsafe { libc::wait(&mut st) };
            legacy_outcome(r, st)
        }
        WaitCall::WaitidAll => waitid(P_ALL, 0, opts),
        WaitCall::WaitidPgid => waitid(P_PGID, target.pgid as libc::id_t, opts),
        WaitCall::WaitidPgidZero => waitid(P_PGID, 0, opts),
        WaitCall::WaitidPid => waitid(P_PID, target.pid as libc::id_t, opts),
        // No pidfd: -1, which the kernel refuses with EBADF (as a closed fd).
        WaitCall::WaitidPidfd => waitid(
            P_PIDFD,
            target.pidfd.map_or(-1, |fd| fd.as_raw_fd()) as libc::id_t,
            opts,
        ),
    }
}

fn wait4(pid: i32, opts: i32) -> WaitOutcome {
    let mut st = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: st and ru are valid out-pointers for the duration of the call.
    let r = unsafe { libc::wait4(pid, &mut st, opts, &mut ru) };
    legacy_outcome(r, st)
}

fn waitpid(pid: i32, opts: i32) -> WaitOutcome {
    use nix::sys::wait::{WaitPidFlag, WaitStatus};
    let flags = WaitPidFlag::from_bits_retain(opts);
    match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), Some(flags)) {
        Err(e) => WaitOutcome::Failed(e.into()),
        Ok(WaitStatus::StillAlive) => WaitOutcome::NothingReady,
        Ok(WaitStatus::Exited(p, c)) => WaitOutcome::Reported {
            pid: p.as_raw(),
            event: Event::Exited(c),
        },
        Ok(WaitStatus::Signaled(p, s, core)) => WaitOutcome::Reported {
            pid: p.as_raw(),
            event: if core {
                Event::Dumped(s as i32)
            } else {
                Event::Killed(s as i32)
            },
        },
        Ok(WaitStatus::Stopped(p, s)) => WaitOutcome::Reported {
            pid: p.as_raw(),
            event: Event::Stopped(s as i32),
        },
        Ok(WaitStatus::PtraceEvent(p, s, _)) => WaitOutcome::Reported {
            pid: p.as_raw(),
            event: Event::Stopped(s as i32),
        },
        Ok(WaitStatus::PtraceSyscall(p)) => WaitOutcome::Reported {
            pid: p.as_raw(),
            event: Event::Stopped(libc::SIGTRAP | 0x80),
        },
        Ok(WaitStatus::Continued(p)) => WaitOutcome::Reported {
            pid: p.as_raw(),
            event: Event::Continued,
        },
    }
}

/// The final state a wait status word holds (exited, killed, dumped), if
/// it holds one (libc's macros).
pub(crate) fn final_event(st: i32) -> Option<Event> {
    if libc::WIFEXITED(st) {
        Some(Event::Exited(libc::WEXITSTATUS(st)))
    } else if libc::WIFSIGNALED(st) {
        if libc::WCOREDUMP(st) {
            Some(Event::Dumped(libc::WTERMSIG(st)))
        } else {
            Some(Event::Killed(libc::WTERMSIG(st)))
        }
    } else {
        None
    }
}

/// Decode a wait4/wait status word.
fn legacy_outcome(r: i32, st: i32) -> WaitOutcome {
    if r < 0 {
        return WaitOutcome::Failed(Errno::last());
    }
    if r == 0 {
        return WaitOutcome::NothingReady;
    }
    let event = if let Some(ev) = final_event(st) {
        ev
    } else if libc::WIFSTOPPED(st) {
        Event::Stopped(libc::WSTOPSIG(st))
    } else if libc::WIFCONTINUED(st) {
        Event::Continued
    } else {
        Event::Exited(-1)
    };
    WaitOutcome::Reported { pid: r, event }
}

fn waitid(idtype: libc::idtype_t, id: libc::id_t, opts: WaitOpts) -> WaitOutcome {
    // SAFETY: an all-zero siginfo is valid; si_pid stays 0 when WNOHANG finds
    // nothing, which is how "nothing ready" is told apart.
    let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: si is a valid out-pointer; glibc passes a NULL rusage.
    let r = unsafe { libc::waitid(idtype, id, &mut si, opts.0 as i32) };
    siginfo_outcome(r, &si)
}

/// The resource usage the kernel reports with a wait (the fields a row checks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// `ru_maxrss`, KiB: above zero for any process that ran.
    pub maxrss_kib: i64,
}

/// `waitid(P_PIDFD, fd, &si, opts, &ru)`: the raw system call, whose fifth argument (a
/// `struct rusage`, which glibc's waitid always passes as NULL) the kernel fills for the
/// child reported.
pub fn waitid_pidfd_usage(pidfd: BorrowedFd<'_>, opts: WaitOpts) -> (WaitOutcome, Usage) {
    // SAFETY: all-zero siginfo and rusage are valid values of these plain C structs.
    let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let _inside = super::announce::enter(
        || {
            format!(
                "waitid(P_PIDFD, {}, &si, {}, &ru)",
                pidfd.as_raw_fd(),
                opts.describe()
            )
        },
        None,
    );
    // SAFETY: si and ru are valid out-pointers for the call; the other arguments are integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_waitid,
            P_PIDFD,
            pidfd.as_raw_fd(),
            &mut si as *mut libc::siginfo_t,
            opts.0 as libc::c_int,
            &mut ru as *mut libc::rusage,
        )
    };
    let outcome = siginfo_outcome(if r < 0 { -1 } else { 0 }, &si);
    (
        outcome,
        Usage {
            maxrss_kib: ru.ru_maxrss,
        },
    )
}

/// Decode waitid's result: `r` (0 or -1 with errno) and the siginfo it filled.
fn siginfo_outcome(r: i32, si: &libc::siginfo_t) -> WaitOutcome {
    if r < 0 {
        return WaitOutcome::Failed(Errno::last());
    }
    // SAFETY: the kernel filled a SIGCHLD-style siginfo (or left it zeroed).
    let (pid, status) = unsafe { (si.si_pid(), si.si_status()) };
    if pid == 0 {
        return WaitOutcome::NothingReady;
    }
    let event = match si.si_code {
        libc::CLD_EXITED => Event::Exited(status),
        libc::CLD_KILLED => Event::Killed(status),
        libc::CLD_DUMPED => Event::Dumped(status),
        libc::CLD_STOPPED => Event::Stopped(status),
        libc::CLD_TRAPPED => Event::Trapped(status),
        libc::CLD_CONTINUED => Event::Continued,
        other => Event::Exited(-1000 - other),
    };
    WaitOutcome::Reported { pid, event }
}
