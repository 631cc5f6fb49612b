//! What a case is (a declarative description) and what its body works with.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use super::config::Probe;
use crate::model::KernelFeatures;
use crate::sys::clone::{clone3, flags::CLONE_PIDFD, Clone3Request, Program, Spawned};
use crate::sys::wait::{wait, Event, WaitCall, WaitOpts, WaitOutcome, WaitTarget};
use crate::sys::{pidfd, Errno};

/// What a case needs before it can run; checked up front, a missing need is
/// a skip with the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// the kernel implements CLONE_WAIT_PID at the configured bit
    Feature,
    /// effective uid 0
    Root,
    /// a kernel at least this new
    MinKernel(u32, u32),
    /// a writable cgroup2 hierarchy at /sys/fs/cgroup
    Cgroup2,
    /// the kernel has this namespace type (`/proc/self/ns/<name>` exists)
    Namespace(&'static str),
}

/// Where a row's expectation comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// a sentence of the seed patch
    Seed(&'static str),
    /// a man page or kernel source statement
    Man(&'static str),
    /// a question the seed leaves open, with the rationale for the answer
    Design(&'static str),
    /// the model in model.rs (kernel/fork.c's rules)
    Model(&'static str),
    /// a fuzzing finding
    Regression(String),
    /// a switchable self-test of the harness
    SelfTest(&'static str),
}

/// The class of a row's expectation, the thing a reader counts: where the
/// "should" comes from (LTP's `.tags`, kselftest's XFAIL play this role).
/// The names are stable: they appear in the case JSON line, the summaries
/// and the runner's reports.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Provenance {
    /// a sentence the seed patch states
    Seed,
    /// documented kernel behaviour: a man page, or the kernel source's rules
    /// (the model)
    Documented,
    /// the seed is silent; our use case needs this answer
    Design,
    /// a fuzzing finding kept as a row
    Regression,
    /// a switchable self-test of the harness
    SelfTest,
}

impl Provenance {
    pub const ALL: [Provenance; 5] = [
        Provenance::Seed,
        Provenance::Documented,
        Provenance::Design,
        Provenance::Regression,
        Provenance::SelfTest,
    ];

    /// The stable name (as serialised).
    pub fn name(self) -> &'static str {
        match self {
            Provenance::Seed => "seed",
            Provenance::Documented => "documented",
            Provenance::Design => "design",
            Provenance::Regression => "regression",
            Provenance::SelfTest => "selftest",
        }
    }
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Source {
    /// Which class of expectation this is.
    pub fn provenance(&self) -> Provenance {
        match self {
            Source::Seed(_) => Provenance::Seed,
            Source::Man(_) | Source::Model(_) => Provenance::Documented,
            Source::Design(_) => Provenance::Design,
            Source::Regression(_) => Provenance::Regression,
            Source::SelfTest(_) => Provenance::SelfTest,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Seed(s) => write!(f, "seed: {s}"),
            Source::Man(s) => write!(f, "man/kernel: {s}"),
            Source::Design(s) => write!(f, "design: {s}"),
            Source::Model(s) => write!(f, "model: {s}"),
            Source::Regression(s) => write!(f, "regression: {s}"),
            Source::SelfTest(s) => write!(f, "self-test: {s}"),
        }
    }
}

/// Which child a row is about: one made with CLONE_WAIT_PID, or the control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    Hidden,
    Plain,
}

impl Subject {
    pub const BOTH: [Subject; 2] = [Subject::Hidden, Subject::Plain];
    pub fn variant(self) -> &'static str {
        match self {
            Subject::Hidden => "hidden",
            Subject::Plain => "plain",
        }
    }
    pub fn hidden(self) -> bool {
        self == Subject::Hidden
    }
}

/// Why a body stopped early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    Fail(String),
    Skip(String),
    Broken(String),
}

pub type Check = Result<(), Stop>;

/// Shorthands for turning errors into stops.
pub fn fail<T>(msg: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Fail(msg.into()))
}
pub fn broken<T>(msg: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Broken(msg.into()))
}

pub type Body = Arc<dyn Fn(&mut Ctx) -> Check + Send + Sync>;

/// One declarative case.
#[derive(Clone)]
pub struct Case {
    /// `group::call::situation[::variant]`
    pub name: String,
    pub needs: Vec<Need>,
    pub source: Source,
    pub timeout: Duration,
    /// What the row expects and why, in words (from the model for the wait
    /// grid); shown by `--list --verbose` and in the report's detail. Made
    /// on demand: a case process builds the whole table but needs no text.
    pub expects: Option<Expects>,
    pub body: Body,
}

/// A row's expectation in words, made when it is read.
pub type Expects = Arc<dyn Fn() -> String + Send + Sync>;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

impl Case {
    pub fn new(
        name: impl Into<String>,
        source: Source,
        body: impl Fn(&mut Ctx) -> Check + Send + Sync + 'static,
    ) -> Self {
        Case {
            name: name.into(),
            needs: Vec::new(),
            source,
            timeout: DEFAULT_TIMEOUT,
            expects: None,
            body: Arc::new(body),
        }
    }
    pub fn need(mut self, n: Need) -> Self {
        if !self.needs.contains(&n) {
            self.needs.push(n);
        }
        self
    }
    /// Needs the feature when the subject is the hidden child.
    pub fn for_subject(self, s: Subject) -> Self {
        if s.hidden() {
            self.need(Need::Feature)
        } else {
            self
        }
    }
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    /// The expectation in words (what the model predicts, and why).
    pub fn expects(self, text: impl Into<String>) -> Self {
        let text = text.into();
        self.expects_with(move || text.clone())
    }
    /// The expectation in words, computed only when it is read
    /// (`--list --verbose`, a failed row's detail).
    pub fn expects_with(mut self, text: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.expects = Some(Arc::new(text));
        self
    }
    /// The expectation in words, if the row states one.
    pub fn expects_text(&self) -> Option<String> {
        self.expects.as_ref().map(|f| f())
    }
}

/// What a body works with, inside its own case process.
pub struct Ctx {
    pub probe: Probe,
    pub features: KernelFeatures,
    /// the case process's own pid and process group
    pub pid: i32,
    pub pgid: i32,
}

impl Ctx {
    pub fn new(probe: Probe) -> Self {
        let features = probe.features();
        Ctx {
            probe,
            features,
            pid: std::process::id() as i32,
            pgid: rustix::process::getpgrp().as_raw_nonzero().get(),
        }
    }

    /// The CLONE_WAIT_PID bit under test.
    pub fn bit(&self) -> u64 {
        self.probe.bit
    }

    /// clone3 flags for a child of this subject: CLONE_PIDFD, plus the bit
    /// for the hidden one.
    pub fn flags_for(&self, s: Subject) -> u64 {
        CLONE_PIDFD | if s.hidden() { self.bit() } else { 0 }
    }

    /// clone3 a child of this subject with exit_signal SIGCHLD.
    pub fn spawn(&self, s: Subject, program: Program) -> Result<Kid, Stop> {
        self.spawn_with(
            Clone3Request::new(self.flags_for(s), libc::SIGCHLD as u64),
            program,
        )
    }

    /// clone3 with a caller-built request (must set CLONE_PIDFD).
    pub fn spawn_with(&self, req: Clone3Request, program: Program) -> Result<Kid, Stop> {
        let flags = req.args.flags;
        match clone3(&req, program) {
            Ok(sp) => Kid::from_spawned(sp),
            Err(e) => broken(format!("setup: clone3(flags {flags:#x}) failed with {e}")),
        }
    }

    /// A child that exits with `code` at once; returns after it has exited
    /// (its pidfd polled readable), still unreaped.
    pub fn spawn_exited(&self, s: Subject, code: i32) -> Result<Kid, Stop> {
        let k = self.spawn(s, Program::Exit(code))?;
        k.await_exit()?;
        Ok(k)
    }

    /// A child that stays alive until released (`Kid::release`), then exits
    /// with `code`.
    pub fn spawn_live(&self, s: Subject, code: i32) -> Result<Kid, Stop> {
        let (r, w) = crate::sys::clone::pipe();
        let mut k = self.spawn(
            s,
            Program::AwaitThenExit {
                fd: r.as_raw_fd(),
                code,
            },
        )?;
        drop(r);
        k.release = Some(w);
        Ok(k)
    }

    /// Make one wait call about `kid`.
    pub fn wait(&self, call: WaitCall, kid: &Kid, opts: u32) -> WaitOutcome {
        wait(call, kid.target(self.pgid), WaitOpts(opts))
    }

    /// The same with a raw target.
    pub fn wait_on(&self, call: WaitCall, target: WaitTarget, opts: u32) -> WaitOutcome {
        wait(call, target, WaitOpts(opts))
    }
}

/// A child of the case process, known by pidfd.
pub struct Kid {
    pub pid: i32,
    pub pidfd: OwnedFd,
    release: Option<OwnedFd>,
    _spawned: Option<Spawned>,
}

impl Kid {
    fn from_spawned(mut sp: Spawned) -> Result<Kid, Stop> {
        let pidfd = match sp.pidfd.take() {
            Some(fd) => fd,
            None => {
                pidfd::open(sp.pid, false).or_else(|e| broken(format!("setup: pidfd_open: {e}")))?
            }
        };
        Ok(Kid {
            pid: sp.pid,
            pidfd,
            release: None,
            _spawned: Some(sp),
        })
    }

    /// Wrap a child made directly with `sys::clone::clone3`.
    pub fn adopt_spawned(sp: Spawned) -> Result<Kid, Stop> {
        Kid::from_spawned(sp)
    }

    /// Adopt a process by pid (pidfd_open), e.g. a reparented grandchild.
    pub fn adopt(pid: i32) -> Result<Kid, Stop> {
        let pidfd = pidfd::open(pid, false)
            .or_else(|e| broken(format!("setup: pidfd_open({pid}): {e}")))?;
        Ok(Kid {
            pid,
            pidfd,
            release: None,
            _spawned: None,
        })
    }

    /// Attach the write end that keeps an `AwaitThenExit` child alive.
    pub fn with_release(mut self, w: OwnedFd) -> Kid {
        self.release = Some(w);
        self
    }

    pub fn target(&self, pgid: i32) -> WaitTarget<'_> {
        WaitTarget {
            pid: self.pid,
            pidfd: Some(self.pidfd.as_fd()),
            pgid,
        }
    }

    /// Let a live child exit: one byte on its pipe (children share copies
    /// of each other's pipe ends, so closing ours would not be EOF).
    pub fn release(&mut self) {
        if let Some(w) = self.release.take() {
            let _ = rustix::io::write(&w, b"x");
        }
    }

    /// Block until the child has exited (pidfd readable).
    pub fn await_exit(&self) -> Check {
        pidfd::poll_exit(self.pidfd.as_fd(), None)
            .map(|_| ())
            .or_else(|e| broken(format!("poll(pidfd): {e}")))
    }

    pub fn signal(&self, sig: i32) -> Check {
        pidfd::send_signal(&self.pidfd, sig)
            .or_else(|e| broken(format!("pidfd_send_signal({sig}): {e}")))
    }

    /// Whether a focused `waitid(P_PIDFD, WEXITED|WNOHANG|WNOWAIT)` sees it
    /// as an exited, unreaped child (what the rows call "still a zombie").
    pub fn peek_exited(&self) -> WaitOutcome {
        wait(
            WaitCall::WaitidPidfd,
            self.target(0),
            WaitOpts(WaitOpts::WEXITED | WaitOpts::WNOHANG | WaitOpts::WNOWAIT),
        )
    }

    /// Reap with a focused `waitid(P_PIDFD, WEXITED | extra)`; the child
    /// must be reported.
    pub fn reap_with(self, extra: u32) -> Result<Event, Stop> {
        let mut me = self;
        me.release();
        match wait(
            WaitCall::WaitidPidfd,
            me.target(0),
            WaitOpts(WaitOpts::WEXITED | extra),
        ) {
            WaitOutcome::Reported { pid, event } if pid == me.pid => Ok(event),
            other => fail(format!(
                "focused reap of pid {}: waitid(P_PIDFD) gave {other}",
                me.pid
            )),
        }
    }

    pub fn reap(self) -> Result<Event, Stop> {
        self.reap_with(0)
    }

    /// Reap the child once it exits, unless `deadlock` proves it never can:
    /// asked each [`DEADLOCK_CHECK`] the child goes on living, it returns
    /// the row's words for a state from which the kernel cannot get out, a
    /// SIGKILL included (an uninterruptible sleep on a condition that can no
    /// longer come true).
    /// Then the row fails at once instead of at the case timeout, and the
    /// child is recorded as stuck (the leak check does not wait for it). The
    /// verdict never depends on the interval: a live child is waited for
    /// until it exits or the case times out.
    pub fn reap_unless_deadlocked(
        self,
        deadlock: impl Fn(i32) -> Option<String>,
    ) -> Result<Event, Stop> {
        loop {
            match pidfd::poll_exit(self.pidfd.as_fd(), Some(DEADLOCK_CHECK)) {
                Ok(true) => return self.reap(),
                Ok(false) => {
                    if let Some(why) = deadlock(self.pid) {
                        crate::harness::executor::mark_stuck(self.pid);
                        return fail(why);
                    }
                }
                Err(e) => return broken(format!("poll(pidfd): {e}")),
            }
        }
    }
}

/// How often [`Kid::reap_unless_deadlocked`] looks for the deadlock.
pub const DEADLOCK_CHECK: Duration = Duration::from_millis(20);

/// Compare a wait outcome with the expectation; `what` names the call.
pub fn expect(what: &str, got: WaitOutcome, want: WaitOutcome) -> Check {
    if got == want {
        Ok(())
    } else {
        fail(format!("{what}: want {want}, got {got}"))
    }
}

/// The outcome `Reported { pid, event }`.
pub fn reported(pid: i32, event: Event) -> WaitOutcome {
    WaitOutcome::Reported { pid, event }
}

pub fn errno(e: Errno) -> WaitOutcome {
    WaitOutcome::Failed(e)
}

/// A child that runs Rust code and reports a verdict of its own: `Ok` or a
/// message, written to a pipe the case process reads after reaping it.
pub struct Job {
    pub kid: Kid,
    report: OwnedFd,
}

impl Ctx {
    /// Run `f` in a child of this subject (clone3, no CLONE_VM).
    pub fn spawn_job(
        &self,
        s: Subject,
        f: impl FnOnce() -> Result<(), String> + 'static,
    ) -> Result<Job, Stop> {
        self.spawn_job_with(
            Clone3Request::new(self.flags_for(s), libc::SIGCHLD as u64),
            f,
        )
    }

    /// The same with a caller-built request (must include CLONE_PIDFD).
    pub fn spawn_job_with(
        &self,
        req: Clone3Request,
        f: impl FnOnce() -> Result<(), String> + 'static,
    ) -> Result<Job, Stop> {
        let (r, w) = crate::sys::clone::pipe();
        let kid = self.spawn_with(
            req,
            Program::Run(Box::new(move || match f() {
                Ok(()) => 0,
                Err(msg) => {
                    let _ = rustix::io::write(&w, msg.as_bytes());
                    1
                }
            })),
        )?;
        Ok(Job { kid, report: r })
    }
}

impl Job {
    /// Reap the job (focused) and return its verdict.
    pub fn finish(self) -> Check {
        self.finish_with(Kid::reap)
    }

    /// The job's verdict, learning how it ended from `end` (a focused reap,
    /// or for a child nobody can reap, its pidfd's exit info).
    pub fn finish_with(self, end: impl FnOnce(Kid) -> Result<Event, Stop>) -> Check {
        let Job { kid, report } = self;
        let ev = end(kid)?;
        // Every writer has exited (the job, and anything it made that
        // inherited the pipe is the job's business to have reaped); read
        // what is ready without blocking on a lingering copy.
        let msg = read_ready(&report);
        match ev {
            Event::Exited(0) => Ok(()),
            Event::Exited(1) if !msg.is_empty() => fail(msg),
            other => broken(format!("job ended with {other:?} {msg}")),
        }
    }
}

/// What a pipe holds now, without waiting for writers that may linger.
pub fn read_ready(fd: &OwnedFd) -> String {
    let mut msg = Vec::new();
    let mut buf = [0u8; 4096];
    while crate::sys::io::readable_within(fd, 0) {
        match rustix::io::read(fd, &mut buf) {
            Ok(n) if n > 0 => msg.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&msg).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provenance_classes_and_names() {
        assert_eq!(Source::Seed("s").provenance(), Provenance::Seed);
        assert_eq!(Source::Man("m").provenance(), Provenance::Documented);
        assert_eq!(Source::Model("m").provenance(), Provenance::Documented);
        assert_eq!(Source::Design("d").provenance(), Provenance::Design);
        assert_eq!(
            Source::Regression("r".into()).provenance(),
            Provenance::Regression
        );
        assert_eq!(Source::SelfTest("t").provenance(), Provenance::SelfTest);
        for p in Provenance::ALL {
            // The serialised name is the stable name, and it reads back.
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.name()));
            assert_eq!(serde_json::from_str::<Provenance>(&json).unwrap(), p);
        }
    }
}
