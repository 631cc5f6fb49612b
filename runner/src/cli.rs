//! The command line: clap's definitions of the subcommands and their options, and how options
//! become the runner's own option structs. `main.rs` has one function per subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::accel::AccelChoice;
use crate::fuzz;
use crate::gate::Gate;
use crate::profile::{self, ProfileSet};
use crate::run::RunOpts;

/// `1` does what `--selftest-crash` does (the runner's own environment, not the guest's).
pub const SELFTEST_CRASH_ENV: &str = "WAITCONF_RUNNER_SELFTEST_CRASH";

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
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run the cases on one kernel profile.
    Run(RunArgs),
    /// Boot a kernel like `run` does and run COMMAND inside, in the current directory, with the
    /// host's Rust toolchain on PATH, $HOME, the cargo target directory writable and
    /// CLONE_WAIT_PID_FLAG set: `runner exec --kernel wait-pid-6.12 -- cargo test --release`.
    /// Exits with the command's status; 127 command not found (in the guest, or no toolchain
    /// for a cargo/rustc command); 1 the command exited 0 over a kernel oops/BUG/WARNING; 2
    /// usage; 3 infrastructure (no boot, launch failure, kernel panic, watchdog).
    Exec(ExecArgs),
    /// Run the cases on every profile (or --kernels) and print a group x kernel table.
    Matrix(MatrixArgs),
    /// Build or fetch a profile's kernel only (prints the image path and whether it was cached).
    Kernel(KernelCmdArgs),
    /// Boot a profile and run the case binary's CLONE_WAIT_PID probe inside (`wait-conformance
    /// --probe`); prints what it found. Exit 0 as the profile expects, 1 not, 3 infrastructure.
    Probe(ProbeArgs),
    /// Measure boot-to-verdict against a bare `vng -- true` boot of the same kernel.
    Bench(BenchArgs),
    /// Run a fuzz campaign (fuzz/campaign.sh) in a VM of the profile, or on the host for `host`.
    /// Exit 0 clean, 1 findings, 2 usage, 3 infrastructure.
    Fuzz(FuzzArgs),
    /// Write <out>/comparison.md (plain child | CLONE_WAIT_PID | CLONE_AUTOREAP per situation)
    /// from existing reports (results.json files or report directories).
    Compare(CompareArgs),
    /// List the profiles.
    Profiles(ProfilesArgs),
    /// The suite's mutation score: apply each mutant patch (vm-images/mutants/*.patch) in turn
    /// to the kept tree of a source profile (or to --kernel-tree), rebuild incrementally, run
    /// the suite, restore. Writes <out>/mutation.json and mutation.txt. Exit 0 every mutant
    /// killed, 1 a mutant survived or could not be judged, 2 usage, 3 the baseline failed.
    Mutate(MutateArgs),
    /// Convert a run's reports for other systems: `export kcidb` writes a KCIDB v5 document.
    Export(ExportArgs),
    /// Put the reports of `run --shard 1/N` .. `N/N` back together: one results.json, TAP,
    /// KTAP and JUnit in --out, judged by --gate as one run. Exit 0/1/3 as `run`; 2 unreadable
    /// input; 4 refused: not shards of one run (missing or overlapping shards, other cuts,
    /// different kernels).
    Merge(MergeArgs),
    /// The cached fuzz corpora: `stats`, `merge DIR...`, `minimise` (libFuzzer's -merge=1 on
    /// the profile's kernel). Exit 0 done, 2 usage, 3 infrastructure.
    Corpus(CorpusArgs),
    /// Kernel line coverage of the case table: run it on a KCOV profile (keep_vmlinux, e.g.
    /// wait-pid-6.12-kcov) with every case recording its kernel PCs, then write
    /// <out>/coverage.json, coverage.txt, coverage.info (lcov) and html/ (genhtml) beside the
    /// run's reports (docs/coverage.md). Every missed line of the listed functions must be
    /// reached by a --campaign or explained in vm-images/coverage/<profile>.toml. Exit 0
    /// written and every missed line explained, 1 a missed line unexplained or an explanation
    /// stale, 2 usage, 3 no coverage.
    Coverage(CoverageArgs),
}

#[derive(Args)]
pub struct MergeArgs {
    /// Shard report directories (or their results.json files).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where the merged reports go.
    #[arg(long)]
    pub out: PathBuf,
    /// strict: any fail/broken fails; snapshot: only differences from the reviewed snapshot.
    #[arg(long, value_enum, default_value = "strict")]
    pub gate: Gate,
    /// With --gate snapshot: write the merged matrix as the reviewed snapshot.
    #[arg(long)]
    pub accept: bool,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    #[command(flatten)]
    pub cases: CaseArgs,
    /// Run shard I of N (1-based) of the selected cases: those whose SHA-256 of the name,
    /// modulo N, is I-1. Put the shards back together with `runner merge`.
    #[arg(long, value_name = "I/N", value_parser = crate::shard::parse_shard)]
    pub shard: Option<crate::shard::Shard>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args)]
pub struct CoverageArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// A `runner fuzz` report directory of a campaign on the same profile (repeatable): the
    /// kernel PCs it recorded count as reached, beside the table's.
    #[arg(long = "campaign", value_name = "DIR")]
    pub campaigns: Vec<PathBuf>,
    /// Do not run the table: report from the recordings an earlier `runner coverage --out
    /// DIR` left in DIR/guest/kcov.
    #[arg(long)]
    pub report_only: bool,
}

#[derive(Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Log directory (console.log, guest-output.log, exec.sh, exit.status); default
    /// <target>/exec/<profile>.
    #[arg(long, value_parser = vm_dir)]
    pub out: Option<PathBuf>,
    /// Extra guest environment, KEY=VALUE (repeatable; over the runner's own).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub env: Vec<(String, String)>,
    /// Another directory the guest may write (repeatable); the cargo target directory and
    /// the log directory always are.
    #[arg(long = "rwdir", value_name = "DIR")]
    pub rwdirs: Vec<PathBuf>,
    /// Do not compile a `cargo test` command's tests on the host first (`--no-run`); the
    /// guest then compiles what is stale, slowly under TCG.
    #[arg(long)]
    pub no_host_build: bool,
    #[command(flatten)]
    pub watchdogs: Watchdogs,
    #[command(flatten)]
    pub common: Common,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Args)]
pub struct MatrixArgs {
    /// Comma-separated profiles; all when absent.
    #[arg(long, value_delimiter = ',')]
    pub kernels: Vec<String>,
    /// Also run this kernel image, as profile `image` (alone unless --kernels names profiles too).
    #[arg(long, value_name = "PATH")]
    pub kernel_image: Option<PathBuf>,
    /// Also build and run this kernel tree, as profile `tree` (alone unless --kernels names
    /// profiles too).
    #[arg(long, value_name = "DIR")]
    pub kernel_tree: Option<PathBuf>,
    /// For --kernel-image and --kernel-tree: CLONE_WAIT_PID's bit (as for `run`).
    #[arg(long, value_name = "BIT", value_parser = protocol::bit::parse_bit)]
    pub clone_wait_pid_flag: Option<u64>,
    /// For --kernel-image and --kernel-tree: whether the feature must be there (as for `run`).
    #[arg(long, value_enum, value_name = "present|absent")]
    pub expect_feature: Option<profile::Feature>,
    /// Profiles run at once, each in its own VM (default: one more than the host's CPUs, at
    /// most 4; kernels are fetched or built one at a time before any VM starts).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: Option<u32>,
    #[command(flatten)]
    pub cases: CaseArgs,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args)]
pub struct KernelCmdArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    #[arg(long, value_parser = vm_dir)]
    pub out: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    #[command(flatten)]
    pub cases: CaseArgs,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args)]
pub struct FuzzArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// The cargo-fuzz target.
    #[arg(long, value_enum)]
    pub target: fuzz::Target,
    /// Campaign length in seconds (libFuzzer's -max_total_time).
    #[arg(long = "time", value_name = "SECS", default_value_t = 60)]
    pub time: u64,
    /// Report directory (fuzz.json, artifacts/, readable/, console.log, guest-output.log).
    #[arg(long, value_parser = vm_dir)]
    pub out: PathBuf,
    /// Host profile only: allow flag words that create namespaces or CLONE_VM children
    /// (WAIT_FUZZ_RISKY=1). Without it the host runs with WAIT_FUZZ_RISKY=0.
    #[arg(long)]
    pub allow_risky_host: bool,
    /// Do not run `cargo fuzz build -s none` (and the wcfuzz build) first.
    #[arg(long)]
    pub no_build: bool,
    #[command(flatten)]
    pub watchdogs: Watchdogs,
    /// Do not echo the guest's output (libFuzzer's log).
    #[arg(long)]
    pub quiet: bool,
    /// Run M campaigns at once, each in its own VM with its own working corpus copied from
    /// the cached one (<out>/vm<i>/), then merge their corpora into the cache with libFuzzer's
    /// -merge=1 on the same kernel. On `fuzz`, --jobs N also runs N libFuzzer workers per VM
    /// (fork mode, -fork=N); without --jobs, one.
    #[arg(long, value_name = "M")]
    pub vms: Option<u32>,
    /// On a KCOV profile (wait-pid-6.12-kcov): record the kernel lines reached without
    /// feeding kernel coverage to libFuzzer (the comparison campaign); fed by default.
    #[arg(long)]
    pub no_kernel_feedback: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args)]
pub struct CorpusArgs {
    #[command(subcommand)]
    pub what: CorpusWhat,
}

/// Which corpus: the cache's of a profile and a fuzz target, with a work directory for the
/// copies and libFuzzer's log.
#[derive(Args)]
pub struct CorpusOf {
    #[command(flatten)]
    pub kernel: KernelArgs,
    #[arg(long, value_enum)]
    pub target: fuzz::Target,
    /// Work directory (copies of the corpora, libFuzzer's log, console.log).
    #[arg(long, value_parser = vm_dir)]
    pub out: PathBuf,
    /// Do not run `cargo fuzz build -s none` first.
    #[arg(long)]
    pub no_build: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Subcommand)]
pub enum CorpusWhat {
    /// Files, bytes, and libFuzzer's coverage edges and features of the cached corpus (-merge=1
    /// into an empty directory on the profile's kernel).
    Stats(CorpusOf),
    /// Merge corpus directories into the cached corpus (-merge=1: only units that add
    /// features), on the profile's kernel.
    Merge {
        #[command(flatten)]
        of: CorpusOf,
        /// Corpus directories to merge in.
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
    },
    /// Replace the cached corpus by its smallest subset with the same features (-merge=1 into
    /// an empty directory), on the profile's kernel.
    Minimise(CorpusOf),
}

#[derive(Args)]
pub struct CompareArgs {
    #[arg(long)]
    pub out: PathBuf,
    /// Profile whose `::plain` rows fill the plain-child column.
    #[arg(long, default_value = "wait-pid-6.12")]
    pub plain_from: String,
    /// Profile whose `::hidden` rows fill the CLONE_WAIT_PID column.
    #[arg(long, default_value = "wait-pid-6.12")]
    pub hidden_from: String,
    /// Profile whose `::autoreap` rows fill the CLONE_AUTOREAP column.
    #[arg(long, default_value = "debian-7.2")]
    pub autoreap_from: String,
    /// Every column from this profile's run (a kernel with both flags, e.g. wait-pid-7.2);
    /// its report directory already holds this view as comparison.md.
    #[arg(long, value_name = "PROFILE", conflicts_with_all = ["plain_from", "hidden_from", "autoreap_from"])]
    pub same_kernel: Option<String>,
    /// results.json files or report directories holding one.
    #[arg(required = true, value_name = "RESULTS")]
    pub results: Vec<PathBuf>,
}

#[derive(Args)]
pub struct MutateArgs {
    /// The kernel and the suite's run, as `runner run` takes them.
    #[command(flatten)]
    pub run: RunArgs,
    /// The mutants' directory (default vm-images/mutants).
    #[arg(long, value_name = "DIR")]
    pub mutants: Option<PathBuf>,
    /// Mutants to run (names like 03-never-marked, or patch paths); all when none.
    pub names: Vec<String>,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub what: ExportWhat,
}

#[derive(Subcommand)]
pub enum ExportWhat {
    /// A KCIDB v5 document from a run's results.json (a file or its report directory).
    Kcidb {
        /// results.json, or the report directory holding it.
        results: PathBuf,
        /// Where to write the document.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        opts: crate::kcidb::KcidbOpts,
    },
}

#[derive(Args)]
pub struct ProfilesArgs {
    #[command(flatten)]
    pub common: Common,
}

/// Which kernel: a profile, a kernel image file, or a kernel tree, with what the runner needs to
/// know about it.
#[derive(Args, Clone, Debug)]
#[command(group(clap::ArgGroup::new("which_kernel").required(true).args(["kernel", "kernel_image", "kernel_tree"])))]
pub struct KernelArgs {
    /// Profile name (a file in vm-images/profiles/).
    #[arg(long = "kernel", value_name = "PROFILE")]
    kernel: Option<String>,
    /// Boot this kernel image (bzImage or vmlinuz) instead of a profile's. Its profile is named
    /// `image`; a missing file is a usage error (exit 2).
    #[arg(long, value_name = "PATH")]
    kernel_image: Option<PathBuf>,
    /// With --kernel-image: its modules, a lib/modules/<release> directory or a root holding one
    /// (needs busybox-static on the host for the initramfs).
    #[arg(long, value_name = "DIR", requires = "kernel_image")]
    modules: Option<PathBuf>,
    /// Build this kernel source tree (out of tree, in a kept build directory under the cache,
    /// incrementally) with the suite's config fragment over allnoconfig, and boot it. Its
    /// profile is named `tree`; the bit comes from the tree's include/uapi/linux/sched.h when it
    /// defines CLONE_WAIT_PID.
    #[arg(long, value_name = "DIR")]
    kernel_tree: Option<PathBuf>,
    /// With --kernel-tree: merge the fragment into the tree's own config (or --config FILE)
    /// instead of allnoconfig.
    #[arg(long, requires = "kernel_tree")]
    keep_config: bool,
    /// With --keep-config: the base config file (default <tree>/.config).
    #[arg(long, value_name = "FILE", requires = "keep_config")]
    config: Option<PathBuf>,
    /// CLONE_WAIT_PID as this kernel defines it: 0x... hex, decimal or bit:N (the case binary's
    /// grammar). Default: the profile's; for --kernel-image, 0x10000000000 (bit 40); for
    /// --kernel-tree, the tree's own definition, else bit 40.
    #[arg(long, value_name = "BIT", value_parser = protocol::bit::parse_bit)]
    clone_wait_pid_flag: Option<u64>,
    /// Whether the feature must be there (a profile's [expect] feature). Default: the
    /// profile's; for --kernel-image, present when --clone-wait-pid-flag is given, else absent;
    /// for --kernel-tree, present when the tree defines CLONE_WAIT_PID or a bit is given.
    #[arg(long, value_enum, value_name = "present|absent")]
    expect_feature: Option<profile::Feature>,
}

impl MatrixArgs {
    /// The profiles made for --kernel-image and --kernel-tree (`image`, `tree`).
    pub fn extra_kernels(&self) -> Result<Vec<profile::Profile>, String> {
        let mut out = Vec::new();
        if let Some(image) = &self.kernel_image {
            out.push(
                profile::Profile::for_image(
                    image,
                    None,
                    self.clone_wait_pid_flag,
                    self.expect_feature,
                )
                .map_err(|e| e.0)?,
            );
        }
        if let Some(tree) = &self.kernel_tree {
            out.push(
                profile::Profile::for_tree(
                    tree,
                    false,
                    None,
                    self.clone_wait_pid_flag,
                    self.expect_feature,
                )
                .map_err(|e| e.0)?,
            );
        }
        Ok(out)
    }
}

impl KernelArgs {
    /// The profile these options name: a profile file's (with the overrides), or one made for
    /// the image or the tree. Usage errors (unknown profile, missing image, not a tree) are
    /// messages for exit 2.
    pub fn resolve(&self, set: &ProfileSet) -> Result<profile::Profile, String> {
        match (&self.kernel, &self.kernel_image, &self.kernel_tree) {
            (Some(name), None, None) => Ok(set
                .get(name)
                .map_err(|e| e.0)?
                .clone()
                .with_overrides(self.clone_wait_pid_flag, self.expect_feature)),
            (None, Some(image), None) => profile::Profile::for_image(
                image,
                self.modules.as_deref(),
                self.clone_wait_pid_flag,
                self.expect_feature,
            )
            .map_err(|e| e.0),
            (None, None, Some(tree)) => profile::Profile::for_tree(
                tree,
                self.keep_config,
                self.config.as_deref(),
                self.clone_wait_pid_flag,
                self.expect_feature,
            )
            .map_err(|e| e.0),
            _ => {
                Err("give one of --kernel PROFILE, --kernel-image PATH or --kernel-tree DIR".into())
            }
        }
    }
}

#[derive(Args, Clone)]
pub struct Common {
    /// The vm-images directory (profiles, patches, config fragments, recipes).
    #[arg(long)]
    pub vm_images: Option<PathBuf>,
    /// QEMU accelerator; auto probes KVM once per machine and remembers.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelChoice,
    /// Forget the remembered accelerator decision and probe again.
    #[arg(long)]
    pub reprobe_accel: bool,
    /// Parallel jobs for kernel builds.
    #[arg(long, default_value_t = 2)]
    pub jobs: u32,
    /// Run apt-get update before fetching packages.
    #[arg(long)]
    pub refresh_apt: bool,
}

/// The two watchdogs of every subcommand that boots a VM.
#[derive(Args, Clone, Copy, Default)]
pub struct Watchdogs {
    /// Whole-VM watchdog in seconds (default: the profile's vm.timeout_s for case runs; for
    /// `exec` 3600, or vm.timeout_s when longer; for `fuzz` boot watchdog + --time + 300).
    #[arg(long)]
    pub vm_timeout: Option<u64>,
    /// Seconds for a VM to reach the guest script (default 60 with KVM, 180 with TCG).
    #[arg(long)]
    pub boot_timeout: Option<u64>,
}

#[derive(Args, Clone)]
pub struct CaseArgs {
    /// Report directory.
    #[arg(long, value_parser = vm_dir)]
    pub out: PathBuf,
    /// Case name filter (substring), passed to the case binary.
    #[arg(long)]
    pub filter: Option<String>,
    /// Skip cases whose name contains PAT (repeatable), passed to the case binary.
    #[arg(long = "skip", value_name = "PAT")]
    pub skip: Vec<String>,
    /// strict: any fail/broken fails; snapshot: only differences from the reviewed snapshot fail.
    #[arg(long, value_enum, default_value = "strict")]
    pub gate: Gate,
    /// With --gate snapshot: write this run's matrix as the reviewed snapshot.
    #[arg(long)]
    pub accept: bool,
    /// Case binary to run (default: cargo build --release -p cases, target/release/wait-conformance).
    #[arg(long)]
    pub cases_bin: Option<PathBuf>,
    /// Do not run cargo build for the case binary.
    #[arg(long)]
    pub no_build: bool,
    #[command(flatten)]
    pub watchdogs: Watchdogs,
    /// VMs to use at most when a VM wedges or crashes and cases are left.
    #[arg(long, default_value_t = 4)]
    pub max_vms: usize,
    /// --test-threads for the case binary in the first VM (default: twice the VM's CPUs). VMs
    /// started after a wedge or crash always run one case at a time.
    #[arg(long)]
    pub test_threads: Option<u32>,
    /// Extra environment for the case binary, e.g. WAITCONF_SELFTEST_WRONG=1 (repeatable).
    #[arg(long = "case-env", value_parser = parse_kv)]
    pub case_env: Vec<(String, String)>,
    /// Do not echo the guest's output.
    #[arg(long)]
    pub quiet: bool,
    /// Test only: crash the guest kernel (sysrq c) halfway through the first VM. Also
    /// WAITCONF_RUNNER_SELFTEST_CRASH=1. Refused for the host profile.
    #[arg(long, hide = true)]
    pub selftest_crash: bool,
    /// Extra QEMU arguments for every VM, as vng's --qemu-opts takes them (repeatable), e.g.
    /// --qemu-opts='-d guest_errors'. A QEMU that refuses them is a launch failure (exit 3).
    #[arg(long = "qemu-opts", value_name = "OPTS", allow_hyphen_values = true)]
    pub qemu_opts: Vec<String>,
}

pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))?;
    // The guest script sets it as a shell assignment before the case binary.
    let name_ok = k
        .chars()
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && k.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
    if !name_ok {
        return Err(format!(
            "{k:?}: an environment variable name is letters, digits and _, not starting with a digit"
        ));
    }
    Ok((k.to_owned(), v.to_owned()))
}

impl CaseArgs {
    pub fn opts(&self, common: &Common) -> RunOpts {
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
            vm_timeout: self.watchdogs.vm_timeout,
            boot_timeout: self.watchdogs.boot_timeout,
            max_vms: self.max_vms,
            test_threads: self.test_threads,
            case_env: self.case_env.clone(),
            echo_guest: !self.quiet,
            selftest_crash: self.selftest_crash
                || std::env::var(SELFTEST_CRASH_ENV).is_ok_and(|v| v == "1"),
            shard: None,
            qemu_opts: self.qemu_opts.clone(),
        }
    }
}

impl CaseArgs {
    /// The case options of a subcommand that runs no case selection of its own (`exec`,
    /// `probe`): one VM, no filter, the strict gate, nothing echoed away.
    pub fn internal(out: PathBuf, watchdogs: Watchdogs) -> CaseArgs {
        CaseArgs {
            out,
            filter: None,
            skip: vec![],
            gate: Gate::Strict,
            accept: false,
            cases_bin: None,
            no_build: true,
            watchdogs,
            max_vms: 1,
            test_threads: None,
            case_env: vec![],
            quiet: false,
            selftest_crash: false,
            qemu_opts: vec![],
        }
    }
}

/// A directory the runner shares with a VM (`--out`): virtme-ng's `--rwdir` takes
/// `[GUEST=]HOST` and refuses a ':' anywhere ("invalid --rwdir parameter"), so such a path is a
/// usage error here, before any kernel is built or VM booted.
fn vm_dir(s: &str) -> Result<PathBuf, String> {
    if let Some(c) = s.chars().find(|c| matches!(c, ':' | '=')) {
        return Err(format!(
            "{s:?} holds a {c:?}: virtme-ng cannot share a directory whose path has ':' or '=' \
             with the VM; choose another path"
        ));
    }
    Ok(PathBuf::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_environment_entry_is_a_shell_name_then_a_value() {
        assert_eq!(parse_kv("A_1=x=y"), Ok(("A_1".into(), "x=y".into())));
        assert_eq!(parse_kv("_X="), Ok(("_X".into(), String::new())));
        for bad in ["A-B=1", "1A=1", "=1", "A B=1", "$(reboot)=1"] {
            let e = parse_kv(bad).unwrap_err();
            assert!(e.contains("environment variable name"), "{bad}: {e}");
        }
        assert!(parse_kv("NOEQUALS").unwrap_err().contains("KEY=VALUE"));
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
