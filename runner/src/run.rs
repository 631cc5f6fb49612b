//! One profile, end to end: kernel, accelerator, VMs (re-started after a wedge or a crash with
//! the cases that are left), reports, verdict.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::accel::{self, Accel, AccelChoice, Decision};
use crate::console::{self, Finding};
use crate::gate::{self, Facts, Gate};
use crate::kernel::{self, AcquireOpts, KernelArtifact};
use crate::paths::Paths;
use crate::profile::{ConfigError, Kind, Profile};
use crate::progress;
use crate::report::{
    parse_case_report, CaseEnv, CaseResult, Environment, RunResults, Status, VmRecord,
};
use crate::vm::{self, VmEnd, VngConfig, Watchdogs, END_MARKER, START_MARKER};
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
/// reads it over 9p makes new processes crash in ld.so), and the reports keep the exact binary.
pub fn stage_cases_binary(bin: &Path, out: &Path) -> Result<PathBuf> {
    let dir = out.join("bin");
    std::fs::create_dir_all(&dir)?;
    let staged = dir.join(
        bin.file_name()
            .unwrap_or_else(|| std::ffi::OsStr::new("wait-conformance")),
    );
    let tmp = staged.with_extension("partial");
    std::fs::copy(bin, &tmp).with_context(|| format!("copying {}", bin.display()))?;
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
    c.arg("--list")
        .env("CLONE_WAIT_PID_FLAG", &profile.clone_wait_pid_flag);
    for (k, v) in &opts.case_env {
        c.env(k, v);
    }
    c.env_remove("WAITCONF_REPORT");
    Ok(parse_list(&kernel::capture(&mut c)?))
}

pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_owned)
        .collect()
}

/// `s` as one single-quoted POSIX shell word.
pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

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
    a
}

pub struct GuestScript<'a> {
    pub dir: &'a Path,
    pub bin: &'a Path,
    pub args: &'a [String],
    pub env: &'a [(String, String)],
    /// Crash the kernel once this many cases have reported.
    pub crash_after: Option<usize>,
    /// Copy the binary into guest RAM first (VMs; not on the host).
    pub copy_to_ram: bool,
}

/// The shell script the guest runs. Stderr joins stdout so the kernel console (vng's stderr)
/// carries only kernel and vng lines.
pub fn guest_script(g: &GuestScript) -> String {
    let dir = shell_quote(&g.dir.display().to_string());
    let mut s = String::from("#!/bin/sh\n# generated by wait-conformance runner\nexec 2>&1\n");
    s += &format!("G={dir}\necho {START_MARKER}\n");
    s += "cat /proc/uptime > \"$G/uptime.start\"\nuname -r > \"$G/kernel.release\"\n";
    s += "cat /proc/sys/kernel/tainted > \"$G/tainted.before\"\ncd /tmp 2>/dev/null || cd /\n";
    if let Some(k) = g.crash_after {
        s += &format!(
            "( while [ \"$(grep -c '\"kind\":\"case\"' \"$G/cases.jsonl\" 2>/dev/null || echo 0)\" -lt {k} ]; \
             do sleep 0.2; done; echo 'runner selftest: crashing the kernel with sysrq c'; \
             echo c > /proc/sysrq-trigger ) &\n"
        );
    }
    // Run the case binary from guest RAM: every case re-executes it, and 9p (cache=none) would
    // read the whole file over virtio for each exec.
    s += &format!("B={}\n", shell_quote(&g.bin.display().to_string()));
    if g.copy_to_ram {
        s += "mkdir -p /run/waitconf && cp \"$B\" /run/waitconf/ && B=/run/waitconf/$(basename \"$B\")\n";
    }
    s += "env";
    for (k, v) in g.env {
        s += &format!(" {}={}", k, shell_quote(v));
    }
    s += " WAITCONF_REPORT=\"$G/cases.jsonl\" \"$B\"";
    for a in g.args {
        s += " ";
        s += &shell_quote(a);
    }
    s += "\necho $? > \"$G/exit.status\"\ncat /proc/sys/kernel/tainted > \"$G/tainted.after\"\n";
    s += &format!("echo {END_MARKER}\n");
    s
}

/// The number in a file (e.g. the guest's copy of /proc/sys/kernel/tainted).
pub(crate) fn read_num(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// What the VM loop produced.
pub struct VmLoop {
    pub cases: Vec<CaseResult>,
    pub env: Option<CaseEnv>,
    pub vms: Vec<VmRecord>,
    pub findings: Vec<Finding>,
    pub infra: Vec<String>,
    pub problems: Vec<String>,
    pub tainted_before: Option<u64>,
    pub tainted_after: Option<u64>,
    pub guest_release: Option<String>,
}

/// How to start one "VM": vng for kernels, plain `sh` for the host profile.
pub enum Launcher<'a> {
    Vng(&'a VngConfig),
    Host,
}

/// Runs the listed cases, starting a fresh VM after a wedge or a crash for the cases still
/// without a result, up to `max_vms` VMs.
// Eight inputs, all needed: split them into a struct only if more arrive.
#[allow(clippy::too_many_arguments)]
pub fn run_cases(
    launcher: &Launcher,
    out: &Path,
    bin: &Path,
    profile: &Profile,
    listed: &[String],
    universe: &[String],
    opts: &RunOpts,
    wd: &Watchdogs,
) -> Result<VmLoop> {
    let guest_root = out.join("guest");
    std::fs::create_dir_all(&guest_root)?;
    let console_log = out.join("console.log");
    let stdout_log = out.join("guest-output.log");
    let mut r = VmLoop {
        cases: vec![],
        env: None,
        vms: vec![],
        findings: vec![],
        infra: vec![],
        problems: vec![],
        tainted_before: None,
        tainted_after: None,
        guest_release: None,
    };
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut env: Vec<(String, String)> = vec![
        ("CLONE_WAIT_PID_FLAG".into(), profile.clone_wait_pid_flag.clone()),
        // probe::feature::as_expected fails when the probe disagrees.
        ("WAITCONF_EXPECT_FEATURE".into(), profile.expect.feature.to_string()),
    ];
    env.extend(opts.case_env.iter().cloned());
    for index in 0..opts.max_vms.max(1) {
        let dir = guest_root.join(format!("vm{index}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let remaining = listed.iter().filter(|n| !done.contains(*n)).count();
        let threads = if index == 0 {
            opts.test_threads.unwrap_or(match launcher {
                Launcher::Vng(cfg) => cfg.cpus,
                Launcher::Host => 2,
            })
        } else {
            1
        };
        let remaining_set: BTreeSet<&str> = listed
            .iter()
            .filter(|n| !done.contains(*n))
            .map(String::as_str)
            .collect();
        let args = case_args(
            index == 0,
            opts.filter.as_deref(),
            &opts.skip,
            universe,
            &remaining_set,
            threads,
        );
        let crash_after = (opts.selftest_crash && index == 0).then(|| (remaining / 2).max(1));
        let copy_to_ram = matches!(launcher, Launcher::Vng(_));
        let script = guest_script(&GuestScript {
            dir: &dir,
            bin,
            args: &args,
            env: &env,
            crash_after,
            copy_to_ram,
        });
        let script_path = dir.join("run.sh");
        std::fs::write(&script_path, &script)?;
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&console_log)?;
            writeln!(f, "# ===== VM {index}: {remaining} case(s) =====")?;
        }
        let cmd = match launcher {
            Launcher::Vng(cfg) => {
                progress!(
                    "booting VM {index} ({}, {} case(s) to run, watchdog {} s)",
                    cfg.accel.as_str(),
                    remaining,
                    wd.total.as_secs()
                );
                cfg.command(
                    &format!("sh {}", shell_quote(&script_path.display().to_string())),
                    Some(&guest_root),
                )
            }
            Launcher::Host => {
                progress!("running {remaining} case(s) on the host kernel (no VM)");
                let mut c = Command::new("sh");
                c.arg(&script_path);
                c
            }
        };
        let run = vm::run_vm(cmd, wd, &console_log, &stdout_log, opts.echo_guest)?;
        let report = parse_case_report(
            &std::fs::read_to_string(dir.join("cases.jsonl")).unwrap_or_default(),
            index,
        );
        if r.env.is_none() {
            r.env = report.env.clone();
        }
        let mut findings = console::scan(&run.console, index);
        let panicked = console::has_panic(&findings);
        r.findings.append(&mut findings);
        let before = read_num(&dir.join("tainted.before"));
        let after = read_num(&dir.join("tainted.after"));
        if r.tainted_before.is_none() {
            r.tainted_before = before;
        }
        if after.is_some() {
            r.tainted_after = after;
        }
        if let (Some(b), Some(a)) = (before, after) {
            if a != b {
                r.problems.push(format!(
                    "VM {index}: /proc/sys/kernel/tainted went from {b} to {a}"
                ));
            }
        }
        if r.guest_release.is_none() {
            r.guest_release = std::fs::read_to_string(dir.join("kernel.release"))
                .ok()
                .map(|s| s.trim().to_owned());
        }
        let exit_status = std::fs::read_to_string(dir.join("exit.status"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
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
            exit_status
                .map(|s| format!(", case binary exit {s}"))
                .unwrap_or_default()
        );
        r.vms.push(VmRecord {
            index,
            outcome: run.end.outcome(panicked),
            boot_seconds: run.boot_seconds,
            wall_seconds: run.wall_seconds,
            guest_exit_status: exit_status,
            cases_reported: reported,
        });
        let left: Vec<&String> = listed.iter().filter(|n| !done.contains(*n)).collect();
        if let Some(why) = vm::launch_failure(&run).filter(|_| !panicked) {
            // No case ran, and a deterministic failure would only repeat in a fresh VM.
            r.infra
                .push(format!("VM {index}: {why}; {} case(s) not run", left.len()));
            break;
        }
        if panicked {
            r.infra
                .push(format!("kernel panic in VM {index} (see console.log)"));
        }
        match run.end {
            VmEnd::Completed => {
                if exit_status.is_none() || report.env.is_none() && reported == 0 {
                    r.infra.push(format!(
                        "VM {index}: the case binary reported nothing (exit status {exit_status:?}); \
                         see guest-output.log"
                    ));
                }
                for name in left {
                    r.cases.push(CaseResult {
                        name: name.clone(),
                        status: Status::Broken,
                        detail: format!("listed but not reported by the case binary (exit status {exit_status:?})"),
                        duration_ms: 0,
                        vm: index,
                        provenance: None,
                    });
                }
                break;
            }
            VmEnd::BootTimeout => {
                r.infra.push(format!(
                    "VM {index} did not reach the guest script within {} s (boot watchdog)",
                    wd.boot.as_secs()
                ));
                break;
            }
            VmEnd::Watchdog | VmEnd::Exited => {
                if run.end == VmEnd::Exited && !panicked {
                    r.infra.push(format!(
                        "VM {index} exited before the guest script finished (vng status {:?})",
                        run.vng_status
                    ));
                }
                if left.is_empty() {
                    break;
                }
                if threads > 1 && index + 1 < opts.max_vms {
                    // Several cases were in flight: rerun what is left one at a time, which
                    // pins the wedge or crash on one case if it happens again.
                    progress!(
                        "VM {index} ended {} with {threads} cases in flight; rerunning the {} case(s) \
                         left one at a time in a fresh VM",
                        if panicked { "in a kernel panic" } else { run.end.as_str() },
                        left.len()
                    );
                    continue;
                }
                let Some(culprit) = left.first().map(|s| (*s).clone()) else {
                    break;
                };
                let why = if panicked {
                    "the kernel panicked while this case ran".to_owned()
                } else if run.end == VmEnd::Watchdog {
                    format!(
                        "the VM watchdog ({} s) fired while this case ran: VM wedged",
                        wd.total.as_secs()
                    )
                } else {
                    format!(
                        "the VM died while this case ran (vng status {:?})",
                        run.vng_status
                    )
                };
                progress!("VM {index}: {culprit} is broken: {why}");
                done.insert(culprit.clone());
                r.cases.push(CaseResult {
                    name: culprit,
                    status: Status::Broken,
                    detail: why,
                    duration_ms: 0,
                    vm: index,
                    provenance: None,
                });
                if left.len() <= 1 {
                    break;
                }
                if index + 1 >= opts.max_vms {
                    for name in left.iter().skip(1) {
                        r.cases.push(CaseResult {
                            name: (*name).clone(),
                            status: Status::Broken,
                            detail: format!("not run: {} VMs used up", opts.max_vms),
                            duration_ms: 0,
                            vm: index,
                            provenance: None,
                        });
                    }
                    break;
                }
                progress!(
                    "restarting with the {} case(s) left in a fresh VM",
                    left.len() - 1
                );
            }
        }
    }
    Ok(r)
}

pub struct Prepared {
    pub artifact: KernelArtifact,
    pub vng: Option<VngConfig>,
    pub accel: Option<Decision>,
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
    std::fs::create_dir_all(out)
        .map_err(|e| RunError::Usage(format!("cannot create {}: {e}", out.display())))?;
    let out = std::fs::canonicalize(out).map_err(|e| RunError::Usage(e.to_string()))?;
    for f in ["console.log", "guest-output.log"] {
        let _ = std::fs::remove_file(out.join(f));
    }
    let _ = std::fs::remove_dir_all(out.join("guest"));
    progress!("profile {}: {}", profile.name, profile.description);
    let started = Instant::now();
    let mut results = empty_results(profile);
    let outcome = (|| -> Result<Option<VmLoop>> {
        let bin = stage_cases_binary(&cases_binary(paths, opts)?, &out)?;
        let listed = list_cases(&bin, profile, opts, false)?;
        let universe = list_cases(&bin, profile, opts, true)?;
        if listed.is_empty() {
            return Ok(None);
        }
        progress!("{} case(s) selected", listed.len());
        let prepared = prepare(profile, paths, opts)?;
        results.environment.kernel_source = prepared.artifact.source.clone();
        if let Some(rel) = &prepared.artifact.release {
            results.environment.kernel_release = rel.clone();
        }
        if let Some(d) = &prepared.accel {
            results.environment.accelerator = d.accel.as_str().into();
            results.environment.accelerator_reason = d.reason.clone();
        }
        let (boot, total) = match &prepared.vng {
            Some(cfg) => (
                opts.boot_timeout
                    .unwrap_or(if cfg.accel == Accel::Kvm { 60 } else { 180 }),
                opts.vm_timeout.unwrap_or(profile.vm.timeout_s),
            ),
            None => (30, opts.vm_timeout.unwrap_or(profile.vm.timeout_s)),
        };
        let wd = Watchdogs {
            boot: Duration::from_secs(boot),
            total: Duration::from_secs(total),
        };
        let launcher = match &prepared.vng {
            Some(cfg) => Launcher::Vng(cfg),
            None => Launcher::Host,
        };
        Ok(Some(run_cases(
            &launcher, &out, &bin, profile, &listed, &universe, opts, &wd,
        )?))
    })();
    match outcome {
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

fn empty_results(profile: &Profile) -> RunResults {
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
    }
}

fn absorb(results: &mut RunResults, l: VmLoop, profile: &Profile) {
    let e = &mut results.environment;
    if let Some(env) = &l.env {
        e.kernel_release = env.kernel_release.clone();
        e.feature = env.feature.clone();
        e.feature_reason = env.feature_reason.clone();
        e.feature_observed = env.feature_observed.clone();
        let bit = |t: &str| crate::profile::parse_clone_bit(t).ok();
        if bit(&env.clone_wait_pid_flag) != bit(&profile.clone_wait_pid_flag) {
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
    let snapshot =
        (opts.gate == Gate::Snapshot && results.infrastructure_errors.is_empty()).then(|| {
            gate::check_snapshot(
                &paths.snapshots,
                &results.environment.profile,
                &results.matrix(),
            )
        });
    let facts = Facts {
        infrastructure_errors: results.infrastructure_errors.len(),
        bad_cases: results.cases.iter().filter(|c| c.status.is_bad()).count(),
        console_findings: results.console_findings.len(),
        problems: results.problems.len(),
        snapshot,
    };
    let (verdict, code) = gate::decide(opts.gate, &facts);
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

    #[test]
    fn feature_mismatch_names_what_the_probe_saw() {
        let mut e = crate::report::tests::sample().environment;
        assert_eq!(feature_mismatch(&e, "wait-pid-6.12"), None, "present as expected");
        e.expected_feature = "absent".into();
        e.feature_observed = "clone3(CLONE_PIDFD|0x10000000000, SIGCHLD): accepted; unexpected: visible to waitid(P_ALL)".into();
        let p = feature_mismatch(&e, "debian-6.1").unwrap();
        assert!(p.starts_with("feature expected absent on debian-6.1, the case binary found it present: clone3 accepted the bit"), "{p}");
        assert!(p.ends_with("; the probe observed: clone3(CLONE_PIDFD|0x10000000000, SIGCHLD): accepted; unexpected: visible to waitid(P_ALL)"), "{p}");
        e.feature_observed.clear();
        assert!(!feature_mismatch(&e, "x").unwrap().contains("observed"));
        e.feature.clear();
        assert_eq!(feature_mismatch(&e, "x"), None, "no env line: nothing to compare");
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
            ["a::", "--skip", "b::", "--test-threads", "2"]
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
                "1"
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
            copy_to_ram: true,
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
                copy_to_ram: false,
            }
        });
        assert!(c.contains("-lt 3") && c.contains("/proc/sysrq-trigger"));
        assert!(!c.contains("/run/waitconf"), "no copy on the host");
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
        run_cases(&Launcher::Host, dir, bin, &p, &listed, &listed, o, &wd).unwrap()
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
