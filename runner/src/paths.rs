//! Where things live: the repository (profiles, recipes, snapshots) and the machine-wide cache
//! outside it (kernels, packages, the virtme-ng venv, the accelerator decision).

use std::path::{Path, PathBuf};

/// The first 8 bytes of the SHA-256 of `bytes`, in hex: how cache entries and ids are named.
pub fn short_hash(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Machine-wide cache root; `WAITCONF_CACHE` overrides it.
pub fn cache_root() -> PathBuf {
    std::env::var_os("WAITCONF_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/wait-conformance"))
}

/// The repository root: the workspace that holds `vm-images/profiles`. Searched upwards from
/// the current directory first, then the directory this runner was compiled in.
pub fn workspace_root() -> PathBuf {
    if let Ok(cwd) = std::env::current_dir() {
        let mut dir: Option<&Path> = Some(&cwd);
        while let Some(d) = dir {
            if d.join("vm-images/profiles").is_dir() && d.join("runner").is_dir() {
                return d.to_owned();
            }
            dir = d.parent();
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runner/ has a parent")
        .to_owned()
}

pub struct Paths {
    pub workspace: PathBuf,
    pub vm_images: PathBuf,
    pub snapshots: PathBuf,
    pub cache: PathBuf,
}

impl Paths {
    pub fn discover(vm_images: Option<PathBuf>) -> Paths {
        let workspace = workspace_root();
        Paths {
            vm_images: vm_images.unwrap_or_else(|| workspace.join("vm-images")),
            snapshots: workspace.join("runner/snapshots"),
            cache: cache_root(),
            workspace,
        }
    }
    pub fn kernels(&self) -> PathBuf {
        self.cache.join("kernels")
    }
    pub fn downloads(&self) -> PathBuf {
        self.cache.join("downloads")
    }
    pub fn apt_state(&self, name: &str) -> PathBuf {
        self.cache.join("apt").join(name)
    }
}
