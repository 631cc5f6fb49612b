//! The fuzz oracle and the case table agree: each table situation about who
//! sees a child (generic and focused waits, reparenting, a hidden child's
//! descendants, execve, stop/continue, ptrace) is told as a sequence of the process-tree
//! model's operations ([`Tree`], the model the `wait_sequence` target's
//! oracle runs: `fuzzing::tree::TreeModel` maps each fuzz op onto the same
//! [`Tree`] method), and the tree's prediction for the row's wait call must
//! be what the row expects. The row's expectation is taken from the table's
//! own functions (`spec::open::expected_generic_under`, `generic_sees`,
//! `tracer_expects`, `spec::reparent::orphan_lineage`, ...), for both
//! [`Semantics`] where the row's expectation depends on it. The generic and
//! focused rows state their answers inline in `spec::generic::run` and
//! `spec::focused::run`; they are transcribed here, row by row, until those
//! rows take them from the model.
//! Every row named here must exist in the table (`spec::all()`).

use std::collections::BTreeSet;

use super::tree::{Creator, Expect, Tree, TreeConfig};
use super::{Caller, KernelFeatures, Lineage, Prediction, Semantics};
use crate::harness::Subject;
use crate::spec::{open, reparent};
use crate::sys::wait::{Event, WaitCall, WaitOpts as O, WaitOutcome};
use crate::sys::Errno;

const BIT: u64 = 1 << 40;
const ALL: [Semantics; 2] = [Semantics::Design, Semantics::Seed];

fn cfg(semantics: Semantics) -> TreeConfig {
    TreeConfig {
        features: KernelFeatures::new((6, 12), Some(BIT)),
        caller: Caller { root: true, ns_init: false, ns_level: 0 },
        spawn_bit: BIT,
        sh: true,
        semantics,
    }
}

/// A situation being built: every operation must be inside the model (no
/// skip) and is answered as the model says.
struct Sit {
    t: Tree,
}

impl Sit {
    fn new(sem: Semantics) -> Sit {
        Sit { t: Tree::new(cfg(sem), 1000) }
    }
    /// The waiter is itself its parent's child made as `lineage` says.
    fn below(sem: Semantics, lineage: Lineage) -> Sit {
        Sit { t: Tree::below(cfg(sem), 1000, lineage) }
    }
    fn step(&mut self, e: Expect) {
        assert!(!matches!(e, Expect::Skip(_)), "situation leaves the model: {e:?}");
        let o = self.t.model_answer(&e, 1001 + self.t.node_count() as i32);
        self.t.apply(&e, &o).unwrap_or_else(|m| panic!("the model disagrees with itself: {m:?}"));
    }
    fn spawn(&mut self, by: Creator, hidden: bool) -> usize {
        let e = self.t.spawn(by, hidden);
        assert!(matches!(e, Expect::Spawn { verdict: super::Verdict::Created, .. }), "{e:?}");
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
            Expect::Wait { prediction: Prediction::OneOf(v), .. } if matches!(v[..], [WaitOutcome::Reported { .. }]) => {}
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
            self.disagree.push(format!("{row} [{sem}] {what}: oracle {m:?}, table {table:?}"));
        }
    }
    fn finish(self) {
        assert!(self.checked > 0, "nothing compared");
        let table: BTreeSet<String> = crate::spec::all().into_iter().map(|c| c.name).collect();
        let missing: Vec<&String> = self.names.iter().filter(|n| !table.contains(*n)).collect();
        assert!(missing.is_empty(), "rows named here but not in the table: {missing:?}");
        assert!(self.disagree.is_empty(), "{} of {} comparisons disagree:\n{}", self.disagree.len(), self.checked, self.disagree.join("\n"));
    }
}

fn reported(pid: i32, ev: Event) -> WaitOutcome {
    WaitOutcome::Reported { pid, event: ev }
}
const ECHILD: WaitOutcome = WaitOutcome::Failed(Errno::ECHILD);

/// generic::<call>::<situation>::<variant>: the answers `spec::generic::run`
/// asserts (the subject is the case process's own child, so both semantics
/// give the same answer).
#[test]
fn generic_rows() {
    let mut v = Verdicts::default();
    let situations = ["lone_exited", "lone_live", "sibling_exited", "sibling_live", "sibling_reaped"];
    for call in WaitCall::GENERIC {
        for sit in situations {
            for nohang in [true, false] {
                if nohang && !call.takes_options() {
                    continue;
                }
                for s in Subject::BOTH {
                    let h = s.hidden();
                    let row = format!("generic::{}::{sit}_{}::{}", call.id(), if nohang { "nohang" } else { "block" }, s.variant());
                    let opts = O::WEXITED | if nohang { O::WNOHANG } else { 0 };
                    for sem in ALL {
                        let mut x = Sit::new(sem);
                        let a = x.spawn(Creator::Waiter, h);
                        let (pa, ea) = (x.pid(a), Event::Exited(3));
                        match sit {
                            "lone_exited" => {
                                x.exit(a, 3);
                                let want = if h { one_of(&[ECHILD]) } else { one_of(&[reported(pa, ea)]) };
                                v.check(&row, sem, "", &x.predict(call, opts, a), want);
                            }
                            "lone_live" => {
                                let want = match (h, nohang) {
                                    (true, _) => one_of(&[ECHILD]),
                                    (false, true) => one_of(&[WaitOutcome::NothingReady]),
                                    // it waits for the child...
                                    (false, false) => Row::Blocks,
                                };
                                v.check(&row, sem, "alive", &x.predict(call, opts, a), want);
                                if !h && !nohang {
                                    // ...and reports it once released.
                                    x.exit(a, 3);
                                    v.check(&row, sem, "released", &x.predict(call, opts, a), one_of(&[reported(pa, ea)]));
                                }
                            }
                            "sibling_exited" | "sibling_reaped" => {
                                x.exit(a, 3);
                                let b = x.spawn(Creator::Waiter, false);
                                x.exit(b, 4);
                                let pb = x.pid(b);
                                let want = if sit == "sibling_reaped" {
                                    x.focused(b, O::WEXITED);
                                    if h { one_of(&[ECHILD]) } else { one_of(&[reported(pa, ea)]) }
                                } else if h {
                                    one_of(&[reported(pb, Event::Exited(4))])
                                } else {
                                    one_of(&[reported(pa, ea), reported(pb, Event::Exited(4))])
                                };
                                v.check(&row, sem, "", &x.predict(call, opts, a), want);
                            }
                            "sibling_live" => {
                                x.exit(a, 3);
                                let b = x.spawn(Creator::Waiter, false);
                                let pb = x.pid(b);
                                if nohang {
                                    let want = if h { one_of(&[WaitOutcome::NothingReady]) } else { one_of(&[reported(pa, ea)]) };
                                    v.check(&row, sem, "", &x.predict(call, opts, a), want);
                                } else {
                                    if h {
                                        // it waits for the live sibling...
                                        v.check(&row, sem, "sibling alive", &x.predict(call, opts, a), Row::Blocks);
                                    }
                                    // ...released, it reports it (a plain subject: either).
                                    x.exit(b, 4);
                                    let want = if h {
                                        one_of(&[reported(pb, Event::Exited(4))])
                                    } else {
                                        one_of(&[reported(pa, ea), reported(pb, Event::Exited(4))])
                                    };
                                    v.check(&row, sem, "sibling released", &x.predict(call, opts, a), want);
                                }
                            }
                            _ => unreachable!(),
                        }
                    }
                }
            }
        }
    }
    v.finish();
}

/// focused::<call>::<situation>::<variant>: the answers `spec::focused::run`
/// asserts, step by step (killed_sigterm is left out: the tree kills with
/// SIGKILL only; pidfd_closed is exit_code with a fresh pidfd).
#[test]
fn focused_rows() {
    let mut v = Verdicts::default();
    for call in WaitCall::FOCUSED {
        for s in Subject::BOTH {
            for sem in ALL {
                let var = s.variant();
                let row = |sit: &str| format!("focused::{}::{sit}::{var}", call.id());
                let new = |x: &mut Sit| x.spawn(Creator::Waiter, s.hidden());
                // each step: the prediction, then the model's own answer applied
                let w = |v: &mut Verdicts, x: &mut Sit, row: &str, what: &str, k: usize, opts: u32, want: &[WaitOutcome]| {
                    v.check(row, sem, what, &x.predict(call, opts, k), one_of(want));
                    let e = x.t.wait(call, O(opts), k);
                    x.step(e);
                };
                for sit in ["exit_code", "pidfd_closed", "wnothread_own_child"] {
                    let mut x = Sit::new(sem);
                    let k = new(&mut x);
                    x.exit(k, 7);
                    let opts = O::WEXITED | if sit == "wnothread_own_child" { O::WNOTHREAD } else { 0 };
                    let want = [reported(x.pid(k), Event::Exited(7))];
                    w(&mut v, &mut x, &row(sit), "", k, opts, &want);
                }
                let mut x = Sit::new(sem);
                let k = new(&mut x);
                let e = x.t.kill(k);
                x.step(e);
                let want = [reported(x.pid(k), Event::Killed(libc::SIGKILL))];
                w(&mut v, &mut x, &row("killed_sigkill"), "", k, O::WEXITED, &want);

                let mut x = Sit::new(sem);
                let k = new(&mut x);
                w(&mut v, &mut x, &row("live_nohang"), "", k, O::WEXITED | O::WNOHANG, &[WaitOutcome::NothingReady]);

                let mut x = Sit::new(sem);
                let k = new(&mut x);
                let pk = x.pid(k);
                x.stop(k);
                w(&mut v, &mut x, &row("stop_continue_exit"), "stopped", k, O::WSTOPPED, &[reported(pk, Event::Stopped(libc::SIGSTOP))]);
                x.cont(k);
                w(&mut v, &mut x, &row("stop_continue_exit"), "continued", k, O::WCONTINUED, &[reported(pk, Event::Continued)]);
                x.exit(k, 7);
                w(&mut v, &mut x, &row("stop_continue_exit"), "exited", k, O::WEXITED, &[reported(pk, Event::Exited(7))]);

                let mut x = Sit::new(sem);
                let k = new(&mut x);
                let pk = x.pid(k);
                x.exit(k, 7);
                if call.is_waitid() {
                    for what in ["first peek", "second peek"] {
                        w(&mut v, &mut x, &row("wnowait_peek"), what, k, O::WEXITED | O::WNOWAIT, &[reported(pk, Event::Exited(7))]);
                    }
                    w(&mut v, &mut x, &row("wnowait_peek"), "reap", k, O::WEXITED, &[reported(pk, Event::Exited(7))]);
                } else {
                    w(&mut v, &mut x, &row("wnowait_peek"), "", k, O::WNOWAIT, &[WaitOutcome::Failed(Errno::EINVAL)]);
                }

                let mut x = Sit::new(sem);
                let k = new(&mut x);
                let pk = x.pid(k);
                x.exit(k, 7);
                w(&mut v, &mut x, &row("reaped_then_echild"), "reap", k, O::WEXITED, &[reported(pk, Event::Exited(7))]);
                w(&mut v, &mut x, &row("reaped_then_echild"), "again", k, O::WEXITED | O::WNOHANG, &[ECHILD]);
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
    let mut v = Verdicts::default();
    let rows = [
        ("reparent::subreaper::zombie_orphan_generic_wait", true),
        ("reparent::subreaper::live_orphan_generic_wait", false),
        ("reparent::pidns_init::orphan_generic_wait", true),
    ];
    for (row, zombie_first) in rows {
        for s in Subject::BOTH {
            let row = format!("{row}::{}", s.variant());
            for sem in ALL {
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
                let want = open::expected_generic_under(sem, reparent::orphan_lineage(s.hidden()), x.pid(g), Event::Exited(5));
                v.check(&row, sem, "", &x.predict(WaitCall::WaitidAll, O::WEXITED | O::WNOHANG, g), one_of(&[want]));
            }
        }
    }
    v.finish();
}

/// open::descendants::grandchild_generic_wait,
/// open::threads::thread_child_generic_wait (threads are not in the tree:
/// a child made by any thread is the process's), and the autoreap forms
/// (mainline's, plain): the waiter is a job made as the subject, with a
/// plain child of its own that exits.
#[test]
fn descendant_rows() {
    let mut v = Verdicts::default();
    let rows = [
        ("open::descendants::grandchild_generic_wait", WaitCall::WaitidAll, O::WEXITED | O::WNOHANG),
        ("open::threads::thread_child_generic_wait", WaitCall::WaitpidAny, O::WNOHANG),
    ];
    for (row, call, opts) in rows {
        for s in Subject::BOTH {
            let row = format!("{row}::{}", s.variant());
            for sem in ALL {
                let job = Lineage { wait_pid_flag: s.hidden(), ..Lineage::default() };
                let mut x = Sit::below(sem, job);
                let c = x.spawn(Creator::Waiter, false);
                x.exit(c, 6);
                let want = open::expected_generic_under(sem, open::own_child_lineage(job.marked(sem)), x.pid(c), Event::Exited(6));
                v.check(&row, sem, "", &x.predict(call, opts, c), one_of(&[want]));
            }
        }
    }
    v.finish();
}

/// open::execve::child_execs, open::stop::generic_wstopped,
/// open::stop::generic_wcontinued, open::wnowait::generic_peek: the case
/// process's own subject child, after execve, a stop, a continue.
#[test]
fn own_child_state_rows() {
    let mut v = Verdicts::default();
    for s in Subject::BOTH {
        for sem in ALL {
            let var = s.variant();
            let mut x = Sit::new(sem);
            let k = x.spawn(Creator::Waiter, s.hidden());
            x.exec(k);
            x.exit(k, 33);
            let want = open::generic_sees(s, x.pid(k), Event::Exited(33));
            let p = x.predict(WaitCall::WaitidAll, O::WEXITED | O::WNOHANG | O::WNOWAIT, k);
            v.check(&format!("open::execve::child_execs::{var}"), sem, "", &p, one_of(&[want]));

            let mut x = Sit::new(sem);
            let k = x.spawn(Creator::Waiter, s.hidden());
            x.exit(k, 3);
            let want = open::generic_sees(s, x.pid(k), Event::Exited(3));
            let p = x.predict(WaitCall::WaitidAll, O::WEXITED | O::WNOWAIT | O::WNOHANG, k);
            v.check(&format!("open::wnowait::generic_peek::{var}"), sem, "", &p, one_of(&[want]));

            let mut x = Sit::new(sem);
            let k = x.spawn(Creator::Waiter, s.hidden());
            x.stop(k);
            let want = open::generic_sees(s, x.pid(k), Event::Stopped(libc::SIGSTOP));
            let p = x.predict(WaitCall::WaitidAll, O::WSTOPPED | O::WNOHANG, k);
            v.check(&format!("open::stop::generic_wstopped::{var}"), sem, "", &p, one_of(&[want]));

            let mut x = Sit::new(sem);
            let k = x.spawn(Creator::Waiter, s.hidden());
            x.stop(k);
            x.focused(k, O::WSTOPPED);
            x.cont(k);
            let want = open::generic_sees(s, x.pid(k), Event::Continued);
            let p = x.predict(WaitCall::WaitpidAny, O::WCONTINUED | O::WNOHANG, k);
            v.check(&format!("open::stop::generic_wcontinued::{var}"), sem, "", &p, one_of(&[want]));
        }
    }
    v.finish();
}

/// open::ptrace::tracer_generic_wall_wait, open::ptrace::tracer_focused_wall_wait:
/// a tracer with no children of its own attaches to the subject child of
/// another process (here: the orphan of the waiter's reaped child; neither
/// semantics cares who the tracee's parent is) and waits with __WALL.
#[test]
fn ptrace_rows() {
    let mut v = Verdicts::default();
    let rows = [("open::ptrace::tracer_generic_wall_wait", WaitCall::WaitpidAny), ("open::ptrace::tracer_focused_wall_wait", WaitCall::WaitpidPid)];
    for (row, call) in rows {
        for s in Subject::BOTH {
            let row = format!("{row}::{}", s.variant());
            for sem in ALL {
                let mut x = Sit::new(sem);
                let m = x.spawn(Creator::Waiter, false);
                let k = x.spawn(Creator::Node(m), s.hidden());
                x.exit(m, 0);
                x.focused(m, O::WEXITED);
                let p = x.t.tracer_wait(call, O(O::WALL), k).expect("inside the model");
                let want = open::tracer_expects(sem, open::subject_lineage(s), call, x.pid(k));
                v.check(&row, sem, "", &p, one_of(&[want]));
            }
        }
    }
    v.finish();
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
    v.check("generic::waitid_all::lone_exited_nohang::hidden", Semantics::Design, "", &p, one_of(&[reported(x.pid(k), Event::Exited(3))]));
    assert_eq!(v.disagree.len(), 1, "{:?}", v.disagree);
}
