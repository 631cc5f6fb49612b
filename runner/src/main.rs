//! `runner`: builds or fetches each kernel profile of `vm-images/`, boots it under virtme-ng,
//! runs the wait-conformance case binary inside and writes reports.
//!
//! Exit codes: 0 as expected, 1 test failures or regressions, 2 usage or configuration error,
//! 3 infrastructure failure (fetch, build, boot, kernel panic).
//!
//! The command line is [`cli`]; below, one function per subcommand.

mod accel;
mod bench;
mod cli;
mod compare;
mod console;
mod corpus;
mod coverage;
mod exec;
mod fleet;
mod fuzz;
mod gate;
mod interrupt;
mod kcidb;
mod kernel;
mod ktap;
mod merge;
mod mutate;
mod paths;
mod profile;
mod progress;
mod report;
mod run;
mod session;
mod shard;
mod symbolize;
mod template;
mod tree;
mod vm;
mod vng;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use crate::cli::{
    BenchArgs, CaseArgs, Cli, Cmd, Common, CompareArgs, CoverageArgs, ExecArgs, FuzzArgs,
    KernelArgs, KernelCmdArgs, MatrixArgs, ProbeArgs, ProfilesArgs, RunArgs, Watchdogs,
};
use crate::gate::{EXIT_FAILURES, EXIT_INFRA, EXIT_OK, EXIT_USAGE};
use crate::paths::Paths;
use crate::profile::{Kind, ProfileSet};
use crate::run::RunError;
use crate::session::GuestSession;

fn main() -> ExitCode {
    progress::start();
    if let Err(e) = interrupt::install() {
        return infra(e);
    }
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli =
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // `fuzz --jobs N` is also the campaign's worker count, when given (the default is one).
    let fuzz_jobs_given = matches
        .subcommand_matches("fuzz")
        .is_some_and(|m| m.value_source("jobs") == Some(clap::parser::ValueSource::CommandLine));
    let exit = match cli.cmd {
        Cmd::Profiles(a) => cmd_profiles(a),
        Cmd::Kernel(a) => cmd_kernel(a),
        Cmd::Run(a) => cmd_run(a),
        Cmd::Exec(a) => cmd_exec(a),
        Cmd::Matrix(a) => cmd_matrix(a),
        Cmd::Fuzz(a) => cmd_fuzz(a, fuzz_jobs_given),
        Cmd::Compare(a) => cmd_compare(a),
        Cmd::Probe(a) => cmd_probe(a),
        Cmd::Bench(a) => cmd_bench(a),
        Cmd::Mutate(a) => cmd_mutate(a),
        Cmd::Export(a) => cmd_export(a),
        Cmd::Merge(a) => cmd_merge(a),
        Cmd::Corpus(a) => cmd_corpus(a),
        Cmd::Coverage(a) => cmd_coverage(a),
    };
    match interrupt::received() {
        Some(sig) => {
            eprintln!("runner: interrupted; exiting {}", 128 + sig);
            code(128 + sig)
        }
        None => exit,
    }
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("runner: {msg}");
    ExitCode::from(EXIT_USAGE as u8)
}

/// An infrastructure failure: the error with its causes on stderr, exit 3.
fn infra(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("runner: {e:#}");
    ExitCode::from(EXIT_INFRA as u8)
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(c.clamp(0, 255) as u8)
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

fn cmd_profiles(a: ProfilesArgs) -> ExitCode {
    let (_, set) = match load(&a.common) {
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

fn cmd_kernel(a: KernelCmdArgs) -> ExitCode {
    let (paths, p) = match load_profile(&a.common, &a.kernel) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let started = Instant::now();
    let opts = kernel::AcquireOpts {
        jobs: a.common.jobs,
        refresh_apt: a.common.refresh_apt,
    };
    match kernel::acquire(&p, &paths, &opts) {
        Ok(k) => {
            println!(
                "{}: {} ({}; {}, {:.1} s)",
                p.name,
                k.image
                    .as_deref()
                    .map(|i| i.display().to_string())
                    .unwrap_or_else(|| "host kernel".into()),
                k.source,
                if k.cache_hit {
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

fn cmd_mutate(a: cli::MutateArgs) -> ExitCode {
    let cli::RunArgs {
        kernel,
        cases,
        shard,
        common,
    } = &a.run;
    if shard.is_some() {
        return usage("mutate judges every row against the baseline: --shard is for run");
    }
    let (paths, p) = match load_profile(common, kernel) {
        Ok(x) => x,
        Err(c) => return c,
    };
    if p.source.is_none() && p.tree.is_none() {
        return usage(format!(
            "mutate needs a kernel it can rebuild: a source profile or --kernel-tree ({} is {:?})",
            p.name, p.kind
        ));
    }
    let dir = a
        .mutants
        .clone()
        .unwrap_or_else(|| paths.vm_images.join("mutants"));
    let mutants = match mutate::mutants(&dir, &a.names) {
        Ok(m) => m,
        Err(e) => return usage(format!("{e:#}")),
    };
    let opts = cases.opts(common);
    let (spec, journal_file) = match mutation_tree(&p, &paths, common.refresh_apt) {
        Ok(x) => x,
        Err(e) => return infra(e),
    };
    let bin = match run::cases_binary(&paths, &opts) {
        Ok(b) => b,
        Err(e) => return infra(e),
    };
    let (fragments, localversion) = mutation_config(&p, &paths);
    let l = mutate::Loop {
        journal: mutate::Journal::new(&spec.path, journal_file),
        spec,
        cache: &paths.cache,
        fragments,
        localversion,
        jobs: common.jobs,
        run_args: mutation_run_args(&p, &bin, &opts),
    };
    match l.mutate(&mutants, &cases.out) {
        Ok(m) => {
            print!("{}", mutate::table(&m));
            println!("wrote {}", cases.out.join("mutation.json").display());
            ExitCode::from(if m.score.killed == m.score.total {
                EXIT_OK
            } else {
                EXIT_FAILURES
            } as u8)
        }
        Err(e) => infra(e),
    }
}

/// The tree the mutants are applied to and its journal file: the profile's tree (journal in
/// its build directory), or the kept unpacked source of a source profile.
fn mutation_tree(
    p: &profile::Profile,
    paths: &paths::Paths,
    refresh_apt: bool,
) -> anyhow::Result<(tree::TreeSpec, PathBuf)> {
    if let Some(t) = &p.tree {
        let journal = tree::build_dir(&paths.cache, &t.path).join("waitconf-applied");
        return Ok((tree::TreeSpec::from(t), journal));
    }
    let src = mutate::profile_tree(p, paths, refresh_apt)?;
    let spec = tree::TreeSpec {
        path: src.clone(),
        keep_config: false,
        config: None,
    };
    Ok((spec, src.with_file_name("applied")))
}

/// The config fragments and the local version each mutant's kernel is built with: the
/// source profile's, or the suite's tree fragment.
fn mutation_config(p: &profile::Profile, paths: &paths::Paths) -> (Vec<PathBuf>, Option<String>) {
    match &p.source {
        Some(s) => (
            s.config_fragments
                .iter()
                .chain(&s.extra_config_fragments)
                .map(|f| paths.vm_images.join(f))
                .collect(),
            s.localversion.clone(),
        ),
        None => (vec![paths.vm_images.join(kernel::TREE_FRAGMENT)], None),
    }
}

/// The `runner run` arguments of each mutant's suite run.
fn mutation_run_args(p: &profile::Profile, bin: &Path, opts: &run::RunOpts) -> Vec<String> {
    let mut run_args = vec![
        "--clone-wait-pid-flag".to_owned(),
        format!("{:#x}", p.clone_bit()),
        "--expect-feature".to_owned(),
        p.expect.feature.to_string(),
        "--cases-bin".to_owned(),
        bin.display().to_string(),
        "--no-build".to_owned(),
    ];
    if let Some(f) = &opts.filter {
        run_args.extend(["--filter".to_owned(), f.clone()]);
    }
    for s in &opts.skip {
        run_args.extend(["--skip".to_owned(), s.clone()]);
    }
    run_args
}

fn cmd_export(a: cli::ExportArgs) -> ExitCode {
    let cli::ExportWhat::Kcidb { results, out, opts } = a.what;
    match kcidb::export_file(&results, &opts) {
        Ok(doc) => {
            match std::fs::write(&out, serde_json::to_string_pretty(&doc).unwrap_or_default()) {
                Ok(()) => {
                    println!(
                        "wrote {} (KCIDB v5.3: {} tests)",
                        out.display(),
                        doc["tests"].as_array().map_or(0, Vec::len)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => infra(e),
            }
        }
        Err(e) => usage(format!("{e:#}")),
    }
}

fn cmd_run(a: RunArgs) -> ExitCode {
    let mut opts = a.cases.opts(&a.common);
    opts.shard = a.shard;
    if a.shard.is_some() && opts.accept {
        return usage(
            "a shard's matrix is part of the profile's: accept the merged one \
             (runner merge DIR... --out DIR --gate snapshot --accept)",
        );
    }
    let (paths, p) = match load_profile(&a.common, &a.kernel) {
        Ok(x) => x,
        Err(c) => return c,
    };
    if opts.selftest_crash && p.kind == Kind::Host {
        return usage("refusing the crash selftest on the host profile");
    }
    match run::run_profile(&p, &paths, &a.cases.out, &opts) {
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
            if let Some((_, rows)) = compare::same_kernel(&r, "results.json") {
                println!(
                    "\nplain vs CLONE_WAIT_PID vs CLONE_AUTOREAP on {} (pass/fail/skip/broken; comparison.md):\n{}",
                    p.name,
                    compare::totals_markdown(&rows)
                );
            }
            println!("verdict: {} (exit {})", r.verdict, r.exit_code);
            code(r.exit_code)
        }
        Err(RunError::Usage(m)) => usage(m),
    }
}

fn cmd_merge(a: cli::MergeArgs) -> ExitCode {
    let snapshots = Paths::discover(None).snapshots;
    match merge::merge(&a.dirs, &a.out, &snapshots, a.gate, a.accept) {
        Ok(r) => {
            println!(
                "\n{} on {} ({}), merged from {} shard(s):",
                r.environment.profile,
                r.environment.kernel_release,
                r.environment.accelerator,
                r.merged_from.len()
            );
            print!("{}", r.summary_table());
            println!("reports in {}", a.out.display());
            println!("verdict: {} (exit {})", r.verdict, r.exit_code);
            code(r.exit_code)
        }
        Err(merge::MergeError::Input(m)) => usage(m),
        Err(merge::MergeError::Refused(m)) => {
            eprintln!("runner: merge refused: {m}");
            code(merge::EXIT_REFUSED)
        }
    }
}

fn cmd_corpus(a: cli::CorpusArgs) -> ExitCode {
    let of = match &a.what {
        cli::CorpusWhat::Stats(o) | cli::CorpusWhat::Minimise(o) => o,
        cli::CorpusWhat::Merge { of, .. } => of,
    };
    let (paths, p) = match load_profile(&of.common, &of.kernel) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let opts = fuzz::FuzzOpts {
        build: !of.no_build,
        accel: of.common.accel,
        reprobe_accel: of.common.reprobe_accel,
        jobs: of.common.jobs,
        refresh_apt: of.common.refresh_apt,
        ..fuzz::FuzzOpts::new(of.target, 1)
    };
    match corpus_command(&a.what, &p, &paths, &opts, of) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => infra(e),
    }
}

/// What `runner corpus` does, under the cache corpus's lock; the line it prints.
fn corpus_command(
    what: &cli::CorpusWhat,
    p: &profile::Profile,
    paths: &Paths,
    opts: &fuzz::FuzzOpts,
    of: &cli::CorpusOf,
) -> anyhow::Result<String> {
    if opts.build {
        if let Some(note) = fuzz::build_fuzz(paths)? {
            eprintln!("runner: {note}");
        }
    }
    std::fs::create_dir_all(&of.out)?;
    let work = std::fs::canonicalize(&of.out)?;
    let (cache, _lock) = corpus::locked_cache(paths, &p.name, of.target.as_str())?;
    let shown = |s: &corpus::Stats| format!("{} unit(s), {} bytes", s.units, s.bytes);
    Ok(match what {
        cli::CorpusWhat::Stats(_) => {
            let s = corpus::measure(p, paths, opts, &cache, &work)?;
            format!(
                "{}: {}, cov {} ft {} (libFuzzer -merge=1 into an empty directory on {})",
                cache.display(),
                shown(&s),
                s.cov.unwrap_or(0),
                s.ft.unwrap_or(0),
                p.name
            )
        }
        cli::CorpusWhat::Merge { dirs, .. } => {
            let before = corpus::count(&cache);
            let m = corpus::merge_into(p, paths, opts, &cache, dirs, &work)?;
            format!(
                "{}: {} before, {} after (-merge=1: {} new unit(s), {} new features, {} new edges)",
                cache.display(),
                shown(&before),
                shown(&corpus::count(&cache)),
                m.new_units,
                m.new_features,
                m.new_edges
            )
        }
        cli::CorpusWhat::Minimise(_) => {
            let (before, after) = corpus::minimise(p, paths, opts, &cache, &work)?;
            format!(
                "{}: {} before, {} after minimising",
                cache.display(),
                shown(&before),
                shown(&after)
            )
        }
    })
}

fn cmd_coverage(c: CoverageArgs) -> ExitCode {
    let a = &c.run;
    let opts = a.cases.opts(&a.common);
    let (paths, p) = match load_profile(&a.common, &a.kernel) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let how = coverage::How {
        campaigns: c.campaigns.clone(),
        report_only: c.report_only,
    };
    match coverage::command(&p, &paths, &a.cases.out, opts, &how) {
        Ok(c) => code(c),
        Err(coverage::Error::Usage(m)) => usage(m),
        Err(coverage::Error::Infra(e)) => infra(e),
    }
}

fn cmd_exec(a: ExecArgs) -> ExitCode {
    let (paths, p) = match load_profile(&a.common, &a.kernel) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let mut run = CaseArgs::internal(PathBuf::new(), a.watchdogs).opts(&a.common);
    run.selftest_crash = false;
    let opts = exec::ExecOpts {
        command: a.command,
        out: a.out,
        env: a.env,
        rwdirs: a.rwdirs,
        host_build: !a.no_host_build,
        run,
    };
    code(exec::exec(&p, &paths, &opts))
}

fn cmd_matrix(a: MatrixArgs) -> ExitCode {
    let mut opts = a.cases.opts(&a.common);
    let (paths, mut set) = match load(&a.common) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let extra = match a.extra_kernels() {
        Ok(x) => x,
        Err(e) => return usage(e),
    };
    let mut names: Vec<String> = if a.kernels.is_empty() && extra.is_empty() {
        set.profiles
            .values()
            .filter(|p| p.matrix)
            .map(|p| p.name.clone())
            .collect()
    } else {
        a.kernels.clone()
    };
    for n in &names {
        if let Err(e) = set.get(n) {
            return usage(e);
        }
    }
    for p in extra {
        names.push(p.name.clone());
        set.profiles.insert(p.name.clone(), p);
    }
    if opts.selftest_crash {
        return usage("the crash selftest is for `run` on one VM profile only");
    }
    let out = &a.cases.out;
    let parallel = a.parallel.map_or_else(default_parallel, |n| n as usize);
    let (runs, mut worst) = matrix_runs(&set, &names, &paths, out, &mut opts, parallel);
    let table = report::matrix_table(&runs);
    let _ = std::fs::write(out.join("matrix.txt"), &table);
    println!("\n{table}");
    let located: Vec<(String, &report::RunResults)> = runs
        .iter()
        .filter_map(|(n, r)| {
            let file = out.join(n).join("results.json").display().to_string();
            r.as_ref().map(|r| (file, r))
        })
        .collect();
    match write_comparison(out, &located, &compare::Columns::default()) {
        Ok(true) => {}
        Ok(false) => println!("(no comparison: none of its profiles ran)"),
        Err(e) => {
            eprintln!("runner: {e:#}");
            worst = worse(worst, EXIT_INFRA);
        }
    }
    // Written with each run's reports (RunResults::write_all); named here so it is found.
    for (file, r) in &located {
        if compare::has_both_flags(r) {
            println!(
                "same-kernel comparison ({}): {}",
                r.environment.profile,
                Path::new(file).with_file_name("comparison.md").display()
            );
        }
    }
    code(worst)
}

/// `runner matrix --parallel` by default: [`parallel_for`] the host's CPUs.
fn default_parallel() -> usize {
    parallel_for(std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// One VM more than the host has CPUs, at most 4. A guest spends much of its boot waiting (9p,
/// udev settling), so a VM beyond the CPU count fills that time. Measured here (2 cores, TCG,
/// the four VM profiles, warm; docs/measurements.md, sixth session): 92.7 and 94.0 s with 2 at
/// once, 71.5 and 66.1 s with 3, 86.8 s with 4.
fn parallel_for(cpus: usize) -> usize {
    (cpus.max(1) + 1).min(4)
}

type MatrixRun = (String, Option<report::RunResults>);

/// Every profile's run, in `names` order, with the worst exit code. The case binary and the
/// kernels are made ready one at a time first (builds and apt want the whole machine and share
/// the cache); then up to `parallel` profiles run at once, each in its own thread and VM.
fn matrix_runs(
    set: &ProfileSet,
    names: &[String],
    paths: &Paths,
    out: &Path,
    opts: &mut run::RunOpts,
    parallel: usize,
) -> (Vec<MatrixRun>, i32) {
    match run::cases_binary(paths, opts) {
        Ok(bin) => {
            opts.cases_bin = Some(bin);
            opts.build_cases = false;
            for n in names {
                let p = set.get(n).expect("checked");
                if let Err(e) = run::prepare(p, paths, opts) {
                    // run_profile meets the same error and reports it as the profile's own.
                    progress!("profile {n}: not ready: {e:#}");
                }
            }
        }
        // Every run_profile will say why; no point preparing kernels.
        Err(e) => progress!("the case binary: {e:#}"),
    }
    let queue = std::sync::Mutex::new(names.iter().enumerate());
    let done = std::sync::Mutex::new(Vec::new());
    let opts: &run::RunOpts = opts;
    std::thread::scope(|s| {
        for _ in 0..parallel.clamp(1, names.len().max(1)) {
            s.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                let Some((i, n)) = next else { break };
                if parallel > 1 {
                    progress::set_label(n);
                }
                let p = set.get(n).expect("checked");
                let r = run::run_profile(p, paths, &out.join(n), opts);
                done.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((i, n.clone(), r));
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_by_key(|(i, _, _)| *i);
    let mut worst = EXIT_OK;
    let runs = done
        .into_iter()
        .map(|(_, n, r)| match r {
            Ok(r) => {
                worst = worse(worst, r.exit_code);
                (n, Some(r))
            }
            Err(RunError::Usage(m)) => {
                eprintln!("runner: {n}: {m}");
                worst = worse(worst, EXIT_USAGE);
                (n, None)
            }
        })
        .collect();
    (runs, worst)
}

fn cmd_fuzz(a: FuzzArgs, jobs_given: bool) -> ExitCode {
    let (paths, p) = match load_profile(&a.common, &a.kernel) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let opts = fuzz::FuzzOpts {
        target: a.target,
        secs: a.time,
        build: !a.no_build,
        allow_risky_host: a.allow_risky_host,
        accel: a.common.accel,
        reprobe_accel: a.common.reprobe_accel,
        jobs: a.common.jobs,
        refresh_apt: a.common.refresh_apt,
        vm_timeout: a.watchdogs.vm_timeout,
        boot_timeout: a.watchdogs.boot_timeout,
        echo_guest: !a.quiet,
        workers: if jobs_given { a.common.jobs.max(1) } else { 1 },
        corpus_from: None,
        no_kernel_feedback: a.no_kernel_feedback,
    };
    if let Some(vms) = a.vms {
        return match fleet::run_fleet(&p, &paths, &a.out, &opts, vms) {
            Ok(r) => {
                print!("\n{}", r.summary());
                code(r.exit_code)
            }
            Err(RunError::Usage(m)) => usage(m),
        };
    }
    match fuzz::run_fuzz(&p, &paths, &a.out, &opts, None) {
        Ok(r) => {
            print!("\n{}", r.summary());
            code(r.exit_code)
        }
        Err(RunError::Usage(m)) => usage(m),
    }
}

fn cmd_compare(a: CompareArgs) -> ExitCode {
    let mut loaded = Vec::new();
    for r in &a.results {
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
    let cols = match a.same_kernel {
        Some(p) => compare::Columns::same(&p),
        None => compare::Columns {
            plain: a.plain_from,
            hidden: a.hidden_from,
            autoreap: a.autoreap_from,
        },
    };
    let located: Vec<(String, &report::RunResults)> =
        loaded.iter().map(|(f, r)| (f.clone(), r)).collect();
    match write_comparison(&a.out, &located, &cols) {
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

fn cmd_bench(a: BenchArgs) -> ExitCode {
    let opts = a.cases.opts(&a.common);
    let (paths, p) = match load_profile(&a.common, &a.kernel) {
        Ok(x) => x,
        Err(c) => return c,
    };
    if p.kind == Kind::Host {
        return usage("bench compares VM boots; the host profile has none");
    }
    match bench::bench(&p, &paths, &a.cases.out, &opts, a.rounds.max(1)) {
        Ok(c) => code(c),
        Err(e) => infra(e),
    }
}

fn cmd_probe(a: ProbeArgs) -> ExitCode {
    let (paths, p) = match load_profile(&a.common, &a.kernel) {
        Ok(x) => x,
        Err(c) => return c,
    };
    if p.kind == Kind::Host {
        return usage(format!(
            "probe boots a VM; on the host run `{}=<bit> wait-conformance {}`",
            protocol::env::CLONE_WAIT_PID_FLAG,
            PROBE_ARG
        ));
    }
    let mut opts = CaseArgs::internal(a.out.clone(), Watchdogs::default()).opts(&a.common);
    opts.build_cases = true;
    match probe(&p, &paths, &a.out, &opts) {
        Ok(c) => code(c),
        Err(e) => infra(e),
    }
}

/// Boots the profile and runs `wait-conformance --probe` inside (runner/templates/probe.sh);
/// the exit code of [`probe_verdict`], or 3 when the VM did not complete.
fn probe(
    p: &profile::Profile,
    paths: &Paths,
    out: &Path,
    opts: &run::RunOpts,
) -> anyhow::Result<i32> {
    let prepared = run::prepare(p, paths, opts)?;
    std::fs::create_dir_all(out)?;
    let out = std::fs::canonicalize(out)?;
    let bin = run::stage_cases_binary(&run::cases_binary(paths, opts)?, &out)?;
    let launcher = prepared.launcher();
    let log = out.join("probe-output.log");
    let session = GuestSession::new(launcher, &out, run::visible(&out, &bin), vm::Echo::Progress)
        .output_to(log.clone());
    let _ = std::fs::remove_file(&log);
    let script = template::PROBE.render(
        &[
            ("FLAG_ENV", protocol::env::CLONE_WAIT_PID_FLAG.into()),
            ("FLAG", protocol::bit::spell(p.clone_bit())),
            (
                "CASE_BIN",
                template::shell_quote(&bin.display().to_string()),
            ),
            ("PROBE_ARG", PROBE_ARG.into()),
        ],
        &[],
    );
    let wd = session::watchdogs(180, 300);
    let run = session.run_script(&out.join("probe.sh"), &script, &wd)?;
    if run.end != vm::VmEnd::Completed {
        eprintln!(
            "runner: probe VM ended {} (see {}/console.log)",
            run.end.as_str(),
            out.display()
        );
        return Ok(EXIT_INFRA);
    }
    let (line, c) = probe_verdict(
        &std::fs::read_to_string(&log).unwrap_or_default(),
        p.expect.feature,
    );
    let boot = run.boot_seconds.unwrap_or(f64::NAN);
    println!(
        "probe on {} ({}, boot {boot:.1} s): {line}",
        p.name,
        launcher.accel_name()
    );
    Ok(c)
}

/// The case binary's argument that prints its probe's env record.
const PROBE_ARG: &str = "--probe";

/// What the guest's `wait-conformance --probe` printed, against the profile's expectation: the
/// summary line and the exit code (0 as expected, 1 not, 3 no env record).
fn probe_verdict(output: &str, expect: profile::Feature) -> (String, i32) {
    use protocol::record::{parse_line, Line, Record};
    let env = output.lines().find_map(|l| match parse_line(l) {
        Line::Record(Record::Env(e)) => Some(e),
        _ => None,
    });
    let Some(env) = env else {
        return ("the case binary printed no env record".into(), EXIT_INFRA);
    };
    let want = expect.to_string();
    let mut line = format!(
        "{} at {} (expected {want}): {}",
        env.feature, env.clone_wait_pid_flag, env.feature_reason
    );
    if !env.feature_observed.is_empty() {
        line.push_str(&format!("; observed: {}", env.feature_observed));
    }
    (
        line,
        if env.feature == want {
            EXIT_OK
        } else {
            EXIT_FAILURES
        },
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_runs_one_vm_more_than_the_cpus_at_most_four() {
        assert_eq!(parallel_for(0), 2);
        assert_eq!(parallel_for(1), 2);
        assert_eq!(parallel_for(2), 3);
        assert_eq!(parallel_for(3), 4);
        assert_eq!(parallel_for(64), 4);
    }

    #[test]
    fn matrix_exit_code_precedence() {
        assert_eq!(worse(EXIT_OK, EXIT_FAILURES), EXIT_FAILURES);
        assert_eq!(worse(EXIT_INFRA, EXIT_FAILURES), EXIT_INFRA);
        assert_eq!(worse(EXIT_FAILURES, EXIT_USAGE), EXIT_USAGE);
        assert_eq!(worse(EXIT_USAGE, EXIT_INFRA), EXIT_INFRA);
        assert_eq!(worse(EXIT_OK, EXIT_OK), EXIT_OK);
    }

    #[test]
    fn probe_verdict_holds_the_env_record_to_the_profile() {
        let out = "WAITCONF-GUEST-START\nwait-conformance: CLONE_WAIT_PID at bit 0x10000000000: present (x)\n\
{\"kind\":\"env\",\"kernel_release\":\"6.12.0\",\"clone_wait_pid_flag\":\"0x10000000000\",\"feature\":\"present\",\"feature_reason\":\"the kernel knows bit 0x10000000000\",\"feature_observed\":\"\"}\n";
        let (line, code) = probe_verdict(out, profile::Feature::Present);
        assert_eq!(code, EXIT_OK);
        assert_eq!(
            line,
            "present at 0x10000000000 (expected present): the kernel knows bit 0x10000000000"
        );
        assert_eq!(
            probe_verdict(out, profile::Feature::Absent).1,
            EXIT_FAILURES
        );
        assert_eq!(
            probe_verdict("WAITCONF-GUEST-START\n", profile::Feature::Absent).1,
            EXIT_INFRA
        );
    }
}
