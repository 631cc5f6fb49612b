//! `wait_sequence`: a short program of process-tree operations run by a
//! fresh driver process D, checked step by step against the model's process
//! tree (`model::tree::Tree`: who is whose child, reparenting to a subreaper,
//! stop/continue/kill, setpgid after exec, which children D's generic waits
//! skip under the configured [`Semantics`], and every wait's prediction).
//! This module keeps what is not semantics: the input ([`Op`], also the
//! regression file format), the printed program, the driver and its agents,
//! and the replay listing.
//!
//! Nodes are processes spawned by D or by other nodes ("agents": they loop
//! on a command pipe). `WAIT_FUZZ_SEMANTICS=seed|design` selects the
//! semantics ([`TreeConfig::detect`]); a saved regression replays under the
//! semantics it records.
//!
//! Ops whose preconditions the model does not cover (stopping a node that
//! is not D's child, commanding a stopped agent, ...) are skipped, and the
//! skip is part of the printed program. Everything is synchronised on the
//! kernel's own notifications (pidfd readability, WNOWAIT waits, pipe
//! replies): nothing sleeps.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use serde::{Deserialize, Serialize};

use super::common::{call_id, describe_prediction, effective_opts, Out};
use super::isolate;
use crate::harness::executor::{self, Proc};
use crate::model::tree::{Creator, Mismatch, Observed, Tree};
pub use crate::model::tree::{Expect, TreeConfig, MAX_NODES};
use crate::model::{KernelFeatures, Prediction, Semantics};
use crate::sys::clone::{clone3, flags::CLONE_PIDFD, Clone3Request, Program};
use crate::sys::wait::{wait, WaitCall, WaitOpts, WaitOutcome, WaitTarget};
use crate::sys::{pidfd, Errno};

pub const MAX_OPS: usize = 24;

/// Who spawns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Who {
    Driver,
    Node(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// clone3(CLONE_PIDFD [| CLONE_WAIT_PID]) by D or by a node
    Spawn {
        parent: Who,
        hidden: bool,
    },
    /// the node calls _exit(code) (an exec'd node: its shell exits)
    Exit {
        node: u8,
        code: u8,
    },
    Kill {
        node: u8,
    },
    Stop {
        node: u8,
    },
    Cont {
        node: u8,
    },
    /// D: setpgid(node, node) (own) or setpgid(node, D's group)
    Setpgid {
        node: u8,
        own: bool,
    },
    /// the node execs /bin/sh (which waits for its exit code on stdin)
    Exec {
        node: u8,
    },
    /// D: prctl(PR_SET_CHILD_SUBREAPER, 1)
    Subreaper,
    /// D makes this wait call; `node` names the pid/pidfd/pgid it is about
    Wait {
        #[serde(with = "call_id")]
        call: WaitCall,
        opts: u32,
        node: u8,
    },
}

/// A whole input.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitProgram {
    pub ops: Vec<Op>,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Op::Spawn { parent, hidden } => {
                let by = match parent {
                    Who::Driver => "D".to_string(),
                    Who::Node(n) => format!("n{n}"),
                };
                write!(
                    f,
                    "{by} spawns a {} child",
                    if hidden {
                        "hidden (CLONE_WAIT_PID)"
                    } else {
                        "plain"
                    }
                )
            }
            Op::Exit { node, code } => write!(f, "n{node} exits with {code}"),
            Op::Kill { node } => write!(f, "SIGKILL n{node}"),
            Op::Stop { node } => write!(f, "SIGSTOP n{node}"),
            Op::Cont { node } => write!(f, "SIGCONT n{node}"),
            Op::Setpgid { node, own } => write!(
                f,
                "D: setpgid(n{node}, {})",
                if own { "n's own pid" } else { "D's group" }
            ),
            Op::Exec { node } => write!(f, "n{node} execs /bin/sh"),
            Op::Subreaper => write!(f, "D becomes a child subreaper"),
            Op::Wait { call, opts, node } => {
                write!(f, "D: {}", call.spell(effective_opts(call, WaitOpts(opts))))?;
                let about = call.is_focused()
                    || matches!(
                        call,
                        WaitCall::WaitidPgid | WaitCall::WaitpidNegPgid | WaitCall::Wait4NegPgid
                    );
                if about {
                    write!(f, "  [n{node}]")
                } else {
                    Ok(())
                }
            }
        }
    }
}

impl std::fmt::Display for WaitProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "D: setpgid(0, 0)  (nodes n0, n1, ... are numbered in spawn order)"
        )?;
        for (i, op) in self.ops.iter().enumerate() {
            writeln!(f, "{:2}. {op}", i + 1)?;
        }
        Ok(())
    }
}

impl TreeConfig {
    /// The machine's facts, with the semantics from `WAIT_FUZZ_SEMANTICS`
    /// (unset: design; a value that is neither `seed` nor `design` panics,
    /// so that a typo does not run a campaign under the wrong rules).
    pub fn detect(features: KernelFeatures, configured_bit: u64) -> TreeConfig {
        let semantics = Semantics::from_env().unwrap_or_else(|e| panic!("{e}"));
        TreeConfig::detect_with(features, configured_bit, semantics)
    }

    /// The same with the semantics given (a regression replays under the
    /// semantics saved with it).
    pub fn detect_with(
        features: KernelFeatures,
        configured_bit: u64,
        semantics: Semantics,
    ) -> TreeConfig {
        let caller = super::clone3::detect_caller();
        TreeConfig {
            spawn_bit: features.wait_pid_bit.unwrap_or(configured_bit),
            features,
            caller,
            sh: std::path::Path::new("/bin/sh").exists(),
            semantics,
        }
    }
}

impl From<Who> for Creator {
    fn from(w: Who) -> Creator {
        match w {
            Who::Driver => Creator::Waiter,
            Who::Node(n) => Creator::Node(n as usize),
        }
    }
}

/// What the driver observed for one op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepOut {
    Skipped,
    /// pid, or errno
    Spawned(Result<i32, i32>),
    Done,
    Setpgid(Result<(), i32>),
    /// None: not executed, the model says it blocks
    Waited(Option<Out>),
    /// the driver could not do what the op asks
    Harness(String),
}

impl StepOut {
    /// The model's form; None for a harness failure.
    fn observed(&self) -> Option<Observed> {
        Some(match self {
            StepOut::Skipped => Observed::Skipped,
            StepOut::Spawned(r) => Observed::Spawned(r.map_err(Errno)),
            StepOut::Done => Observed::Done,
            StepOut::Setpgid(r) => Observed::Setpgid(r.map_err(Errno)),
            StepOut::Waited(o) => Observed::Waited(o.map(WaitOutcome::from)),
            StepOut::Harness(_) => return None,
        })
    }
}

/// The oracle: the model's process tree ([`Tree`], in `model::tree`) driven
/// by the fuzz input's ops; it only maps ops onto the model's operations and
/// words the model's mismatches.
#[derive(Clone)]
pub struct TreeModel {
    tree: Tree,
}

impl TreeModel {
    pub fn new(cfg: TreeConfig, dpid: i32) -> TreeModel {
        TreeModel {
            tree: Tree::new(cfg, dpid),
        }
    }

    /// D's children as predict_wait wants them.
    pub fn views(&self) -> Vec<crate::model::ChildView> {
        self.tree.views()
    }

    pub fn expect(&self, op: &Op) -> Expect {
        let t = &self.tree;
        match *op {
            Op::Spawn { parent, hidden } => t.spawn(parent.into(), hidden),
            Op::Exit { node, code } => t.exit(node as usize, code),
            Op::Kill { node } => t.kill(node as usize),
            Op::Stop { node } => t.stop(node as usize),
            Op::Cont { node } => t.cont(node as usize),
            Op::Setpgid { node, own } => t.setpgid(node as usize, own),
            Op::Exec { node } => t.exec(node as usize),
            Op::Subreaper => t.subreaper(),
            Op::Wait { call, opts, node } => t.wait(call, WaitOpts(opts), node as usize),
        }
    }

    /// Check one observation against the expectation and advance.
    pub fn apply(&mut self, e: &Expect, out: &StepOut) -> Result<(), String> {
        let Some(o) = out.observed() else {
            let StepOut::Harness(s) = out else {
                unreachable!()
            };
            return Err(format!("harness: {s}"));
        };
        self.tree.apply(e, &o).map_err(|m| match m {
            Mismatch::Spawn {
                flags,
                verdict,
                got,
            } => format!(
                "clone3({}): model says {verdict:?}, kernel {}",
                super::clone3::flag_names(flags),
                match got {
                    Ok(p) => format!("created pid {p}"),
                    Err(e) => format!("failed with {e}"),
                }
            ),
            Mismatch::Setpgid { want, got } => {
                format!("setpgid: model says {want:?}, kernel {got:?}")
            }
            Mismatch::Wait {
                call,
                opts,
                got,
                prediction,
            } => {
                format!(
                    "{} returned {got}, model predicts {}",
                    call.spell(opts),
                    describe_prediction(&prediction)
                )
            }
            Mismatch::NotThisStep => format!("harness: expected to {e:?}, observed {out:?}"),
        })
    }
}

/// The driver's record of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunLog {
    pub dpid: i32,
    pub steps: Vec<StepOut>,
    /// set by the supervisor when D did not finish in time
    pub hang: Option<String>,
}

/// Replay the model over a run: the annotated listing (what each step
/// returned, what was skipped and why), and the first mismatch if any.
pub fn replay(program: &WaitProgram, cfg: &TreeConfig, log: &RunLog) -> (String, Option<String>) {
    let mut m = TreeModel::new(cfg.clone(), log.dpid);
    let mut lines = vec![format!(
        "D (pid {}): setpgid(0, 0)  [model: {} semantics]",
        log.dpid, cfg.semantics
    )];
    let fail = |lines: Vec<String>, why: String| (lines.join("\n"), Some(why));
    for (i, op) in program.ops.iter().enumerate() {
        let e = m.expect(op);
        let Some(out) = log.steps.get(i) else {
            if let Some(h) = &log.hang {
                lines.push(format!("{:2}. {op}  <-- HANG", i + 1));
                return fail(lines, format!("step {} hangs:\n{h}", i + 1));
            }
            lines.push(format!("{:2}. {op}  <-- driver stopped early", i + 1));
            return fail(lines, format!("step {}: driver stopped early", i + 1));
        };
        let note = match (&e, out) {
            (Expect::Skip(why), _) => format!("  (skipped: {why})"),
            (_, StepOut::Spawned(Ok(p))) => format!("  -> n{} = pid {p}", m.tree.node_count()),
            (_, StepOut::Spawned(Err(er))) => format!("  -> {}", Errno(*er)),
            (_, StepOut::Waited(Some(o))) => format!("  -> {o}"),
            (_, StepOut::Waited(None)) => "  (not made: would block)".into(),
            (_, StepOut::Setpgid(r)) => format!("  -> {:?}", r.map_err(Errno)),
            _ => String::new(),
        };
        if let Err(why) = m.apply(&e, out) {
            lines.push(format!("{:2}. {op}{note}\n    MISMATCH: {why}", i + 1));
            return fail(lines, format!("step {}: {why}", i + 1));
        }
        lines.push(format!("{:2}. {op}{note}", i + 1));
    }
    if let Some(h) = &log.hang {
        return fail(lines, format!("hang after the last step:\n{h}"));
    }
    (lines.join("\n"), None)
}

/// Ok, or the annotated listing with the first mismatch marked.
pub fn check(program: &WaitProgram, cfg: &TreeConfig, log: &RunLog) -> Result<(), String> {
    match replay(program, cfg, log) {
        (_, None) => Ok(()),
        (listing, Some(why)) => Err(format!("{listing}\n{why}")),
    }
}

// ---------------------------------------------------------------------------
// The driver and its agents.

/// Pipes for every possible node, made before any node exists: node i reads
/// commands from cmd[i] and answers on rep[i]. A node keeps the ends of
/// nodes that may become its descendants (index > i); D keeps the command
/// write ends only it has, so D's death is EOF for every agent.
struct Pool {
    cmd_r: Vec<OwnedFd>,
    cmd_w: Vec<OwnedFd>,
    rep_r: Vec<OwnedFd>,
    rep_w: Vec<OwnedFd>,
}

#[derive(Clone)]
struct RawPool {
    cmd_r: Vec<RawFd>,
    rep_w: Vec<RawFd>,
}

impl Pool {
    fn new() -> Pool {
        let mut p = Pool {
            cmd_r: vec![],
            cmd_w: vec![],
            rep_r: vec![],
            rep_w: vec![],
        };
        for _ in 0..MAX_NODES {
            let (r, w) = crate::sys::clone::pipe();
            p.cmd_r.push(r);
            p.cmd_w.push(w);
            let (r, w) = crate::sys::clone::pipe();
            p.rep_r.push(r);
            p.rep_w.push(w);
        }
        p
    }
    fn raw(&self) -> RawPool {
        RawPool {
            cmd_r: self.cmd_r.iter().map(|f| f.as_raw_fd()).collect(),
            rep_w: self.rep_w.iter().map(|f| f.as_raw_fd()).collect(),
        }
    }
}

/// The program of node `idx`: close what is not ours, then obey commands.
fn agent(idx: usize, pool: RawPool) -> i32 {
    let keep: Vec<RawFd> = (idx..MAX_NODES)
        .flat_map(|j| [pool.cmd_r[j], pool.rep_w[j]])
        .collect();
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let fds: Vec<RawFd> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect();
        for fd in fds {
            if fd > 2 && !keep.contains(&fd) {
                // SAFETY: closing inherited fds this agent has no owner for;
                // nothing in this fresh process uses them.
                unsafe {
                    libc::close(fd);
                }
            }
        }
    }
    // SAFETY: these numbers are open in this process (kept above) and owned
    // by nobody else here.
    let (cmd, rep) = unsafe {
        (
            OwnedFd::from_raw_fd(pool.cmd_r[idx]),
            OwnedFd::from_raw_fd(pool.rep_w[idx]),
        )
    };
    loop {
        let mut c = [0u8; 1];
        if !isolate::read_exact(&cmd, &mut c) {
            return 0;
        }
        match c[0] {
            b'x' => {
                let mut code = [0u8; 1];
                isolate::read_exact(&cmd, &mut code);
                crate::sys::clone::exit_now(code[0] as i32, false);
            }
            b's' => {
                let mut a = [0u8; 9];
                if !isolate::read_exact(&cmd, &mut a) {
                    return 0;
                }
                let child = a[0] as usize;
                let flags = u64::from_le_bytes(a[1..9].try_into().unwrap());
                let pool2 = pool.clone();
                let r = clone3(
                    &Clone3Request::new(flags, libc::SIGCHLD as u64),
                    Program::Run(Box::new(move || agent(child, pool2))),
                );
                let v: i32 = match r {
                    Ok(sp) => {
                        let pid = sp.pid;
                        // The agent never waits; dropping the handle only
                        // closes the pidfd (the child runs in its own copy).
                        drop(sp);
                        pid
                    }
                    Err(e) => -e.0,
                };
                isolate::write_all(&rep, &v.to_le_bytes());
            }
            b'e' => {
                // SAFETY: dup2 onto stdin/stdout (clearing CLOEXEC on the
                // copies); execv gets NUL-terminated strings that outlive the
                // call; on success nothing here runs any more.
                unsafe {
                    libc::dup2(cmd.as_raw_fd(), 0);
                    libc::dup2(rep.as_raw_fd(), 1);
                    let sh = c"/bin/sh";
                    let argv = [
                        c"sh".as_ptr(),
                        c"-c".as_ptr(),
                        c"printf e; read c; exit \"$c\"".as_ptr(),
                        std::ptr::null(),
                    ];
                    libc::execv(sh.as_ptr(), argv.as_ptr());
                }
                isolate::write_all(&rep, b"E");
            }
            _ => return 0,
        }
    }
}

struct Driver {
    pool: Pool,
    pidfds: Vec<Option<OwnedFd>>,
    dpid: i32,
}

impl Driver {
    fn pid_of(&self, m: &TreeModel, i: usize) -> i32 {
        m.tree.pid(i).unwrap_or(-1)
    }

    fn await_exit(&self, i: usize) -> Result<(), String> {
        match &self.pidfds[i] {
            Some(fd) => pidfd::poll_exit(fd.as_fd(), None)
                .map(|_| ())
                .map_err(|e| format!("poll pidfd: {e}")),
            None => Err("no pidfd".into()),
        }
    }

    /// `Expect::Spawn`: a child of D made here, or of node `p` made by its
    /// agent on request.
    fn spawn(&mut self, m: &TreeModel, parent: Creator, flags: u64) -> StepOut {
        let idx = m.tree.node_count();
        let r = match parent {
            Creator::Waiter => {
                let raw = self.pool.raw();
                clone3(
                    &Clone3Request::new(flags, libc::SIGCHLD as u64),
                    Program::Run(Box::new(move || agent(idx, raw))),
                )
                .map(|mut sp| (sp.pid, sp.pidfd.take()))
                .map_err(|e| e.0)
            }
            Creator::Node(p) => {
                let mut msg = vec![b's', idx as u8];
                msg.extend_from_slice(&flags.to_le_bytes());
                if !isolate::write_all(&self.pool.cmd_w[p], &msg) {
                    return StepOut::Harness(format!("n{p}: command pipe closed"));
                }
                let mut v = [0u8; 4];
                if !isolate::read_exact(&self.pool.rep_r[p], &mut v) {
                    return StepOut::Harness(format!("n{p}: no answer to spawn"));
                }
                let v = i32::from_le_bytes(v);
                if v > 0 {
                    match pidfd::open(v, false) {
                        Ok(fd) => Ok((v, Some(fd))),
                        Err(e) => return StepOut::Harness(format!("pidfd_open({v}): {e}")),
                    }
                } else {
                    Err(-v)
                }
            }
        };
        match r {
            Ok((pid, fd)) => {
                self.pidfds.push(fd);
                StepOut::Spawned(Ok(pid))
            }
            Err(e) => StepOut::Spawned(Err(e)),
        }
    }

    /// `Expect::Stop`/`Expect::Cont` (`stop`): the signal by pidfd, then a
    /// WNOWAIT wait until the new state is reportable.
    fn signal_and_sync(&mut self, m: &TreeModel, node: usize, stop: bool) -> StepOut {
        let (sig, bit) = if stop {
            (libc::SIGSTOP, WaitOpts::WSTOPPED)
        } else {
            (libc::SIGCONT, WaitOpts::WCONTINUED)
        };
        let Some(fd) = &self.pidfds[node] else {
            return StepOut::Harness("no pidfd".into());
        };
        if let Err(e) = pidfd::send_signal(fd, sig) {
            return StepOut::Harness(format!("pidfd_send_signal: {e}"));
        }
        // Block (without consuming it) until the state change is
        // reportable: the kernel's own notification, no sleeping.
        let t = WaitTarget::pid(self.pid_of(m, node));
        match wait(WaitCall::WaitidPid, t, WaitOpts(bit | WaitOpts::WNOWAIT)) {
            crate::sys::wait::WaitOutcome::Reported { .. } => StepOut::Done,
            other => StepOut::Harness(format!(
                "sync wait for the {} state: {other}",
                if sig == libc::SIGSTOP {
                    "stopped"
                } else {
                    "continued"
                }
            )),
        }
    }

    fn perform(&mut self, m: &TreeModel, e: &Expect) -> StepOut {
        match e {
            Expect::Skip(_) => StepOut::Skipped,
            Expect::Spawn { parent, flags, .. } => self.spawn(m, *parent, *flags),
            Expect::Exit { node, code } => {
                let msg: Vec<u8> = if m.tree.execd(*node) {
                    format!("{code}\n").into_bytes()
                } else {
                    vec![b'x', *code]
                };
                if !isolate::write_all(&self.pool.cmd_w[*node], &msg) {
                    return StepOut::Harness(format!("n{node}: command pipe closed"));
                }
                self.await_exit(*node)
                    .map(|_| StepOut::Done)
                    .unwrap_or_else(StepOut::Harness)
            }
            Expect::Kill { node } => {
                let Some(fd) = &self.pidfds[*node] else {
                    return StepOut::Harness("no pidfd".into());
                };
                if let Err(e) = pidfd::send_signal(fd, libc::SIGKILL) {
                    return StepOut::Harness(format!("pidfd_send_signal: {e}"));
                }
                self.await_exit(*node)
                    .map(|_| StepOut::Done)
                    .unwrap_or_else(StepOut::Harness)
            }
            Expect::Stop { node } => self.signal_and_sync(m, *node, true),
            Expect::Cont { node } => self.signal_and_sync(m, *node, false),
            Expect::Setpgid { node, pgid, .. } => {
                let pid = self.pid_of(m, *node);
                // SAFETY: setpgid takes two integers.
                let r = unsafe { libc::setpgid(pid, *pgid) };
                StepOut::Setpgid(if r == 0 { Ok(()) } else { Err(Errno::last().0) })
            }
            Expect::Exec { node } => {
                if !isolate::write_all(&self.pool.cmd_w[*node], b"e") {
                    return StepOut::Harness(format!("n{node}: command pipe closed"));
                }
                let mut b = [0u8; 1];
                if !isolate::read_exact(&self.pool.rep_r[*node], &mut b) || b[0] != b'e' {
                    return StepOut::Harness(format!("n{node}: exec of /bin/sh failed"));
                }
                StepOut::Done
            }
            Expect::Subreaper => match isolate::become_subreaper() {
                Ok(()) => StepOut::Done,
                Err(e) => StepOut::Harness(format!("PR_SET_CHILD_SUBREAPER: {e}")),
            },
            Expect::Wait {
                call,
                opts,
                node,
                sel,
                prediction,
            } => {
                if *prediction == Prediction::Blocks {
                    return StepOut::Waited(None);
                }
                let pidfd = node.and_then(|i| self.pidfds[i].as_ref().map(|f| f.as_fd()));
                let t = WaitTarget {
                    pid: sel.pid,
                    pidfd,
                    pgid: sel.pgid,
                };
                StepOut::Waited(Some(wait(*call, t, *opts).into()))
            }
        }
    }

    /// Kill every node that may still run and wait until each has exited.
    fn finish(&mut self) {
        crate::harness::executor::kill_and_await(self.pidfds.iter().flatten().map(|f| f.as_fd()));
    }
}

/// Run the program as D (the calling process, fresh, with no children).
/// Stops at the first step the model disagrees with.
pub fn drive(program: &WaitProgram, cfg: &TreeConfig) -> RunLog {
    // SAFETY: setpgid(0, 0) makes this process a group leader; getpid has
    // no arguments.
    let dpid = unsafe {
        libc::setpgid(0, 0);
        libc::getpid()
    };
    let mut d = Driver {
        pool: Pool::new(),
        pidfds: Vec::new(),
        dpid,
    };
    let mut m = TreeModel::new(cfg.clone(), d.dpid);
    let mut log = RunLog {
        dpid,
        steps: Vec::new(),
        hang: None,
    };
    for op in program.ops.iter().take(MAX_OPS) {
        let e = m.expect(op);
        let out = d.perform(&m, &e);
        let ok = m.apply(&e, &out).is_ok();
        log.steps.push(out);
        if !ok {
            break;
        }
    }
    d.finish();
    log
}

/// Run the program in a fresh driver process, from a process that has no
/// other children (the fuzz worker or a regression row). Reaps everything
/// before returning; `timeout_ms` bounds the whole run.
pub fn run_isolated(program: &WaitProgram, cfg: &TreeConfig, timeout_ms: i32) -> RunLog {
    let (r, w) = crate::sys::clone::pipe();
    let wraw = w.as_raw_fd();
    let (p, c) = (program.clone(), cfg.clone());
    let mask = isolate::block_all_signals();
    let spawned = clone3(
        &Clone3Request::new(CLONE_PIDFD, libc::SIGCHLD as u64),
        Program::Run(Box::new(move || {
            isolate::die_with_parent();
            let log = drive(&p, &c);
            // SAFETY: our copy of the log pipe's write end.
            let w = unsafe { OwnedFd::from_raw_fd(wraw) };
            isolate::write_all(&w, &serde_json::to_vec(&log).unwrap_or_default());
            0
        })),
    );
    drop(w);
    let mut log = RunLog::default();
    match spawned {
        Err(e) => log.hang = Some(format!("could not start the driver: {e}")),
        Ok(mut sp) => {
            let mut buf = Vec::new();
            let deadline = std::time::Instant::now()
                + std::time::Duration::from_millis(timeout_ms.max(0) as u64);
            loop {
                let left = deadline
                    .saturating_duration_since(std::time::Instant::now())
                    .as_millis() as i32;
                if !isolate::readable_within(&r, left) {
                    let mut rep = vec![crate::sys::proc::stuck_report(sp.pid)];
                    rep.extend(
                        crate::sys::proc::descendants(sp.pid)
                            .into_iter()
                            .map(crate::sys::proc::stuck_report),
                    );
                    log.hang = Some(rep.join("\n"));
                    break;
                }
                let mut chunk = [0u8; 4096];
                match rustix::io::read(&r, &mut chunk) {
                    Ok(0) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => break,
                }
            }
            if log.hang.is_none() {
                match serde_json::from_slice::<RunLog>(&buf) {
                    Ok(l) => log = l,
                    Err(e) => log.hang = Some(format!("driver died without a log ({e})")),
                }
            }
            // D by its pidfd (CLONE_PIDFD); after a hang, everything below
            // it too (SIGKILL through pidfds; what reparents to us is reaped
            // below).
            // (Without one, reap_all_children below takes D.)
            let d = match sp.pidfd.take() {
                Some(fd) => Ok(Proc::from_pidfd(sp.pid, fd)),
                None => Proc::open(sp.pid),
            };
            if let Ok(d) = d {
                if log.hang.is_some() {
                    drop(executor::kill_descendants(d.pid()));
                }
                let _ = d.kill();
                let _ = d.reap();
            }
        }
    }
    isolate::reap_all_children();
    isolate::drain_pending_signals();
    isolate::restore_mask(mask);
    log
}

#[cfg(test)]
mod tests {
    //! The model alone, over recorded runs (the host has no CLONE_WAIT_PID,
    //! so these logs are what wait-pid-6.12 answered, not executions).
    use super::*;
    use crate::fuzzing::common::Out;
    use crate::sys::wait::Event;

    fn cfg(semantics: Semantics) -> TreeConfig {
        TreeConfig::wait_pid_612(semantics, false)
    }

    fn wait(call: WaitCall, opts: u32, node: u8) -> Op {
        Op::Wait { call, opts, node }
    }
    fn spawn(parent: Who, hidden: bool) -> Op {
        Op::Spawn { parent, hidden }
    }

    /// The start both regressions share: D becomes a subreaper, makes a
    /// plain n0, which makes a hidden n1 and exits with 1; with what the
    /// kernel answered for these steps when D was `dpid` (n0, n1 the next
    /// pids).
    fn orphaned_hidden_child(dpid: i32) -> (Vec<Op>, Vec<StepOut>) {
        let ops = vec![
            Op::Subreaper,
            spawn(Who::Driver, false),
            spawn(Who::Node(0), true),
            Op::Exit { node: 0, code: 1 },
        ];
        let steps = vec![
            StepOut::Done,
            StepOut::Spawned(Ok(dpid + 1)),
            StepOut::Spawned(Ok(dpid + 2)),
            StepOut::Done,
        ];
        (ops, steps)
    }
    const NOHANG_EXITED: u32 = WaitOpts::WNOHANG | WaitOpts::WEXITED;

    /// cases/regressions/wait_sequence-hidden-grandchild-inherits-after-reparent.case
    /// and the log wait-pid-6.12 gave for it.
    fn grandchild_run() -> (WaitProgram, RunLog) {
        let (mut ops, mut steps) = orphaned_hidden_child(133);
        ops.extend([
            spawn(Who::Node(1), false),
            Op::Kill { node: 1 },
            wait(WaitCall::WaitpidAny, 0, 0),
            wait(WaitCall::WaitidAll, NOHANG_EXITED, 1),
        ]);
        let p = WaitProgram { ops };
        steps.extend([
            StepOut::Spawned(Ok(136)),
            StepOut::Done,
            StepOut::Waited(Some(Out::Reported {
                pid: 134,
                event: Event::Exited(1),
            })),
            StepOut::Waited(Some(Out::Failed(libc::ECHILD))),
        ]);
        let log = RunLog {
            dpid: 133,
            steps,
            hang: None,
        };
        (p, log)
    }

    #[test]
    fn grandchild_regression_under_each_semantics() {
        let (p, log) = grandchild_run();
        // Seed: n1 keeps PF_WAIT_PID when reparented to D, n2 inherited it:
        // ECHILD is the patch's answer.
        assert_eq!(check(&p, &cfg(Semantics::Seed), &log), Ok(()));
        // Design: n1 (reparented, killed) is D's to reap with waitid(P_ALL).
        let e = check(&p, &cfg(Semantics::Design), &log).unwrap_err();
        assert!(
            e.contains("step 8:") && e.contains("returned -1 ECHILD") && e.contains("135"),
            "{e}"
        );
        assert!(e.contains("[model: design semantics]"), "{e}");
    }

    /// Only reparenting: the hidden child of a plain node that exits.
    #[test]
    fn reparented_hidden_child() {
        let (mut ops, start) = orphaned_hidden_child(10);
        ops.extend([
            Op::Exit { node: 1, code: 2 },
            wait(WaitCall::WaitidAll, NOHANG_EXITED, 0),
            wait(WaitCall::WaitidAll, NOHANG_EXITED, 0),
        ]);
        let p = WaitProgram { ops };
        let steps = |second: Out| {
            let mut steps = start.clone();
            steps.extend([
                StepOut::Done,
                StepOut::Waited(Some(Out::Reported {
                    pid: 11,
                    event: Event::Exited(1),
                })),
                StepOut::Waited(Some(second)),
            ]);
            RunLog {
                dpid: 10,
                steps,
                hang: None,
            }
        };
        let seed_kernel = steps(Out::Failed(libc::ECHILD));
        let design_kernel = steps(Out::Reported {
            pid: 12,
            event: Event::Exited(2),
        });
        assert_eq!(check(&p, &cfg(Semantics::Seed), &seed_kernel), Ok(()));
        assert!(check(&p, &cfg(Semantics::Seed), &design_kernel).is_err());
        assert_eq!(check(&p, &cfg(Semantics::Design), &design_kernel), Ok(()));
        let e = check(&p, &cfg(Semantics::Design), &seed_kernel).unwrap_err();
        assert!(e.contains("step 7:"), "{e}");
        // Either way a focused wait reaps it.
        let mut focused = p.clone();
        focused.ops[6] = wait(WaitCall::WaitidPid, NOHANG_EXITED, 1);
        for s in [Semantics::Seed, Semantics::Design] {
            assert_eq!(check(&focused, &cfg(s), &design_kernel), Ok(()), "{s}");
        }
    }

    /// Only inheritance, through two generations: what D sees of n1's and
    /// n2's plain children once they are reparented to D. (Reparenting alone
    /// makes no plain child hidden, so the two rules are told apart.)
    #[test]
    fn inherited_mark_follows_creators() {
        let mut m = TreeModel::new(cfg(Semantics::Seed), 10);
        let mut d = TreeModel::new(cfg(Semantics::Design), 10);
        let ops = [
            (Op::Subreaper, StepOut::Done),
            (spawn(Who::Driver, true), StepOut::Spawned(Ok(11))),
            (spawn(Who::Node(0), false), StepOut::Spawned(Ok(12))),
            (spawn(Who::Node(1), false), StepOut::Spawned(Ok(13))),
            (spawn(Who::Driver, false), StepOut::Spawned(Ok(14))),
            (spawn(Who::Node(3), false), StepOut::Spawned(Ok(15))),
            (Op::Exit { node: 1, code: 0 }, StepOut::Done),
            (Op::Exit { node: 3, code: 0 }, StepOut::Done),
        ];
        for (op, out) in &ops {
            for t in [&mut m, &mut d] {
                let e = t.expect(op);
                t.apply(&e, out).unwrap();
            }
        }
        let hidden = |t: &TreeModel| {
            t.views()
                .into_iter()
                .filter(|v| v.hidden)
                .map(|v| v.pid)
                .collect::<Vec<_>>()
        };
        // n0 is D's own hidden child under both; n2 (made by n1, made by n0)
        // is hidden only under Seed; n4 (made by plain n3) under neither.
        assert_eq!(hidden(&m), vec![11, 13]);
        assert_eq!(hidden(&d), vec![11]);
        let all = |t: &TreeModel| t.views().into_iter().map(|v| v.pid).collect::<Vec<_>>();
        // n1 stays n0's; n3 is D's zombie.
        assert_eq!(all(&m), vec![11, 13, 14, 15]);
        assert_eq!(all(&d), all(&m));
    }
}
