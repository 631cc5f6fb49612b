//! `runner mutate`: the suite's own mutation score. Each mutant patch (a one-line edit of the
//! patched kernel, `vm-images/mutants/NN-name.patch`, with a `Breaks:` line saying what it
//! breaks) is applied in turn to a kept tree, rebuilt incrementally, booted, and the whole
//! suite run on it; the tree is restored after each. A mutant is killed by the rows that
//! passed on the unmutated kernel and fail on the mutant; a row that goes from pass to skip
//! (the feature looks absent) or to broken is not a kill, and neither is the runner's own
//! feature expectation.
//!
//! The kept tree of a source profile is its source package with the profile's patches under
//! `<cache>/trees/<profile>-<key>/src` (built in `<cache>/tree-builds/`, see [`crate::tree`]);
//! with `--kernel-tree` it is the user's tree itself. Patches applied on top are journalled in
//! `<tree>/../waitconf-applied` (for a user's tree: in its build directory) before they are
//! applied, and reversed last-first after each mutant, on error, and at the start of the next
//! run if a run was killed half-way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::progress;
use crate::tree::{self, TreeSpec};

/// One mutant patch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutant {
    pub name: String,
    pub path: PathBuf,
    /// The patch's `Breaks:` line.
    pub breaks: String,
    /// Whether it edits a header (`+++ b/....h`): applying or restoring one rebuilds much of the
    /// tree, so such mutants run last ([`run_order`]).
    pub headers: bool,
}

/// The order in which `mutate` runs `mutants`: those that edit no header first, then those that
/// do, each group in its listed order. A header mutant rebuilds about 1,000 objects when it is
/// applied, and again when the next mutant's build meets the restored header; run last, the
/// header mutants share those rebuilds (10 and 11 of vm-images/mutants cost three full
/// rebuilds when run among the others: theirs, and 12's after 11 was restored).
pub fn run_order(mutants: &[Mutant]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..mutants.len()).collect();
    order.sort_by_key(|&i| mutants[i].headers);
    order
}

/// The mutants of a directory (`*.patch`, in name order), or the named ones among them (a name
/// is the file name without `.patch`, or a path).
pub fn mutants(dir: &Path, names: &[String]) -> Result<Vec<Mutant>> {
    let load = |path: PathBuf| -> Result<Mutant> {
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("mutant {}", path.display()))?;
        let breaks = text
            .lines()
            .find_map(|l| l.strip_prefix("Breaks: "))
            .unwrap_or("")
            .to_owned();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let headers = text
            .lines()
            .any(|l| l.starts_with("+++ ") && l.trim_end().ends_with(".h"));
        Ok(Mutant {
            name,
            path,
            breaks,
            headers,
        })
    };
    if names.is_empty() {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("mutants directory {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "patch"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            bail!("no *.patch in {}", dir.display());
        }
        return paths.into_iter().map(load).collect();
    }
    names
        .iter()
        .map(|n| {
            let as_path = PathBuf::from(n);
            let p = if as_path.is_file() {
                as_path
            } else {
                dir.join(format!("{n}.patch"))
            };
            if !p.is_file() {
                bail!(
                    "no mutant {n} (neither a file nor {}/{n}.patch)",
                    dir.display()
                );
            }
            load(p)
        })
        .collect()
}

/// What the rows did on a mutant, against the baseline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judgement {
    /// Passed on the baseline, fail on the mutant: the kills.
    pub killing_rows: Vec<String>,
    /// Passed on the baseline, broken on the mutant (not kills: the harness could not tell).
    pub broken_rows: Vec<String>,
    /// Passed on the baseline, skipped on the mutant (e.g. the feature looks absent).
    pub pass_to_skip: usize,
}

/// Compare a mutant's statuses with the baseline's (case name -> status).
pub fn judge(baseline: &BTreeMap<String, String>, mutant: &BTreeMap<String, String>) -> Judgement {
    let mut j = Judgement::default();
    for (name, status) in mutant {
        if baseline.get(name).map(String::as_str) != Some("pass") {
            continue;
        }
        match status.as_str() {
            "fail" => j.killing_rows.push(name.clone()),
            "broken" => j.broken_rows.push(name.clone()),
            "skip" => j.pass_to_skip += 1,
            _ => {}
        }
    }
    j
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Killed,
    Survived,
    Error,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MutantResult {
    pub mutant: String,
    pub breaks: String,
    pub verdict: Verdict,
    #[serde(flatten)]
    pub judgement: Judgement,
    pub killing_count: usize,
    pub feature: Option<String>,
    pub build_seconds: Option<f64>,
    pub build_objects: Option<usize>,
    pub run_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Baseline {
    pub tree: PathBuf,
    pub kernel_release: String,
    pub feature: Option<String>,
    pub counts: BTreeMap<String, usize>,
    pub build_seconds: f64,
    pub run_seconds: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Score {
    pub killed: usize,
    pub total: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Mutation {
    pub baseline: Baseline,
    pub mutants: Vec<MutantResult>,
    pub score: Score,
    /// Mutants not run yet: mutation.json and mutation.txt are rewritten after every mutant, so
    /// a run that is stopped half-way leaves what it measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
}

impl Mutation {
    fn new(baseline: Baseline, mutants: Vec<MutantResult>, pending: Vec<String>) -> Mutation {
        let killed = mutants
            .iter()
            .filter(|r| r.verdict == Verdict::Killed)
            .count();
        let total = mutants.len();
        Mutation {
            baseline,
            mutants,
            score: Score { killed, total },
            pending,
        }
    }

    fn write(&self, out: &Path) -> Result<()> {
        std::fs::write(
            out.join("mutation.json"),
            serde_json::to_string_pretty(self)?,
        )?;
        std::fs::write(out.join("mutation.txt"), table(self))?;
        Ok(())
    }
}

/// The statuses and the feature line of a run's results.json.
pub fn read_results(path: &Path) -> Result<(BTreeMap<String, String>, Option<String>, String)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let cases = v["cases"]
        .as_array()
        .with_context(|| format!("{}: no cases array", path.display()))?;
    let mut m = BTreeMap::new();
    for c in cases {
        if let (Some(n), Some(s)) = (c["name"].as_str(), c["status"].as_str()) {
            m.insert(n.to_owned(), s.to_owned());
        }
    }
    let feature = v["environment"]["feature"].as_str().map(str::to_owned);
    let release = v["environment"]["kernel_release"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    Ok((m, feature, release))
}

/// The plain-text table: one line per mutant, then the score.
pub fn table(m: &Mutation) -> String {
    let mut s = format!(
        "{:<26} {:<9} {:>6} {:>8} {:>6}  {}\n",
        "mutant", "verdict", "kills", "build_s", "run_s", "killing rows (first 3) / error"
    );
    for r in &m.mutants {
        let f = |x: Option<f64>| x.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
        let rows = r.error.clone().unwrap_or_else(|| {
            r.judgement
                .killing_rows
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        });
        s.push_str(&format!(
            "{:<26} {:<9} {:>6} {:>8} {:>6}  {}\n",
            r.mutant,
            format!("{:?}", r.verdict).to_lowercase(),
            r.killing_count,
            f(r.build_seconds),
            f(r.run_seconds),
            rows
        ));
    }
    s.push_str(&format!(
        "score: {}/{} killed\n",
        m.score.killed, m.score.total
    ));
    if !m.pending.is_empty() {
        s.push_str(&format!("not run yet: {}\n", m.pending.join(" ")));
    }
    s
}

/// The journal of patches applied on top of a kept tree, reversed on restore.
pub struct Journal {
    tree: PathBuf,
    file: PathBuf,
}

impl Journal {
    pub fn new(tree: &Path, file: PathBuf) -> Journal {
        Journal {
            tree: tree.to_owned(),
            file,
        }
    }

    fn entries(&self) -> Vec<PathBuf> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .collect()
    }

    fn patch(&self, p: &Path, extra: &[&str]) -> Result<std::process::Output> {
        let f = std::fs::File::open(p).with_context(|| format!("{}", p.display()))?;
        Command::new("patch")
            .args(["-p1", "--batch", "--silent"])
            .args(extra)
            .arg("-d")
            .arg(&self.tree)
            .stdin(f)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .context("cannot run patch")
    }

    /// Apply `p` on top (checked with --dry-run first; journalled before it is applied).
    pub fn apply(&self, p: &Path) -> Result<()> {
        let dry = self.patch(p, &["--forward", "--dry-run"])?;
        if !dry.status.success() {
            bail!(
                "{} does not apply to {}: {}",
                p.display(),
                self.tree.display(),
                String::from_utf8_lossy(&dry.stdout).trim()
            );
        }
        let mut list = self.entries();
        list.push(p.to_owned());
        self.write(&list)?;
        let out = self.patch(p, &["--forward"])?;
        if !out.status.success() {
            bail!("patch {} failed half-way; restoring", p.display());
        }
        Ok(())
    }

    fn write(&self, list: &[PathBuf]) -> Result<()> {
        let text: String = list.iter().map(|p| format!("{}\n", p.display())).collect();
        std::fs::write(&self.file, text)?;
        Ok(())
    }

    /// Reverse every journalled patch, last first.
    pub fn restore(&self) -> Result<()> {
        let mut list = self.entries();
        while let Some(p) = list.pop() {
            progress!("mutate: restoring {} (patch -R)", p.display());
            let out = self.patch(&p, &["-R"])?;
            if !out.status.success() {
                bail!(
                    "cannot reverse {} in {}: the tree is dirty ({})",
                    p.display(),
                    self.tree.display(),
                    String::from_utf8_lossy(&out.stdout).trim()
                );
            }
            self.write(&list)?;
        }
        Ok(())
    }
}

/// A run's statuses by case name, its feature line, its kernel release and its wall seconds.
type RunOutcome = (BTreeMap<String, String>, Option<String>, String, f64);

/// How to build and run one kernel of the loop.
pub struct Loop<'a> {
    pub spec: TreeSpec,
    pub cache: &'a Path,
    pub fragments: Vec<PathBuf>,
    pub localversion: Option<String>,
    pub jobs: u32,
    /// The runner's own `run` arguments besides the kernel and --out: the bit, the expectation,
    /// the case binary, filters.
    pub run_args: Vec<String>,
    pub journal: Journal,
}

impl Loop<'_> {
    fn build(&self) -> Result<tree::TreeBuild> {
        tree::build(
            &self.spec,
            self.cache,
            &self.fragments,
            self.localversion.as_deref(),
            self.jobs,
        )
    }

    /// Boot `image` and run the suite into `dir/run`; results.json is what counts (the runner
    /// exits 1 on failures, which a mutant is meant to cause).
    fn run(&self, image: &Path, dir: &Path) -> Result<RunOutcome> {
        let started = Instant::now();
        let out = dir.join("run");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.join("runner.log"))?;
        let status = Command::new(std::env::current_exe()?)
            .arg("run")
            .arg("--kernel-image")
            .arg(image)
            .args(&self.run_args)
            .arg("--out")
            .arg(&out)
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .context("cannot start the runner")?;
        let results = out.join("results.json");
        if !results.is_file() {
            bail!(
                "the run wrote no results.json ({status}; see {})",
                dir.join("runner.log").display()
            );
        }
        let (m, f, r) = read_results(&results)?;
        Ok((m, f, r, started.elapsed().as_secs_f64()))
    }

    /// The whole loop: baseline, then each mutant.
    pub fn mutate(&self, mutants: &[Mutant], out: &Path) -> Result<Mutation> {
        std::fs::create_dir_all(out)?;
        self.journal.restore()?;
        progress!("mutate: baseline build of {}", self.spec.path.display());
        let b = self.build()?;
        let bdir = out.join("baseline");
        std::fs::create_dir_all(&bdir)?;
        std::fs::copy(&b.image, bdir.join("bzImage"))?;
        let (base, feature, release, run_s) = self.run(&bdir.join("bzImage"), &bdir)?;
        let mut counts = BTreeMap::new();
        for s in base.values() {
            *counts.entry(s.clone()).or_insert(0) += 1;
        }
        // A mutant is killed by rows that pass on the baseline: with none there is nothing to
        // judge by (the baseline VM did not boot, or the case binary could not start).
        if !counts.contains_key("pass") {
            bail!(
                "the baseline run has no passing row ({counts:?}); see {}",
                bdir.join("runner.log").display()
            );
        }
        progress!("mutate: baseline {release}: {counts:?}, feature {feature:?}");
        let baseline = Baseline {
            tree: self.spec.path.clone(),
            kernel_release: release,
            feature,
            counts,
            build_seconds: b.seconds,
            run_seconds: run_s,
        };
        // Run header mutants last; report in the listed order.
        let order = run_order(mutants);
        let listed = |results: &mut Vec<(usize, MutantResult)>| -> Vec<MutantResult> {
            results.sort_by_key(|(i, _)| *i);
            results.iter().map(|(_, r)| r.clone()).collect()
        };
        let mut results: Vec<(usize, MutantResult)> = Vec::new();
        for (k, &i) in order.iter().enumerate() {
            let m = &mutants[i];
            progress!("mutate: {} ({})", m.name, m.breaks);
            let r = self.one(m, &base, &out.join(&m.name));
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    self.journal.restore()?;
                    MutantResult {
                        mutant: m.name.clone(),
                        breaks: m.breaks.clone(),
                        verdict: Verdict::Error,
                        judgement: Judgement::default(),
                        killing_count: 0,
                        feature: None,
                        build_seconds: None,
                        build_objects: None,
                        run_seconds: None,
                        error: Some(format!("{e:#}")),
                    }
                }
            };
            progress!(
                "mutate: {}: {:?}, {} killing row(s)",
                r.mutant,
                r.verdict,
                r.killing_count
            );
            results.push((i, r));
            let pending = order[k + 1..]
                .iter()
                .map(|&j| mutants[j].name.clone())
                .collect();
            Mutation::new(baseline.clone(), listed(&mut results), pending).write(out)?;
        }
        let m = Mutation::new(baseline, listed(&mut results), vec![]);
        m.write(out)?;
        Ok(m)
    }

    fn one(&self, m: &Mutant, base: &BTreeMap<String, String>, dir: &Path) -> Result<MutantResult> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        self.journal.apply(&m.path)?;
        let built = self.build();
        self.journal.restore()?;
        let built = built?;
        let image = dir.join("bzImage");
        std::fs::copy(&built.image, &image)?;
        let (statuses, feature, _, run_s) = self.run(&image, dir)?;
        let judgement = judge(base, &statuses);
        Ok(MutantResult {
            mutant: m.name.clone(),
            breaks: m.breaks.clone(),
            verdict: if judgement.killing_rows.is_empty() {
                Verdict::Survived
            } else {
                Verdict::Killed
            },
            killing_count: judgement.killing_rows.len(),
            judgement,
            feature,
            build_seconds: Some(built.seconds),
            build_objects: Some(built.compiled),
            run_seconds: Some(run_s),
            error: None,
        })
    }
}

/// The kept tree of a source profile: its source package unpacked under
/// `<cache>/trees/<profile>-<key>/src` with the profile's patches applied, reused while the
/// profile's cache key is the same (the key covers the package, the patches and the fragments).
pub fn profile_tree(
    profile: &crate::profile::Profile,
    paths: &crate::paths::Paths,
    refresh_apt: bool,
) -> Result<PathBuf> {
    let spec = profile.source.as_ref().with_context(|| {
        format!(
            "profile {} is not built from source: mutate needs a source profile or --kernel-tree",
            profile.name
        )
    })?;
    let key = crate::kernel::source_cache_key(profile, &paths.vm_images)?;
    let root = paths
        .cache
        .join("trees")
        .join(format!("{}-{key}", profile.name));
    let src = root.join("src");
    let stamp = root.join("stamp");
    std::fs::create_dir_all(&root)?;
    let _lock = crate::kernel::lock_file(&root.join("lock"))?;
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(key.as_str())
        && src.join("Makefile").is_file()
    {
        return Ok(src);
    }
    progress!(
        "mutate: unpacking {} {} into {}",
        spec.package,
        spec.version,
        src.display()
    );
    let apt = crate::kernel::Apt::new(paths, spec.apt_sources.as_deref(), refresh_apt)?;
    let deb = apt.download(&spec.package, &spec.version, &paths.downloads())?;
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src)?;
    crate::kernel::run_checked(
        Command::new("bash")
            .arg(paths.vm_images.join(crate::kernel::UNPACK))
            .arg(&deb)
            .arg(&src),
    )?;
    for rel in spec.all_patches() {
        let p = paths.vm_images.join(rel);
        let f = std::fs::File::open(&p).with_context(|| format!("{}", p.display()))?;
        crate::kernel::run_checked(
            Command::new("patch")
                .args(["-p1", "--batch", "--forward", "--silent", "-d"])
                .arg(&src)
                .stdin(f),
        )?;
    }
    std::fs::write(&stamp, &key)?;
    Ok(src)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn only_pass_to_fail_kills() {
        let base = m(&[
            ("a", "pass"),
            ("b", "pass"),
            ("c", "pass"),
            ("d", "fail"),
            ("e", "skip"),
            ("f", "pass"),
        ]);
        let mutant = m(&[
            ("a", "fail"),
            ("b", "broken"),
            ("c", "skip"),
            ("d", "fail"),
            ("e", "fail"),
            ("f", "pass"),
            ("new", "fail"),
        ]);
        let j = judge(&base, &mutant);
        assert_eq!(
            j.killing_rows,
            ["a"],
            "d failed already, e was a skip, new is not in the baseline"
        );
        assert_eq!(j.broken_rows, ["b"]);
        assert_eq!(j.pass_to_skip, 1);
        assert!(judge(&base, &base).killing_rows.is_empty());
    }

    #[test]
    fn mutants_are_listed_in_order_with_their_breaks_line() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("02-b.patch"), "Breaks: two\n").unwrap();
        std::fs::write(d.path().join("01-a.patch"), "From x\nBreaks: one\n").unwrap();
        std::fs::write(d.path().join("README.md"), "").unwrap();
        let all = mutants(d.path(), &[]).unwrap();
        let names: Vec<_> = all
            .iter()
            .map(|m| (m.name.as_str(), m.breaks.as_str()))
            .collect();
        assert_eq!(names, [("01-a", "one"), ("02-b", "two")]);
        let one = mutants(d.path(), &["02-b".into()]).unwrap();
        assert_eq!(one[0].breaks, "two");
        assert!(mutants(d.path(), &["03-c".into()]).is_err());
        assert!(mutants(tempfile::tempdir().unwrap().path(), &[]).is_err());
    }

    #[test]
    fn header_mutants_run_last_and_the_shipped_ones_are_known() {
        let d = tempfile::tempdir().unwrap();
        let patch = |f: &str| format!("Breaks: x\n--- a/{f}\n+++ b/{f}\n@@ -1 +1 @@\n-a\n+b\n");
        std::fs::write(d.path().join("01-c.patch"), patch("kernel/exit.c")).unwrap();
        std::fs::write(d.path().join("02-h.patch"), patch("include/linux/sched.h")).unwrap();
        std::fs::write(d.path().join("03-c.patch"), patch("kernel/fork.c")).unwrap();
        let all = mutants(d.path(), &[]).unwrap();
        assert_eq!(
            all.iter().map(|m| m.headers).collect::<Vec<_>>(),
            [false, true, false]
        );
        assert_eq!(run_order(&all), [0, 2, 1]);
        // The shipped mutants: 10 and 11 edit headers, the rest do not.
        let shipped = mutants(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../vm-images/mutants"),
            &[],
        )
        .unwrap();
        let headers: Vec<&str> = shipped
            .iter()
            .filter(|m| m.headers)
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(
            headers,
            ["10-mark-collides-forknoexec", "11-uapi-bit-moved"]
        );
    }

    #[test]
    fn journal_applies_and_restores_last_first() {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("t");
        std::fs::create_dir_all(tree.join("kernel")).unwrap();
        std::fs::write(tree.join("kernel/exit.c"), "one\ntwo\nthree\n").unwrap();
        let p1 = d.path().join("1.patch");
        std::fs::write(
            &p1,
            "--- a/kernel/exit.c\n+++ b/kernel/exit.c\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n",
        )
        .unwrap();
        let p2 = d.path().join("2.patch");
        std::fs::write(
            &p2,
            "--- a/kernel/exit.c\n+++ b/kernel/exit.c\n@@ -1,3 +1,3 @@\n one\n-TWO\n+2\n three\n",
        )
        .unwrap();
        let j = Journal::new(&tree, d.path().join("applied"));
        j.apply(&p1).unwrap();
        j.apply(&p2).unwrap();
        assert_eq!(
            std::fs::read_to_string(tree.join("kernel/exit.c")).unwrap(),
            "one\n2\nthree\n"
        );
        // A patch that does not apply is refused before anything changes.
        assert!(j.apply(&p1).is_err());
        assert_eq!(j.entries().len(), 2);
        // A new journal on the same file (a killed run) restores what the old one applied.
        Journal::new(&tree, d.path().join("applied"))
            .restore()
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(tree.join("kernel/exit.c")).unwrap(),
            "one\ntwo\nthree\n"
        );
        assert!(j.entries().is_empty());
    }

    #[test]
    fn table_names_every_mutant_and_the_score() {
        let r = |n: &str, v: Verdict, k: &[&str]| MutantResult {
            mutant: n.into(),
            breaks: String::new(),
            verdict: v,
            killing_count: k.len(),
            judgement: Judgement {
                killing_rows: k.iter().map(|s| s.to_string()).collect(),
                ..Judgement::default()
            },
            feature: None,
            build_seconds: Some(30.0),
            build_objects: Some(3),
            run_seconds: Some(61.4),
            error: None,
        };
        let m = Mutation {
            baseline: Baseline {
                tree: "/t".into(),
                kernel_release: "6.12".into(),
                feature: Some("present".into()),
                counts: BTreeMap::new(),
                build_seconds: 0.0,
                run_seconds: 0.0,
            },
            mutants: vec![
                r("01-a", Verdict::Killed, &["x::y"]),
                r("02-b", Verdict::Survived, &[]),
            ],
            score: Score {
                killed: 1,
                total: 2,
            },
            pending: vec![],
        };
        let t = table(&m);
        assert!(
            t.contains("01-a") && t.contains("killed") && t.contains("x::y"),
            "{t}"
        );
        assert!(t.contains("02-b") && t.contains("survived"), "{t}");
        assert!(t.ends_with("score: 1/2 killed\n"), "{t}");
        // Half-way: the score so far and what is still to come.
        let half = Mutation::new(
            m.baseline.clone(),
            m.mutants[..1].to_vec(),
            vec!["02-b".into()],
        );
        assert_eq!((half.score.killed, half.score.total), (1, 1));
        let t = table(&half);
        assert!(t.ends_with("score: 1/1 killed\nnot run yet: 02-b\n"), "{t}");
        let dir = tempfile::tempdir().unwrap();
        half.write(dir.path()).unwrap();
        let back: Mutation = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("mutation.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(back.pending, vec!["02-b".to_string()]);
    }
}
