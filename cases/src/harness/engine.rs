//! How a case runs: the test process (libtest-mimic, one thread per trial)
//! spawns one case process per case (forked by the fork server,
//! [`super::zygote`], or with `WAITCONF_SPAWN=exec` a re-exec of this
//! binary) and watches it through a pidfd; the case process is a child
//! subreaper, runs the body, proves nothing is left and prints one result
//! line. Spawning, killing and reaping are [`super::executor`]'s: nothing
//! here ever waits generically, every reap is a focused wait on a pidfd.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::panic::AssertUnwindSafe;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::case::{Case, Ctx, Need, Provenance, Stop};
use super::config::{self, Probe};
use super::executor::{self, Proc, Supervised};
use super::zygote::{self, Pool};
use crate::sys::proc;

pub use protocol::Status;
use protocol::{CaseRecord, EnvRecord, Record};

/// What the case process prints on its stdout, one JSON line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseOutput {
    pub status: Status,
    pub detail: String,
    /// Processes the case process left stuck in the kernel (see
    /// [`executor::mark_stuck`]): they come to the test process when the
    /// case process exits, and its own reaps do not wait for them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stuck: Vec<i32>,
}

pub const RUN_CASE_ARG: &str = "--wc-run-case";
/// Run the feature probe alone and print its env record (one JSON line, as the report's first
/// line): what `runner probe` runs in the guest.
pub const PROBE_RECORD_ARG: &str = "--probe";
pub const EXIT_ARG: &str = "--wc-exit";
pub const PROBE_ENV: &str = protocol::env::WAITCONF_PROBE;
pub const REPORT_ENV: &str = protocol::env::WAITCONF_REPORT;
/// How case processes are made: `fork` (the default: forked from the fork
/// server, [`super::zygote`]) or `exec` (a re-exec of the case binary per
/// case).
pub const SPAWN_ENV: &str = protocol::env::WAITCONF_SPAWN;

/// The case timeout multiplier from [`protocol::env::WAITCONF_TIMEOUT_MUL`]: a number >= 1,
/// else 1 (with a note on stderr for a value that is not one).
pub fn timeout_mul() -> f64 {
    match std::env::var(protocol::env::WAITCONF_TIMEOUT_MUL) {
        Err(_) => 1.0,
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(m) if m >= 1.0 && m.is_finite() => m,
            _ => {
                eprintln!(
                    "wait-conformance: {}={v:?} is not a number >= 1: using 1",
                    protocol::env::WAITCONF_TIMEOUT_MUL
                );
                1.0
            }
        },
    }
}

/// The detail of every case of a run without bodies ([`bodies_empty`]).
pub const NO_BODY: &str = protocol::env::NO_BODY_DETAIL;

/// Whether the case processes run no body ([`protocol::env::WAITCONF_BODIES`] is `empty`):
/// read once, in the test process before the fork server starts, so that a forked case process
/// finds it decided.
pub fn bodies_empty() -> bool {
    static EMPTY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *EMPTY.get_or_init(|| match std::env::var(protocol::env::WAITCONF_BODIES) {
        Err(_) => false,
        Ok(v) if v == "empty" => true,
        Ok(v) => {
            eprintln!(
                "wait-conformance: {}={v:?} is not `empty`: the bodies run",
                protocol::env::WAITCONF_BODIES
            );
            false
        }
    })
}

/// Exit code for bad configuration (an unusable CLONE_WAIT_PID_FLAG).
pub const EXIT_CONFIG: i32 = 2;
/// Exit code when the harness itself broke (could not probe, leaked).
pub const EXIT_HARNESS: i32 = 3;

/// Everything the case binary does, given the table.
pub fn main(table: fn() -> Vec<Case>) -> ! {
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some(RUN_CASE_ARG) => case_process(table, argv.get(2).map(String::as_str).unwrap_or("")),
        Some(PROBE_RECORD_ARG) => probe_record_process(),
        // A tiny program for execve rows: exit with the given code.
        Some(EXIT_ARG) => {
            std::process::exit(argv.get(2).and_then(|s| s.parse().ok()).unwrap_or(127))
        }
        _ => test_process(table),
    }
}

/// `--probe`: the probe's env record on stdout. Exit 0 whatever it found, [`EXIT_CONFIG`] for
/// an unusable bit, [`EXIT_HARNESS`] when the probe broke.
fn probe_record_process() -> ! {
    if let Err(e) = config::configured_bit() {
        eprintln!("wait-conformance: configuration error: {e}");
        std::process::exit(EXIT_CONFIG);
    }
    match run_probe() {
        Ok(p) => {
            eprintln!("{}", probe_lines(&p));
            println!("{}", Record::Env(env_record(&p)).to_line());
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("wait-conformance: the feature probe broke: {e}");
            std::process::exit(EXIT_HARNESS)
        }
    }
}

/// The report's first line, from the probe.
fn env_record(probe: &Probe) -> EnvRecord {
    EnvRecord {
        kernel_release: probe.kernel_release.clone(),
        clone_wait_pid_flag: protocol::bit::spell(probe.bit),
        feature: if probe.absent.is_none() {
            protocol::record::PRESENT
        } else {
            protocol::record::ABSENT
        }
        .into(),
        feature_reason: probe.absent.clone().unwrap_or_else(|| probe.reason.clone()),
        feature_observed: probe.observed.clone(),
    }
}

/// Run the probe in a child process of its own (it must be the only child
/// of whoever makes the generic peek): a fork of this process, which is still
/// single-threaded here (an exec of the case binary costs about 130 ms in a
/// TCG guest). The child prints the probe as JSON on a pipe.
fn run_probe() -> Result<Probe, String> {
    use crate::sys::clone::{clone3, flags::CLONE_PIDFD, Clone3Request, Program};
    let bit = config::configured_bit().unwrap_or(config::DEFAULT_BIT);
    let (r, w) = crate::sys::clone::pipe();
    let w_raw = std::os::fd::AsRawFd::as_raw_fd(&w);
    let mut child = clone3(
        &Clone3Request::new(CLONE_PIDFD, libc::SIGCHLD as u64),
        Program::Run(Box::new(move || {
            let line = serde_json::to_string(&config::probe(bit)).expect("probe json");
            // SAFETY: the child's copy of the write end; the OwnedFd in the
            // parent's frame is never dropped here (the child exits from this
            // closure).
            let w = unsafe { std::os::fd::BorrowedFd::borrow_raw(w_raw) };
            if crate::sys::io::write_all(w, line.as_bytes()) {
                0
            } else {
                1
            }
        })),
    )
    .map_err(|e| format!("clone3 (probe): {e}"))?;
    // Only the probe holds the write end now: its exit is EOF.
    drop(w);
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut File::from(r), &mut out)
        .map_err(|e| format!("reading the probe's result: {e}"))?;
    let fd = child.pidfd.take().ok_or("clone3 (probe) gave no pidfd")?;
    let status = executor::Proc::from_pidfd(child.pid, fd).reap();
    serde_json::from_slice(&out)
        .map_err(|e| format!("probe printed no result ({e}); it ended with {status}"))
}

fn test_process(table: fn() -> Vec<Case>) -> ! {
    let raw: Vec<String> = std::env::args().collect();
    // `--verbose` is ours (libtest has no such flag): with `--list` it
    // prints one block per case instead of one line.
    let verbose = raw.iter().skip(1).any(|a| a == VERBOSE_ARG);
    let args = libtest_mimic::Arguments::from_iter(raw.into_iter().filter(|a| a != VERBOSE_ARG));
    let bit = match config::configured_bit() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("wait-conformance: configuration error: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    if args.list {
        list(table, &args, verbose);
    }
    // Orphans of a case process that had to be killed come here, and are
    // reaped by pidfd below.
    if let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        eprintln!("wait-conformance: cannot become a child subreaper: {e}");
        std::process::exit(EXIT_HARNESS);
    }
    let probe = match run_probe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("wait-conformance: the feature probe broke: {e}");
            std::process::exit(EXIT_HARNESS);
        }
    };
    debug_assert_eq!(probe.bit, bit);
    eprintln!("{}", probe_lines(&probe));
    kcov_notice();
    let report = Report::open(&probe);
    let probe_json = serde_json::to_string(&probe).expect("probe json");
    let env = Env {
        probe: probe.clone(),
        root: rustix::process::geteuid().is_root(),
        cgroup2: cgroup2_writable(),
    };
    let tally = Tally::default();
    let cases = table();
    // Looked up once here, before the fork server starts, so that no case
    // process repeats it (every case's expectation asks).
    let _ = super::config::missing_namespaces();
    if bodies_empty() {
        eprintln!(
            "wait-conformance: {}=empty: every case process is made, watched and checked for \
             leftovers, but runs no body; every case that runs is reported skipped (a measure of \
             the harness, not a verdict)",
            protocol::env::WAITCONF_BODIES
        );
    }
    let spawner = Arc::new(Spawner::new(&cases, &probe, probe_json));
    report.in_background();
    let trials = cases
        .into_iter()
        .map(|case| {
            let unmet = env.unmet(&case.needs);
            trial(case, unmet, report.clone(), spawner.clone(), tally.clone())
        })
        .collect();
    let json = matches!(args.format, Some(libtest_mimic::FormatSetting::Json));
    let conclusion = libtest_mimic::run(&args, trials);
    report.finish();
    if !tally.is_empty() {
        // After libtest's own summary; on stderr when stdout is a JSON stream.
        let table = format!("\nby provenance:\n{}", tally.table());
        if json {
            eprint!("{table}")
        } else {
            print!("{table}")
        }
    }
    let mut leftovers = Vec::new();
    if let Ok(Spawner::Fork(z)) = Arc::try_unwrap(spawner) {
        leftovers.extend(z.stop());
    }
    // Children stuck in the kernel (they outlived a SIGKILL, or a row proved
    // they never exit) are the kernel's doing, and each came with a row that
    // did not pass: named here, not counted as the harness's leftovers.
    let stuck: Vec<i32> = proc::children(std::process::id() as i32)
        .into_iter()
        .filter(|&c| executor::is_stuck(c))
        .collect();
    if !stuck.is_empty() {
        eprintln!(
            "wait-conformance: still stuck in the kernel after the run (the rows that met them \
             did not pass): {}",
            stuck
                .iter()
                .map(|&p| proc::stuck_report(p))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    leftovers.extend(executor::reap_children(&stuck));
    if !leftovers.is_empty() {
        eprintln!(
            "wait-conformance: leftover processes after the run: {}",
            leftovers.join("; ")
        );
        std::process::exit(EXIT_HARNESS);
    }
    conclusion.exit()
}

/// `--list` (with `--verbose`: one block per selected case) and exit.
fn list(table: fn() -> Vec<Case>, args: &libtest_mimic::Arguments, verbose: bool) -> ! {
    if verbose {
        let cases: Vec<Case> = table()
            .into_iter()
            .filter(|c| selected(args, &c.name))
            .collect();
        print!("{}", list_verbose(&cases));
        std::process::exit(0);
    }
    let trials = table()
        .into_iter()
        .map(|c| libtest_mimic::Trial::test(c.name, || Ok(())))
        .collect();
    libtest_mimic::run(args, trials).exit()
}

/// One case as a libtest trial: skipped with the reason when a need is
/// `unmet`, else run in its own process; recorded in the report and the
/// tally.
fn trial(
    case: Case,
    unmet: Option<String>,
    report: Report,
    spawner: Arc<Spawner>,
    tally: Tally,
) -> libtest_mimic::Trial {
    let name = case.name.clone();
    libtest_mimic::Trial::ignorable_test(name.clone(), move || {
        let start = Instant::now();
        let mut out = match unmet {
            Some(reason) => CaseOutput {
                status: Status::Skip,
                detail: reason,
                stuck: Vec::new(),
            },
            None => supervise(&spawner, &name, case.timeout.mul_f64(timeout_mul())),
        };
        for &pid in &out.stuck {
            executor::mark_stuck(pid);
        }
        if out.status == Status::Fail {
            // The reader of a failure sees what the row expected.
            if let Some(want) = case.expects_text() {
                out.detail = format!("{}; want: {want}", out.detail);
            }
        }
        let provenance = case.source.provenance();
        report.record(&name, provenance, &out, start.elapsed());
        tally.add(provenance, out.status);
        match out.status {
            Status::Pass => Ok(libtest_mimic::Completion::Completed),
            Status::Skip => Ok(libtest_mimic::Completion::ignored_with(out.detail)),
            Status::Fail => Err(format!("FAIL: {}", out.detail).into()),
            Status::Broken => Err(format!("BROKEN: {}", out.detail).into()),
        }
    })
}

/// The flag that makes `--list` print one block per case.
pub const VERBOSE_ARG: &str = "--verbose";

/// Whether libtest's filter arguments select this name (as libtest-mimic
/// decides for a run: substring or `--exact`, minus `--skip`).
/// With `WAITCONF_KCOV_DIR` set: whether the case processes record kernel
/// coverage, said once.
fn kcov_notice() {
    let Some(dir) = std::env::var_os(protocol::env::WAITCONF_KCOV_DIR) else {
        return;
    };
    match crate::sys::kcov::available() {
        Ok(()) => eprintln!(
            "kcov: on, each case's kernel PCs go to {}",
            std::path::Path::new(&dir).display()
        ),
        Err(why) => eprintln!("kcov: off: {why}"),
    }
}

fn selected(args: &libtest_mimic::Arguments, name: &str) -> bool {
    let hit = |f: &str| {
        if args.exact {
            name == f
        } else {
            name.contains(f)
        }
    };
    args.filter.as_deref().is_none_or(hit) && !args.skip.iter().any(|s| hit(s))
}

/// `--list --verbose`: per case, its name, provenance and source text,
/// needs, timeout and expectation ("-" when the row states none).
pub fn list_verbose(cases: &[Case]) -> String {
    let mut out = String::new();
    for c in cases {
        let needs = if c.needs.is_empty() {
            "-".to_string()
        } else {
            c.needs.iter().map(need_name).collect::<Vec<_>>().join(", ")
        };
        out.push_str(&format!(
            "{}\n  provenance: {}\n  source:     {}\n  needs:      {}\n  timeout:    {}s\n  expects:    {}\n\n",
            c.name,
            c.source.provenance(),
            c.source,
            needs,
            c.timeout.as_secs_f64(),
            c.expects_text().as_deref().unwrap_or("-"),
        ));
    }
    out
}

fn need_name(n: &Need) -> String {
    match n {
        Need::Feature => "feature (CLONE_WAIT_PID)".into(),
        Need::Root => "root".into(),
        Need::MinKernel(a, b) => format!("Linux {a}.{b}+"),
        Need::Cgroup2 => "writable cgroup2".into(),
        Need::Namespace(ns) => format!("{ns} namespaces"),
    }
}

/// What the case binary says about the probe before the run.
fn probe_lines(p: &Probe) -> String {
    let mut s = match &p.absent {
        Some(why) => format!(
            "wait-conformance: CLONE_WAIT_PID at bit {:#x}: absent ({why})",
            p.bit
        ),
        None => format!(
            "wait-conformance: CLONE_WAIT_PID at bit {:#x}: present ({})",
            p.bit, p.reason
        ),
    };
    if !p.observed.is_empty() {
        let tag = if p.has_warnings() {
            "warning: the probe saw deviations from the seed"
        } else {
            "the probe saw"
        };
        s.push_str(&format!("\nwait-conformance: {tag}: {}", p.observed));
    }
    s
}

/// Results counted per provenance, for the end-of-run summary.
#[derive(Clone, Default)]
struct Tally(Arc<Mutex<std::collections::BTreeMap<Provenance, [usize; 4]>>>);

impl Tally {
    fn add(&self, p: Provenance, s: Status) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(p).or_default()[s.index()] += 1;
    }
    fn is_empty(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
    fn table(&self) -> String {
        provenance_table(&self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The per-provenance counts as a small table with a total row.
pub fn provenance_table(m: &std::collections::BTreeMap<Provenance, [usize; 4]>) -> String {
    let mut out = format!(
        "{:<12} {:>5} {:>5} {:>5} {:>6}\n",
        "provenance", "pass", "fail", "skip", "broken"
    );
    let mut total = [0usize; 4];
    for (p, n) in m {
        out.push_str(&format!(
            "{:<12} {:>5} {:>5} {:>5} {:>6}\n",
            p.name(),
            n[0],
            n[1],
            n[2],
            n[3]
        ));
        for i in 0..4 {
            total[i] += n[i];
        }
    }
    out.push_str(&format!(
        "{:<12} {:>5} {:>5} {:>5} {:>6}\n",
        "total", total[0], total[1], total[2], total[3]
    ));
    out
}

/// What the test process knows when it decides skips.
struct Env {
    probe: Probe,
    root: bool,
    cgroup2: bool,
}

impl Env {
    fn unmet(&self, needs: &[Need]) -> Option<String> {
        let kv = self.probe.features().version;
        for n in needs {
            let why = match n {
                Need::Feature => self
                    .probe
                    .absent
                    .clone()
                    .map(|r| format!("CLONE_WAIT_PID absent: {r}")),
                Need::Root => (!self.root).then(|| "needs root".to_string()),
                Need::MinKernel(a, b) => (kv < (*a, *b))
                    .then(|| format!("needs Linux {a}.{b}+, have {}", self.probe.kernel_release)),
                Need::Cgroup2 => (!self.cgroup2)
                    .then(|| "needs a writable cgroup2 hierarchy at /sys/fs/cgroup".to_string()),
                Need::Namespace(ns) => config::namespace_missing(ns).then(|| {
                    format!("needs {ns} namespaces (no /proc/self/ns/{ns} on this kernel)")
                }),
            };
            if why.is_some() {
                return why;
            }
        }
        None
    }
}

fn cgroup2_writable() -> bool {
    std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").is_ok()
        && rustix::fs::access("/sys/fs/cgroup/cgroup.procs", rustix::fs::Access::WRITE_OK).is_ok()
}

/// The JSON-lines report named by WAITCONF_REPORT. The env record is written at once; the case
/// records go through [`Report::in_background`]'s writer thread once the fork server runs.
#[derive(Clone)]
struct Report(Option<Arc<Mutex<Sink>>>);

/// Where the report's lines go: the file itself, or the writer thread's queue.
enum Sink {
    File(File),
    Queue {
        tx: Option<std::sync::mpsc::Sender<String>>,
        writer: Option<std::thread::JoinHandle<()>>,
    },
}

impl Report {
    fn open(probe: &Probe) -> Report {
        let Ok(path) = std::env::var(REPORT_ENV) else {
            return Report(None);
        };
        let f = match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => {
                eprintln!("wait-conformance: cannot open report {path}: {e}");
                std::process::exit(EXIT_CONFIG);
            }
        };
        let r = Report(Some(Arc::new(Mutex::new(Sink::File(f)))));
        r.line(&Record::Env(env_record(probe)).to_line());
        r
    }

    /// From now on, lines go to a writer thread that writes what has queued up in one write(2)
    /// (in a VM the report is on 9p, where each write is a round trip to the host: about 0.6 ms
    /// under TCG, paid by the trial thread that finished a case while it could start the next).
    /// A line reaches the file at most one write after its case ended; [`Report::finish`] waits
    /// for the last. The test process must stay single-threaded until the fork server has
    /// started: call this after.
    fn in_background(&self) {
        let Some(sink) = &self.0 else { return };
        let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
        let Sink::File(f) = &*sink else { return };
        let Ok(mut f) = f.try_clone() else { return };
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let writer = std::thread::Builder::new()
            .name("report".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = first;
                    while let Ok(more) = rx.try_recv() {
                        batch.push_str(&more);
                    }
                    let _ = f.write_all(batch.as_bytes());
                }
            });
        if let Ok(writer) = writer {
            *sink = Sink::Queue {
                tx: Some(tx),
                writer: Some(writer),
            };
        }
    }

    /// One record, in one write(2) (`writeln!` on a File is two: the text and the newline).
    fn line(&self, s: &str) {
        let Some(sink) = &self.0 else { return };
        let mut rec = String::with_capacity(s.len() + 1);
        rec.push_str(s);
        rec.push('\n');
        let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *sink {
            Sink::File(f) => {
                let _ = f.write_all(rec.as_bytes());
            }
            Sink::Queue { tx: Some(tx), .. } => {
                let _ = tx.send(rec);
            }
            Sink::Queue { tx: None, .. } => {}
        }
    }

    /// Wait until every queued line is in the file.
    fn finish(&self) {
        let Some(sink) = &self.0 else { return };
        let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
        if let Sink::Queue { tx, writer } = &mut *sink {
            drop(tx.take());
            if let Some(w) = writer.take() {
                let _ = w.join();
            }
        }
    }

    fn record(&self, name: &str, provenance: Provenance, out: &CaseOutput, took: Duration) {
        let rec = CaseRecord {
            name: name.into(),
            status: out.status,
            detail: out.detail.clone(),
            duration_ms: took.as_millis() as u64,
            provenance: Some(provenance.name().into()),
        };
        self.line(&Record::Case(rec).to_line());
    }
}

/// How the test process makes case processes ([`SPAWN_ENV`]).
enum Spawner {
    /// A re-exec of the case binary per case, the probe in its environment.
    Exec { probe_json: String },
    /// Forked by the fork server.
    Fork(Pool),
}

impl Spawner {
    /// The fork server unless [`SPAWN_ENV`] says `exec` (or it cannot
    /// start: then exec, with a note).
    fn new(cases: &[Case], probe: &Probe, probe_json: String) -> Spawner {
        match std::env::var(SPAWN_ENV).as_deref() {
            Ok("exec") => return Spawner::Exec { probe_json },
            Ok("fork") | Ok("") | Err(_) => {}
            Ok(other) => eprintln!(
                "wait-conformance: {SPAWN_ENV}={other:?} is neither fork nor exec: using fork"
            ),
        }
        match Pool::start(zygote::pool_size(), cases, probe, case_process_for) {
            Ok(z) => Spawner::Fork(z),
            Err(e) => {
                eprintln!("wait-conformance: no fork server ({e}): each case is an exec of the case binary");
                Spawner::Exec { probe_json }
            }
        }
    }

    fn spawn(&self, name: &str) -> Result<Supervised, String> {
        match self {
            Spawner::Fork(z) => z.spawn(name),
            Spawner::Exec { probe_json } => spawn_exec(name, probe_json),
        }
    }
}

/// The exec path: the case binary again, as `--wc-run-case NAME`, in a
/// process group of its own.
fn spawn_exec(name: &str, probe_json: &str) -> Result<Supervised, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg(RUN_CASE_ARG)
        .arg(name)
        .env(PROBE_ENV, probe_json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("spawn case process: {e}"))?;
    let stdout = OwnedFd::from(child.stdout.take().expect("piped"));
    let stderr = OwnedFd::from(child.stderr.take().expect("piped"));
    // The watch drains them only every DRAIN_TICK while the case runs.
    crate::sys::io::widen_pipe(&stdout);
    crate::sys::io::widen_pipe(&stderr);
    // Our own unreaped child: the pid is still its own. From here on it is
    // held, killed and reaped by pidfd (dropping `child` does not wait).
    match Proc::open(child.id() as i32) {
        Ok(proc) => Ok(Supervised {
            proc,
            stdout,
            stderr,
        }),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("pidfd_open(case process): {e}"))
        }
    }
}

/// Run one case in its own process and judge what came back.
fn supervise(spawner: &Spawner, name: &str, timeout: Duration) -> CaseOutput {
    match spawner.spawn(name) {
        Ok(s) => judge(s, timeout),
        Err(detail) => CaseOutput {
            status: Status::Broken,
            detail,
            stuck: Vec::new(),
        },
    }
}

/// Watch a case process until it exits or times out, and judge it.
fn judge(mut s: Supervised, timeout: Duration) -> CaseOutput {
    let pid = s.proc.pid();
    // Both pipes are drained while waiting: the case announces its kernel
    // waits on stdout (sys::announce), and a full pipe must never block it.
    let seen = s.watch(timeout);
    if !seen.exited {
        let mut stuck = vec![proc::stuck_report(pid)];
        let below = proc::descendants(pid);
        stuck.extend(below.iter().take(4).copied().map(proc::stuck_report));
        let waits = live_waits(pid, &below, &String::from_utf8_lossy(&seen.out));
        let left = executor::kill_tree(&s.proc);
        let _ = s.proc.reap();
        let mut detail = timeout_detail(&waits, timeout, &stuck);
        if !left.is_empty() {
            detail.push_str(&format!("; could not reap: {}", left.join("; ")));
        }
        // Inside a kernel wait the row expects to return: the kernel's
        // failure. Anywhere else: the harness's own hang.
        let status = if waits.is_empty() {
            Status::Broken
        } else {
            Status::Fail
        };
        return CaseOutput {
            status,
            detail,
            stuck: Vec::new(),
        };
    }
    let status = s.proc.reap();
    let out = String::from_utf8_lossy(&seen.out);
    let err = String::from_utf8_lossy(&seen.err);
    let parsed = out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<CaseOutput>(l).ok());
    match parsed {
        Some(o) => o,
        None => CaseOutput {
            status: Status::Broken,
            detail: format!(
                "case process reported no result ({status}); stderr: {}",
                err.trim().lines().take(6).collect::<Vec<_>>().join(" | ")
            ),
            stuck: Vec::new(),
        },
    }
}

/// The announced kernel waits still open in the case process `case` or a
/// live descendant of it (`below`), the case process's own first. A mark
/// from a process in a nested pid namespace names a pid the supervisor does
/// not see as a descendant and is left out; so is a thread that has gone.
fn live_waits(case: i32, below: &[i32], announced: &str) -> Vec<String> {
    let mut open: Vec<crate::sys::announce::Mark> = crate::sys::announce::inside(announced)
        .into_iter()
        .filter(|m| {
            (m.pid == case || below.contains(&m.pid))
                && std::path::Path::new(&format!("/proc/{}/task/{}", m.pid, m.tid)).exists()
        })
        .collect();
    open.sort_by_key(|m| m.pid != case);
    open.iter()
        .map(|m| {
            let whose = if m.pidfd >= 0 {
                pidfd_owner(m.pid, m.pidfd)
            } else {
                String::new()
            };
            let who = if m.pid == case {
                String::new()
            } else {
                format!(" (in pid {})", m.pid)
            };
            let tid = if m.tid == m.pid {
                String::new()
            } else {
                format!(" (thread {})", m.tid)
            };
            format!("{}{whose}{who}{tid}", m.call)
        })
        .collect()
}

/// " of pid N" for the pidfd `fd` of process `pid`, from its fdinfo.
fn pidfd_owner(pid: i32, fd: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Pid:").map(|v| v.trim().to_string()))
        })
        .map(|p| format!(" of pid {p}"))
        .unwrap_or_default()
}

/// The detail of a timed-out case: which kernel call did not return (when
/// the case was inside one), and where everything is stuck.
pub fn timeout_detail(waits: &[String], timeout: Duration, stuck: &[String]) -> String {
    let secs = timeout.as_secs_f64();
    match waits.split_first() {
        None => format!("timeout after {secs:.1}s; stuck: {}", stuck.join("; ")),
        Some((first, rest)) => {
            let mut d = format!("kernel did not return from {first} within {secs:.1}s");
            if !rest.is_empty() {
                d.push_str(&format!(" (also inside: {})", rest.join("; ")));
            }
            d.push_str(&format!("; stuck: {}", stuck.join("; ")));
            d
        }
    }
}

/// The case process of the exec path: find the case, then run it.
fn case_process(table: fn() -> Vec<Case>, name: &str) -> ! {
    let probe: Probe = match std::env::var(PROBE_ENV)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
    {
        Some(p) => p,
        None => emit(
            Status::Broken,
            format!("case process started without {PROBE_ENV}"),
        ),
    };
    let Some(case) = table().into_iter().find(|c| c.name == name) else {
        emit(Status::Broken, format!("no case named {name:?}"))
    };
    case_process_for(&case, probe)
}

/// Print the case process's one result line and exit.
fn emit(status: Status, detail: String) -> ! {
    let stuck = executor::stuck_pids();
    let line = serde_json::to_string(&CaseOutput {
        status,
        detail,
        stuck,
    })
    .expect("json");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    // The line is out and nothing else is owed (the body's children are reaped, the leak check
    // ran): exit_group(2) at once. std::process::exit would also run the Rust runtime's cleanup
    // and libc's atexit handlers, which belong to the test process a forked case process is a
    // copy of; with their munmap they were 2% of a VM run under TCG (perf, docs/measurements.md,
    // fifth session).
    drop(out);
    crate::sys::clone::exit_now(0, false)
}

/// The case process (exec'd or forked): a child subreaper that dies with
/// the test process, runs one body, then proves that nothing is left below
/// it.
fn case_process_for(case: &Case, probe: Probe) -> ! {
    if let Err(e) = executor::isolate_self(None, false) {
        emit(Status::Broken, e);
    }
    let mut ctx = Ctx::new(probe);
    let body = case.body.clone();
    crate::sys::kcov::begin_case();
    // Announce every kernel wait to the supervisor on a copy of stdout
    // (close-on-exec: an exec'd program does not announce), during the body
    // only: the cleanup below is the harness's.
    let announce = rustix::io::fcntl_dupfd_cloexec(std::io::stdout(), 100).ok();
    crate::sys::announce::announce_to(announce.as_ref().map(std::os::fd::AsRawFd::as_raw_fd));
    let result = if bodies_empty() {
        Ok(Err(Stop::Skip(NO_BODY.into())))
    } else {
        std::panic::catch_unwind(AssertUnwindSafe(|| body(&mut ctx)))
    };
    crate::sys::announce::announce_to(None);
    drop(announce);
    let (mut status, mut detail) = match result {
        Ok(Ok(())) => (Status::Pass, String::new()),
        Ok(Err(Stop::Fail(d))) => (Status::Fail, d),
        Ok(Err(Stop::Skip(d))) => (Status::Skip, d),
        Ok(Err(Stop::Broken(d))) => (Status::Broken, d),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            (
                Status::Broken,
                format!("case panicked: {}", msg.unwrap_or_default()),
            )
        }
    };
    // Anything still below the case process is a leak of this case.
    if let Some(note) = executor::check_no_leftovers() {
        if status == Status::Pass {
            status = Status::Fail;
            detail = note;
        } else {
            detail = format!("{detail}; {note}");
        }
    }
    crate::sys::kcov::finish_case(&case.name);
    emit(status, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::case::Source;

    #[test]
    fn a_timeout_inside_a_kernel_wait_names_the_call() {
        let stuck =
            vec!["pid 5 (x) state S wchan do_wait stack [do_wait < kernel_waitid]".to_string()];
        let d = timeout_detail(
            &["waitid(P_PIDFD, pidfd, &si, WEXITED) on pid 6".into()],
            Duration::from_secs(5),
            &stuck,
        );
        assert_eq!(
            d,
            "kernel did not return from waitid(P_PIDFD, pidfd, &si, WEXITED) on pid 6 within 5.0s; \
             stuck: pid 5 (x) state S wchan do_wait stack [do_wait < kernel_waitid]"
        );
        let d = timeout_detail(
            &["a()".into(), "b() (in pid 7)".into()],
            Duration::from_millis(1500),
            &stuck,
        );
        assert!(d.starts_with("kernel did not return from a() within 1.5s (also inside: b() (in pid 7)); stuck: pid 5"), "{d}");
        let d = timeout_detail(&[], Duration::from_secs(1), &stuck);
        assert!(d.starts_with("timeout after 1.0s; stuck: pid 5"), "{d}");
        assert!(!d.contains("did not return"));
    }

    #[test]
    fn only_live_waits_of_the_case_tree_count() {
        use crate::sys::announce::Mark;
        let me = std::process::id() as i32;
        let mark = |pid, tid, call: &str| Mark::enter(pid, tid, call.into(), -1).line();
        // This process stands in for the case process (its main thread is
        // alive); pid 1 is the init of some nested namespace's view, not a
        // descendant; a tid that does not exist has gone.
        let text = [
            mark(1, 1, "init's wait"),
            mark(me, me, "the case's wait"),
            mark(me, i32::MAX - 1, "a gone thread"),
        ]
        .join("\n");
        assert_eq!(
            live_waits(me, &[], &text),
            vec!["the case's wait".to_string()]
        );
        assert!(live_waits(me, &[], "").is_empty());
    }

    #[test]
    fn a_polled_pidfd_is_named_by_its_process() {
        let me = std::process::id() as i32;
        let fd = crate::sys::pidfd::open(me, false).unwrap();
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        assert_eq!(pidfd_owner(me, raw), format!(" of pid {me}"));
        // Not a pidfd (stdin has no Pid: line): nothing is claimed.
        assert_eq!(pidfd_owner(me, 0), "");
    }

    #[test]
    fn list_verbose_shows_provenance_needs_timeout_and_expectation() {
        let cases = vec![
            Case::new("g::call::sit::hidden", Source::Seed("a sentence"), |_| {
                Ok(())
            })
            .need(Need::Feature)
            .need(Need::Root)
            .expects("reported: pid, Exited(3)"),
            Case::new("g::call::sit::plain", Source::Design("why"), |_| Ok(()))
                .timeout(Duration::from_secs(20)),
        ];
        let text = list_verbose(&cases);
        assert_eq!(
            text,
            "g::call::sit::hidden\n  provenance: seed\n  source:     seed: a sentence\n  needs:      feature (CLONE_WAIT_PID), root\n  \
             timeout:    5s\n  expects:    reported: pid, Exited(3)\n\n\
             g::call::sit::plain\n  provenance: design\n  source:     design: why\n  needs:      -\n  timeout:    20s\n  \
             expects:    -\n\n"
        );
    }

    #[test]
    fn filters_select_as_libtest_does() {
        let args = |v: &[&str]| {
            libtest_mimic::Arguments::from_iter(std::iter::once("x").chain(v.iter().copied()))
        };
        assert!(selected(&args(&[]), "a::b"));
        assert!(selected(&args(&["a::"]), "a::b"));
        assert!(!selected(&args(&["c::"]), "a::b"));
        assert!(!selected(&args(&["--exact", "a::"]), "a::b"));
        assert!(selected(&args(&["--exact", "a::b"]), "a::b"));
        assert!(!selected(&args(&["a::", "--skip", "b"]), "a::b"));
    }

    #[test]
    fn provenance_counts_table() {
        let t = Tally::default();
        t.add(Provenance::Seed, Status::Pass);
        t.add(Provenance::Seed, Status::Fail);
        t.add(Provenance::Design, Status::Broken);
        t.add(Provenance::Documented, Status::Skip);
        let table = t.table();
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0], ["provenance", "pass", "fail", "skip", "broken"]);
        assert_eq!(rows[1], ["seed", "1", "1", "0", "0"]);
        assert_eq!(rows[2], ["documented", "0", "0", "1", "0"]);
        assert_eq!(rows[3], ["design", "0", "0", "0", "1"]);
        assert_eq!(rows[4], ["total", "1", "1", "1", "1"]);
    }
}
