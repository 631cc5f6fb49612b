//! `runner coverage`: the kernel lines the case table reaches, from KCOV (docs/coverage.md).
//!
//! The table runs on a KCOV kernel (a `keep_vmlinux` profile such as wait-pid-6.12-kcov)
//! through the ordinary run loop with `WAITCONF_KCOV_DIR` set: every case process and its
//! children record their PCs (`cases/src/sys/kcov.rs`) into one file per case. Those PCs are
//! matched against the kernel's KCOV sites ([`crate::symbolize`]) and written as
//! `coverage.json` (per function of the wait, clone and exit paths: lines reached and missed,
//! the rows reaching each line, the seed patch's own lines first), `coverage.info` (lcov) and
//! `html/` (genhtml).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::symbolize::{Frame, Sites};

/// The functions of the wait, clone and exit paths the report is about (issue 10).
pub const FUNCTIONS: &[&str] = &[
    "eligible_child",
    "wait_consider_task",
    "do_wait",
    "__do_wait",
    "wait_task_zombie",
    "wait_task_stopped",
    "wait_task_continued",
    "kernel_waitid_prepare",
    "kernel_wait4",
    "ptrace_do_wait",
    "copy_clone_args_from_user",
    "clone3_args_valid",
    "copy_process",
    "exit_notify",
    "forget_original_parent",
    "find_new_reaper",
    "reparent_leader",
    "do_notify_parent",
    "zap_pid_ns_processes",
];

/// One case's recording, as `cases/src/sys/kcov.rs` writes it.
#[derive(Debug, Deserialize)]
pub struct CaseCoverage {
    pub case: String,
    #[serde(default)]
    pub tasks: usize,
    #[serde(default)]
    pub unrecorded: usize,
    #[serde(default)]
    pub overflowed: usize,
    pub pcs: Vec<u64>,
}

/// A source line: file (as the line tables name it) and number.
pub type Line = (String, u32);

/// One line of a function in the report.
#[derive(Debug, Serialize, PartialEq)]
pub struct LineReport {
    pub file: String,
    pub line: u32,
    /// Added by the seed patch.
    pub seed: bool,
    pub reached: bool,
    /// Indices into the report's `rows`.
    pub rows: Vec<usize>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct FunctionReport {
    pub name: String,
    /// Lines with at least one KCOV site.
    pub lines: usize,
    pub reached: usize,
    pub percent: f64,
    /// The seed's lines first, then the others in file order.
    pub detail: Vec<LineReport>,
}

/// What was recorded, summed over the cases.
#[derive(Debug, Default, Serialize)]
pub struct Recording {
    pub cases: usize,
    pub tasks: usize,
    pub unrecorded_tasks: usize,
    pub overflowed_tasks: usize,
    pub unique_pcs: usize,
    /// PCs that are no KCOV site of the vmlinux (should be none).
    pub pcs_without_site: usize,
    /// Cases with children that did not record, or a full buffer.
    pub incomplete_cases: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub kernel: String,
    pub vmlinux: PathBuf,
    pub recording: Recording,
    /// Row names, in the order the per-line `rows` indices refer to.
    pub rows: Vec<String>,
    pub functions: Vec<FunctionReport>,
    /// Per source file with a reached site: lines with sites, lines reached.
    pub files: BTreeMap<String, (usize, usize)>,
}

/// The lines a patch adds, per file (`b/` path as in the patch).
pub fn added_lines(patch: &str) -> BTreeSet<Line> {
    let mut out = BTreeSet::new();
    let mut file = String::new();
    let mut next = 0u32;
    for l in patch.lines() {
        if let Some(p) = l.strip_prefix("+++ ") {
            file = p.trim_start_matches("b/").to_owned();
        } else if let Some(h) = l.strip_prefix("@@ ") {
            next = h
                .split_whitespace()
                .find_map(|w| w.strip_prefix('+'))
                .and_then(|w| w.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if l.starts_with('+') {
            out.insert((file.clone(), next));
            next += 1;
        } else if l.starts_with(' ') || l.is_empty() {
            next += 1;
        }
    }
    out
}

/// Whether `file` (as the line tables name it) is the repository path `rel`.
fn same_file(file: &str, rel: &str) -> bool {
    file == rel || file.ends_with(&format!("/{rel}"))
}

/// For each site PC: the cases that reached it.
fn reach(cases: &[CaseCoverage], sites: &Sites, rec: &mut Recording) -> BTreeMap<u64, Vec<usize>> {
    let mut by_pc: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let mut all = BTreeSet::new();
    for (i, c) in cases.iter().enumerate() {
        rec.tasks += c.tasks;
        rec.unrecorded_tasks += c.unrecorded;
        rec.overflowed_tasks += c.overflowed;
        if c.unrecorded > 0 || c.overflowed > 0 {
            rec.incomplete_cases.push(c.case.clone());
        }
        for pc in &c.pcs {
            all.insert(*pc);
            if sites.sites.contains_key(pc) {
                by_pc.entry(*pc).or_default().push(i);
            }
        }
    }
    rec.cases = cases.len();
    rec.unique_pcs = all.len();
    rec.pcs_without_site = all.iter().filter(|p| !sites.sites.contains_key(p)).count();
    by_pc
}

/// The report of one function: its lines are the lines of the frames named `name` in every
/// site's inline chain.
pub fn function_report(
    name: &str,
    sites: &Sites,
    reached: &BTreeMap<u64, Vec<usize>>,
    seed: &BTreeSet<Line>,
) -> FunctionReport {
    let mut lines: BTreeMap<Line, BTreeSet<usize>> = BTreeMap::new();
    let mut hit: BTreeSet<Line> = BTreeSet::new();
    for (pc, frames) in &sites.sites {
        for f in frames.iter().filter(|f| f.func == name && f.line > 0) {
            let key = (f.file.clone(), f.line);
            let rows = lines.entry(key.clone()).or_default();
            if let Some(r) = reached.get(pc) {
                rows.extend(r);
                hit.insert(key);
            }
        }
    }
    let is_seed = |(file, line): &Line| seed.iter().any(|(f, l)| l == line && same_file(file, f));
    let mut detail: Vec<LineReport> = lines
        .into_iter()
        .map(|(key, rows)| LineReport {
            seed: is_seed(&key),
            reached: hit.contains(&key),
            file: key.0,
            line: key.1,
            rows: rows.into_iter().collect(),
        })
        .collect();
    detail.sort_by_key(|l| !l.seed);
    let n = detail.len();
    let r = detail.iter().filter(|l| l.reached).count();
    FunctionReport {
        name: name.to_owned(),
        lines: n,
        reached: r,
        percent: if n == 0 {
            0.0
        } else {
            (1000.0 * r as f64 / n as f64).round() / 10.0
        },
        detail,
    }
}

/// Lines with sites and lines reached, per file with anything reached (the innermost frame of
/// each site).
fn file_lines(
    sites: &Sites,
    reached: &BTreeMap<u64, Vec<usize>>,
) -> BTreeMap<String, BTreeMap<u32, usize>> {
    let mut files: BTreeMap<String, BTreeMap<u32, BTreeSet<usize>>> = BTreeMap::new();
    for (pc, frames) in &sites.sites {
        let Some(Frame { file, line, .. }) = frames.first() else {
            continue;
        };
        if *line == 0 || file == "??" {
            continue;
        }
        let rows = files
            .entry(file.clone())
            .or_default()
            .entry(*line)
            .or_default();
        if let Some(r) = reached.get(pc) {
            rows.extend(r);
        }
    }
    files
        .into_iter()
        .filter(|(_, l)| l.values().any(|r| !r.is_empty()))
        .map(|(f, l)| (f, l.into_iter().map(|(n, r)| (n, r.len())).collect()))
        .collect()
}

/// The lcov tracefile: per file, DA:line,rows reaching it; FN/FNDA for the listed functions.
pub fn lcov(
    files: &BTreeMap<String, BTreeMap<u32, usize>>,
    functions: &[FunctionReport],
) -> String {
    let mut s = String::from("TN:wait-conformance\n");
    for (file, lines) in files {
        s.push_str(&format!("SF:{file}\n"));
        for f in functions {
            if let Some(first) = f
                .detail
                .iter()
                .filter(|l| &l.file == file)
                .map(|l| l.line)
                .min()
            {
                let rows: BTreeSet<usize> = f
                    .detail
                    .iter()
                    .filter(|l| &l.file == file)
                    .flat_map(|l| l.rows.iter().copied())
                    .collect();
                s.push_str(&format!(
                    "FN:{first},{}\nFNDA:{},{}\n",
                    f.name,
                    rows.len(),
                    f.name
                ));
            }
        }
        for (n, rows) in lines {
            s.push_str(&format!("DA:{n},{rows}\n"));
        }
        let hit = lines.values().filter(|r| **r > 0).count();
        s.push_str(&format!("LF:{}\nLH:{hit}\nend_of_record\n", lines.len()));
    }
    s
}

/// The per-function table of coverage.txt.
pub fn summary(functions: &[FunctionReport]) -> String {
    let mut s = format!(
        "{:<28} {:>6} {:>8} {:>7}  seed lines reached\n",
        "function", "lines", "reached", "%"
    );
    for f in functions {
        let seed: Vec<&LineReport> = f.detail.iter().filter(|l| l.seed).collect();
        let seed_txt = if seed.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{}/{}",
                seed.iter().filter(|l| l.reached).count(),
                seed.len()
            )
        };
        s.push_str(&format!(
            "{:<28} {:>6} {:>8} {:>6.1}%  {seed_txt}\n",
            f.name, f.lines, f.reached, f.percent
        ));
    }
    s
}

/// The missed lines of each function, with the source text.
pub fn missed_text(functions: &[FunctionReport], source_root: &Path) -> String {
    let mut cache: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut s = String::new();
    for f in functions {
        let missed: Vec<&LineReport> = f.detail.iter().filter(|l| !l.reached).collect();
        if missed.is_empty() {
            continue;
        }
        s.push_str(&format!("\n{} ({} missed):\n", f.name, missed.len()));
        for l in missed {
            let text = cache
                .entry(l.file.clone())
                .or_insert_with(|| {
                    std::fs::read_to_string(resolve(&l.file, source_root))
                        .map(|t| t.lines().map(str::to_owned).collect())
                        .unwrap_or_default()
                })
                .get(l.line as usize - 1)
                .map(|t| t.trim().to_owned())
                .unwrap_or_default();
            let seed = if l.seed { " [seed]" } else { "" };
            s.push_str(&format!("  {}:{}{seed}  {text}\n", short(&l.file), l.line));
        }
    }
    s
}

fn short(file: &str) -> &str {
    file.rsplit_once("/src/").map(|(_, r)| r).unwrap_or(file)
}

fn resolve(file: &str, source_root: &Path) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_owned()
    } else {
        source_root.join(p)
    }
}

/// Reads every `<dir>/**/kcov/*.json` a run left (one file per case; a later VM's rerun of a
/// case replaces nothing, its file has the same name in its own VM directory: the last wins).
pub fn read_cases(kcov_dir: &Path) -> Result<Vec<CaseCoverage>> {
    let mut by_case: BTreeMap<String, CaseCoverage> = BTreeMap::new();
    let rd = std::fs::read_dir(kcov_dir)
        .with_context(|| format!("no coverage was written ({})", kcov_dir.display()))?;
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            let c: CaseCoverage = serde_json::from_slice(&std::fs::read(&p)?)
                .with_context(|| p.display().to_string())?;
            by_case.insert(c.case.clone(), c);
        }
    }
    if by_case.is_empty() {
        bail!("no case wrote coverage into {}", kcov_dir.display());
    }
    Ok(by_case.into_values().collect())
}

/// Builds the report from the cases' recordings.
pub fn build(
    kernel: &str,
    vmlinux: &Path,
    sites: &Sites,
    cases: &[CaseCoverage],
    seed: &BTreeSet<Line>,
) -> (Report, BTreeMap<String, BTreeMap<u32, usize>>) {
    let mut rec = Recording::default();
    let reached = reach(cases, sites, &mut rec);
    let functions: Vec<FunctionReport> = FUNCTIONS
        .iter()
        .map(|f| function_report(f, sites, &reached, seed))
        .collect();
    let files = file_lines(sites, &reached);
    let report = Report {
        kernel: kernel.to_owned(),
        vmlinux: vmlinux.to_owned(),
        recording: rec,
        rows: cases.iter().map(|c| c.case.clone()).collect(),
        functions,
        files: files
            .iter()
            .map(|(f, l)| (f.clone(), (l.len(), l.values().filter(|r| **r > 0).count())))
            .collect(),
    };
    (report, files)
}

/// Writes coverage.json, coverage.txt, coverage.info and html/ (when genhtml is there).
pub fn write(
    out: &Path,
    report: &Report,
    files: &BTreeMap<String, BTreeMap<u32, usize>>,
    source_root: &Path,
) -> Result<()> {
    std::fs::write(
        out.join("coverage.json"),
        serde_json::to_vec_pretty(report)?,
    )?;
    let mut txt = format!(
        "kernel {}: {} rows, {} tasks recorded ({} not recorded, {} with a full buffer), {} unique PCs ({} not a site)\n\n",
        report.kernel,
        report.recording.cases,
        report.recording.tasks,
        report.recording.unrecorded_tasks,
        report.recording.overflowed_tasks,
        report.recording.unique_pcs,
        report.recording.pcs_without_site
    );
    txt.push_str(&summary(&report.functions));
    txt.push_str(&missed_text(&report.functions, source_root));
    std::fs::write(out.join("coverage.txt"), txt)?;
    let info = out.join("coverage.info");
    std::fs::write(&info, lcov(files, &report.functions))?;
    genhtml(&info, &out.join("html"), source_root)
}

fn genhtml(info: &Path, html: &Path, source_root: &Path) -> Result<()> {
    let st = Command::new("genhtml")
        .arg("--quiet")
        .arg("--prefix")
        .arg(source_root)
        // A file the line tables name but the kept tree lacks (generated sources) is listed
        // without its text.
        .args(["--ignore-errors", "source"])
        .arg("-o")
        .arg(html)
        .arg(info)
        .current_dir(source_root)
        .status();
    match st {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("genhtml failed ({s})"),
        Err(e) => bail!("genhtml (Debian's lcov package) is not installed: {e}"),
    }
}

/// Why `runner coverage` stopped.
pub enum Error {
    Usage(String),
    Infra(anyhow::Error),
}

/// The guest's timeouts are multiplied by this unless `--case-env` sets its own: a KCOV kernel
/// under TCG is slower.
const TIMEOUT_MUL: &str = "4";

/// `runner coverage`: the run, then the report. Returns the exit code.
pub fn command(
    profile: &crate::profile::Profile,
    paths: &crate::paths::Paths,
    out: &Path,
    mut opts: crate::run::RunOpts,
) -> Result<i32, Error> {
    let spec = match &profile.source {
        Some(s) if s.keep_vmlinux => s,
        _ => {
            return Err(Error::Usage(format!(
                "profile {} keeps no vmlinux: coverage needs a KCOV profile with \
                 keep_vmlinux = true (wait-pid-6.12-kcov)",
                profile.name
            )))
        }
    };
    std::fs::create_dir_all(out).map_err(|e| Error::Usage(format!("{}: {e}", out.display())))?;
    let out = std::fs::canonicalize(out).map_err(|e| Error::Usage(e.to_string()))?;
    let kcov_dir = out.join("guest").join("kcov");
    opts.case_env.push((
        protocol::env::WAITCONF_KCOV_DIR.into(),
        kcov_dir.display().to_string(),
    ));
    if !opts
        .case_env
        .iter()
        .any(|(k, _)| k == protocol::env::WAITCONF_TIMEOUT_MUL)
    {
        opts.case_env.push((
            protocol::env::WAITCONF_TIMEOUT_MUL.into(),
            TIMEOUT_MUL.into(),
        ));
    }
    let results = crate::run::run_profile(profile, paths, &out, &opts).map_err(|e| match e {
        crate::run::RunError::Usage(m) => Error::Usage(m),
    })?;
    crate::progress!(
        "coverage: the run's verdict {} (exit {})",
        results.verdict,
        results.exit_code
    );
    let r = report(profile, paths, spec, &out, &kcov_dir).map_err(Error::Infra)?;
    print!("{}", summary(&r.functions));
    Ok(crate::gate::EXIT_OK)
}

/// The kernel lines a fuzz campaign reached, for fuzz.json (the full report, in the table's
/// format, is in `<out>/kernel-coverage/`).
#[derive(Debug, Clone, Serialize)]
pub struct KernelLines {
    /// Whether the PCs were fed to libFuzzer (extra counters) or only recorded.
    pub feedback: bool,
    pub inputs: u64,
    pub unique_pcs: usize,
    /// Source lines with a KCOV site that the campaign reached, over all files.
    pub lines_reached: usize,
    /// Per listed function: [lines reached, lines].
    pub functions: BTreeMap<String, [usize; 2]>,
    pub report_dir: PathBuf,
}

/// After a campaign on a `keep_vmlinux` profile: symbolise what it recorded
/// (`<guest>/kcov/<target>.json`) into `<out>/kernel-coverage/`.
pub fn fuzz_lines(
    profile: &crate::profile::Profile,
    paths: &crate::paths::Paths,
    out: &Path,
    kcov_dir: &Path,
) -> Result<KernelLines> {
    let spec = profile.source.as_ref().context("not a source profile")?;
    let dir = out.join("kernel-coverage");
    std::fs::create_dir_all(&dir)?;
    let r = report(profile, paths, spec, &dir, kcov_dir)?;
    let rec: serde_json::Value = std::fs::read_dir(kcov_dir)?
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "json"))
        .and_then(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .unwrap_or_default();
    Ok(KernelLines {
        feedback: rec["feedback"].as_bool().unwrap_or(false),
        inputs: rec["inputs"].as_u64().unwrap_or(0),
        unique_pcs: r.recording.unique_pcs,
        lines_reached: r.files.values().map(|(_, hit)| hit).sum(),
        functions: r
            .functions
            .iter()
            .map(|f| (f.name.clone(), [f.reached, f.lines]))
            .collect(),
        report_dir: dir,
    })
}

/// Symbolises the run's recordings and writes the report files.
fn report(
    profile: &crate::profile::Profile,
    paths: &crate::paths::Paths,
    spec: &crate::profile::SourceSpec,
    out: &Path,
    kcov_dir: &Path,
) -> Result<Report> {
    let key = crate::kernel::source_cache_key(profile, &paths.vm_images)?;
    let kdir = paths.kernels().join(format!("{}-{key}", profile.name));
    let vmlinux = kdir.join("vmlinux");
    let source_root = paths
        .cache
        .join("trees")
        .join(format!("{}-{key}", profile.name))
        .join("src");
    let cases = read_cases(kcov_dir)?;
    let sites = crate::symbolize::sites(&vmlinux, &kdir.join("kcov-sites.json"))?;
    let mut seed = BTreeSet::new();
    for rel in &spec.patches {
        let text = std::fs::read_to_string(paths.vm_images.join(rel))?;
        seed.extend(added_lines(&text));
    }
    let (report, files) = build(&profile.name, &vmlinux, &sites, &cases, &seed);
    write(out, &report, &files, &source_root)?;
    crate::progress!(
        "coverage: {} rows, {} unique PCs; {} (lcov: coverage.info, html/index.html)",
        report.recording.cases,
        report.recording.unique_pcs,
        out.join("coverage.txt").display()
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(func: &str, line: u32) -> Frame {
        Frame {
            func: func.into(),
            file: "/t/src/kernel/exit.c".into(),
            line,
        }
    }

    #[test]
    fn patch_added_lines_are_numbered_in_the_new_file() {
        let patch = "\
+++ b/kernel/exit.c
@@ -1121,6 +1121,9 @@ static int eligible_child(struct wait_opts *wo, bool ptrace, struct task_struct *p)
 \t\treturn 0;
 
+\tif ((p->flags & PF_WAIT_PID) && wo->wo_type != PIDTYPE_PID)
+\t\treturn 0;
+
 \t/*
";
        let got = added_lines(patch);
        let want: BTreeSet<Line> = [1123, 1124, 1125]
            .into_iter()
            .map(|n| ("kernel/exit.c".to_owned(), n))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_function_owns_the_lines_of_its_frames_inlined_or_not() {
        let mut sites = Sites::default();
        // Site 1: eligible_child inlined into wait_consider_task.
        sites.sites.insert(
            0x10,
            vec![
                frame("eligible_child", 1123),
                frame("wait_consider_task", 1390),
            ],
        );
        sites
            .sites
            .insert(0x20, vec![frame("eligible_child", 1130)]);
        sites
            .sites
            .insert(0x30, vec![frame("wait_consider_task", 1400)]);
        let reached: BTreeMap<u64, Vec<usize>> = [(0x10, vec![0, 2])].into_iter().collect();
        let seed: BTreeSet<Line> = [("kernel/exit.c".to_owned(), 1123)].into_iter().collect();
        let e = function_report("eligible_child", &sites, &reached, &seed);
        assert_eq!((e.lines, e.reached, e.percent), (2, 1, 50.0));
        assert!(e.detail[0].seed && e.detail[0].reached);
        assert_eq!(e.detail[0].rows, vec![0, 2]);
        assert!(!e.detail[1].reached && e.detail[1].rows.is_empty());
        let w = function_report("wait_consider_task", &sites, &reached, &seed);
        assert_eq!((w.lines, w.reached), (2, 1));
    }

    #[test]
    fn lcov_counts_rows_per_line_and_reached_files_only() {
        let mut sites = Sites::default();
        sites.sites.insert(0x10, vec![frame("f", 5)]);
        sites.sites.insert(0x20, vec![frame("f", 6)]);
        sites.sites.insert(
            0x30,
            vec![Frame {
                func: "g".into(),
                file: "/t/src/kernel/other.c".into(),
                line: 1,
            }],
        );
        let reached: BTreeMap<u64, Vec<usize>> = [(0x10, vec![0, 1])].into_iter().collect();
        let files = file_lines(&sites, &reached);
        assert_eq!(files.len(), 1, "other.c has nothing reached");
        let f = function_report("f", &sites, &reached, &BTreeSet::new());
        let text = lcov(&files, &[f]);
        assert!(text
            .contains("SF:/t/src/kernel/exit.c\nFN:5,f\nFNDA:2,f\nDA:5,2\nDA:6,0\nLF:2\nLH:1\n"));
    }
}
