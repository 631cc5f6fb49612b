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

use super::case::{Case, Ctx, Need, Stop};
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
}

/// The report's first line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnvRecord {
    pub kind: String,
    pub kernel_release: String,
    pub clone_wait_pid_flag: String,
    pub feature: String,
    pub feature_reason: String,
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
    let args = libtest_mimic::Arguments::from_args();
    let bit = match config::configured_bit() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("wait-conformance: configuration error: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    if args.list {
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
    let report = Report::open(&probe);
    let probe_json = serde_json::to_string(&probe).expect("probe json");
    let env = Env { probe: probe.clone(), root: rustix::process::geteuid().is_root(), cgroup2: cgroup2_writable() };
    let trials = table()
        .into_iter()
        .map(|case| {
            let name = case.name.clone();
            let unmet = env.unmet(&case.needs);
            let report = report.clone();
            let probe_json = probe_json.clone();
            libtest_mimic::Trial::ignorable_test(name.clone(), move || {
                let start = Instant::now();
                let out = match unmet {
                    Some(reason) => CaseOutput { status: Status::Skip, detail: reason },
                    None => supervise(&name, &probe_json, case.timeout),
                };
                report.record(&name, &out, start.elapsed());
                match out.status {
                    Status::Pass => Ok(libtest_mimic::Completion::Completed),
                    Status::Skip => Ok(libtest_mimic::Completion::ignored_with(out.detail)),
                    Status::Fail => Err(format!("FAIL: {}", out.detail).into()),
                    Status::Broken => Err(format!("BROKEN: {}", out.detail).into()),
                }
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    let leftovers = reap_orphans(&[]);
    if !leftovers.is_empty() {
        eprintln!("wait-conformance: leftover processes after the run: {}", leftovers.join("; "));
        std::process::exit(EXIT_HARNESS);
    }
    conclusion.exit()
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
            feature_reason: probe.absent.clone().unwrap_or_default(),
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

    fn record(&self, name: &str, out: &CaseOutput, took: Duration) {
        let rec = CaseRecord {
            kind: "case".into(),
            name: name.into(),
            status: out.status,
            detail: out.detail.clone(),
            duration_ms: took.as_millis() as u64,
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
    let exited = pidfd::poll_exit(fd.as_fd(), Some(timeout)).unwrap_or(false);
    if !exited {
        let mut stuck = vec![proc::stuck_report(pid)];
        stuck.extend(proc::descendants(pid).into_iter().take(4).map(proc::stuck_report));
        let left = kill_tree(pid, &fd);
        let _ = child.wait();
        let mut detail = format!("timeout after {:.1}s; stuck: {}", timeout.as_secs_f64(), stuck.join("; "));
        if !left.is_empty() {
            detail.push_str(&format!("; could not reap: {}", left.join("; ")));
        }
        return CaseOutput { status: Status::Broken, detail };
    }
    let status = child.wait();
    let out = drain(&mut stdout);
    let err = drain(&mut stderr);
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
        let target = WaitTarget { pid: p, pidfd: std::os::fd::AsRawFd::as_raw_fd(&f), pgid: 0 };
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
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| body(&mut ctx)));
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
