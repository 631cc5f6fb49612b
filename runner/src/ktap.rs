//! KTAP v1 (Documentation/dev-tools/ktap.rst), the kernel's own test output format, so that
//! kunit.py, LAVA's and KernelCI's KTAP readers take a run as they take a kselftest's: a version
//! line and a plan for the run, one subtest per case group (`# Subtest: generic`, its own
//! version line and plan, indented four spaces as kunit prints it), one result line per case.
//! A skip is `ok N name # SKIP reason`; a fail or a broken case is `not ok` with its detail as
//! diagnostic lines (KTAP has no separate "broken": it counts as a failure, and the diagnostic
//! says which it was). A group is `ok` when none of its cases failed, `ok ... # SKIP` when every
//! case skipped.

use std::collections::BTreeMap;
use std::fmt::Write;

/// One case as KTAP sees it.
#[derive(Clone, Copy, Debug)]
pub struct KtapCase<'a> {
    pub name: &'a str,
    /// pass, fail, skip or broken.
    pub status: &'a str,
    pub detail: &'a str,
}

/// KTAP test names may not contain `#` (it starts a directive), and a line is one line.
fn clean(s: &str) -> String {
    s.replace('#', "(hash)")
        .replace(['\n', '\r'], " ")
        .trim()
        .to_owned()
}

/// The whole document; `header` lines become `# ` diagnostics after the version line.
pub fn ktap(cases: &[KtapCase<'_>], header: &[String]) -> String {
    let mut groups: BTreeMap<&str, Vec<&KtapCase<'_>>> = BTreeMap::new();
    for c in cases {
        let group = c.name.split("::").next().unwrap_or(c.name);
        groups.entry(group).or_default().push(c);
    }
    let mut out = String::from("KTAP version 1\n");
    for h in header {
        let _ = writeln!(out, "# {}", clean(h));
    }
    let _ = writeln!(out, "1..{}", groups.len());
    for (gi, (group, members)) in groups.iter().enumerate() {
        let _ = writeln!(out, "    KTAP version 1");
        let _ = writeln!(out, "    # Subtest: {}", clean(group));
        let _ = writeln!(out, "    1..{}", members.len());
        let (mut pass, mut fail, mut skip) = (0, 0, 0);
        for (i, c) in members.iter().enumerate() {
            let n = i + 1;
            let name = clean(
                c.name
                    .strip_prefix(group)
                    .and_then(|r| r.strip_prefix("::"))
                    .unwrap_or(c.name),
            );
            match c.status {
                "pass" => {
                    pass += 1;
                    let _ = writeln!(out, "    ok {n} {name}");
                }
                "skip" => {
                    skip += 1;
                    let _ = writeln!(out, "    ok {n} {name} # SKIP {}", clean(c.detail));
                }
                other => {
                    fail += 1;
                    for line in c.detail.lines().filter(|l| !l.trim().is_empty()) {
                        let _ = writeln!(out, "    # {}", clean(line));
                    }
                    let _ = writeln!(out, "    # {name}: {other}");
                    let _ = writeln!(out, "    not ok {n} {name}");
                }
            }
        }
        let _ = writeln!(
            out,
            "# {}: pass:{pass} fail:{fail} skip:{skip} total:{}",
            clean(group),
            members.len()
        );
        let g = gi + 1;
        if fail > 0 {
            let _ = writeln!(out, "not ok {g} {}", clean(group));
        } else if skip == members.len() {
            let _ = writeln!(out, "ok {g} {} # SKIP every case skipped", clean(group));
        } else {
            let _ = writeln!(out, "ok {g} {}", clean(group));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_subtests_with_their_own_plan() {
        let c = |name, status, detail| KtapCase {
            name,
            status,
            detail,
        };
        let cases = [
            c("generic::wait4_any::x::hidden", "pass", ""),
            c(
                "generic::wait4_any::x::plain",
                "skip",
                "feature absent # really",
            ),
            c("clone3::args::y", "fail", "want EINVAL\ngot 0"),
            c("reparent::z::hidden", "broken", "timeout after 5 s"),
            c("mainline::a", "skip", "needs 7.1"),
        ];
        let k = ktap(&cases, &["profile=wait-pid-6.12".into()]);
        let want = "\
KTAP version 1
# profile=wait-pid-6.12
1..4
    KTAP version 1
    # Subtest: clone3
    1..1
    # want EINVAL
    # got 0
    # args::y: fail
    not ok 1 args::y
# clone3: pass:0 fail:1 skip:0 total:1
not ok 1 clone3
    KTAP version 1
    # Subtest: generic
    1..2
    ok 1 wait4_any::x::hidden
    ok 2 wait4_any::x::plain # SKIP feature absent (hash) really
# generic: pass:1 fail:0 skip:1 total:2
ok 2 generic
    KTAP version 1
    # Subtest: mainline
    1..1
    ok 1 a # SKIP needs 7.1
# mainline: pass:0 fail:0 skip:1 total:1
ok 3 mainline # SKIP every case skipped
    KTAP version 1
    # Subtest: reparent
    1..1
    # timeout after 5 s
    # z::hidden: broken
    not ok 1 z::hidden
# reparent: pass:0 fail:1 skip:0 total:1
not ok 4 reparent
";
        assert_eq!(k, want);
    }
}
