//! `runner export kcidb`: a run's results.json as a KCIDB v5 document (the schema KernelCI's
//! database ingests; validated with `kcidb-io` in .ci/run). One checkout (the profile's source
//! and patches, or the image), one build (the kernel the run booted), and one test per case
//! with a dotted path `wait_conformance.<group>.<...>` plus `wait_conformance.boot`.
//!
//! Statuses per the schema's rules: pass -> PASS; fail -> FAIL (the test completed and found
//! the kernel faulty); skip -> SKIP (not applicable: the feature is absent, the kernel too
//! old); broken -> ERROR (the test did not complete because of a failure in its own code or a
//! timeout outside the kernel, so the kernel's status is unknown); a case the run never reached
//! (the VM died or did not start) -> MISS. Log files are `file://` URLs unless a base URL is
//! given (where a CI system uploads the report directory).

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

/// What a CI system knows that results.json does not (the `export kcidb` options).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct KcidbOpts {
    /// The submitting CI system's KCIDB origin (`[a-z0-9_]+`).
    #[arg(long, default_value = "waitconf", value_parser = parse_origin)]
    pub origin: String,
    #[arg(long)]
    pub tree_name: Option<String>,
    #[arg(long)]
    pub git_repository_url: Option<String>,
    #[arg(long)]
    pub git_commit_hash: Option<String>,
    #[arg(long)]
    pub git_repository_branch: Option<String>,
    /// Where the report directory is published; the log URLs are under it (default
    /// file://<report dir>).
    #[arg(long)]
    pub log_base_url: Option<String>,
    /// RFC 3339 time of the run; default results.json's `environment.started_at`, else the file's
    /// modification time.
    #[arg(long)]
    pub start_time: Option<String>,
}

/// A KCIDB origin: `[a-z0-9_]+`.
pub fn parse_origin(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?}: KCIDB origins are [a-z0-9_]+"))
    }
}

fn kcidb_status(s: &str) -> &'static str {
    match s {
        "pass" => "PASS",
        "fail" => "FAIL",
        "skip" => "SKIP",
        "broken" => "ERROR",
        _ => "MISS",
    }
}

/// A case name as a KCIDB path: `::`-separated components become dotted ones, anything outside
/// `[a-zA-Z0-9_-]` becomes `_`.
pub fn test_path(case: &str) -> String {
    let parts: Vec<String> = case
        .split("::")
        .map(|p| {
            let s: String = p
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if s.is_empty() {
                "_".into()
            } else {
                s
            }
        })
        .collect();
    format!("wait_conformance.{}", parts.join("."))
}

fn short(h: &str) -> String {
    crate::paths::short_hash(h.as_bytes())
}

/// What the objects of one export share.
struct Run<'a> {
    env: &'a Value,
    profile: String,
    release: String,
    source: String,
    start: Option<String>,
    origin: &'a str,
    checkout_id: String,
    build_id: String,
    /// Where the logs are (`file://<dir>` unless --log-base-url).
    log_base: String,
}

impl Run<'_> {
    fn url(&self, f: &str) -> String {
        format!("{}/{f}", self.log_base.trim_end_matches('/'))
    }

    /// `start_time` on `obj`, when the run has one.
    fn started(&self, obj: &mut Value) {
        if let Some(t) = &self.start {
            obj["start_time"] = json!(t);
        }
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("").to_owned()
}

/// The document for one run's results.json (`results`), whose report directory is `dir`.
pub fn export(results: &Value, dir: &Path, opts: &KcidbOpts) -> Value {
    let env = &results["environment"];
    let profile = text(&env["profile"]);
    let release = text(&env["kernel_release"]);
    let source = text(&env["kernel_source"]);
    let start = opts
        .start_time
        .clone()
        .or_else(|| env["started_at"].as_str().map(str::to_owned));
    let o = &opts.origin;
    let checkout_id = format!(
        "{o}:{}",
        opts.git_commit_hash
            .clone()
            .unwrap_or_else(|| format!("{profile}-{}", short(&source)))
    );
    let run_key = short(&format!(
        "{checkout_id}\0{release}\0{}\0{}",
        start.as_deref().unwrap_or(""),
        serde_json::to_string(&results["vms"]).unwrap_or_default()
    ));
    let build_id = format!("{o}:{profile}-{}-{run_key}", short(&release));
    let log_base = opts.log_base_url.clone().unwrap_or_else(|| {
        format!(
            "file://{}",
            std::fs::canonicalize(dir)
                .unwrap_or_else(|_| dir.to_owned())
                .display()
        )
    });
    let run = Run {
        env,
        profile,
        release,
        source,
        start,
        origin: o,
        checkout_id,
        build_id,
        log_base,
    };
    let environment = json!({
        "comment": format!("virtme-ng guest, {} accelerator", text(&env["accelerator"])),
        "misc": {
            "feature": env["feature"],
            "expected_feature": env["expected_feature"],
            "tainted_before": env["tainted_before"],
            "tainted_after": env["tainted_after"],
        }
    });
    let mut tests = vec![boot_test(&run, results, &environment)];
    for c in results["cases"].as_array().into_iter().flatten() {
        tests.push(case_test(&run, c, &environment));
    }
    json!({
        "version": {"major": 5, "minor": 3},
        "checkouts": [checkout(&run, opts)],
        "builds": [build(&run)],
        "tests": tests,
    })
}

/// The checkout: the commit when given, else the profile's kernel source.
fn checkout(run: &Run, opts: &KcidbOpts) -> Value {
    let mut checkout = Map::new();
    checkout.insert("id".into(), json!(run.checkout_id));
    checkout.insert("origin".into(), json!(run.origin));
    checkout.insert(
        "comment".into(),
        json!(format!("{}: {}", run.profile, run.source)),
    );
    for (k, v) in [
        ("tree_name", &opts.tree_name),
        ("git_repository_url", &opts.git_repository_url),
        ("git_commit_hash", &opts.git_commit_hash),
        ("git_repository_branch", &opts.git_repository_branch),
    ] {
        if let Some(v) = v {
            checkout.insert(k.into(), json!(v));
        }
    }
    if let Some(t) = &run.start {
        checkout.insert("start_time".into(), json!(t));
    }
    checkout.insert("valid".into(), json!(true));
    Value::Object(checkout)
}

/// The build: the profile's kernel.
fn build(run: &Run) -> Value {
    let mut build = Map::new();
    build.insert("id".into(), json!(run.build_id));
    build.insert("checkout_id".into(), json!(run.checkout_id));
    build.insert("origin".into(), json!(run.origin));
    build.insert("architecture".into(), json!("x86_64"));
    build.insert("config_name".into(), json!(run.profile));
    build.insert("comment".into(), json!(run.release));
    // The run booted the kernel it was given (or built it from the profile's recipe): the build
    // itself succeeded; what the kernel does is the tests' business.
    build.insert("status".into(), json!("PASS"));
    if let Some(t) = &run.start {
        build.insert("start_time".into(), json!(t));
    }
    build.insert(
        "misc".into(),
        json!({
            "kernel_source": run.source,
            "clone_wait_pid_flag": run.env["clone_wait_pid_flag"],
            "accelerator": run.env["accelerator"],
        }),
    );
    Value::Object(build)
}

/// The boot test: passed when a VM reached the guest script (always on the host).
fn boot_test(run: &Run, results: &Value, environment: &Value) -> Value {
    let booted = results["vms"]
        .as_array()
        .is_some_and(|v| v.iter().any(|vm| vm["boot_seconds"].as_f64().is_some()))
        || run.profile == "host";
    let mut boot = json!({
        "id": format!("{}:boot", run.build_id),
        "build_id": run.build_id,
        "origin": run.origin,
        "path": "wait_conformance.boot",
        "status": if booted { "PASS" } else { "FAIL" },
        "log_url": run.url("console.log"),
        "environment": environment,
    });
    run.started(&mut boot);
    boot
}

/// One case's test.
fn case_test(run: &Run, c: &Value, environment: &Value) -> Value {
    let name = text(&c["name"]);
    let status = text(&c["status"]);
    let mut t = json!({
        "id": format!("{}:{name}", run.build_id),
        "build_id": run.build_id,
        "origin": run.origin,
        "path": test_path(&name),
        "status": kcidb_status(&status),
        "log_url": run.url("guest-output.log"),
        "environment": environment,
        "misc": {
            "case": name,
            "provenance": c["provenance"],
            "vm": c["vm"],
        },
    });
    if let Some(ms) = c["duration_ms"].as_f64() {
        t["duration"] = json!(ms / 1000.0);
    }
    let detail = text(&c["detail"]);
    if !detail.is_empty() {
        let excerpt: String = detail.chars().take(16000).collect();
        t["log_excerpt"] = json!(excerpt.replace('\0', ""));
    }
    run.started(&mut t);
    t
}

/// Read DIR/results.json (or a results.json path) and export it.
pub fn export_file(path: &Path, opts: &KcidbOpts) -> Result<Value> {
    let (dir, file) = if path.is_dir() {
        (path.to_owned(), path.join("results.json"))
    } else {
        (
            path.parent().unwrap_or(Path::new(".")).to_owned(),
            path.to_owned(),
        )
    };
    let text = std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{}", file.display()))?;
    let mut opts = opts.clone();
    if opts.start_time.is_none() && v["environment"]["started_at"].is_null() {
        if let Ok(m) = std::fs::metadata(&file).and_then(|m| m.modified()) {
            opts.start_time = Some(humantime::format_rfc3339_seconds(m).to_string());
        }
    }
    Ok(export(&v, &dir, &opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        json!({
            "environment": {"profile": "wait-pid-6.12", "kernel_release": "6.12.117-waitpid",
                            "kernel_source": "linux-source-6.12", "accelerator": "tcg",
                            "clone_wait_pid_flag": "0x10000000000", "feature": "present"},
            "vms": [{"index": 0, "boot_seconds": 5.1}],
            "cases": [
                {"name": "generic::wait4_any::x::hidden", "status": "pass", "detail": "", "duration_ms": 12},
                {"name": "reparent::subreaper::y::hidden", "status": "fail", "detail": "want 3, got ECHILD", "duration_ms": 40},
                {"name": "mainline::autoreap::z", "status": "skip", "detail": "needs 7.1", "duration_ms": 0},
                {"name": "regress::wait_sequence::a-b.c", "status": "broken", "detail": "timeout", "duration_ms": 5000},
            ]
        })
    }

    #[test]
    fn statuses_and_paths_follow_the_schema() {
        let opts = KcidbOpts {
            origin: "waitconf".into(),
            start_time: Some("2026-12-02T00:00:00Z".into()),
            ..KcidbOpts::default()
        };
        let d = export(&sample(), Path::new("/r"), &opts);
        let tests = d["tests"].as_array().unwrap();
        let got: Vec<(&str, &str)> = tests
            .iter()
            .map(|t| (t["path"].as_str().unwrap(), t["status"].as_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("wait_conformance.boot", "PASS"),
                ("wait_conformance.generic.wait4_any.x.hidden", "PASS"),
                ("wait_conformance.reparent.subreaper.y.hidden", "FAIL"),
                ("wait_conformance.mainline.autoreap.z", "SKIP"),
                ("wait_conformance.regress.wait_sequence.a-b_c", "ERROR"),
            ]
        );
        assert_eq!(d["version"]["major"], 5);
        let build_id = d["builds"][0]["id"].as_str().unwrap();
        assert!(tests.iter().all(|t| t["build_id"] == build_id));
        assert_eq!(d["builds"][0]["checkout_id"], d["checkouts"][0]["id"]);
        assert_eq!(tests[2]["log_excerpt"], "want 3, got ECHILD");
        assert_eq!(tests[1]["log_url"], "file:///r/guest-output.log");
        let ids: std::collections::BTreeSet<_> =
            tests.iter().map(|t| t["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), tests.len(), "test ids are unique");
    }

    #[test]
    fn a_run_that_never_booted_fails_its_boot_test() {
        let mut r = sample();
        r["vms"] = json!([{"index": 0, "boot_seconds": null}]);
        r["cases"] = json!([]);
        let d = export(
            &r,
            Path::new("/r"),
            &KcidbOpts {
                origin: "x".into(),
                ..Default::default()
            },
        );
        assert_eq!(d["tests"][0]["status"], "FAIL");
    }

    #[test]
    fn paths_are_dotted_and_clean() {
        assert_eq!(test_path("a::b c::d.e"), "wait_conformance.a.b_c.d_e");
        assert_eq!(test_path("x::::y"), "wait_conformance.x._.y");
    }
}
