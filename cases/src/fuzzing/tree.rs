//! `wait_sequence`: a short program of process-tree operations run by a
//! fresh driver process D, checked step by step against [`TreeModel`], a
//! stateful model of D's descendants built on `model::clone3_verdict` (for
//! spawns) and `model::predict_wait` (for every wait).
//!
//! Nodes are processes spawned by D or by other nodes ("agents": they loop
//! on a command pipe). What the model adds to predict_wait, with the kernel
//! source it follows:
//! - an exiting or killed node's children are reparented to D when D is a
//!   child subreaper, else out of D's view (kernel/exit.c,
//!   find_new_reaper/reparent_leader);
//! - whether D's generic waits skip a node is `model::hidden_from_waiter`
//!   for the node's [`Lineage`] (its own CLONE_WAIT_PID, its creator's
//!   mark, whether it was reparented) under the configured [`Semantics`]:
//!   `design` (default; the case table's answers: a reparented node is
//!   visible to D, a hidden node's children are plain) or `seed` (the
//!   patch's PF_WAIT_PID: inherited by the node's children, kept across
//!   reparenting and exec). `WAIT_FUZZ_SEMANTICS=seed|design` selects it
//!   ([`TreeConfig::detect`]); a saved regression replays under the
//!   semantics it records;
//! - SIGSTOP stops, SIGCONT makes a stopped node "continued", SIGKILL makes
//!   a zombie killed by 9 (kernel/signal.c);
//! - setpgid(child) is EACCES after the child exec'd (kernel/sys.c), and
//!   children inherit their parent's process group.
//!
//! Ops whose preconditions the model does not cover (stopping a node that
//! is not D's child, commanding a stopped agent, ...) are skipped, and the
//! skip is part of the printed program. Everything is synchronised on the
//! kernel's own notifications (pidfd readability, WNOWAIT waits, pipe
//! replies): nothing sleeps.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use serde::{Deserialize, Serialize};

use super::common::{apply_outcome, call_id, describe_prediction, effective_opts, matches, predict, Out};
use super::isolate;
use crate::model::{
    clone3_verdict, hidden_from_waiter, Caller, ChildState, ChildView, Clone3Desc, KernelFeatures, Lineage, Prediction, Selector, Semantics,
    Verdict,
};
use crate::sys::clone::{clone3, flags::CLONE_PIDFD, Clone3Request, Program};
use crate::sys::wait::{wait, Event, WaitCall, WaitOpts, WaitTarget};
use crate::sys::{pidfd, Errno};

pub const MAX_NODES: usize = 6;
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
    Spawn { parent: Who, hidden: bool },
    /// the node calls _exit(code) (an exec'd node: its shell exits)
    Exit { node: u8, code: u8 },
    Kill { node: u8 },
    Stop { node: u8 },
    Cont { node: u8 },
    /// D: setpgid(node, node) (own) or setpgid(node, D's group)
    Setpgid { node: u8, own: bool },
    /// the node execs /bin/sh (which waits for its exit code on stdin)
    Exec { node: u8 },
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
                write!(f, "{by} spawns a {} child", if hidden { "hidden (CLONE_WAIT_PID)" } else { "plain" })
            }
            Op::Exit { node, code } => write!(f, "n{node} exits with {code}"),
            Op::Kill { node } => write!(f, "SIGKILL n{node}"),
            Op::Stop { node } => write!(f, "SIGSTOP n{node}"),
            Op::Cont { node } => write!(f, "SIGCONT n{node}"),
            Op::Setpgid { node, own } => write!(f, "D: setpgid(n{node}, {})", if own { "n's own pid" } else { "D's group" }),
            Op::Exec { node } => write!(f, "n{node} execs /bin/sh"),
            Op::Subreaper => write!(f, "D becomes a child subreaper"),
            Op::Wait { call, opts, node } => {
                write!(f, "D: {}", call.spell(effective_opts(call, WaitOpts(opts))))?;
                let about = call.is_focused() || matches!(call, WaitCall::WaitidPgid | WaitCall::WaitpidNegPgid | WaitCall::Wait4NegPgid);
                if about { write!(f, "  [n{node}]") } else { Ok(()) }
            }
        }
    }
}

impl std::fmt::Display for WaitProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "D: setpgid(0, 0)  (nodes n0, n1, ... are numbered in spawn order)")?;
        for (i, op) in self.ops.iter().enumerate() {
            writeln!(f, "{:2}. {op}", i + 1)?;
        }
        Ok(())
    }
}

/// Facts about the machine the model needs; fixed for a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeConfig {
    pub features: KernelFeatures,
    pub caller: Caller,
    /// the bit a hidden spawn sets: the feature's, else the configured one
    /// (then the model predicts the kernel's answer to an unknown bit)
    pub spawn_bit: u64,
    /// /bin/sh exists (Exec needs it)
    pub sh: bool,
    /// which answers the model gives where the seed is silent (reparented
    /// and inherited hiding); see [`Semantics`]
    pub semantics: Semantics,
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
    pub fn detect_with(features: KernelFeatures, configured_bit: u64, semantics: Semantics) -> TreeConfig {
        let env = super::clone3::Env::detect(features.clone());
        TreeConfig {
            spawn_bit: features.wait_pid_bit.unwrap_or(configured_bit),
            features,
            caller: env.caller,
            sh: std::path::Path::new("/bin/sh").exists(),
            semantics,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Parent {
    Driver,
    Node(usize),
    /// reparented above D: no longer D's business
    Elsewhere,
}

#[derive(Clone, Debug)]
struct Node {
    pid: i32,
    parent: Parent,
    /// how it was made and whether it was reparented: hidden from D's
    /// generic waits is `hidden_from_waiter(semantics, lineage)`
    lineage: Lineage,
    pgid: i32,
    state: ChildState,
    reaped: bool,
    execd: bool,
}

impl Node {
    fn live(&self) -> bool {
        !self.reaped && !matches!(self.state, ChildState::Zombie(_))
    }
    fn runs(&self) -> bool {
        self.live() && matches!(self.state, ChildState::Running | ChildState::Continued)
    }
    fn stopped(&self) -> bool {
        self.live() && matches!(self.state, ChildState::Stopped(_) | ChildState::StoppedReported)
    }
}

/// What the model expects one op to do (and what the driver must do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    Skip(&'static str),
    Spawn { parent: Who, flags: u64, verdict: Verdict },
    Exit { node: usize, code: u8 },
    Kill { node: usize },
    Stop { node: usize },
    Cont { node: usize },
    Setpgid { node: usize, pgid: i32, result: Result<(), Errno> },
    Exec { node: usize },
    Subreaper,
    Wait { call: WaitCall, opts: WaitOpts, node: Option<usize>, sel: Selector, prediction: Prediction },
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

/// The stateful model of D's process tree.
pub struct TreeModel {
    cfg: TreeConfig,
    dpid: i32,
    subreaper: bool,
    nodes: Vec<Node>,
}

impl TreeModel {
    pub fn new(cfg: TreeConfig, dpid: i32) -> TreeModel {
        TreeModel { cfg, dpid, subreaper: false, nodes: Vec::new() }
    }

    fn node(&self, n: u8) -> Option<(usize, &Node)> {
        self.nodes.get(n as usize).map(|x| (n as usize, x))
    }

    /// D's children as predict_wait wants them.
    fn views(&self) -> Vec<ChildView> {
        self.nodes
            .iter()
            .filter(|n| n.parent == Parent::Driver && !n.reaped)
            .map(|n| ChildView {
                pid: n.pid,
                pgid: n.pgid,
                hidden: hidden_from_waiter(self.cfg.semantics, n.lineage),
                sigchld: true,
                state: n.state,
            })
            .collect()
    }

    pub fn expect(&self, op: &Op) -> Expect {
        use Expect::*;
        match *op {
            Op::Spawn { parent, hidden } => {
                if self.nodes.len() >= MAX_NODES {
                    return Skip("node limit");
                }
                if let Who::Node(p) = parent {
                    match self.node(p) {
                        Some((_, n)) if n.runs() && !n.execd => {}
                        _ => return Skip("parent cannot take commands"),
                    }
                }
                let flags = CLONE_PIDFD | if hidden { self.cfg.spawn_bit } else { 0 };
                let verdict = clone3_verdict(&Clone3Desc::new(flags, libc::SIGCHLD as u64), &self.cfg.features, &self.cfg.caller);
                Spawn { parent, flags, verdict }
            }
            Op::Exit { node, code } => match self.node(node) {
                Some((i, n)) if n.runs() => Exit { node: i, code },
                _ => Skip("node not running"),
            },
            Op::Kill { node } => match self.node(node) {
                Some((i, n)) if n.live() => Kill { node: i },
                _ => Skip("node already dead"),
            },
            Op::Stop { node } => match self.node(node) {
                Some((i, n)) if n.runs() && n.parent == Parent::Driver => Stop { node: i },
                _ => Skip("only running children of D are stopped"),
            },
            Op::Cont { node } => match self.node(node) {
                Some((i, n)) if n.stopped() && n.parent == Parent::Driver => Cont { node: i },
                _ => Skip("only stopped children of D are continued"),
            },
            Op::Setpgid { node, own } => match self.node(node) {
                Some((i, n)) if n.live() && n.parent == Parent::Driver => {
                    let pgid = if own { n.pid } else { self.dpid };
                    let result = if n.execd { Err(Errno(libc::EACCES)) } else { Ok(()) };
                    Setpgid { node: i, pgid, result }
                }
                _ => Skip("setpgid only on live children of D"),
            },
            Op::Exec { node } => match self.node(node) {
                Some((i, n)) if n.runs() && !n.execd && self.cfg.sh => Exec { node: i },
                _ => Skip("node cannot exec"),
            },
            Op::Subreaper => Subreaper,
            Op::Wait { call, opts, node } => {
                let opts = effective_opts(call, WaitOpts(opts));
                let target = self.node(node).map(|(i, n)| (i, n.pid, n.pgid));
                if target.is_none() && call == WaitCall::WaitidPidfd {
                    return Skip("no node to take a pidfd of");
                }
                let (pid, pgid) = target.map(|(_, p, g)| (p, g)).unwrap_or((self.dpid, self.dpid));
                let sel = Selector { call, pid, pgid, own_pgid: self.dpid };
                let prediction = predict(sel, opts, &self.views());
                Wait { call, opts, node: target.map(|t| t.0), sel, prediction }
            }
        }
    }

    fn reparent_children_of(&mut self, dead: usize) {
        let mut up = self.nodes[dead].parent;
        // Where do the orphans go? D if D is a subreaper and the dead node
        // is below D, else above D (our worker, also a subreaper).
        loop {
            match up {
                Parent::Driver => break,
                Parent::Elsewhere => break,
                Parent::Node(j) => up = self.nodes[j].parent,
            }
        }
        let to = if up == Parent::Driver && self.subreaper { Parent::Driver } else { Parent::Elsewhere };
        for n in self.nodes.iter_mut() {
            if n.parent == Parent::Node(dead) && !n.reaped {
                n.parent = to;
                n.lineage.reparented = true;
            }
        }
    }

    /// Check one observation against the expectation and advance.
    pub fn apply(&mut self, e: &Expect, out: &StepOut) -> Result<(), String> {
        use Expect as E;
        if let StepOut::Harness(s) = out {
            return Err(format!("harness: {s}"));
        }
        match (e, out) {
            (E::Skip(_), StepOut::Skipped) => Ok(()),
            (E::Spawn { parent, verdict, flags }, StepOut::Spawned(r)) => {
                match (verdict, r) {
                    (Verdict::Created | Verdict::Unknown(_), Ok(pid)) => {
                        // D is a plain child of the worker: never marked.
                        let (parent, pgid, creator_marked) = match parent {
                            Who::Driver => (Parent::Driver, self.dpid, false),
                            Who::Node(p) => {
                                let c = &self.nodes[*p as usize];
                                (Parent::Node(*p as usize), c.pgid, c.lineage.marked(self.cfg.semantics))
                            }
                        };
                        let wait_pid_flag = self.cfg.features.wait_pid_bit.is_some_and(|b| flags & b != 0);
                        let lineage = Lineage { wait_pid_flag, creator_marked, reparented: false };
                        self.nodes.push(Node { pid: *pid, parent, lineage, pgid, state: ChildState::Running, reaped: false, execd: false });
                        Ok(())
                    }
                    (Verdict::Fails(want), Err(got)) if want.0 == *got => Ok(()),
                    (Verdict::Unknown(_), Err(_)) => Ok(()),
                    (v, r) => Err(format!(
                        "clone3({}): model says {v:?}, kernel {}",
                        super::clone3::flag_names(*flags),
                        match r {
                            Ok(p) => format!("created pid {p}"),
                            Err(e) => format!("failed with {}", Errno(*e)),
                        }
                    )),
                }
            }
            (E::Exit { node, code }, StepOut::Done) => {
                self.nodes[*node].state = ChildState::Zombie(Event::Exited(*code as i32));
                self.reparent_children_of(*node);
                Ok(())
            }
            (E::Kill { node }, StepOut::Done) => {
                self.nodes[*node].state = ChildState::Zombie(Event::Killed(libc::SIGKILL));
                self.reparent_children_of(*node);
                Ok(())
            }
            (E::Stop { node }, StepOut::Done) => {
                self.nodes[*node].state = ChildState::Stopped(libc::SIGSTOP);
                Ok(())
            }
            (E::Cont { node }, StepOut::Done) => {
                self.nodes[*node].state = ChildState::Continued;
                Ok(())
            }
            (E::Exec { node }, StepOut::Done) => {
                self.nodes[*node].execd = true;
                Ok(())
            }
            (E::Subreaper, StepOut::Done) => {
                self.subreaper = true;
                Ok(())
            }
            (E::Setpgid { node, pgid, result }, StepOut::Setpgid(r)) => {
                let got = r.map_err(Errno);
                if got != *result {
                    return Err(format!("setpgid: model says {result:?}, kernel {got:?}"));
                }
                if got.is_ok() {
                    self.nodes[*node].pgid = *pgid;
                }
                Ok(())
            }
            (E::Wait { prediction: Prediction::Blocks, .. }, StepOut::Waited(None)) => Ok(()),
            (E::Wait { call, opts, prediction, .. }, StepOut::Waited(Some(o))) => {
                if !matches(prediction, *o) {
                    return Err(format!("{} returned {o}, model predicts {}", call.spell(*opts), describe_prediction(prediction)));
                }
                let mut v = self.views();
                apply_outcome(&mut v, *opts, *o);
                for n in self.nodes.iter_mut().filter(|n| n.parent == Parent::Driver && !n.reaped) {
                    match v.iter().find(|c| c.pid == n.pid) {
                        Some(c) => n.state = c.state,
                        None => n.reaped = true,
                    }
                }
                Ok(())
            }
            (e, o) => Err(format!("harness: expected to {e:?}, observed {o:?}")),
        }
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
    let mut lines = vec![format!("D (pid {}): setpgid(0, 0)  [model: {} semantics]", log.dpid, cfg.semantics)];
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
            (_, StepOut::Spawned(Ok(p))) => format!("  -> n{} = pid {p}", m.nodes.len()),
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
        let mut p = Pool { cmd_r: vec![], cmd_w: vec![], rep_r: vec![], rep_w: vec![] };
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
        RawPool { cmd_r: self.cmd_r.iter().map(|f| f.as_raw_fd()).collect(), rep_w: self.rep_w.iter().map(|f| f.as_raw_fd()).collect() }
    }
}

/// The program of node `idx`: close what is not ours, then obey commands.
fn agent(idx: usize, pool: RawPool) -> i32 {
    let keep: Vec<RawFd> = (idx..MAX_NODES).flat_map(|j| [pool.cmd_r[j], pool.rep_w[j]]).collect();
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let fds: Vec<RawFd> = dir.flatten().filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok())).collect();
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
    let (cmd, rep) = unsafe { (OwnedFd::from_raw_fd(pool.cmd_r[idx]), OwnedFd::from_raw_fd(pool.rep_w[idx])) };
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
                let r = clone3(&Clone3Request::new(flags, libc::SIGCHLD as u64), Program::Run(Box::new(move || agent(child, pool2))));
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
                    let argv = [c"sh".as_ptr(), c"-c".as_ptr(), c"printf e; read c; exit \"$c\"".as_ptr(), std::ptr::null()];
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
        m.nodes[i].pid
    }

    fn await_exit(&self, i: usize) -> Result<(), String> {
        match &self.pidfds[i] {
            Some(fd) => pidfd::poll_exit(fd.as_fd(), None).map(|_| ()).map_err(|e| format!("poll pidfd: {e}")),
            None => Err("no pidfd".into()),
        }
    }

    fn perform(&mut self, m: &TreeModel, e: &Expect) -> StepOut {
        match e {
            Expect::Skip(_) => StepOut::Skipped,
            Expect::Spawn { parent, flags, .. } => {
                let idx = m.nodes.len();
                let r = match parent {
                    Who::Driver => {
                        let raw = self.pool.raw();
                        clone3(&Clone3Request::new(*flags, libc::SIGCHLD as u64), Program::Run(Box::new(move || agent(idx, raw))))
                            .map(|mut sp| (sp.pid, sp.pidfd.take()))
                            .map_err(|e| e.0)
                    }
                    Who::Node(p) => {
                        let mut msg = vec![b's', idx as u8];
                        msg.extend_from_slice(&flags.to_le_bytes());
                        let p = *p as usize;
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
            Expect::Exit { node, code } => {
                let msg: Vec<u8> = if m.nodes[*node].execd { format!("{code}\n").into_bytes() } else { vec![b'x', *code] };
                if !isolate::write_all(&self.pool.cmd_w[*node], &msg) {
                    return StepOut::Harness(format!("n{node}: command pipe closed"));
                }
                self.await_exit(*node).map(|_| StepOut::Done).unwrap_or_else(StepOut::Harness)
            }
            Expect::Kill { node } => {
                let Some(fd) = &self.pidfds[*node] else { return StepOut::Harness("no pidfd".into()) };
                if let Err(e) = pidfd::send_signal(fd, libc::SIGKILL) {
                    return StepOut::Harness(format!("pidfd_send_signal: {e}"));
                }
                self.await_exit(*node).map(|_| StepOut::Done).unwrap_or_else(StepOut::Harness)
            }
            Expect::Stop { node } | Expect::Cont { node } => {
                let (sig, bit) = if matches!(e, Expect::Stop { .. }) {
                    (libc::SIGSTOP, WaitOpts::WSTOPPED)
                } else {
                    (libc::SIGCONT, WaitOpts::WCONTINUED)
                };
                let Some(fd) = &self.pidfds[*node] else { return StepOut::Harness("no pidfd".into()) };
                if let Err(e) = pidfd::send_signal(fd, sig) {
                    return StepOut::Harness(format!("pidfd_send_signal: {e}"));
                }
                // Block (without consuming it) until the state change is
                // reportable: the kernel's own notification, no sleeping.
                let t = WaitTarget { pid: self.pid_of(m, *node), pidfd: -1, pgid: 0 };
                match wait(WaitCall::WaitidPid, t, WaitOpts(bit | WaitOpts::WNOWAIT)) {
                    crate::sys::wait::WaitOutcome::Reported { .. } => StepOut::Done,
                    other => StepOut::Harness(format!("sync wait for the {} state: {other}", if sig == libc::SIGSTOP { "stopped" } else { "continued" })),
                }
            }
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
            Expect::Wait { call, opts, node, sel, prediction } => {
                if *prediction == Prediction::Blocks {
                    return StepOut::Waited(None);
                }
                let pidfd = node.and_then(|i| self.pidfds[i].as_ref().map(|f| f.as_raw_fd())).unwrap_or(-1);
                let t = WaitTarget { pid: sel.pid, pidfd, pgid: sel.pgid };
                StepOut::Waited(Some(wait(*call, t, *opts).into()))
            }
        }
    }

    /// Kill every node that may still run and wait until each has exited.
    fn finish(&mut self) {
        for fd in self.pidfds.iter().flatten() {
            let _ = pidfd::send_signal(fd, libc::SIGKILL);
        }
        for fd in self.pidfds.iter().flatten() {
            let _ = pidfd::poll_exit(fd.as_fd(), None);
        }
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
    let mut d = Driver { pool: Pool::new(), pidfds: Vec::new(), dpid };
    let mut m = TreeModel::new(cfg.clone(), d.dpid);
    let mut log = RunLog { dpid, steps: Vec::new(), hang: None };
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
        Ok(sp) => {
            let mut buf = Vec::new();
            let deadline = std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms.max(0) as u64);
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now()).as_millis() as i32;
                if !isolate::readable_within(&r, left) {
                    let mut rep = vec![crate::sys::proc::stuck_report(sp.pid)];
                    rep.extend(crate::sys::proc::descendants(sp.pid).into_iter().map(crate::sys::proc::stuck_report));
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
            } else {
                for p in crate::sys::proc::descendants(sp.pid) {
                    // SAFETY: best-effort SIGKILL to the stuck tree below our
                    // own unreaped child.
                    unsafe {
                        libc::kill(p, libc::SIGKILL);
                    }
                }
            }
            if let Some(fd) = &sp.pidfd {
                let _ = pidfd::send_signal(fd, libc::SIGKILL);
            }
            let t = WaitTarget { pid: sp.pid, pidfd: -1, pgid: 0 };
            let _ = wait(WaitCall::WaitidPid, t, WaitOpts(WaitOpts::WEXITED));
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

    const BIT: u64 = 1 << 40;

    fn cfg(semantics: Semantics) -> TreeConfig {
        TreeConfig {
            features: KernelFeatures::new((6, 12), Some(BIT)),
            caller: Caller { root: false, ns_init: false, ns_level: 0 },
            spawn_bit: BIT,
            sh: true,
            semantics,
        }
    }

    fn wait(call: WaitCall, opts: u32, node: u8) -> Op {
        Op::Wait { call, opts, node }
    }
    fn spawn(parent: Who, hidden: bool) -> Op {
        Op::Spawn { parent, hidden }
    }
    const NOHANG_EXITED: u32 = WaitOpts::WNOHANG | WaitOpts::WEXITED;

    /// cases/regressions/wait_sequence-hidden-grandchild-inherits-after-reparent.case
    /// and the log wait-pid-6.12 gave for it.
    fn grandchild_run() -> (WaitProgram, RunLog) {
        let p = WaitProgram {
            ops: vec![
                Op::Subreaper,
                spawn(Who::Driver, false),
                spawn(Who::Node(0), true),
                Op::Exit { node: 0, code: 1 },
                spawn(Who::Node(1), false),
                Op::Kill { node: 1 },
                wait(WaitCall::WaitpidAny, 0, 0),
                wait(WaitCall::WaitidAll, NOHANG_EXITED, 1),
            ],
        };
        let log = RunLog {
            dpid: 133,
            steps: vec![
                StepOut::Done,
                StepOut::Spawned(Ok(134)),
                StepOut::Spawned(Ok(135)),
                StepOut::Done,
                StepOut::Spawned(Ok(136)),
                StepOut::Done,
                StepOut::Waited(Some(Out::Reported { pid: 134, event: Event::Exited(1) })),
                StepOut::Waited(Some(Out::Failed(libc::ECHILD))),
            ],
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
        assert!(e.contains("step 8:") && e.contains("returned -1 ECHILD") && e.contains("135"), "{e}");
        assert!(e.contains("[model: design semantics]"), "{e}");
    }

    /// Only reparenting: the hidden child of a plain node that exits.
    #[test]
    fn reparented_hidden_child() {
        let p = WaitProgram {
            ops: vec![
                Op::Subreaper,
                spawn(Who::Driver, false),
                spawn(Who::Node(0), true),
                Op::Exit { node: 0, code: 1 },
                Op::Exit { node: 1, code: 2 },
                wait(WaitCall::WaitidAll, NOHANG_EXITED, 0),
                wait(WaitCall::WaitidAll, NOHANG_EXITED, 0),
            ],
        };
        let steps = |second: Out| RunLog {
            dpid: 10,
            steps: vec![
                StepOut::Done,
                StepOut::Spawned(Ok(11)),
                StepOut::Spawned(Ok(12)),
                StepOut::Done,
                StepOut::Done,
                StepOut::Waited(Some(Out::Reported { pid: 11, event: Event::Exited(1) })),
                StepOut::Waited(Some(second)),
            ],
            hang: None,
        };
        let seed_kernel = steps(Out::Failed(libc::ECHILD));
        let design_kernel = steps(Out::Reported { pid: 12, event: Event::Exited(2) });
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
        let hidden = |t: &TreeModel| t.views().into_iter().filter(|v| v.hidden).map(|v| v.pid).collect::<Vec<_>>();
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
