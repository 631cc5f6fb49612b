//! `runner fuzz`: a cargo-fuzz campaign (`fuzz/campaign.sh`) inside a VM of a profile, or on the
//! host for the `host` profile.
//!
//! The fuzz binaries are built on the host (stable, `cargo fuzz build -s none`) and copied into
//! the report directory, like the case binary, so a rebuild during the run cannot change them;
//! the guest copies them into its RAM. The corpus lives in the cache between runs
//! (`<cache>/fuzz-corpus/<profile>/<target>/`, seeded from `fuzz/corpus/<target>/`): it is
//! copied into the report directory (the only place the guest may write), extended there, and
//! its new units are copied back afterwards. Artifacts land in `<out>/artifacts/`; for each one
//! the guest also runs `wcfuzz run` on the same kernel, whose readable listing and verdict go to
//! `<out>/readable/<artifact>.txt`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use serde::Serialize;

use crate::accel::AccelChoice;
use crate::console::Finding;
use crate::gate::{EXIT_FAILURES, EXIT_INFRA, EXIT_OK};
use crate::kernel;
use crate::paths::Paths;
use crate::profile::{Kind, Profile};
use crate::progress;
use crate::run::{self, RunError, RunOpts};
use crate::session::{self, GuestSession, Launcher};
use crate::template::{self, shell_quote};
use crate::vm::{self, Echo, VmEnd};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    #[value(name = "clone3_flags")]
    Clone3Flags,
    #[value(name = "wait_sequence")]
    WaitSequence,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Clone3Flags => "clone3_flags",
            Target::WaitSequence => "wait_sequence",
        }
    }
}

#[derive(Debug, Clone)]
pub struct FuzzOpts {
    pub target: Target,
    pub secs: u64,
    /// Run `cargo fuzz build -s none` (and build wcfuzz) first.
    pub build: bool,
    /// Host profile only: run with WAIT_FUZZ_RISKY=1 (namespaces, CLONE_VM children).
    pub allow_risky_host: bool,
    pub accel: AccelChoice,
    pub reprobe_accel: bool,
    pub jobs: u32,
    pub refresh_apt: bool,
    pub vm_timeout: Option<u64>,
    pub boot_timeout: Option<u64>,
    pub echo_guest: bool,
    /// libFuzzer processes in the VM: 1 runs one, N > 1 its fork mode (`-fork=N`).
    pub workers: u32,
    /// Start from a copy of this directory instead of the cache's corpus, and leave the cache
    /// alone afterwards: a VM of `runner fuzz --vms M` ([`crate::fleet`]), whose corpora are
    /// merged into the cache with `-merge=1` when all are done.
    pub corpus_from: Option<PathBuf>,
    /// On a KCOV profile (keep_vmlinux): record the kernel PCs without feeding them to
    /// libFuzzer (the comparison campaign).
    pub no_kernel_feedback: bool,
}

impl FuzzOpts {
    /// A campaign of `target` for `secs` with nothing else asked for: no build, no risky host
    /// run, the remembered accelerator, one worker, the cache's corpus, kernel feedback where
    /// the kernel has KCOV.
    pub fn new(target: Target, secs: u64) -> FuzzOpts {
        FuzzOpts {
            target,
            secs,
            build: false,
            allow_risky_host: false,
            accel: AccelChoice::Auto,
            reprobe_accel: false,
            jobs: 1,
            refresh_apt: false,
            vm_timeout: None,
            boot_timeout: None,
            echo_guest: false,
            workers: 1,
            corpus_from: None,
            no_kernel_feedback: false,
        }
    }
}

/// Readable forms made in the guest, at most this many per run (libFuzzer stops at the first
/// crash, so a run rarely has more than one artifact).
const READABLE_MAX: usize = 20;
/// Seconds for one `wcfuzz run` in the guest.
const READABLE_TIMEOUT: u64 = 120;
/// Seconds the watchdog grants beyond the campaign's own time (start-up, the initial corpus
/// pass, readable forms, power-off).
const VM_SLACK: u64 = 300;

#[derive(Debug, Clone, Serialize)]
pub struct CorpusRecord {
    pub cache_dir: String,
    pub units_before: usize,
    pub units_after: usize,
    pub new_units: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArtifactRecord {
    pub name: String,
    pub path: String,
    pub bytes: u64,
    /// `wcfuzz run` in the guest, on the kernel that found it (listing and verdict).
    pub readable_file: Option<String>,
    pub readable: String,
    pub print_command: String,
    pub regress_command: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VmSummary {
    pub outcome: String,
    pub boot_seconds: Option<f64>,
    pub wall_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FuzzReport {
    pub profile: String,
    pub kernel_release: String,
    pub kernel_source: String,
    pub accelerator: String,
    pub clone_wait_pid_flag: String,
    pub target: String,
    pub secs: u64,
    pub wait_fuzz_risky: bool,
    /// campaign.sh's final line, verbatim, and its fields.
    pub campaign_line: Option<String>,
    pub campaign: BTreeMap<String, serde_json::Value>,
    /// campaign.sh's exit status: 0 clean, 1 findings, 2 usage/missing binary, 3 leftovers.
    pub campaign_exit: Option<i32>,
    /// libFuzzer's `stat::` lines (-print_final_stats=1), keys without the prefix.
    pub libfuzzer: BTreeMap<String, serde_json::Value>,
    /// libFuzzer's last `#N ...` status line.
    pub last_status_line: Option<String>,
    /// The finding as the target printed it (the panic message), when there is one.
    pub finding_text: Option<String>,
    pub corpus: Option<CorpusRecord>,
    pub artifacts: Vec<ArtifactRecord>,
    pub console_findings: Vec<Finding>,
    pub tainted_before: Option<u64>,
    pub tainted_after: Option<u64>,
    pub vm: Option<VmSummary>,
    /// On a KCOV profile: the kernel lines the campaign reached (crate::coverage).
    pub kernel_coverage: Option<crate::coverage::KernelLines>,
    pub infrastructure_errors: Vec<String>,
    pub problems: Vec<String>,
    pub verdict: String,
    pub exit_code: i32,
}

/// `CAMPAIGN target=x secs=60 rc=0 ...` -> fields (numbers as numbers). The last such line wins.
pub fn parse_campaign(log: &str) -> Option<(String, BTreeMap<String, serde_json::Value>)> {
    let line = log
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with("CAMPAIGN "))?;
    let fields = line
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), json_value(v)))
        .collect();
    Some((line.to_owned(), fields))
}

fn json_value(v: &str) -> serde_json::Value {
    if let Ok(n) = v.parse::<i64>() {
        return n.into();
    }
    match v.parse::<f64>() {
        Ok(f) if f.is_finite() => f.into(),
        _ => v.into(),
    }
}

/// libFuzzer's `stat::name: value` lines and its last `#N ...` status line.
pub fn parse_libfuzzer(log: &str) -> (BTreeMap<String, serde_json::Value>, Option<String>) {
    let mut stats = BTreeMap::new();
    let mut last = None;
    for l in log.lines().map(str::trim) {
        if let Some(rest) = l.strip_prefix("stat::") {
            if let Some((k, v)) = rest.split_once(':') {
                stats.insert(k.trim().to_owned(), json_value(v.trim()));
            }
        } else if l.starts_with('#') && l[1..].chars().next().is_some_and(|c| c.is_ascii_digit()) {
            last = Some(l.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    (stats, last)
}

/// The target's panic message: from `wait-conformance finding` to the `(turn the artifact into a
/// case ...)` line, at most 60 lines.
pub fn parse_finding(log: &str) -> Option<String> {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains("wait-conformance finding"))?;
    let mut out = Vec::new();
    for l in lines[start..].iter().take(60) {
        // A harness finding has no closing hint: stop at what libFuzzer or Rust print next.
        if l.starts_with("note: run with `RUST_BACKTRACE")
            || l.starts_with("==")
            || l.contains("ERROR: libFuzzer")
        {
            break;
        }
        out.push(*l);
        if l.contains("(turn the artifact into a case") {
            break;
        }
    }
    Some(out.join("\n"))
}

/// WAIT_FUZZ_RISKY for the campaign: always 1 in a VM (campaign.sh's own default there); on the
/// host only with `--allow-risky-host`.
pub fn wait_fuzz_risky(host: bool, allow_risky_host: bool) -> bool {
    !host || allow_risky_host
}

pub struct FuzzScript<'a> {
    /// The guest's working directory (under the report directory, writable in the guest).
    pub guest: &'a Path,
    pub campaign: &'a Path,
    /// Where the staged binaries are (`<out>/bin`).
    pub bin_dir: &'a Path,
    pub target: &'a str,
    pub secs: u64,
    pub flag: &'a str,
    pub risky: bool,
    /// Whether a staged wcfuzz is there (readable forms of the artifacts).
    pub wcfuzz: bool,
    /// Copy the binaries into guest RAM first (VMs; not on the host).
    pub copy_to_ram: bool,
    /// campaign.sh's FUZZ_FORK: libFuzzer's fork mode with this many workers when above 1.
    pub workers: u32,
    /// A KCOV kernel: record kernel PCs, fed to libFuzzer when true.
    pub kcov: Option<bool>,
}

/// The script the guest runs (runner/templates/fuzz.sh): taint before, campaign.sh, readable
/// forms, taint after.
pub fn fuzz_script(s: &FuzzScript) -> String {
    let mut files = format!("\"$B/{}\"", s.target);
    if s.wcfuzz {
        files += " \"$B/wcfuzz\"";
    }
    // Where the seed is silent, the tree model's semantics: passed through from the runner's
    // environment.
    let semantics = std::env::var(protocol::env::WAIT_FUZZ_SEMANTICS).ok();
    template::FUZZ.render(
        &[
            ("GUEST_DIR", shell_quote(&s.guest.display().to_string())),
            ("BIN_DIR", shell_quote(&s.bin_dir.display().to_string())),
            ("COPY_FILES", files),
            ("FLAG_ENV", protocol::env::CLONE_WAIT_PID_FLAG.into()),
            ("FLAG", shell_quote(s.flag)),
            ("RISKY_ENV", protocol::env::WAIT_FUZZ_RISKY.into()),
            ("RISKY", u8::from(s.risky).to_string()),
            ("BIN_DIR_ENV", protocol::env::FUZZ_BIN_DIR.into()),
            ("SEMANTICS_ENV", protocol::env::WAIT_FUZZ_SEMANTICS.into()),
            ("SEMANTICS", shell_quote(semantics.as_deref().unwrap_or(""))),
            ("CAMPAIGN", shell_quote(&s.campaign.display().to_string())),
            ("TARGET", s.target.into()),
            ("SECS", s.secs.to_string()),
            ("WORKERS", s.workers.max(1).to_string()),
            ("READABLE_MAX", READABLE_MAX.to_string()),
            ("READABLE_TIMEOUT", READABLE_TIMEOUT.to_string()),
            ("KCOV_ENV", protocol::env::WAITCONF_KCOV_FUZZ.into()),
            ("FEEDBACK_ENV", protocol::env::WAITCONF_KCOV_FEEDBACK.into()),
            ("FEEDBACK", u8::from(s.kcov == Some(true)).to_string()),
        ],
        &[
            ("KCOV", s.kcov.is_some()),
            ("COPY_TO_RAM", s.copy_to_ram),
            ("SEMANTICS", semantics.is_some()),
            ("READABLE", s.wcfuzz),
        ],
    )
}

/// Files (not directories) in `dir`, by name.
fn files_in(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Copies every file of `from` that `to` does not have (libFuzzer names units by their SHA-1,
/// so equal names are equal contents). Returns how many were copied.
pub fn copy_new_files(from: &Path, to: &Path) -> Result<usize> {
    std::fs::create_dir_all(to)?;
    let mut n = 0;
    for (name, path) in files_in(from) {
        let dest = to.join(&name);
        if dest.exists() {
            continue;
        }
        let tmp = to.join(format!(".{name}.partial"));
        std::fs::copy(&path, &tmp).with_context(|| format!("copying {}", path.display()))?;
        std::fs::rename(&tmp, &dest)?;
        n += 1;
    }
    Ok(n)
}

/// The cache directory of a profile's corpus for a target; created and seeded from the
/// checked-in corpus on first use.
pub fn corpus_cache(paths: &Paths, profile: &str, target: &str) -> Result<PathBuf> {
    let dir = paths.cache.join("fuzz-corpus").join(profile).join(target);
    if !dir.is_dir() {
        let seeds = paths.workspace.join("fuzz/corpus").join(target);
        let partial = dir.with_extension("partial");
        let _ = std::fs::remove_dir_all(&partial);
        let n = copy_new_files(&seeds, &partial)?;
        std::fs::rename(&partial, &dir)?;
        progress!(
            "new corpus {} seeded with {n} unit(s) from {}",
            dir.display(),
            seeds.display()
        );
    }
    Ok(dir)
}

/// `cargo fuzz build -s none` in fuzz/ (installing cargo-fuzz if missing), then wcfuzz.
/// wcfuzz only makes the readable forms, so its build failing is a note, not an error.
pub(crate) fn build_fuzz(paths: &Paths) -> Result<Option<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let fuzz_dir = paths.workspace.join("fuzz");
    let have = Command::new(&cargo)
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        progress!("installing cargo-fuzz (cargo install cargo-fuzz --locked)");
        kernel::run_checked(Command::new(&cargo).args(["install", "cargo-fuzz", "--locked"]))?;
    }
    progress!("building the fuzz targets (cd fuzz && cargo fuzz build -s none)");
    kernel::run_checked(
        Command::new(&cargo)
            .args(["fuzz", "build", "-s", "none"])
            .current_dir(&fuzz_dir),
    )?;
    progress!("building wcfuzz (cargo build --release -p wcfuzz in fuzz/)");
    Ok(kernel::run_checked(
        Command::new(&cargo)
            .args(["build", "--release", "-p", "wcfuzz"])
            .current_dir(&fuzz_dir),
    )
    .err()
    .map(|e| format!("wcfuzz did not build, no readable forms: {e:#}")))
}

/// The commands that show an artifact readably and turn it into a regression case.
pub fn artifact_commands(
    flag: &str,
    target: &str,
    artifact: &Path,
    profile: &str,
) -> (String, String) {
    use protocol::env::{CLONE_WAIT_PID_FLAG as FLAG_ENV, WAIT_FUZZ_RISKY as RISKY_ENV};
    let t = "cargo run --release --manifest-path fuzz/Cargo.toml -p wcfuzz --";
    let a = shell_quote(&artifact.display().to_string());
    (
        // print only decodes: WAIT_FUZZ_RISKY=1 keeps the flag word as the VM ran it (without
        // it the host would mask namespace/CLONE_VM bits while printing).
        format!("{FLAG_ENV}={flag} {RISKY_ENV}=1 {t} print {target} {a}"),
        // regress shrinks by executing on the running kernel: on a kernel with the feature.
        format!(
            "{FLAG_ENV}={flag} {RISKY_ENV}=1 {t} regress {target} {a}   # on a {profile} kernel: it shrinks by re-running the input"
        ),
    )
}

/// What the VM (or host) part produced.
struct Ran {
    run: vm::VmRun,
    harvest: session::Harvest,
    kernel_source: String,
    accelerator: String,
}

pub struct Inputs {
    /// The fuzz target binary and (optional) wcfuzz to stage.
    pub fuzz_bin: PathBuf,
    pub wcfuzz: Option<PathBuf>,
    pub campaign: PathBuf,
}

impl Inputs {
    pub fn from_workspace(paths: &Paths, target: Target) -> Inputs {
        let fuzz = paths.workspace.join("fuzz");
        let wcfuzz = fuzz.join("target/release/wcfuzz");
        Inputs {
            fuzz_bin: fuzz
                .join("target/x86_64-unknown-linux-gnu/release")
                .join(target.as_str()),
            wcfuzz: wcfuzz.is_file().then_some(wcfuzz),
            campaign: fuzz.join("campaign.sh"),
        }
    }
}

/// Runs one campaign and writes `<out>/fuzz.json`. Infrastructure failures are part of the
/// report (exit 3); only configuration errors return Err.
pub fn run_fuzz(
    profile: &Profile,
    paths: &Paths,
    out: &Path,
    opts: &FuzzOpts,
    inputs: Option<Inputs>,
) -> Result<FuzzReport, RunError> {
    if opts.secs == 0 {
        return Err(RunError::Usage("--time must be at least 1 second".into()));
    }
    let out = fresh_out(out)?;
    let target = opts.target.as_str();
    let host = profile.kind == Kind::Host;
    let risky = wait_fuzz_risky(host, opts.allow_risky_host);
    if opts.allow_risky_host && !host {
        progress!("--allow-risky-host has no effect on a VM profile (VMs always run risky inputs)");
    }
    progress!(
        "fuzz {target} on {} for {} s (WAIT_FUZZ_RISKY={})",
        profile.name,
        opts.secs,
        u8::from(risky)
    );
    let started = Instant::now();
    let mut rep = empty_report(profile, opts, risky);
    let guest = out.join("guest");
    let mut corpus = Corpus::default();
    match campaign(profile, paths, &out, opts, inputs, &mut rep, &mut corpus) {
        Ok(ran) => absorb(&mut rep, &out, ran),
        Err(e) => {
            progress!("infrastructure failure: {e:#}");
            rep.infrastructure_errors.push(format!("{e:#}"));
        }
    }
    if profile.source.as_ref().is_some_and(|s| s.keep_vmlinux) {
        match crate::coverage::fuzz_lines(profile, paths, &out, &guest.join("kcov")) {
            Ok(k) => rep.kernel_coverage = Some(k),
            Err(e) => rep.problems.push(format!("kernel coverage: {e:#}")),
        }
    }
    corpus.copy_back(&mut rep, &guest.join("corpus"));
    let keep = paths
        .cache
        .join("fuzz-artifacts")
        .join(&profile.name)
        .join(target);
    collect_artifacts(&mut rep, &out, &guest, &keep);
    decide(&mut rep);
    write_report(&mut rep, &out);
    progress!(
        "fuzz {target} on {}: {} (exit {}) in {:.1} s; report in {}",
        profile.name,
        rep.verdict,
        rep.exit_code,
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(rep)
}

/// The report directory, made and resolved, without the previous run's logs, report and
/// working directory; its artifacts (<out>/artifacts/, named by their SHA-1) and readable
/// forms stay: findings are never deleted by a rerun.
fn fresh_out(out: &Path) -> Result<PathBuf, RunError> {
    std::fs::create_dir_all(out)
        .map_err(|e| RunError::Usage(format!("cannot create {}: {e}", out.display())))?;
    let out = std::fs::canonicalize(out).map_err(|e| RunError::Usage(e.to_string()))?;
    for f in ["console.log", "guest-output.log", "fuzz.json"] {
        let _ = std::fs::remove_file(out.join(f));
    }
    let _ = std::fs::remove_dir_all(out.join("guest"));
    Ok(out)
}

fn empty_report(profile: &Profile, opts: &FuzzOpts, risky: bool) -> FuzzReport {
    FuzzReport {
        profile: profile.name.clone(),
        kernel_release: String::new(),
        kernel_source: String::new(),
        accelerator: if profile.kind == Kind::Host {
            "none (host)".into()
        } else {
            String::new()
        },
        clone_wait_pid_flag: profile.clone_wait_pid_flag.clone(),
        target: opts.target.as_str().into(),
        secs: opts.secs,
        wait_fuzz_risky: risky,
        campaign_line: None,
        campaign: BTreeMap::new(),
        campaign_exit: None,
        libfuzzer: BTreeMap::new(),
        last_status_line: None,
        finding_text: None,
        corpus: None,
        artifacts: vec![],
        console_findings: vec![],
        tainted_before: None,
        tainted_after: None,
        vm: None,
        kernel_coverage: None,
        infrastructure_errors: vec![],
        problems: vec![],
        verdict: String::new(),
        exit_code: 0,
    }
}

fn write_report(rep: &mut FuzzReport, out: &Path) {
    if let Err(e) = std::fs::write(
        out.join("fuzz.json"),
        serde_json::to_string_pretty(&rep).unwrap_or_default() + "\n",
    ) {
        progress!("cannot write fuzz.json: {e}");
        rep.exit_code = EXIT_INFRA;
    }
    for p in rep.infrastructure_errors.iter().chain(&rep.problems) {
        progress!("! {p}");
    }
    for f in &rep.console_findings {
        progress!("! console {}: {}", f.kind, f.line);
    }
}

/// The profile's corpus in the cache, locked for the whole run: two campaigns on one
/// profile's corpus would each copy back the other's half.
#[derive(Default)]
struct Corpus {
    dir: Option<PathBuf>,
    _lock: Option<kernel::FileLock>,
}

impl Corpus {
    /// Locks the cache's corpus and copies it into the guest's.
    fn take(
        &mut self,
        paths: &Paths,
        profile: &str,
        target: &str,
        guest: &Path,
    ) -> Result<CorpusRecord> {
        let cache_root = paths.cache.join("fuzz-corpus").join(profile);
        std::fs::create_dir_all(&cache_root)?;
        self._lock = Some(kernel::lock_file(
            &cache_root.join(format!("{target}.lock")),
        )?);
        let cache = corpus_cache(paths, profile, target)?;
        self.dir = Some(cache.clone());
        let before = copy_new_files(&cache, guest)?;
        Ok(CorpusRecord {
            cache_dir: cache.display().to_string(),
            units_before: before,
            units_after: before,
            new_units: 0,
        })
    }

    /// A working corpus copied from `from`; nothing is locked and nothing goes back.
    fn copy_of(from: &Path, guest: &Path) -> Result<CorpusRecord> {
        let before = copy_new_files(from, guest)?;
        Ok(CorpusRecord {
            cache_dir: from.display().to_string(),
            units_before: before,
            units_after: before,
            new_units: 0,
        })
    }

    /// The corpus goes back to the cache whatever happened: new units are valid inputs.
    fn copy_back(&self, rep: &mut FuzzReport, guest: &Path) {
        let (Some(cache), Some(c)) = (&self.dir, rep.corpus.as_mut()) else {
            return;
        };
        match copy_new_files(guest, cache) {
            Ok(n) => {
                c.new_units = n;
                c.units_after = files_in(cache).len();
            }
            Err(e) => rep.infrastructure_errors.push(format!(
                "copying the corpus back to {}: {e:#}",
                cache.display()
            )),
        }
    }
}

/// The [`RunOpts`] that [`run::prepare`] needs for the campaign's kernel.
pub(crate) fn prepare_opts(opts: &FuzzOpts) -> RunOpts {
    RunOpts {
        filter: None,
        skip: vec![],
        gate: crate::gate::Gate::Strict,
        accept: false,
        accel: opts.accel,
        reprobe_accel: opts.reprobe_accel,
        cases_bin: None,
        build_cases: false,
        jobs: opts.jobs,
        refresh_apt: opts.refresh_apt,
        vm_timeout: opts.vm_timeout,
        boot_timeout: opts.boot_timeout,
        max_vms: 1,
        test_threads: None,
        case_env: vec![],
        echo_guest: opts.echo_guest,
        selftest_crash: false,
        shard: None,
        qemu_opts: vec![],
    }
}

/// Builds and stages the binaries, takes the corpus, boots the kernel (or uses the host) and
/// runs the campaign script.
fn campaign(
    profile: &Profile,
    paths: &Paths,
    out: &Path,
    opts: &FuzzOpts,
    inputs: Option<Inputs>,
    rep: &mut FuzzReport,
    corpus: &mut Corpus,
) -> Result<Ran> {
    let guest = out.join("guest");
    std::fs::create_dir_all(&guest)?;
    if opts.build {
        if let Some(note) = build_fuzz(paths)? {
            rep.problems.push(note);
        }
    }
    let inputs = inputs.unwrap_or_else(|| Inputs::from_workspace(paths, opts.target));
    let campaign_sh = inputs.campaign.clone();
    let (bin_dir, wcfuzz) = stage(inputs, out)?;
    rep.corpus = Some(match &opts.corpus_from {
        Some(from) => Corpus::copy_of(from, &guest.join("corpus"))?,
        None => corpus.take(
            paths,
            &profile.name,
            opts.target.as_str(),
            &guest.join("corpus"),
        )?,
    });
    let host = profile.kind == Kind::Host;
    let prepared = if host {
        None
    } else {
        Some(run::prepare(profile, paths, &prepare_opts(opts))?)
    };
    let launcher = prepared
        .as_ref()
        .map_or(Launcher::Host, run::Prepared::launcher);
    let script = fuzz_script(&FuzzScript {
        guest: &guest,
        campaign: &campaign_sh,
        bin_dir: &bin_dir,
        target: opts.target.as_str(),
        secs: opts.secs,
        flag: &profile.clone_wait_pid_flag,
        risky: rep.wait_fuzz_risky,
        wcfuzz,
        copy_to_ram: !host,
        workers: opts.workers,
        kcov: profile
            .source
            .as_ref()
            .is_some_and(|s| s.keep_vmlinux)
            .then_some(!opts.no_kernel_feedback),
    });
    let boot = launcher.boot_secs(opts.boot_timeout);
    let total = opts.vm_timeout.unwrap_or(boot + opts.secs + VM_SLACK);
    let echo = if opts.echo_guest {
        Echo::Progress
    } else {
        Echo::Off
    };
    // The staged binaries' directory is mounted too: see run::visible.
    let session = GuestSession::new(launcher, out, vec![guest.clone(), bin_dir.clone()], echo);
    say_launch(launcher, opts.secs, total);
    let run = session.run_script(
        &guest.join("run.sh"),
        &script,
        &session::watchdogs(boot, total),
    )?;
    let mut harvest = session.harvest(&guest, &run, 0, "campaign.status");
    if host {
        // The host has no console of its own: the "console" is the script's stderr, which
        // joins stdout, so there is nothing to scan there (dmesg is not ours to read on a
        // shared host).
        harvest.findings.clear();
        harvest.panicked = false;
    }
    Ok(Ran {
        run,
        harvest,
        kernel_source: prepared
            .as_ref()
            .map(|p| p.artifact.source.clone())
            .unwrap_or_else(|| "running host kernel".into()),
        accelerator: prepared
            .and_then(|p| p.accel)
            .map(|d| d.accel.as_str().to_owned())
            .unwrap_or_else(|| rep.accelerator.clone()),
    })
}

/// Says where the campaign of `secs` runs, with the whole-VM watchdog `total`.
fn say_launch(launcher: Launcher, secs: u64, total: u64) {
    match launcher {
        Launcher::Vng(cfg) => progress!(
            "booting the VM ({}, campaign {secs} s, watchdog {total} s)",
            cfg.accel.as_str()
        ),
        Launcher::Host => progress!("running the campaign on the host kernel (no VM)"),
    }
}

/// Copies the fuzz binary (and wcfuzz, when there is one) into `<out>/bin`; returns that
/// directory and whether wcfuzz is there.
fn stage(inputs: Inputs, out: &Path) -> Result<(PathBuf, bool)> {
    if !inputs.fuzz_bin.is_file() {
        bail!(
            "{} does not exist (cd fuzz && cargo fuzz build -s none; or drop --no-build)",
            inputs.fuzz_bin.display()
        );
    }
    let bin = run::stage_binary(&inputs.fuzz_bin, out)?;
    let bin_dir = bin.parent().expect("staged in <out>/bin").to_owned();
    let wcfuzz = match &inputs.wcfuzz {
        Some(w) => Some(run::stage_binary(w, out)?),
        None => {
            let _ = std::fs::remove_file(bin_dir.join("wcfuzz"));
            None
        }
    };
    Ok((bin_dir, wcfuzz.is_some()))
}

/// The infrastructure errors a campaign VM's end means.
pub fn end_errors(
    end: VmEnd,
    panicked: bool,
    wall_seconds: f64,
    vng_status: Option<i32>,
) -> Vec<String> {
    let mut e = Vec::new();
    if panicked {
        e.push("kernel panic during the campaign (see console.log)".into());
    }
    match end {
        VmEnd::Completed => {}
        VmEnd::BootTimeout => {
            e.push("the VM did not reach the guest script within the boot watchdog".into())
        }
        VmEnd::Watchdog => e.push(format!(
            "the VM watchdog fired after {wall_seconds:.0} s: the campaign did not end (VM wedged?)"
        )),
        VmEnd::Exited if !panicked => e.push(format!(
            "the VM exited before the guest script finished (vng status {vng_status:?})"
        )),
        VmEnd::Exited => {}
    }
    e
}

fn absorb(rep: &mut FuzzReport, out: &Path, ran: Ran) {
    let (run, h) = (ran.run, ran.harvest);
    rep.kernel_source = ran.kernel_source;
    if !ran.accelerator.is_empty() {
        rep.accelerator = ran.accelerator;
    }
    rep.kernel_release = h.kernel_release.clone().unwrap_or_default();
    let log = std::fs::read_to_string(out.join("guest-output.log")).unwrap_or_default();
    if let Some((line, fields)) = parse_campaign(&log) {
        rep.campaign_line = Some(line);
        rep.campaign = fields;
    }
    let (stats, last) = parse_libfuzzer(&log);
    rep.libfuzzer = stats;
    rep.last_status_line = last;
    rep.finding_text = parse_finding(&log);
    rep.campaign_exit = h.exit_status;
    rep.tainted_before = h.tainted_before;
    rep.tainted_after = h.tainted_after;
    if let Some(change) = h.taint_change() {
        rep.problems.push(change);
    }
    rep.console_findings = h.findings;
    rep.vm = Some(VmSummary {
        outcome: run.end.outcome(h.panicked),
        boot_seconds: run.boot_seconds,
        wall_seconds: run.wall_seconds,
    });
    rep.infrastructure_errors.extend(end_errors(
        run.end,
        h.panicked,
        run.wall_seconds,
        run.vng_status,
    ));
    if run.end == VmEnd::Completed && rep.campaign_line.is_none() {
        rep.infrastructure_errors
            .push("campaign.sh printed no CAMPAIGN line (see guest-output.log)".into());
    }
    if rep.campaign_exit == Some(2) {
        rep.infrastructure_errors
            .push("campaign.sh: usage error or missing binary (exit 2)".into());
    }
}

/// Copies this run's artifacts to `<out>/artifacts/` and to `keep` (the cache's collection of
/// every finding of this profile and target), with their readable forms.
fn collect_artifacts(rep: &mut FuzzReport, out: &Path, guest: &Path, keep: &Path) {
    let found = files_in(&guest.join("artifacts"));
    if found.is_empty() {
        return;
    }
    match copy_new_files(&guest.join("artifacts"), keep) {
        Ok(_) => progress!("artifacts also kept in {}", keep.display()),
        Err(e) => rep.problems.push(format!(
            "keeping the artifacts in {}: {e:#}",
            keep.display()
        )),
    }
    let dest = out.join("artifacts");
    let _ = std::fs::create_dir_all(&dest);
    for (name, path) in found {
        let to = dest.join(&name);
        if let Err(e) = std::fs::copy(&path, &to) {
            rep.infrastructure_errors
                .push(format!("copying artifact {}: {e}", path.display()));
            continue;
        }
        let readable_src = guest.join("readable").join(format!("{name}.txt"));
        let (readable_file, readable) = match std::fs::read_to_string(&readable_src) {
            Ok(text) => {
                let rd = out.join("readable");
                let _ = std::fs::create_dir_all(&rd);
                let f = rd.join(format!("{name}.txt"));
                let _ = std::fs::write(&f, &text);
                let mut t: String = text.chars().take(8000).collect();
                if t.len() < text.len() {
                    t += "\n[...]";
                }
                (Some(f.display().to_string()), t)
            }
            Err(_) => (None, String::new()),
        };
        let (print_command, regress_command) =
            artifact_commands(&rep.clone_wait_pid_flag, &rep.target, &to, &rep.profile);
        rep.artifacts.push(ArtifactRecord {
            name,
            bytes: to.metadata().map(|m| m.len()).unwrap_or(0),
            path: to.display().to_string(),
            readable_file,
            readable,
            print_command,
            regress_command,
        });
    }
}

/// Verdict and exit code: 3 infrastructure; 1 artifacts, a libFuzzer failure, leftover
/// processes, console findings or a taint change; 0 clean.
pub fn decide(rep: &mut FuzzReport) {
    let field = |k: &str| rep.campaign.get(k).and_then(|v| v.as_i64()).unwrap_or(0);
    let (verdict, code) = if !rep.infrastructure_errors.is_empty() {
        ("infrastructure-failure", EXIT_INFRA)
    } else if !rep.artifacts.is_empty()
        || field("artifacts") > 0
        || field("rc") != 0
        || rep.campaign_exit.is_some_and(|c| c != 0)
        || field("leftovers") > 0
        || !rep.console_findings.is_empty()
        || rep.problems.iter().any(|p| p.contains("tainted went from"))
    {
        ("findings", EXIT_FAILURES)
    } else {
        ("clean", EXIT_OK)
    };
    rep.verdict = verdict.into();
    rep.exit_code = code;
}

impl FuzzReport {
    /// The stdout summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "fuzz {} on {} ({}, {}, flag {}, WAIT_FUZZ_RISKY={}), {} s:\n",
            self.target,
            self.profile,
            if self.kernel_release.is_empty() {
                "kernel ?"
            } else {
                &self.kernel_release
            },
            self.accelerator,
            self.clone_wait_pid_flag,
            u8::from(self.wait_fuzz_risky),
            self.secs
        );
        match &self.campaign_line {
            Some(l) => {
                let _ = writeln!(s, "  {l}");
            }
            None => s += "  (no CAMPAIGN line)\n",
        }
        let st = |k: &str| {
            self.libfuzzer
                .get(k)
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into())
        };
        let _ = writeln!(
            s,
            "  libFuzzer: {} execs, {} exec/s, {} new units, peak rss {} MB, slowest unit {} s",
            st("number_of_executed_units"),
            st("average_exec_per_sec"),
            st("new_units_added"),
            st("peak_rss_mb"),
            st("slowest_unit_time_sec")
        );
        if let Some(l) = &self.last_status_line {
            let _ = writeln!(s, "  last status: {l}");
        }
        if let Some(c) = &self.corpus {
            let _ = writeln!(
                s,
                "  corpus: {} unit(s) in, {} new, {} in {}",
                c.units_before, c.new_units, c.units_after, c.cache_dir
            );
        }
        if let (Some(b), Some(a)) = (self.tainted_before, self.tainted_after) {
            let _ = writeln!(s, "  tainted: {b} -> {a}");
        }
        if let Some(k) = &self.kernel_coverage {
            let _ = writeln!(
                s,
                "  kernel coverage ({}): {} lines reached, {} unique PCs, {} inputs; {}",
                if k.feedback {
                    "fed to libFuzzer"
                } else {
                    "recorded only"
                },
                k.lines_reached,
                k.unique_pcs,
                k.inputs,
                k.report_dir.display()
            );
        }
        for f in &self.console_findings {
            let _ = writeln!(s, "  console {}: {}", f.kind, f.line);
        }
        for p in self.infrastructure_errors.iter().chain(&self.problems) {
            let _ = writeln!(s, "  ! {p}");
        }
        if let Some(f) = &self.finding_text {
            let _ = writeln!(s, "  finding (as the target printed it):");
            for l in f.lines().take(30) {
                let _ = writeln!(s, "    | {l}");
            }
        }
        for a in &self.artifacts {
            let _ = writeln!(s, "  artifact {} ({} bytes)", a.path, a.bytes);
            if let Some(f) = &a.readable_file {
                let _ = writeln!(s, "    readable (wcfuzz run in the guest): {f}");
            }
            let _ = writeln!(s, "    show:    {}", a.print_command);
            let _ = writeln!(s, "    as case: {}", a.regress_command);
        }
        let _ = writeln!(s, "verdict: {} (exit {})", self.verdict, self.exit_code);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::host_profile;
    use crate::vm::{END_MARKER, START_MARKER};

    const LOG: &str = "\
INFO: Running with entropic power schedule (0xFF, 100).
#2\tINITED cov: 812 ft: 1200 corp: 27/1100b exec/s: 0 rss: 40Mb
#1024\tpulse  cov: 900 ft: 1500 corp: 30/1200b lim: 4096 exec/s: 170 rss: 52Mb
#4096\tDONE   cov: 950 ft: 1700 corp: 41/1800b lim: 4096 exec/s: 68 rss: 60Mb
Done 4096 runs in 61 second(s)
stat::number_of_executed_units: 4096
stat::average_exec_per_sec:     68
stat::new_units_added:          14
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              60
CAMPAIGN target=clone3_flags secs=60 rc=0 execs=4096 exec_per_sec=68 cov=950 ft=1700 corpus=41 artifacts=0 leftovers=0
";

    #[test]
    fn parses_campaign_line_and_stats() {
        let (line, f) = parse_campaign(LOG).unwrap();
        assert!(line.starts_with("CAMPAIGN target=clone3_flags"));
        assert_eq!(f["target"], "clone3_flags");
        assert_eq!(f["execs"], 4096);
        assert_eq!(f["leftovers"], 0);
        let (stats, last) = parse_libfuzzer(LOG);
        assert_eq!(stats["number_of_executed_units"], 4096);
        assert_eq!(stats["new_units_added"], 14);
        assert_eq!(
            last.as_deref(),
            Some("#4096 DONE cov: 950 ft: 1700 corp: 41/1800b lim: 4096 exec/s: 68 rss: 60Mb")
        );
        assert!(parse_campaign("no line\n").is_none());
        assert!(parse_finding(LOG).is_none());
    }

    #[test]
    fn finding_text_is_the_panic_message() {
        let log = "#5 NEW cov: 1\nthread '<unnamed>' panicked at fuzz/src/lib.rs:286:9:\n\
wait-conformance finding (clone3_flags) on kernel Some((6, 12)), CLONE_WAIT_PID Some(1099511627776):\n\
clone3(flags = CLONE_PIDFD|bit40)\nwant ECHILD, got pid 5\n\
(turn the artifact into a case: wcfuzz regress clone3_flags <artifact>)\n==12== ERROR: libFuzzer: deadly signal\n";
        let f = parse_finding(log).unwrap();
        assert!(f.starts_with("wait-conformance finding (clone3_flags)"));
        assert!(f.ends_with("<artifact>)"));
        assert!(!f.contains("deadly signal"));
        let harness = "wait-conformance finding (harness):\nclone3(flags = 0, exit_signal = 32)\n\nworker died: Killed(32)\n\
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n==70== ERROR: libFuzzer: deadly signal\nMS: 1 InsertByte-\n";
        let f = parse_finding(harness).unwrap();
        assert!(f.ends_with("worker died: Killed(32)"), "{f}");
    }

    #[test]
    fn script_runs_the_campaign_with_the_flag_and_risk() {
        let s = fuzz_script(&FuzzScript {
            guest: Path::new("/out/guest"),
            campaign: Path::new("/repo/fuzz/campaign.sh"),
            bin_dir: Path::new("/out/bin"),
            target: "wait_sequence",
            secs: 60,
            flag: "0x10000000000",
            risky: false,
            wcfuzz: true,
            copy_to_ram: true,
            workers: 1,
            kcov: None,
        });
        assert!(s.contains(
            "export CLONE_WAIT_PID_FLAG='0x10000000000' WAIT_FUZZ_RISKY=0 FUZZ_BIN_DIR=\"$B\""
        ));
        assert!(s.contains(
            "bash '/repo/fuzz/campaign.sh' wait_sequence 60 \"$G/corpus\" \"$G/artifacts\""
        ));
        assert!(s.contains("cp \"$B/wait_sequence\" \"$B/wcfuzz\" /run/waitconf-fuzz/"));
        assert!(s.contains("\"$B/wcfuzz\" run wait_sequence \"$a\""));
        assert!(s.find(START_MARKER) < s.find("campaign.sh"));
        assert!(s.find("tainted.before") < s.find("campaign.sh"));
        assert!(s.find("campaign.sh") < s.find("tainted.after"));
        assert!(s.trim_end().ends_with(END_MARKER));
        let host = FuzzScript {
            guest: Path::new("/g"),
            campaign: Path::new("/c.sh"),
            bin_dir: Path::new("/b"),
            target: "clone3_flags",
            secs: 5,
            flag: "0x10000000000",
            risky: true,
            wcfuzz: false,
            copy_to_ram: false,
            workers: 3,
            kcov: None,
        };
        let h = fuzz_script(&host);
        assert!(h.contains("WAIT_FUZZ_RISKY=1"));
        assert!(!h.contains("/run/waitconf-fuzz") && !h.contains("wcfuzz"));
        assert!(h.contains("FUZZ_FORK=3"), "{h}");
        assert!(!s.contains("kcov") && !h.contains("kcov"));
        for (feedback, word) in [(true, "1"), (false, "0")] {
            let k = fuzz_script(&FuzzScript {
                workers: 1,
                kcov: Some(feedback),
                ..host
            });
            let line =
                format!("export WAITCONF_KCOV_FUZZ=\"$G/kcov\" WAITCONF_KCOV_FEEDBACK={word}");
            assert!(k.contains(&line), "{k}");
            assert!(k.find(&line) < k.find("campaign.sh"));
        }
    }

    #[test]
    fn corpus_copy_adds_only_new_units() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(b.join("sub")).unwrap();
        std::fs::write(a.join("u1"), "1").unwrap();
        std::fs::write(a.join("u2"), "2").unwrap();
        std::fs::write(b.join("u1"), "old").unwrap();
        assert_eq!(copy_new_files(&a, &b).unwrap(), 1);
        assert_eq!(std::fs::read_to_string(b.join("u1")).unwrap(), "old");
        assert_eq!(std::fs::read_to_string(b.join("u2")).unwrap(), "2");
        assert_eq!(copy_new_files(&a, &b).unwrap(), 0);
        assert_eq!(files_in(&b).len(), 2, "directories are not units");
    }

    fn fake(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// The paths of a test tree under `root` (workspace `ws`, snapshots `snap`, cache `cache`);
    /// the repository's own vm-images.
    fn test_paths(root: &Path) -> Paths {
        Paths {
            workspace: root.join("ws"),
            vm_images: Path::new(env!("CARGO_MANIFEST_DIR")).join("../vm-images"),
            snapshots: root.join("snap"),
            cache: root.join("cache"),
        }
    }

    fn opts(target: Target) -> FuzzOpts {
        FuzzOpts {
            accel: AccelChoice::Tcg,
            ..FuzzOpts::new(target, 3)
        }
    }

    /// A fake campaign.sh and fuzz binary with the real one's contract, on the host profile:
    /// the corpus round trip through the cache, artifacts, readable forms, exit codes.
    fn host_campaign(finding: bool) -> (tempfile::TempDir, FuzzReport) {
        let d = tempfile::tempdir().unwrap();
        let ws = d.path().join("ws");
        std::fs::create_dir_all(ws.join("fuzz/corpus/clone3_flags")).unwrap();
        std::fs::write(ws.join("fuzz/corpus/clone3_flags/seed1"), "s").unwrap();
        let bins = d.path().join("bins");
        std::fs::create_dir_all(&bins).unwrap();
        let fuzz_bin = fake(
            &bins,
            "clone3_flags",
            &format!(
                "#!/bin/sh\necho \"risky=$WAIT_FUZZ_RISKY flag=$CLONE_WAIT_PID_FLAG\"\n\
                 echo 'stat::number_of_executed_units: 77'\necho 'stat::new_units_added: 1'\n\
                 echo new > \"$1/new-unit\"\n{}",
                if finding {
                    "echo 'wait-conformance finding (clone3_flags) on kernel x:'\necho 'want ECHILD, got 5'\n\
                     echo '(turn the artifact into a case: wcfuzz regress clone3_flags <artifact>)'\n\
                     echo boom > \"$2/crash-abc\"\nexit 77\n"
                } else {
                    "exit 0\n"
                }
            ),
        );
        let wcfuzz = fake(
            &bins,
            "wcfuzz",
            "#!/bin/sh\necho \"wcfuzz $1 $2 $(basename $3)\"\n",
        );
        // The real script's interface: <target> <secs> <corpus> <artifacts>, FUZZ_BIN_DIR.
        let campaign = fake(
            &bins,
            "campaign.sh",
            "#!/bin/bash\nmkdir -p \"$3\" \"$4\"\n\"$FUZZ_BIN_DIR/$1\" \"$3\" \"$4\"\nrc=$?\n\
             echo \"CAMPAIGN target=$1 secs=$2 rc=$rc execs=77 exec_per_sec=25 cov=10 ft=20 corpus=$(ls \"$3\" | wc -l) artifacts=$(ls \"$4\" | wc -l) leftovers=0\"\n\
             [ $rc -eq 0 ] || exit 1\n",
        );
        let inputs = Inputs {
            fuzz_bin,
            wcfuzz: Some(wcfuzz),
            campaign,
        };
        let rep = host_run(d.path(), inputs);
        (d, rep)
    }

    /// A clone3_flags campaign on the host into `<d>/out`, with the fakes in `inputs`.
    fn host_run(d: &Path, inputs: Inputs) -> FuzzReport {
        let o = opts(Target::Clone3Flags);
        run_fuzz(
            &host_profile(),
            &test_paths(d),
            &d.join("out"),
            &o,
            Some(inputs),
        )
        .unwrap()
    }

    #[test]
    fn host_campaign_clean() {
        let (d, rep) = host_campaign(false);
        assert_eq!(
            (rep.verdict.as_str(), rep.exit_code),
            ("clean", 0),
            "{rep:#?}"
        );
        assert!(!rep.wait_fuzz_risky, "host without --allow-risky-host");
        let log = std::fs::read_to_string(d.path().join("out/guest-output.log")).unwrap();
        assert!(log.contains("risky=0 flag=0x10000000000"), "{log}");
        assert_eq!(rep.campaign["execs"], 77);
        assert_eq!(rep.libfuzzer["number_of_executed_units"], 77);
        let c = rep.corpus.as_ref().unwrap();
        assert_eq!((c.units_before, c.new_units, c.units_after), (1, 1, 2));
        let cache = d.path().join("cache/fuzz-corpus/host/clone3_flags");
        assert!(cache.join("seed1").is_file() && cache.join("new-unit").is_file());
        assert!(rep.artifacts.is_empty());
        assert!(
            d.path().join("out/bin/clone3_flags").is_file(),
            "staged copy"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.path().join("out/fuzz.json")).unwrap())
                .unwrap();
        assert_eq!(json["exit_code"], 0);
        assert!(rep.summary().contains("verdict: clean (exit 0)"));
    }

    #[test]
    fn host_campaign_finding_keeps_artifact_and_commands() {
        let (d, rep) = host_campaign(true);
        assert_eq!(
            (rep.verdict.as_str(), rep.exit_code),
            ("findings", 1),
            "{rep:#?}"
        );
        assert_eq!(rep.campaign_exit, Some(1));
        assert_eq!(rep.artifacts.len(), 1);
        let a = &rep.artifacts[0];
        assert_eq!(a.name, "crash-abc");
        assert!(d.path().join("out/artifacts/crash-abc").is_file());
        assert!(a.readable.contains("wcfuzz run"), "{}", a.readable);
        assert!(a
            .print_command
            .contains("CLONE_WAIT_PID_FLAG=0x10000000000"));
        assert!(a.print_command.contains("wcfuzz -- print clone3_flags"));
        assert!(a.regress_command.contains("wcfuzz -- regress clone3_flags"));
        assert!(rep
            .finding_text
            .as_deref()
            .unwrap()
            .contains("want ECHILD, got 5"));
        let s = rep.summary();
        assert!(s.contains("show:") && s.contains("as case:"), "{s}");
        assert!(
            d.path()
                .join("cache/fuzz-artifacts/host/clone3_flags/crash-abc")
                .is_file(),
            "kept in the cache"
        );
    }

    #[test]
    fn a_rerun_keeps_earlier_artifacts() {
        let (d, _) = host_campaign(true);
        let out = d.path().join("out");
        std::fs::rename(
            out.join("artifacts/crash-abc"),
            out.join("artifacts/crash-old"),
        )
        .unwrap();
        let bins = d.path().join("bins");
        let inputs = Inputs {
            fuzz_bin: bins.join("clone3_flags"),
            wcfuzz: None,
            campaign: bins.join("campaign.sh"),
        };
        let rep = host_run(d.path(), inputs);
        assert!(
            out.join("artifacts/crash-old").is_file(),
            "not deleted by the rerun"
        );
        assert_eq!(
            rep.artifacts.len(),
            1,
            "the report lists this run's artifacts only"
        );
        assert_eq!(rep.artifacts[0].name, "crash-abc");
        assert!(rep.artifacts[0].readable_file.is_none(), "no wcfuzz staged");
        assert!(
            !out.join("bin/wcfuzz").exists(),
            "a stale wcfuzz copy is removed"
        );
    }

    #[test]
    fn risky_inputs_on_the_host_only_when_asked() {
        assert!(wait_fuzz_risky(false, false), "VMs run risky inputs");
        assert!(!wait_fuzz_risky(true, false));
        assert!(wait_fuzz_risky(true, true));
    }

    #[test]
    fn zero_seconds_is_usage() {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::discover(None);
        let o = FuzzOpts {
            secs: 0,
            ..opts(Target::WaitSequence)
        };
        assert!(matches!(
            run_fuzz(&host_profile(), &paths, d.path(), &o, None),
            Err(RunError::Usage(_))
        ));
    }
}
