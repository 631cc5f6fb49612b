//! wcfuzz: the fuzzing toolbox, not instrumented (`cargo run --release
//! --manifest-path fuzz/Cargo.toml -p wcfuzz -- <command>`; `--help` lists
//! the commands).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cases::fuzzing::clone3::{self, Cgroup, Clone3Case, Pidfd, SetTid, Stack};
use cases::fuzzing::regress::RegressionFile;
use cases::fuzzing::tree::{self, Op, WaitProgram, Who};
use cases::sys::clone::{clone3, flags::*, Clone3Request, Program};
use cases::sys::wait::{wait, WaitCall, WaitOpts, WaitTarget};
use wait_conformance_fuzz as fz;

/// The repository root (this crate is fuzz/wcfuzz/).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("repo root")
        .to_path_buf()
}

/// The fuzz target an input is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum Target {
    Clone3Flags,
    WaitSequence,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Clone3Flags => "clone3_flags",
            Target::WaitSequence => "wait_sequence",
        }
    }
}

#[derive(clap::Parser, Debug)]
#[command(name = "wcfuzz", about = "wait-conformance's fuzzing toolbox")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// The input as a readable program.
    Print { target: Target, artifact: PathBuf },
    /// Execute the input once (in a worker) and print the verdict; exit 1 on a finding.
    Run { target: Target, artifact: PathBuf },
    /// Shrink the input and save it as cases/regressions/<target>-<id>.case
    /// (the next build of cases embeds it as a row).
    Regress {
        target: Target,
        artifact: PathBuf,
        /// The row's id (default: from the artifact's name).
        #[arg(long)]
        id: Option<String>,
        /// The finding, for an input whose finding is fixed already.
        #[arg(long)]
        finding: Option<String>,
    },
    /// Run every embedded regression row, each in an isolated subreaper process.
    Regressions,
    /// (Re)write the seed corpus under fuzz/corpus/.
    Seeds,
    /// clone3_flags per-input work against a raw clone3 loop, in-process mode
    /// and worker-only mode.
    Bench {
        /// Iterations per line and round.
        #[arg(long, default_value_t = 2000)]
        iters: usize,
        /// Rounds (each line against the raw loop).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// A campaign's corpus directory, as one more input set.
        #[arg(long)]
        corpus: Option<String>,
    },
}

enum Input {
    Clone3(Clone3Case),
    Wait(WaitProgram),
}

fn load(target: Target, path: &Path) -> Input {
    let data = std::fs::read(path).unwrap_or_else(|e| {
        eprintln!("{}: {e}", path.display());
        std::process::exit(2)
    });
    let c = fz::ctx();
    match target {
        Target::Clone3Flags => {
            let mut case = fz::decode_clone3(&data, c);
            case.normalise(&c.env);
            Input::Clone3(case)
        }
        Target::WaitSequence => Input::Wait(fz::decode_program(&data)),
    }
}

fn describe(i: &Input) -> String {
    match i {
        Input::Clone3(c) => c.to_string(),
        Input::Wait(p) => p.to_string(),
    }
}

/// Execute in a worker (like the fuzz target) and check: Err(finding).
fn verdict(i: &Input) -> Result<String, String> {
    let c = fz::ctx();
    match i {
        Input::Clone3(case) => {
            // Where the fuzz target would run it (WAIT_FUZZ_INPROCESS=0: the worker).
            let (obs, h, mode) = fz::run_clone3(case);
            clone3::check(case, &c.env, &obs).map_err(|e| format!("{e}\n(executed: {mode:?})"))?;
            if !h.clean() {
                return Err(format!("leak after the input ({mode:?}): {h:?}"));
            }
            Ok(format!("agrees with the model ({mode:?}): {obs:?}"))
        }
        Input::Wait(p) => {
            let mut req = vec![b'w'];
            req.extend(serde_json::to_vec(p).unwrap());
            let (payload, h) = c.call(&req, &|| p.to_string());
            let log: tree::RunLog = serde_json::from_str(&payload).unwrap();
            let (listing, fail) = tree::replay(p, &c.cfg, &log);
            if let Some(why) = fail {
                return Err(format!("{listing}\n{why}"));
            }
            if !h.clean() {
                return Err(format!("{listing}\nleak after the input: {h:?}"));
            }
            Ok(format!("agrees with the model:\n{listing}"))
        }
    }
}

/// Run every regression row the way the case table does: in a forked child
/// subreaper with no other children.
fn regressions() -> bool {
    let features = fz::ctx().env.features.clone();
    let mut ok = true;
    for row in cases::fuzzing::regression_cases() {
        let (r, w) = cases::sys::clone::pipe();
        let run = &row.run;
        let f = features.clone();
        let pid = cases::fuzzing::isolate::fork_run(|| {
            let _ = cases::fuzzing::isolate::become_subreaper();
            let res = run(&f);
            let left = cases::fuzzing::isolate::own_children();
            let msg = match (res, left.is_empty()) {
                (Ok(()), true) => "PASS".to_string(),
                (Ok(()), false) => format!("FAIL leftover children {left:?}"),
                (Err(e), _) => format!("FAIL {e}"),
            };
            cases::fuzzing::isolate::write_all(&w, msg.as_bytes());
            0
        })
        .expect("fork");
        drop(w);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = rustix::io::read(&r, &mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let _ = wait(
            WaitCall::WaitidPid,
            WaitTarget::pid(pid),
            WaitOpts(WaitOpts::WEXITED),
        );
        let msg = String::from_utf8_lossy(&out).to_string();
        ok &= msg == "PASS";
        println!(
            "{}: {}\n    ({})",
            row.name,
            if msg.is_empty() {
                "FAIL (row process died)".into()
            } else {
                msg
            },
            row.source
        );
    }
    ok
}

/// The first line of a finding, as its signature for shrinking.
fn signature(i: &Input) -> Option<String> {
    let e = verdict(i).err()?;
    let line = e
        .lines()
        .find_map(|l| l.split_once("MISMATCH:").map(|(_, r)| r.to_string()))
        .unwrap_or_else(|| e.lines().last().unwrap_or("").to_string());
    // pids differ from run to run
    Some(line.chars().filter(|c| !c.is_ascii_digit()).collect())
}

/// Structural shrinking on top of libFuzzer's byte-level tmin: drop flag
/// bits, reset fields, drop ops, as long as the same finding remains.
fn shrink(i: Input) -> Input {
    let Some(sig) = signature(&i) else { return i };
    let same = |c: &Input| signature(c).is_some_and(|s| s == sig);
    match i {
        Input::Clone3(mut c) => {
            let env = &fz::ctx().env;
            for b in 0..64 {
                if c.flags & (1 << b) != 0 {
                    let mut t = c.clone();
                    t.flags &= !(1 << b);
                    t.normalise(env);
                    if same(&Input::Clone3(t.clone())) {
                        c = t;
                    }
                }
            }
            let d = base(c.flags);
            let resets: [&dyn Fn(&mut Clone3Case); 9] = [
                &|t| t.size = d.size,
                &|t| t.tail_byte = None,
                &|t| t.exit_signal = d.exit_signal,
                &|t| t.stack = Stack::None,
                &|t| t.set_tid = SetTid::None,
                &|t| t.cgroup = Cgroup::Zero,
                &|t| t.pidfd = Pidfd::Valid,
                &|t| t.exit_code = 0,
                &|t| {
                    t.generic_opts = 0;
                    t.focused_opts = 0
                },
            ];
            for r in resets {
                let mut t = c.clone();
                r(&mut t);
                if t != c && same(&Input::Clone3(t.clone())) {
                    c = t;
                }
            }
            Input::Clone3(c)
        }
        Input::Wait(mut p) => {
            let mut k = p.ops.len();
            while k > 0 {
                k -= 1;
                let mut t = p.clone();
                t.ops.remove(k);
                if same(&Input::Wait(t.clone())) {
                    p = t;
                }
            }
            Input::Wait(p)
        }
    }
}

fn regress(target: Target, artifact: &Path, id: Option<String>, finding_text: Option<String>) {
    let input = load(target, artifact);
    let target = target.name();
    let name = artifact
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("input")
        .to_string();
    let id = id.unwrap_or_else(|| {
        let stem = ["crash-", "timeout-", "oom-", "leak-", "slow-unit-"]
            .iter()
            .fold(name.clone(), |s, p| {
                s.strip_prefix(p).map(String::from).unwrap_or(s)
            });
        stem.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(12)
            .collect()
    });
    let input = shrink(input);
    let finding = match (verdict(&input), finding_text) {
        (Err(e), _) => e,
        (Ok(_), Some(f)) => format!("{f}\n(fixed when saved; recorded with --finding)"),
        (Ok(s), None) => format!("no mismatch when saved ({s})"),
    };
    let c = fz::ctx();
    let source = format!(
        "fuzz artifact {name} ({target}); kernel {} {:?}, CLONE_WAIT_PID {}",
        cases::sys::proc::kernel_release(),
        c.env.features.version,
        c.env
            .features
            .wait_pid_bit
            .map(|b| format!("{b:#x}"))
            .unwrap_or_else(|| "absent".into())
    );
    let value = match &input {
        Input::Clone3(x) => serde_json::to_value(x).unwrap(),
        Input::Wait(x) => serde_json::to_value(x).unwrap(),
    };
    // The semantics the finding was checked under: the row replays under it.
    let semantics = Some(if matches!(input, Input::Wait(_)) {
        c.cfg.semantics
    } else {
        c.env.semantics
    });
    let f = RegressionFile {
        target: target.into(),
        id: id.clone(),
        source,
        input: value,
        semantics,
    };
    let path = repo().join(format!("cases/regressions/{target}-{id}.case"));
    std::fs::write(&path, f.render(&finding)).expect("write regression");
    println!("wrote {} (row regress::{target}::{id})", path.display());
    println!("finding: {finding}");
    println!("cases/build.rs embeds it at the next build of the case binary");
}

fn base(flags: u64) -> Clone3Case {
    Clone3Case::plain(flags, cases::sys::signal::SIGCHLD as u64)
}

fn seed_cases() -> Vec<(&'static str, Clone3Case)> {
    let b40 = 1u64 << 40;
    let seed = cases::harness::config::SEED_BIT;
    let with = |f: u64, g: &dyn Fn(&mut Clone3Case)| {
        let mut c = base(f);
        g(&mut c);
        c
    };
    vec![
        ("plain", base(0)),
        ("pidfd", base(CLONE_PIDFD)),
        ("hidden40", base(CLONE_PIDFD | b40)),
        ("hidden40_nopidfd", base(b40)),
        ("hidden_seedbit", base(CLONE_PIDFD | seed)),
        (
            "hidden40_wait4",
            with(CLONE_PIDFD | b40, &|c| {
                c.generic = WaitCall::Wait4Any;
                c.focused = WaitCall::Wait4Pid;
            }),
        ),
        (
            "hidden40_pgid",
            with(CLONE_PIDFD | b40, &|c| {
                c.generic = WaitCall::WaitpidNegPgid;
                c.focused = WaitCall::WaitpidPid;
            }),
        ),
        (
            "parent",
            with(CLONE_PARENT | CLONE_PIDFD, &|c| c.exit_signal = 0),
        ),
        (
            "clone_child",
            with(CLONE_PIDFD, &|c| {
                c.exit_signal = 0;
                c.generic_opts = WaitOpts::WCLONE;
                c.focused_opts = WaitOpts::WALL;
            }),
        ),
        ("vfork", base(CLONE_VFORK | CLONE_PIDFD)),
        ("size64", with(CLONE_PIDFD, &|c| c.size = 64)),
        ("size80", with(CLONE_PIDFD, &|c| c.size = 80)),
        (
            "size96_tail",
            with(0, &|c| {
                c.size = 96;
                c.tail_byte = Some((3, 1));
            }),
        ),
        ("size4097", with(0, &|c| c.size = 4097)),
        ("exit_sigkill", with(CLONE_PIDFD, &|c| c.exit_signal = 9)),
        ("exit_sigstop", with(0, &|c| c.exit_signal = 19)),
        ("exit_sigusr1", with(0, &|c| c.exit_signal = 10)),
        ("exit_sig65", with(0, &|c| c.exit_signal = 65)),
        (
            "thread",
            with(CLONE_VM | CLONE_SIGHAND | CLONE_THREAD, &|c| {
                c.exit_signal = 0
            }),
        ),
        (
            "pidns_sighand",
            base(CLONE_NEWPID | CLONE_VM | CLONE_SIGHAND | CLONE_PIDFD),
        ),
        ("vm_vfork", base(CLONE_VM | CLONE_VFORK)),
        ("settls", base(CLONE_SETTLS | CLONE_PIDFD)),
        (
            "into_cgroup",
            with(CLONE_INTO_CGROUP | CLONE_PIDFD, &|c| {
                c.cgroup = Cgroup::Valid
            }),
        ),
        ("set_tid_in_use", with(0, &|c| c.set_tid = SetTid::InUse(1))),
        ("pidfd_bad", with(CLONE_PIDFD, &|c| c.pidfd = Pidfd::Bad)),
        (
            "pidfd_same_parent_tid",
            with(CLONE_PIDFD | CLONE_PARENT_SETTID, &|c| {
                c.pidfd = Pidfd::SameAsParentTid
            }),
        ),
        ("high_bit45", base(1 << 45)),
        ("stack_valid", with(0, &|c| c.stack = Stack::Valid)),
        ("stack_kernel", with(0, &|c| c.stack = Stack::KernelAddress)),
    ]
}

fn seed_programs() -> Vec<(&'static str, WaitProgram)> {
    use WaitCall::*;
    let w = |call, opts, node| Op::Wait { call, opts, node };
    let (nh, ex) = (WaitOpts::WNOHANG, WaitOpts::WEXITED);
    let d = |hidden| Op::Spawn {
        parent: Who::Driver,
        hidden,
    };
    vec![
        (
            "no_children",
            WaitProgram {
                ops: vec![w(WaitpidAny, nh, 0), w(WaitidAll, ex | nh, 0)],
            },
        ),
        (
            "plain_exit",
            WaitProgram {
                ops: vec![
                    d(false),
                    Op::Exit { node: 0, code: 5 },
                    w(Wait4Any, 0, 0),
                    w(WaitpidPid, 0, 0),
                ],
            },
        ),
        (
            "hidden_exit",
            WaitProgram {
                ops: vec![
                    d(true),
                    d(false),
                    Op::Exit { node: 0, code: 3 },
                    w(WaitidAll, ex | nh, 0),
                    w(WaitidPidfd, ex, 0),
                    w(Wait4Any, nh, 1),
                ],
            },
        ),
        (
            "subreaper_orphan",
            WaitProgram {
                ops: vec![
                    Op::Subreaper,
                    d(false),
                    Op::Spawn {
                        parent: Who::Node(0),
                        hidden: true,
                    },
                    Op::Exit { node: 0, code: 1 },
                    w(WaitpidAny, 0, 0),
                    Op::Exit { node: 1, code: 2 },
                    w(WaitidAll, ex | nh, 1),
                    w(WaitidPid, ex, 1),
                ],
            },
        ),
        (
            "stop_cont",
            WaitProgram {
                ops: vec![
                    d(false),
                    Op::Stop { node: 0 },
                    w(WaitpidAny, WaitOpts::WUNTRACED | nh, 0),
                    Op::Cont { node: 0 },
                    w(WaitidAll, WaitOpts::WCONTINUED | nh, 0),
                    Op::Kill { node: 0 },
                    w(Wait, 0, 0),
                ],
            },
        ),
        (
            "pgid",
            WaitProgram {
                ops: vec![
                    d(false),
                    d(true),
                    Op::Setpgid { node: 0, own: true },
                    Op::Setpgid { node: 1, own: true },
                    Op::Exit { node: 0, code: 4 },
                    Op::Exit { node: 1, code: 6 },
                    w(WaitpidNegPgid, nh, 1),
                    w(WaitidPgid, ex | nh, 0),
                    w(WaitpidZero, nh, 0),
                    w(Wait4Pid, 0, 1),
                ],
            },
        ),
        (
            "exec",
            WaitProgram {
                ops: vec![
                    d(true),
                    Op::Exec { node: 0 },
                    Op::Setpgid { node: 0, own: true },
                    Op::Exit { node: 0, code: 9 },
                    w(WaitpidAny, nh, 0),
                    w(WaitidPid, ex | WaitOpts::WNOWAIT, 0),
                    w(Wait4Pid, 0, 0),
                ],
            },
        ),
        (
            "no_subreaper_orphan",
            WaitProgram {
                ops: vec![
                    d(false),
                    Op::Spawn {
                        parent: Who::Node(0),
                        hidden: false,
                    },
                    Op::Kill { node: 0 },
                    w(WaitidPid, ex, 1),
                    w(WaitpidAny, 0, 0),
                ],
            },
        ),
    ]
}

fn seeds() {
    let root = repo().join("fuzz/corpus");
    for (name, case) in seed_cases() {
        let p = root.join("clone3_flags").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, fz::encode_clone3(&case)).unwrap();
    }
    for (name, prog) in seed_programs() {
        let p = root.join("wait_sequence").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, fz::encode_program(&prog)).unwrap();
    }
    println!(
        "wrote {} + {} seeds under {}",
        seed_cases().len(),
        seed_programs().len(),
        root.display()
    );
}

/// Iterations/s of `f` over `n` iterations.
fn rate(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Iterations/s of `f` and of the raw loop over `n` iterations each, run in
/// alternating blocks of [`BLOCK`] so that both see the same load.
fn paired(n: usize, mut f: impl FnMut(usize)) -> (f64, f64) {
    let (mut tf, mut tr) = (Duration::ZERO, Duration::ZERO);
    let mut i = 0;
    while i < n {
        let k = BLOCK.min(n - i);
        let t = Instant::now();
        for _ in 0..k {
            raw_once();
        }
        tr += t.elapsed();
        let t = Instant::now();
        for j in i..i + k {
            f(j);
        }
        tf += t.elapsed();
        i += k;
    }
    (n as f64 / tf.as_secs_f64(), n as f64 / tr.as_secs_f64())
}

const BLOCK: usize = 50;

fn raw_once() {
    let sp = clone3(
        &Clone3Request::new(CLONE_PIDFD, cases::sys::signal::SIGCHLD as u64),
        Program::Exit(0),
    )
    .expect("clone3");
    let t = WaitTarget::pid(sp.pid);
    let r = wait(WaitCall::WaitidPid, t, WaitOpts(WaitOpts::WEXITED));
    assert!(matches!(r, cases::sys::wait::WaitOutcome::Reported { .. }));
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Each line (an input set in one mode) is measured in every round against
/// the raw loop, interleaved in blocks of 50 iterations, so that load from
/// other users of the machine hits both alike; a round's ratio is the line's
/// rate over its raw rate. Printed: median rate, median ratio and the
/// lowest and highest ratio over the rounds.
fn bench(iters: usize, rounds: usize, corpus: Option<String>) {
    // As the fuzz targets' init hook does: the worker exists from the start.
    fz::init();
    let c = fz::ctx();
    // The same call as the raw loop; the inputs whose clone3 creates a child
    // (the expensive, interesting path; some go through a disposable caller
    // and cost two forks); the whole seed corpus as a mix.
    let all: Vec<Vec<u8>> = seed_cases()
        .into_iter()
        .map(|(_, k)| fz::encode_clone3(&k))
        .collect();
    let decoded = |d: &Vec<u8>| {
        let mut k = fz::decode_clone3(d, c);
        k.normalise(&c.env);
        k
    };
    let creating: Vec<Vec<u8>> = all
        .iter()
        .filter(|d| {
            matches!(
                clone3::expected(&decoded(d), &c.env).verdict,
                cases::model::Verdict::Created
            )
        })
        .cloned()
        .collect();
    let plain = vec![fz::encode_clone3(&base(CLONE_PIDFD))];
    // A campaign's corpus, as its mix of inputs.
    let extra: Vec<Vec<u8>> = corpus
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap_or_else(|e| panic!("{d}: {e}")))
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    let mut sets: Vec<(&str, &Vec<Vec<u8>>)> = vec![
        ("the same call (CLONE_PIDFD, exit 7)", &plain),
        ("inputs that create a child", &creating),
        ("whole seed corpus", &all),
    ];
    if !extra.is_empty() {
        sets.push(("--corpus", &extra));
    }
    // Warm up in both modes.
    for on in [false, true] {
        c.set_inprocess(on);
        for d in all.iter().chain(&extra) {
            fz::clone3_one(d);
        }
    }
    raw_once();
    let load = || {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let load_before = load();
    let mut raw = Vec::new();
    // [set][mode] -> (rates, ratios)
    let mut res: Vec<[(Vec<f64>, Vec<f64>); 2]> = sets.iter().map(|_| Default::default()).collect();
    for _ in 0..rounds {
        for (k, (_, set)) in sets.iter().enumerate() {
            for (m, on) in [(0, true), (1, false)] {
                c.set_inprocess(on);
                let (f, r) = paired(iters, |i| {
                    fz::clone3_one(&set[i % set.len()]);
                });
                raw.push(r);
                res[k][m].0.push(f);
                res[k][m].1.push(f / r);
            }
        }
    }
    c.set_inprocess(true);
    let echo = rate(iters, |_| {
        c.call(b"-", &String::new);
    });
    let here = |set: &Vec<Vec<u8>>| {
        set.iter()
            .filter(|d| c.mode_for(&decoded(d)).0 == fz::Mode::InProcess)
            .count()
    };
    println!(
        "kernel {}, {rounds} rounds x {iters} iterations per line, each against the raw loop in alternating blocks of {BLOCK}",
        cases::sys::proc::kernel_release()
    );
    println!(
        "raw loop (clone3 CLONE_PIDFD + _exit + waitid(P_PID)): median {:.0} it/s",
        median(&mut raw)
    );
    println!("clone3_flags: median it/s, ratio to the raw loop: median [lowest, highest]");
    println!(
        "  {:<50} {:>27}   {:>27}",
        "", "in-process mode", "worker only"
    );
    for (k, (name, set)) in sets.iter().enumerate() {
        let mut col = String::new();
        for (rates, ratios) in res[k].iter_mut() {
            let f = median(rates);
            let q = median(ratios);
            let (lo, hi) = (ratios[0], ratios[ratios.len() - 1]);
            col.push_str(&format!("   {f:6.0}  {q:.2} [{lo:.2}, {hi:.2}]"));
        }
        println!(
            "  {:<50}{col}",
            format!("{name} ({}/{} in process)", here(set), set.len())
        );
    }
    println!("(worker round trip with hygiene checks, no work: {echo:.0} it/s; load average before {load_before}, after {})", load());
}

fn main() {
    let cli = <Cli as clap::Parser>::parse();
    match cli.command {
        Command::Print { target, artifact } => print!("{}", describe(&load(target, &artifact))),
        Command::Run { target, artifact } => {
            let i = load(target, &artifact);
            print!("{}", describe(&i));
            match verdict(&i) {
                Ok(s) => println!("PASS: {s}"),
                Err(e) => {
                    println!("FAIL:\n{e}");
                    std::process::exit(1)
                }
            }
        }
        Command::Regress {
            target,
            artifact,
            id,
            finding,
        } => regress(target, &artifact, id, finding),
        Command::Regressions => {
            if !regressions() {
                std::process::exit(1)
            }
        }
        Command::Seeds => seeds(),
        Command::Bench {
            iters,
            rounds,
            corpus,
        } => bench(iters, rounds, corpus),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_commands_parse_as_documented() {
        let c = Cli::try_parse_from([
            "wcfuzz",
            "regress",
            "clone3_flags",
            "a/crash-1",
            "--id",
            "x",
            "--finding",
            "f",
        ])
        .unwrap();
        assert!(
            matches!(c.command, Command::Regress { target: Target::Clone3Flags, ref id, ref finding, .. } if id.as_deref() == Some("x") && finding.as_deref() == Some("f"))
        );
        let c = Cli::try_parse_from(["wcfuzz", "bench", "--iters", "10"]).unwrap();
        assert!(matches!(
            c.command,
            Command::Bench {
                iters: 10,
                rounds: 5,
                corpus: None
            }
        ));
        assert!(matches!(
            Cli::try_parse_from(["wcfuzz", "run", "wait_sequence", "x"])
                .unwrap()
                .command,
            Command::Run {
                target: Target::WaitSequence,
                ..
            }
        ));
        assert!(Cli::try_parse_from(["wcfuzz", "print", "no_such_target", "x"]).is_err());
        assert!(Cli::try_parse_from(["wcfuzz", "print", "clone3_flags"]).is_err());
        assert!(Cli::try_parse_from(["wcfuzz"]).is_err());
    }

    #[test]
    fn repo_is_the_repository_root() {
        assert!(repo().join("cases/regressions").is_dir());
    }
}
