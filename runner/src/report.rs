//! Results of one profile run and the files written from them: results.json, results.tap,
//! junit.xml, plus the summary tables printed on stdout.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::console::Finding;

use protocol::{CaseRecord, Line, Record};
pub use protocol::{EnvRecord, Status};

/// A case row of the results: the case binary's record (the protocol's [`CaseRecord`], its
/// fields reachable through `Deref`) and the VM that ran it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    #[serde(flatten)]
    pub record: CaseRecord,
    /// Which VM (0-based) ran the case; filled in by the runner.
    #[serde(default)]
    pub vm: usize,
}

impl std::ops::Deref for CaseResult {
    type Target = CaseRecord;
    fn deref(&self) -> &CaseRecord {
        &self.record
    }
}

impl CaseResult {
    /// A row the runner writes itself for a case that gave no result of its own: broken, with
    /// why, no provenance.
    pub fn broken(name: &str, detail: String, vm: usize) -> CaseResult {
        CaseResult {
            record: CaseRecord {
                name: name.to_owned(),
                status: Status::Broken,
                detail,
                duration_ms: 0,
                provenance: None,
            },
            vm,
        }
    }

    pub fn group(&self) -> &str {
        self.name.split("::").next().unwrap_or(&self.name)
    }

    /// The provenance, or "unstated" for a line without one.
    pub fn provenance(&self) -> &str {
        self.provenance.as_deref().unwrap_or(UNSTATED)
    }
}

/// The provenance of a case line that carries none.
pub const UNSTATED: &str = "unstated";

/// The provenance classes in reading order (others sort after them).
const PROVENANCE_ORDER: [&str; 5] = ["seed", "documented", "design", "regression", "selftest"];

fn provenance_rank(p: &str) -> (usize, String) {
    (
        PROVENANCE_ORDER
            .iter()
            .position(|x| *x == p)
            .unwrap_or(PROVENANCE_ORDER.len()),
        p.to_owned(),
    )
}

/// What one JSON-lines report file held.
#[derive(Debug, Default)]
pub struct CaseReport {
    pub env: Option<EnvRecord>,
    pub cases: Vec<CaseResult>,
    /// Lines that were not valid JSON (e.g. the last line cut short by a panic).
    pub malformed: Vec<String>,
}

/// Parses the case binary's JSON lines (tolerantly: [`protocol::record::parse_line`]). Unknown
/// `kind`s are ignored (forward compatible); a torn last line is recorded as malformed, not an
/// error.
pub fn parse_case_report(text: &str, vm: usize) -> CaseReport {
    let mut report = CaseReport::default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match protocol::record::parse_line(line) {
            Line::Record(Record::Env(env)) => report.env = Some(env),
            Line::Record(Record::Case(record)) => report.cases.push(CaseResult { record, vm }),
            Line::Unknown => {}
            Line::Malformed => report.malformed.push(line.to_owned()),
        }
    }
    report
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmRecord {
    pub index: usize,
    /// completed | watchdog | boot-timeout | panic | exited
    pub outcome: String,
    pub boot_seconds: Option<f64>,
    pub wall_seconds: f64,
    pub guest_exit_status: Option<i32>,
    pub cases_reported: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Environment {
    pub profile: String,
    pub profile_description: String,
    pub kernel_release: String,
    pub kernel_source: String,
    pub clone_wait_pid_flag: String,
    pub accelerator: String,
    pub accelerator_reason: String,
    /// Seconds from starting the VM to the guest script's first line, per VM.
    pub boot_seconds: Vec<f64>,
    pub feature: String,
    pub feature_reason: String,
    /// What the case binary's probe saw, whatever it decided.
    #[serde(default)]
    pub feature_observed: String,
    pub expected_feature: String,
    pub tainted_before: Option<u64>,
    pub tainted_after: Option<u64>,
    pub runner_version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResults {
    pub environment: Environment,
    pub cases: Vec<CaseResult>,
    pub console_findings: Vec<Finding>,
    pub vms: Vec<VmRecord>,
    /// Infrastructure problems (boot failure, panic, ...), each a sentence.
    pub infrastructure_errors: Vec<String>,
    /// Problems that are test failures but not case rows (feature expectation, taint).
    pub problems: Vec<String>,
    pub verdict: String,
    pub exit_code: i32,
    /// `run --shard I/N`: which part of the selection this run is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::shard::ShardRecord>,
    /// `runner merge`: the shard reports this one was made of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<crate::merge::MergedFrom>,
}

impl RunResults {
    /// The case -> status matrix that the regression snapshots hold. Console findings and the
    /// feature verdict are rows too, so a new kernel WARNING changes the snapshot.
    pub fn matrix(&self) -> String {
        let mut rows: Vec<(String, String)> = self
            .cases
            .iter()
            .map(|c| (c.name.clone(), c.status.as_str().to_owned()))
            .collect();
        rows.push((
            "environment::feature".into(),
            self.environment.feature.clone(),
        ));
        let mut kinds: Vec<&str> = self
            .console_findings
            .iter()
            .map(|f| f.kind.as_str())
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        rows.extend(
            kinds
                .into_iter()
                .map(|k| (format!("console::{k}"), "found".to_owned())),
        );
        rows.sort();
        rows.dedup();
        let mut out = String::new();
        for (name, status) in rows {
            let _ = writeln!(out, "{name}: {status}");
        }
        out
    }

    pub fn write_all(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut value = serde_json::to_value(self)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert(
                "by_provenance".into(),
                serde_json::to_value(self.provenance_counts())?,
            );
        }
        let json = serde_json::to_string_pretty(&value)?;
        std::fs::write(dir.join("results.json"), json + "\n").context("results.json")?;
        std::fs::write(dir.join("results.tap"), self.tap()).context("results.tap")?;
        std::fs::write(dir.join("results.ktap"), self.ktap()).context("results.ktap")?;
        std::fs::write(dir.join("junit.xml"), self.junit()?).context("junit.xml")?;
        // A kernel with both flags compares them on itself; elsewhere `runner compare` or
        // `runner matrix` join runs of two kernels.
        let comparison = dir.join("comparison.md");
        match crate::compare::same_kernel(self, "results.json") {
            Some((md, _)) => std::fs::write(&comparison, md).context("comparison.md")?,
            None => {
                let _ = std::fs::remove_file(&comparison);
            }
        }
        Ok(())
    }

    /// KTAP v1 ([`crate::ktap`]): one subtest per case group.
    pub fn ktap(&self) -> String {
        let e = &self.environment;
        let cases: Vec<crate::ktap::KtapCase<'_>> = self
            .cases
            .iter()
            .map(|c| crate::ktap::KtapCase {
                name: &c.name,
                status: c.status.as_str(),
                detail: &c.detail,
            })
            .collect();
        crate::ktap::ktap(
            &cases,
            &[format!(
                "wait-conformance profile={} kernel={} flag={} accelerator={} feature={}",
                e.profile, e.kernel_release, e.clone_wait_pid_flag, e.accelerator, e.feature
            )],
        )
    }

    /// TAP version 13 (readable as KTAP): one line per case, YAML diagnostics for failures.
    pub fn tap(&self) -> String {
        let e = &self.environment;
        let mut out = String::from("TAP version 13\n");
        let _ = writeln!(
            out,
            "# wait-conformance profile={} kernel={} flag={} accelerator={} feature={}",
            e.profile, e.kernel_release, e.clone_wait_pid_flag, e.accelerator, e.feature
        );
        let _ = writeln!(out, "1..{}", self.cases.len());
        for (i, c) in self.cases.iter().enumerate() {
            let n = i + 1;
            match c.status {
                Status::Pass => {
                    let _ = writeln!(out, "ok {n} {}", c.name);
                }
                Status::Skip => {
                    let _ = writeln!(out, "ok {n} {} # SKIP {}", c.name, one_line(&c.detail));
                }
                Status::Fail | Status::Broken => {
                    let _ = writeln!(out, "not ok {n} {}", c.name);
                    let _ = writeln!(out, "  ---");
                    let _ = writeln!(out, "  status: {}", c.status.as_str());
                    let _ = writeln!(out, "  provenance: {}", c.provenance());
                    let _ = writeln!(out, "  message: {}", yaml_str(&c.detail));
                    let _ = writeln!(out, "  duration_ms: {}", c.duration_ms);
                    let _ = writeln!(out, "  ...");
                }
            }
        }
        for (p, m) in self.provenance_rows() {
            let n = |s: &str| m.get(s).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "# provenance {p}: pass {} fail {} skip {} broken {}",
                n("pass"),
                n("fail"),
                n("skip"),
                n("broken")
            );
        }
        for f in &self.console_findings {
            let _ = writeln!(out, "# console: {}: {}", f.kind, one_line(&f.line));
        }
        for p in self.infrastructure_errors.iter().chain(&self.problems) {
            let _ = writeln!(out, "# {}", one_line(p));
        }
        let _ = writeln!(out, "# verdict: {} (exit {})", self.verdict, self.exit_code);
        out
    }

    /// JUnit XML: one test suite per case group; fail -> failure, broken -> error, skip ->
    /// skipped.
    pub fn junit(&self) -> Result<String> {
        use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
        let e = &self.environment;
        let mut report = Report::new(format!("wait-conformance@{}", e.profile));
        let mut suites: BTreeMap<&str, TestSuite> = BTreeMap::new();
        for c in &self.cases {
            let suite = suites.entry(c.group()).or_insert_with(|| {
                let mut s = TestSuite::new(format!("{}::{}", e.profile, c.group()));
                s.add_property(Property::new("kernel_release", e.kernel_release.as_str()));
                s.add_property(Property::new("profile", e.profile.as_str()));
                s.add_property(Property::new(
                    "clone_wait_pid_flag",
                    e.clone_wait_pid_flag.as_str(),
                ));
                s.add_property(Property::new("accelerator", e.accelerator.as_str()));
                s
            });
            let status = match c.status {
                Status::Pass => TestCaseStatus::success(),
                Status::Skip => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(c.detail.as_str());
                    s
                }
                Status::Fail | Status::Broken => {
                    let kind = if c.status == Status::Fail {
                        NonSuccessKind::Failure
                    } else {
                        NonSuccessKind::Error
                    };
                    let mut s = TestCaseStatus::non_success(kind);
                    s.set_message(c.detail.as_str());
                    s.set_type(c.status.as_str());
                    s
                }
            };
            let mut tc = TestCase::new(c.name.as_str(), status);
            tc.set_classname(c.group());
            tc.add_property(Property::new("provenance", c.provenance()));
            tc.set_time(std::time::Duration::from_millis(c.duration_ms));
            suite.add_test_case(tc);
        }
        if !self.console_findings.is_empty() || !self.infrastructure_errors.is_empty() {
            let mut s = TestSuite::new(format!("{}::kernel", e.profile));
            for f in &self.console_findings {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                st.set_message(f.line.as_str());
                st.set_type(f.kind.as_str());
                s.add_test_case(TestCase::new(format!("console::{}", f.kind), st));
            }
            for (i, msg) in self.infrastructure_errors.iter().enumerate() {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
                st.set_message(msg.as_str());
                st.set_type("infrastructure");
                s.add_test_case(TestCase::new(format!("infrastructure::{i}"), st));
            }
            suites.insert("~kernel", s);
        }
        report.add_test_suites(suites.into_values());
        Ok(report.to_string()?)
    }

    /// The per-profile summary: one row per group, counts per status.
    pub fn summary_table(&self) -> String {
        let mut groups: BTreeMap<&str, BTreeMap<Status, usize>> = BTreeMap::new();
        for c in &self.cases {
            *groups
                .entry(c.group())
                .or_default()
                .entry(c.status)
                .or_default() += 1;
        }
        let mut rows = vec![vec![
            "group".to_owned(),
            "pass".into(),
            "fail".into(),
            "skip".into(),
            "broken".into(),
        ]];
        let mut total: BTreeMap<Status, usize> = BTreeMap::new();
        for (g, m) in &groups {
            let mut row = vec![(*g).to_owned()];
            for s in [Status::Pass, Status::Fail, Status::Skip, Status::Broken] {
                let n = m.get(&s).copied().unwrap_or(0);
                *total.entry(s).or_default() += n;
                row.push(n.to_string());
            }
            rows.push(row);
        }
        let mut row = vec!["total".to_owned()];
        for s in [Status::Pass, Status::Fail, Status::Skip, Status::Broken] {
            row.push(total.get(&s).copied().unwrap_or(0).to_string());
        }
        rows.push(row);
        render_table(&rows)
    }
}

impl RunResults {
    /// Counts per provenance and status (`{"seed": {"pass": 3, ...}}`),
    /// as results.json's `by_provenance` holds them.
    pub fn provenance_counts(&self) -> BTreeMap<String, BTreeMap<String, usize>> {
        let mut m: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for c in &self.cases {
            *m.entry(c.provenance().to_owned())
                .or_default()
                .entry(c.status.as_str().to_owned())
                .or_default() += 1;
        }
        m
    }

    fn provenance_rows(&self) -> Vec<(String, BTreeMap<String, usize>)> {
        let mut rows: Vec<_> = self.provenance_counts().into_iter().collect();
        rows.sort_by_key(|(p, _)| provenance_rank(p));
        rows
    }

    /// The summary by provenance: where the expectation of the passing,
    /// failing, skipped and broken rows comes from.
    pub fn provenance_table(&self) -> String {
        let statuses = [Status::Pass, Status::Fail, Status::Skip, Status::Broken];
        let mut rows = vec![vec![
            "provenance".to_owned(),
            "pass".into(),
            "fail".into(),
            "skip".into(),
            "broken".into(),
        ]];
        let mut total = [0usize; 4];
        for (p, m) in self.provenance_rows() {
            let mut row = vec![p];
            for (i, s) in statuses.iter().enumerate() {
                let n = m.get(s.as_str()).copied().unwrap_or(0);
                total[i] += n;
                row.push(n.to_string());
            }
            rows.push(row);
        }
        let mut row = vec!["total".to_owned()];
        row.extend(total.iter().map(|n| n.to_string()));
        rows.push(row);
        render_table(&rows)
    }
}

/// The matrix summary: groups down, kernels across, `pass/fail/skip/broken` counts per cell.
pub fn matrix_table(runs: &[(String, Option<RunResults>)]) -> String {
    let mut groups: Vec<String> = runs
        .iter()
        .filter_map(|(_, r)| r.as_ref())
        .flat_map(|r| r.cases.iter().map(|c| c.group().to_owned()))
        .collect();
    groups.sort();
    groups.dedup();
    let mut header = vec!["group \\ kernel (p/f/s/b)".to_owned()];
    header.extend(runs.iter().map(|(name, _)| name.clone()));
    let mut rows = vec![header];
    for g in groups
        .iter()
        .map(String::as_str)
        .chain(std::iter::once("verdict"))
    {
        let mut row = vec![g.to_owned()];
        for (_, r) in runs {
            row.push(match r {
                None => "-".into(),
                Some(r) if g == "verdict" => format!("{} ({})", r.verdict, r.exit_code),
                Some(r) => {
                    let mut m: BTreeMap<Status, usize> = BTreeMap::new();
                    for c in r.cases.iter().filter(|c| c.group() == g) {
                        *m.entry(c.status).or_default() += 1;
                    }
                    if m.is_empty() {
                        "-".into()
                    } else {
                        let n = |s| m.get(&s).copied().unwrap_or(0);
                        format!(
                            "{}/{}/{}/{}",
                            n(Status::Pass),
                            n(Status::Fail),
                            n(Status::Skip),
                            n(Status::Broken)
                        )
                    }
                }
            });
        }
        rows.push(row);
    }
    render_table(&rows)
}

fn render_table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (ri, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        if ri == 0 {
            let _ = writeln!(
                out,
                "{}",
                widths
                    .iter()
                    .map(|w| "-".repeat(*w))
                    .collect::<Vec<_>>()
                    .join("  ")
            );
        }
    }
    out
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(&one_line(s)).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> RunResults {
        let text = r#"{"kind":"env","kernel_release":"6.12.117-waitpid","clone_wait_pid_flag":"0x10000000000","feature":"present","feature_reason":"clone3 accepted the bit"}
{"kind":"case","name":"generic::wait4::exited::hidden","status":"pass","detail":"","duration_ms":3,"provenance":"seed"}
{"kind":"case","name":"generic::wait4::exited::plain","status":"pass","detail":"","duration_ms":2,"provenance":"seed"}
{"kind":"case","name":"focused::waitid_pidfd::exited::hidden","status":"fail","detail":"expected pid 7\ngot ECHILD","duration_ms":5,"provenance":"seed"}
{"kind":"case","name":"clone3::flags::no_pidfd","status":"skip","detail":"feature absent","duration_ms":0,"provenance":"documented"}
{"kind":"future","x":1}
{"kind":"case","name":"reparent::init::hidden","status":"broken","detail":"timeout","duration_ms":10000,"provenance":"design"}
{"kind":"case","name":"torn"#;
        let rep = parse_case_report(text, 0);
        RunResults {
            environment: Environment {
                profile: "wait-pid-6.12".into(),
                profile_description: "d".into(),
                kernel_release: "6.12.117-waitpid".into(),
                kernel_source: "linux-source-6.12 6.12.117-1~deb12u1".into(),
                clone_wait_pid_flag: "0x10000000000".into(),
                accelerator: "tcg".into(),
                accelerator_reason: "test".into(),
                boot_seconds: vec![9.5],
                feature: "present".into(),
                feature_reason: "clone3 accepted the bit".into(),
                feature_observed: String::new(),
                expected_feature: "present".into(),
                tainted_before: Some(0),
                tainted_after: Some(0),
                runner_version: "0.1.0".into(),
            },
            cases: rep.cases,
            console_findings: vec![],
            vms: vec![],
            infrastructure_errors: vec![],
            problems: vec![],
            verdict: "failures".into(),
            exit_code: 1,
            shard: None,
            merged_from: vec![],
        }
    }

    #[test]
    fn parses_json_lines_and_tolerates_torn_tail() {
        let text =
            "{\"kind\":\"case\",\"name\":\"a::b\",\"status\":\"pass\"}\n{\"kind\":\"case\",\"na";
        let rep = parse_case_report(text, 2);
        assert_eq!(rep.cases.len(), 1);
        assert_eq!(rep.cases[0].vm, 2);
        assert_eq!(rep.malformed.len(), 1);
        assert!(rep.env.is_none());
        let r = sample();
        assert_eq!(r.cases.len(), 5);
        assert_eq!(r.cases[3].group(), "clone3");
    }

    #[test]
    fn provenance_is_read_counted_and_shown() {
        // A line without the field (an older case binary) still parses.
        let rep = parse_case_report(
            "{\"kind\":\"case\",\"name\":\"a::b\",\"status\":\"fail\"}",
            0,
        );
        assert_eq!(rep.cases[0].provenance, None);
        assert_eq!(rep.cases[0].provenance(), UNSTATED);
        let mut r = sample();
        r.cases.extend(rep.cases);
        let counts = r.provenance_counts();
        assert_eq!(counts["seed"]["pass"], 2);
        assert_eq!(counts["seed"]["fail"], 1);
        assert_eq!(counts["documented"]["skip"], 1);
        assert_eq!(counts["design"]["broken"], 1);
        assert_eq!(counts[UNSTATED]["fail"], 1);
        let table = r.provenance_table();
        let lines: Vec<&str> = table.lines().collect();
        // Reading order: seed, documented, design, then the rest; a total.
        assert!(
            lines[2].starts_with("seed") && lines[2].ends_with("2     1     0       0"),
            "{table}"
        );
        assert!(
            lines[3].starts_with("documented")
                && lines[4].starts_with("design")
                && lines[5].starts_with(UNSTATED),
            "{table}"
        );
        assert!(
            lines[6].starts_with("total") && lines[6].ends_with("2     2     1       1"),
            "{table}"
        );
        assert!(r.tap().contains("  provenance: seed\n"), "{}", r.tap());
        assert!(
            r.tap()
                .contains("# provenance design: pass 0 fail 0 skip 0 broken 1\n"),
            "{}",
            r.tap()
        );
        let xml = r.junit().unwrap();
        assert!(
            xml.contains("<property name=\"provenance\" value=\"documented\""),
            "{xml}"
        );
        let dir = tempfile::tempdir().unwrap();
        r.write_all(dir.path()).unwrap();
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("results.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["by_provenance"]["seed"]["fail"], 1);
        assert_eq!(json["cases"][0]["provenance"], "seed");
    }

    #[test]
    fn tap_output() {
        insta::assert_snapshot!(sample().tap());
    }

    #[test]
    fn matrix_and_summary() {
        let mut r = sample();
        r.console_findings.push(Finding {
            kind: "WARNING".into(),
            line: "WARNING: x".into(),
            line_no: 3,
            vm: 0,
        });
        insta::assert_snapshot!("matrix", r.matrix());
        insta::assert_snapshot!("summary", r.summary_table());
        let runs = vec![
            ("wait-pid-6.12".to_owned(), Some(r)),
            ("debian-6.1".to_owned(), None),
        ];
        insta::assert_snapshot!("matrix_table", matrix_table(&runs));
    }

    #[test]
    fn junit_counts_and_kinds() {
        let xml = sample().junit().unwrap();
        assert!(
            xml.contains("<testsuite name=\"wait-pid-6.12::generic\" tests=\"2\""),
            "{xml}"
        );
        assert!(xml.contains("<failure message=\"expected pid 7"), "{xml}");
        assert!(
            xml.contains("<error message=\"timeout\" type=\"broken\""),
            "{xml}"
        );
        assert!(xml.contains("<skipped message=\"feature absent\""), "{xml}");
    }

    #[test]
    fn writes_all_report_files() {
        let dir = tempfile::tempdir().unwrap();
        sample().write_all(dir.path()).unwrap();
        for f in ["results.json", "results.tap", "junit.xml"] {
            assert!(dir.path().join(f).metadata().unwrap().len() > 0, "{f}");
        }
        let back: RunResults = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("results.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(back.cases, sample().cases);
        assert_eq!(back.environment.accelerator, "tcg");
    }
}
