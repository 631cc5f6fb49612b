//! Embeds the regression files: every `regressions/*.case` found at build
//! time becomes one `(file name, include_str!(its path))` entry of
//! `$OUT_DIR/regressions.rs`, which cases/src/fuzzing/regress.rs includes.
//! Cargo reruns this when anything under `regressions/` changes, so a file
//! saved by `wcfuzz regress` is a row after the next build.

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.extension().is_some_and(|x| x == "case"))
        .collect();
    files.sort();
    let mut out = String::from("pub const FILES: &[(&str, &str)] = &[\n");
    for p in &files {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_else(|| panic!("{}: not UTF-8", p.display()));
        let path = p
            .to_str()
            .unwrap_or_else(|| panic!("{}: not UTF-8", p.display()));
        out.push_str(&format!("    ({name:?}, include_str!({path:?})),\n"));
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("regressions.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
}
