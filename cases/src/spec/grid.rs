//! The wait grid: rows as data. A row is a small process tree (which
//! children exist, plain or made with the row's variant, which thread made
//! each, which process group each is in, how each starts), a short script of
//! steps (wait calls, releases, signals) and a variant:
//!
//! - `plain`: the subject child is made with CLONE_PIDFD;
//! - `hidden`: with CLONE_PIDFD|CLONE_WAIT_PID;
//! - `autoreap`: with CLONE_PIDFD|CLONE_AUTOREAP, exit_signal 0 (7.1+).
//!
//! Siblings are always plain. What every wait step must answer comes from
//! the model (`model::predict_wait_from` over `model::Kin`), never from the
//! row: the engine keeps the model's view of the children in step with what
//! it does (a release or a signal is "in flux" until a call or a pidfd poll
//! settles it: a call made while a change is in flux may see the tree
//! before or after it), compares each outcome with the prediction, and at
//! the end checks that every zombie the model still counts is there for a
//! focused WNOWAIT peek, that every child the model counts as gone is no
//! zombie, and reaps everything by pidfd (an autoreap child's end comes from
//! PIDFD_INFO_EXIT).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::model::{
    autoreaped_on_exit, hidden_from_waiter, kin_after_wait, kin_exits, kin_signalled,
    predict_wait_from, why_not_considered, ChildState, ChildView, KernelFeatures, Kin, Lineage,
    Prediction, Selector, Semantics,
};
use crate::sys::clone::{clone3, flags::*, pipe, Clone3Request, Program};
use crate::sys::signal as sig;
use crate::sys::wait::{
    wait, Event, WaitCall, WaitOpts as O, WaitOutcome, WaitTarget, WAIT_SYSCALL_NUMBERS,
};
use crate::sys::{io, pidfd, pidfd_info, process, Errno};

/// How the subject child is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    Plain,
    Hidden,
    Autoreap,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Hidden, Variant::Plain, Variant::Autoreap];

    pub fn id(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::Hidden => "hidden",
            Variant::Autoreap => "autoreap",
        }
    }

    /// What the variant needs before it can run.
    pub fn need(self) -> Option<Need> {
        match self {
            Variant::Plain => None,
            Variant::Hidden => Some(Need::Feature),
            Variant::Autoreap => Some(Need::MinKernel(7, 1)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// made as the row's variant says
    Subject,
    /// always plain
    Sibling,
}

/// Which thread of the case process makes a child or a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    Main,
    /// a second thread of the case process, alive for the whole row
    Thread,
}

impl By {
    fn thread(self) -> u32 {
        match self {
            By::Main => 0,
            By::Thread => 1,
        }
    }
}

/// A child's process group: the case's own, or one other group (the first
/// child put there leads it; setpgid by the parent before the child exits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    Own,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// exited with this code, not reaped, before the first step
    Exited(i32),
    /// alive (blocked on a pipe) until released, then exits with this code
    Live(i32),
    /// exited and reaped (focused) before the first step
    Reaped(i32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KidSpec {
    pub role: Role,
    pub by: By,
    pub group: Group,
    pub start: Start,
}

impl KidSpec {
    pub const fn subject(start: Start) -> KidSpec {
        KidSpec {
            role: Role::Subject,
            by: By::Main,
            group: Group::Own,
            start,
        }
    }
    pub const fn sibling(start: Start) -> KidSpec {
        KidSpec {
            role: Role::Sibling,
            by: By::Main,
            group: Group::Own,
            start,
        }
    }
    pub const fn by_thread(self) -> KidSpec {
        KidSpec {
            by: By::Thread,
            ..self
        }
    }
    pub const fn in_other_group(self) -> KidSpec {
        KidSpec {
            group: Group::Other,
            ..self
        }
    }
    fn code(self) -> i32 {
        match self.start {
            Start::Exited(c) | Start::Live(c) | Start::Reaped(c) => c,
        }
    }
}

/// One step of a row's script. Kids are named by their index in the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A wait call (`None`: the row's call) by thread `from` with these
    /// options; a focused call names kid `about`, a group call names `group`.
    Wait {
        call: Option<WaitCall>,
        opts: u32,
        about: usize,
        group: Group,
        from: By,
    },
    /// let a live kid exit (in flux until settled)
    Release(usize),
    /// send a signal to a kid (in flux until settled)
    Signal(usize, i32),
    /// poll the kid's pidfd until it has exited: its pending changes hold
    Settle(usize),
    /// close the kid's pidfd (a pidfd call opens a new one with pidfd_open)
    DropPidfd(usize),
    /// the row's call (blocking, `opts`) made in the second thread; it is
    /// checked after every later Settle: while the model says it blocks it
    /// must not have returned; once the model says it returns, it is joined
    /// and its outcome compared
    BlockInThread { opts: u32, group: Group },
}

/// The row's call about the subject, by the main thread, own group.
pub fn call(opts: u32) -> Step {
    Step::Wait {
        call: None,
        opts,
        about: 0,
        group: Group::Own,
        from: By::Main,
    }
}
/// The row's call naming the other process group.
pub fn call_other_group(opts: u32) -> Step {
    Step::Wait {
        call: None,
        opts,
        about: 0,
        group: Group::Other,
        from: By::Main,
    }
}
/// The row's call made by the second thread.
pub fn call_in_thread(opts: u32) -> Step {
    Step::Wait {
        call: None,
        opts,
        about: 0,
        group: Group::Own,
        from: By::Thread,
    }
}
/// Another call about the subject.
pub fn call_as(call: WaitCall, opts: u32, group: Group) -> Step {
    Step::Wait {
        call: Some(call),
        opts,
        about: 0,
        group,
        from: By::Main,
    }
}
/// The focused WNOWAIT peek (waitid(P_PIDFD, WEXITED|WNOHANG|WNOWAIT|__WALL)).
pub fn peek(kid: usize) -> Step {
    Step::Wait {
        call: Some(WaitCall::WaitidPidfd),
        opts: PEEK,
        about: kid,
        group: Group::Own,
        from: By::Main,
    }
}
pub const PEEK: u32 = O::WEXITED | O::WNOHANG | O::WNOWAIT | O::WALL;

/// Whether hiding the subject may change what the row's calls answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hiding {
    /// it must: for every call that selects the subject, the hidden and
    /// plain variants predict different outcomes (else the row cannot fail
    /// on a kernel that ignores the flag)
    Shows,
    /// it must not: hidden and plain predict the same
    Invisible,
}

/// A situation: the tree, the script, and what it is for.
pub struct Situation {
    pub id: &'static str,
    pub kids: Vec<KidSpec>,
    pub steps: fn(WaitCall, Variant) -> Vec<Step>,
    pub hiding: Hiding,
    /// needs a call that takes options (not wait())
    pub needs_options: bool,
}

/// A group's situations as a table, one row a line (kselftest's
/// `FIXTURE_VARIANT_ADD`): `id, [kids], hiding, steps[, needs_options];`,
/// `hiding` a [`Hiding`] variant, `steps` a closure without captures (a
/// `fn(WaitCall, Variant) -> Vec<Step>`).
macro_rules! situations {
    (@needs_options) => {
        false
    };
    (@needs_options needs_options) => {
        true
    };
    ($($id:literal, [$($kid:expr),+ $(,)?], $hiding:ident, $steps:expr $(, $opts:ident)?;)*) => {
        vec![$($crate::spec::grid::Situation {
            id: $id,
            kids: vec![$($kid),+],
            steps: $steps,
            hiding: $crate::spec::grid::Hiding::$hiding,
            needs_options: $crate::spec::grid::situations!(@needs_options $($opts)?),
        }),*]
    };
}
pub(crate) use situations;

/// The waitid form of a wait4/waitpid call (same selection).
pub fn waitid_twin(call: WaitCall) -> WaitCall {
    match call {
        WaitCall::Wait4Any | WaitCall::WaitpidAny | WaitCall::Wait => WaitCall::WaitidAll,
        WaitCall::WaitpidNegPgid | WaitCall::Wait4NegPgid => WaitCall::WaitidPgid,
        WaitCall::WaitpidZero => WaitCall::WaitidPgidZero,
        WaitCall::WaitpidPid | WaitCall::Wait4Pid => WaitCall::WaitidPid,
        c => c,
    }
}

// ---------------------------------------------------------------------------
// The model's side: the tree as `Kin`s, and the prediction of one step.

fn options_for(call: WaitCall, opts: u32) -> O {
    if call.takes_options() {
        O(opts)
    } else {
        O(0)
    }
}

/// clone3 flags and exit signal of a kid of this variant.
fn clone_args(spec: &KidSpec, v: Variant, bit: u64) -> (u64, u64) {
    let sigchld = sig::SIGCHLD as u64;
    match (spec.role, v) {
        (Role::Sibling, _) | (Role::Subject, Variant::Plain) => (CLONE_PIDFD, sigchld),
        (Role::Subject, Variant::Hidden) => (CLONE_PIDFD | bit, sigchld),
        (Role::Subject, Variant::Autoreap) => (CLONE_PIDFD | CLONE_AUTOREAP, 0),
    }
}

/// The model's view of a freshly made, live kid.
fn kin_for(spec: &KidSpec, v: Variant, pid: i32, pgid: i32, k: &KernelFeatures, bit: u64) -> Kin {
    let (flags, exit_signal) = clone_args(spec, v, bit);
    let lineage = Lineage {
        wait_pid_flag: v == Variant::Hidden && spec.role == Role::Subject,
        ..Lineage::default()
    };
    Kin {
        view: ChildView {
            pid,
            pgid,
            hidden: hidden_from_waiter(Semantics::Design, lineage),
            sigchld: exit_signal == sig::SIGCHLD as u64,
            state: ChildState::Running,
        },
        creator: spec.by.thread(),
        autoreap: autoreaped_on_exit(flags, k),
    }
}

/// A change that has been started but not yet observed.
#[derive(Clone, Copy, Debug)]
enum Change {
    Exit(Event),
    Signal(i32),
}

/// How a change ends a kid, if it does.
fn end_of(c: Change) -> Option<Event> {
    match c {
        Change::Exit(ev) => Some(ev),
        Change::Signal(sig) if sig != sig::SIGSTOP && sig != sig::SIGCONT => {
            Some(Event::Killed(sig))
        }
        Change::Signal(_) => None,
    }
}

fn apply(state: &mut Vec<Kin>, pid: i32, c: Change) {
    match c {
        Change::Exit(ev) => {
            if state.iter().any(|k| {
                k.view.pid == pid
                    && matches!(k.view.state, ChildState::Running | ChildState::Continued)
            }) {
                kin_exits(state, pid, ev)
            }
        }
        Change::Signal(sig) => kin_signalled(state, pid, sig),
    }
}

/// Before and after the changes in flux; what a call may see.
fn predict_step(
    sel: Selector,
    thread: u32,
    opts: O,
    state: &[Kin],
    after: &[Kin],
) -> (Prediction, Prediction) {
    (
        predict_wait_from(sel, thread, opts, state),
        predict_wait_from(sel, thread, opts, after),
    )
}

fn merge(before: &Prediction, after: &Prediction) -> Prediction {
    match (before, after) {
        (Prediction::Blocks, a) => a.clone(),
        (Prediction::OneOf(b), Prediction::Blocks) => Prediction::OneOf(b.clone()),
        (Prediction::OneOf(b), Prediction::OneOf(a)) => {
            let mut v = b.clone();
            for o in a {
                if !v.contains(o) {
                    v.push(*o);
                }
            }
            Prediction::OneOf(v)
        }
    }
}

fn contains(p: &Prediction, o: &WaitOutcome) -> bool {
    matches!(p, Prediction::OneOf(v) if v.contains(o))
}

// ---------------------------------------------------------------------------
// Words: the expectation a reader sees (--list --verbose, report detail).

struct Names {
    pids: Vec<i32>,
    words: Vec<String>,
}

impl Names {
    fn of(&self, pid: i32) -> String {
        match self.pids.iter().position(|p| *p == pid) {
            Some(i) => self.words[i].clone(),
            None => format!("pid {pid}"),
        }
    }
    fn outcome(&self, o: &WaitOutcome) -> String {
        match o {
            WaitOutcome::Reported { pid, event } => {
                format!("reports {} ({event:?})", self.of(*pid))
            }
            WaitOutcome::NothingReady => "returns 0 (nothing ready)".into(),
            WaitOutcome::Failed(e) => format!("fails with {e}"),
        }
    }
    fn prediction(&self, p: &Prediction) -> String {
        match p {
            Prediction::Blocks => "blocks".into(),
            Prediction::OneOf(v) => v
                .iter()
                .map(|o| self.outcome(o))
                .collect::<Vec<_>>()
                .join(" or "),
        }
    }
}

fn kid_words(specs: &[KidSpec], v: Variant) -> Vec<String> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let base = match s.role {
                Role::Subject => format!("the {} child", v.id()),
                Role::Sibling if specs.iter().filter(|t| t.role == Role::Sibling).count() > 1 => {
                    format!("plain sibling #{i}")
                }
                Role::Sibling => "the plain sibling".to_string(),
            };
            base
        })
        .collect()
}

fn tree_words(specs: &[KidSpec], v: Variant) -> String {
    let words = kid_words(specs, v);
    specs
        .iter()
        .zip(words)
        .map(|(s, w)| {
            let st = match s.start {
                Start::Exited(c) => format!("exited ({c})"),
                Start::Live(c) => format!("alive (exits {c} when released)"),
                Start::Reaped(c) => format!("exited ({c}) and reaped"),
            };
            let by = if s.by == By::Thread {
                ", made by a second thread"
            } else {
                ""
            };
            let grp = if s.group == Group::Other {
                ", in another process group"
            } else {
                ""
            };
            format!("{w} {st}{by}{grp}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn spell(call: WaitCall, opts: u32, group: Group, from: By) -> String {
    let mut s = call.spell(options_for(call, opts));
    if group == Group::Other
        && matches!(
            call,
            WaitCall::WaitidPgid | WaitCall::WaitpidNegPgid | WaitCall::Wait4NegPgid
        )
    {
        s = s.replace("pgid", "other_pgid");
    }
    if from == By::Thread {
        s.push_str(" from the second thread");
    }
    s
}

/// The model's run of a row without a kernel: fake pids, each step taking
/// the first outcome the model allows. Gives the expectation text and the
/// predictions (for the vacuity test).
pub struct Plan {
    pub text: String,
    pub predictions: Vec<Prediction>,
    /// every `Step::Wait` of the script, as planned (the agreement test
    /// replays them on the fuzz oracle's tree)
    pub waits: Vec<PlannedWait>,
    /// for each Wait step: whether the subject was a candidate for the
    /// row's own call but for hiding (the plain variant's view)
    pub subject_selected: bool,
    /// row construction errors: a wait step the model says blocks, a
    /// thread still blocked at the end
    pub errors: Vec<String>,
}

/// One `Step::Wait` of a row's script as [`plan`] runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedWait {
    /// its index in the script
    pub step: usize,
    /// the call, resolved (the row's call where the step says `None`)
    pub call: WaitCall,
    pub opts: u32,
    pub about: usize,
    pub group: Group,
    pub from: By,
    /// the model's prediction on the tree before the changes in flux, and
    /// after all of them
    pub before: Prediction,
    pub after: Prediction,
    /// the outcome the plan goes on with (the first the model allows);
    /// None: it blocks
    pub took: Option<WaitOutcome>,
    /// whether going on with `took` settles every change in flux (the tree
    /// before them does not allow it)
    pub settles: bool,
}

/// The pid [`plan`] gives kid `i` of a row's tree.
pub const fn plan_pid(i: usize) -> i32 {
    1001 + i as i32
}

pub fn plan(call: WaitCall, sit: &Situation, v: Variant) -> Plan {
    let mut p = Planner::new(call, sit, v);
    let steps = (sit.steps)(call, v);
    for (idx, step) in steps.iter().enumerate() {
        match *step {
            Step::Wait {
                call: c,
                opts,
                about,
                group,
                from,
            } => p.wait(idx, c.unwrap_or(call), opts, about, group, from),
            Step::Release(i) => {
                let code = sit.kids[i].code();
                p.pending.push((i, Change::Exit(Event::Exited(code))));
                p.parts.push(format!("{} is released", p.names.words[i]));
            }
            Step::Signal(i, sig) => {
                p.pending.push((i, Change::Signal(sig)));
                p.parts
                    .push(format!("{} gets signal {sig}", p.names.words[i]));
            }
            Step::Settle(i) => p.settle(i),
            Step::DropPidfd(i) => {
                let words = format!("every pidfd of {} is closed", p.names.words[i]);
                p.parts.push(words)
            }
            Step::BlockInThread { opts, group } => p.block_in_thread(opts, group),
        }
    }
    p.finish()
}

/// The process group of the case process in a plan.
const PLAN_OWN_PGID: i32 = 100;
/// The other group's id in a plan when no kid is in it.
const PLAN_OTHER_PGID: i32 = 1001;

/// [`plan`]'s state while it walks the script: the kids as the model sees
/// them now, the changes not yet settled, and what the plan says so far.
struct Planner {
    call: WaitCall,
    v: Variant,
    pids: Vec<i32>,
    names: Names,
    other: i32,
    state: Vec<Kin>,
    pending: Vec<(usize, Change)>,
    parts: Vec<String>,
    predictions: Vec<Prediction>,
    blocked: Option<(Selector, O, String)>,
    subject_selected: bool,
    first_reason: Option<Option<&'static str>>,
    errors: Vec<String>,
    waits: Vec<PlannedWait>,
}

impl Planner {
    /// The kids as they start: made, in their groups, exited or reaped.
    fn new(call: WaitCall, sit: &Situation, v: Variant) -> Planner {
        let bit = 1u64 << 40;
        let k = KernelFeatures::new((7, 1), Some(bit));
        let pids: Vec<i32> = (0..sit.kids.len()).map(plan_pid).collect();
        let names = Names {
            pids: pids.clone(),
            words: kid_words(&sit.kids, v),
        };
        let mut state = Vec::new();
        let mut other_pgid = None;
        for (i, s) in sit.kids.iter().enumerate() {
            let pgid = match s.group {
                Group::Own => PLAN_OWN_PGID,
                Group::Other => *other_pgid.get_or_insert(pids[i]),
            };
            state.push(kin_for(s, v, pids[i], pgid, &k, bit));
            match s.start {
                Start::Live(_) => {}
                Start::Exited(c) => kin_exits(&mut state, pids[i], Event::Exited(c)),
                Start::Reaped(c) => {
                    kin_exits(&mut state, pids[i], Event::Exited(c));
                    state.retain(|x| x.view.pid != pids[i]);
                }
            }
        }
        Planner {
            call,
            v,
            names,
            other: other_pgid.unwrap_or(PLAN_OTHER_PGID),
            state,
            pending: Vec::new(),
            parts: vec![format!("with {}", tree_words(&sit.kids, v))],
            predictions: Vec::new(),
            blocked: None,
            subject_selected: false,
            first_reason: None,
            errors: Vec::new(),
            waits: Vec::new(),
            pids,
        }
    }

    fn selector(&self, call: WaitCall, about: usize, group: Group) -> Selector {
        let pgid = if group == Group::Other {
            self.other
        } else {
            PLAN_OWN_PGID
        };
        Selector::new(call, self.pids[about], pgid, PLAN_OWN_PGID)
    }

    /// Why the subject `subj` is (not) a candidate of `sel` from `thread`,
    /// and whether it would be as a plain child, for the text.
    fn note_subject(&mut self, sel: Selector, thread: u32, o: O, subj: &Kin) {
        let plain = Kin {
            view: ChildView {
                hidden: false,
                ..subj.view
            },
            ..*subj
        };
        self.subject_selected = why_not_considered(sel, thread, o, &plain).is_none();
        self.first_reason = Some(why_not_considered(sel, thread, o, subj));
    }

    /// A wait step (`Step::Wait`, step `idx`): predicted before and after
    /// the pending changes; what it takes is applied.
    fn wait(&mut self, idx: usize, c: WaitCall, opts: u32, about: usize, group: Group, from: By) {
        let o = options_for(c, opts);
        let sel = self.selector(c, about, group);
        let mut after = self.state.clone();
        for (i, ch) in &self.pending {
            apply(&mut after, self.pids[*i], *ch);
        }
        let (b, a) = predict_step(sel, from.thread(), o, &self.state, &after);
        let p = merge(&b, &a);
        if c == self.call && self.first_reason.is_none() {
            let subj = self
                .state
                .iter()
                .chain(after.iter())
                .find(|x| x.view.pid == self.pids[0])
                .copied();
            match subj {
                Some(subj) => self.note_subject(sel, from.thread(), o, &subj),
                None => self.first_reason = Some(None),
            }
        }
        if p == Prediction::Blocks {
            self.errors
                .push(format!("{} blocks", spell(c, opts, group, from)));
        }
        self.parts.push(format!(
            "{} {}",
            spell(c, opts, group, from),
            self.names.prediction(&p)
        ));
        self.predictions.push(p.clone());
        let mut planned = PlannedWait {
            step: idx,
            call: c,
            opts,
            about,
            group,
            from,
            before: b.clone(),
            after: a,
            took: None,
            settles: false,
        };
        if let Prediction::OneOf(v) = &p {
            let got = v[0];
            planned.took = Some(got);
            if contains(&b, &got) {
                kin_after_wait(&mut self.state, o, got);
            } else {
                planned.settles = true;
                self.state = after;
                self.pending.clear();
                kin_after_wait(&mut self.state, o, got);
            }
        }
        self.waits.push(planned);
    }

    /// `Step::Settle(i)`: kid `i`'s pending changes happen; a call blocked
    /// in the second thread is asked again.
    fn settle(&mut self, i: usize) {
        for (j, ch) in self.pending.iter().filter(|(j, _)| *j == i) {
            apply(&mut self.state, self.pids[*j], *ch);
        }
        self.pending.retain(|(j, _)| *j != i);
        self.parts
            .push(format!("{} has exited", self.names.words[i]));
        if let Some((sel, o, what)) = self.blocked.take() {
            let p = predict_wait_from(sel, By::Thread.thread(), o, &self.state);
            self.predictions.push(p.clone());
            match &p {
                Prediction::Blocks => {
                    self.parts.push(format!("{what} still blocks"));
                    self.blocked = Some((sel, o, what));
                }
                Prediction::OneOf(v) => {
                    self.parts
                        .push(format!("{what} returns and {}", self.names.prediction(&p)));
                    kin_after_wait(&mut self.state, o, v[0]);
                }
            }
        }
    }

    /// `Step::BlockInThread`: the row's call made in the second thread.
    fn block_in_thread(&mut self, opts: u32, group: Group) {
        let call = self.call;
        let o = options_for(call, opts);
        let sel = self.selector(call, 0, group);
        let what = spell(call, opts, group, By::Thread);
        let p = predict_wait_from(sel, By::Thread.thread(), o, &self.state);
        let subj = self
            .state
            .iter()
            .find(|x| x.view.pid == self.pids[0])
            .copied();
        if let Some(subj) = subj {
            self.note_subject(sel, 1, o, &subj);
        }
        self.parts
            .push(format!("{what} {}", self.names.prediction(&p)));
        self.predictions.push(p);
        self.blocked = Some((sel, o, what));
    }

    /// The plan: what is left blocked, why the subject is left out, who is
    /// still a zombie.
    fn finish(mut self) -> Plan {
        let v = self.v;
        if let Some((_, _, what)) = self.blocked.take() {
            self.errors
                .push(format!("{what} is still blocked after the last step"));
        }
        if let Some(Some(why)) = self.first_reason {
            self.parts
                .push(format!("the {} child is left out: {why}", v.id()));
        }
        let zombies: Vec<String> = self
            .state
            .iter()
            .filter(|x| matches!(x.view.state, ChildState::Zombie(_)) && x.view.hidden)
            .map(|x| self.names.of(x.view.pid))
            .collect();
        if !zombies.is_empty() {
            self.parts.push(format!(
                "afterwards {} is still a zombie for a focused wait",
                zombies.join(", ")
            ));
        }
        if v == Variant::Autoreap {
            self.parts
                .push("the autoreap child is never a zombie; PIDFD_INFO_EXIT gives its end".into());
        }
        Plan {
            text: self.parts.join("; "),
            predictions: self.predictions,
            waits: self.waits,
            subject_selected: self.subject_selected,
            errors: self.errors,
        }
    }
}

// ---------------------------------------------------------------------------
// The kernel's side.

/// A second thread of the case process that runs closures on request.
struct Worker {
    tx: Option<mpsc::Sender<Box<dyn FnOnce() + Send>>>,
    handle: Option<std::thread::JoinHandle<()>>,
    tid: i32,
}

impl Worker {
    fn start() -> Result<Worker, Stop> {
        let (tx, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let (ttx, trx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("grid-worker".into())
            .spawn(move || {
                let _ = ttx.send(crate::sys::thread::gettid());
                while let Ok(f) = rx.recv() {
                    f();
                }
            })
            .or_else(|e| broken(format!("setup: spawning a thread: {e}")))?;
        let tid = trx
            .recv()
            .or_else(|_| broken("setup: the second thread died"))?;
        Ok(Worker {
            tx: Some(tx),
            handle: Some(handle),
            tid,
        })
    }

    /// Run `f` in the thread and return at once; the result comes on the
    /// receiver, and a byte on the returned pipe when `f` has returned.
    fn submit<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<(mpsc::Receiver<R>, OwnedFd), Stop> {
        let (rtx, rrx) = mpsc::channel();
        let (done_r, done_w) = pipe();
        let job = Box::new(move || {
            let r = f();
            let _ = rtx.send(r);
            let _ = io::write(&done_w, b"x");
        });
        match self.tx.as_ref().map(|tx| tx.send(job)) {
            Some(Ok(())) => Ok((rrx, done_r)),
            _ => broken("the second thread is gone"),
        }
    }

    fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Result<R, Stop> {
        let (rx, _done) = self.submit(f)?;
        rx.recv().or_else(|_| broken("the second thread died"))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Whether a pipe has something to read right now (zero-timeout poll).
fn ready_now(fd: &OwnedFd) -> bool {
    io::readable_within(fd, 0)
}

/// Wait until thread `tid` of this process sleeps inside wait4 or waitid
/// (/proc/self/task/TID/syscall names the syscall of a blocked task). This
/// is how the row knows that the hidden child's exit happens while the
/// generic wait is already blocked, not before it starts.
fn await_blocked_in_wait(tid: i32) -> Check {
    let path = format!("/proc/self/task/{tid}/syscall");
    let nrs = WAIT_SYSCALL_NUMBERS.map(|n| n.to_string());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let s =
            std::fs::read_to_string(&path).or_else(|e| broken(format!("reading {path}: {e}")))?;
        let first = s.split_whitespace().next().unwrap_or("");
        if nrs.iter().any(|n| n == first) {
            let stat =
                std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or("");
            if state == "S" {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return broken(format!(
                "the second thread did not block in its wait call ({path}: {})",
                s.trim()
            ));
        }
        std::thread::yield_now();
    }
}

struct Child {
    spec: KidSpec,
    pid: i32,
    kid: Option<Kid>,
    /// the last end the model gave it (for PIDFD_INFO_EXIT of autoreap kids)
    end: Option<Event>,
    autoreap: bool,
}

struct Blocked {
    sel: Selector,
    opts: O,
    what: String,
    rx: mpsc::Receiver<WaitOutcome>,
    done: OwnedFd,
}

struct Run<'a> {
    ctx: &'a Ctx,
    call: WaitCall,
    kids: Vec<Child>,
    names: Names,
    state: Vec<Kin>,
    pending: Vec<(usize, Change)>,
    worker: Option<Worker>,
    other_pgid: Option<i32>,
    blocked: Option<Blocked>,
}

/// Run one row.
pub fn run(ctx: &mut Ctx, call: WaitCall, sit: &Situation, v: Variant) -> Check {
    let ctx: &Ctx = ctx;
    let needs_worker = sit.kids.iter().any(|k| k.by == By::Thread)
        || (sit.steps)(call, v).iter().any(|s| {
            matches!(
                s,
                Step::BlockInThread { .. }
                    | Step::Wait {
                        from: By::Thread,
                        ..
                    }
            )
        });
    let worker = if needs_worker {
        Some(Worker::start()?)
    } else {
        None
    };
    let mut r = Run {
        ctx,
        call,
        kids: Vec::new(),
        names: Names {
            pids: Vec::new(),
            words: kid_words(&sit.kids, v),
        },
        state: Vec::new(),
        pending: Vec::new(),
        worker,
        other_pgid: None,
        blocked: None,
    };
    let res = r
        .build(&sit.kids, v)
        .and_then(|_| r.steps(&(sit.steps)(call, v)))
        .and_then(|_| r.finish());
    if res.is_err() {
        r.force_cleanup();
    }
    res
}

impl Run<'_> {
    fn build(&mut self, specs: &[KidSpec], v: Variant) -> Check {
        // Hidden rows need the feature, so the configured bit is
        // CLONE_WAIT_PID whenever a hidden kid is made.
        let bit = self.ctx.bit();
        for (i, spec) in specs.iter().enumerate() {
            let (flags, exit_signal) = clone_args(spec, v, bit);
            let code = spec.code();
            let (r, w) = pipe();
            let req = Clone3Request::new(flags, exit_signal);
            let rfd = r.as_raw_fd();
            let kid = match spec.by {
                By::Main => self
                    .ctx
                    .spawn_with(req, Program::AwaitThenExit { fd: rfd, code })?,
                By::Thread => {
                    let worker = self.worker.as_ref().expect("worker");
                    let made = worker.run(move || {
                        clone3(&req, Program::AwaitThenExit { fd: rfd, code }).map(|sp| sp.pid)
                    })?;
                    let pid = made.or_else(|e| {
                        broken(format!(
                            "setup: clone3(flags {flags:#x}) in the second thread: {e}"
                        ))
                    })?;
                    Kid::adopt(pid)?
                }
            };
            drop(r);
            let kid = kid.with_release(w);
            let pid = kid.pid;
            let pgid = match spec.group {
                Group::Own => self.ctx.pgid,
                Group::Other => {
                    let g = *self.other_pgid.get_or_insert(pid);
                    // The child is ours and has not exec'd.
                    if let Err(e) = process::setpgid(pid, g) {
                        return broken(format!("setup: setpgid({pid}, {g}): {}", e.io_error()));
                    }
                    g
                }
            };
            let kin = kin_for(spec, v, pid, pgid, &self.ctx.features, bit);
            self.state.push(kin);
            self.names.pids.push(pid);
            self.kids.push(Child {
                spec: *spec,
                pid,
                kid: Some(kid),
                end: None,
                autoreap: kin.autoreap,
            });
            match spec.start {
                Start::Live(_) => {}
                Start::Exited(c) | Start::Reaped(c) => {
                    let k = self.kids[i].kid.as_mut().expect("kid");
                    k.release();
                    k.await_exit()?;
                    self.kids[i].end = Some(Event::Exited(c));
                    kin_exits(&mut self.state, pid, Event::Exited(c));
                    if matches!(spec.start, Start::Reaped(_)) {
                        let k = self.kids[i].kid.take().expect("kid");
                        let ev = k.reap()?;
                        if ev != Event::Exited(c) {
                            return broken(format!("setup: focused reap of {pid}: {ev:?}"));
                        }
                        self.state.retain(|x| x.view.pid != pid);
                    }
                }
            }
        }
        Ok(())
    }

    fn sel(&self, call: WaitCall, about: usize, group: Group) -> Selector {
        let pgid = match group {
            Group::Own => self.ctx.pgid,
            Group::Other => self.other_pgid.unwrap_or(self.ctx.pgid),
        };
        Selector {
            call,
            pid: self.kids[about].pid,
            pgid,
            own_pgid: self.ctx.pgid,
        }
    }

    fn after(&self) -> Vec<Kin> {
        let mut after = self.state.clone();
        for (i, c) in &self.pending {
            apply(&mut after, self.kids[*i].pid, *c);
        }
        after
    }

    fn steps(&mut self, steps: &[Step]) -> Check {
        for step in steps {
            match *step {
                Step::Wait {
                    call,
                    opts,
                    about,
                    group,
                    from,
                } => self.wait_step(call.unwrap_or(self.call), opts, about, group, from)?,
                Step::Release(i) => {
                    let code = self.kids[i].spec.code();
                    self.pending.push((i, Change::Exit(Event::Exited(code))));
                    if let Some(k) = self.kids[i].kid.as_mut() {
                        k.release();
                    }
                }
                Step::Signal(i, sig) => {
                    self.pending.push((i, Change::Signal(sig)));
                    match self.kids[i].kid.as_ref() {
                        Some(k) => k.signal(sig)?,
                        None => return broken("row: signal to a kid without pidfd"),
                    }
                }
                Step::Settle(i) => {
                    match self.kids[i].kid.as_ref() {
                        Some(k) => k.await_exit()?,
                        None => return broken("row: settle a kid without pidfd"),
                    }
                    let pid = self.kids[i].pid;
                    let mine: Vec<Change> = self
                        .pending
                        .iter()
                        .filter(|(j, _)| *j == i)
                        .map(|(_, c)| *c)
                        .collect();
                    for c in mine {
                        self.kids[i].end = end_of(c).or(self.kids[i].end);
                        apply(&mut self.state, pid, c);
                    }
                    self.pending.retain(|(j, _)| *j != i);
                    self.check_blocked()?;
                }
                Step::DropPidfd(i) => {
                    if let Some(k) = self.kids[i].kid.take() {
                        let Kid { pidfd, .. } = k;
                        drop(pidfd);
                    }
                }
                Step::BlockInThread { opts, group } => {
                    let call = self.call;
                    let sel = self.sel(call, 0, group);
                    let o = options_for(call, opts);
                    // The thread owns a duplicate of the pidfd (if any) until
                    // its call returns.
                    let t = self
                        .target(0, sel.pgid)?
                        .to_owned_target()
                        .or_else(|e| broken(format!("dup(pidfd): {e}")))?;
                    let worker = self.worker.as_ref().expect("worker");
                    let (rx, done) = worker.submit(move || wait(call, t.target(), O(opts)))?;
                    await_blocked_in_wait(worker.tid)?;
                    let what = spell(call, opts, group, By::Thread);
                    self.blocked = Some(Blocked {
                        sel,
                        opts: o,
                        what,
                        rx,
                        done,
                    });
                    self.check_blocked()?;
                }
            }
        }
        if let Some(b) = &self.blocked {
            return broken(format!(
                "row: {} is still blocked after the last step",
                b.what
            ));
        }
        Ok(())
    }

    /// The kid's target: its pidfd, or a new one if it was dropped.
    fn target(&self, about: usize, pgid: i32) -> Result<WaitTarget<'_>, Stop> {
        let c = &self.kids[about];
        Ok(WaitTarget {
            pid: c.pid,
            pidfd: c.kid.as_ref().map(|k| k.pidfd.as_fd()),
            pgid,
        })
    }

    fn wait_step(
        &mut self,
        call: WaitCall,
        opts: u32,
        about: usize,
        group: Group,
        from: By,
    ) -> Check {
        let sel = self.sel(call, about, group);
        let o = options_for(call, opts);
        let after = self.after();
        let (before, after_p) = predict_step(sel, from.thread(), o, &self.state, &after);
        let p = merge(&before, &after_p);
        let what = spell(call, opts, group, from);
        if p == Prediction::Blocks {
            return broken(format!("row: the model says {what} blocks here"));
        }
        let fresh;
        let mut t = self.target(about, sel.pgid)?;
        if call == WaitCall::WaitidPidfd && t.pidfd.is_none() {
            match pidfd::open(t.pid, false) {
                Ok(fd) => {
                    fresh = fd;
                    t.pidfd = Some(fresh.as_fd());
                }
                Err(Errno::ESRCH) if !after.iter().any(|k| k.view.pid == t.pid) => return Ok(()),
                Err(e) => return fail(format!("pidfd_open({}) for {what}: {e}", t.pid)),
            }
        }
        let got = match from {
            By::Main => wait(call, t, O(opts)),
            By::Thread => {
                // Synchronous: the duplicate is closed before the next step.
                let t = t
                    .to_owned_target()
                    .or_else(|e| broken(format!("dup(pidfd): {e}")))?;
                self.worker
                    .as_ref()
                    .expect("worker")
                    .run(move || wait(call, t.target(), O(opts)))?
            }
        };
        if !contains(&p, &got) {
            return fail(format!(
                "{what}: the model says it {}, got {}",
                self.names.prediction(&p),
                self.names.outcome(&got)
            ));
        }
        if contains(&before, &got) {
            kin_after_wait(&mut self.state, o, got);
        } else {
            self.state = after;
            self.settle_all();
            kin_after_wait(&mut self.state, o, got);
        }
        Ok(())
    }

    fn settle_all(&mut self) {
        for (i, c) in std::mem::take(&mut self.pending) {
            self.kids[i].end = end_of(c).or(self.kids[i].end);
        }
    }

    /// The blocked thread against the model, after a change settled.
    fn check_blocked(&mut self) -> Check {
        let Some(b) = self.blocked.take() else {
            return Ok(());
        };
        let p = predict_wait_from(b.sel, By::Thread.thread(), b.opts, &self.state);
        match &p {
            Prediction::Blocks => {
                if ready_now(&b.done) {
                    let got =
                        b.rx.recv()
                            .map(|g| self.names.outcome(&g))
                            .unwrap_or_else(|_| "nothing".into());
                    return fail(format!(
                        "{}: the model says it still blocks, but it returned and {got}",
                        b.what
                    ));
                }
                self.blocked = Some(b);
                Ok(())
            }
            Prediction::OneOf(_) => {
                let got = b.rx.recv().or_else(|_| broken("the second thread died"))?;
                if !contains(&p, &got) {
                    return fail(format!(
                        "{}: the model says it returns and {}, got {}",
                        b.what,
                        self.names.prediction(&p),
                        self.names.outcome(&got)
                    ));
                }
                kin_after_wait(&mut self.state, b.opts, got);
                Ok(())
            }
        }
    }

    /// Every zombie the model counts is there for a focused peek; every kid
    /// it counts as gone is no zombie; then everything is reaped by pidfd.
    fn finish(&mut self) -> Check {
        self.settle_pending()?;
        self.check_afterwards()?;
        self.reap_all()
    }

    /// Changes still in flux at the end take effect: each such kid exits.
    fn settle_pending(&mut self) -> Check {
        // Changes still in flux (a call saw the tree before them) take
        // effect now: wait for each such kid to exit.
        for (i, c) in std::mem::take(&mut self.pending) {
            if end_of(c).is_none() {
                return broken(format!(
                    "row: {} is left with a stop or continue in flux",
                    self.names.words[i]
                ));
            }
            if let Some(k) = self.kids[i].kid.as_ref() {
                k.await_exit()?;
            }
            self.kids[i].end = end_of(c).or(self.kids[i].end);
            apply(&mut self.state, self.kids[i].pid, c);
        }
        Ok(())
    }

    /// Each kid with a pidfd is, for a focused WNOWAIT peek, what the model
    /// says: a zombie with its end, alive, or gone.
    fn check_afterwards(&self) -> Check {
        for i in 0..self.kids.len() {
            let pid = self.kids[i].pid;
            let Some(k) = self.kids[i].kid.as_ref() else {
                continue;
            };
            let got = wait(WaitCall::WaitidPidfd, k.target(0), O(PEEK));
            let want = match self
                .state
                .iter()
                .find(|x| x.view.pid == pid)
                .map(|x| x.view.state)
            {
                Some(ChildState::Zombie(ev)) => WaitOutcome::Reported { pid, event: ev },
                Some(_) => WaitOutcome::NothingReady,
                None => WaitOutcome::Failed(Errno::ECHILD),
            };
            if got != want {
                return fail(format!(
                    "afterwards, {} on {}: want {}, got {}",
                    WaitCall::WaitidPidfd.spell(O(PEEK)),
                    self.names.words[i],
                    self.names.outcome(&want),
                    self.names.outcome(&got)
                ));
            }
        }
        Ok(())
    }

    /// Reaps every kid (a stopped one after SIGKILL) with a focused wait and
    /// checks its end; an autoreap kid's end comes from PIDFD_INFO_EXIT.
    fn reap_all(&mut self) -> Check {
        for i in 0..self.kids.len() {
            let pid = self.kids[i].pid;
            let code = self.kids[i].spec.code();
            let autoreap = self.kids[i].autoreap;
            let in_state = self
                .state
                .iter()
                .find(|x| x.view.pid == pid)
                .map(|x| x.view.state);
            let want = match in_state {
                Some(ChildState::Zombie(ev)) => Some(ev),
                Some(ChildState::Stopped(_) | ChildState::StoppedReported) => {
                    if let Some(k) = self.kids[i].kid.as_ref() {
                        k.signal(sig::SIGKILL)?;
                    }
                    Some(Event::Killed(sig::SIGKILL))
                }
                Some(_) => Some(Event::Exited(code)),
                None => None,
            };
            let Some(mut k) = self.kids[i].kid.take() else {
                if let Some(ev) = want {
                    // pidfd dropped: reap by pid.
                    let t = WaitTarget::pid(pid);
                    expect(
                        "reaping by waitid(P_PID, WEXITED|__WALL)",
                        wait(WaitCall::WaitidPid, t, O(O::WEXITED | O::WALL)),
                        reported(pid, ev),
                    )?;
                }
                continue;
            };
            if autoreap {
                k.release();
                super::mainline::ended(pid, &k.pidfd)?;
                let ev = want.or(self.kids[i].end).unwrap_or(Event::Exited(code));
                super::mainline::info_says(&k.pidfd, ev)?;
            } else if let Some(ev) = want {
                let got = k.reap_with(O::WALL)?;
                if got != ev {
                    return fail(format!(
                        "focused reap of {}: want {ev:?}, got {got:?}",
                        self.names.words[i]
                    ));
                }
            }
        }
        Ok(())
    }

    /// After a failure: let everything go and reap what can be reaped.
    fn force_cleanup(&mut self) {
        for c in &mut self.kids {
            if let Some(k) = c.kid.as_mut() {
                let _ = k.signal(sig::SIGKILL);
            }
        }
        if let Some(b) = self.blocked.take() {
            // The thread returns once the killed children are reaped or it
            // finds one; it is joined when the worker drops.
            drop(b);
        }
        for c in &mut self.kids {
            if let Some(k) = c.kid.take() {
                let _ = pidfd::poll_exit(k.pidfd.as_fd(), Some(Duration::from_secs(1)));
                let _ = wait(
                    WaitCall::WaitidPidfd,
                    k.target(0),
                    O(O::WEXITED | O::WALL | O::WNOHANG),
                );
                if c.autoreap {
                    let _ = pidfd_info::await_released(k.pidfd.as_fd());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Building cases from a table.

/// One case per call x situation x variant, named
/// `group::call::situation::variant`.
pub fn cases(
    group: &'static str,
    calls: &[WaitCall],
    situations: fn() -> Vec<Situation>,
    source: fn(&Situation, Variant) -> Source,
) -> Vec<Case> {
    let mut out = Vec::new();
    for &call in calls {
        for (idx, sit) in situations().into_iter().enumerate() {
            if sit.needs_options && !call.takes_options() {
                continue;
            }
            for v in Variant::ALL {
                let name = format!("{group}::{}::{}::{}", call.id(), sit.id, v.id());
                let src = source(&sit, v);
                let mut c = Case::new(name, src, move |ctx| {
                    let sit = situations().into_iter().nth(idx).expect("situation");
                    run(ctx, call, &sit, v)
                })
                .expects_with(move || {
                    let sit = situations().into_iter().nth(idx).expect("situation");
                    plan(call, &sit, v).text
                });
                if let Some(n) = v.need() {
                    c = c.need(n);
                }
                out.push(c);
            }
        }
    }
    out
}

/// The vacuity check of a table (used by the unit tests): for each call and
/// situation, whether hidden and plain predict differently, and whether the
/// row's calls select the subject at all.
pub fn vacuity(calls: &[WaitCall], situations: fn() -> Vec<Situation>) -> Vec<String> {
    let mut bad = Vec::new();
    for &call in calls {
        for sit in situations() {
            if sit.needs_options && !call.takes_options() {
                continue;
            }
            let h = plan(call, &sit, Variant::Hidden);
            let p = plan(call, &sit, Variant::Plain);
            let differ = h.predictions != p.predictions;
            match sit.hiding {
                Hiding::Shows if p.subject_selected && !differ => bad.push(format!(
                    "{}::{}: meant to show hiding, but hidden and plain predict the same: {}",
                    call.id(),
                    sit.id,
                    p.text
                )),
                Hiding::Invisible if differ => bad.push(format!(
                    "{}::{}: hiding must not matter, but hidden and plain differ: {} / {}",
                    call.id(),
                    sit.id,
                    h.text,
                    p.text
                )),
                _ => {}
            }
            for v in Variant::ALL {
                let pl = plan(call, &sit, v);
                if pl.predictions.is_empty() {
                    bad.push(format!(
                        "{}::{}::{}: no wait step",
                        call.id(),
                        sit.id,
                        v.id()
                    ));
                }
                for e in pl.errors {
                    bad.push(format!("{}::{}::{}: {e}", call.id(), sit.id, v.id()));
                }
            }
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::wait::WaitOpts as O;

    fn lone(hiding: Hiding) -> Situation {
        Situation {
            id: "probe",
            kids: vec![
                KidSpec::subject(Start::Live(3)),
                KidSpec::sibling(Start::Exited(4)),
            ],
            steps: |_, _| vec![call(O::WEXITED | O::WNOHANG)],
            hiding,
            needs_options: true,
        }
    }

    /// A row meant to show hiding where hidden and plain predict the same
    /// is flagged; so is one meant not to where they differ.
    #[test]
    fn vacuity_flags_rows_that_cannot_fail() {
        fn shows() -> Vec<Situation> {
            vec![lone(Hiding::Shows)]
        }
        fn invisible() -> Vec<Situation> {
            vec![lone(Hiding::Invisible)]
        }
        assert_eq!(vacuity(&[WaitCall::WaitidAll], shows).len(), 1);
        assert!(vacuity(&[WaitCall::WaitidAll], invisible).is_empty());
        fn exited() -> Vec<Situation> {
            vec![Situation {
                kids: vec![KidSpec::subject(Start::Exited(3))],
                ..lone(Hiding::Invisible)
            }]
        }
        assert_eq!(vacuity(&[WaitCall::WaitidAll], exited).len(), 1);
    }

    #[test]
    fn predictions_come_from_the_model() {
        let sit = Situation {
            kids: vec![KidSpec::subject(Start::Exited(3))],
            ..lone(Hiding::Shows)
        };
        let h = plan(WaitCall::WaitidAll, &sit, Variant::Hidden);
        assert_eq!(
            h.predictions,
            vec![Prediction::OneOf(vec![WaitOutcome::Failed(Errno::ECHILD)])],
            "{}",
            h.text
        );
        assert!(
            h.text.contains("not considered by a generic wait"),
            "{}",
            h.text
        );
        assert!(h.text.contains("still a zombie"), "{}", h.text);
        let p = plan(WaitCall::WaitidAll, &sit, Variant::Plain);
        assert_eq!(
            p.predictions,
            vec![Prediction::OneOf(vec![WaitOutcome::Reported {
                pid: 1001,
                event: Event::Exited(3)
            }])]
        );
        let a = plan(WaitCall::WaitidAll, &sit, Variant::Autoreap);
        assert_eq!(
            a.predictions,
            vec![Prediction::OneOf(vec![WaitOutcome::Failed(Errno::ECHILD)])],
            "{}",
            a.text
        );
    }

    /// Prints every row's expectation (cargo test -- --nocapture grid_texts).
    #[test]
    fn grid_texts() {
        for (calls, sits) in [
            (
                &WaitCall::GENERIC[..],
                super::super::generic::situations as fn() -> Vec<Situation>,
            ),
            (&WaitCall::FOCUSED[..], super::super::focused::situations),
        ] {
            for &c in calls {
                for s in sits() {
                    for v in Variant::ALL {
                        let p = plan(c, &s, v);
                        assert!(!p.text.is_empty());
                        if std::env::var_os("GRID_TEXTS").is_some() {
                            println!("{}::{}::{}: {}", c.id(), s.id, v.id(), p.text);
                        }
                    }
                }
            }
        }
    }
}
