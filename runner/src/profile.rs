//! Kernel profiles: the declarative descriptions under `vm-images/profiles/*.toml`.
//!
//! A profile says where a kernel comes from (a Debian source package plus patches and config
//! fragments, a prebuilt Debian image package, or the running host kernel), which clone3 bit
//! the kernel uses for CLONE_WAIT_PID, and whether the feature is expected to be there. The
//! engine never hard-codes a kernel; adding one is adding a file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

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
}

/// Whether the kernel implements CLONE_WAIT_PID at the profile's bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
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
    pub vm: VmSpec,
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

/// Parses a clone3 flag word written as hex (`0x10000000000`). It must be exactly one bit, and
/// one of the clone3-only bits (32..=63): the legacy 32 bits are all taken.
pub fn parse_clone_bit(text: &str) -> Result<u64, ConfigError> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .ok_or_else(|| ConfigError(format!("clone bit {text:?}: write it as hex, 0x...")))?;
    let value = u64::from_str_radix(digits, 16)
        .map_err(|e| ConfigError(format!("clone bit {text:?}: {e}")))?;
    if value.count_ones() != 1 {
        return Err(ConfigError(format!(
            "clone bit {text:?}: must be exactly one bit"
        )));
    }
    if value.trailing_zeros() < 32 {
        return Err(ConfigError(format!(
            "clone bit {text:?}: bit {} is a legacy clone flag; CLONE_WAIT_PID lives in the \
             clone3-only bits 32..63",
            value.trailing_zeros()
        )));
    }
    Ok(value)
}

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
        match (self.kind, &self.source, &self.prebuilt) {
            (Kind::Source, Some(s), None) => {
                if s.config_fragments.is_empty() {
                    return err("a source profile needs at least one config fragment".into());
                }
            }
            (Kind::DebianPrebuilt, None, Some(_)) | (Kind::Host, None, None) => {}
            (kind, _, _) => {
                return err(format!(
                    "kind {kind:?} needs exactly its own table ([source] for source, \
                     [prebuilt] for debian-prebuilt, neither for host)"
                ))
            }
        }
        if self.vm.cpus == 0 || self.vm.timeout_s == 0 {
            return err("vm.cpus and vm.timeout_s must be positive".into());
        }
        Ok(())
    }

    pub fn clone_bit(&self) -> u64 {
        // Validated at parse time.
        parse_clone_bit(&self.clone_wait_pid_flag).expect("validated clone bit")
    }

    /// Files (relative to `vm-images/`) whose contents define the build.
    pub fn referenced_files(&self) -> Vec<&str> {
        let mut v = Vec::new();
        if let Some(s) = &self.source {
            v.extend(s.patches.iter().map(String::as_str));
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
            let profile = Profile::parse(&text, &stem)?;
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
        assert!(parse_clone_bit("12").is_err(), "decimal");
        assert!(parse_clone_bit("0x3").is_err(), "two bits");
        assert!(parse_clone_bit("0x1000").unwrap_err().0.contains("legacy"));
        assert!(parse_clone_bit("0xzz").is_err());
        assert!(parse_clone_bit("0x0").is_err());
        let bad = SOURCE.replace("0x10000000000", "0x30000000000");
        assert!(Profile::parse(&bad, "k").is_err());
    }

    #[test]
    fn repository_profiles_load() {
        let vm_images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vm-images");
        let set = ProfileSet::load(&vm_images).unwrap();
        for name in ["wait-pid-6.12", "debian-6.1", "debian-7.2", "host"] {
            set.get(name).unwrap();
        }
        assert!(set.get("nope").unwrap_err().0.contains("known profiles"));
        assert_eq!(
            set.get("wait-pid-6.12").unwrap().expect.feature,
            Feature::Present
        );
    }
}
