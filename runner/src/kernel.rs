//! Getting a profile's kernel: build it from a Debian source package (cached by a content
//! hash), unpack a prebuilt Debian image package, or use the host's.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::paths::{short_hash, Paths};
use crate::profile::{Kind, Profile, SourceSpec};
use crate::progress;

/// Bump when the way the runner drives the recipe changes in a way that changes the output.
pub const RECIPE_VERSION: &str = "1";
pub const RECIPE: &str = "recipes/build-kernel.sh";
/// Unpacks a linux-source .deb's tree (`runner mutate`, the mutant loop, the reports check).
pub const UNPACK: &str = "recipes/unpack-linux-source.sh";

#[derive(Debug, Clone)]
pub struct KernelArtifact {
    /// Kernel image to boot; None for the host profile.
    pub image: Option<PathBuf>,
    /// Release string if known before boot.
    pub release: Option<String>,
    /// Human description of where it came from (package and version).
    pub source: String,
    pub cache_hit: bool,
    pub seconds: f64,
}

pub struct AcquireOpts {
    pub jobs: u32,
    pub refresh_apt: bool,
}

pub fn acquire(profile: &Profile, paths: &Paths, opts: &AcquireOpts) -> Result<KernelArtifact> {
    let started = Instant::now();
    let mut art = match profile.kind {
        Kind::Host => KernelArtifact {
            image: None,
            release: Some(
                rustix::system::uname()
                    .release()
                    .to_string_lossy()
                    .into_owned(),
            ),
            source: "running host kernel".into(),
            cache_hit: true,
            seconds: 0.0,
        },
        Kind::Source => build_from_source(profile, paths, opts)?,
        Kind::DebianPrebuilt => fetch_prebuilt(profile, paths, opts)?,
        Kind::Image => image_artifact(profile, paths)?,
        Kind::Tree => tree_artifact(profile, paths, opts)?,
    };
    art.seconds = started.elapsed().as_secs_f64();
    Ok(art)
}

/// The build cache key: everything that defines the built kernel, hashed.
pub fn source_cache_key(profile: &Profile, vm_images: &Path) -> Result<String> {
    let spec = profile
        .source
        .as_ref()
        .ok_or_else(|| anyhow!("not a source profile"))?;
    let mut h = Sha256::new();
    let mut feed = |label: &str, bytes: &[u8]| {
        h.update(label.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    feed("recipe-version", RECIPE_VERSION.as_bytes());
    feed(
        "recipe",
        &std::fs::read(vm_images.join(RECIPE)).context("reading the build recipe")?,
    );
    feed("package", spec.package.as_bytes());
    feed("version", spec.version.as_bytes());
    feed(
        "localversion",
        spec.localversion.as_deref().unwrap_or("").as_bytes(),
    );
    for rel in spec.all_patches() {
        feed(
            "patch",
            &std::fs::read(vm_images.join(rel)).with_context(|| rel.clone())?,
        );
    }
    for rel in spec
        .config_fragments
        .iter()
        .chain(&spec.extra_config_fragments)
    {
        feed(
            "fragment",
            &std::fs::read(vm_images.join(rel)).with_context(|| rel.clone())?,
        );
    }
    if spec.keep_vmlinux {
        // Fed only when set, so the keys of the profiles without it stay as they were.
        feed("keep-vmlinux", KEPT_TREE_VERSION.as_bytes());
    }
    let digest = h.finalize();
    Ok(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
}

fn build_from_source(
    profile: &Profile,
    paths: &Paths,
    opts: &AcquireOpts,
) -> Result<KernelArtifact> {
    let spec: &SourceSpec = profile.source.as_ref().expect("validated");
    let key = source_cache_key(profile, &paths.vm_images)?;
    let dir = paths.kernels().join(format!("{}-{key}", profile.name));
    let image = dir.join("bzImage");
    let source = format!("{} {} (cache key {key})", spec.package, spec.version);
    std::fs::create_dir_all(paths.kernels())?;
    let _lock = lock_file(&paths.kernels().join(format!("{}-{key}.lock", profile.name)))?;
    if image.is_file() {
        progress!("kernel {}: cache hit {}", profile.name, dir.display());
        return Ok(KernelArtifact {
            image: Some(image),
            release: read_trimmed(&dir.join("kernel.release")),
            source,
            cache_hit: true,
            seconds: 0.0,
        });
    }
    progress!(
        "kernel {}: cache miss (key {key}), building into {}",
        profile.name,
        dir.display()
    );
    if spec.keep_vmlinux {
        build_keeping_vmlinux(profile, paths, opts, &dir)?;
        return Ok(KernelArtifact {
            image: Some(image),
            release: read_trimmed(&dir.join("kernel.release")),
            source,
            cache_hit: false,
            seconds: 0.0,
        });
    }
    let apt = Apt::new(paths, spec.apt_sources.as_deref(), opts.refresh_apt)?;
    let deb = apt.download(&spec.package, &spec.version, &paths.downloads())?;
    let log_path = paths
        .kernels()
        .join(format!("{}-{key}.build.log", profile.name));
    let mut cmd = Command::new("bash");
    cmd.arg(paths.vm_images.join(RECIPE))
        .arg("--deb")
        .arg(&deb)
        .arg("--out")
        .arg(&dir);
    for rel in spec.all_patches() {
        cmd.arg("--patch").arg(paths.vm_images.join(rel));
    }
    for rel in spec
        .config_fragments
        .iter()
        .chain(&spec.extra_config_fragments)
    {
        cmd.arg("--fragment").arg(paths.vm_images.join(rel));
    }
    if let Some(lv) = &spec.localversion {
        cmd.arg("--localversion").arg(lv);
    }
    cmd.arg("--jobs").arg(opts.jobs.to_string());
    let started = Instant::now();
    run_logged(cmd, &log_path)
        .with_context(|| format!("kernel build failed; log: {}", log_path.display()))?;
    progress!(
        "kernel {}: built in {:.0} s (log {})",
        profile.name,
        started.elapsed().as_secs_f64(),
        log_path.display()
    );
    if !image.is_file() {
        bail!("the recipe finished but {} is missing", image.display());
    }
    Ok(KernelArtifact {
        image: Some(image),
        release: read_trimmed(&dir.join("kernel.release")),
        source,
        cache_hit: false,
        seconds: 0.0,
    })
}

/// Bump when [`build_keeping_vmlinux`] changes what it leaves in the cache.
pub const KEPT_TREE_VERSION: &str = "1";

/// A `keep_vmlinux` source profile: its kept unpacked and patched tree
/// (`crate::mutate::profile_tree`) built out of tree (`crate::tree::build`) with the profile's
/// fragments, then bzImage, vmlinux, config, System.map and kernel.release copied into `dir`
/// (written as `dir.partial` and renamed, so a killed copy never looks cached).
fn build_keeping_vmlinux(
    profile: &Profile,
    paths: &Paths,
    opts: &AcquireOpts,
    dir: &Path,
) -> Result<()> {
    let spec = profile.source.as_ref().expect("validated");
    let src = crate::mutate::profile_tree(profile, paths, opts.refresh_apt)?;
    let tree = crate::tree::TreeSpec {
        path: src.canonicalize()?,
        keep_config: false,
        config: None,
    };
    let fragments: Vec<PathBuf> = spec
        .config_fragments
        .iter()
        .chain(&spec.extra_config_fragments)
        .map(|rel| paths.vm_images.join(rel))
        .collect();
    let b = crate::tree::build(
        &tree,
        &paths.cache,
        &fragments,
        spec.localversion.as_deref(),
        opts.jobs,
    )?;
    let obj = b.build_dir.join("obj");
    let work = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    for (from, to) in [
        (b.image.clone(), "bzImage"),
        (b.vmlinux.clone(), "vmlinux"),
        (obj.join(".config"), "config"),
        (obj.join("System.map"), "System.map"),
        (b.build_dir.join("fragment.config"), "fragment.config"),
    ] {
        std::fs::copy(&from, work.join(to))
            .with_context(|| format!("copying {} into the cache", from.display()))?;
    }
    std::fs::write(work.join("kernel.release"), format!("{}\n", b.release))?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&work, dir)?;
    progress!(
        "kernel {}: {} with vmlinux in {} ({:.0} s)",
        profile.name,
        b.release,
        dir.display(),
        b.seconds
    );
    Ok(())
}

fn fetch_prebuilt(profile: &Profile, paths: &Paths, opts: &AcquireOpts) -> Result<KernelArtifact> {
    let spec = profile.prebuilt.as_ref().expect("validated");
    let apt = Apt::new(paths, spec.apt_sources.as_deref(), opts.refresh_apt)?;
    let package = apt.resolve_image_package(&spec.package)?;
    let version = match &spec.version {
        Some(v) if package == spec.package => v.clone(),
        _ => apt.candidate(&package)?,
    };
    let key = short_hash(
        format!(
            "{package}\0{version}\0{}",
            spec.apt_sources.as_deref().unwrap_or("")
        )
        .as_bytes(),
    );
    let dir = paths.kernels().join(format!("{}-{key}", profile.name));
    let root = dir.join("root");
    let source = format!("{package} {version}");
    std::fs::create_dir_all(paths.kernels())?;
    let _lock = lock_file(&paths.kernels().join(format!("{}-{key}.lock", profile.name)))?;
    let cache_hit = root.is_dir();
    if cache_hit {
        progress!(
            "kernel {}: cache hit {} ({source})",
            profile.name,
            dir.display()
        );
    } else {
        progress!("kernel {}: fetching {source}", profile.name);
        // Newer Debian kernels split the image package into linux-binary-* (the kernel) and
        // linux-modules-*; follow those Depends and unpack them all into one root.
        let mut queue = vec![(package.clone(), version.clone())];
        let mut debs = Vec::new();
        while let Some((name, ver)) = queue.pop() {
            if debs.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let deb = apt.download(&name, &ver, &paths.downloads())?;
            let depends = capture(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Depends"))?;
            for (dep, pinned) in kernel_part_depends(&depends) {
                let v = match pinned {
                    Some(v) => v,
                    None => apt.candidate(&dep)?,
                };
                queue.push((dep, v));
            }
            debs.push((name, deb));
        }
        let partial = dir.join("root.partial");
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial)?;
        for (_, deb) in &debs {
            run_checked(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&partial))?;
        }
        std::fs::rename(&partial, &root)?;
    }
    let (image, release) = find_image(&root).ok_or_else(|| {
        anyhow!("no kernel image (boot/vmlinuz-* or usr/lib/modules/*/vmlinuz) in {source}")
    })?;
    let release = Some(release);
    Ok(KernelArtifact {
        image: Some(image),
        release,
        source,
        cache_hit,
        seconds: 0.0,
    })
}

/// A kernel image file, used where it is. With a modules directory, virtme-ng must find the
/// modules next to the image (it looks for `lib/modules/<release>` above the image's path), so
/// the runner stages a root under the cache: `boot/vmlinuz-<release>` and
/// `lib/modules/<release>`, both symlinks to the user's files.
fn image_artifact(profile: &Profile, paths: &Paths) -> Result<KernelArtifact> {
    let spec = profile
        .image
        .as_ref()
        .ok_or_else(|| anyhow!("profile {} has no [image] table", profile.name))?;
    if !spec.path.is_file() {
        bail!("kernel image {} does not exist", spec.path.display());
    }
    let source = format!("kernel image {}", spec.path.display());
    let Some(modules) = &spec.modules else {
        return Ok(KernelArtifact {
            image: Some(spec.path.clone()),
            release: None,
            source,
            cache_hit: true,
            seconds: 0.0,
        });
    };
    let (moddir, release) = modules_release_dir(modules).ok_or_else(|| {
        anyhow!(
            "--modules {}: neither a lib/modules/<release> directory (with modules.order or \
             modules.dep) nor a root holding exactly one",
            modules.display()
        )
    })?;
    let key = short_hash(format!("{}\0{}", spec.path.display(), moddir.display()).as_bytes());
    let root = paths.kernels().join(format!("image-{key}")).join("root");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("boot"))?;
    std::fs::create_dir_all(root.join("lib/modules"))?;
    let image = root.join(format!("boot/vmlinuz-{release}"));
    std::os::unix::fs::symlink(&spec.path, &image)?;
    std::os::unix::fs::symlink(&moddir, root.join("lib/modules").join(&release))?;
    Ok(KernelArtifact {
        image: Some(image),
        release: Some(release.clone()),
        source: format!("{source}, modules {} ({release})", moddir.display()),
        cache_hit: true,
        seconds: 0.0,
    })
}

/// The fragment a tree is configured with: the source profiles' own.
pub const TREE_FRAGMENT: &str = "config/base-virtme.config";

fn tree_artifact(profile: &Profile, paths: &Paths, opts: &AcquireOpts) -> Result<KernelArtifact> {
    let t = profile
        .tree
        .as_ref()
        .ok_or_else(|| anyhow!("profile {} has no [tree] table", profile.name))?;
    let spec = crate::tree::TreeSpec::from(t);
    let b = crate::tree::build(
        &spec,
        &paths.cache,
        &[paths.vm_images.join(TREE_FRAGMENT)],
        None,
        opts.jobs,
    )?;
    Ok(KernelArtifact {
        image: Some(b.image),
        release: Some(b.release),
        source: format!(
            "kernel tree {} (built in {}, {} objects{}; vmlinux {})",
            t.path.display(),
            b.build_dir.display(),
            b.compiled,
            if b.configured { ", configured" } else { "" },
            b.vmlinux.display()
        ),
        cache_hit: b.compiled == 0,
        seconds: 0.0,
    })
}

/// The `lib/modules/<release>` directory `dir` is or holds, and the release.
pub fn modules_release_dir(dir: &Path) -> Option<(PathBuf, String)> {
    let is_release_dir =
        |d: &Path| d.join("modules.order").is_file() || d.join("modules.dep").is_file();
    if is_release_dir(dir) {
        let rel = dir.file_name()?.to_str()?.to_owned();
        return Some((dir.to_owned(), rel));
    }
    for base in ["lib/modules", "usr/lib/modules", "modules"] {
        let found: Vec<PathBuf> = std::fs::read_dir(dir.join(base))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_release_dir(p))
            .collect();
        if let [one] = found.as_slice() {
            let rel = one.file_name()?.to_str()?.to_owned();
            return Some((one.clone(), rel));
        }
    }
    None
}

/// The kernel image in an unpacked package tree and its release: `boot/vmlinuz-<release>`
/// (Debian up to 6.x) or `usr/lib/modules/<release>/vmlinuz` (split packages, 7.x).
pub fn find_image(root: &Path) -> Option<(PathBuf, String)> {
    let entries = |p: PathBuf| {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
    };
    for p in entries(root.join("boot")) {
        if let Some(rel) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("vmlinuz-"))
        {
            return Some((p.clone(), rel.to_owned()));
        }
    }
    for base in ["usr/lib/modules", "lib/modules"] {
        for d in entries(root.join(base)) {
            let img = d.join("vmlinuz");
            if img.is_file() {
                let rel = d.file_name()?.to_str()?.to_owned();
                return Some((img, rel));
            }
        }
    }
    None
}

/// apt, either the system's configuration or a private one (own source list, lists and
/// cache directories under the runner's cache) so the system's sources are never touched.
pub struct Apt {
    options: Vec<String>,
}

impl Apt {
    pub fn new(paths: &Paths, sources: Option<&str>, refresh: bool) -> Result<Apt> {
        let Some(rel) = sources else {
            let apt = Apt {
                options: Vec::new(),
            };
            if refresh {
                apt.update()?;
            }
            return Ok(apt);
        };
        let list = paths.vm_images.join(rel);
        let name = Path::new(rel)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("private");
        let state = paths.apt_state(name);
        for sub in ["parts", "lists/partial", "cache/archives/partial"] {
            std::fs::create_dir_all(state.join(sub))?;
        }
        let opt = |k: &str, v: &Path| format!("{k}={}", v.display());
        let apt = Apt {
            options: vec![
                opt("Dir::Etc::SourceParts", &state.join("parts")),
                opt("Dir::Etc::SourceList", &list),
                opt("Dir::State::Lists", &state.join("lists")),
                opt("Dir::Cache", &state.join("cache")),
            ],
        };
        let stamp = state.join("updated");
        let stale = std::fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .map(|t| t.elapsed().map(|e| e.as_secs() > 24 * 3600).unwrap_or(true))
            .unwrap_or(true);
        if refresh || stale {
            apt.update()?;
            std::fs::write(&stamp, b"")?;
        }
        Ok(apt)
    }

    fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        for o in &self.options {
            c.arg("-o").arg(o);
        }
        c
    }

    pub fn update(&self) -> Result<()> {
        progress!(
            "apt-get update{}",
            if self.options.is_empty() {
                ""
            } else {
                " (private sources)"
            }
        );
        run_checked(self.cmd("apt-get").args(["-q", "update"]))
    }

    pub fn candidate(&self, package: &str) -> Result<String> {
        let out = capture(self.cmd("apt-cache").args(["policy", package]))?;
        parse_candidate(&out).ok_or_else(|| {
            anyhow!(
                "apt knows no candidate for {package} (run apt-get update, or check the sources)"
            )
        })
    }

    /// `linux-image-amd64` -> `linux-image-7.2.13+deb14-amd64`; an image package is itself.
    pub fn resolve_image_package(&self, package: &str) -> Result<String> {
        if is_versioned_image(package) {
            return Ok(package.to_owned());
        }
        let out = capture(self.cmd("apt-cache").args(["depends", package]))?;
        out.lines()
            .filter_map(|l| l.trim().strip_prefix("Depends:"))
            .map(str::trim)
            .find(|d| is_versioned_image(d))
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("{package} depends on no linux-image-<version> package"))
    }

    pub fn download(&self, package: &str, version: &str, into: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(into)?;
        let prefix = format!("{package}_{}_", version.replace(':', "%3a"));
        let find = || -> Option<PathBuf> {
            std::fs::read_dir(into)
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
                })
        };
        if let Some(p) = find() {
            return Ok(p);
        }
        progress!("downloading {package}={version}");
        let mut c = self.cmd("apt-get");
        c.args(["-q", "download", &format!("{package}={version}")])
            .current_dir(into);
        run_checked(&mut c)?;
        find().ok_or_else(|| {
            anyhow!(
                "apt-get download left no {prefix}*.deb in {}",
                into.display()
            )
        })
    }
}

/// The Depends of a kernel package that carry parts of the kernel itself: versioned
/// `linux-image-*`, `linux-binary-*` and `linux-modules-*`, with their `(= version)` pin if any.
pub fn kernel_part_depends(depends: &str) -> Vec<(String, Option<String>)> {
    depends
        .split(',')
        .filter_map(|group| group.split('|').next())
        .filter_map(|dep| {
            let dep = dep.trim();
            let (name, rest) = dep.split_once(' ').unwrap_or((dep, ""));
            let part = is_versioned_image(name)
                || name.starts_with("linux-binary-")
                || name.starts_with("linux-modules-");
            let pinned = rest
                .trim()
                .strip_prefix("(=")
                .and_then(|v| v.strip_suffix(')'))
                .map(|v| v.trim().to_owned());
            part.then(|| (name.to_owned(), pinned))
        })
        .collect()
}

fn is_versioned_image(name: &str) -> bool {
    name.strip_prefix("linux-image-").is_some_and(|rest| {
        rest.starts_with(|c: char| c.is_ascii_digit()) && !rest.ends_with("-dbg")
    })
}

pub fn parse_candidate(policy: &str) -> Option<String> {
    policy
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .find(|v| !v.is_empty() && *v != "(none)")
        .map(str::to_owned)
}

fn read_trimmed(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Holds an exclusive flock for as long as it lives, so two runners never build one key twice.
pub struct FileLock(#[allow(dead_code)] std::fs::File);

pub fn lock_file(path: &Path) -> Result<FileLock> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        progress!("waiting for another runner holding {}", path.display());
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
    }
    Ok(FileLock(f))
}

pub fn run_checked(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

pub fn capture(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How [`run_watched`] follows a long build: the lines it echoes and counts, the heartbeat.
pub struct Watch<'a> {
    /// Who fails: the error is `{label}{status}`.
    pub label: &'a str,
    /// Lines printed as they come (the recipe's steps).
    pub echo: fn(&str) -> bool,
    /// Lines that are one compiled object.
    pub object: fn(&str) -> bool,
    /// The heartbeat's period.
    pub every: Duration,
    /// The heartbeat line from the objects so far and the seconds since the start.
    pub beat: &'a dyn Fn(usize, f64) -> String,
    /// How many of the last lines a failure prints.
    pub tail: usize,
}

/// Runs a long command with its stdout and stderr going to `log`, echoing and counting lines
/// and printing a heartbeat as `watch` says; the number of object lines, or on failure the
/// last lines printed and the exit status as the error.
///
/// The command runs in a process group of its own, killed with it if the runner is interrupted
/// ([`crate::interrupt`]).
pub fn run_watched(mut cmd: Command, log: &Path, watch: &Watch) -> Result<usize> {
    let mut file = std::fs::File::create(log)?;
    let (mut child, _group) =
        crate::interrupt::Group::spawn(&mut cmd, crate::interrupt::Kind::Build)?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let mut readers = Vec::new();
    for r in [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ] {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        }));
    }
    drop(tx);
    let started = Instant::now();
    let mut last = Instant::now();
    let mut objects = 0usize;
    let mut tail: Vec<String> = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => {
                writeln!(file, "{line}")?;
                if (watch.echo)(&line) {
                    progress!("{line}");
                } else if (watch.object)(&line) {
                    objects += 1;
                }
                tail.push(line);
                if tail.len() > watch.tail {
                    tail.remove(0);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if last.elapsed() >= watch.every {
            progress!("{}", (watch.beat)(objects, started.elapsed().as_secs_f64()));
            last = Instant::now();
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child.wait()?;
    if !status.success() {
        for l in &tail {
            eprintln!("  | {l}");
        }
        bail!("{}{status}", watch.label);
    }
    Ok(objects)
}

/// The recipe's build: its step lines echoed, CC/AS lines counted, a heartbeat every 30 s.
fn run_logged(cmd: Command, log: &Path) -> Result<()> {
    let watch = Watch {
        label: "",
        echo: |l| l.starts_with("[recipe"),
        object: |l| l.trim_start().starts_with("CC ") || l.trim_start().starts_with("AS "),
        every: Duration::from_secs(30),
        beat: &|objects, secs| format!("  building: {objects} objects compiled, {secs:.0} s"),
        tail: 15,
    };
    run_watched(cmd, log, &watch).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileSet;

    #[test]
    fn modules_directory_forms() {
        let d = tempfile::tempdir().unwrap();
        let rel = d.path().join("lib/modules/6.12.0-x");
        std::fs::create_dir_all(&rel).unwrap();
        assert_eq!(modules_release_dir(d.path()), None, "no modules.order yet");
        std::fs::write(rel.join("modules.order"), "").unwrap();
        let want = Some((rel.clone(), "6.12.0-x".to_owned()));
        assert_eq!(
            modules_release_dir(&rel),
            want,
            "the release directory itself"
        );
        assert_eq!(
            modules_release_dir(d.path()),
            want,
            "an INSTALL_MOD_PATH root"
        );
        std::fs::create_dir_all(d.path().join("lib/modules/6.13")).unwrap();
        std::fs::write(d.path().join("lib/modules/6.13/modules.dep"), "").unwrap();
        assert_eq!(
            modules_release_dir(d.path()),
            None,
            "two releases: ambiguous"
        );
    }

    #[test]
    fn image_with_modules_is_staged_where_vng_looks() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("bzImage");
        std::fs::write(&img, b"k").unwrap();
        let mods = d.path().join("mods/lib/modules/6.12.9");
        std::fs::create_dir_all(&mods).unwrap();
        std::fs::write(mods.join("modules.dep"), "").unwrap();
        let paths = Paths {
            workspace: d.path().to_owned(),
            vm_images: d.path().to_owned(),
            snapshots: d.path().to_owned(),
            cache: d.path().join("cache"),
        };
        let p = Profile::for_image(&img, Some(&d.path().join("mods")), None, None).unwrap();
        let stage = |p: &Profile| {
            acquire(
                p,
                &paths,
                &AcquireOpts {
                    jobs: 1,
                    refresh_apt: false,
                },
            )
            .unwrap()
        };
        let a = stage(&p);
        let staged = a.image.unwrap();
        assert!(
            staged.ends_with("root/boot/vmlinuz-6.12.9"),
            "{}",
            staged.display()
        );
        let root = staged.parent().unwrap().parent().unwrap();
        assert_eq!(
            std::fs::canonicalize(root.join("lib/modules/6.12.9")).unwrap(),
            std::fs::canonicalize(&mods).unwrap()
        );
        assert_eq!(std::fs::read(&staged).unwrap(), b"k");
        assert_eq!(a.release.as_deref(), Some("6.12.9"));
        // Without modules the image is used where it is.
        let p = Profile::for_image(&img, None, None, None).unwrap();
        let a = stage(&p);
        assert_eq!(a.image.unwrap(), std::fs::canonicalize(&img).unwrap());
    }

    #[test]
    fn candidate_parsing() {
        let policy =
            "linux-image-amd64:\n  Installed: (none)\n  Candidate: 7.2.13-1\n  Version table:\n";
        assert_eq!(parse_candidate(policy).as_deref(), Some("7.2.13-1"));
        assert_eq!(parse_candidate("x:\n  Candidate: (none)\n"), None);
    }

    #[test]
    fn split_kernel_packages_are_followed() {
        let d = "dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, \
                 linux-base-7.2.13+deb14-amd64 (= 7.2.13-1), linux-binary-7.2.13+deb14-amd64 (= 7.2.13-1), \
                 linux-modules-7.2.13+deb14-amd64 (= 7.2.13-1)";
        assert_eq!(
            kernel_part_depends(d),
            vec![
                (
                    "linux-binary-7.2.13+deb14-amd64".to_owned(),
                    Some("7.2.13-1".to_owned())
                ),
                (
                    "linux-modules-7.2.13+deb14-amd64".to_owned(),
                    Some("7.2.13-1".to_owned())
                ),
            ]
        );
        assert!(kernel_part_depends("kmod, linux-base (>= 4.3~), initramfs-tools").is_empty());
    }

    #[test]
    fn finds_images_in_both_layouts() {
        let t = tempfile::tempdir().unwrap();
        assert!(find_image(t.path()).is_none());
        let m = t.path().join("usr/lib/modules/7.2.13+deb14-amd64");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("vmlinuz"), b"x").unwrap();
        assert_eq!(find_image(t.path()).unwrap().1, "7.2.13+deb14-amd64");
        std::fs::create_dir_all(t.path().join("boot")).unwrap();
        std::fs::write(t.path().join("boot/vmlinuz-6.1.0-56-amd64"), b"x").unwrap();
        assert_eq!(find_image(t.path()).unwrap().1, "6.1.0-56-amd64");
    }

    #[test]
    fn image_package_names() {
        assert!(is_versioned_image("linux-image-6.1.0-56-amd64"));
        assert!(is_versioned_image("linux-image-7.2.13+deb14-amd64"));
        assert!(!is_versioned_image("linux-image-amd64"));
        assert!(!is_versioned_image("linux-image-6.1.0-56-amd64-dbg"));
    }

    #[test]
    fn cache_key_tracks_inputs() {
        let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vm-images");
        let tmp = tempfile::tempdir().unwrap();
        // Copy the tree the key depends on, then change one input at a time.
        for rel in [
            RECIPE,
            "patches/0001-pidfd-add-CLONE_WAIT_PID-6.12.patch",
            "config/base-virtme.config",
        ] {
            let to = tmp.path().join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(real.join(rel), &to).unwrap();
        }
        let set = ProfileSet::load(&real).unwrap();
        let mut p = set.get("wait-pid-6.12").unwrap().clone();
        let base = source_cache_key(&p, tmp.path()).unwrap();
        assert_eq!(base, source_cache_key(&p, tmp.path()).unwrap(), "stable");
        assert_eq!(
            base,
            source_cache_key(&p, &real).unwrap(),
            "same contents, same key"
        );
        let frag = tmp.path().join("config/base-virtme.config");
        let mut text = std::fs::read_to_string(&frag).unwrap();
        text.push_str("CONFIG_KCOV=y\n");
        std::fs::write(&frag, text).unwrap();
        let changed = source_cache_key(&p, tmp.path()).unwrap();
        assert_ne!(base, changed, "fragment contents");
        p.source.as_mut().unwrap().version = "6.12.118-1".into();
        assert_ne!(
            changed,
            source_cache_key(&p, tmp.path()).unwrap(),
            "package version"
        );
        let before = source_cache_key(&p, tmp.path()).unwrap();
        p.source.as_mut().unwrap().keep_vmlinux = true;
        assert_ne!(
            before,
            source_cache_key(&p, tmp.path()).unwrap(),
            "keep_vmlinux builds elsewhere, so it keys the build"
        );
    }

    #[test]
    fn the_kcov_profile_keeps_vmlinux_and_the_others_do_not() {
        let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vm-images");
        let set = ProfileSet::load(&real).unwrap();
        let kcov = set.get("wait-pid-6.12-kcov").unwrap();
        let spec = kcov.source.as_ref().unwrap();
        assert!(spec.keep_vmlinux);
        assert_eq!(spec.extra_config_fragments, vec!["config/kcov.config"]);
        let plain = set.get("wait-pid-6.12").unwrap();
        assert!(!plain.source.as_ref().unwrap().keep_vmlinux);
        // The same sources: the coverage is of the kernel the table's snapshot is of.
        let p = plain.source.as_ref().unwrap();
        assert_eq!((&spec.version, &spec.patches), (&p.version, &p.patches));
    }
}
