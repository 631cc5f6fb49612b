//! Kernel profiles: the declarative descriptions under `vm-images/profiles/*.toml`.
//!
//! A profile says where a kernel comes from (a Debian source package plus patches and config
//! fragments, a prebuilt Debian image package, a kernel image file, or the running host
//! kernel), which clone3 bit
//! the kernel uses for CLONE_WAIT_PID, and whether the feature is expected to be there. The
//! engine never hard-codes a kernel; adding one is adding a file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a profile's kernel comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Built from a Debian `linux-source-X.Y` package with the recipe in `vm-images/recipes/`.
    Source,
    /// A prebuilt Debian `linux-image-*` package, unpacked (kernel + modules) into the cache.
    DebianPrebuilt,
    /// The running kernel; no VM.
    Host,
    /// A kernel image file (bzImage or vmlinuz) built elsewhere, with an optional modules
    /// directory: `runner run --kernel-image PATH`, or an `[image]` table in a profile file.
    Image,
    /// A kernel source tree of the user's, configured with the suite's fragment and built
    /// incrementally in a kept build directory under the cache (`runner/src/tree.rs`):
    /// `runner run --kernel-tree DIR`, or a `[tree]` table in a profile file.
    Tree,
}

/// Whether the kernel implements CLONE_WAIT_PID at the profile's bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Feature {
    Present,
    Absent,
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Feature::Present => "present",
            Feature::Absent => "absent",
        })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub feature: Feature,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Debian source package, e.g. `linux-source-6.12`.
    pub package: String,
    /// Exact package version; part of the build cache key.
    pub version: String,
    /// Patch files (relative to `vm-images/`), applied with `patch -p1` in order.
    #[serde(default)]
    pub patches: Vec<String>,
    /// Patches for variants, applied after `patches`: tooling, not the subject (the KCOV
    /// profile's recording of exit_notify()). `runner coverage` counts only `patches`' added
    /// lines as the seed's. Part of the cache key when set; other profiles keep their keys.
    #[serde(default)]
    pub extra_patches: Vec<String>,
    /// Config fragments merged over `allnoconfig`.
    pub config_fragments: Vec<String>,
    /// Extra fragments for variants (KCOV, KASAN, lockdep); merged after `config_fragments`.
    #[serde(default)]
    pub extra_config_fragments: Vec<String>,
    /// Appended to the release string as `-<localversion>`.
    #[serde(default)]
    pub localversion: Option<String>,
    /// Private apt source list (relative to `vm-images/`); system sources when absent.
    #[serde(default)]
    pub apt_sources: Option<String>,
    /// Keep `vmlinux` in the cache next to `bzImage` (symbolising KCOV PCs). Such a profile is
    /// built through the kept-tree path (`crate::tree`), not the recipe, and the option is part
    /// of its cache key; profiles without it keep their keys.
    #[serde(default)]
    pub keep_vmlinux: bool,
}

impl SourceSpec {
    /// `patches`, then `extra_patches`: what is applied to the tree, in order.
    pub fn all_patches(&self) -> impl Iterator<Item = &String> {
        self.patches.iter().chain(&self.extra_patches)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrebuiltSpec {
    /// Image package or meta package (`linux-image-amd64`); a meta package is followed
    /// through its `Depends` to the versioned image package.
    pub package: String,
    /// Exact version; the candidate version when absent.
    #[serde(default)]
    pub version: Option<String>,
    /// Private apt source list (relative to `vm-images/`); system sources when absent.
    #[serde(default)]
    pub apt_sources: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// The kernel image, bzImage or vmlinuz (a profile file's relative path is relative to
    /// `vm-images/`).
    pub path: PathBuf,
    /// Its modules: a `lib/modules/<release>` directory, or a root holding one (what
    /// `make modules_install INSTALL_MOD_PATH=ROOT` leaves). Booting with modules needs an
    /// initramfs, which virtme-ng builds with the host's busybox-static.
    #[serde(default)]
    pub modules: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TreeTable {
    /// The kernel source tree (a profile file's relative path is relative to `vm-images/`).
    pub path: PathBuf,
    /// Merge the suite's fragment into the tree's own config (`config`, default
    /// `<tree>/.config`) instead of configuring from allnoconfig.
    #[serde(default)]
    pub keep_config: bool,
    #[serde(default)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    #[serde(default = "default_memory")]
    pub memory: String,
    #[serde(default = "default_cpus")]
    pub cpus: u32,
    /// Watchdog for one VM, boot included.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
}

fn default_memory() -> String {
    "1G".into()
}
fn default_cpus() -> u32 {
    2
}
fn default_timeout() -> u64 {
    900
}

impl Default for VmSpec {
    fn default() -> Self {
        VmSpec {
            memory: default_memory(),
            cpus: default_cpus(),
            timeout_s: default_timeout(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub kind: Kind,
    /// CLONE_WAIT_PID bit as this kernel defines it (hex), passed to the cases as
    /// `CLONE_WAIT_PID_FLAG`.
    pub clone_wait_pid_flag: String,
    pub expect: Expect,
    #[serde(default)]
    pub source: Option<SourceSpec>,
    #[serde(default)]
    pub prebuilt: Option<PrebuiltSpec>,
    #[serde(default)]
    pub image: Option<ImageSpec>,
    #[serde(default)]
    pub tree: Option<TreeTable>,
    #[serde(default)]
    pub vm: VmSpec,
    /// In the set `runner matrix` runs when no --kernels are named (default true; false for a
    /// profile with a purpose of its own and a long build, like the KCOV one).
    #[serde(default = "in_matrix_by_default")]
    pub matrix: bool,
}

fn in_matrix_by_default() -> bool {
    true
}

/// A configuration error: unknown profile, malformed file, bad bit. Maps to exit code 2.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Parses a clone3 flag word the way the case binary reads `CLONE_WAIT_PID_FLAG` (one parser
/// for both: `protocol::bit::parse_bit`): `0x...` hex, decimal or `bit:N`, exactly one
/// bit, and one of the clone3-only bits 32..=63 (the legacy 32 bits are all taken).
pub fn parse_clone_bit(text: &str) -> Result<u64, ConfigError> {
    protocol::bit::parse_bit(text).map_err(ConfigError)
}

/// The bit an image is probed at when nobody names one: the 6.12 port's bit 40, free in every
/// mainline kernel up to 7.2 (clone3 rejects it with EINVAL there, so the feature rows skip).
pub const DEFAULT_IMAGE_BIT: u64 = 1 << 40;

impl Profile {
    /// Parses and validates one profile file's text. `file_stem` must equal `name`.
    pub fn parse(text: &str, file_stem: &str) -> Result<Profile, ConfigError> {
        let p: Profile =
            toml::from_str(text).map_err(|e| ConfigError(format!("profile {file_stem}: {e}")))?;
        p.validate(file_stem)?;
        Ok(p)
    }

    fn validate(&self, file_stem: &str) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(format!("profile {}: {m}", self.name)));
        if self.name != file_stem {
            return err(format!(
                "name does not match its file name {file_stem}.toml"
            ));
        }
        parse_clone_bit(&self.clone_wait_pid_flag)
            .map_err(|e| ConfigError(format!("profile {}: {e}", self.name)))?;
        let tables = (self.source.is_some() as u8)
            + (self.prebuilt.is_some() as u8)
            + (self.image.is_some() as u8)
            + (self.tree.is_some() as u8);
        if self.kind == Kind::Tree {
            if self.tree.is_none() || tables != 1 {
                return err("kind tree needs exactly its own [tree] table".into());
            }
        } else if self.tree.is_some() {
            return err(format!("kind {:?} takes no [tree] table", self.kind));
        }
        match (self.kind, &self.source, &self.prebuilt, &self.image) {
            (Kind::Tree, ..) => {}
            (Kind::Source, Some(s), None, None) => {
                if s.config_fragments.is_empty() {
                    return err("a source profile needs at least one config fragment".into());
                }
            }
            (Kind::DebianPrebuilt, None, Some(_), None)
            | (Kind::Image, None, None, Some(_))
            | (Kind::Host, None, None, None) => {}
            (kind, _, _, _) => {
                return err(format!(
                    "kind {kind:?} needs exactly its own table ([source] for source, \
                     [prebuilt] for debian-prebuilt, [image] for image, none for host)"
                ))
            }
        }
        if self.vm.cpus == 0 || self.vm.timeout_s == 0 {
            return err("vm.cpus and vm.timeout_s must be positive".into());
        }
        Ok(())
    }

    /// The profile for `--kernel-image PATH [--modules DIR]`: named `image`, probed at `bit`
    /// (default [`DEFAULT_IMAGE_BIT`]), the feature expected present when a bit is named and
    /// absent otherwise unless `expect` says. A missing image or modules directory is a usage
    /// error (exit 2): nothing was started.
    pub fn for_image(
        path: &Path,
        modules: Option<&Path>,
        bit: Option<u64>,
        expect: Option<Feature>,
    ) -> Result<Profile, ConfigError> {
        let image = std::fs::canonicalize(path)
            .ok()
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                ConfigError(format!(
                    "--kernel-image {}: no such file (give a bzImage or vmlinuz)",
                    path.display()
                ))
            })?;
        let modules = match modules {
            Some(m) => Some(
                std::fs::canonicalize(m)
                    .ok()
                    .filter(|p| p.is_dir())
                    .ok_or_else(|| {
                        ConfigError(format!("--modules {}: no such directory", m.display()))
                    })?,
            ),
            None => None,
        };
        let p = Profile {
            name: "image".into(),
            description: format!("kernel image {}", image.display()),
            kind: Kind::Image,
            clone_wait_pid_flag: String::new(),
            expect: Expect {
                feature: Feature::Absent,
            },
            source: None,
            prebuilt: None,
            image: Some(ImageSpec {
                path: image,
                modules,
            }),
            tree: None,
            vm: VmSpec::default(),
            matrix: false,
        };
        Ok(p.with_overrides(
            Some(bit.unwrap_or(DEFAULT_IMAGE_BIT)),
            Some(expect.unwrap_or(if bit.is_some() {
                Feature::Present
            } else {
                Feature::Absent
            })),
        ))
    }

    /// The profile for `--kernel-tree DIR`: named `tree`, probed at `bit`, else at the
    /// CLONE_WAIT_PID the tree's `include/uapi/linux/sched.h` defines, else at
    /// [`DEFAULT_IMAGE_BIT`]; the feature is expected present when the bit was named or the tree
    /// defines it, absent otherwise, unless `expect` says. A directory that is not a kernel tree
    /// is a usage error (exit 2).
    pub fn for_tree(
        dir: &Path,
        keep_config: bool,
        config: Option<&Path>,
        bit: Option<u64>,
        expect: Option<Feature>,
    ) -> Result<Profile, ConfigError> {
        let path = std::fs::canonicalize(dir)
            .ok()
            .filter(|p| p.join("Makefile").is_file() && p.join("kernel/exit.c").is_file())
            .ok_or_else(|| {
                ConfigError(format!(
                    "--kernel-tree {}: not a kernel source tree (no Makefile or kernel/exit.c)",
                    dir.display()
                ))
            })?;
        let config = match config {
            Some(c) => Some(
                std::fs::canonicalize(c)
                    .map_err(|_| ConfigError(format!("--config {}: no such file", c.display())))?,
            ),
            None => None,
        };
        let defined = std::fs::read_to_string(path.join("include/uapi/linux/sched.h"))
            .ok()
            .and_then(|h| crate::tree::clone_wait_pid_bit(&h));
        let p = Profile {
            name: "tree".into(),
            description: format!("kernel tree {}", path.display()),
            kind: Kind::Tree,
            clone_wait_pid_flag: String::new(),
            expect: Expect {
                feature: Feature::Absent,
            },
            source: None,
            prebuilt: None,
            image: None,
            tree: Some(TreeTable {
                path,
                keep_config,
                config,
            }),
            vm: VmSpec::default(),
            matrix: false,
        };
        let named = bit.or(defined);
        Ok(p.with_overrides(
            Some(named.unwrap_or(DEFAULT_IMAGE_BIT)),
            Some(expect.unwrap_or(if named.is_some() {
                Feature::Present
            } else {
                Feature::Absent
            })),
        ))
    }

    /// The profile with `--clone-wait-pid-flag` and `--expect-feature` applied.
    pub fn with_overrides(mut self, bit: Option<u64>, expect: Option<Feature>) -> Profile {
        if let Some(b) = bit {
            self.clone_wait_pid_flag = format!("{b:#x}");
        }
        if let Some(f) = expect {
            self.expect.feature = f;
        }
        self
    }

    /// Whether virtme-ng must build an initramfs for this kernel (modules to load: the Debian
    /// kernels' virtio and 9p drivers, an image's `--modules`), which needs busybox-static.
    pub fn needs_initramfs(&self) -> bool {
        match self.kind {
            Kind::DebianPrebuilt => true,
            Kind::Image => self.image.as_ref().is_some_and(|i| i.modules.is_some()),
            Kind::Source | Kind::Host | Kind::Tree => false,
        }
    }

    pub fn clone_bit(&self) -> u64 {
        // Validated at parse time.
        parse_clone_bit(&self.clone_wait_pid_flag).expect("validated clone bit")
    }

    /// Files (relative to `vm-images/`) whose contents define the build.
    pub fn referenced_files(&self) -> Vec<&str> {
        let mut v = Vec::new();
        if let Some(s) = &self.source {
            v.extend(s.all_patches().map(String::as_str));
            v.extend(s.config_fragments.iter().map(String::as_str));
            v.extend(s.extra_config_fragments.iter().map(String::as_str));
            v.extend(s.apt_sources.as_deref());
        }
        if let Some(p) = &self.prebuilt {
            v.extend(p.apt_sources.as_deref());
        }
        v
    }
}

/// All profiles of a `vm-images/` directory, by name.
#[derive(Debug)]
pub struct ProfileSet {
    pub profiles: BTreeMap<String, Profile>,
}

impl ProfileSet {
    pub fn load(vm_images: &Path) -> Result<ProfileSet, ConfigError> {
        let dir = vm_images.join("profiles");
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", dir.display())))?;
        let mut profiles = BTreeMap::new();
        for entry in entries {
            let path = entry.map_err(|e| ConfigError(e.to_string()))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
            let mut profile = Profile::parse(&text, &stem)?;
            if let Some(t) = &mut profile.tree {
                t.path = vm_images.join(&t.path);
                if let Some(c) = &mut t.config {
                    *c = vm_images.join(&*c);
                }
            }
            if let Some(img) = &mut profile.image {
                img.path = vm_images.join(&img.path);
                if let Some(m) = &mut img.modules {
                    *m = vm_images.join(&*m);
                }
            }
            for rel in profile.referenced_files() {
                if !vm_images.join(rel).is_file() {
                    return Err(ConfigError(format!(
                        "profile {stem}: {rel} does not exist under {}",
                        vm_images.display()
                    )));
                }
            }
            profiles.insert(stem, profile);
        }
        if profiles.is_empty() {
            return Err(ConfigError(format!("no profiles in {}", dir.display())));
        }
        Ok(ProfileSet { profiles })
    }

    pub fn get(&self, name: &str) -> Result<&Profile, ConfigError> {
        self.profiles.get(name).ok_or_else(|| {
            ConfigError(format!(
                "unknown profile {name:?}; known profiles: {}",
                self.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }
}

/// The repository's `host` profile (tests that run on the host).
#[cfg(test)]
pub(crate) fn host_profile() -> Profile {
    let vm_images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vm-images");
    ProfileSet::load(&vm_images)
        .unwrap()
        .get("host")
        .unwrap()
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = r#"
        name = "k"
        description = "d"
        kind = "source"
        clone_wait_pid_flag = "0x10000000000"
        [expect]
        feature = "present"
        [source]
        package = "linux-source-6.12"
        version = "1"
        patches = ["p.patch"]
        config_fragments = ["a.config"]
    "#;

    #[test]
    fn parses_source_profile_with_defaults() {
        let p = Profile::parse(SOURCE, "k").unwrap();
        assert_eq!(p.kind, Kind::Source);
        assert_eq!(p.clone_bit(), 1 << 40);
        assert_eq!(p.vm.cpus, 2);
        assert_eq!(p.referenced_files(), vec!["p.patch", "a.config"]);
    }

    #[test]
    fn rejects_name_mismatch_unknown_field_and_missing_table() {
        assert!(Profile::parse(SOURCE, "other")
            .unwrap_err()
            .0
            .contains("file name"));
        let unknown = SOURCE.replace("kind = \"source\"", "kind = \"source\"\nbogus = 1");
        assert!(Profile::parse(&unknown, "k").is_err());
        let host_with_source = SOURCE.replace("kind = \"source\"", "kind = \"host\"");
        assert!(Profile::parse(&host_with_source, "k")
            .unwrap_err()
            .0
            .contains("exactly"));
    }

    #[test]
    fn clone_bit_validation() {
        assert_eq!(parse_clone_bit("0x200000000").unwrap(), 1 << 33);
        // The case binary's grammar: decimal and bit:N too.
        assert_eq!(parse_clone_bit("1099511627776").unwrap(), 1 << 40);
        assert_eq!(parse_clone_bit("bit:40").unwrap(), 1 << 40);
        assert!(parse_clone_bit("12").is_err(), "a legacy bit");
        assert!(parse_clone_bit("bit:64").is_err());
        assert!(parse_clone_bit("0x3").is_err(), "two bits");
        assert!(parse_clone_bit("0x1000").unwrap_err().0.contains("legacy"));
        assert!(parse_clone_bit("0xzz").is_err());
        assert!(parse_clone_bit("0x0").is_err());
        let bad = SOURCE.replace("0x10000000000", "0x30000000000");
        assert!(Profile::parse(&bad, "k").is_err());
    }

    #[test]
    fn image_profile_defaults_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("bzImage");
        std::fs::write(&img, b"not really a kernel").unwrap();
        // No bit: probed at bit 40, the feature expected absent.
        let p = Profile::for_image(&img, None, None, None).unwrap();
        assert_eq!((p.kind, p.name.as_str()), (Kind::Image, "image"));
        assert_eq!(
            (p.clone_bit(), p.expect.feature),
            (1 << 40, Feature::Absent)
        );
        assert!(!p.needs_initramfs());
        // A bit: the feature expected present, unless told otherwise.
        let p = Profile::for_image(&img, None, Some(1 << 41), None).unwrap();
        assert_eq!(
            (p.clone_bit(), p.expect.feature),
            (1 << 41, Feature::Present)
        );
        let p = Profile::for_image(&img, Some(dir.path()), Some(1 << 41), Some(Feature::Absent))
            .unwrap();
        assert_eq!(p.expect.feature, Feature::Absent);
        assert!(p.needs_initramfs(), "modules need an initramfs");
        let missing = Profile::for_image(&dir.path().join("nope"), None, None, None).unwrap_err();
        assert!(missing.0.contains("no such file"), "{missing}");
        let no_mods = Profile::for_image(&img, Some(&img), None, None).unwrap_err();
        assert!(no_mods.0.contains("no such directory"), "{no_mods}");
    }

    #[test]
    fn image_kind_needs_its_table() {
        let text = r#"
            name = "k"
            description = "d"
            kind = "image"
            clone_wait_pid_flag = "bit:40"
            [expect]
            feature = "present"
            [image]
            path = "/boot/vmlinuz"
        "#;
        let p = Profile::parse(text, "k").unwrap();
        assert_eq!(p.clone_bit(), 1 << 40);
        let bare = text.replace("[image]\n            path = \"/boot/vmlinuz\"", "");
        assert!(Profile::parse(&bare, "k")
            .unwrap_err()
            .0
            .contains("exactly"));
    }

    #[test]
    fn profile_overrides() {
        let p = Profile::parse(SOURCE, "k")
            .unwrap()
            .with_overrides(Some(1 << 41), Some(Feature::Absent));
        assert_eq!(
            (p.clone_bit(), p.expect.feature),
            (1 << 41, Feature::Absent)
        );
        assert!(!p.needs_initramfs());
    }

    #[test]
    fn repository_profiles_load() {
        let vm_images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vm-images");
        let set = ProfileSet::load(&vm_images).unwrap();
        for name in [
            "wait-pid-6.12",
            "wait-pid-7.2",
            "debian-6.1",
            "debian-7.2",
            "host",
        ] {
            set.get(name).unwrap();
        }
        // 7.2 takes bits 32-37 (CLEAR_SIGHAND .. EMPTY_MNTNS): the port sits on the next one.
        let w72 = set.get("wait-pid-7.2").unwrap();
        assert_eq!(
            (w72.clone_bit(), w72.expect.feature),
            (1 << 38, Feature::Present)
        );
        assert!(set.get("nope").unwrap_err().0.contains("known profiles"));
        assert_eq!(
            set.get("wait-pid-6.12").unwrap().expect.feature,
            Feature::Present
        );
        // The default matrix: every profile but the KCOV one (long build, its own command).
        let in_matrix: Vec<&str> = set
            .profiles
            .values()
            .filter(|p| p.matrix)
            .map(|p| p.name.as_str())
            .collect();
        assert!(!in_matrix.contains(&"wait-pid-6.12-kcov"), "{in_matrix:?}");
        assert!(in_matrix.contains(&"wait-pid-6.12") && in_matrix.contains(&"debian-7.2"));
    }
}
