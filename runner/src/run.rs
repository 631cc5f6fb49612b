//! One profile, end to end: kernel, accelerator, VMs (re-started after a wedge or a crash with
//! the cases that are left), reports, verdict.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::accel::{self, Accel, AccelChoice, Decision};
use crate::console::Finding;
use crate::gate::{self, Facts, Gate};
use crate::kernel::{self, AcquireOpts, KernelArtifact};
use crate::paths::Paths;
use crate::profile::{ConfigError, Kind, Profile};
use crate::progress;
use crate::report::{parse_case_report, CaseResult, EnvRecord, Environment, RunResults, VmRecord};
use crate::session::{self, next_step, AfterBlame, GuestSession, Launcher, Step, VmFacts};
use crate::shard::{Shard, ShardRecord};
use crate::template;
use crate::vm::{self, Echo, VmEnd, VmRun, VngConfig, Watchdogs, END_MARKER, START_MARKER};
use crate::vng;

#[derive(Debug, Clone)]
pub struct RunOpts {
    pub filter: Option<String>,
    /// Substring patterns passed to the case binary as --skip.
    pub skip: Vec<String>,
    pub gate: Gate,
    pub accept: bool,
    pub accel: AccelChoice,
    pub reprobe_accel: bool,
    pub cases_bin: Option<PathBuf>,
    pub build_cases: bool,
    pub jobs: u32,
    pub refresh_apt: bool,
    pub vm_timeout: Option<u64>,
    pub boot_timeout: Option<u64>,
    pub max_vms: usize,
    /// --test-threads for the first VM (default: the VM's CPU count; the host: 2). Every later
    /// VM runs its cases one at a time so a wedge or crash names exactly one case.
    pub test_threads: Option<u32>,
    pub case_env: Vec<(String, String)>,
    pub echo_guest: bool,
    /// Test-only: crash the guest kernel (sysrq c) halfway through the first VM.
    pub selftest_crash: bool,
    /// `--shard I/N`: run only the selected cases of shard I ([`crate::shard`]).
    pub shard: Option<Shard>,
    /// Extra QEMU arguments for every VM (`--qemu-opts`).
    pub qemu_opts: Vec<String>,
}

/// An error that ends a run before any VM: usage/configuration (exit 2).
#[derive(Debug)]
pub enum RunError {
    Usage(String),
}

impl From<ConfigError> for RunError {
    fn from(e: ConfigError) -> Self {
        RunError::Usage(e.0)
    }
}

/// Builds (cargo, incremental) or locates the case binary; returns an absolute path.
pub fn cases_binary(paths: &Paths, opts: &RunOpts) -> Result<PathBuf> {
    if let Some(p) = &opts.cases_bin {
        return std::fs::canonicalize(p).with_context(|| format!("case binary {}", p.display()));
    }
    let bin = paths.workspace.join("target/release/wait-conformance");
    if opts.build_cases {
        progress!(
            "building the case binary (cargo build --release -p cases --bin wait-conformance)"
        );
        kernel::run_checked(
            Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args([
                    "build",
                    "--release",
                    "-p",
                    "cases",
                    "--bin",
                    "wait-conformance",
                ])
                .current_dir(&paths.workspace),
        )?;
    }
    if !bin.is_file() {
        bail!(
            "{} does not exist (build it, or pass --cases-bin)",
            bin.display()
        );
    }
    Ok(bin)
}

/// Copies the case binary into the report directory and returns the copy: the guest then runs
/// a file nobody rebuilds underneath it (a `cargo build` replacing target/release/ while a VM
/// reads it over 9p makes new processes crash in ld.so), and the reports keep the binary that
/// ran. Its debug information is left out (`objcopy --strip-debug`; symbols stay, for
/// backtraces): the release profile's line tables make the binary about 18 MB against 2.5 MB,
/// and the guest execs it from 9p, paging in what it runs.
/// Without a working objcopy, a plain copy.
pub fn stage_cases_binary(bin: &Path, out: &Path) -> Result<PathBuf> {
    stage(bin, out, true)
}

/// The same without stripping (fuzz targets: libFuzzer symbolizes its crash stacks from the
/// debug information).
pub fn stage_binary(bin: &Path, out: &Path) -> Result<PathBuf> {
    stage(bin, out, false)
}

fn stage(bin: &Path, out: &Path, strip_debug: bool) -> Result<PathBuf> {
    let dir = out.join("bin");
    std::fs::create_dir_all(&dir)?;
    let staged = dir.join(
        bin.file_name()
            .unwrap_or_else(|| std::ffi::OsStr::new("wait-conformance")),
    );
    let tmp = staged.with_extension("partial");
    let stripped = strip_debug
        && Command::new("objcopy")
            .arg("--strip-debug")
            .arg(bin)
            .arg(&tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(bin, &tmp).with_context(|| format!("copying {}", bin.display()))?;
    }
    std::fs::rename(&tmp, &staged)?;
    Ok(staged)
}

/// The case names the binary would run, in its order (libtest-mimic `--list`).
/// With `all`, the filter and skips are ignored (the universe the rerun arguments are built from).
pub fn list_cases(bin: &Path, profile: &Profile, opts: &RunOpts, all: bool) -> Result<Vec<String>> {
    let mut c = Command::new(bin);
    if !all {
        if let Some(f) = &opts.filter {
            c.arg(f);
        }
        for s in &opts.skip {
            c.arg("--skip").arg(s);
        }
    }
    c.arg("--list").env(
        protocol::env::CLONE_WAIT_PID_FLAG,
        &profile.clone_wait_pid_flag,
    );
    for (k, v) in &opts.case_env {
        c.env(k, v);
    }
    c.env_remove(protocol::env::WAITCONF_REPORT);
    // `matrix --parallel` stages each profile's copy of the binary while other threads fork
    // VMs: a child forked between another thread's open-for-write of a copy and its exec holds
    // that fd for an instant, and exec fails with ETXTBSY (seen: debian-7.2 beside two other
    // profiles). The fd goes with that child's own exec, so a few tries get past it.
    let mut tries = 0;
    loop {
        match kernel::capture(&mut c) {
            Err(e) if tries < 20 && text_file_busy(&e) => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => return Ok(parse_list(&r?)),
        }
    }
}

fn text_file_busy(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(rustix::io::Errno::TXTBSY.raw_os_error()))
    })
}

pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_owned)
        .collect()
}

pub(crate) use crate::template::shell_quote;

/// Arguments for the case binary. The first VM gets the user's filter and skips as given.
/// A later VM must run exactly the cases still without a result: libtest-mimic takes one filter,
/// so every other name of the binary (`universe`) is skipped by exact name.
pub fn case_args(
    first: bool,
    opts_filter: Option<&str>,
    opts_skip: &[String],
    universe: &[String],
    remaining: &BTreeSet<&str>,
    test_threads: u32,
) -> Vec<String> {
    let mut a = Vec::new();
    if first {
        a.extend(opts_filter.map(str::to_owned));
        for s in opts_skip {
            a.push("--skip".into());
            a.push(s.clone());
        }
    } else {
        a.push("--exact".to_owned());
        for n in universe.iter().filter(|n| !remaining.contains(n.as_str())) {
            a.push("--skip".into());
            a.push(n.clone());
        }
    }
    a.push("--test-threads".into());
    a.push(test_threads.to_string());
    // libtest's terse format: a dot per case, the failures' messages and the summary. A line
    // per case is a write to the guest's console each, 0.2 s of a 2.6 s run under TCG (paired
    // runs in one VM, docs/measurements.md, seventh session); every case's line is in the
    // reports (results.tap, results.json) from the report file instead.
    a.push("--quiet".into());
    a
}

pub struct GuestScript<'a> {
    pub dir: &'a Path,
    pub bin: &'a Path,
    pub args: &'a [String],
    pub env: &'a [(String, String)],
    /// Crash the kernel once this many cases have reported.
    pub crash_after: Option<usize>,
}

/// The shell script the guest runs (runner/templates/cases.sh). Stderr joins stdout so the
/// kernel console (vng's stderr) carries only kernel and vng lines.
pub fn guest_script(g: &GuestScript) -> String {
    let env: Vec<String> = g
        .env
        .iter()
        .map(|(k, v)| format!("{k}={}", shell_quote(v)))
        .collect();
    template::CASES.render(
        &[
            ("GUEST_DIR", shell_quote(&g.dir.display().to_string())),
            ("CRASH_AFTER", g.crash_after.unwrap_or(0).to_string()),
            ("CASE_BIN", shell_quote(&g.bin.display().to_string())),
            ("CASE_ENV", env.join(" ")),
            ("REPORT_ENV", protocol::env::WAITCONF_REPORT.into()),
            ("CASE_ARGS", template::shell_words(g.args)),
        ],
        &[
            ("CRASH", g.crash_after.is_some()),
            (
                "KCOV",
                g.env
                    .iter()
                    .any(|(k, _)| k == protocol::env::WAITCONF_KCOV_DIR),
            ),
        ],
    )
}

/// What the VM loop produced.
#[derive(Default)]
pub struct VmLoop {
    pub cases: Vec<CaseResult>,
    pub env: Option<EnvRecord>,
    pub vms: Vec<VmRecord>,
    pub findings: Vec<Finding>,
    pub infra: Vec<String>,
    pub problems: Vec<String>,
    pub tainted_before: Option<u64>,
    pub tainted_after: Option<u64>,
    pub guest_release: Option<String>,
}

/// What a case run is to do: the staged binary, the cases, the watchdogs.
pub struct CasePlan<'a> {
    pub bin: &'a Path,
    pub profile: &'a Profile,
    /// The selected cases, in the binary's order.
    pub listed: &'a [String],
    /// Every case of the binary (the rerun arguments skip the others by name).
    pub universe: &'a [String],
    pub opts: &'a RunOpts,
    pub wd: &'a Watchdogs,
}

/// The case binary's environment: the profile's bit and expectation, then `--case-env`.
fn case_env(profile: &Profile, opts: &RunOpts) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        (
            protocol::env::CLONE_WAIT_PID_FLAG.into(),
            profile.clone_wait_pid_flag.clone(),
        ),
        // probe::feature::as_expected fails when the probe disagrees.
        (
            protocol::env::WAITCONF_EXPECT_FEATURE.into(),
            profile.expect.feature.to_string(),
        ),
    ];
    env.extend(opts.case_env.iter().cloned());
    env
}

/// The directories a guest must see: `guest` (writable) and the staged binaries' directory.
/// The latter is mounted too because the guest's own tmpfs mounts hide some host paths
/// (virtme-ng-init mounts fresh tmpfs on /var/tmp and /var/log): a report directory there would
/// otherwise hold a binary the guest cannot find.
pub fn visible(guest: &Path, bin: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![guest.to_owned()];
    if let Some(d) = bin.parent() {
        if !d.starts_with(guest) {
            dirs.push(d.to_owned());
        }
    }
    dirs
}

/// The case binary's `--test-threads` in the first VM: twice its CPUs. A case spends part of its
/// time blocked (in a kernel wait, on its children, on a 9p write), and the extra threads fill
/// that: under TCG here the 1238 cases took 3.78 s with 2 threads on 2 vCPUs, 3.42 s with 3 and
/// 3.39 s with 4.
pub fn default_test_threads(cpus: u32) -> u32 {
    cpus.max(1) * 2
}

/// Runs the listed cases, starting a fresh VM after a wedge or a crash for the cases still
/// without a result, up to `max_vms` VMs.
pub fn run_cases(launcher: Launcher, out: &Path, plan: &CasePlan) -> Result<VmLoop> {
    let guest_root = out.join("guest");
    std::fs::create_dir_all(&guest_root)?;
    let echo = if plan.opts.echo_guest {
        Echo::Progress
    } else {
        Echo::Off
    };
    let session = GuestSession::new(launcher, out, visible(&guest_root, plan.bin), echo);
    let env = case_env(plan.profile, plan.opts);
    let mut r = VmLoop::default();
    let mut done: BTreeSet<String> = BTreeSet::new();
    for index in 0..plan.opts.max_vms.max(1) {
        let dir = guest_root.join(format!("vm{index}"));
        GuestSession::prepare_dir(&dir)?;
        let threads = if index == 0 {
            plan.opts
                .test_threads
                .unwrap_or_else(|| default_test_threads(launcher.cpus()))
        } else {
            1
        };
        // A VM that cannot be started (vng missing, an interrupt refusing new VMs) ends the
        // loop like a launch failure: the cases already reported are kept.
        let run = match start_vm(&session, &dir, plan, &env, index, threads, &done) {
            Ok(run) => run,
            Err(e) => {
                let left = plan.listed.iter().filter(|n| !done.contains(*n)).count();
                r.infra
                    .push(format!("VM {index}: {e:#}; {left} case(s) not run"));
                break;
            }
        };
        let facts = absorb_vm(
            &mut r, &session, &dir, &run, plan, index, threads, &mut done,
        );
        let left: Vec<&String> = plan.listed.iter().filter(|n| !done.contains(*n)).collect();
        let (infra, step) = next_step(&VmFacts {
            left: left.len(),
            ..facts
        });
        r.infra.extend(infra);
        if !take_step(
            &mut r, step, &left, &mut done, &run, index, threads, plan.opts,
        ) {
            break;
        }
    }
    Ok(r)
}

/// Renders VM `index`'s script and runs it.
fn start_vm(
    session: &GuestSession,
    dir: &Path,
    plan: &CasePlan,
    env: &[(String, String)],
    index: usize,
    threads: u32,
    done: &BTreeSet<String>,
) -> Result<VmRun> {
    let remaining_set: BTreeSet<&str> = plan
        .listed
        .iter()
        .filter(|n| !done.contains(*n))
        .map(String::as_str)
        .collect();
    let remaining = remaining_set.len();
    // A shard's first VM runs its exact part, like a rerun: the filter alone would run more.
    let args = case_args(
        index == 0 && plan.opts.shard.is_none(),
        plan.opts.filter.as_deref(),
        &plan.opts.skip,
        plan.universe,
        &remaining_set,
        threads,
    );
    let crash_after = (plan.opts.selftest_crash && index == 0).then(|| (remaining / 2).max(1));
    let script = guest_script(&GuestScript {
        dir,
        bin: plan.bin,
        args: &args,
        env,
        crash_after,
    });
    session.note(&format!("# ===== VM {index}: {remaining} case(s) ====="))?;
    match session.launcher {
        Launcher::Vng(cfg) => progress!(
            "booting VM {index} ({}, {} case(s) to run, watchdog {} s)",
            cfg.accel.as_str(),
            remaining,
            plan.wd.total.as_secs()
        ),
        Launcher::Host => progress!("running {remaining} case(s) on the host kernel (no VM)"),
    }
    session.run_script(&dir.join("run.sh"), &script, plan.wd)
}

/// Takes in what VM `index` reported and left; returns the facts its next step depends on
/// (`left` still to be counted).
// The loop's state, split out of it: a struct would only rename these.
#[allow(clippy::too_many_arguments)]
fn absorb_vm(
    r: &mut VmLoop,
    session: &GuestSession,
    dir: &Path,
    run: &VmRun,
    plan: &CasePlan,
    index: usize,
    threads: u32,
    done: &mut BTreeSet<String>,
) -> VmFacts {
    let report = parse_case_report(
        &std::fs::read_to_string(dir.join("cases.jsonl")).unwrap_or_default(),
        index,
    );
    if r.env.is_none() {
        r.env = report.env.clone();
    }
    let mut h = session.harvest(dir, run, index, "exit.status");
    let panicked = h.panicked;
    r.findings.append(&mut h.findings);
    if r.tainted_before.is_none() {
        r.tainted_before = h.tainted_before;
    }
    if h.tainted_after.is_some() {
        r.tainted_after = h.tainted_after;
    }
    if let Some(change) = h.taint_change() {
        r.problems.push(format!("VM {index}: {change}"));
    }
    if r.guest_release.is_none() {
        r.guest_release = h.kernel_release.clone();
    }
    let reported = report.cases.len();
    for c in report.cases {
        done.insert(c.name.clone());
        r.cases.push(c);
    }
    progress!(
        "VM {index}: {} after {:.1} s (boot {}), {reported} case(s) reported{}",
        run.end.as_str(),
        run.wall_seconds,
        run.boot_seconds
            .map(|b| format!("{b:.1} s"))
            .unwrap_or_else(|| "not reached".into()),
        h.exit_status
            .map(|s| format!(", case binary exit {s}"))
            .unwrap_or_default()
    );
    r.vms.push(VmRecord {
        index,
        outcome: run.end.outcome(panicked),
        boot_seconds: run.boot_seconds,
        wall_seconds: run.wall_seconds,
        guest_exit_status: h.exit_status,
        cases_reported: reported,
    });
    VmFacts {
        index,
        max_vms: plan.opts.max_vms,
        end: run.end,
        panicked,
        launch_failure: vm::launch_failure(run),
        interrupted: crate::interrupt::received_name(),
        vng_status: run.vng_status,
        exit_status: h.exit_status,
        env_seen: report.env.is_some(),
        reported,
        left: 0,
        threads,
        boot_s: plan.wd.boot.as_secs(),
        total_s: plan.wd.total.as_secs(),
    }
}

/// Does what [`next_step`] decided; false when the loop is over.
// The loop's state, split out of it: a struct would only rename these.
#[allow(clippy::too_many_arguments)]
fn take_step(
    r: &mut VmLoop,
    step: Step,
    left: &[&String],
    done: &mut BTreeSet<String>,
    run: &VmRun,
    index: usize,
    threads: u32,
    opts: &RunOpts,
) -> bool {
    let exit_status = r.vms.last().and_then(|v| v.guest_exit_status);
    match step {
        Step::Stop => false,
        Step::Finish => {
            for name in left {
                r.cases.push(CaseResult::broken(
                    name,
                    format!(
                        "listed but not reported by the case binary (exit status {exit_status:?})"
                    ),
                    index,
                ));
            }
            false
        }
        Step::RerunSerially => {
            let panicked = r.vms.last().is_some_and(|v| v.outcome == "panic");
            progress!(
                "VM {index} ended {} with {threads} cases in flight; rerunning the {} case(s) \
                 left one at a time in a fresh VM",
                if panicked {
                    "in a kernel panic"
                } else {
                    run.end.as_str()
                },
                left.len()
            );
            true
        }
        Step::Blame { why, then } => {
            let culprit = left[0];
            progress!("VM {index}: {culprit} is broken: {why}");
            done.insert(culprit.clone());
            r.cases.push(CaseResult::broken(culprit, why, index));
            match then {
                AfterBlame::Stop => false,
                AfterBlame::UsedUp => {
                    for name in &left[1..] {
                        r.cases.push(CaseResult::broken(
                            name,
                            format!("not run: {} VMs used up", opts.max_vms),
                            index,
                        ));
                    }
                    false
                }
                AfterBlame::Restart => {
                    progress!(
                        "restarting with the {} case(s) left in a fresh VM",
                        left.len() - 1
                    );
                    true
                }
            }
        }
    }
}

pub struct Prepared {
    pub artifact: KernelArtifact,
    pub vng: Option<VngConfig>,
    pub accel: Option<Decision>,
}

impl Prepared {
    /// A VM of the kernel, or the host for the host profile.
    pub fn launcher(&self) -> Launcher<'_> {
        match &self.vng {
            Some(cfg) => Launcher::Vng(cfg),
            None => Launcher::Host,
        }
    }
}

/// Kernel, virtme-ng and accelerator for a VM profile (nothing for the host profile).
pub fn prepare(profile: &Profile, paths: &Paths, opts: &RunOpts) -> Result<Prepared> {
    // Before any download: virtme-ng would fail only once QEMU is about to start.
    if profile.needs_initramfs() {
        vng::static_busybox()?;
    }
    let artifact = kernel::acquire(
        profile,
        paths,
        &AcquireOpts {
            jobs: opts.jobs,
            refresh_apt: opts.refresh_apt,
        },
    )?;
    if profile.kind == Kind::Host {
        return Ok(Prepared {
            artifact,
            vng: None,
            accel: None,
        });
    }
    let image = artifact
        .image
        .clone()
        .ok_or_else(|| anyhow!("no kernel image for {}", profile.name))?;
    let vng_bin = vng::ensure(paths)?;
    let mut cfg = VngConfig {
        vng: vng_bin,
        image,
        accel: Accel::Kvm,
        memory: profile.vm.memory.clone(),
        cpus: profile.vm.cpus,
        qemu_opts: vec![],
    };
    let machine = accel::machine_key();
    let probe_cfg = cfg.clone();
    let probe_dir = paths.cache.join("accel-probe");
    let decision = accel::decide(
        opts.accel,
        &paths.cache.join("accel.json"),
        &machine,
        accel::kvm_usable(),
        opts.reprobe_accel,
        || {
            progress!(
                "probing KVM on this machine (once; remembered in {})",
                paths.cache.join("accel.json").display()
            );
            probe_kvm(&probe_cfg, &probe_dir)
        },
    );
    progress!(
        "accelerator: {} ({})",
        decision.accel.as_str(),
        decision.reason
    );
    cfg.accel = decision.accel;
    // After the accelerator probe: the user's QEMU options are for the runs, not the probe.
    cfg.qemu_opts = opts.qemu_opts.clone();
    Ok(Prepared {
        artifact,
        vng: Some(cfg),
        accel: Some(decision),
    })
}

/// Boots with KVM and a short watchdog; Ok when the guest script ran.
fn probe_kvm(cfg: &VngConfig, dir: &Path) -> Result<(), String> {
    let _ = std::fs::create_dir_all(dir);
    let wd = Watchdogs {
        boot: Duration::from_secs(45),
        total: Duration::from_secs(60),
    };
    let cmd = cfg.command(&format!("echo {START_MARKER}; echo {END_MARKER}"), None);
    let run = vm::run_vm(
        cmd,
        &wd,
        &dir.join("console.log"),
        &dir.join("out.log"),
        false,
    )
    .map_err(|e| e.to_string())?;
    match run.end {
        VmEnd::Completed => Ok(()),
        end => {
            let hint = run
                .console
                .lines()
                .rev()
                .find(|l| l.contains("qemu") || l.contains("MSR") || l.contains("error"))
                .unwrap_or("")
                .trim()
                .to_owned();
            Err(format!(
                "{} after {:.0} s {hint}",
                end.as_str(),
                run.wall_seconds
            ))
        }
    }
}

/// Runs one profile and writes its reports into `out`. Infrastructure failures become part of
/// the results (exit 3, partial reports kept); only configuration errors return Err.
pub fn run_profile(
    profile: &Profile,
    paths: &Paths,
    out: &Path,
    opts: &RunOpts,
) -> Result<RunResults, RunError> {
    let out = fresh_out(out)?;
    progress!("profile {}: {}", profile.name, profile.description);
    let started = Instant::now();
    let mut results = empty_results(profile);
    match cases_on_kernel(profile, paths, &out, opts, &mut results) {
        Ok(None) => {
            return Err(RunError::Usage(format!(
                "no case matches the filter {:?}",
                opts.filter.as_deref().unwrap_or("")
            )))
        }
        Ok(Some(l)) => absorb(&mut results, l, profile),
        Err(e) => {
            progress!("infrastructure failure: {e:#}");
            results.infrastructure_errors.push(format!("{e:#}"));
        }
    }
    finish(&mut results, paths, opts);
    results.environment.boot_seconds.retain(|b| b.is_finite());
    if let Err(e) = results.write_all(&out) {
        progress!("cannot write reports: {e:#}");
        results.exit_code = gate::EXIT_INFRA;
    }
    progress!(
        "profile {}: {} (exit {}) in {:.1} s; reports in {}",
        profile.name,
        results.verdict,
        results.exit_code,
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(results)
}

/// The report directory, made and resolved, without the previous run's logs and guest
/// directories.
fn fresh_out(out: &Path) -> Result<PathBuf, RunError> {
    std::fs::create_dir_all(out)
        .map_err(|e| RunError::Usage(format!("cannot create {}: {e}", out.display())))?;
    let out = std::fs::canonicalize(out).map_err(|e| RunError::Usage(e.to_string()))?;
    for f in ["console.log", "guest-output.log"] {
        let _ = std::fs::remove_file(out.join(f));
    }
    let _ = std::fs::remove_dir_all(out.join("guest"));
    Ok(out)
}

/// Stages and lists the cases, prepares the kernel and runs the case loop; None when no case
/// is selected.
fn cases_on_kernel(
    profile: &Profile,
    paths: &Paths,
    out: &Path,
    opts: &RunOpts,
    results: &mut RunResults,
) -> Result<Option<VmLoop>> {
    let bin = stage_cases_binary(&cases_binary(paths, opts)?, out)?;
    let mut listed = list_cases(&bin, profile, opts, false)?;
    let universe = list_cases(&bin, profile, opts, true)?;
    if listed.is_empty() {
        return Ok(None);
    }
    if let Some(shard) = opts.shard {
        results.shard = Some(ShardRecord::new(shard, &listed));
        listed.retain(|n| shard.contains(n));
        progress!("shard {shard}: {} case(s) of this selection", listed.len());
    }
    progress!("{} case(s) selected", listed.len());
    let prepared = prepare(profile, paths, opts)?;
    note_prepared(results, &prepared);
    let launcher = prepared.launcher();
    let wd = session::watchdogs(
        launcher.boot_secs(opts.boot_timeout),
        opts.vm_timeout.unwrap_or(profile.vm.timeout_s),
    );
    let plan = CasePlan {
        bin: &bin,
        profile,
        listed: &listed,
        universe: &universe,
        opts,
        wd: &wd,
    };
    Ok(Some(run_cases(launcher, out, &plan)?))
}

/// What the results say about the kernel and accelerator before any VM.
pub fn note_prepared(results: &mut RunResults, prepared: &Prepared) {
    results.environment.kernel_source = prepared.artifact.source.clone();
    if let Some(rel) = &prepared.artifact.release {
        results.environment.kernel_release = rel.clone();
    }
    if let Some(d) = &prepared.accel {
        results.environment.accelerator = d.accel.as_str().into();
        results.environment.accelerator_reason = d.reason.clone();
    }
}

pub fn empty_results(profile: &Profile) -> RunResults {
    RunResults {
        environment: Environment {
            profile: profile.name.clone(),
            profile_description: profile.description.clone(),
            kernel_release: String::new(),
            kernel_source: String::new(),
            clone_wait_pid_flag: profile.clone_wait_pid_flag.clone(),
            accelerator: if profile.kind == Kind::Host {
                "none (host)".into()
            } else {
                String::new()
            },
            accelerator_reason: String::new(),
            boot_seconds: vec![],
            feature: String::new(),
            feature_reason: String::new(),
            feature_observed: String::new(),
            expected_feature: profile.expect.feature.to_string(),
            tainted_before: None,
            tainted_after: None,
            runner_version: env!("CARGO_PKG_VERSION").into(),
        },
        cases: vec![],
        console_findings: vec![],
        vms: vec![],
        infrastructure_errors: vec![],
        problems: vec![],
        verdict: String::new(),
        exit_code: 0,
        shard: None,
        merged_from: vec![],
    }
}

pub fn absorb(results: &mut RunResults, l: VmLoop, profile: &Profile) {
    let e = &mut results.environment;
    if let Some(env) = &l.env {
        e.kernel_release = env.kernel_release.clone();
        e.feature = env.feature.clone();
        e.feature_reason = env.feature_reason.clone();
        e.feature_observed = env.feature_observed.clone();
        if crate::profile::parse_clone_bit(&env.clone_wait_pid_flag).ok()
            != Some(profile.clone_bit())
        {
            results.problems.push(format!(
                "the case binary used flag {} but the profile says {}",
                env.clone_wait_pid_flag, profile.clone_wait_pid_flag
            ));
        }
    } else if let Some(rel) = l.guest_release {
        e.kernel_release = rel;
    }
    e.boot_seconds = l.vms.iter().filter_map(|v| v.boot_seconds).collect();
    e.tainted_before = l.tainted_before;
    e.tainted_after = l.tainted_after;
    if let Some(p) = feature_mismatch(e, &profile.name) {
        results.problems.push(p);
    }
    results.cases = l.cases;
    results.console_findings = l.findings;
    results.vms = l.vms;
    results.infrastructure_errors.extend(l.infra);
    results.problems.extend(l.problems);
}

/// The `[expect] feature` check: a sentence when the case binary's probe
/// disagrees with the profile, with what the probe observed (a kernel that
/// knows the bit but breaks it shows here what it did).
fn feature_mismatch(e: &Environment, profile: &str) -> Option<String> {
    if e.feature.is_empty() || e.feature == e.expected_feature {
        return None;
    }
    let mut p = format!(
        "feature expected {} on {profile}, the case binary found it {}: {}",
        e.expected_feature, e.feature, e.feature_reason
    );
    if !e.feature_observed.is_empty() {
        p.push_str(&format!("; the probe observed: {}", e.feature_observed));
    }
    Some(p)
}

fn finish(results: &mut RunResults, paths: &Paths, opts: &RunOpts) {
    judge(results, &paths.snapshots, opts.gate, opts.accept);
}

/// Sets the verdict and exit code of `results` under `gate` (the snapshot gate compares with
/// `<snapshots>/<profile>.snap`) and prints the problems behind it.
pub fn judge(results: &mut RunResults, snapshots: &Path, gate: Gate, accept: bool) {
    let snapshot = (gate == Gate::Snapshot && results.infrastructure_errors.is_empty())
        .then(|| crate::shard::gate_snapshot(snapshots, results, accept));
    let facts = Facts {
        infrastructure_errors: results.infrastructure_errors.len(),
        bad_cases: results.cases.iter().filter(|c| c.status.is_bad()).count(),
        console_findings: results.console_findings.len(),
        problems: results.problems.len(),
        snapshot,
    };
    let (verdict, code) = gate::decide(gate, &facts);
    results.verdict = verdict.into();
    results.exit_code = code;
    for p in results
        .infrastructure_errors
        .iter()
        .chain(&results.problems)
    {
        progress!("! {p}");
    }
    for f in &results.console_findings {
        progress!("! console (VM {}) {}: {}", f.vm, f.kind, f.line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::host_profile;
    use crate::report::Status;

    #[test]
    fn the_staged_case_binary_has_no_debug_information_and_still_runs() {
        // This test binary itself: built by the release profile (debug = 1), so it carries line
        // tables.
        let me = std::env::current_exe().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let stripped = stage_cases_binary(&me, &dir.path().join("a")).unwrap();
        let copied = stage_binary(&me, &dir.path().join("b")).unwrap();
        let size = |p: &Path| std::fs::metadata(p).unwrap().len();
        assert_eq!(std::fs::read(&copied).unwrap(), std::fs::read(&me).unwrap());
        assert!(
            size(&stripped) < size(&me) / 2,
            "{} of {} bytes",
            size(&stripped),
            size(&me)
        );
        assert!(!dir.path().join("a/bin").read_dir().unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "partial")));
        let listed = Command::new(&stripped).arg("--list").output().unwrap();
        assert!(listed.status.success());
        assert!(String::from_utf8_lossy(&listed.stdout)
            .contains("the_staged_case_binary_has_no_debug_information_and_still_runs"));
    }

    #[test]
    fn feature_mismatch_names_what_the_probe_saw() {
        let mut e = crate::report::tests::sample().environment;
        assert_eq!(
            feature_mismatch(&e, "wait-pid-6.12"),
            None,
            "present as expected"
        );
        e.expected_feature = "absent".into();
        e.feature_observed = "clone3(CLONE_PIDFD|0x10000000000, SIGCHLD): accepted; unexpected: visible to waitid(P_ALL)".into();
        let p = feature_mismatch(&e, "debian-6.1").unwrap();
        assert!(p.starts_with("feature expected absent on debian-6.1, the case binary found it present: clone3 accepted the bit"), "{p}");
        assert!(p.ends_with("; the probe observed: clone3(CLONE_PIDFD|0x10000000000, SIGCHLD): accepted; unexpected: visible to waitid(P_ALL)"), "{p}");
        e.feature_observed.clear();
        assert!(!feature_mismatch(&e, "x").unwrap().contains("observed"));
        e.feature.clear();
        assert_eq!(
            feature_mismatch(&e, "x"),
            None,
            "no env line: nothing to compare"
        );
    }

    #[test]
    fn list_parsing() {
        let out = "generic::wait4::exited::hidden: test\nfocused::x::plain: test\n\n2 tests, 0 benchmarks\n";
        assert_eq!(
            parse_list(out),
            vec!["generic::wait4::exited::hidden", "focused::x::plain"]
        );
    }

    #[test]
    fn rerun_arguments_skip_everything_but_the_remaining_cases() {
        let universe: Vec<String> = ["a::x::hidden", "a::x::plain", "b::y::hidden"]
            .map(String::from)
            .to_vec();
        let skip = vec!["b::".to_owned()];
        let none = BTreeSet::new();
        assert_eq!(
            case_args(true, Some("a::"), &skip, &universe, &none, 2),
            ["a::", "--skip", "b::", "--test-threads", "2", "--quiet"]
        );
        let remaining: BTreeSet<&str> = ["a::x::plain"].into_iter().collect();
        assert_eq!(
            case_args(false, Some("a::"), &skip, &universe, &remaining, 1),
            [
                "--exact",
                "--skip",
                "a::x::hidden",
                "--skip",
                "b::y::hidden",
                "--test-threads",
                "1",
                "--quiet"
            ]
        );
    }

    #[test]
    fn guest_script_quotes_and_crashes_on_request() {
        let env = vec![("CLONE_WAIT_PID_FLAG".to_owned(), "0x10000000000".to_owned())];
        let args = vec!["it's".to_owned()];
        let s = guest_script(&GuestScript {
            dir: Path::new("/out/guest/vm0"),
            bin: Path::new("/t/wait-conformance"),
            args: &args,
            env: &env,
            crash_after: None,
        });
        assert!(s.contains("CLONE_WAIT_PID_FLAG='0x10000000000'"));
        assert!(s.contains("'it'\\''s'"));
        assert!(!s.contains("sysrq"));
        assert!(s.find(START_MARKER) < s.find("/t/wait-conformance"));
        assert!(s.contains("B='/t/wait-conformance'") && s.contains(" \"$B\" 'it'"));
        assert!(s.trim_end().ends_with(END_MARKER));
        let c = guest_script(&GuestScript {
            crash_after: Some(3),
            ..GuestScript {
                dir: Path::new("/g"),
                bin: Path::new("/b"),
                args: &[],
                env: &[],
                crash_after: None,
            }
        });
        assert!(c.contains("-lt 3") && c.contains("/proc/sysrq-trigger"));
        // The binary runs where it was staged: no copy, and no exec of a tool before it.
        let before = &s[..s.find("\"$B\" 'it'").unwrap()];
        assert!(
            !before.contains("cp ") && !before.contains("env "),
            "{before}"
        );
    }

    #[test]
    fn the_staged_binary_directory_is_mounted_in_the_guest_too() {
        let g = Path::new("/var/tmp/r/guest");
        assert_eq!(
            visible(g, Path::new("/var/tmp/r/bin/wait-conformance")),
            vec![g.to_path_buf(), PathBuf::from("/var/tmp/r/bin")]
        );
        // Already inside the guest directory: mounted once.
        assert_eq!(visible(g, &g.join("bin/x")), vec![g.to_path_buf()]);
    }

    /// A fake case binary (shell) that follows the contract, to exercise the loop on the host.
    fn fake_bin(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("fake-cases");
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = --list ] && {{ echo 'g::one::hidden: test'; echo 'g::two::plain: test'; exit 0; }}; done\n{body}\n"
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn opts() -> RunOpts {
        RunOpts {
            filter: None,
            skip: vec![],
            gate: Gate::Strict,
            accept: false,
            accel: AccelChoice::Tcg,
            reprobe_accel: false,
            cases_bin: None,
            build_cases: false,
            jobs: 1,
            refresh_apt: false,
            vm_timeout: None,
            boot_timeout: None,
            max_vms: 3,
            test_threads: Some(1),
            case_env: vec![],
            echo_guest: false,
            selftest_crash: false,
            shard: None,
            qemu_opts: vec![],
        }
    }

    /// Lists the fake binary's cases and runs all of them on the host, with a 30 s boot and a
    /// `total_s` whole-run watchdog.
    /// The VM watchdog of the wedge tests: four times what a healthy fake run takes here (at
    /// least a second), measured first with a generous watchdog. The wedging runs cost one
    /// watchdog each, the healthy rerun must fit in one: inside a loaded TCG guest a healthy
    /// run takes seconds (every exec of the guest script is slow), on a host milliseconds.
    fn wedge_watchdog_s(dir: &Path) -> u64 {
        std::fs::create_dir_all(dir.join("calibrate")).unwrap();
        let healthy = fake_bin(
            &dir.join("calibrate"),
            r#"echo '{"kind":"case","name":"g::one::hidden","status":"pass","detail":"","duration_ms":1}' >> "$WAITCONF_REPORT"
echo '{"kind":"case","name":"g::two::plain","status":"pass","detail":"","duration_ms":1}' >> "$WAITCONF_REPORT""#,
        );
        let started = std::time::Instant::now();
        let l = host_loop(&dir.join("calibrate"), &healthy, &opts(), 120);
        assert_eq!(l.vms.len(), 1, "the calibration run is healthy");
        (started.elapsed().as_secs_f64() * 4.0).ceil().max(1.0) as u64
    }

    fn host_loop(dir: &Path, bin: &Path, o: &RunOpts, total_s: u64) -> VmLoop {
        let p = host_profile();
        let listed = list_cases(bin, &p, o, false).unwrap();
        let wd = Watchdogs {
            boot: Duration::from_secs(30),
            total: Duration::from_secs(total_s),
        };
        let plan = CasePlan {
            bin,
            profile: &p,
            listed: &listed,
            universe: &listed,
            opts: o,
            wd: &wd,
        };
        run_cases(Launcher::Host, dir, &plan).unwrap()
    }

    #[test]
    fn host_loop_collects_results_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let bin = fake_bin(
            dir.path(),
            r#"echo "{\"kind\":\"env\",\"kernel_release\":\"$(uname -r)\",\"clone_wait_pid_flag\":\"$CLONE_WAIT_PID_FLAG\",\"feature\":\"absent\",\"feature_reason\":\"EINVAL\"}" >> "$WAITCONF_REPORT"
echo '{"kind":"case","name":"g::one::hidden","status":"skip","detail":"feature absent","duration_ms":1}' >> "$WAITCONF_REPORT"
echo '{"kind":"case","name":"g::two::plain","status":"pass","detail":"","duration_ms":1}' >> "$WAITCONF_REPORT"
exit 0"#,
        );
        let l = host_loop(dir.path(), &bin, &opts(), 60);
        assert_eq!(l.cases.len(), 2);
        assert_eq!(l.env.as_ref().unwrap().clone_wait_pid_flag, "0x10000000000");
        assert_eq!(l.vms.len(), 1);
        assert!(l.infra.is_empty(), "{:?}", l.infra);
        assert!(l.tainted_before.is_some());
        assert!(l.tainted_after.is_some());
        assert!(l.guest_release.is_some());
    }

    #[test]
    fn wedged_run_marks_culprit_and_reruns_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        // First run: reports nothing and wedges on the first case; the rerun (which skips it)
        // reports the second case.
        let bin = fake_bin(
            dir.path(),
            r#"case "$*" in
  *--skip*) echo '{"kind":"case","name":"g::two::plain","status":"pass","detail":"","duration_ms":1}' >> "$WAITCONF_REPORT"; exit 0;;
  *) exec sleep 600;;
esac"#,
        );
        // The watchdog firing is the behaviour under test. It must also leave the healthy rerun
        // time to finish where a shell start is slow (inside a TCG guest, under load).
        let l = host_loop(dir.path(), &bin, &opts(), wedge_watchdog_s(dir.path()));
        assert_eq!(l.vms.len(), 2);
        assert_eq!(l.vms[0].outcome, "watchdog");
        let one = l.cases.iter().find(|c| c.name == "g::one::hidden").unwrap();
        assert_eq!(one.status, Status::Broken);
        assert!(one.detail.contains("wedged"));
        let two = l.cases.iter().find(|c| c.name == "g::two::plain").unwrap();
        assert_eq!((two.status, two.vm), (Status::Pass, 1));
    }

    #[test]
    fn parallel_wedge_is_rerun_serially_before_blaming() {
        let dir = tempfile::tempdir().unwrap();
        let bin = fake_bin(
            dir.path(),
            r#"case "$*" in
  *"--test-threads 2"*) exec sleep 600;;
  *--skip*) echo '{"kind":"case","name":"g::two::plain","status":"pass","detail":"","duration_ms":1}' >> "$WAITCONF_REPORT"; exit 0;;
  *) exec sleep 600;;
esac"#,
        );
        let o = RunOpts {
            test_threads: Some(2),
            ..opts()
        };
        // As above: the wedging runs cost one watchdog each, the healthy one must fit in it.
        let l = host_loop(dir.path(), &bin, &o, wedge_watchdog_s(dir.path()));
        let outcomes: Vec<&str> = l.vms.iter().map(|v| v.outcome.as_str()).collect();
        assert_eq!(outcomes, ["watchdog", "watchdog", "completed"]);
        let one = l.cases.iter().find(|c| c.name == "g::one::hidden").unwrap();
        assert_eq!(
            (one.status, one.vm),
            (Status::Broken, 1),
            "blamed only in the serial VM"
        );
        let two = l.cases.iter().find(|c| c.name == "g::two::plain").unwrap();
        assert_eq!((two.status, two.vm), (Status::Pass, 2));
    }
}
