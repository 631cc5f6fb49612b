//! `runner`: builds or fetches each kernel profile of `vm-images/`, boots it under virtme-ng,
//! runs the wait-conformance case binary inside and writes reports.
//!
//! Exit codes: 0 as expected, 1 test failures or regressions, 2 usage or configuration error,
//! 3 infrastructure failure (fetch, build, boot, kernel panic).

mod accel;
mod compare;
mod console;
mod exec;
mod fuzz;
mod gate;
mod kernel;
mod paths;
mod probe;
mod profile;
mod progress;
mod report;
mod run;
mod vm;
mod vng;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use crate::accel::AccelChoice;
use crate::gate::{Gate, EXIT_FAILURES, EXIT_INFRA, EXIT_OK, EXIT_USAGE};
use crate::paths::Paths;
use crate::profile::{Kind, ProfileSet};
use crate::run::{RunError, RunOpts};

#[derive(Parser)]
#[command(
    name = "runner",
    version,
    about = "Kernel matrix runner for wait-conformance (virtme-ng)"
)]
#[command(
    after_help = "Exit codes: 0 as expected, 1 test failures/regressions, 2 usage or \
configuration error, 3 infrastructure failure (fetch, build, boot, kernel panic)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the cases on one kernel profile.
    Run {
        #[command(flatten)]
        kernel: KernelArgs,
        #[command(flatten)]
        cases: CaseArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Boot a kernel like `run` does and run COMMAND inside, in the current directory, with the
    /// host's Rust toolchain on PATH, $HOME, the cargo target directory writable and
    /// CLONE_WAIT_PID_FLAG set: `runner exec --kernel wait-pid-6.12 -- cargo test --release`.
    /// Exits with the command's status; 127 command not found (in the guest, or no toolchain
    /// for a cargo/rustc command); 1 the command exited 0 over a kernel oops/BUG/WARNING; 2
    /// usage; 3 infrastructure (no boot, launch failure, kernel panic, watchdog).
    Exec {
        #[command(flatten)]
        kernel: KernelArgs,
        /// Log directory (console.log, guest-output.log, exec.sh, exit.status); default
        /// <target>/exec/<profile>.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Extra guest environment, KEY=VALUE (repeatable; over the runner's own).
        #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_kv)]
        env: Vec<(String, String)>,
        /// Another directory the guest may write (repeatable); the cargo target directory and
        /// the log directory always are.
        #[arg(long = "rwdir", value_name = "DIR")]
        rwdirs: Vec<PathBuf>,
        /// Do not compile a `cargo test` command's tests on the host first (`--no-run`); the
        /// guest then compiles what is stale, slowly under TCG.
        #[arg(long)]
        no_host_build: bool,
        /// Whole-VM watchdog in seconds (default 3600, or the profile's vm.timeout_s when longer).
        #[arg(long)]
        vm_timeout: Option<u64>,
        /// Seconds for the VM to reach the guest script (default 60 with KVM, 180 with TCG).
        #[arg(long)]
        boot_timeout: Option<u64>,
        #[command(flatten)]
        common: Common,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Run the cases on every profile (or --kernels) and print a group x kernel table.
    Matrix {
        /// Comma-separated profiles; all when absent.
        #[arg(long, value_delimiter = ',')]
        kernels: Vec<String>,
        #[command(flatten)]
        cases: CaseArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Build or fetch a profile's kernel only (prints the image path and whether it was cached).
    Kernel {
        #[command(flatten)]
        kernel: KernelArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Boot a profile and run the runner's own CLONE_WAIT_PID smoke probe inside.
    Probe {
        #[command(flatten)]
        kernel: KernelArgs,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Measure boot-to-verdict against a bare `vng -- true` boot of the same kernel.
    Bench {
        #[command(flatten)]
        kernel: KernelArgs,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[command(flatten)]
        cases: CaseArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Run a fuzz campaign (fuzz/campaign.sh) in a VM of the profile, or on the host for `host`.
    /// Exit 0 clean, 1 findings, 2 usage, 3 infrastructure.
    Fuzz {
        #[command(flatten)]
        kernel: KernelArgs,
        /// The cargo-fuzz target.
        #[arg(long, value_enum)]
        target: fuzz::Target,
        /// Campaign length in seconds (libFuzzer's -max_total_time).
        #[arg(long = "time", value_name = "SECS", default_value_t = 60)]
        time: u64,
        /// Report directory (fuzz.json, artifacts/, readable/, console.log, guest-output.log).
        #[arg(long)]
        out: PathBuf,
        /// Host profile only: allow flag words that create namespaces or CLONE_VM children
        /// (WAIT_FUZZ_RISKY=1). Without it the host runs with WAIT_FUZZ_RISKY=0.
        #[arg(long)]
        allow_risky_host: bool,
        /// Do not run `cargo fuzz build -s none` (and the wcfuzz build) first.
        #[arg(long)]
        no_build: bool,
        /// Whole-VM watchdog in seconds (default: boot watchdog + --time + 300).
        #[arg(long)]
        vm_timeout: Option<u64>,
        /// Seconds for the VM to reach the guest script (default 60 with KVM, 180 with TCG).
        #[arg(long)]
        boot_timeout: Option<u64>,
        /// Do not echo the guest's output (libFuzzer's log).
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Write <out>/comparison.md (plain child | CLONE_WAIT_PID | CLONE_AUTOREAP per situation)
    /// from existing reports (results.json files or report directories).
    Compare {
        #[arg(long)]
        out: PathBuf,
        /// Profile whose `::plain` rows fill the plain-child column.
        #[arg(long, default_value = "wait-pid-6.12")]
        plain_from: String,
        /// Profile whose `::hidden` rows fill the CLONE_WAIT_PID column.
        #[arg(long, default_value = "wait-pid-6.12")]
        hidden_from: String,
        /// Profile whose `::autoreap` rows fill the CLONE_AUTOREAP column.
        #[arg(long, default_value = "debian-7.2")]
        autoreap_from: String,
        /// results.json files or report directories holding one.
        #[arg(required = true, value_name = "RESULTS")]
        results: Vec<PathBuf>,
    },
    /// List the profiles.
    Profiles {
        #[command(flatten)]
        common: Common,
    },
    /// (inside a guest) probe CLONE_WAIT_PID at --flag; prints JSON. Exit 0 works, 4 absent,
    /// 1 broken.
    #[command(hide = true)]
    GuestProbe {
        #[arg(long)]
        flag: String,
    },
}

/// Which kernel: a profile, or a kernel image file with what the runner needs to know about it.
#[derive(Args, Clone, Debug)]
struct KernelArgs {
    /// Profile name (a file in vm-images/profiles/).
    #[arg(
        long = "kernel",
        value_name = "PROFILE",
        required_unless_present = "kernel_image",
        conflicts_with = "kernel_image"
    )]
    kernel: Option<String>,
    /// Boot this kernel image (bzImage or vmlinuz) instead of a profile's. Its profile is named
    /// `image`; a missing file is a usage error (exit 2).
    #[arg(long, value_name = "PATH")]
    kernel_image: Option<PathBuf>,
    /// With --kernel-image: its modules, a lib/modules/<release> directory or a root holding one
    /// (needs busybox-static on the host for the initramfs).
    #[arg(long, value_name = "DIR", requires = "kernel_image")]
    modules: Option<PathBuf>,
    /// CLONE_WAIT_PID as this kernel defines it: 0x... hex, decimal or bit:N (the case binary's
    /// grammar). Default: the profile's; for --kernel-image, 0x10000000000 (bit 40).
    #[arg(long, value_name = "BIT", value_parser = parse_bit_arg)]
    clone_wait_pid_flag: Option<u64>,
    /// Whether the feature must be there (a profile's [expect] feature). Default: the
    /// profile's; for --kernel-image, present when --clone-wait-pid-flag is given, else absent.
    #[arg(long, value_enum, value_name = "present|absent")]
    expect_feature: Option<profile::Feature>,
}

fn parse_bit_arg(s: &str) -> Result<u64, String> {
    profile::parse_clone_bit(s).map_err(|e| e.0)
}

impl KernelArgs {
    /// The profile these options name: a profile file's (with the overrides), or one made for
    /// the image. Usage errors (unknown profile, missing image) are messages for exit 2.
    fn resolve(&self, set: &ProfileSet) -> Result<profile::Profile, String> {
        match (&self.kernel, &self.kernel_image) {
            (Some(name), None) => Ok(set
                .get(name)
                .map_err(|e| e.0)?
                .clone()
                .with_overrides(self.clone_wait_pid_flag, self.expect_feature)),
            (None, Some(image)) => profile::Profile::for_image(
                image,
                self.modules.as_deref(),
                self.clone_wait_pid_flag,
                self.expect_feature,
            )
            .map_err(|e| e.0),
            _ => Err("give one of --kernel PROFILE or --kernel-image PATH".into()),
        }
    }
}

#[derive(Args, Clone)]
struct Common {
    /// The vm-images directory (profiles, patches, config fragments, recipes).
    #[arg(long)]
    vm_images: Option<PathBuf>,
    /// QEMU accelerator; auto probes KVM once per machine and remembers.
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelChoice,
    /// Forget the remembered accelerator decision and probe again.
    #[arg(long)]
    reprobe_accel: bool,
    /// Parallel jobs for kernel builds.
    #[arg(long, default_value_t = 2)]
    jobs: u32,
    /// Run apt-get update before fetching packages.
    #[arg(long)]
    refresh_apt: bool,
}

#[derive(Args, Clone)]
struct CaseArgs {
    /// Report directory.
    #[arg(long)]
    out: PathBuf,
    /// Case name filter (substring), passed to the case binary.
    #[arg(long)]
    filter: Option<String>,
    /// Skip cases whose name contains PAT (repeatable), passed to the case binary.
    #[arg(long = "skip", value_name = "PAT")]
    skip: Vec<String>,
    /// strict: any fail/broken fails; snapshot: only differences from the reviewed snapshot fail.
    #[arg(long, value_enum, default_value = "strict")]
    gate: Gate,
    /// With --gate snapshot: write this run's matrix as the reviewed snapshot.
    #[arg(long)]
    accept: bool,
    /// Case binary to run (default: cargo build --release -p cases, target/release/wait-conformance).
    #[arg(long)]
    cases_bin: Option<PathBuf>,
    /// Do not run cargo build for the case binary.
    #[arg(long)]
    no_build: bool,
    /// Whole-VM watchdog in seconds (default: the profile's vm.timeout_s).
    #[arg(long)]
    vm_timeout: Option<u64>,
    /// Seconds for a VM to reach the guest script (default 60 with KVM, 180 with TCG).
    #[arg(long)]
    boot_timeout: Option<u64>,
    /// VMs to use at most when a VM wedges or crashes and cases are left.
    #[arg(long, default_value_t = 4)]
    max_vms: usize,
    /// --test-threads for the case binary in the first VM (default: the VM's CPU count). VMs
    /// started after a wedge or crash always run one case at a time.
    #[arg(long)]
    test_threads: Option<u32>,
    /// Extra environment for the case binary, e.g. WAITCONF_SELFTEST_WRONG=1 (repeatable).
    #[arg(long = "case-env", value_parser = parse_kv)]
    case_env: Vec<(String, String)>,
    /// Do not echo the guest's output.
    #[arg(long)]
    quiet: bool,
    /// Test only: crash the guest kernel (sysrq c) halfway through the first VM. Also
    /// WAITCONF_RUNNER_SELFTEST_CRASH=1. Refused for the host profile.
    #[arg(long, hide = true)]
    selftest_crash: bool,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))
}

impl CaseArgs {
    fn opts(&self, common: &Common) -> RunOpts {
        RunOpts {
            filter: self.filter.clone(),
            skip: self.skip.clone(),
            gate: self.gate,
            accept: self.accept,
            accel: common.accel,
            reprobe_accel: common.reprobe_accel,
            cases_bin: self.cases_bin.clone(),
            build_cases: !self.no_build,
            jobs: common.jobs,
            refresh_apt: common.refresh_apt,
            vm_timeout: self.vm_timeout,
            boot_timeout: self.boot_timeout,
            max_vms: self.max_vms,
            test_threads: self.test_threads,
            case_env: self.case_env.clone(),
            echo_guest: !self.quiet,
            selftest_crash: self.selftest_crash
                || std::env::var("WAITCONF_RUNNER_SELFTEST_CRASH").is_ok_and(|v| v == "1"),
        }
    }
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("runner: {msg}");
    ExitCode::from(EXIT_USAGE as u8)
}

fn load(common: &Common) -> Result<(Paths, ProfileSet), ExitCode> {
    let paths = Paths::discover(common.vm_images.clone());
    let set = ProfileSet::load(&paths.vm_images).map_err(usage)?;
    Ok((paths, set))
}

/// [`load`], then the profile the kernel options name (a usage error when there is none).
fn load_profile(
    common: &Common,
    kernel: &KernelArgs,
) -> Result<(Paths, profile::Profile), ExitCode> {
    let (paths, set) = load(common)?;
    let p = kernel.resolve(&set).map_err(usage)?;
    Ok((paths, p))
}

/// An infrastructure failure: the error with its causes on stderr, exit 3.
fn infra(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("runner: {e:#}");
    ExitCode::from(EXIT_INFRA as u8)
}

fn main() -> ExitCode {
    progress::start();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::GuestProbe { flag } => {
            let bit = match profile::parse_clone_bit(&flag) {
                Ok(b) => b,
                Err(e) => return usage(e),
            };
            let r = probe::probe(bit);
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
            ExitCode::from(match r.verdict.as_str() {
                "works" => 0,
                "absent" => 4,
                _ => 1,
            })
        }
        Cmd::Profiles { common } => {
            let (_, set) = match load(&common) {
                Ok(x) => x,
                Err(c) => return c,
            };
            for p in set.profiles.values() {
                println!(
                    "{:<16} {:<16} flag {:<14} feature {:<8} {}",
                    p.name,
                    format!("{:?}", p.kind),
                    p.clone_wait_pid_flag,
                    p.expect.feature.to_string(),
                    p.description
                );
            }
            ExitCode::SUCCESS
        }
        Cmd::Kernel { kernel, common } => {
            let (paths, p) = match load_profile(&common, &kernel) {
                Ok(x) => x,
                Err(c) => return c,
            };
            let p = &p;
            let started = Instant::now();
            match kernel::acquire(
                p,
                &paths,
                &kernel::AcquireOpts {
                    jobs: common.jobs,
                    refresh_apt: common.refresh_apt,
                },
            ) {
                Ok(a) => {
                    println!(
                        "{}: {} ({}; {}, {:.1} s)",
                        p.name,
                        a.image
                            .as_deref()
                            .map(|i| i.display().to_string())
                            .unwrap_or_else(|| "host kernel".into()),
                        a.source,
                        if a.cache_hit {
                            "cache hit"
                        } else {
                            "built/fetched"
                        },
                        started.elapsed().as_secs_f64()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => infra(e),
            }
        }
        Cmd::Run {
            kernel,
            cases,
            common,
        } => {
            let opts = cases.opts(&common);
            gate::configure_insta(&paths::workspace_root(), opts.accept);
            let (paths, p) = match load_profile(&common, &kernel) {
                Ok(x) => x,
                Err(c) => return c,
            };
            let p = &p;
            if opts.selftest_crash && p.kind == Kind::Host {
                return usage("refusing the crash selftest on the host profile");
            }
            match run::run_profile(p, &paths, &cases.out, &opts) {
                Ok(r) => {
                    println!(
                        "\n{} on {} ({}, {}):",
                        p.name,
                        r.environment.kernel_release,
                        r.environment.accelerator,
                        r.environment.clone_wait_pid_flag
                    );
                    print!("{}", r.summary_table());
                    print!("\n{}", r.provenance_table());
                    println!("verdict: {} (exit {})", r.verdict, r.exit_code);
                    ExitCode::from(r.exit_code as u8)
                }
                Err(RunError::Usage(m)) => usage(m),
            }
        }
        Cmd::Exec {
            kernel,
            out,
            env,
            rwdirs,
            no_host_build,
            vm_timeout,
            boot_timeout,
            common,
            command,
        } => {
            let (paths, p) = match load_profile(&common, &kernel) {
                Ok(x) => x,
                Err(c) => return c,
            };
            let mut run = CaseArgs {
                out: PathBuf::new(),
                filter: None,
                skip: vec![],
                gate: Gate::Strict,
                accept: false,
                cases_bin: None,
                no_build: true,
                vm_timeout,
                boot_timeout,
                max_vms: 1,
                test_threads: None,
                case_env: vec![],
                quiet: false,
                selftest_crash: false,
            }
            .opts(&common);
            run.selftest_crash = false;
            let opts = exec::ExecOpts {
                command,
                out,
                env,
                rwdirs,
                host_build: !no_host_build,
                run,
            };
            ExitCode::from(exec::exec(&p, &paths, &opts).clamp(0, 255) as u8)
        }
        Cmd::Matrix {
            kernels,
            cases,
            common,
        } => {
            let opts = cases.opts(&common);
            gate::configure_insta(&paths::workspace_root(), opts.accept);
            let (paths, set) = match load(&common) {
                Ok(x) => x,
                Err(c) => return c,
            };
            let names: Vec<String> = if kernels.is_empty() {
                set.profiles.keys().cloned().collect()
            } else {
                kernels
            };
            for n in &names {
                if let Err(e) = set.get(n) {
                    return usage(e);
                }
            }
            if opts.selftest_crash {
                return usage("the crash selftest is for `run` on one VM profile only");
            }
            let mut runs = Vec::new();
            let mut worst = EXIT_OK;
            for n in &names {
                let p = set.get(n).expect("checked");
                match run::run_profile(p, &paths, &cases.out.join(n), &opts) {
                    Ok(r) => {
                        worst = worse(worst, r.exit_code);
                        runs.push((n.clone(), Some(r)));
                    }
                    Err(RunError::Usage(m)) => {
                        eprintln!("runner: {n}: {m}");
                        worst = worse(worst, EXIT_USAGE);
                        runs.push((n.clone(), None));
                    }
                }
            }
            let table = report::matrix_table(&runs);
            let _ = std::fs::write(cases.out.join("matrix.txt"), &table);
            println!("\n{table}");
            let located: Vec<(String, &report::RunResults)> = runs
                .iter()
                .filter_map(|(n, r)| {
                    r.as_ref().map(|r| {
                        (
                            cases.out.join(n).join("results.json").display().to_string(),
                            r,
                        )
                    })
                })
                .collect();
            match write_comparison(&cases.out, &located, &compare::Columns::default()) {
                Ok(true) => {}
                Ok(false) => println!("(no comparison: none of its profiles ran)"),
                Err(e) => {
                    eprintln!("runner: {e:#}");
                    worst = worse(worst, EXIT_INFRA);
                }
            }
            ExitCode::from(worst as u8)
        }
        Cmd::Fuzz {
            kernel,
            target,
            time,
            out,
            allow_risky_host,
            no_build,
            vm_timeout,
            boot_timeout,
            quiet,
            common,
        } => {
            let (paths, p) = match load_profile(&common, &kernel) {
                Ok(x) => x,
                Err(c) => return c,
            };
            let p = &p;
            let opts = fuzz::FuzzOpts {
                target,
                secs: time,
                build: !no_build,
                allow_risky_host,
                accel: common.accel,
                reprobe_accel: common.reprobe_accel,
                jobs: common.jobs,
                refresh_apt: common.refresh_apt,
                vm_timeout,
                boot_timeout,
                echo_guest: !quiet,
            };
            match fuzz::run_fuzz(p, &paths, &out, &opts, None) {
                Ok(r) => {
                    print!("\n{}", r.summary());
                    ExitCode::from(r.exit_code as u8)
                }
                Err(RunError::Usage(m)) => usage(m),
            }
        }
        Cmd::Compare {
            out,
            plain_from,
            hidden_from,
            autoreap_from,
            results,
        } => {
            let mut loaded = Vec::new();
            for r in &results {
                let file = if r.is_dir() {
                    r.join("results.json")
                } else {
                    r.clone()
                };
                let parsed = std::fs::read_to_string(&file)
                    .map_err(anyhow::Error::from)
                    .and_then(|t| Ok(serde_json::from_str::<report::RunResults>(&t)?));
                match parsed {
                    Ok(x) => loaded.push((file.display().to_string(), x)),
                    Err(e) => return usage(format!("{}: {e}", file.display())),
                }
            }
            let cols = compare::Columns {
                plain: plain_from,
                hidden: hidden_from,
                autoreap: autoreap_from,
            };
            let located: Vec<(String, &report::RunResults)> =
                loaded.iter().map(|(f, r)| (f.clone(), r)).collect();
            match write_comparison(&out, &located, &cols) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => usage(format!(
                    "none of the inputs is a run of {}, {} or {} (their profiles: {})",
                    cols.plain,
                    cols.hidden,
                    cols.autoreap,
                    loaded
                        .iter()
                        .map(|(_, r)| r.environment.profile.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Err(e) => infra(e),
            }
        }
        Cmd::Probe {
            kernel,
            out,
            common,
        } => {
            let (paths, p) = match load_profile(&common, &kernel) {
                Ok(x) => x,
                Err(c) => return c,
            };
            let p = &p;
            probe_cmd(p, &paths, &out, &common)
        }
        Cmd::Bench {
            kernel,
            rounds,
            cases,
            common,
        } => {
            let opts = cases.opts(&common);
            gate::configure_insta(&paths::workspace_root(), false);
            let (paths, p) = match load_profile(&common, &kernel) {
                Ok(x) => x,
                Err(c) => return c,
            };
            let p = &p;
            if p.kind == Kind::Host {
                return usage("bench compares VM boots; the host profile has none");
            }
            bench(p, &paths, &cases.out, &opts, rounds.max(1))
        }
    }
}

/// Writes `<out>/comparison.md` and prints its totals; Ok(false) when no input feeds any column.
fn write_comparison(
    out: &Path,
    runs: &[(String, &report::RunResults)],
    cols: &compare::Columns,
) -> anyhow::Result<bool> {
    use anyhow::Context as _;
    let Some((md, rows)) = compare::build(runs, cols) else {
        return Ok(false);
    };
    std::fs::create_dir_all(out)?;
    let file = out.join("comparison.md");
    std::fs::write(&file, &md).with_context(|| format!("writing {}", file.display()))?;
    println!(
        "\nComparison (pass/fail/skip/broken; plain and CLONE_WAIT_PID from {}, CLONE_AUTOREAP from {}):\n{}\n{} situation(s) in {}",
        cols.hidden,
        cols.autoreap,
        compare::totals_markdown(&rows),
        rows.len(),
        file.display()
    );
    Ok(true)
}

/// Exit code precedence for several runs: infrastructure > usage > failures > ok.
fn worse(a: i32, b: i32) -> i32 {
    let rank = |c: i32| match c {
        EXIT_INFRA => 3,
        EXIT_USAGE => 2,
        EXIT_FAILURES => 1,
        _ => 0,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

fn probe_cmd(p: &profile::Profile, paths: &Paths, out: &Path, common: &Common) -> ExitCode {
    if p.kind == Kind::Host {
        return usage("probe boots a VM; for the host run `runner guest-probe --flag ...`");
    }
    let opts = CaseArgs {
        out: out.to_owned(),
        filter: None,
        skip: vec![],
        gate: Gate::Strict,
        accept: false,
        cases_bin: None,
        no_build: true,
        vm_timeout: None,
        boot_timeout: None,
        max_vms: 1,
        test_threads: None,
        case_env: vec![],
        quiet: false,
        selftest_crash: false,
    }
    .opts(common);
    let prepared = match run::prepare(p, paths, &opts) {
        Ok(x) => x,
        Err(e) => return infra(e),
    };
    let cfg = prepared.vng.expect("VM profile");
    let _ = std::fs::create_dir_all(out);
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("runner"));
    let cmd = cfg.command(
        &format!(
            "echo {}; '{}' guest-probe --flag {:#x}; echo {}",
            vm::START_MARKER,
            exe.display(),
            p.clone_bit(),
            vm::END_MARKER
        ),
        None,
    );
    let wd = vm::Watchdogs {
        boot: Duration::from_secs(180),
        total: Duration::from_secs(300),
    };
    let _ = std::fs::remove_file(out.join("probe-output.log"));
    match vm::run_vm(
        cmd,
        &wd,
        &out.join("console.log"),
        &out.join("probe-output.log"),
        true,
    ) {
        Ok(run) if run.end == vm::VmEnd::Completed => {
            let text = std::fs::read_to_string(out.join("probe-output.log")).unwrap_or_default();
            let verdict = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find_map(|v| v["verdict"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let want = if p.expect.feature == profile::Feature::Present {
                "works"
            } else {
                "absent"
            };
            println!(
                "probe on {} ({}, boot {:.1} s): {verdict} (expected {want})",
                p.name,
                cfg.accel.as_str(),
                run.boot_seconds.unwrap_or(f64::NAN)
            );
            ExitCode::from(if verdict == want {
                EXIT_OK
            } else {
                EXIT_FAILURES
            } as u8)
        }
        Ok(run) => {
            eprintln!(
                "runner: probe VM ended {} (see {}/console.log)",
                run.end.as_str(),
                out.display()
            );
            ExitCode::from(EXIT_INFRA as u8)
        }
        Err(e) => infra(e),
    }
}

/// Alternates a bare `vng -- true` boot and a full run (boot to reports written) of the same
/// kernel with the same vng options, `rounds` times, and reports medians and their ratio.
fn bench(
    p: &profile::Profile,
    paths: &Paths,
    out: &Path,
    opts: &RunOpts,
    rounds: usize,
) -> ExitCode {
    let prepared = match run::prepare(p, paths, opts) {
        Ok(x) => x,
        Err(e) => return infra(e),
    };
    let cfg = prepared.vng.expect("VM profile");
    let _ = std::fs::create_dir_all(out);
    let bin = match run::cases_binary(paths, opts).and_then(|b| run::stage_cases_binary(&b, out)) {
        Ok(b) => b,
        Err(e) => return infra(e),
    };
    let listed = match run::list_cases(&bin, p, opts, false)
        .and_then(|l| Ok((l, run::list_cases(&bin, p, opts, true)?)))
    {
        Ok(l) => l,
        Err(e) => return infra(e),
    };
    let _ = std::fs::create_dir_all(out);
    let out = std::fs::canonicalize(out).unwrap_or_else(|_| out.to_owned());
    let total = opts.vm_timeout.unwrap_or(p.vm.timeout_s);
    let mut bare = Vec::new();
    let mut full = Vec::new();
    let mut cases_per_round = 0;
    for round in 0..rounds {
        let dir = out.join(format!("round{round}"));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::create_dir_all(&dir);
        // Bare: nothing but `true`; no markers, so the boot watchdog equals the total one.
        let wd = vm::Watchdogs {
            boot: Duration::from_secs(total),
            total: Duration::from_secs(total),
        };
        let t = Instant::now();
        let r = vm::run_vm(
            cfg.command("true", None),
            &wd,
            &dir.join("bare-console.log"),
            &dir.join("bare-out.log"),
            false,
        );
        let bare_s = t.elapsed().as_secs_f64();
        if !matches!(&r, Ok(run) if run.vng_status == Some(0)) {
            eprintln!("runner: bare boot failed in round {round}: {r:?}");
            return ExitCode::from(EXIT_INFRA as u8);
        }
        let wd = vm::Watchdogs {
            boot: Duration::from_secs(180),
            total: Duration::from_secs(total),
        };
        let launcher = run::Launcher::Vng(&cfg);
        let t = Instant::now();
        let l = match run::run_cases(&launcher, &dir, &bin, p, &listed.0, &listed.1, opts, &wd) {
            Ok(l) => l,
            Err(e) => return infra(e),
        };
        let n = l.cases.len();
        let mut results = report::RunResults {
            environment: report::Environment {
                profile: p.name.clone(),
                profile_description: p.description.clone(),
                kernel_release: l
                    .env
                    .as_ref()
                    .map(|e| e.kernel_release.clone())
                    .unwrap_or_default(),
                kernel_source: prepared.artifact.source.clone(),
                clone_wait_pid_flag: p.clone_wait_pid_flag.clone(),
                accelerator: cfg.accel.as_str().into(),
                accelerator_reason: String::new(),
                boot_seconds: l.vms.iter().filter_map(|v| v.boot_seconds).collect(),
                feature: l
                    .env
                    .as_ref()
                    .map(|e| e.feature.clone())
                    .unwrap_or_default(),
                feature_reason: l
                    .env
                    .as_ref()
                    .map(|e| e.feature_reason.clone())
                    .unwrap_or_default(),
                feature_observed: l
                    .env
                    .as_ref()
                    .map(|e| e.feature_observed.clone())
                    .unwrap_or_default(),
                expected_feature: p.expect.feature.to_string(),
                tainted_before: l.tainted_before,
                tainted_after: l.tainted_after,
                runner_version: env!("CARGO_PKG_VERSION").into(),
            },
            cases: l.cases,
            console_findings: l.findings,
            vms: l.vms,
            infrastructure_errors: l.infra,
            problems: l.problems,
            verdict: "bench".into(),
            exit_code: 0,
        };
        results.exit_code = 0;
        let _ = results.write_all(&dir);
        let full_s = t.elapsed().as_secs_f64();
        progress!("round {round}: bare vng -- true {bare_s:.2} s; boot-to-verdict {full_s:.2} s ({n} cases)");
        bare.push(bare_s);
        full.push(full_s);
        cases_per_round = n;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (mb, mf) = (median(&mut bare.clone()), median(&mut full.clone()));
    // What each case costs beyond the boot: the spawn (a fork from the case
    // binary's fork server, or an exec with `--case-env WAITCONF_SPAWN=exec`), the
    // case itself and its supervision.
    let per_case_ms = 1000.0 * (mf - mb) / cases_per_round.max(1) as f64;
    let summary = serde_json::json!({
        "profile": p.name,
        "accelerator": cfg.accel.as_str(),
        "rounds": rounds,
        "bare_vng_true_seconds": bare,
        "boot_to_verdict_seconds": full,
        "median_bare": mb,
        "median_boot_to_verdict": mf,
        "ratio": mf / mb,
        "goal_ratio": 1.2,
        "cases": cases_per_round,
        "per_case_ms": per_case_ms,
    });
    let _ = std::fs::write(
        out.join("bench.json"),
        serde_json::to_string_pretty(&summary).unwrap_or_default(),
    );
    println!(
        "bench {} ({}): bare `vng -- true` median {mb:.2} s, boot-to-verdict median {mf:.2} s, ratio {:.2} (goal <= 1.2); \
         {cases_per_round} cases, {per_case_ms:.1} ms per case beyond the boot",
        p.name,
        cfg.accel.as_str(),
        mf / mb
    );
    ExitCode::from(if mf / mb <= 1.2 {
        EXIT_OK
    } else {
        EXIT_FAILURES
    } as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_exit_code_precedence() {
        assert_eq!(worse(EXIT_OK, EXIT_FAILURES), EXIT_FAILURES);
        assert_eq!(worse(EXIT_INFRA, EXIT_FAILURES), EXIT_INFRA);
        assert_eq!(worse(EXIT_FAILURES, EXIT_USAGE), EXIT_USAGE);
        assert_eq!(worse(EXIT_USAGE, EXIT_INFRA), EXIT_INFRA);
        assert_eq!(worse(EXIT_OK, EXIT_OK), EXIT_OK);
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
