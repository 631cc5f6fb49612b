//! How a case runs: the test process (libtest-mimic, one thread per trial)
//! spawns one case process per case and watches it through a pidfd; the
//! case process is a child subreaper, runs the body, proves nothing is left
//! and prints one result line. Nothing here ever waits generically: every
//! reap is a focused wait on a known pid or pidfd.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::case::{Case, Ctx, Need, Provenance, Stop};
use super::config::{self, Probe};
use crate::sys::wait::{wait, WaitCall, WaitOpts, WaitOutcome, WaitTarget};
use crate::sys::{pidfd, proc};

/// LTP's closed vocabulary of results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
    Broken,
}

/// What the case process prints on its stdout, one JSON line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseOutput {
    pub status: Status,
    pub detail: String,
}

/// One line of the JSON-lines report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseRecord {
    pub kind: String,
    pub name: String,
    pub status: Status,
    pub detail: String,
    pub duration_ms: u64,
    /// Where the row's expectation comes from (seed, documented, design,
    /// regression, selftest).
    pub provenance: Provenance,
}

/// The report's first line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnvRecord {
    pub kind: String,
    pub kernel_release: String,
    pub clone_wait_pid_flag: String,
    pub feature: String,
    /// why absent, or why present
    pub feature_reason: String,
    /// what the probe saw (deviations from the seed marked `unexpected:`);
    /// never a reason for "absent"
    #[serde(default)]
    pub feature_observed: String,
}

pub const RUN_CASE_ARG: &str = "--wc-run-case";
pub const PROBE_ARG: &str = "--wc-probe";
pub const EXIT_ARG: &str = "--wc-exit";
pub const PROBE_ENV: &str = "WAITCONF_PROBE";
pub const REPORT_ENV: &str = "WAITCONF_REPORT";

/// Exit code for bad configuration (an unusable CLONE_WAIT_PID_FLAG).
pub const EXIT_CONFIG: i32 = 2;
/// Exit code when the harness itself broke (could not probe, leaked).
pub const EXIT_HARNESS: i32 = 3;

/// Everything the case binary does, given the table.
pub fn main(table: fn() -> Vec<Case>) -> ! {
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some(RUN_CASE_ARG) => case_process(table, argv.get(2).map(String::as_str).unwrap_or("")),
        Some(PROBE_ARG) => probe_process(),
        // A tiny program for execve rows: exit with the given code.
        Some(EXIT_ARG) => std::process::exit(argv.get(2).and_then(|s| s.parse().ok()).unwrap_or(127)),
        _ => test_process(table),
    }
}

fn probe_process() -> ! {
    let bit = config::configured_bit().unwrap_or(config::SEED_BIT);
    let p = config::probe(bit);
    println!("{}", serde_json::to_string(&p).expect("probe json"));
    std::process::exit(0)
}

/// Run the probe in a child process of its own (it must be the only child
/// of whoever makes the generic peek).
fn run_probe() -> Result<Probe, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out = Command::new(exe).arg(PROBE_ARG).stdin(Stdio::null()).output().map_err(|e| format!("probe: {e}"))?;
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!("probe printed no result ({e}); status {}; stderr: {}", out.status, String::from_utf8_lossy(&out.stderr))
    })
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
        if verbose {
            let cases: Vec<Case> = table().into_iter().filter(|c| selected(&args, &c.name)).collect();
            print!("{}", list_verbose(&cases));
            std::process::exit(0);
        }
        let trials = table().into_iter().map(|c| libtest_mimic::Trial::test(c.name, || Ok(()))).collect();
        libtest_mimic::run(&args, trials).exit();
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
    let report = Report::open(&probe);
    let probe_json = serde_json::to_string(&probe).expect("probe json");
    let env = Env { probe: probe.clone(), root: rustix::process::geteuid().is_root(), cgroup2: cgroup2_writable() };
    let tally = Tally::default();
    let trials = table()
        .into_iter()
        .map(|case| {
            let name = case.name.clone();
            let unmet = env.unmet(&case.needs);
            let report = report.clone();
            let probe_json = probe_json.clone();
            let tally = tally.clone();
            libtest_mimic::Trial::ignorable_test(name.clone(), move || {
                let start = Instant::now();
                let mut out = match unmet {
                    Some(reason) => CaseOutput { status: Status::Skip, detail: reason },
                    None => supervise(&name, &probe_json, case.timeout),
                };
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
        })
        .collect();
    let json = matches!(args.format, Some(libtest_mimic::FormatSetting::Json));
    let conclusion = libtest_mimic::run(&args, trials);
    if !tally.is_empty() {
        // After libtest's own summary; on stderr when stdout is a JSON stream.
        let table = format!("\nby provenance:\n{}", tally.table());
        if json { eprint!("{table}") } else { print!("{table}") }
    }
    let leftovers = reap_orphans(&[]);
    if !leftovers.is_empty() {
        eprintln!("wait-conformance: leftover processes after the run: {}", leftovers.join("; "));
        std::process::exit(EXIT_HARNESS);
    }
    conclusion.exit()
}

/// The flag that makes `--list` print one block per case.
pub const VERBOSE_ARG: &str = "--verbose";

/// Whether libtest's filter arguments select this name (as libtest-mimic
/// decides for a run: substring or `--exact`, minus `--skip`).
fn selected(args: &libtest_mimic::Arguments, name: &str) -> bool {
    let hit = |f: &str| if args.exact { name == f } else { name.contains(f) };
    args.filter.as_deref().is_none_or(hit) && !args.skip.iter().any(|s| hit(s))
}

/// `--list --verbose`: per case, its name, provenance and source text,
/// needs, timeout and expectation ("-" when the row states none).
pub fn list_verbose(cases: &[Case]) -> String {
    let mut out = String::new();
    for c in cases {
        let needs = if c.needs.is_empty() { "-".to_string() } else { c.needs.iter().map(need_name).collect::<Vec<_>>().join(", ") };
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
        Some(why) => format!("wait-conformance: CLONE_WAIT_PID at bit {:#x}: absent ({why})", p.bit),
        None => format!("wait-conformance: CLONE_WAIT_PID at bit {:#x}: present ({})", p.bit, p.reason),
    };
    if !p.observed.is_empty() {
        let tag = if p.has_warnings() { "warning: the probe saw deviations from the seed" } else { "the probe saw" };
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
        m.entry(p).or_default()[status_index(s)] += 1;
    }
    fn is_empty(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
    fn table(&self) -> String {
        provenance_table(&self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn status_index(s: Status) -> usize {
    match s {
        Status::Pass => 0,
        Status::Fail => 1,
        Status::Skip => 2,
        Status::Broken => 3,
    }
}

/// The per-provenance counts as a small table with a total row.
pub fn provenance_table(m: &std::collections::BTreeMap<Provenance, [usize; 4]>) -> String {
    let mut out = format!("{:<12} {:>5} {:>5} {:>5} {:>6}\n", "provenance", "pass", "fail", "skip", "broken");
    let mut total = [0usize; 4];
    for (p, n) in m {
        out.push_str(&format!("{:<12} {:>5} {:>5} {:>5} {:>6}\n", p.name(), n[0], n[1], n[2], n[3]));
        for i in 0..4 {
            total[i] += n[i];
        }
    }
    out.push_str(&format!("{:<12} {:>5} {:>5} {:>5} {:>6}\n", "total", total[0], total[1], total[2], total[3]));
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
                Need::Feature => self.probe.absent.clone().map(|r| format!("CLONE_WAIT_PID absent: {r}")),
                Need::Root => (!self.root).then(|| "needs root".to_string()),
                Need::MinKernel(a, b) => (kv < (*a, *b)).then(|| format!("needs Linux {a}.{b}+, have {}", self.probe.kernel_release)),
                Need::Cgroup2 => (!self.cgroup2).then(|| "needs a writable cgroup2 hierarchy at /sys/fs/cgroup".to_string()),
                Need::Namespace(ns) => (!std::path::Path::new(&format!("/proc/self/ns/{ns}")).exists())
                    .then(|| format!("needs {ns} namespaces (no /proc/self/ns/{ns} on this kernel)")),
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

/// The JSON-lines report named by WAITCONF_REPORT, written line by line.
#[derive(Clone)]
struct Report(Option<Arc<Mutex<File>>>);

impl Report {
    fn open(probe: &Probe) -> Report {
        let Ok(path) = std::env::var(REPORT_ENV) else { return Report(None) };
        let f = match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("wait-conformance: cannot open report {path}: {e}");
                std::process::exit(EXIT_CONFIG);
            }
        };
        let r = Report(Some(Arc::new(Mutex::new(f))));
        let env = EnvRecord {
            kind: "env".into(),
            kernel_release: probe.kernel_release.clone(),
            clone_wait_pid_flag: format!("{:#x}", probe.bit),
            feature: if probe.absent.is_none() { "present".into() } else { "absent".into() },
            feature_reason: probe.absent.clone().unwrap_or_else(|| probe.reason.clone()),
            feature_observed: probe.observed.clone(),
        };
        r.line(&serde_json::to_string(&env).expect("json"));
        r
    }

    fn line(&self, s: &str) {
        if let Some(f) = &self.0 {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(f, "{s}");
            let _ = f.flush();
        }
    }

    fn record(&self, name: &str, provenance: Provenance, out: &CaseOutput, took: Duration) {
        let rec = CaseRecord {
            kind: "case".into(),
            name: name.into(),
            status: out.status,
            detail: out.detail.clone(),
            duration_ms: took.as_millis() as u64,
            provenance,
        };
        self.line(&serde_json::to_string(&rec).expect("json"));
    }
}

/// Run one case in its own process and judge what came back.
fn supervise(name: &str, probe_json: &str, timeout: Duration) -> CaseOutput {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return CaseOutput { status: Status::Broken, detail: format!("current_exe: {e}") },
    };
    let mut cmd = Command::new(exe);
    cmd.arg(RUN_CASE_ARG)
        .arg(name)
        .env(PROBE_ENV, probe_json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return CaseOutput { status: Status::Broken, detail: format!("spawn case process: {e}") },
    };
    let pid = child.id() as i32;
    let fd = match pidfd::open(pid, false) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return CaseOutput { status: Status::Broken, detail: format!("pidfd_open(case process): {e}") };
        }
    };
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    // Drain both pipes while waiting: the case announces its kernel waits on
    // stdout (sys::announce), and a full pipe must never block it.
    let mut out_buf = Vec::new();
    let mut err_buf = Vec::new();
    let exited = watch(&fd, timeout, &mut stdout, &mut out_buf, &mut stderr, &mut err_buf);
    if !exited {
        let mut stuck = vec![proc::stuck_report(pid)];
        let below = proc::descendants(pid);
        stuck.extend(below.iter().take(4).copied().map(proc::stuck_report));
        out_buf.extend_from_slice(drain(&mut stdout).as_bytes());
        let waits = live_waits(pid, &below, &String::from_utf8_lossy(&out_buf));
        let left = kill_tree(pid, &fd);
        let _ = child.wait();
        let mut detail = timeout_detail(&waits, timeout, &stuck);
        if !left.is_empty() {
            detail.push_str(&format!("; could not reap: {}", left.join("; ")));
        }
        // Inside a kernel wait the row expects to return: the kernel's
        // failure. Anywhere else: the harness's own hang.
        let status = if waits.is_empty() { Status::Broken } else { Status::Fail };
        return CaseOutput { status, detail };
    }
    let status = child.wait();
    out_buf.extend_from_slice(drain(&mut stdout).as_bytes());
    err_buf.extend_from_slice(drain(&mut stderr).as_bytes());
    let out = String::from_utf8_lossy(&out_buf);
    let err = String::from_utf8_lossy(&err_buf);
    let parsed = out.lines().rev().find_map(|l| serde_json::from_str::<CaseOutput>(l).ok());
    match parsed {
        Some(o) => o,
        None => CaseOutput {
            status: Status::Broken,
            detail: format!(
                "case process reported no result ({}); stderr: {}",
                status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                err.trim().lines().take(6).collect::<Vec<_>>().join(" | ")
            ),
        },
    }
}

/// Wait up to `timeout` for the process behind `fd` to exit, reading
/// whatever its pipes offer meanwhile. Returns whether it exited.
fn watch<O: Read + AsFd, E: Read + AsFd>(
    fd: &OwnedFd,
    timeout: Duration,
    out: &mut O,
    out_buf: &mut Vec<u8>,
    err: &mut E,
    err_buf: &mut Vec<u8>,
) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let deadline = Instant::now() + timeout;
    let (mut out_open, mut err_open) = (true, true);
    let mut chunk = [0u8; 8192];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return pidfd::has_exited(fd.as_fd());
        }
        let left = deadline - now;
        let ts = Timespec { tv_sec: left.as_secs() as i64, tv_nsec: left.subsec_nanos() as i64 };
        let (exited, out_ready, err_ready) = {
            let mut fds = vec![PollFd::new(fd, PollFlags::IN)];
            if out_open {
                fds.push(PollFd::new(&*out, PollFlags::IN));
            }
            if err_open {
                fds.push(PollFd::new(&*err, PollFlags::IN));
            }
            match poll(&mut fds, Some(&ts)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => return pidfd::poll_exit(fd.as_fd(), Some(left)).unwrap_or(false),
            }
            let ready = |i: usize| fds.get(i).is_some_and(|f| !f.revents().is_empty());
            let oi = 1;
            let ei = if out_open { 2 } else { 1 };
            (ready(0), out_open && ready(oi), err_open && ready(ei))
        };
        if exited {
            return true;
        }
        if out_ready {
            match out.read(&mut chunk) {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => out_buf.extend_from_slice(&chunk[..n]),
            }
        }
        if err_ready {
            match err.read(&mut chunk) {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => err_buf.extend_from_slice(&chunk[..n]),
            }
        }
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
            let whose = if m.pidfd >= 0 { pidfd_owner(m.pid, m.pidfd) } else { String::new() };
            let who = if m.pid == case { String::new() } else { format!(" (in pid {})", m.pid) };
            let tid = if m.tid == m.pid { String::new() } else { format!(" (thread {})", m.tid) };
            format!("{}{whose}{who}{tid}", m.call)
        })
        .collect()
}

/// " of pid N" for the pidfd `fd` of process `pid`, from its fdinfo.
fn pidfd_owner(pid: i32, fd: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Pid:").map(|v| v.trim().to_string())))
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

/// Read what is in a pipe without waiting for writers that may linger (a
/// leaked grandchild could still hold it): only what is ready now.
fn drain<R: Read + AsFd>(r: &mut R) -> String {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let ready = {
            let mut fds = [PollFd::new(r, PollFlags::IN)];
            matches!(poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })), Ok(n) if n > 0)
        };
        if !ready {
            break;
        }
        match r.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// SIGKILL a case process and everything below it, then reap what was
/// reparented to the test process (a subreaper) by pidfd. Returns what could
/// not be reaped (an unkillable task), described.
fn kill_tree(pid: i32, fd: &OwnedFd) -> Vec<String> {
    let fds = kill_descendants(pid);
    let _ = pidfd::send_signal(fd, libc::SIGKILL);
    reap_by_pidfd(fds)
}

/// SIGKILL every descendant of `root` through a pidfd opened first (it
/// stays valid across reparenting and pid reuse); three passes catch what
/// was forked meanwhile. Returns the pidfds for reaping.
fn kill_descendants(root: i32) -> Vec<(i32, OwnedFd)> {
    let mut fds: Vec<(i32, OwnedFd)> = Vec::new();
    for _ in 0..3 {
        for d in proc::descendants(root) {
            if fds.iter().all(|(p, _)| *p != d) {
                if let Ok(f) = pidfd::open(d, false) {
                    let _ = pidfd::send_signal(&f, libc::SIGKILL);
                    fds.push((d, f));
                }
            }
        }
    }
    fds
}

/// Reap the given processes (children of this process by now, or soon) with
/// focused waits; give each a bounded time to die.
fn reap_by_pidfd(fds: Vec<(i32, OwnedFd)>) -> Vec<String> {
    let mut left = Vec::new();
    for (p, f) in fds {
        let died = pidfd::poll_exit(f.as_fd(), Some(Duration::from_secs(2))).unwrap_or(false);
        if !died {
            left.push(proc::stuck_report(p));
            continue;
        }
        // The process has exited; it becomes our child once its own parent
        // (also killed) has exited and it is reparented. A focused blocking
        // wait that reports ECHILD means someone else is still its parent or
        // it is already gone: retry while its parent is alive.
        let target = WaitTarget { pid: p, pidfd: Some(std::os::fd::AsFd::as_fd(&f)), pgid: 0 };
        // Bounded: a parent that does not finish exiting (stuck in the
        // kernel) keeps its zombie; name both and move on.
        for _ in 0..8 {
            match wait(WaitCall::WaitidPidfd, target, WaitOpts(WaitOpts::WEXITED | WaitOpts::WALL)) {
                WaitOutcome::Failed(crate::sys::Errno::ECHILD) => {
                    let Some(pp) = proc::ppid(p) else { break };
                    if pp == std::process::id() as i32 {
                        continue;
                    }
                    let parent_gone = match pidfd::open(pp, false) {
                        Ok(pf) => pidfd::poll_exit(pf.as_fd(), Some(Duration::from_millis(500))).unwrap_or(false),
                        Err(_) => true,
                    };
                    if !parent_gone {
                        left.push(format!("pid {p} is held by its parent {}", proc::stuck_report(pp)));
                        break;
                    }
                }
                _ => break,
            }
        }
    }
    left
}

/// Reap every child of the test process that is not a known live case
/// process; describe what is left. Called once the trials are done.
fn reap_orphans(keep: &[i32]) -> Vec<String> {
    let me = std::process::id() as i32;
    let mut fds = Vec::new();
    for c in proc::children(me) {
        if keep.contains(&c) {
            continue;
        }
        if let Ok(f) = pidfd::open(c, false) {
            let _ = pidfd::send_signal(&f, libc::SIGKILL);
            fds.push((c, f));
        }
    }
    let mut out: Vec<String> = fds.iter().map(|(p, _)| format!("pid {p} (killed and reaped)")).collect();
    out.extend(reap_by_pidfd(fds));
    out
}

/// The case process: a child subreaper that runs one body, then proves
/// that nothing is left below it.
fn case_process(table: fn() -> Vec<Case>, name: &str) -> ! {
    let emit = |status: Status, detail: String| -> ! {
        let line = serde_json::to_string(&CaseOutput { status, detail }).expect("json");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        std::process::exit(0)
    };
    let probe: Probe = match std::env::var(PROBE_ENV).ok().and_then(|s| serde_json::from_str(&s).ok()) {
        Some(p) => p,
        None => emit(Status::Broken, format!("case process started without {PROBE_ENV}")),
    };
    let Some(case) = table().into_iter().find(|c| c.name == name) else {
        emit(Status::Broken, format!("no case named {name:?}"))
    };
    let me = rustix::process::getpid();
    if let Err(e) = rustix::process::set_child_subreaper(Some(me)) {
        emit(Status::Broken, format!("PR_SET_CHILD_SUBREAPER: {e}"));
    }
    // Die with the test process, whatever happens to it.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let mut ctx = Ctx::new(probe);
    let body = case.body.clone();
    // Announce every kernel wait to the supervisor on a copy of stdout
    // (close-on-exec: an exec'd program does not announce), during the body
    // only: the cleanup below is the harness's.
    let announce = rustix::io::fcntl_dupfd_cloexec(std::io::stdout(), 100).ok();
    crate::sys::announce::announce_to(announce.as_ref().map(std::os::fd::AsRawFd::as_raw_fd));
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| body(&mut ctx)));
    crate::sys::announce::announce_to(None);
    drop(announce);
    let (mut status, mut detail) = match result {
        Ok(Ok(())) => (Status::Pass, String::new()),
        Ok(Err(Stop::Fail(d))) => (Status::Fail, d),
        Ok(Err(Stop::Skip(d))) => (Status::Skip, d),
        Ok(Err(Stop::Broken(d))) => (Status::Broken, d),
        Err(p) => {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            (Status::Broken, format!("case panicked: {}", msg.unwrap_or_default()))
        }
    };
    // Anything still below the case process is a leak of this case.
    let left = proc::children(me.as_raw_nonzero().get());
    if !left.is_empty() {
        let states: Vec<String> =
            left.iter().map(|p| format!("{p}({})", proc::state(*p).map(String::from).unwrap_or_else(|| "?".into()))).collect();
        let fds = kill_descendants(me.as_raw_nonzero().get());
        let stuck = reap_by_pidfd(fds);
        let mut note = format!("left children behind: {}", states.join(" "));
        if !stuck.is_empty() {
            note.push_str(&format!("; unkillable: {}", stuck.join("; ")));
        }
        if status == Status::Pass {
            status = Status::Fail;
            detail = note;
        } else {
            detail = format!("{detail}; {note}");
        }
    }
    emit(status, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::case::Source;

    #[test]
    fn a_timeout_inside_a_kernel_wait_names_the_call() {
        let stuck = vec!["pid 5 (x) state S wchan do_wait stack [do_wait < kernel_waitid]".to_string()];
        let d = timeout_detail(&["waitid(P_PIDFD, pidfd, &si, WEXITED) on pid 6".into()], Duration::from_secs(5), &stuck);
        assert_eq!(
            d,
            "kernel did not return from waitid(P_PIDFD, pidfd, &si, WEXITED) on pid 6 within 5.0s; \
             stuck: pid 5 (x) state S wchan do_wait stack [do_wait < kernel_waitid]"
        );
        let d = timeout_detail(&["a()".into(), "b() (in pid 7)".into()], Duration::from_millis(1500), &stuck);
        assert!(d.starts_with("kernel did not return from a() within 1.5s (also inside: b() (in pid 7)); stuck: pid 5"), "{d}");
        let d = timeout_detail(&[], Duration::from_secs(1), &stuck);
        assert!(d.starts_with("timeout after 1.0s; stuck: pid 5"), "{d}");
        assert!(!d.contains("did not return"));
    }

    #[test]
    fn only_live_waits_of_the_case_tree_count() {
        use crate::sys::announce::{Mark, ENTER};
        let me = std::process::id() as i32;
        let mark = |pid, tid, call: &str| {
            serde_json::to_string(&Mark { wc_wait: ENTER.into(), pid, tid, call: call.into(), pidfd: -1 }).unwrap()
        };
        // This process stands in for the case process (its main thread is
        // alive); pid 1 is the init of some nested namespace's view, not a
        // descendant; a tid that does not exist has gone.
        let text = [mark(1, 1, "init's wait"), mark(me, me, "the case's wait"), mark(me, i32::MAX - 1, "a gone thread")].join("\n");
        assert_eq!(live_waits(me, &[], &text), vec!["the case's wait".to_string()]);
        assert!(live_waits(me, &[], "").is_empty());
    }

    #[test]
    fn a_polled_pidfd_is_named_by_its_process() {
        let me = std::process::id() as i32;
        let fd = pidfd::open(me, false).unwrap();
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        assert_eq!(pidfd_owner(me, raw), format!(" of pid {me}"));
        // Not a pidfd (stdin has no Pid: line): nothing is claimed.
        assert_eq!(pidfd_owner(me, 0), "");
    }

    #[test]
    fn list_verbose_shows_provenance_needs_timeout_and_expectation() {
        let cases = vec![
            Case::new("g::call::sit::hidden", Source::Seed("a sentence"), |_| Ok(()))
                .need(Need::Feature)
                .need(Need::Root)
                .expects("reported: pid, Exited(3)"),
            Case::new("g::call::sit::plain", Source::Design("why"), |_| Ok(())).timeout(Duration::from_secs(20)),
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
        let args = |v: &[&str]| libtest_mimic::Arguments::from_iter(std::iter::once("x").chain(v.iter().copied()));
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
        let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows[0], ["provenance", "pass", "fail", "skip", "broken"]);
        assert_eq!(rows[1], ["seed", "1", "1", "0", "0"]);
        assert_eq!(rows[2], ["documented", "0", "0", "1", "0"]);
        assert_eq!(rows[3], ["design", "0", "0", "0", "1"]);
        assert_eq!(rows[4], ["total", "1", "1", "1", "1"]);
    }
}
