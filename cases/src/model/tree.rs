//! The process-tree model: a waiter W (the fuzzers' driver D, a row's case
//! process) and the processes below it, changed by a few operations, and
//! what each operation and each wait call of W must answer. Pure: no
//! process is made here. The `wait_sequence` fuzz target executes these
//! operations and checks each step with [`Tree::expect`] and [`Tree::apply`];
//! the agreement test (`model::agreement`) describes the case table's
//! situations with the same operations.
//!
//! The rules, with the kernel source they follow:
//! - a spawn succeeds or fails as [`clone3_verdict`] says (the spawn flags
//!   are `CLONE_PIDFD`, plus the CLONE_WAIT_PID bit for a hidden spawn,
//!   exit signal SIGCHLD); the child starts running, in its creator's
//!   process group (kernel/fork.c, copy_process);
//! - an exiting or killed process becomes a zombie (exit code, or killed by
//!   9) and its children are reparented: to W when W is a child subreaper
//!   and the dead process is below W, else out of W's view (kernel/exit.c,
//!   find_new_reaper, reparent_leader); a reparented child's [`Lineage`]
//!   says so;
//! - SIGSTOP stops a running child, SIGCONT makes a stopped one
//!   "continued", both reportable once (kernel/signal.c, do_signal_stop,
//!   prepare_signal);
//! - setpgid(child, pgid) by W is EACCES once the child exec'd
//!   (kernel/sys.c, setpgid: EACCES when the child lost PF_FORKNOEXEC);
//! - which children W's generic waits skip is [`hidden_from_waiter`] for
//!   each child's lineage under the configured [`Semantics`]; the rest of a
//!   wait's answer is [`predict_wait`], and a reported event changes the
//!   children as [`wait_changes`] says;
//! - a tracer's view of its tracees (not W's children) is
//!   [`hidden_from_tracer`] and [`predict_tracer_wait`].
//!
//! Operations whose preconditions the model does not cover (stopping a
//! process that is not W's child, commanding a stopped or exec'd process,
//! ...) are [`Expect::Skip`]: nothing is done and nothing is predicted.

use crate::model::{
    clone3_verdict, hidden_from_waiter, predict_wait, Caller, ChildState, ChildView, Clone3Desc,
    KernelFeatures, Lineage, Prediction, Selector, Semantics, Verdict,
};
use crate::sys::clone::flags::CLONE_PIDFD;
use crate::sys::wait::{Event, WaitCall, WaitOpts, WaitOutcome};
use crate::sys::Errno;

/// At most this many processes below W (the fuzz driver's limit).
pub const MAX_NODES: usize = 6;

/// The options a call really passes: `wait()` takes none.
pub fn effective_opts(call: WaitCall, opts: WaitOpts) -> WaitOpts {
    if call.takes_options() {
        opts
    } else {
        WaitOpts(0)
    }
}

/// [`predict_wait`] for the options the call really passes.
pub fn predict(sel: Selector, opts: WaitOpts, children: &[ChildView]) -> Prediction {
    predict_wait(sel, effective_opts(sel.call, opts), children)
}

/// Whether `observed` is one of the predicted outcomes. `Blocks` is never
/// executed, so an observation against it is a mismatch.
pub fn admits(pred: &Prediction, observed: WaitOutcome) -> bool {
    match pred {
        Prediction::OneOf(v) => v.contains(&observed),
        Prediction::Blocks => false,
    }
}

/// How a wait that reported `observed` changes the caller's children
/// (kernel/exit.c: a reaped zombie is gone; a reported stop or continue is
/// consumed; WNOWAIT leaves everything as it was).
pub fn wait_changes(children: &mut Vec<ChildView>, opts: WaitOpts, observed: WaitOutcome) {
    let WaitOutcome::Reported { pid, event } = observed else {
        return;
    };
    if opts.has(WaitOpts::WNOWAIT) {
        return;
    }
    let Some(i) = children.iter().position(|c| c.pid == pid) else {
        return;
    };
    match event {
        Event::Exited(_) | Event::Killed(_) | Event::Dumped(_) => {
            children.remove(i);
        }
        Event::Stopped(_) | Event::Trapped(_) => children[i].state = ChildState::StoppedReported,
        Event::Continued => children[i].state = ChildState::Running,
    }
}

/// Whether a tracer's waits skip its tracee (ptrace_do_wait runs the same
/// eligible_child as the wait on children).
///
/// - [`Semantics::Design`]: never. ptrace is a relation apart from
///   parenthood; a tracer (gdb, strace) collects its tracees' stops with
///   `waitpid(-1, __WALL)` (`open::ptrace::tracer_generic_wall_wait`).
/// - [`Semantics::Seed`]: the 2019 patch's test `(p->flags & PF_WAIT_PID)
///   && wo_type != PIDTYPE_PID` sits in eligible_child before the
///   `if (ptrace || __WALL) return 1` shortcut (6.12 kernel/exit.c), so a
///   marked tracee is skipped by the tracer's generic waits too; a focused
///   wait (PIDTYPE_PID) still sees it.
pub fn hidden_from_tracer(sem: Semantics, tracee: Lineage, call: WaitCall) -> bool {
    match sem {
        Semantics::Design => false,
        Semantics::Seed => tracee.marked(sem) && !call.is_focused(),
    }
}

/// A process the waiter traces, as the waiter's waits see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracee {
    pub pid: i32,
    pub pgid: i32,
    pub lineage: Lineage,
    /// its ptrace stop, not yet reported (the attach stop is SIGSTOP)
    pub stopped: Option<i32>,
}

/// One wait call of a tracer that has no children of its own, against its
/// tracees. A ptrace stop is reported whatever the options say about
/// stops (wait_task_stopped: `if (!ptrace && !(wo_flags & WUNTRACED))`),
/// and a tracee is waited for whatever its exit signal (eligible_child:
/// `if (ptrace || __WALL) return 1`).
pub fn predict_tracer_wait(
    sem: Semantics,
    sel: Selector,
    opts: WaitOpts,
    tracees: &[Tracee],
) -> Prediction {
    let views: Vec<ChildView> = tracees
        .iter()
        .map(|t| ChildView {
            pid: t.pid,
            pgid: t.pgid,
            hidden: hidden_from_tracer(sem, t.lineage, sel.call),
            sigchld: !opts.has(WaitOpts::WCLONE),
            state: match t.stopped {
                Some(sig) => ChildState::Stopped(sig),
                None => ChildState::Running,
            },
        })
        .collect();
    let opts = effective_opts(sel.call, opts);
    // Only a call that accepts options at all (the options check comes first).
    let prediction = predict_wait(sel, opts, &[]);
    if prediction == Prediction::OneOf(vec![WaitOutcome::Failed(Errno::EINVAL)]) {
        return prediction;
    }
    predict_wait(sel, WaitOpts(opts.0 | WaitOpts::WSTOPPED), &views)
}

/// The machine's facts and the chosen semantics; fixed for a run.
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

#[cfg(test)]
impl TreeConfig {
    /// The unit tests' machine: wait-pid-6.12 (CLONE_WAIT_PID at bit 40),
    /// /bin/sh present, the caller root or not.
    pub(crate) fn wait_pid_612(semantics: Semantics, root: bool) -> TreeConfig {
        TreeConfig {
            features: KernelFeatures::new((6, 12), Some(1 << 40)),
            caller: Caller {
                root,
                ns_init: false,
                ns_level: 0,
            },
            spawn_bit: 1 << 40,
            sh: true,
            semantics,
        }
    }
}

/// Who makes a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Creator {
    Waiter,
    Node(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Parent {
    Waiter,
    Node(usize),
    /// reparented above W: no longer W's business
    Elsewhere,
}

#[derive(Clone, Debug)]
struct Node {
    pid: i32,
    parent: Parent,
    /// how it was made and whether it was reparented: hidden from W's
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
        self.live()
            && matches!(
                self.state,
                ChildState::Stopped(_) | ChildState::StoppedReported
            )
    }
}

/// What the model expects one operation to do (and what an executor must
/// do to perform it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// outside the model: do nothing
    Skip(&'static str),
    Spawn {
        parent: Creator,
        flags: u64,
        verdict: Verdict,
    },
    Exit {
        node: usize,
        code: u8,
    },
    Kill {
        node: usize,
    },
    Stop {
        node: usize,
    },
    Cont {
        node: usize,
    },
    Setpgid {
        node: usize,
        pgid: i32,
        result: Result<(), Errno>,
    },
    Exec {
        node: usize,
    },
    Subreaper,
    /// `node`: the process whose pid/pidfd/pgid the call names, if any
    Wait {
        call: WaitCall,
        opts: WaitOpts,
        node: Option<usize>,
        sel: Selector,
        prediction: Prediction,
    },
}

/// What performing an operation gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    Skipped,
    Spawned(Result<i32, Errno>),
    /// the operation took effect (exit, kill, stop, continue, exec, subreaper)
    Done,
    Setpgid(Result<(), Errno>),
    /// None: not made, the model says it blocks
    Waited(Option<WaitOutcome>),
}

/// Where the kernel and the model disagree on one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    Spawn {
        flags: u64,
        verdict: Verdict,
        got: Result<i32, Errno>,
    },
    Setpgid {
        want: Result<(), Errno>,
        got: Result<(), Errno>,
    },
    Wait {
        call: WaitCall,
        opts: WaitOpts,
        got: WaitOutcome,
        prediction: Prediction,
    },
    /// the observation is not of the kind the step asked for
    NotThisStep,
}

/// The state of W's tree.
#[derive(Clone, Debug)]
pub struct Tree {
    cfg: TreeConfig,
    waiter: i32,
    /// how W itself was made (the fuzz driver: a plain child)
    waiter_lineage: Lineage,
    subreaper: bool,
    nodes: Vec<Node>,
}

impl Tree {
    /// W (pid `waiter`, leader of its own process group) with no children.
    pub fn new(cfg: TreeConfig, waiter: i32) -> Tree {
        Tree::below(cfg, waiter, Lineage::default())
    }

    /// The same for a W that was made as `lineage` says (e.g. a hidden
    /// child of the case process, which then makes children of its own).
    pub fn below(cfg: TreeConfig, waiter: i32, lineage: Lineage) -> Tree {
        Tree {
            cfg,
            waiter,
            waiter_lineage: lineage,
            subreaper: false,
            nodes: Vec::new(),
        }
    }

    pub fn config(&self) -> &TreeConfig {
        &self.cfg
    }

    /// Processes made so far (n0, n1, ... in spawn order).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn pid(&self, node: usize) -> Option<i32> {
        self.nodes.get(node).map(|n| n.pid)
    }

    /// Whether `node` exec'd.
    pub fn execd(&self, node: usize) -> bool {
        self.nodes.get(node).is_some_and(|n| n.execd)
    }

    /// How `node` was made and whether it was reparented.
    pub fn lineage(&self, node: usize) -> Option<Lineage> {
        self.nodes.get(node).map(|n| n.lineage)
    }

    /// Whether `node` is W's child now (made by W or reparented to it) and
    /// not yet reaped.
    pub fn is_waiters_child(&self, node: usize) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.parent == Parent::Waiter && !n.reaped)
    }

    /// W's children as predict_wait wants them.
    pub fn views(&self) -> Vec<ChildView> {
        self.nodes
            .iter()
            .filter(|n| n.parent == Parent::Waiter && !n.reaped)
            .map(|n| ChildView {
                pid: n.pid,
                pgid: n.pgid,
                hidden: hidden_from_waiter(self.cfg.semantics, n.lineage),
                sigchld: true,
                state: n.state,
            })
            .collect()
    }

    fn node(&self, n: usize) -> Option<(usize, &Node)> {
        self.nodes.get(n).map(|x| (n, x))
    }

    /// `by` makes a child with clone3(CLONE_PIDFD [| CLONE_WAIT_PID]).
    pub fn spawn(&self, by: Creator, hidden: bool) -> Expect {
        if self.nodes.len() >= MAX_NODES {
            return Expect::Skip("node limit");
        }
        if let Creator::Node(p) = by {
            match self.node(p) {
                Some((_, n)) if n.runs() && !n.execd => {}
                _ => return Expect::Skip("parent cannot take commands"),
            }
        }
        let flags = CLONE_PIDFD | if hidden { self.cfg.spawn_bit } else { 0 };
        let verdict = clone3_verdict(
            &Clone3Desc::new(flags, libc::SIGCHLD as u64),
            &self.cfg.features,
            &self.cfg.caller,
        );
        Expect::Spawn {
            parent: by,
            flags,
            verdict,
        }
    }

    /// The node calls _exit(code) (an exec'd node: its shell exits).
    pub fn exit(&self, node: usize, code: u8) -> Expect {
        match self.node(node) {
            Some((i, n)) if n.runs() => Expect::Exit { node: i, code },
            _ => Expect::Skip("node not running"),
        }
    }

    pub fn kill(&self, node: usize) -> Expect {
        match self.node(node) {
            Some((i, n)) if n.live() => Expect::Kill { node: i },
            _ => Expect::Skip("node already dead"),
        }
    }

    pub fn stop(&self, node: usize) -> Expect {
        match self.node(node) {
            Some((i, n)) if n.runs() && n.parent == Parent::Waiter => Expect::Stop { node: i },
            _ => Expect::Skip("only running children of D are stopped"),
        }
    }

    pub fn cont(&self, node: usize) -> Expect {
        match self.node(node) {
            Some((i, n)) if n.stopped() && n.parent == Parent::Waiter => Expect::Cont { node: i },
            _ => Expect::Skip("only stopped children of D are continued"),
        }
    }

    /// W: setpgid(node, node) (`own`) or setpgid(node, W's group).
    pub fn setpgid(&self, node: usize, own: bool) -> Expect {
        match self.node(node) {
            Some((i, n)) if n.live() && n.parent == Parent::Waiter => {
                let pgid = if own { n.pid } else { self.waiter };
                let result = if n.execd {
                    Err(Errno(libc::EACCES))
                } else {
                    Ok(())
                };
                Expect::Setpgid {
                    node: i,
                    pgid,
                    result,
                }
            }
            _ => Expect::Skip("setpgid only on live children of D"),
        }
    }

    /// The node execs /bin/sh.
    pub fn exec(&self, node: usize) -> Expect {
        match self.node(node) {
            Some((i, n)) if n.runs() && !n.execd && self.cfg.sh => Expect::Exec { node: i },
            _ => Expect::Skip("node cannot exec"),
        }
    }

    /// W: prctl(PR_SET_CHILD_SUBREAPER, 1).
    pub fn subreaper(&self) -> Expect {
        Expect::Subreaper
    }

    /// W makes this wait call; `node` names the pid/pidfd/pgid it is about
    /// (a node that does not exist: W's own pid and group).
    pub fn wait(&self, call: WaitCall, opts: WaitOpts, node: usize) -> Expect {
        let opts = effective_opts(call, opts);
        let target = self.node(node).map(|(i, n)| (i, n.pid, n.pgid));
        if target.is_none() && call == WaitCall::WaitidPidfd {
            return Expect::Skip("no node to take a pidfd of");
        }
        let (pid, pgid) = target
            .map(|(_, p, g)| (p, g))
            .unwrap_or((self.waiter, self.waiter));
        let sel = Selector {
            call,
            pid,
            pgid,
            own_pgid: self.waiter,
        };
        let prediction = predict(sel, opts, &self.views());
        Expect::Wait {
            call,
            opts,
            node: target.map(|t| t.0),
            sel,
            prediction,
        }
    }

    /// What W gets from this wait call as the tracer of `node`, stopped by
    /// the attach's SIGSTOP. None (outside the model) unless `node` is live
    /// and not W's child, and W has no children of its own.
    pub fn tracer_wait(&self, call: WaitCall, opts: WaitOpts, node: usize) -> Option<Prediction> {
        if !self.views().is_empty() {
            return None;
        }
        let n = self
            .nodes
            .get(node)
            .filter(|n| n.live() && n.parent != Parent::Waiter)?;
        let sel = Selector {
            call,
            pid: n.pid,
            pgid: n.pgid,
            own_pgid: self.waiter,
        };
        let t = Tracee {
            pid: n.pid,
            pgid: n.pgid,
            lineage: n.lineage,
            stopped: Some(libc::SIGSTOP),
        };
        Some(predict_tracer_wait(self.cfg.semantics, sel, opts, &[t]))
    }

    fn reparent_children_of(&mut self, dead: usize) {
        let mut up = self.nodes[dead].parent;
        // Where do the orphans go? W if W is a subreaper and the dead node
        // is below W, else above W (whatever made W; the fuzz worker is a
        // subreaper too).
        while let Parent::Node(j) = up {
            up = self.nodes[j].parent;
        }
        let to = if up == Parent::Waiter && self.subreaper {
            Parent::Waiter
        } else {
            Parent::Elsewhere
        };
        for n in self.nodes.iter_mut() {
            if n.parent == Parent::Node(dead) && !n.reaped {
                n.parent = to;
                n.lineage.reparented = true;
            }
        }
    }

    /// Check one observation against the expectation and advance.
    pub fn apply(&mut self, e: &Expect, out: &Observed) -> Result<(), Mismatch> {
        use Expect as E;
        match (e, out) {
            (E::Skip(_), Observed::Skipped) => Ok(()),
            (
                E::Spawn {
                    parent,
                    verdict,
                    flags,
                },
                Observed::Spawned(r),
            ) => match (verdict, r) {
                (Verdict::Created | Verdict::Unknown(_), Ok(pid)) => {
                    self.add_node(parent, *flags, *pid);
                    Ok(())
                }
                (Verdict::Fails(want), Err(got)) if want == got => Ok(()),
                (Verdict::Unknown(_), Err(_)) => Ok(()),
                (v, r) => Err(Mismatch::Spawn {
                    flags: *flags,
                    verdict: v.clone(),
                    got: *r,
                }),
            },
            (E::Exit { node, code }, Observed::Done) => {
                self.nodes[*node].state = ChildState::Zombie(Event::Exited(*code as i32));
                self.reparent_children_of(*node);
                Ok(())
            }
            (E::Kill { node }, Observed::Done) => {
                self.nodes[*node].state = ChildState::Zombie(Event::Killed(libc::SIGKILL));
                self.reparent_children_of(*node);
                Ok(())
            }
            (E::Stop { node }, Observed::Done) => {
                self.nodes[*node].state = ChildState::Stopped(libc::SIGSTOP);
                Ok(())
            }
            (E::Cont { node }, Observed::Done) => {
                self.nodes[*node].state = ChildState::Continued;
                Ok(())
            }
            (E::Exec { node }, Observed::Done) => {
                self.nodes[*node].execd = true;
                Ok(())
            }
            (E::Subreaper, Observed::Done) => {
                self.subreaper = true;
                Ok(())
            }
            (E::Setpgid { node, pgid, result }, Observed::Setpgid(got)) => {
                if got != result {
                    return Err(Mismatch::Setpgid {
                        want: *result,
                        got: *got,
                    });
                }
                if got.is_ok() {
                    self.nodes[*node].pgid = *pgid;
                }
                Ok(())
            }
            (
                E::Wait {
                    prediction: Prediction::Blocks,
                    ..
                },
                Observed::Waited(None),
            ) => Ok(()),
            (
                E::Wait {
                    call,
                    opts,
                    prediction,
                    ..
                },
                Observed::Waited(Some(o)),
            ) => {
                if !admits(prediction, *o) {
                    return Err(Mismatch::Wait {
                        call: *call,
                        opts: *opts,
                        got: *o,
                        prediction: prediction.clone(),
                    });
                }
                self.waited(*opts, *o);
                Ok(())
            }
            _ => Err(Mismatch::NotThisStep),
        }
    }

    /// A child `pid` made by `parent` with the clone flags `flags`: in the
    /// parent's group, marked as the semantics and the flags say.
    fn add_node(&mut self, parent: &Creator, flags: u64, pid: i32) {
        let (parent, pgid, creator_marked) = match parent {
            Creator::Waiter => (
                Parent::Waiter,
                self.waiter,
                self.waiter_lineage.marked(self.cfg.semantics),
            ),
            Creator::Node(p) => {
                let c = &self.nodes[*p];
                (
                    Parent::Node(*p),
                    c.pgid,
                    c.lineage.marked(self.cfg.semantics),
                )
            }
        };
        let wait_pid_flag = self
            .cfg
            .features
            .wait_pid_bit
            .is_some_and(|b| flags & b != 0);
        let lineage = Lineage {
            wait_pid_flag,
            creator_marked,
            reparented: false,
        };
        self.nodes.push(Node {
            pid,
            parent,
            lineage,
            pgid,
            state: ChildState::Running,
            reaped: false,
            execd: false,
        });
    }

    /// The waiter's wait with `opts` answered `o`: its children's states
    /// change as the wait made them (reaped, stop reported).
    fn waited(&mut self, opts: WaitOpts, o: WaitOutcome) {
        let mut v = self.views();
        wait_changes(&mut v, opts, o);
        for n in self
            .nodes
            .iter_mut()
            .filter(|n| n.parent == Parent::Waiter && !n.reaped)
        {
            match v.iter().find(|c| c.pid == n.pid) {
                Some(c) => n.state = c.state,
                None => n.reaped = true,
            }
        }
    }

    /// What a kernel that behaves as the model says answers to `e` (for
    /// running the model alone): the pid a spawn gets is `next_pid`.
    pub fn model_answer(&self, e: &Expect, next_pid: i32) -> Observed {
        match e {
            Expect::Skip(_) => Observed::Skipped,
            Expect::Spawn {
                verdict: Verdict::Fails(e),
                ..
            } => Observed::Spawned(Err(*e)),
            Expect::Spawn { .. } => Observed::Spawned(Ok(next_pid)),
            Expect::Setpgid { result, .. } => Observed::Setpgid(*result),
            Expect::Wait {
                prediction: Prediction::Blocks,
                ..
            } => Observed::Waited(None),
            Expect::Wait {
                prediction: Prediction::OneOf(v),
                ..
            } => Observed::Waited(v.first().copied()),
            _ => Observed::Done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(semantics: Semantics) -> TreeConfig {
        TreeConfig::wait_pid_612(semantics, false)
    }

    /// Run expectations through the model's own answers.
    fn run(t: &mut Tree, steps: &[Expect]) {
        for e in steps {
            let o = t.model_answer(e, 100 + t.node_count() as i32);
            t.apply(e, &o).unwrap();
        }
    }

    #[test]
    fn setpgid_after_exec_is_eacces() {
        let mut t = Tree::new(cfg(Semantics::Design), 10);
        let e = t.spawn(Creator::Waiter, false);
        run(&mut t, &[e]);
        assert!(matches!(
            t.setpgid(0, true),
            Expect::Setpgid {
                pgid: 100,
                result: Ok(()),
                ..
            }
        ));
        let e = t.exec(0);
        run(&mut t, &[e]);
        assert!(matches!(
            t.setpgid(0, true),
            Expect::Setpgid {
                result: Err(Errno(libc::EACCES)),
                ..
            }
        ));
        // A kernel that lets it through disagrees.
        let e = t.setpgid(0, true);
        assert_eq!(
            t.apply(&e, &Observed::Setpgid(Ok(()))),
            Err(Mismatch::Setpgid {
                want: Err(Errno(libc::EACCES)),
                got: Ok(())
            })
        );
    }

    #[test]
    fn orphans_go_to_a_subreaper_only() {
        for subreaper in [false, true] {
            let mut t = Tree::new(cfg(Semantics::Design), 10);
            let mut steps = vec![];
            if subreaper {
                steps.push(t.subreaper());
            }
            run(&mut t, &steps);
            let e = t.spawn(Creator::Waiter, false);
            run(&mut t, &[e]);
            let e = t.spawn(Creator::Node(0), true);
            run(&mut t, &[e]);
            let e = t.exit(0, 1);
            run(&mut t, &[e]);
            assert_eq!(t.is_waiters_child(1), subreaper);
            assert!(t.lineage(1).unwrap().reparented);
            // Stopping a process that is not W's child is outside the model.
            assert_eq!(matches!(t.stop(1), Expect::Skip(_)), !subreaper);
        }
    }

    #[test]
    fn stop_continue_kill() {
        let mut t = Tree::new(cfg(Semantics::Design), 10);
        let e = t.spawn(Creator::Waiter, false);
        run(&mut t, &[e]);
        let e = t.stop(0);
        run(&mut t, &[e]);
        assert_eq!(t.views()[0].state, ChildState::Stopped(libc::SIGSTOP));
        assert!(matches!(t.exit(0, 1), Expect::Skip(_)));
        let e = t.cont(0);
        run(&mut t, &[e]);
        assert_eq!(t.views()[0].state, ChildState::Continued);
        let e = t.kill(0);
        run(&mut t, &[e]);
        assert_eq!(t.views()[0].state, ChildState::Zombie(Event::Killed(9)));
        let w = t.wait(WaitCall::WaitpidPid, WaitOpts(0), 0);
        assert!(
            matches!(&w, Expect::Wait { prediction: Prediction::OneOf(v), .. } if v == &[WaitOutcome::Reported { pid: 100, event: Event::Killed(9) }])
        );
        run(&mut t, &[w]);
        assert!(t.views().is_empty());
    }

    #[test]
    fn tracer_view_by_semantics() {
        let marked = Lineage {
            wait_pid_flag: true,
            ..Lineage::default()
        };
        for call in WaitCall::GENERIC {
            assert!(
                !hidden_from_tracer(Semantics::Design, marked, call),
                "{call:?}"
            );
            assert!(
                hidden_from_tracer(Semantics::Seed, marked, call),
                "{call:?}"
            );
            assert!(
                !hidden_from_tracer(Semantics::Seed, Lineage::default(), call),
                "{call:?}"
            );
        }
        for call in WaitCall::FOCUSED {
            assert!(
                !hidden_from_tracer(Semantics::Seed, marked, call),
                "{call:?}"
            );
        }
        // The attach stop is reported without WUNTRACED, to any wait that
        // takes __WALL; a hidden tracee under Seed leaves a generic wait of a
        // childless tracer with nothing: ECHILD.
        let t = Tracee {
            pid: 7,
            pgid: 7,
            lineage: marked,
            stopped: Some(libc::SIGSTOP),
        };
        let sel = |call| Selector::new(call, 7, 7, 3);
        let stop = Prediction::reported(7, Event::Stopped(libc::SIGSTOP));
        let wall = WaitOpts(WaitOpts::WALL);
        assert_eq!(
            predict_tracer_wait(Semantics::Design, sel(WaitCall::WaitpidAny), wall, &[t]),
            stop
        );
        assert_eq!(
            predict_tracer_wait(Semantics::Design, sel(WaitCall::WaitpidPid), wall, &[t]),
            stop
        );
        assert_eq!(
            predict_tracer_wait(Semantics::Seed, sel(WaitCall::WaitpidPid), wall, &[t]),
            stop
        );
        assert_eq!(
            predict_tracer_wait(Semantics::Seed, sel(WaitCall::WaitpidAny), wall, &[t]),
            Prediction::OneOf(vec![WaitOutcome::Failed(Errno::ECHILD)])
        );
        // Options the call rejects are still EINVAL.
        assert_eq!(
            predict_tracer_wait(
                Semantics::Design,
                sel(WaitCall::WaitpidAny),
                WaitOpts(WaitOpts::WNOWAIT),
                &[t]
            ),
            Prediction::OneOf(vec![WaitOutcome::Failed(Errno::EINVAL)])
        );
    }
}
