//! The comparison table of issue 5: one row per situation stem (a case name without its last
//! `::variant` component) that has `::plain`, `::hidden` or `::autoreap` variants, with the
//! plain child and the CLONE_WAIT_PID child (`::hidden`) from the run on the patched kernel and
//! the CLONE_AUTOREAP child (`::autoreap`) from the run on a 7.1+ kernel.
//!
//! The same-kernel view ([`same_kernel`]): all three columns from one run, for a kernel that has
//! both flags (wait-pid-7.2: the seed on bit 38 next to mainline's CLONE_AUTOREAP). Every report
//! directory of such a run gets it as `comparison.md`.
//!
//! Pure functions over [`RunResults`]: `runner matrix` calls them with the runs it just made,
//! `runner compare` with results.json files of earlier runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::{RunResults, Status};

/// Which profile's run feeds which column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    pub plain: String,
    pub hidden: String,
    pub autoreap: String,
}

impl Columns {
    /// Every column from the one profile's run.
    pub fn same(profile: &str) -> Columns {
        Columns {
            plain: profile.into(),
            hidden: profile.into(),
            autoreap: profile.into(),
        }
    }
    fn one_kernel(&self) -> bool {
        self.plain == self.hidden && self.hidden == self.autoreap
    }
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            plain: "wait-pid-6.12".into(),
            hidden: "wait-pid-6.12".into(),
            autoreap: "debian-7.2".into(),
        }
    }
}

/// The three variants, in column order.
pub const VARIANTS: [&str; 3] = ["plain", "hidden", "autoreap"];
const HEADERS: [&str; 3] = ["plain child", "CLONE_WAIT_PID", "CLONE_AUTOREAP"];
/// Groups shown first, in this order; any other group with such variants follows, by name.
const GROUP_ORDER: [&str; 4] = ["generic", "focused", "reparent", "open"];
/// Longest fail/broken note in a cell (characters, before markdown escaping).
pub const NOTE_MAX: usize = 60;

/// One cell: the case's status and, for fail/broken, a short form of its detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// The column's run is not among the inputs.
    NoRun,
    /// The run has no case of this variant for the stem.
    NoCase,
    Result {
        status: Status,
        note: String,
    },
}

impl Cell {
    pub fn render(&self) -> String {
        match self {
            Cell::NoRun => "n/a".into(),
            Cell::NoCase => "—".into(),
            Cell::Result { status, note } if note.is_empty() => status.as_str().into(),
            Cell::Result { status, note } => format!("{}: {}", status.as_str(), md_escape(note)),
        }
    }
    fn status(&self) -> Option<Status> {
        match self {
            Cell::Result { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub group: String,
    /// The case name without its last component, e.g. `generic::wait4_any::lone_exited_nohang`.
    pub stem: String,
    /// plain, hidden, autoreap.
    pub cells: [Cell; 3],
}

/// Splits `group::...::situation::variant` into (stem, variant index) for the three variants.
pub fn split_variant(name: &str) -> Option<(&str, usize)> {
    let (stem, last) = name.rsplit_once("::")?;
    let i = VARIANTS.iter().position(|v| *v == last)?;
    Some((stem, i))
}

/// "the subreaper's waitid(P_ALL, ...) after reparenting: want pid 7 Exited(5), got -1 ECHILD"
/// -> "want pid 7 Exited(5), got -1 ECHILD"; "timeout after 5.0s; stuck: ..." -> "timeout after
/// 5.0s"; first line only, at most [`NOTE_MAX`] characters.
pub fn short_detail(detail: &str) -> String {
    let line = detail
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let s = match line.find("want ") {
        Some(i) => &line[i..],
        None => line.split("; ").next().unwrap_or(line),
    };
    let s = s.trim();
    if s.chars().count() > NOTE_MAX {
        let cut: String = s.chars().take(NOTE_MAX - 1).collect();
        format!("{}…", cut.trim_end())
    } else {
        s.to_owned()
    }
}

fn md_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('`', "'")
}

fn group_rank(g: &str) -> (usize, String) {
    (
        GROUP_ORDER
            .iter()
            .position(|x| *x == g)
            .unwrap_or(GROUP_ORDER.len()),
        g.to_owned(),
    )
}

/// Joins the runs by stem. `plain`, `hidden`, `autoreap`: the run feeding each column (None when
/// it is not among the inputs). Rows come grouped (generic, focused, reparent, open, then the
/// rest by name) and sorted by stem within a group.
pub fn join(
    plain: Option<&RunResults>,
    hidden: Option<&RunResults>,
    autoreap: Option<&RunResults>,
) -> Vec<Row> {
    let sources = [plain, hidden, autoreap];
    let mut rows: BTreeMap<((usize, String), String), [Cell; 3]> = BTreeMap::new();
    let fill = |r: Option<&RunResults>| {
        if r.is_some() {
            Cell::NoCase
        } else {
            Cell::NoRun
        }
    };
    let empty = || sources.map(fill);
    // Every stem with one of the variants in any of the runs (whichever column it feeds) is a
    // situation; the cell is filled only from the run of its own column.
    for r in sources.iter().flatten() {
        for c in &r.cases {
            if let Some((stem, _)) = split_variant(&c.name) {
                let group = stem.split("::").next().unwrap_or(stem);
                rows.entry((group_rank(group), stem.to_owned()))
                    .or_insert_with(empty);
            }
        }
    }
    for (col, r) in sources.iter().enumerate() {
        let Some(r) = r else { continue };
        for c in &r.cases {
            let Some((stem, variant)) = split_variant(&c.name) else {
                continue;
            };
            if variant != col {
                continue;
            }
            let group = stem.split("::").next().unwrap_or(stem);
            if let Some(cells) = rows.get_mut(&(group_rank(group), stem.to_owned())) {
                let note = if c.status.is_bad() {
                    short_detail(&c.detail)
                } else {
                    String::new()
                };
                cells[col] = Cell::Result {
                    status: c.status,
                    note,
                };
            }
        }
    }
    rows.into_iter()
        .map(|(((_, group), stem), cells)| Row { group, stem, cells })
        .collect()
}

/// Per group and column: (pass, fail, skip, broken, no case).
pub type Totals = BTreeMap<(usize, String), [[usize; 5]; 3]>;

pub fn totals(rows: &[Row]) -> Totals {
    let mut t: Totals = BTreeMap::new();
    for r in rows {
        let e = t.entry(group_rank(&r.group)).or_insert([[0; 5]; 3]);
        for (col, cell) in r.cells.iter().enumerate() {
            let i = match cell.status() {
                Some(Status::Pass) => 0,
                Some(Status::Fail) => 1,
                Some(Status::Skip) => 2,
                Some(Status::Broken) => 3,
                None => 4,
            };
            e[col][i] += 1;
        }
    }
    t
}

fn count_cell(c: &[usize; 5]) -> String {
    let mut s = format!("{}/{}/{}/{}", c[0], c[1], c[2], c[3]);
    if c[4] > 0 {
        let _ = write!(s, " (+{} —)", c[4]);
    }
    s
}

/// Where a column's data came from, for the header of the file.
pub struct SourceNote {
    pub profile: String,
    pub kernel_release: String,
    pub accelerator: String,
    pub location: String,
}

impl SourceNote {
    pub fn of(r: &RunResults, location: impl Into<String>) -> SourceNote {
        SourceNote {
            profile: r.environment.profile.clone(),
            kernel_release: r.environment.kernel_release.clone(),
            accelerator: r.environment.accelerator.clone(),
            location: location.into(),
        }
    }
}

/// The per-group totals as a markdown table (also printed on stdout).
pub fn totals_markdown(rows: &[Row]) -> String {
    let mut out = format!(
        "| group | situations | {} | {} | {} |\n| --- | ---: | ---: | ---: | ---: |\n",
        HEADERS[0], HEADERS[1], HEADERS[2]
    );
    let mut all = [[0usize; 5]; 3];
    let mut n_all = 0;
    for ((_, g), cols) in totals(rows) {
        let n = cols[0].iter().sum::<usize>();
        n_all += n;
        for (a, c) in all.iter_mut().zip(cols.iter()) {
            for (x, y) in a.iter_mut().zip(c) {
                *x += y;
            }
        }
        let _ = writeln!(
            out,
            "| {g} | {n} | {} | {} | {} |",
            count_cell(&cols[0]),
            count_cell(&cols[1]),
            count_cell(&cols[2])
        );
    }
    let _ = writeln!(
        out,
        "| **total** | {n_all} | {} | {} | {} |",
        count_cell(&all[0]),
        count_cell(&all[1]),
        count_cell(&all[2])
    );
    out
}

/// The whole `comparison.md`.
pub fn markdown(rows: &[Row], cols: &Columns, sources: &[(&str, Option<SourceNote>)]) -> String {
    let mut out = if cols.one_kernel() {
        format!(
            "# Comparison on one kernel ({}): CLONE_WAIT_PID vs CLONE_AUTOREAP\n\n",
            cols.plain
        )
    } else {
        String::from("# Comparison: CLONE_WAIT_PID vs CLONE_AUTOREAP\n\n")
    };
    let _ = writeln!(
        out,
        "One row per situation (a case name without its last `::variant`); columns: `::plain` on \
         {}, `::hidden` (a CLONE_WAIT_PID child) on {}, `::autoreap` (a CLONE_PIDFD|CLONE_AUTOREAP \
         child, exit_signal 0) on {}. Cells: pass/fail/skip/broken, with the short form of the \
         detail for fail and broken; `—` no such case in that run, `n/a` no run for that column.\n",
        cols.plain, cols.hidden, cols.autoreap
    );
    for (label, note) in sources {
        match note {
            Some(n) => {
                let _ = writeln!(
                    out,
                    "- {label}: profile `{}`, kernel `{}`, {}, from `{}`",
                    n.profile, n.kernel_release, n.accelerator, n.location
                );
            }
            None => {
                let _ = writeln!(out, "- {label}: no run among the inputs");
            }
        }
    }
    out += "\n## Totals (pass/fail/skip/broken)\n\n";
    out += &totals_markdown(rows);
    let mut current: Option<&str> = None;
    for r in rows {
        if current != Some(r.group.as_str()) {
            let n = rows.iter().filter(|x| x.group == r.group).count();
            let _ = write!(
                out,
                "\n## {} ({n} situations)\n\n| situation | {} | {} | {} |\n| --- | --- | --- | --- |\n",
                r.group, HEADERS[0], HEADERS[1], HEADERS[2]
            );
            current = Some(r.group.as_str());
        }
        let situation = r
            .stem
            .strip_prefix(&format!("{}::", r.group))
            .unwrap_or(&r.stem);
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            situation,
            r.cells[0].render(),
            r.cells[1].render(),
            r.cells[2].render()
        );
    }
    out
}

/// Picks the run for each column from `runs` (by profile name), joins and renders. Returns the
/// markdown and the rows, or None when no run feeds any column.
pub fn build(runs: &[(String, &RunResults)], cols: &Columns) -> Option<(String, Vec<Row>)> {
    let find = |p: &str| runs.iter().rev().find(|(_, r)| r.environment.profile == p);
    let picked = [find(&cols.plain), find(&cols.hidden), find(&cols.autoreap)];
    if picked.iter().all(Option::is_none) {
        return None;
    }
    let rows = join(
        picked[0].map(|x| x.1),
        picked[1].map(|x| x.1),
        picked[2].map(|x| x.1),
    );
    let notes: Vec<(&str, Option<SourceNote>)> = HEADERS
        .iter()
        .zip(picked.iter())
        .map(|(h, p)| (*h, p.map(|(loc, r)| SourceNote::of(r, loc.clone()))))
        .collect();
    Some((markdown(&rows, cols, &notes), rows))
}

/// Whether the run executed (did not skip) at least one `::hidden` and one `::autoreap` case:
/// its kernel has both CLONE_WAIT_PID and CLONE_AUTOREAP.
pub fn has_both_flags(r: &RunResults) -> bool {
    let executed = |col: usize| {
        r.cases.iter().any(|c| {
            c.status != Status::Skip && split_variant(&c.name).is_some_and(|(_, v)| v == col)
        })
    };
    executed(1) && executed(2)
}

/// The same-kernel comparison of one run (`location`: where its results.json is), or None when
/// its kernel lacks one of the two flags (then the columns would compare a skip).
pub fn same_kernel(r: &RunResults, location: &str) -> Option<(String, Vec<Row>)> {
    if !has_both_flags(r) {
        return None;
    }
    build(
        &[(location.to_owned(), r)],
        &Columns::same(&r.environment.profile),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{parse_case_report, CaseResult};

    fn run(profile: &str, cases: &[(&str, &str, &str)]) -> RunResults {
        let mut r = crate::report::tests::sample();
        r.environment.profile = profile.into();
        r.environment.kernel_release = format!("{profile}-release");
        r.cases = cases
            .iter()
            .map(|(name, status, detail)| {
                let line = serde_json::json!({"kind": "case", "name": name, "status": status, "detail": detail});
                parse_case_report(&line.to_string(), 0).cases.remove(0)
            })
            .collect::<Vec<CaseResult>>();
        r
    }

    fn waitpid() -> RunResults {
        run(
            "wait-pid-6.12",
            &[
                ("generic::wait4_any::lone_exited::plain", "pass", ""),
                ("generic::wait4_any::lone_exited::hidden", "pass", ""),
                ("generic::wait4_any::lone_exited::autoreap", "skip", "needs Linux 7.1"),
                (
                    "reparent::subreaper::orphan::hidden",
                    "fail",
                    "the subreaper's waitid(P_ALL, WEXITED|WNOHANG) after reparenting: want pid 777 Exited(5), got -1 ECHILD\nmore",
                ),
                ("reparent::subreaper::orphan::plain", "pass", ""),
                ("reparent::pidns::zombie::hidden", "broken", "timeout after 5.0s; stuck: pid 781"),
                ("open::ptrace::tracer::plain", "pass", ""),
                ("clone3::args::size_zero::hidden", "pass", ""),
                ("mainline::autoreap::basic_exit_info", "skip", "needs Linux 7.1"),
                ("regress::clone3_flags::abc", "pass", ""),
            ],
        )
    }

    fn autoreap() -> RunResults {
        run(
            "debian-7.2",
            &[
                (
                    "generic::wait4_any::lone_exited::plain",
                    "fail",
                    "want pid 1, got 2",
                ),
                (
                    "generic::wait4_any::lone_exited::hidden",
                    "skip",
                    "CLONE_WAIT_PID absent",
                ),
                ("generic::wait4_any::lone_exited::autoreap", "pass", ""),
                ("reparent::subreaper::orphan::autoreap", "pass", ""),
                ("open::ptrace::tracer::autoreap", "fail", "x"),
                ("focused::waitid_pidfd::live::autoreap", "pass", ""),
            ],
        )
    }

    #[test]
    fn variants_split_off_the_last_component_only() {
        assert_eq!(
            split_variant("generic::a::b::hidden"),
            Some(("generic::a::b", 1))
        );
        assert_eq!(split_variant("open::x::autoreap"), Some(("open::x", 2)));
        assert_eq!(split_variant("mainline::autoreap::basic"), None);
        assert_eq!(split_variant("plain"), None);
    }

    #[test]
    fn join_takes_each_column_from_its_own_run() {
        let (w, a) = (waitpid(), autoreap());
        let rows = join(Some(&w), Some(&w), Some(&a));
        let stems: Vec<&str> = rows.iter().map(|r| r.stem.as_str()).collect();
        assert_eq!(
            stems,
            [
                "generic::wait4_any::lone_exited",
                "focused::waitid_pidfd::live",
                "reparent::pidns::zombie",
                "reparent::subreaper::orphan",
                "open::ptrace::tracer",
                "clone3::args::size_zero",
            ],
            "grouped generic, focused, reparent, open, then the rest; mainline/regress have no variants"
        );
        let r = &rows[0];
        // plain and hidden from wait-pid-6.12 (not debian-7.2's fail/skip), autoreap from
        // debian-7.2 (not wait-pid-6.12's skip).
        assert_eq!(
            r.cells.iter().map(Cell::render).collect::<Vec<_>>(),
            ["pass", "pass", "pass"]
        );
        let focused = &rows[1];
        assert_eq!(focused.cells[0], Cell::NoCase);
        assert_eq!(focused.cells[1], Cell::NoCase);
        assert_eq!(focused.cells[2].render(), "pass");
        let orphan = &rows[3];
        assert_eq!(
            orphan.cells[1].render(),
            "fail: want pid 777 Exited(5), got -1 ECHILD"
        );
        assert_eq!(rows[2].cells[1].render(), "broken: timeout after 5.0s");
        assert_eq!(rows[2].cells[2], Cell::NoCase);
        assert_eq!(rows[4].cells[2].render(), "fail: x");
        assert_eq!(rows[5].cells[2], Cell::NoCase);
    }

    #[test]
    fn missing_run_is_na_and_totals_count_per_group() {
        let w = waitpid();
        let rows = join(Some(&w), Some(&w), None);
        assert!(rows.iter().all(|r| r.cells[2] == Cell::NoRun));
        assert!(
            !rows.iter().any(|r| r.group == "focused"),
            "only in the 7.2 run"
        );
        let t = totals(&rows);
        let reparent = t[&group_rank("reparent")];
        assert_eq!(
            reparent[0],
            [1, 0, 0, 0, 1],
            "plain: one pass, one without a case"
        );
        assert_eq!(reparent[1], [0, 1, 0, 1, 0], "hidden: one fail, one broken");
        let md = totals_markdown(&rows);
        assert!(
            md.contains("| reparent | 2 | 1/0/0/0 (+1 —) | 0/1/0/1 | 0/0/0/0 (+2 —) |"),
            "{md}"
        );
        assert!(md.contains("| **total** | 5 |"), "{md}");
    }

    /// wait-pid-7.2: both flags in one kernel, so one run fills all three columns.
    fn both() -> RunResults {
        run(
            "wait-pid-7.2",
            &[
                ("generic::wait4_any::lone_exited::plain", "pass", ""),
                ("generic::wait4_any::lone_exited::hidden", "pass", ""),
                ("generic::wait4_any::lone_exited::autoreap", "pass", ""),
                (
                    "reparent::subreaper::orphan::hidden",
                    "fail",
                    "want pid 9 Exited(5), got -1 ECHILD",
                ),
                ("reparent::subreaper::orphan::autoreap", "pass", ""),
            ],
        )
    }

    #[test]
    fn same_kernel_view_needs_both_flags_executed() {
        assert!(!has_both_flags(&waitpid()), "6.12 skips ::autoreap");
        assert!(!has_both_flags(&autoreap()), "debian-7.2 skips ::hidden");
        assert!(same_kernel(&waitpid(), "w/results.json").is_none());
        let r = both();
        assert!(has_both_flags(&r));
        let (md, rows) = same_kernel(&r, "w/results.json").unwrap();
        assert!(
            md.starts_with(
                "# Comparison on one kernel (wait-pid-7.2): CLONE_WAIT_PID vs CLONE_AUTOREAP\n"
            ),
            "{md}"
        );
        assert_eq!(
            md.matches("profile `wait-pid-7.2`").count(),
            3,
            "every column names the one run: {md}"
        );
        assert_eq!(
            rows[0].cells.iter().map(Cell::render).collect::<Vec<_>>(),
            ["pass", "pass", "pass"]
        );
        assert_eq!(rows[1].cells[0], Cell::NoCase);
        assert_eq!(
            rows[1].cells[1].render(),
            "fail: want pid 9 Exited(5), got -1 ECHILD"
        );
        assert_eq!(rows[1].cells[2].render(), "pass");
        // The cross-kernel default does not pick a wait-pid-7.2 run for any column.
        assert!(build(&[("w".to_owned(), &r)], &Columns::default()).is_none());
    }

    #[test]
    fn markdown_escapes_and_truncates() {
        let long = format!("want {}|{}, got x", "a".repeat(40), "b".repeat(40));
        let note = short_detail(&long);
        assert_eq!(note.chars().count(), NOTE_MAX);
        assert!(note.ends_with('…'));
        let w = run(
            "wait-pid-6.12",
            &[
                ("generic::a::s::hidden", "fail", &long),
                ("generic::a::s::plain", "pass", ""),
            ],
        );
        let a = autoreap();
        let runs = vec![("out/w".to_owned(), &w), ("out/a".to_owned(), &a)];
        let (md, rows) = build(&runs, &Columns::default()).unwrap();
        assert!(md.starts_with("# Comparison: CLONE_WAIT_PID vs CLONE_AUTOREAP\n"));
        assert!(md.contains("## generic (2 situations)"), "{md}");
        assert!(md.contains("| `a::s` | pass | fail: want aaaa"), "{md}");
        assert!(md.contains("\\|bbb"), "pipes escaped: {md}");
        assert!(md.contains("from `out/a`"), "{md}");
        assert_eq!(rows.len(), 5);
        for line in md.lines().filter(|l| l.starts_with("| `")) {
            assert_eq!(line.matches(" | ").count(), 3, "four cells: {line}");
        }
        let none = build(
            &runs,
            &Columns {
                plain: "x".into(),
                hidden: "y".into(),
                autoreap: "z".into(),
            },
        );
        assert!(none.is_none());
    }
}
