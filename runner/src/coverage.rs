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
    /// Reached by a row of the table.
    pub reached: bool,
    /// Indices into the report's `rows` (the table's rows, then the campaigns).
    pub rows: Vec<usize>,
    /// Why a line no row or campaign reaches is not reachable from user space here (from
    /// vm-images/coverage/<profile>.toml).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explained: Option<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct FunctionReport {
    pub name: String,
    /// Lines with at least one KCOV site.
    pub lines: usize,
    /// Lines the table reaches.
    pub reached: usize,
    pub percent: f64,
    /// Lines the table or a campaign reaches.
    pub with_campaigns: usize,
    /// Lines reached by neither, with an explanation / without one.
    pub explained: usize,
    pub unexplained: usize,
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
    /// Row names, in the order the per-line `rows` indices refer to: the table's rows, then
    /// one `campaign:<target>` per --campaign.
    pub rows: Vec<String>,
    /// How many of `rows` are the table's.
    pub table_rows: usize,
    /// The explanations file read (absent: every missed line is unexplained).
    pub explanations: PathBuf,
    /// Missed lines of the listed functions with no explanation: `function file:line`.
    pub unexplained: Vec<String>,
    /// Explanations that no longer fit: the line is reached, is no line of the function, or
    /// its source text differs.
    pub stale_explanations: Vec<String>,
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

/// Where the lines of a tree move when `patch` is applied over it: each line below a hunk
/// moves by what the hunks before it added or removed (a line inside a hunk keeps the offset
/// of the hunks before it). The seed's lines, numbered after `patches`, go through the
/// profile's `extra_patches` this way.
pub fn shift_through(lines: BTreeSet<Line>, patch: &str) -> BTreeSet<Line> {
    // Per file: (old start, old length, new length - old length).
    let mut hunks: BTreeMap<String, Vec<(u32, u32, i64)>> = BTreeMap::new();
    let mut file = String::new();
    for l in patch.lines() {
        if let Some(p) = l.strip_prefix("+++ ") {
            file = p
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_start_matches("b/")
                .to_owned();
        } else if let Some(h) = l.strip_prefix("@@ ") {
            let range = |sign: char| -> Option<(u32, u32)> {
                let w = h.split_whitespace().find_map(|w| w.strip_prefix(sign))?;
                let mut it = w.split(',');
                let start = it.next()?.parse().ok()?;
                let len = it.next().map_or(Some(1), |n| n.parse().ok())?;
                Some((start, len))
            };
            if let (Some((os, ol)), Some((_, nl))) = (range('-'), range('+')) {
                hunks.entry(file.clone()).or_default().push((
                    os,
                    ol,
                    i64::from(nl) - i64::from(ol),
                ));
            }
        }
    }
    lines
        .into_iter()
        .map(|(f, n)| {
            let delta: i64 = hunks
                .iter()
                .filter(|(hf, _)| same_file(&f, hf))
                .flat_map(|(_, hs)| hs.iter())
                .filter(|(os, ol, _)| os + ol <= n)
                .map(|(_, _, d)| d)
                .sum();
            let moved = (i64::from(n) + delta).max(1) as u32;
            (f, moved)
        })
        .collect()
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
/// `reached` maps a site to the rows reaching it; indices from `table_rows` on are campaigns.
pub fn function_report(
    name: &str,
    sites: &Sites,
    reached: &BTreeMap<u64, Vec<usize>>,
    table_rows: usize,
    seed: &BTreeSet<Line>,
) -> FunctionReport {
    let mut lines: BTreeMap<Line, BTreeSet<usize>> = BTreeMap::new();
    for (pc, frames) in &sites.sites {
        for f in frames.iter().filter(|f| f.func == name && f.line > 0) {
            let rows = lines.entry((f.file.clone(), f.line)).or_default();
            if let Some(r) = reached.get(pc) {
                rows.extend(r);
            }
        }
    }
    let is_seed = |(file, line): &Line| seed.iter().any(|(f, l)| l == line && same_file(file, f));
    let mut detail: Vec<LineReport> = lines
        .into_iter()
        .map(|(key, rows)| LineReport {
            seed: is_seed(&key),
            reached: rows.iter().any(|r| *r < table_rows),
            file: key.0,
            line: key.1,
            rows: rows.into_iter().collect(),
            explained: None,
        })
        .collect();
    detail.sort_by_key(|l| !l.seed);
    let n = detail.len();
    let r = detail.iter().filter(|l| l.reached).count();
    let with_campaigns = detail.iter().filter(|l| !l.rows.is_empty()).count();
    FunctionReport {
        name: name.to_owned(),
        lines: n,
        reached: r,
        percent: if n == 0 {
            0.0
        } else {
            (1000.0 * r as f64 / n as f64).round() / 10.0
        },
        with_campaigns,
        explained: 0,
        unexplained: n - with_campaigns,
        detail,
    }
}

/// One entry of vm-images/coverage/<profile>.toml: lines of a function that neither the table
/// nor a campaign reaches, and why.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Explanation {
    pub function: String,
    /// Line numbers in the function's file (the kept tree of the profile).
    pub lines: Vec<u32>,
    /// Text the first line's source contains (checked, so a moved line is noticed).
    #[serde(default)]
    pub text: Option<String>,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplanationFile {
    #[serde(default)]
    unreached: Vec<Explanation>,
}

/// The explanations of a profile; none when the file is absent.
pub fn load_explanations(path: &Path) -> Result<Vec<Explanation>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(toml::from_str::<ExplanationFile>(&t)
            .with_context(|| path.display().to_string())?
            .unreached),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| path.display().to_string()),
    }
}

/// Marks every line no row or campaign reaches with its explanation; returns the missed lines
/// left unexplained and the explanations that do not fit (`source` gives a line's text).
pub fn close_loop(
    functions: &mut [FunctionReport],
    explanations: &[Explanation],
    source: &mut dyn FnMut(&str, u32) -> String,
) -> (Vec<String>, Vec<String>) {
    let mut stale = Vec::new();
    for e in explanations {
        let Some(f) = functions.iter_mut().find(|f| f.name == e.function) else {
            stale.push(format!("{}: not a listed function", e.function));
            continue;
        };
        for (i, n) in e.lines.iter().enumerate() {
            let Some(l) = f.detail.iter_mut().find(|l| l.line == *n) else {
                stale.push(format!(
                    "{} line {n}: not a line of the function",
                    e.function
                ));
                continue;
            };
            if !l.rows.is_empty() {
                stale.push(format!("{} {}:{n}: reached", e.function, short(&l.file)));
                continue;
            }
            if let (0, Some(t)) = (i, &e.text) {
                let have = source(&l.file, *n);
                if !have.contains(t.as_str()) {
                    stale.push(format!(
                        "{} {}:{n}: the source reads {have:?}, not {t:?}",
                        e.function,
                        short(&l.file)
                    ));
                    continue;
                }
            }
            l.explained = Some(e.reason.clone());
        }
    }
    let mut unexplained = Vec::new();
    for f in functions.iter_mut() {
        f.explained = f.detail.iter().filter(|l| l.explained.is_some()).count();
        let before = unexplained.len();
        for l in f
            .detail
            .iter()
            .filter(|l| l.rows.is_empty() && l.explained.is_none())
        {
            unexplained.push(format!("{} {}:{}", f.name, short(&l.file), l.line));
        }
        f.unexplained = unexplained.len() - before;
    }
    (unexplained, stale)
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
        "{:<28} {:>6} {:>8} {:>7} {:>11} {:>9} {:>11}  seed lines reached\n",
        "function", "lines", "table", "%", "+campaigns", "explained", "unexplained"
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
            "{:<28} {:>6} {:>8} {:>6.1}% {:>11} {:>9} {:>11}  {seed_txt}\n",
            f.name, f.lines, f.reached, f.percent, f.with_campaigns, f.explained, f.unexplained
        ));
    }
    s
}

/// A line's source text (trimmed), from the kept tree; files are read once.
pub struct Source {
    root: PathBuf,
    files: BTreeMap<String, Vec<String>>,
}

impl Source {
    pub fn new(root: &Path) -> Source {
        Source {
            root: root.to_owned(),
            files: BTreeMap::new(),
        }
    }

    pub fn line(&mut self, file: &str, line: u32) -> String {
        let root = &self.root;
        self.files
            .entry(file.to_owned())
            .or_insert_with(|| {
                std::fs::read_to_string(resolve(file, root))
                    .map(|t| t.lines().map(str::to_owned).collect())
                    .unwrap_or_default()
            })
            .get((line as usize).saturating_sub(1))
            .map(|t| t.trim().to_owned())
            .unwrap_or_default()
    }
}

/// The lines of each function the table misses, with the source text: reached by a campaign
/// (named), explained (the reason), or UNEXPLAINED.
pub fn missed_text(
    functions: &[FunctionReport],
    rows: &[String],
    table_rows: usize,
    source: &mut Source,
) -> String {
    let mut s = String::new();
    for f in functions {
        let missed: Vec<&LineReport> = f.detail.iter().filter(|l| !l.reached).collect();
        if missed.is_empty() {
            continue;
        }
        s.push_str(&format!(
            "\n{} ({} missed by the table, {} unexplained):\n",
            f.name,
            missed.len(),
            f.unexplained
        ));
        for l in missed {
            let text = source.line(&l.file, l.line);
            let seed = if l.seed { " [seed]" } else { "" };
            s.push_str(&format!("  {}:{}{seed}  {text}\n", short(&l.file), l.line));
            let why = match (&l.explained, l.rows.is_empty()) {
                (_, false) => {
                    let names: Vec<&str> = l
                        .rows
                        .iter()
                        .filter(|r| **r >= table_rows)
                        .filter_map(|r| rows.get(*r).map(String::as_str))
                        .collect();
                    format!("reached by {}", names.join(", "))
                }
                (Some(e), true) => format!("not reachable: {e}"),
                (None, true) => "UNEXPLAINED: no row or campaign reaches it".to_owned(),
            };
            s.push_str(&format!("      -> {why}\n"));
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

/// Builds the report from the recordings: the table's cases, then the campaigns' (one
/// recording each).
pub fn build(
    kernel: &str,
    vmlinux: &Path,
    sites: &Sites,
    cases: &[CaseCoverage],
    table_rows: usize,
    seed: &BTreeSet<Line>,
) -> (Report, BTreeMap<String, BTreeMap<u32, usize>>) {
    let mut rec = Recording::default();
    let reached = reach(cases, sites, &mut rec);
    let functions: Vec<FunctionReport> = FUNCTIONS
        .iter()
        .map(|f| function_report(f, sites, &reached, table_rows, seed))
        .collect();
    let files = file_lines(sites, &reached);
    let report = Report {
        kernel: kernel.to_owned(),
        vmlinux: vmlinux.to_owned(),
        recording: rec,
        rows: cases.iter().map(|c| c.case.clone()).collect(),
        table_rows,
        explanations: PathBuf::new(),
        unexplained: Vec::new(),
        stale_explanations: Vec::new(),
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
    source: &mut Source,
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
    if report.rows.len() > report.table_rows {
        txt.push_str(&format!(
            "campaigns: {}\n",
            report.rows[report.table_rows..].join(", ")
        ));
    }
    txt.push_str(&format!(
        "explanations: {} ({} missed lines unexplained, {} explanations stale)\n\n",
        report.explanations.display(),
        report.unexplained.len(),
        report.stale_explanations.len()
    ));
    txt.push_str(&summary(&report.functions));
    for s in &report.stale_explanations {
        txt.push_str(&format!("stale explanation: {s}\n"));
    }
    txt.push_str(&missed_text(
        &report.functions,
        &report.rows,
        report.table_rows,
        source,
    ));
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

/// How `runner coverage` gets its recordings.
pub struct How {
    /// `runner fuzz` report directories on the same profile.
    pub campaigns: Vec<PathBuf>,
    /// Report from an earlier run's recordings in `<out>/guest/kcov`, without a run.
    pub report_only: bool,
}

/// `runner coverage`: the run, then the report. Returns the exit code.
pub fn command(
    profile: &crate::profile::Profile,
    paths: &crate::paths::Paths,
    out: &Path,
    mut opts: crate::run::RunOpts,
    how: &How,
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
    let mut campaigns = Vec::new();
    for d in &how.campaigns {
        let k = d.join("guest").join("kcov");
        let mut c = read_cases(&k).map_err(|e| {
            Error::Usage(format!(
                "--campaign {}: {e:#} (a `runner fuzz` report directory of a campaign on {})",
                d.display(),
                profile.name
            ))
        })?;
        for r in &mut c {
            r.case = format!("campaign:{} ({})", r.case, d.display());
        }
        campaigns.extend(c);
    }
    if !how.report_only {
        let results =
            crate::run::run_profile(profile, paths, &out, &opts).map_err(|e| match e {
                crate::run::RunError::Usage(m) => Error::Usage(m),
            })?;
        crate::progress!(
            "coverage: the run's verdict {} (exit {})",
            results.verdict,
            results.exit_code
        );
    }
    let r = report(profile, paths, spec, &out, &kcov_dir, campaigns, true).map_err(Error::Infra)?;
    print!("{}", summary(&r.functions));
    for s in &r.stale_explanations {
        crate::progress!("coverage: stale explanation: {s}");
    }
    if r.unexplained.is_empty() && r.stale_explanations.is_empty() {
        return Ok(crate::gate::EXIT_OK);
    }
    crate::progress!(
        "coverage: {} missed line(s) of the listed functions neither reached nor explained, {} \
         stale explanation(s) ({}; see coverage.txt)",
        r.unexplained.len(),
        r.stale_explanations.len(),
        r.explanations.display()
    );
    Ok(crate::gate::EXIT_FAILURES)
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
    let r = report(profile, paths, spec, &dir, kcov_dir, Vec::new(), false)?;
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

/// `vm-images/coverage/<profile>.toml`: why the missed lines of the listed functions are not
/// reachable from user space on that profile.
pub fn explanations_file(
    paths: &crate::paths::Paths,
    profile: &crate::profile::Profile,
) -> PathBuf {
    paths
        .vm_images
        .join("coverage")
        .join(format!("{}.toml", profile.name))
}

/// Symbolises the run's recordings and writes the report files.
/// `campaigns` are extra recordings (after the table's); with `explain`, the profile's
/// explanations are applied (the table's report), else not (a campaign's own report).
fn report(
    profile: &crate::profile::Profile,
    paths: &crate::paths::Paths,
    spec: &crate::profile::SourceSpec,
    out: &Path,
    kcov_dir: &Path,
    campaigns: Vec<CaseCoverage>,
    explain: bool,
) -> Result<Report> {
    let key = crate::kernel::source_cache_key(profile, &paths.vm_images)?;
    let kdir = paths.kernels().join(format!("{}-{key}", profile.name));
    let vmlinux = kdir.join("vmlinux");
    let source_root = paths
        .cache
        .join("trees")
        .join(format!("{}-{key}", profile.name))
        .join("src");
    let mut cases = read_cases(kcov_dir)?;
    let table_rows = cases.len();
    cases.extend(campaigns);
    let sites = crate::symbolize::sites(&vmlinux, &kdir.join("kcov-sites.json"))?;
    let mut seed = BTreeSet::new();
    for rel in &spec.patches {
        let text = std::fs::read_to_string(paths.vm_images.join(rel))?;
        seed.extend(added_lines(&text));
    }
    for rel in &spec.extra_patches {
        let text = std::fs::read_to_string(paths.vm_images.join(rel))?;
        seed = shift_through(seed, &text);
    }
    let (mut report, files) = build(&profile.name, &vmlinux, &sites, &cases, table_rows, &seed);
    let mut source = Source::new(&source_root);
    if explain {
        report.explanations = explanations_file(paths, profile);
        let ex = load_explanations(&report.explanations)?;
        let (unexplained, stale) =
            close_loop(&mut report.functions, &ex, &mut |f, n| source.line(f, n));
        report.unexplained = unexplained;
        report.stale_explanations = stale;
    }
    write(out, &report, &files, &source_root, &mut source)?;
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
        let e = function_report("eligible_child", &sites, &reached, 3, &seed);
        assert_eq!((e.lines, e.reached, e.percent), (2, 1, 50.0));
        assert!(e.detail[0].seed && e.detail[0].reached);
        assert_eq!(e.detail[0].rows, vec![0, 2]);
        assert!(!e.detail[1].reached && e.detail[1].rows.is_empty());
        let w = function_report("wait_consider_task", &sites, &reached, 3, &seed);
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
        let f = function_report("f", &sites, &reached, 2, &BTreeSet::new());
        let text = lcov(&files, &[f]);
        assert!(text
            .contains("SF:/t/src/kernel/exit.c\nFN:5,f\nFNDA:2,f\nDA:5,2\nDA:6,0\nLF:2\nLH:1\n"));
    }

    fn three_line_function() -> (Sites, BTreeMap<u64, Vec<usize>>) {
        let mut sites = Sites::default();
        for (pc, line) in [(0x10, 5), (0x20, 6), (0x30, 7)] {
            sites.sites.insert(pc, vec![frame("f", line)]);
        }
        // Line 5 by table row 0; line 6 only by the campaign (row 1 of 1 table row).
        let reached = [(0x10, vec![0]), (0x20, vec![1])].into_iter().collect();
        (sites, reached)
    }

    #[test]
    fn a_campaign_reaches_lines_but_the_table_figure_stays_the_tables() {
        let (sites, reached) = three_line_function();
        let f = function_report("f", &sites, &reached, 1, &BTreeSet::new());
        assert_eq!(
            (f.lines, f.reached, f.with_campaigns, f.unexplained),
            (3, 1, 2, 1)
        );
        assert!(!f.detail[1].reached && f.detail[1].rows == vec![1]);
    }

    fn explanation(lines: Vec<u32>, text: Option<&str>) -> Explanation {
        Explanation {
            function: "f".into(),
            lines,
            text: text.map(str::to_owned),
            reason: "only a kernel thread gets here".into(),
        }
    }

    #[test]
    fn a_missed_line_is_explained_or_named_unexplained() {
        let (sites, reached) = three_line_function();
        let mut fs = vec![function_report("f", &sites, &reached, 1, &BTreeSet::new())];
        let mut src = |_: &str, n: u32| format!("line {n} text");
        let (un, stale) = close_loop(&mut fs, &[], &mut src);
        assert_eq!(un, vec!["f kernel/exit.c:7".to_owned()]);
        assert!(stale.is_empty());
        let (un, stale) = close_loop(&mut fs, &[explanation(vec![7], Some("line 7"))], &mut src);
        assert!(un.is_empty() && stale.is_empty(), "{un:?} {stale:?}");
        assert_eq!((fs[0].explained, fs[0].unexplained), (1, 0));
        assert_eq!(
            fs[0].detail[2].explained.as_deref(),
            Some("only a kernel thread gets here")
        );
    }

    #[test]
    fn an_explanation_that_no_longer_fits_is_stale() {
        let (sites, reached) = three_line_function();
        let mut src = |_: &str, n: u32| format!("line {n} text");
        for (e, want) in [
            (explanation(vec![5], None), "reached"),
            (explanation(vec![6], None), "reached"),
            (explanation(vec![99], None), "not a line of the function"),
            (
                explanation(vec![7], Some("something else")),
                "the source reads",
            ),
        ] {
            let mut fs = vec![function_report("f", &sites, &reached, 1, &BTreeSet::new())];
            let (un, stale) = close_loop(&mut fs, &[e], &mut src);
            assert_eq!(stale.len(), 1, "{stale:?}");
            assert!(stale[0].contains(want), "{stale:?}");
            assert_eq!(un.len(), 1, "line 7 stays unexplained: {un:?}");
        }
    }

    #[test]
    fn the_shipped_explanations_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../vm-images/coverage");
        for e in std::fs::read_dir(&dir)
            .expect("vm-images/coverage")
            .flatten()
        {
            let ex = load_explanations(&e.path()).expect("parses");
            assert!(!ex.is_empty(), "{}", e.path().display());
            for x in &ex {
                assert!(FUNCTIONS.contains(&x.function.as_str()), "{}", x.function);
                assert!(!x.lines.is_empty() && x.reason.len() > 20, "{x:?}");
            }
        }
    }

    #[test]
    fn seed_lines_move_with_a_later_patch() {
        let later = "\
--- a/kernel/exit.c
+++ b/kernel/exit.c
@@ -10,3 +10,6 @@
 a
+b
+c
+d
 e
 f
@@ -40,4 +43,3 @@
 x
-y
 z
 w
";
        let seed: BTreeSet<Line> = [5, 20, 50]
            .into_iter()
            .map(|n| ("kernel/exit.c".to_owned(), n))
            .chain([("kernel/fork.c".to_owned(), 20)])
            .collect();
        let got: Vec<(String, u32)> = shift_through(seed, later).into_iter().collect();
        assert_eq!(
            got,
            vec![
                ("kernel/exit.c".to_owned(), 5),
                ("kernel/exit.c".to_owned(), 23),
                ("kernel/exit.c".to_owned(), 52),
                ("kernel/fork.c".to_owned(), 20),
            ]
        );
    }
}
