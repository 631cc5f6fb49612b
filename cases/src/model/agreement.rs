//! The fuzz oracle and the case table agree: each table situation about who
//! sees a child (generic and focused waits, reparenting, a hidden child's
//! descendants, execve, stop/continue, ptrace) is told as a sequence of the process-tree
//! model's operations ([`Tree`], the model the `wait_sequence` target's
//! oracle runs: `fuzzing::tree::TreeModel` maps each fuzz op onto the same
//! [`Tree`] method), and the tree's prediction for the row's wait call must
//! be what the row expects.
//!
//! The wait grid's rows (`generic::*`, `focused::*`) are enumerated from
//! the grid itself ([`grid_rows`]): each row's tree and script are replayed
//! as `TreeModel` ops, and every wait step's prediction is compared with the
//! one `spec::grid::plan` gives the row (the model over `Kin`s). Rows whose
//! dimensions the tree cannot express are listed in [`excluded`] with the
//! reason. For the other rows the expectation is taken from the table's own
//! functions (`spec::open::expected_generic_under`, `generic_sees`,
//! `tracer_expects`, `spec::reparent::orphan_lineage`, ...), for both
//! [`Semantics`] where the row's expectation depends on it.
//! Every row named here must exist in the table (`spec::all()`).

use std::collections::BTreeSet;

use super::tree::{effective_opts, Creator, Expect, Tree, TreeConfig};
use super::{Lineage, Prediction, Semantics, Verdict};
use crate::fuzzing::tree::{Op, StepOut, TreeModel, Who};
use crate::harness::Subject;
use crate::spec::grid::{
    plan, plan_pid, Group, KidSpec, PlannedWait, Role, Situation, Start, Step, Variant,
};
use crate::spec::{focused, generic, open, reparent};
use crate::sys::wait::{Event, WaitCall, WaitOpts as O, WaitOutcome};

const ALL: [Semantics; 2] = [Semantics::Design, Semantics::Seed];

fn cfg(semantics: Semantics) -> TreeConfig {
    TreeConfig::wait_pid_612(semantics, true)
}

/// A situation being built: every operation must be inside the model (no
/// skip) and is answered as the model says.
struct Sit {
    t: Tree,
}

impl Sit {
    fn new(sem: Semantics) -> Sit {
        Sit {
            t: Tree::new(cfg(sem), 1000),
        }
    }
    /// The waiter is itself its parent's child made as `lineage` says.
    fn below(sem: Semantics, lineage: Lineage) -> Sit {
        Sit {
            t: Tree::below(cfg(sem), 1000, lineage),
        }
    }
    fn step(&mut self, e: Expect) {
        assert!(
            !matches!(e, Expect::Skip(_)),
            "situation leaves the model: {e:?}"
        );
        let o = self.t.model_answer(&e, 1001 + self.t.node_count() as i32);
        self.t
            .apply(&e, &o)
            .unwrap_or_else(|m| panic!("the model disagrees with itself: {m:?}"));
    }
    fn spawn(&mut self, by: Creator, hidden: bool) -> usize {
        let e = self.t.spawn(by, hidden);
        assert!(
            matches!(
                e,
                Expect::Spawn {
                    verdict: super::Verdict::Created,
                    ..
                }
            ),
            "{e:?}"
        );
        self.step(e);
        self.t.node_count() - 1
    }
    fn subreaper(&mut self) {
        let e = self.t.subreaper();
        self.step(e);
    }
    fn exit(&mut self, n: usize, code: u8) {
        let e = self.t.exit(n, code);
        self.step(e);
    }
    fn exec(&mut self, n: usize) {
        let e = self.t.exec(n);
        self.step(e);
    }
    fn stop(&mut self, n: usize) {
        let e = self.t.stop(n);
        self.step(e);
    }
    fn cont(&mut self, n: usize) {
        let e = self.t.cont(n);
        self.step(e);
    }
    /// A focused wait that must report and consume one event of `n`.
    fn focused(&mut self, n: usize, opts: u32) {
        let e = self.t.wait(WaitCall::WaitpidPid, O(opts), n);
        match &e {
            Expect::Wait {
                prediction: Prediction::OneOf(v),
                ..
            } if matches!(v[..], [WaitOutcome::Reported { .. }]) => {}
            other => panic!("focused wait on n{n}: {other:?}"),
        }
        self.step(e);
    }
    fn pid(&self, n: usize) -> i32 {
        self.t.pid(n).unwrap()
    }
    /// The oracle's prediction for the row's wait call.
    fn predict(&self, call: WaitCall, opts: u32, n: usize) -> Prediction {
        match self.t.wait(call, O(opts), n) {
            Expect::Wait { prediction, .. } => prediction,
            other => panic!("{other:?}"),
        }
    }
}

/// What a row accepts: one of these outcomes, or a block.
#[derive(Debug, PartialEq, Eq)]
enum Row {
    OneOf(BTreeSet<String>),
    Blocks,
}

fn one_of(v: &[WaitOutcome]) -> Row {
    Row::OneOf(v.iter().map(|o| format!("{o:?}")).collect())
}

fn oracle(p: &Prediction) -> Row {
    match p {
        Prediction::Blocks => Row::Blocks,
        Prediction::OneOf(v) => one_of(v),
    }
}

/// Collects the comparisons, so that one run lists every disagreement.
#[derive(Default)]
struct Verdicts {
    checked: usize,
    disagree: Vec<String>,
    names: Vec<String>,
}

impl Verdicts {
    fn check(&mut self, row: &str, sem: Semantics, what: &str, model: &Prediction, table: Row) {
        self.checked += 1;
        self.names.push(row.to_string());
        let m = oracle(model);
        if m != table {
            self.disagree.push(format!(
                "{row} [{sem}] {what}: oracle {m:?}, table {table:?}"
            ));
        }
    }
    fn finish(self) {
        assert!(self.checked > 0, "nothing compared");
        let table: BTreeSet<String> = crate::spec::all().into_iter().map(|c| c.name).collect();
        let missing: Vec<&String> = self.names.iter().filter(|n| !table.contains(*n)).collect();
        assert!(
            missing.is_empty(),
            "rows named here but not in the table: {missing:?}"
        );
        assert!(
            self.disagree.is_empty(),
            "{} of {} comparisons disagree:\n{}",
            self.disagree.len(),
            self.checked,
            self.disagree.join("\n")
        );
    }
}

fn reported(pid: i32, ev: Event) -> WaitOutcome {
    WaitOutcome::Reported { pid, event: ev }
}

// ---------------------------------------------------------------------------
// The wait grid (generic::*, focused::*): every row replayed on the oracle.

/// Why a grid row cannot be told as the tree's operations. The tree model
/// has one waiter W with no threads, spawns only CLONE_PIDFD[|CLONE_WAIT_PID]
/// children with exit signal SIGCHLD, kills only with SIGKILL, and answers
/// one wait at a time.
const AUTOREAP: &str = "CLONE_AUTOREAP with exit_signal 0: the tree spawns CLONE_PIDFD[|CLONE_WAIT_PID] children with SIGCHLD only";
const BLOCKED_IN_THREAD: &str = "a call left blocked in a second thread while kids exit: the tree answers one wait at a time and has no threads";
const OTHER_SIGNAL: &str = "a fatal signal other than SIGKILL: the tree kills with SIGKILL only";
const WNOTHREAD_OTHER_THREAD: &str =
    "__WNOTHREAD from a thread that did not make every kid: the tree has no threads (a kid made by any thread of W is W's)";

/// The grid rows left out of the comparison, by name, with the reason.
/// Checked against what the rows' dimensions say (`unexpressible`), both ways.
fn excluded(group: &str, sit: &str, v: Variant) -> Option<&'static str> {
    match (group, sit, v) {
        (_, _, Variant::Autoreap) => Some(AUTOREAP),
        ("generic", "blocked_in_thread_sibling_exits_later", _) => Some(BLOCKED_IN_THREAD),
        ("focused", "killed_sigterm", _) => Some(OTHER_SIGNAL),
        ("generic" | "focused", "thread_child_wnothread", _) => Some(WNOTHREAD_OTHER_THREAD),
        _ => None,
    }
}

/// What in a row's dimensions the tree cannot express, if anything. A kid
/// made by a second thread is W's child like any other, and a call from the
/// second thread is W's call: the kernel's do_wait looks at the children of
/// every thread of the group, unless __WNOTHREAD.
fn unexpressible(
    sit: &Situation,
    v: Variant,
    steps: &[Step],
    row_call: WaitCall,
) -> Option<&'static str> {
    if v == Variant::Autoreap {
        return Some(AUTOREAP);
    }
    for st in steps {
        match *st {
            Step::BlockInThread { .. } => return Some(BLOCKED_IN_THREAD),
            Step::Signal(_, sig)
                if ![libc::SIGKILL, libc::SIGSTOP, libc::SIGCONT].contains(&sig) =>
            {
                return Some(OTHER_SIGNAL)
            }
            Step::Wait {
                call, opts, from, ..
            } => {
                let c = call.unwrap_or(row_call);
                if effective_opts(c, O(opts)).has(O::WNOTHREAD)
                    && sit.kids.iter().any(|k| k.by != from)
                {
                    return Some(WNOTHREAD_OTHER_THREAD);
                }
            }
            _ => {}
        }
    }
    None
}

/// A grid row told as the fuzz oracle's ops ([`TreeModel`], what the
/// `wait_sequence` target checks a run with), answered as the grid's plan
/// goes on. Changes the grid leaves "in flux" (a release, a signal) are kept
/// back as ops and applied when the grid settles them.
struct Replay<'a> {
    row: &'a str,
    sem: Semantics,
    kids: &'a [KidSpec],
    m: TreeModel,
    pending: Vec<(usize, Op)>,
}

impl<'a> Replay<'a> {
    fn node(i: usize) -> u8 {
        u8::try_from(i).expect("node index")
    }

    /// One op the oracle must take and the model's kernel does (a spawn
    /// gives the pid `plan` gives kid `spawned`).
    fn op_as(m: &mut TreeModel, op: Op, spawned: usize) -> Result<(), String> {
        let e = m.expect(&op);
        let out = match &e {
            Expect::Skip(why) => return Err(format!("the oracle skips {op} ({why})")),
            Expect::Spawn {
                verdict: Verdict::Created,
                ..
            } => StepOut::Spawned(Ok(plan_pid(spawned))),
            Expect::Spawn { verdict, .. } => {
                return Err(format!("the oracle says {op}: {verdict:?}"))
            }
            Expect::Setpgid { result, .. } => StepOut::Setpgid(result.map_err(|e| e.0)),
            Expect::Wait { .. } => return Err(format!("{op} is a wait")),
            _ => StepOut::Done,
        };
        m.apply(&e, &out).map_err(|e| format!("{op}: {e}"))
    }

    fn op(m: &mut TreeModel, op: Op) -> Result<(), String> {
        Self::op_as(m, op, usize::MAX)
    }

    /// The row's tree before its first step, as `plan` makes it.
    fn start(
        row: &'a str,
        sem: Semantics,
        kids: &'a [KidSpec],
        v: Variant,
    ) -> Result<Replay<'a>, String> {
        let mut m = TreeModel::new(cfg(sem), 1000);
        let mut other_leader = None;
        for (i, k) in kids.iter().enumerate() {
            let n = Self::node(i);
            Self::op_as(
                &mut m,
                Op::Spawn {
                    parent: Who::Driver,
                    hidden: k.role == Role::Subject && v == Variant::Hidden,
                },
                i,
            )?;
            if k.group == Group::Other {
                if other_leader.replace(i).is_some() {
                    return Err("a second kid in the other group: the tree's setpgid gives a child its own group or W's".into());
                }
                Self::op(&mut m, Op::Setpgid { node: n, own: true })?;
            }
            match k.start {
                Start::Live(_) => {}
                Start::Exited(c) => Self::op(
                    &mut m,
                    Op::Exit {
                        node: n,
                        code: code(c)?,
                    },
                )?,
                Start::Reaped(c) => {
                    Self::op(
                        &mut m,
                        Op::Exit {
                            node: n,
                            code: code(c)?,
                        },
                    )?;
                    let reap = Op::Wait {
                        call: WaitCall::WaitpidPid,
                        opts: O::WEXITED,
                        node: n,
                    };
                    let e = m.expect(&reap);
                    let want = WaitOutcome::Reported {
                        pid: plan_pid(i),
                        event: Event::Exited(c),
                    };
                    m.apply(&e, &StepOut::Waited(Some(want.into())))
                        .map_err(|e| format!("reaping kid {i} before the first step: {e}"))?;
                }
            }
        }
        Ok(Replay {
            row,
            sem,
            kids,
            m,
            pending: Vec::new(),
        })
    }

    /// The kid's changes in flux take effect (Step::Settle).
    fn settle(&mut self, kid: usize) -> Result<(), String> {
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(i, _)| *i == kid);
        self.pending = later;
        for (_, op) in now {
            Self::op(&mut self.m, op)?;
        }
        Ok(())
    }

    /// The node a wait call names: the kid it is about, or for a call
    /// naming a process group, a kid in that group (none in the case's own
    /// group: a node that does not exist names W's own pid and group).
    fn target(&self, call: WaitCall, about: usize, group: Group) -> Result<u8, String> {
        if !matches!(
            call,
            WaitCall::WaitidPgid | WaitCall::WaitpidNegPgid | WaitCall::Wait4NegPgid
        ) || self.kids[about].group == group
        {
            return Ok(Self::node(about));
        }
        match self.kids.iter().position(|k| k.group == group) {
            Some(i) => Ok(Self::node(i)),
            None if group == Group::Own => Ok(Self::node(self.kids.len())),
            None => Err("a call naming the other group when no kid is in it".into()),
        }
    }

    fn prediction(m: &TreeModel, op: &Op) -> Result<(Expect, Prediction), String> {
        let e = m.expect(op);
        let p = match &e {
            Expect::Wait { prediction, .. } => prediction.clone(),
            other => return Err(format!("{op}: the oracle answers {other:?}")),
        };
        Ok((e, p))
    }

    /// A wait step: the oracle's prediction before the changes in flux and
    /// after them against the plan's; then the plan's outcome is applied.
    fn wait(&mut self, v: &mut Verdicts, w: &PlannedWait) -> Result<(), String> {
        let op = Op::Wait {
            call: w.call,
            opts: w.opts,
            node: self.target(w.call, w.about, w.group)?,
        };
        let what = format!(
            "step {} {}",
            w.step + 1,
            w.call.spell(effective_opts(w.call, O(w.opts)))
        );
        let (e, before) = Self::prediction(&self.m, &op)?;
        let mut after_m = self.m.clone();
        for (_, o) in &self.pending {
            Self::op(&mut after_m, *o)?;
        }
        let (e_after, after) = Self::prediction(&after_m, &op)?;
        if self.pending.is_empty() {
            v.check(self.row, self.sem, &what, &before, oracle(&w.before));
        } else {
            v.check(
                self.row,
                self.sem,
                &format!("{what} (before the changes in flux)"),
                &before,
                oracle(&w.before),
            );
            v.check(
                self.row,
                self.sem,
                &format!("{what} (after the changes in flux)"),
                &after,
                oracle(&w.after),
            );
        }
        let Some(took) = w.took else { return Ok(()) };
        let e = if w.settles {
            self.m = after_m;
            self.pending.clear();
            e_after
        } else {
            e
        };
        self.m
            .apply(&e, &StepOut::Waited(Some(took.into())))
            .map_err(|e| format!("{what}: the plan goes on with {took}: {e}"))
    }

    fn run(
        &mut self,
        v: &mut Verdicts,
        steps: &[Step],
        waits: &[PlannedWait],
    ) -> Result<(), String> {
        let mut waits = waits.iter();
        for (idx, st) in steps.iter().enumerate() {
            match *st {
                Step::Wait { .. } => {
                    let w = waits
                        .next()
                        .filter(|w| w.step == idx)
                        .ok_or("the plan lost a wait step")?;
                    self.wait(v, w)?;
                }
                Step::Release(i) => self.pending.push((
                    i,
                    Op::Exit {
                        node: Self::node(i),
                        code: code(kid_code(&self.kids[i]))?,
                    },
                )),
                Step::Signal(i, sig) => {
                    let node = Self::node(i);
                    let op = match sig {
                        libc::SIGKILL => Op::Kill { node },
                        libc::SIGSTOP => Op::Stop { node },
                        libc::SIGCONT => Op::Cont { node },
                        _ => return Err(format!("signal {sig}")),
                    };
                    self.pending.push((i, op));
                }
                Step::Settle(i) => self.settle(i)?,
                // The tree has no pidfds; a waitid(P_PIDFD) after it opens a new one.
                Step::DropPidfd(_) => {}
                Step::BlockInThread { .. } => return Err("blocked in a thread".into()),
            }
        }
        Ok(())
    }
}

fn kid_code(k: &KidSpec) -> i32 {
    match k.start {
        Start::Exited(c) | Start::Live(c) | Start::Reaped(c) => c,
    }
}

fn code(c: i32) -> Result<u8, String> {
    u8::try_from(c).map_err(|_| format!("exit code {c}"))
}

/// At least this many grid rows (call x situation x variant) are compared,
/// each under both semantics, with at least this many wait-step comparisons.
const GRID_ROWS_FLOOR: usize = 456;
const GRID_CHECKS_FLOOR: usize = 1328;

/// Every row of the wait grid (`spec::generic`, `spec::focused`, as
/// `spec::grid::cases` builds them), its tree and script told as the fuzz
/// oracle's ops: for every wait step, the oracle predicts what the row's
/// plan (`spec::grid::plan`, the model over `Kin`s) predicts. Rows whose
/// dimensions the tree cannot express are listed in [`excluded`].
#[test]
fn grid_rows() {
    type Table = (&'static str, &'static [WaitCall], fn() -> Vec<Situation>);
    let tables: [Table; 2] = [
        ("generic", &WaitCall::GENERIC, generic::situations),
        ("focused", &WaitCall::FOCUSED, focused::situations),
    ];
    let mut v = Verdicts::default();
    let mut compared = BTreeSet::new();
    let mut left_out: Vec<String> = Vec::new();
    let mut wrong_list = Vec::new();
    for (group, calls, situations) in tables {
        for &call in calls {
            for sit in situations() {
                if sit.needs_options && !call.takes_options() {
                    continue;
                }
                for var in Variant::ALL {
                    let row = format!("{group}::{}::{}::{}", call.id(), sit.id, var.id());
                    let steps = (sit.steps)(call, var);
                    let listed = excluded(group, sit.id, var);
                    let found = unexpressible(&sit, var, &steps, call);
                    if listed != found {
                        wrong_list.push(format!(
                            "{row}: listed as {listed:?}, its dimensions say {found:?}"
                        ));
                        continue;
                    }
                    if let Some(why) = listed {
                        left_out.push(format!("{row}: {why}"));
                        continue;
                    }
                    let plan = plan(call, &sit, var);
                    for sem in ALL {
                        let r = Replay::start(&row, sem, &sit.kids, var)
                            .and_then(|mut r| r.run(&mut v, &steps, &plan.waits));
                        if let Err(e) = r {
                            // the row stops here; it fails with the disagreements
                            v.disagree.push(format!(
                                "{row} [{sem}]: the oracle cannot follow the row: {e}"
                            ));
                        }
                    }
                    compared.insert(row);
                }
            }
        }
    }
    assert!(
        wrong_list.is_empty(),
        "the exclusion list is wrong:\n{}",
        wrong_list.join("\n")
    );
    if std::env::var_os("GRID_AGREEMENT").is_some() {
        eprintln!(
            "{} rows compared, {} checks; left out:\n{}",
            compared.len(),
            v.checked,
            left_out.join("\n")
        );
    }
    let checked = v.checked;
    v.finish();
    assert!(
        compared.len() >= GRID_ROWS_FLOOR,
        "only {} grid rows compared (floor {GRID_ROWS_FLOOR})",
        compared.len()
    );
    assert!(
        checked >= GRID_CHECKS_FLOOR,
        "only {checked} wait steps compared (floor {GRID_CHECKS_FLOOR})"
    );
}

/// Compares each of `rows` for both subjects under both semantics: `case`
/// tells, for the row's data, the subject and the semantics, the oracle's
/// prediction and the table's answer for the row `{name}::{subject}`.
fn compare_rows<R: Copy>(
    rows: &[(&str, R)],
    mut case: impl FnMut(R, Subject, Semantics) -> (Prediction, WaitOutcome),
) {
    let mut v = Verdicts::default();
    for &(name, data) in rows {
        for s in Subject::BOTH {
            let row = format!("{name}::{}", s.variant());
            for sem in ALL {
                let (p, want) = case(data, s, sem);
                v.check(&row, sem, "", &p, one_of(&[want]));
            }
        }
    }
    v.finish();
}

/// reparent::subreaper::*, reparent::pidns_init::orphan_generic_wait: a
/// plain middle process makes the subject G and exits; G goes to the
/// waiter (a subreaper; a pid-namespace init finds orphans the same way,
/// find_new_reaper), which reaps the middle and then asks waitid(P_ALL).
#[test]
fn reparent_rows() {
    let rows = [
        ("reparent::subreaper::zombie_orphan_generic_wait", true),
        ("reparent::subreaper::live_orphan_generic_wait", false),
        ("reparent::pidns_init::orphan_generic_wait", true),
    ];
    compare_rows(&rows, |zombie_first, s, sem| {
        let mut x = Sit::new(sem);
        x.subreaper();
        let m = x.spawn(Creator::Waiter, false);
        let g = x.spawn(Creator::Node(m), s.hidden());
        if zombie_first {
            x.exit(g, 5);
        }
        x.exit(m, 0);
        x.focused(m, O::WEXITED);
        if !zombie_first {
            x.exit(g, 5);
        }
        let want = open::expected_generic_under(
            sem,
            reparent::orphan_lineage(s.hidden()),
            x.pid(g),
            Event::Exited(5),
        );
        (
            x.predict(WaitCall::WaitidAll, O::WEXITED | O::WNOHANG, g),
            want,
        )
    });
}

/// open::descendants::grandchild_generic_wait,
/// open::threads::thread_child_generic_wait (threads are not in the tree:
/// a child made by any thread is the process's), and the autoreap forms
/// (mainline's, plain): the waiter is a job made as the subject, with a
/// plain child of its own that exits.
#[test]
fn descendant_rows() {
    let rows = [
        (
            "open::descendants::grandchild_generic_wait",
            (WaitCall::WaitidAll, O::WEXITED | O::WNOHANG),
        ),
        (
            "open::threads::thread_child_generic_wait",
            (WaitCall::WaitpidAny, O::WNOHANG),
        ),
    ];
    compare_rows(&rows, |(call, opts), s, sem| {
        let job = Lineage {
            wait_pid_flag: s.hidden(),
            ..Lineage::default()
        };
        let mut x = Sit::below(sem, job);
        let c = x.spawn(Creator::Waiter, false);
        x.exit(c, 6);
        let want = open::expected_generic_under(
            sem,
            open::own_child_lineage(job.marked(sem)),
            x.pid(c),
            Event::Exited(6),
        );
        (x.predict(call, opts, c), want)
    });
}

/// What happens to the case process's own subject child before the
/// generic call of an `own_child_state_rows` row.
#[derive(Clone, Copy)]
enum Before {
    /// it execs, then exits with 33
    ExecExit,
    /// it exits with 3
    Exit,
    /// it stops
    Stop,
    /// it stops, the stop is collected, it continues
    StopContinue,
}

/// open::execve::child_execs, open::stop::generic_wstopped,
/// open::stop::generic_wcontinued, open::wnowait::generic_peek: the case
/// process's own subject child, after execve, a stop, a continue.
#[test]
fn own_child_state_rows() {
    let rows = [
        ("open::execve::child_execs", Before::ExecExit),
        ("open::wnowait::generic_peek", Before::Exit),
        ("open::stop::generic_wstopped", Before::Stop),
        ("open::stop::generic_wcontinued", Before::StopContinue),
    ];
    compare_rows(&rows, |before, s, sem| {
        let mut x = Sit::new(sem);
        let k = x.spawn(Creator::Waiter, s.hidden());
        let (call, opts, ev) = match before {
            Before::ExecExit => {
                x.exec(k);
                x.exit(k, 33);
                let opts = O::WEXITED | O::WNOHANG | O::WNOWAIT;
                (WaitCall::WaitidAll, opts, Event::Exited(33))
            }
            Before::Exit => {
                x.exit(k, 3);
                let opts = O::WEXITED | O::WNOWAIT | O::WNOHANG;
                (WaitCall::WaitidAll, opts, Event::Exited(3))
            }
            Before::Stop => {
                x.stop(k);
                let opts = O::WSTOPPED | O::WNOHANG;
                (WaitCall::WaitidAll, opts, Event::Stopped(libc::SIGSTOP))
            }
            Before::StopContinue => {
                x.stop(k);
                x.focused(k, O::WSTOPPED);
                x.cont(k);
                let opts = O::WCONTINUED | O::WNOHANG;
                (WaitCall::WaitpidAny, opts, Event::Continued)
            }
        };
        let want = open::generic_sees(s, x.pid(k), ev);
        (x.predict(call, opts, k), want)
    });
}

/// open::ptrace::tracer_generic_wall_wait, open::ptrace::tracer_focused_wall_wait:
/// a tracer with no children of its own attaches to the subject child of
/// another process (here: the orphan of the waiter's reaped child; neither
/// semantics cares who the tracee's parent is) and waits with __WALL.
#[test]
fn ptrace_rows() {
    let rows = [
        (
            "open::ptrace::tracer_generic_wall_wait",
            WaitCall::WaitpidAny,
        ),
        (
            "open::ptrace::tracer_focused_wall_wait",
            WaitCall::WaitpidPid,
        ),
    ];
    compare_rows(&rows, |call, s, sem| {
        let mut x = Sit::new(sem);
        let m = x.spawn(Creator::Waiter, false);
        let k = x.spawn(Creator::Node(m), s.hidden());
        x.exit(m, 0);
        x.focused(m, O::WEXITED);
        let p =
            x.t.tracer_wait(call, O(O::WALL), k)
                .expect("inside the model");
        let want = open::tracer_expects(sem, open::subject_lineage(s), call, x.pid(k));
        (p, want)
    });
}

/// The comparison itself can fail: a table answer that differs from the
/// oracle's is reported (guards against a check that always passes).
#[test]
fn a_disagreement_is_reported() {
    let mut v = Verdicts::default();
    let mut x = Sit::new(Semantics::Design);
    let k = x.spawn(Creator::Waiter, true);
    x.exit(k, 3);
    let p = x.predict(WaitCall::WaitidAll, O::WEXITED | O::WNOHANG, k);
    v.check(
        "generic::waitid_all::lone_exited_nohang::hidden",
        Semantics::Design,
        "",
        &p,
        one_of(&[reported(x.pid(k), Event::Exited(3))]),
    );
    assert_eq!(v.disagree.len(), 1, "{:?}", v.disagree);
}
