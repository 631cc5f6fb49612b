//! A kernel tree of the user's (`--kernel-tree DIR`, profile kind `tree`): configured with the
//! suite's config fragment, built out of tree in a kept build directory under the cache (one
//! per tree path) and rebuilt incrementally, so a second run after a one-line change recompiles
//! that file and relinks.
//!
//! Configuration: by default `make allnoconfig KCONFIG_ALLCONFIG=<fragments>`, as the source
//! profiles are built; with `keep_config`, the tree's own `.config` (or a given file) with the
//! fragments appended, then `make olddefconfig` (kconfig takes the last assignment of a
//! symbol). Either way every fragment line must survive dependency resolution. The build
//! directory is reconfigured only when what defines the configuration changes (a stamp of the
//! fragments, the base config and the local version); otherwise `make` alone decides what to
//! rebuild.
//!
//! kbuild refuses an out-of-tree build (`O=`) of a tree holding in-tree build output; the runner
//! says so up front, with what to do, instead of letting `make` fail.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::paths::short_hash;
use anyhow::{bail, Context, Result};

use crate::progress;

/// What to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeSpec {
    /// The kernel source tree (canonical path).
    pub path: PathBuf,
    /// Merge the fragments into this tree's own config instead of allnoconfig.
    pub keep_config: bool,
    /// With `keep_config`: the base config file (default `<tree>/.config`).
    pub config: Option<PathBuf>,
}

impl From<&crate::profile::TreeTable> for TreeSpec {
    /// A profile's `[tree]` table (or `--kernel-tree`).
    fn from(t: &crate::profile::TreeTable) -> TreeSpec {
        TreeSpec {
            path: t.path.clone(),
            keep_config: t.keep_config,
            config: t.config.clone(),
        }
    }
}

/// What came out.
#[derive(Clone, Debug)]
pub struct TreeBuild {
    pub image: PathBuf,
    pub vmlinux: PathBuf,
    pub release: String,
    pub build_dir: PathBuf,
    /// Whether this build (re)configured the build directory.
    pub configured: bool,
    /// Objects compiled, assembled, linked or archived by this build (kbuild's CC/AS/LD/AR lines).
    pub compiled: usize,
    pub seconds: f64,
}

/// The kept build directory of a tree: `<cache>/tree-builds/<name>-<hash of its path>`.
pub fn build_dir(cache: &Path, tree: &Path) -> PathBuf {
    let name = tree
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into());
    cache.join("tree-builds").join(format!(
        "{name}-{}",
        short_hash(tree.as_os_str().as_encoded_bytes())
    ))
}

/// CLONE_WAIT_PID as the tree's `include/uapi/linux/sched.h` defines it, if it does:
/// `#define CLONE_WAIT_PID 0x10000000000ULL` (hex or decimal, optional parentheses and U/L
/// suffixes, `(1ULL << 40)`).
pub fn clone_wait_pid_bit(sched_h: &str) -> Option<u64> {
    sched_h.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix("#")?.trim_start();
        let rest = rest.strip_prefix("define")?;
        let mut words = rest.split_whitespace();
        if words.next()? != "CLONE_WAIT_PID" {
            return None;
        }
        let value: String = words.take_while(|w| !w.starts_with("/*")).collect();
        parse_c_constant(&value)
    })
}

fn parse_c_constant(v: &str) -> Option<u64> {
    let v = v.trim();
    let v = v
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .unwrap_or(v);
    if let Some((a, b)) = v.split_once("<<") {
        let a = parse_c_constant(a)?;
        let b = parse_c_constant(b)?;
        return a.checked_shl(u32::try_from(b).ok()?);
    }
    let digits = v.trim_end_matches(['u', 'U', 'l', 'L']);
    if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        u64::from_str_radix(h, 16).ok()
    } else {
        digits.parse().ok()
    }
}

/// Why kbuild would refuse `make O=...` in this tree, if it would (the checks of the top-level
/// Makefile for out-of-tree builds).
pub fn not_clean_reason(tree: &Path) -> Option<String> {
    let found: Vec<&str> = [".config", "include/config", "arch/x86/include/generated"]
        .into_iter()
        .filter(|p| tree.join(p).exists())
        .collect();
    (!found.is_empty()).then(|| {
        format!(
            "{} holds in-tree build output ({}), and kbuild refuses out-of-tree builds of such a \
             tree (\"The source tree is not clean, please run 'make mrproper'\"). Keep your \
             config with `cp {}/.config ~/my.config`, run `make mrproper` there, then pass \
             `--keep-config --config ~/my.config` (or nothing, for the suite's minimal config)",
            tree.display(),
            found.join(", "),
            tree.display()
        )
    })
}

/// The symbol a fragment line assigns (`CONFIG_X=...` or `# CONFIG_X is not set`).
fn assigned_symbol(line: &str) -> Option<&str> {
    if line.starts_with("CONFIG_") {
        line.split_once('=').map(|(sym, _)| sym)
    } else {
        line.strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
    }
}

/// The fragment lines the final `.config` does not satisfy, each as "wanted X, got Y". Of a
/// symbol assigned more than once (a later fragment overriding an earlier one) only the last
/// assignment counts, as in kconfig.
pub fn unsatisfied(fragment: &str, config: &str) -> Vec<String> {
    let lookup = |sym: &str| {
        config.lines().find(|l| {
            l.strip_prefix(sym).is_some_and(|r| r.starts_with('='))
                || *l == format!("# {sym} is not set")
        })
    };
    let lines: Vec<&str> = fragment.lines().map(str::trim).collect();
    let last: std::collections::HashMap<&str, usize> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| assigned_symbol(l).map(|s| (s, i)))
        .collect();
    let mut out = Vec::new();
    for (i, line) in lines.into_iter().enumerate() {
        if assigned_symbol(line).is_some_and(|s| last[s] != i) {
            continue;
        }
        if let Some((sym, _)) = line.split_once('=').filter(|_| line.starts_with("CONFIG_")) {
            if !config.lines().any(|l| l == line) {
                out.push(format!(
                    "wanted '{line}', got '{}'",
                    lookup(sym).unwrap_or("unset")
                ));
            }
        } else if let Some(sym) = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
        {
            if let Some(l) = config
                .lines()
                .find(|l| l.strip_prefix(sym).is_some_and(|r| r.starts_with('=')))
            {
                out.push(format!("wanted '{line}', got '{l}'"));
            }
        }
    }
    out
}

/// How far a build is: by objects against the count of the last full build of this directory
/// (or of a kernel built from the same config elsewhere in the cache), or by time against the
/// last build of the same kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    pub objects: Option<usize>,
    pub seconds: Option<f64>,
}

impl Estimate {
    /// "37% (412 of 1100 objects), about 2 min 10 s left" / "about 40 s left (last rebuild
    /// took 55 s)" / "" when nothing is known.
    pub fn describe(&self, compiled: usize, elapsed: f64) -> String {
        if let Some(total) = self.objects.filter(|t| *t > 0) {
            let frac = (compiled as f64 / total as f64).min(0.99);
            let left = if compiled > 0 {
                elapsed / frac.max(1e-3) - elapsed
            } else {
                f64::NAN
            };
            let eta = if left.is_finite() {
                format!(", about {} left", human(left))
            } else {
                String::new()
            };
            return format!("{:.0}% ({compiled} of ~{total} objects){eta}", frac * 100.0);
        }
        if let Some(t) = self.seconds.filter(|t| *t > 0.0) {
            let frac = (elapsed / t).min(0.99);
            return format!(
                "{:.0}% by time, about {} left (the last such build took {})",
                frac * 100.0,
                human((t - elapsed).max(0.0)),
                human(t)
            );
        }
        format!("{compiled} objects")
    }
}

fn human(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 60 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

/// A kbuild progress line that counts as one object (CC, AS, LD, AR, HOSTCC, ...).
pub fn is_object_line(line: &str) -> bool {
    let mut w = line.split_whitespace();
    matches!(
        w.next(),
        Some("CC" | "AS" | "LD" | "AR" | "HOSTCC" | "HOSTLD" | "CPP" | "OBJCOPY")
    ) && w.next().is_some()
}

/// Build state kept next to the build: what the last builds took.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct History {
    pub full_objects: Option<usize>,
    pub full_seconds: Option<f64>,
    pub incremental_seconds: Option<f64>,
}

fn history_path(dir: &Path) -> PathBuf {
    dir.join("waitconf-history.json")
}

/// Configure (when needed) and build `spec` in its kept build directory.
pub fn build(
    spec: &TreeSpec,
    cache: &Path,
    fragments: &[PathBuf],
    localversion: Option<&str>,
    jobs: u32,
) -> Result<TreeBuild> {
    let started = Instant::now();
    let tree = &spec.path;
    check_tree(tree)?;
    let dir = build_dir(cache, tree);
    let obj = dir.join("obj");
    std::fs::create_dir_all(&obj)?;
    let _lock = crate::kernel::lock_file(&dir.join("lock"))?;
    let merged = merged_fragments(fragments, localversion)?;
    let base = base_config(spec)?;
    let stamp = short_hash(
        format!(
            "{}\0{}\0{}",
            merged,
            base.as_deref().unwrap_or("allnoconfig"),
            localversion.unwrap_or("")
        )
        .as_bytes(),
    );
    let stamp_path = dir.join("config.stamp");
    let configured = std::fs::read_to_string(&stamp_path).ok().as_deref() != Some(stamp.as_str())
        || !obj.join(".config").is_file();
    let mk = |args: &[&str]| make(tree, &obj, args);
    let log = dir.join("build.log");
    if configured {
        let _ = std::fs::remove_file(&stamp_path);
        let frag_path = dir.join("fragment.config");
        std::fs::write(&frag_path, &merged)?;
        let what = Configure {
            tree,
            obj: &obj,
            fragment: &frag_path,
            fragments: fragments.len(),
            log: &log,
        };
        configure(&what, base.as_deref(), &merged)?;
        std::fs::write(&stamp_path, &stamp)?;
    }
    let mut history: History = std::fs::read_to_string(history_path(&dir))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let full = !obj.join("vmlinux").is_file();
    let estimate = history.estimate(full, cache);
    progress!(
        "tree {}: {} build with -j{jobs} in {}",
        tree.display(),
        if full { "full" } else { "incremental" },
        obj.display()
    );
    let build_started = Instant::now();
    let compiled = run_counted(mk(&[&format!("-j{jobs}"), "bzImage"]), &log, &estimate)
        .with_context(|| format!("kernel build failed; log: {}", log.display()))?;
    let secs = build_started.elapsed().as_secs_f64();
    history.record(full, compiled, secs);
    std::fs::write(history_path(&dir), serde_json::to_string_pretty(&history)?)?;
    let release = crate::kernel::capture(mk(&["-s", "kernelrelease"]).stderr(Stdio::null()))?
        .trim()
        .to_owned();
    let image = obj.join("arch/x86/boot/bzImage");
    if !image.is_file() {
        bail!("make finished but {} is missing", image.display());
    }
    progress!(
        "tree {}: {release} built in {:.0} s ({compiled} objects)",
        tree.display(),
        secs
    );
    Ok(TreeBuild {
        image,
        vmlinux: obj.join("vmlinux"),
        release,
        build_dir: dir,
        configured,
        compiled,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Refuses what is not a clean kernel source tree.
fn check_tree(tree: &Path) -> Result<()> {
    if !tree.join("Makefile").is_file() || !tree.join("kernel/exit.c").is_file() {
        bail!(
            "{} is not a kernel source tree (no Makefile or kernel/exit.c)",
            tree.display()
        );
    }
    if let Some(why) = not_clean_reason(tree) {
        bail!(why);
    }
    Ok(())
}

/// The fragments, each under a header line, and the local version, as one fragment.
fn merged_fragments(fragments: &[PathBuf], localversion: Option<&str>) -> Result<String> {
    let mut merged = String::new();
    for f in fragments {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("config fragment {}", f.display()))?;
        merged.push_str(&format!("# ---- {}\n{text}\n", f.display()));
    }
    if let Some(lv) = localversion {
        merged.push_str(&format!(
            "CONFIG_LOCALVERSION=\"-{lv}\"\n# CONFIG_LOCALVERSION_AUTO is not set\n"
        ));
    }
    Ok(merged)
}

/// With `keep_config`: the tree's own config (or the one named) the fragments go over.
fn base_config(spec: &TreeSpec) -> Result<Option<String>> {
    if !spec.keep_config {
        return Ok(None);
    }
    let p = spec
        .config
        .clone()
        .unwrap_or_else(|| spec.path.join(".config"));
    let text = std::fs::read_to_string(&p)
        .with_context(|| format!("--keep-config: cannot read {}", p.display()))?;
    Ok(Some(text))
}

/// `make -C <tree> O=<obj> <args>`, niced, with a reproducible build user, host and time.
fn make(tree: &Path, obj: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("nice");
    c.args(["-n", "10", "make", "-C"])
        .arg(tree)
        .arg(format!("O={}", obj.display()))
        .args(args)
        .env("KBUILD_BUILD_USER", "wait-conformance")
        .env("KBUILD_BUILD_HOST", "runner")
        .env("KBUILD_BUILD_TIMESTAMP", "1970-01-01");
    c
}

/// Where [`configure`] works: the tree, its build directory, the merged fragment's file, how
/// many fragments it holds, the log.
struct Configure<'a> {
    tree: &'a Path,
    obj: &'a Path,
    fragment: &'a Path,
    fragments: usize,
    log: &'a Path,
}

/// Configures the build directory: allnoconfig with the fragment, or the `base` config with
/// the fragment appended (olddefconfig); fails when the result does not satisfy the fragment.
fn configure(c: &Configure, base: Option<&str>, merged: &str) -> Result<()> {
    match base {
        None => {
            progress!(
                "tree {}: configuring allnoconfig + {} fragment(s) in {}",
                c.tree.display(),
                c.fragments,
                c.obj.display()
            );
            let all = format!("KCONFIG_ALLCONFIG={}", c.fragment.display());
            run_quiet(make(c.tree, c.obj, &["-s", "allnoconfig", &all]), c.log)?;
        }
        Some(text) => {
            progress!(
                "tree {}: configuring its own config + {} fragment(s) (olddefconfig)",
                c.tree.display(),
                c.fragments
            );
            std::fs::write(c.obj.join(".config"), format!("{text}\n{merged}"))?;
            run_quiet(make(c.tree, c.obj, &["-s", "olddefconfig"]), c.log)?;
        }
    }
    let config = std::fs::read_to_string(c.obj.join(".config"))?;
    let bad = unsatisfied(merged, &config);
    if !bad.is_empty() {
        bail!(
            "the config fragment is not satisfied in {}:\n  {}",
            c.obj.join(".config").display(),
            bad.join("\n  ")
        );
    }
    Ok(())
}

impl History {
    /// Remembers what this build took.
    fn record(&mut self, full: bool, compiled: usize, secs: f64) {
        if full {
            self.full_objects = Some(compiled);
            self.full_seconds = Some(secs);
        } else {
            self.incremental_seconds = Some(secs);
        }
    }

    /// What the next build should take: a full one like the last full one (or a cached
    /// source build's object count), an incremental one like the last incremental one.
    fn estimate(&self, full: bool, cache: &Path) -> Estimate {
        if full {
            Estimate {
                objects: self
                    .full_objects
                    .or_else(|| objects_of_a_cached_build(cache)),
                seconds: self.full_seconds,
            }
        } else {
            Estimate {
                objects: None,
                seconds: self.incremental_seconds,
            }
        }
    }
}

/// Objects of a full build of the suite's config elsewhere in the cache (a source profile's
/// build log), as the estimate for a first build.
fn objects_of_a_cached_build(cache: &Path) -> Option<usize> {
    std::fs::read_dir(cache.join("kernels"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".build.log"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter(|t| t.contains("is ready"))
        .map(|t| t.lines().filter(|l| is_object_line(l)).count())
        .max()
}

fn run_quiet(mut cmd: Command, log: &Path) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    f.write_all(&out.stdout)?;
    f.write_all(&out.stderr)?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs make with its output into `log`, a progress line every 15 s with the estimate.
fn run_counted(cmd: Command, log: &Path, estimate: &Estimate) -> Result<usize> {
    let watch = crate::kernel::Watch {
        label: "make: ",
        echo: |_| false,
        object: is_object_line,
        every: Duration::from_secs(15),
        beat: &|compiled, secs| {
            format!(
                "  building: {}, {secs:.0} s",
                estimate.describe(compiled, secs)
            )
        },
        tail: 20,
    };
    crate::kernel::run_watched(cmd, log, &watch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_from_the_uapi_header() {
        let h =
            "#define CLONE_INTO_CGROUP 0x200000000ULL /* Create a process in a given cgroup. */\n\
                 #define CLONE_WAIT_PID 0x10000000000ULL /* set if process should not appear */\n";
        assert_eq!(clone_wait_pid_bit(h), Some(1 << 40));
        assert_eq!(
            clone_wait_pid_bit("#define CLONE_WAIT_PID (1ULL << 38)\n"),
            Some(1 << 38)
        );
        assert_eq!(
            clone_wait_pid_bit("# define CLONE_WAIT_PID 4294967296\n"),
            Some(1 << 32)
        );
        assert_eq!(clone_wait_pid_bit("#define CLONE_WAIT_PIDX 0x1\n"), None);
        assert_eq!(clone_wait_pid_bit("#define CLONE_PIDFD 0x00001000\n"), None);
    }

    #[test]
    fn clean_tree_check_names_what_is_there() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(not_clean_reason(d.path()), None);
        std::fs::write(d.path().join(".config"), "").unwrap();
        let why = not_clean_reason(d.path()).unwrap();
        assert!(
            why.contains("(.config)") && why.contains("mrproper"),
            "{why}"
        );
    }

    #[test]
    fn fragment_lines_checked_against_the_config() {
        let frag = "# comment\nCONFIG_KCOV=y\n# CONFIG_MODULES is not set\nCONFIG_HZ=250\n";
        let ok = "CONFIG_KCOV=y\n# CONFIG_MODULES is not set\nCONFIG_HZ=250\n";
        assert!(unsatisfied(frag, ok).is_empty());
        let bad = "# CONFIG_KCOV is not set\nCONFIG_MODULES=y\nCONFIG_HZ=1000\n";
        assert_eq!(
            unsatisfied(frag, bad),
            [
                "wanted 'CONFIG_KCOV=y', got '# CONFIG_KCOV is not set'",
                "wanted '# CONFIG_MODULES is not set', got 'CONFIG_MODULES=y'",
                "wanted 'CONFIG_HZ=250', got 'CONFIG_HZ=1000'",
            ]
        );
        assert_eq!(
            unsatisfied("CONFIG_X=y\n", ""),
            ["wanted 'CONFIG_X=y', got 'unset'"]
        );
        // A later fragment overrides an earlier one: only the last assignment is wanted.
        let over = "# CONFIG_DEBUG_INFO is not set\nCONFIG_DEBUG_INFO=y\n";
        assert!(unsatisfied(over, "CONFIG_DEBUG_INFO=y\n").is_empty());
        assert_eq!(
            unsatisfied(over, "# CONFIG_DEBUG_INFO is not set\n"),
            ["wanted 'CONFIG_DEBUG_INFO=y', got '# CONFIG_DEBUG_INFO is not set'"]
        );
    }

    #[test]
    fn progress_by_objects_then_by_time() {
        let by_objects = Estimate {
            objects: Some(1000),
            seconds: None,
        };
        assert_eq!(
            by_objects.describe(250, 60.0),
            "25% (250 of ~1000 objects), about 3 min 00 s left"
        );
        assert_eq!(
            by_objects.describe(5000, 60.0),
            "99% (5000 of ~1000 objects), about 1 s left"
        );
        let by_time = Estimate {
            objects: None,
            seconds: Some(40.0),
        };
        assert_eq!(
            by_time.describe(3, 10.0),
            "25% by time, about 30 s left (the last such build took 40 s)"
        );
        let nothing = Estimate {
            objects: None,
            seconds: None,
        };
        assert_eq!(nothing.describe(7, 3.0), "7 objects");
    }

    #[test]
    fn kbuild_object_lines() {
        assert!(is_object_line("  CC      kernel/exit.o"));
        assert!(is_object_line("  LD      vmlinux.o"));
        assert!(!is_object_line("  BUILD   arch/x86/boot/bzImage"));
        assert!(!is_object_line("CC"));
        assert!(!is_object_line("make[1]: Entering directory"));
    }

    #[test]
    fn build_dir_is_per_tree_path() {
        let a = build_dir(Path::new("/c"), Path::new("/src/linux"));
        let b = build_dir(Path::new("/c"), Path::new("/other/linux"));
        assert_ne!(a, b);
        assert!(a.starts_with("/c/tree-builds") && a.to_string_lossy().contains("linux-"));
        assert_eq!(a, build_dir(Path::new("/c"), Path::new("/src/linux")));
    }

    #[test]
    fn not_a_tree_is_refused_before_make() {
        let d = tempfile::tempdir().unwrap();
        let spec = TreeSpec {
            path: d.path().to_owned(),
            keep_config: false,
            config: None,
        };
        let e = build(&spec, d.path(), &[], None, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a kernel source tree"), "{e}");
    }
}
