//! virtme-ng from PyPI at a pinned version, in a venv the runner owns under the cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

use crate::kernel::{lock_file, run_checked};
use crate::paths::Paths;
use crate::progress;

pub const VIRTME_NG_VERSION: &str = "1.42";

pub fn venv_dir(paths: &Paths) -> PathBuf {
    paths
        .cache
        .join(format!("venv-virtme-ng-{VIRTME_NG_VERSION}"))
}

/// Returns the `vng` executable, creating the venv on first use. QEMU comes from Debian
/// (`qemu-system-x86`); its absence is reported, not installed, here.
pub fn ensure(paths: &Paths) -> Result<PathBuf> {
    if which("qemu-system-x86_64").is_none() {
        bail!("qemu-system-x86_64 not found: apt-get install qemu-system-x86 (vm-images/ci-steps.sh does)");
    }
    let venv = venv_dir(paths);
    let vng = venv.join("bin/vng");
    std::fs::create_dir_all(&paths.cache)?;
    let _lock = lock_file(&paths.cache.join("venv.lock"))?;
    if vng.is_file() {
        return Ok(vng);
    }
    progress!(
        "creating {} with virtme-ng=={VIRTME_NG_VERSION} from PyPI",
        venv.display()
    );
    // venvs hard-code their own path, so build in place; bin/vng appears only when pip
    // succeeded, and a failed attempt is removed.
    let _ = std::fs::remove_dir_all(&venv);
    let python = std::env::var("WAITCONF_PYTHON").unwrap_or_else(|_| "python3".into());
    let made = run_checked(Command::new(&python).args(["-m", "venv"]).arg(&venv)).and_then(|_| {
        run_checked(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(format!("virtme-ng=={VIRTME_NG_VERSION}")),
        )
    });
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&venv);
        return Err(e.context("creating the virtme-ng venv"));
    }
    if !vng.is_file() {
        bail!("pip installed virtme-ng but {} is missing", vng.display());
    }
    Ok(vng)
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|c| is_executable(c))
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
