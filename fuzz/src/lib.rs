//! The engine side of the fuzz targets: byte decoding (with
//! `arbitrary::Unstructured`), the campaign context (features, worker) and
//! one function per target. Semantics live in `cases::fuzzing` and
//! `cases::model`; nothing here decides what the kernel should do.
//!
//! Where inputs run: `clone3_flags` inputs that cannot disturb the process
//! that makes the call (`Clone3Case::harmless_to_caller`: no VM, VFORK,
//! PARENT, THREAD, SIGHAND, PTRACE or namespace bit, no bit the model does
//! not know, exit signal SIGCHLD or none) run here, in libFuzzer's process
//! F ([`Mode::InProcess`]); every other input, and every `wait_sequence`
//! program, runs in the long-lived worker W ([`Mode::Worker`]). F then
//! checks the same hygiene W checks (children, fds, SIGCHLD), and a
//! watchdog thread turns an execution that takes more than
//! [`STEP_TIMEOUT_MS`] into a finding, as W's timeout does.
//! `WAIT_FUZZ_INPROCESS=0` sends everything to W.
//!
//! Byte formats are sequential (one `u8` read at a time from the front), so
//! `encode_*` can write seeds and the printer reads artifacts with the same
//! decoder the target used.

pub mod kernel_cov;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use arbitrary::Unstructured;
use cases::fuzzing::clone3::{
    self, Cgroup, Clone3Case, Clone3Obs, Env, Pidfd, Scope, SetTid, Stack,
};
use cases::fuzzing::common::all_calls;
use cases::fuzzing::isolate;
use cases::fuzzing::tree::{self, Op, RunLog, TreeConfig, WaitProgram, Who, MAX_NODES, MAX_OPS};
use cases::fuzzing::worker::{Hygiene, Worker};
use cases::model::{ChildState, ChildView};
use cases::sys::clone::flags::*;
use cases::sys::wait::{WaitCall, WaitOpts};

/// Per-input time limit, in the worker and in process (a hang is a finding).
pub const STEP_TIMEOUT_MS: i32 = 10_000;

/// Environment variable: `0` runs every input in the worker.
pub const INPROCESS_ENV: &str = protocol::env::WAIT_FUZZ_INPROCESS;

pub struct Ctx {
    pub env: Env,
    pub cfg: TreeConfig,
    pub bit: u64,
    worker: Mutex<Option<Worker>>,
    /// run harmless clone3 inputs in this process
    inprocess: AtomicBool,
    /// our process group (the executor's `own_pgid` here)
    own_pgid: i32,
    /// clone3 inputs run so far: [in process, in the worker]
    runs: [AtomicU64; 2],
}

/// Where one `clone3_flags` input ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// in this process (libFuzzer's, or the tool's)
    InProcess,
    /// in the worker W
    Worker,
}

static CTX: OnceLock<Ctx> = OnceLock::new();

/// The campaign context: probed once, before the worker is forked (the
/// probe's generic peek must run while we have no other children).
pub fn ctx() -> &'static Ctx {
    CTX.get_or_init(|| {
        let bit = cases::harness::config::configured_bit().unwrap_or_else(|e| panic!("{e}"));
        // The executor needs SIGCHLD at SIG_DFL (no inherited SIG_IGN or
        // SA_NOCLDWAIT), here as in W; nothing in this process handles it.
        isolate::restore_sigchld_default();
        let features = cases::harness::config::probe(bit).features();
        let env = Env::detect(features.clone());
        let cfg = TreeConfig::detect(features, bit);
        let inprocess = std::env::var(INPROCESS_ENV).map(|v| v != "0").unwrap_or(true);
        eprintln!(
            "wait-conformance-fuzz: kernel {:?}, CLONE_WAIT_PID {}, caller {:?}, {}=1 {}, {}, model: {} semantics ({}; both targets)",
            env.features.version,
            env.features.wait_pid_bit.map(|b| format!("{b:#x}")).unwrap_or_else(|| format!("absent (configured {bit:#x})")),
            env.caller,
            clone3::RISKY_ENV,
            if env.allow_risky { "set: namespaces and CLONE_VM children allowed" } else { "not set: risky flag words masked" },
            if inprocess { "harmless clone3 inputs run in process" } else { "every input runs in the worker" },
            cfg.semantics,
            cases::model::Semantics::ENV,
        );
        install_cleanup();
        // SAFETY: getpgrp has no arguments and cannot fail.
        let own_pgid = unsafe { libc::getpgrp() };
        Ctx { env, cfg, bit, worker: Mutex::new(None), inprocess: AtomicBool::new(inprocess), own_pgid, runs: Default::default() }
    })
}

/// The fuzz targets' init hook (libFuzzer calls it before starting its own
/// threads): probe the kernel and spawn the worker while this process is
/// single-threaded, so that W can be a clone child (`Worker::spawn`), which
/// the waits of in-process inputs rarely consider.
pub fn init() {
    let c = ctx();
    // After the probe (its children would take slots), before the worker (which records).
    kernel_cov::start();
    c.spawn_worker();
}

/// Kill everything below us and reap it with focused waits. We are a child
/// subreaper, so whatever the worker leaves behind comes to us rather than
/// to an init that may never reap it (a CLONE_WAIT_PID child cannot be
/// reaped by a generic wait at all).
pub fn cleanup_all() {
    for p in cases::sys::proc::descendants(std::process::id() as i32) {
        // SAFETY: best-effort SIGKILL to our own descendants; a pid cannot be
        // reused before its parent (one of ours, or we) reaps it.
        unsafe {
            libc::kill(p, libc::SIGKILL);
        }
    }
    isolate::reap_all_children();
}

extern "C" fn cleanup_at_exit() {
    cleanup_all();
    kernel_cov::flush();
    if let Some(c) = CTX.get() {
        let [here, w] = [0, 1].map(|i| c.runs[i].load(Ordering::Relaxed));
        if here + w > 0 {
            eprintln!("wait-conformance-fuzz: clone3 inputs executed: {here} in process, {w} in the worker");
        }
    }
}

/// libFuzzer leaves through exit() (runs, total time) or a panic (finding,
/// then abort): both clean up first.
fn install_cleanup() {
    let _ = isolate::become_subreaper();
    // SAFETY: registering a plain extern "C" fn with no captured state.
    unsafe {
        libc::atexit(cleanup_at_exit);
    }
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        cleanup_all();
        prev(info)
    }));
}

fn handle(req: &[u8]) -> String {
    let c = ctx();
    match req.first() {
        Some(b'c') => {
            let case: Clone3Case = serde_json::from_slice(&req[1..]).expect("clone3 request");
            serde_json::to_string(&clone3::execute(&case, &c.env)).expect("obs")
        }
        Some(b'w') => {
            let prog: WaitProgram = serde_json::from_slice(&req[1..]).expect("wait request");
            serde_json::to_string(&tree::run_isolated(&prog, &c.cfg, STEP_TIMEOUT_MS)).expect("log")
        }
        _ => String::new(),
    }
}

impl Ctx {
    /// Whether harmless clone3 inputs run in this process.
    pub fn inprocess(&self) -> bool {
        self.inprocess.load(Ordering::Relaxed)
    }

    /// Switch the in-process mode (the benchmark compares both).
    pub fn set_inprocess(&self, on: bool) {
        self.inprocess.store(on, Ordering::Relaxed)
    }

    /// The bits this campaign may use as CLONE_WAIT_PID (the feature's own
    /// bit is added by `harmless_to_caller`).
    fn wait_pid_bits(&self) -> u64 {
        self.bit | (1 << 40)
    }

    /// The worker, if it exists, as the model sees a child of ours: running,
    /// not hidden, in its own process group, a clone child when spawned
    /// from [`init`].
    fn worker_view(&self) -> Option<ChildView> {
        let g = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref().map(|w| ChildView {
            pid: w.pid(),
            pgid: w.pgid(),
            hidden: false,
            sigchld: w.sigchld(),
            state: ChildState::Running,
        })
    }

    /// Where `case` runs: here when it cannot disturb this process and none
    /// of its waits would consider the worker (our other child), else in the
    /// worker. The second value is the worker's pid, a bystander here.
    pub fn mode_for(&self, case: &Clone3Case) -> (Mode, Option<i32>) {
        if !self.inprocess() || !case.harmless_to_caller(&self.env, self.wait_pid_bits()) {
            return (Mode::Worker, None);
        }
        match self.worker_view() {
            None => (Mode::InProcess, None),
            Some(w) if clone3::unseen_by_waits(case, &w, self.own_pgid) => {
                (Mode::InProcess, Some(w.pid))
            }
            Some(_) => (Mode::Worker, None),
        }
    }

    /// Spawn the worker now, if it does not exist.
    pub fn spawn_worker(&self) {
        let mut g = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(Worker::spawn(handle).unwrap_or_else(|e| panic!("{e}")));
        }
    }

    /// Send one request to the worker (forked on first use).
    pub fn call(&self, req: &[u8], what: &dyn Fn() -> String) -> (String, Hygiene) {
        let mut g = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(Worker::spawn(handle).unwrap_or_else(|e| panic!("{e}")));
        }
        match g
            .as_mut()
            .expect("worker")
            .call(req, STEP_TIMEOUT_MS + 5_000)
        {
            Ok(r) => r,
            Err(e) => {
                *g = None;
                panic!("wait-conformance finding (harness):\n{}\n{e}", what());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// In-process execution

/// Execute `case` where [`Ctx::mode_for`] says, with the hygiene check of
/// that place: W's after every request, or the same checks here.
pub fn run_clone3(case: &Clone3Case) -> (Clone3Obs, Hygiene, Mode) {
    let c = ctx();
    let (mode, bystander) = c.mode_for(case);
    c.runs[(mode == Mode::Worker) as usize].fetch_add(1, Ordering::Relaxed);
    match (mode, bystander) {
        (Mode::InProcess, bystander) => {
            let (obs, h) = run_here(c, case, bystander);
            (obs, h, Mode::InProcess)
        }
        (Mode::Worker, _) => {
            let mut req = vec![b'c'];
            req.extend(serde_json::to_vec(case).expect("case"));
            let (payload, h) = c.call(&req, &|| case.to_string());
            (
                serde_json::from_str(&payload).expect("obs"),
                h,
                Mode::Worker,
            )
        }
    }
}

/// One harmless input in this process. Only this thread forks here
/// (libFuzzer's other threads never do; inputs with CLONE_PARENT or
/// CLONE_THREAD go to the worker), so our children are listed from
/// /proc/thread-self; `bystander` (the worker) is left alone. Signals stay
/// blocked while executing (no EINTR from libFuzzer's SIGALRM), and are
/// delivered, not drained, afterwards.
fn run_here(c: &Ctx, case: &Clone3Case, bystander: Option<i32>) -> (Clone3Obs, Hygiene) {
    let scope = Scope {
        bystanders: bystander.into_iter().collect(),
        only_this_thread_forks: true,
        sigchld_only: true,
    };
    // The listing's own fd is opened once, before the fd check's baseline.
    isolate::open_thread_children();
    let fd0 = isolate::lowest_free_fd();
    let armed = watchdog::arm(case);
    let obs = clone3::execute_in(case, &c.env, &scope);
    drop(armed);
    // The checks W makes after every request.
    let mut h = Hygiene::default();
    if !scope.children().is_empty() {
        h.leftover_children = isolate::reap_children_with(|| scope.children());
    }
    h.sigchld_ignored = isolate::sigchld_ignored();
    if h.sigchld_ignored {
        isolate::restore_sigchld_default();
    }
    let fd1 = isolate::lowest_free_fd();
    if fd1 != fd0 {
        // A leaked fd takes the lowest free number; one closed below it
        // lowers it. Either way the fd table changed.
        h.fd_delta = if fd1 > fd0 { 1 } else { -1 };
    }
    (obs, h)
}

/// W's timeout, for executions in this process: a thread that looks once a
/// second at the execution in flight and, past [`STEP_TIMEOUT_MS`], reports
/// where it is stuck, cleans up and aborts (libFuzzer saves the input as a
/// crash). Arming and disarming cost an uncontended lock each.
mod watchdog {
    use super::*;

    struct InFlight {
        since: Instant,
        tid: i32,
        case: Clone3Case,
    }

    static IN_FLIGHT: Mutex<Option<InFlight>> = Mutex::new(None);
    static STARTED: std::sync::Once = std::sync::Once::new();

    pub struct Armed;

    impl Drop for Armed {
        fn drop(&mut self) {
            *IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    pub fn arm(case: &Clone3Case) -> Armed {
        STARTED.call_once(|| {
            std::thread::Builder::new()
                .name("wcfuzz-watchdog".into())
                .spawn(watch)
                .expect("watchdog thread");
        });
        let tid = rustix::thread::gettid().as_raw_nonzero().get();
        *IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner()) = Some(InFlight {
            since: Instant::now(),
            tid,
            case: case.clone(),
        });
        Armed
    }

    /// A deadline check once a second (not a synchronisation: an execution
    /// that finishes never waits for this thread).
    fn watch() {
        let limit = Duration::from_millis(STEP_TIMEOUT_MS as u64);
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let g = IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner());
            let Some(f) = g.as_ref().filter(|f| f.since.elapsed() > limit) else {
                continue;
            };
            let mut report = vec![cases::sys::proc::stuck_report(f.tid)];
            for p in isolate::thread_children() {
                report.push(cases::sys::proc::stuck_report(p));
            }
            let c = ctx();
            eprintln!(
                "{}",
                finding(
                    "clone3_flags",
                    &f.case.to_string(),
                    &format!(
                        "harness: hang: in-process execution still running after {} ms\n{}",
                        STEP_TIMEOUT_MS,
                        report.join("\n")
                    ),
                    c
                )
            );
            cleanup_all();
            std::process::abort();
        }
    }
}

// ---------------------------------------------------------------------------
// clone3_flags

/// Flag words the bias picks from: every named bit, the feature's bit, the
/// configured bit, bit 40, and combinations that mean something together.
pub fn flag_menu(c: &Ctx) -> Vec<u64> {
    let mut m: Vec<u64> = (0..38).map(|b| 1u64 << b).collect();
    m.push(1 << 40);
    // Only the configured bit (not the probe's answer), so decoding depends
    // on CLONE_WAIT_PID_FLAG alone and an artifact from a VM decodes the
    // same on the host.
    m.push(c.bit);
    m.extend([
        CLONE_PIDFD | c.bit,
        CLONE_VM | CLONE_SIGHAND,
        CLONE_VM | CLONE_SIGHAND | CLONE_THREAD,
        CLONE_NEWPID | CLONE_VM | CLONE_SIGHAND,
        CLONE_VM | CLONE_VFORK,
        CLONE_PARENT,
        CLONE_NEWUSER | CLONE_NEWPID,
        CLONE_PIDFD | CLONE_PARENT_SETTID,
        CLONE_SIGHAND | CLONE_CLEAR_SIGHAND,
        CLONE_INTO_CGROUP,
    ]);
    m
}

/// 0 when the data runs out.
fn byte(u: &mut Unstructured) -> u8 {
    u.arbitrary::<u8>().unwrap_or(0)
}

fn bytes_le(u: &mut Unstructured, n: usize) -> u64 {
    (0..n).fold(0u64, |acc, i| acc | (byte(u) as u64) << (8 * i))
}

/// Decode a clone3_flags input. Layout (one byte each unless noted):
/// mode, flag bytes (by mode), size, exit_signal (+ extra), stack, set_tid
/// (+ n), cgroup, pidfd, tail (+ offset, value), exit code, generic call,
/// generic extra opts, focused call, focused extra opts.
pub fn decode_clone3(data: &[u8], c: &Ctx) -> Clone3Case {
    let u = &mut Unstructured::new(data);
    let menu = flag_menu(c);
    let mode = byte(u);
    let mut flags = match mode % 8 {
        0 => bytes_le(u, 8),
        1 => bytes_le(u, 4),
        _ => {
            let n = byte(u) % 6;
            (0..n).fold(0u64, |acc, _| acc | menu[byte(u) as usize % menu.len()])
        }
    };
    if mode & 0x08 != 0 {
        flags |= CLONE_PIDFD | c.bit;
    }
    let s = byte(u);
    let size = if s & 0x80 != 0 {
        bytes_le(u, 2) as usize % 4200
    } else {
        [88, 88, 88, 64, 80, 96, 4096, 4097][s as usize % 8]
    };
    let e = byte(u);
    let exit_signal = match e % 8 {
        1 => 0,
        3 => byte(u) as u64,
        4 => (byte(u) % 64) as u64 + 1,
        5 => bytes_le(u, 8),
        _ => libc::SIGCHLD as u64,
    };
    let stack = match byte(u) % 8 {
        4 => Stack::Valid,
        5 => Stack::SizeWithoutStack,
        6 => Stack::StackWithoutSize,
        7 => Stack::KernelAddress,
        _ => Stack::None,
    };
    let set_tid = match byte(u) % 8 {
        5 => SetTid::NullWithSize((byte(u) % 40) as u64),
        6 => SetTid::PointerWithoutSize,
        7 => SetTid::InUse((byte(u) % 40) as u64),
        _ => SetTid::None,
    };
    let cgroup = [Cgroup::Zero, Cgroup::Huge, Cgroup::Closed, Cgroup::Valid][byte(u) as usize % 4];
    let pidfd = match byte(u) % 8 {
        6 => Pidfd::Bad,
        7 => Pidfd::SameAsParentTid,
        _ => Pidfd::Valid,
    };
    let t = byte(u);
    let tail_byte = if t & 1 != 0 {
        Some((byte(u) as usize, byte(u)))
    } else {
        None
    };
    let exit_code = byte(u);
    let extra = |b: u8| {
        [
            0,
            WaitOpts::WALL,
            WaitOpts::WCLONE,
            WaitOpts::WALL | WaitOpts::WCLONE,
        ][b as usize % 4]
    };
    let generic = WaitCall::GENERIC[byte(u) as usize % 9];
    let generic_opts = extra(byte(u));
    let focused = WaitCall::FOCUSED[byte(u) as usize % 4];
    let focused_opts = extra(byte(u));
    Clone3Case {
        flags,
        size,
        tail_byte,
        exit_signal,
        stack,
        set_tid,
        cgroup,
        pidfd,
        exit_code,
        generic,
        generic_opts,
        focused,
        focused_opts,
    }
}

/// Bytes that decode to `case` (for seeds; mode 0 carries the raw word, so
/// decode(encode(case)) == case for any case).
pub fn encode_clone3(case: &Clone3Case) -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend_from_slice(&case.flags.to_le_bytes());
    v.push(0x80);
    v.extend_from_slice(&(case.size as u16).to_le_bytes());
    v.push(5);
    v.extend_from_slice(&case.exit_signal.to_le_bytes());
    v.push(match case.stack {
        Stack::None => 0,
        Stack::Valid => 4,
        Stack::SizeWithoutStack => 5,
        Stack::StackWithoutSize => 6,
        Stack::KernelAddress => 7,
    });
    match case.set_tid {
        SetTid::None => v.push(0),
        SetTid::NullWithSize(n) => v.extend([5, n as u8]),
        SetTid::PointerWithoutSize => v.push(6),
        SetTid::InUse(n) => v.extend([7, n as u8]),
    }
    v.push(match case.cgroup {
        Cgroup::Zero => 0,
        Cgroup::Huge => 1,
        Cgroup::Closed => 2,
        Cgroup::Valid => 3,
    });
    v.push(match case.pidfd {
        Pidfd::Valid => 0,
        Pidfd::Bad => 6,
        Pidfd::SameAsParentTid => 7,
    });
    match case.tail_byte {
        None => v.push(0),
        Some((o, b)) => v.extend([1, o as u8, b]),
    }
    v.push(case.exit_code);
    let extra = |o: u32| match o & (WaitOpts::WALL | WaitOpts::WCLONE) {
        0 => 0u8,
        x if x == WaitOpts::WALL => 1,
        x if x == WaitOpts::WCLONE => 2,
        _ => 3,
    };
    v.push(
        WaitCall::GENERIC
            .iter()
            .position(|c| *c == case.generic)
            .unwrap_or(0) as u8,
    );
    v.push(extra(case.generic_opts));
    v.push(
        WaitCall::FOCUSED
            .iter()
            .position(|c| *c == case.focused)
            .unwrap_or(0) as u8,
    );
    v.push(extra(case.focused_opts));
    v
}

/// The model semantics the target's oracle runs under (both read
/// `WAIT_FUZZ_SEMANTICS`).
fn semantics(target: &str, c: &Ctx) -> cases::model::Semantics {
    if target == "wait_sequence" {
        c.cfg.semantics
    } else {
        c.env.semantics
    }
}

fn finding(target: &str, input: &str, detail: &str, c: &Ctx) -> String {
    format!(
        "wait-conformance finding ({target}) on kernel {:?}, CLONE_WAIT_PID {:?}, {sem} semantics:\n{input}\n{detail}\n(turn the artifact into a case: wcfuzz regress {target} <artifact>, with {}={sem})",
        c.env.features.version,
        c.env.features.wait_pid_bit,
        cases::model::Semantics::ENV,
        sem = semantics(target, c),
    )
}

/// Decode, normalise, execute (here or in the worker), check. Panics on a
/// finding.
pub fn clone3_one(data: &[u8]) -> Clone3Obs {
    let c = ctx();
    let mut case = decode_clone3(data, c);
    case.normalise(&c.env);
    // The model runs here, in libFuzzer's process, so its branches are the
    // coverage that guides the campaign.
    let exp = clone3::expected(&case, &c.env);
    let kernel = kernel_cov::Input::begin();
    let (obs, h, mode) = run_clone3(&case);
    drop(kernel);
    let place = match mode {
        Mode::InProcess => "executed in libFuzzer's process",
        Mode::Worker => "executed in the worker",
    };
    if let Err(e) = clone3::check(&case, &c.env, &obs) {
        panic!(
            "{}",
            finding(
                "clone3_flags",
                &case.to_string(),
                &format!("model verdict {:?} ({place})\n{e}", exp.verdict),
                c
            )
        );
    }
    if !h.clean() {
        panic!(
            "{}",
            finding(
                "clone3_flags",
                &case.to_string(),
                &format!("leak after the input ({place}): {h:?}"),
                c
            )
        );
    }
    obs
}

// ---------------------------------------------------------------------------
// wait_sequence

const OPT_BITS: [u32; 8] = [
    WaitOpts::WNOHANG,
    WaitOpts::WSTOPPED,
    WaitOpts::WEXITED,
    WaitOpts::WCONTINUED,
    WaitOpts::WNOWAIT,
    WaitOpts::WNOTHREAD,
    WaitOpts::WALL,
    WaitOpts::WCLONE,
];

/// Decode a wait_sequence input: ops until the data or MAX_OPS runs out;
/// each op is a kind byte (mod 10) and up to four argument bytes.
pub fn decode_program(data: &[u8]) -> WaitProgram {
    let u = &mut Unstructured::new(data);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        let k = byte(u) % 10;
        let node = |b: u8| b % MAX_NODES as u8;
        let op = match k {
            0 | 1 => {
                let p = byte(u) % (MAX_NODES as u8 + 1);
                let parent = if p == 0 {
                    Who::Driver
                } else {
                    Who::Node(p - 1)
                };
                Op::Spawn {
                    parent,
                    hidden: byte(u) & 1 != 0,
                }
            }
            2 => Op::Exit {
                node: node(byte(u)),
                code: byte(u),
            },
            3 => Op::Kill {
                node: node(byte(u)),
            },
            4 => Op::Stop {
                node: node(byte(u)),
            },
            5 => Op::Cont {
                node: node(byte(u)),
            },
            6 => Op::Setpgid {
                node: node(byte(u)),
                own: byte(u) & 1 != 0,
            },
            7 => Op::Exec {
                node: node(byte(u)),
            },
            8 => Op::Subreaper,
            _ => {
                let call = all_calls()[byte(u) as usize % 13];
                let b = byte(u);
                let mut opts = OPT_BITS
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| b & (1 << i) != 0)
                    .fold(0, |a, (_, o)| a | o);
                let x = byte(u);
                if x & 0xf0 == 0xf0 {
                    opts |= 1 << (x & 0x1f);
                }
                Op::Wait {
                    call,
                    opts,
                    node: node(byte(u)),
                }
            }
        };
        ops.push(op);
    }
    WaitProgram { ops }
}

/// Bytes that decode to `p` (wait options limited to the eight known bits
/// plus at most one other).
pub fn encode_program(p: &WaitProgram) -> Vec<u8> {
    let mut v = Vec::new();
    for op in &p.ops {
        match *op {
            Op::Spawn { parent, hidden } => v.extend([
                0,
                match parent {
                    Who::Driver => 0,
                    Who::Node(n) => n + 1,
                },
                hidden as u8,
            ]),
            Op::Exit { node, code } => v.extend([2, node, code]),
            Op::Kill { node } => v.extend([3, node]),
            Op::Stop { node } => v.extend([4, node]),
            Op::Cont { node } => v.extend([5, node]),
            Op::Setpgid { node, own } => v.extend([6, node, own as u8]),
            Op::Exec { node } => v.extend([7, node]),
            Op::Subreaper => v.push(8),
            Op::Wait { call, opts, node } => {
                let ci = all_calls().iter().position(|c| *c == call).unwrap_or(0) as u8;
                let b = OPT_BITS
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| opts & **o != 0)
                    .fold(0u8, |a, (i, _)| a | (1 << i));
                let known = OPT_BITS.iter().fold(0, |a, o| a | o);
                let other = opts & !known;
                let x = if other != 0 {
                    0xe0 | other.trailing_zeros() as u8 | 0x10
                } else {
                    0
                };
                v.extend([9, ci, b, x, node]);
            }
        }
    }
    v
}

pub fn wait_sequence_one(data: &[u8]) -> RunLog {
    let c = ctx();
    let prog = decode_program(data);
    if prog.ops.is_empty() {
        return RunLog::default();
    }
    let mut req = vec![b'w'];
    req.extend(serde_json::to_vec(&prog).expect("program"));
    let kernel = kernel_cov::Input::begin();
    let (payload, h) = c.call(&req, &|| prog.to_string());
    drop(kernel);
    let log: RunLog = serde_json::from_str(&payload).expect("log");
    if let Err(e) = tree::check(&prog, &c.cfg, &log) {
        panic!("{}", finding("wait_sequence", "", &e, c));
    }
    if !h.clean() {
        panic!(
            "{}",
            finding(
                "wait_sequence",
                &prog.to_string(),
                &format!("leak after the input: {h:?}"),
                c
            )
        );
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_roundtrip() {
        let p = WaitProgram {
            ops: vec![
                Op::Spawn {
                    parent: Who::Driver,
                    hidden: true,
                },
                Op::Spawn {
                    parent: Who::Node(0),
                    hidden: false,
                },
                Op::Subreaper,
                Op::Exit { node: 0, code: 3 },
                Op::Wait {
                    call: WaitCall::WaitidAll,
                    opts: WaitOpts::WEXITED | WaitOpts::WNOHANG,
                    node: 1,
                },
                Op::Wait {
                    call: WaitCall::WaitpidAny,
                    opts: WaitOpts::WNOHANG | (1 << 20),
                    node: 1,
                },
            ],
        };
        assert_eq!(decode_program(&encode_program(&p)), p);
    }
}
