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

/// The busybox virtme-ng puts into the initramfs it builds for a kernel with modules (the
/// Debian profiles, `--kernel-image --modules`), found the way virtme-ng looks: the first of
/// `busybox-static`, `busybox.static`, `busybox` on PATH or in /usr/local, /usr, / (bin, sbin).
/// It must be statically linked: virtme-ng refuses a dynamic one, after QEMU was prepared, with a
/// message only in its own stderr. The error says what to install.
pub fn static_busybox() -> Result<PathBuf> {
    const INSTALL: &str = "apt-get install busybox-static (vm-images/ci-steps.sh does)";
    let found = ["busybox-static", "busybox.static", "busybox"]
        .iter()
        .find_map(|n| {
            which(n).or_else(|| {
                ["usr/local", "usr", ""]
                    .iter()
                    .flat_map(|p| ["bin", "sbin"].map(|b| Path::new("/").join(p).join(b).join(n)))
                    .find(|c| c.is_file())
            })
        });
    let Some(bb) = found else {
        bail!("this kernel boots with modules, so virtme-ng needs a statically linked busybox for its initramfs, and there is none: {INSTALL}");
    };
    match elf_is_static(&bb) {
        Ok(true) => Ok(bb),
        Ok(false) => bail!(
            "this kernel boots with modules, so virtme-ng needs a statically linked busybox for its initramfs; {} is dynamically linked: {INSTALL}",
            bb.display()
        ),
        Err(e) => bail!("cannot read {}: {e}", bb.display()),
    }
}

/// Whether an ELF64 file has no PT_INTERP program header (static, or static-pie).
pub fn elf_is_static(path: &Path) -> std::io::Result<bool> {
    let data = std::fs::read(std::fs::canonicalize(path)?)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an ELF64 file");
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return Err(bad());
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(data[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let Some(h) = data.get(at..at + 4) else {
            return Err(bad());
        };
        const PT_INTERP: u32 = 3;
        if u32::from_le_bytes(h.try_into().expect("4 bytes")) == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dynamic_elf() {
        // /bin/sh is dynamically linked on every supported host.
        assert!(!elf_is_static(Path::new("/bin/sh")).unwrap());
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        assert!(elf_is_static(&f).is_err(), "a script is no ELF");
        // A minimal ELF64 header with no program headers at all: nothing asks for ld.so.
        let mut elf = vec![0u8; 64];
        elf[..5].copy_from_slice(b"\x7fELF\x02");
        std::fs::write(&f, &elf).unwrap();
        assert!(elf_is_static(&f).unwrap());
    }
}
