//! The guest scripts: checked-in shell templates (`runner/templates/*.sh`, shellcheck-clean)
//! rendered by plain substitution.
//!
//! A template says `@NAME@` where the runner puts a value (already a shell word, or several:
//! the caller quotes with [`shell_quote`]), and brackets optional lines with `# @begin NAME` /
//! `# @end NAME` lines, kept only when the block is on. Rendering fails loudly (a panic: the
//! templates are compiled in, so a mismatch is a bug the unit tests catch) on a placeholder
//! without a value, a value without a placeholder anywhere in the template, or a block nobody switched.

use std::collections::BTreeSet;

/// A checked-in template by its file name under `runner/templates/`.
macro_rules! template {
    ($name:literal) => {
        Template {
            name: $name,
            text: include_str!(concat!("../templates/", $name)),
        }
    };
}

/// The case run (`runner run`, `matrix`, `bench`): probe, cases, taint before and after.
pub const CASES: Template = template!("cases.sh");
/// A fuzz campaign (`runner fuzz`).
pub const FUZZ: Template = template!("fuzz.sh");
/// The case binary's probe alone (`runner probe`).
pub const PROBE: Template = template!("probe.sh");
/// Any command (`runner exec`).
pub const EXEC: Template = template!("exec.sh");

#[derive(Debug, Clone, Copy)]
pub struct Template {
    pub name: &'static str,
    pub text: &'static str,
}

/// `s` as one single-quoted POSIX shell word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Words, each quoted, joined by spaces.
pub fn shell_words<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Template {
    /// The script: `vars` substituted for their `@NAME@`s, the blocks of `blocks` kept or
    /// dropped. The guest markers are always available as `@START_MARKER@`/`@END_MARKER@`.
    pub fn render(&self, vars: &[(&str, String)], blocks: &[(&str, bool)]) -> String {
        let kept = self.keep_blocks(blocks);
        let mut vars: Vec<(&str, String)> = vars.to_vec();
        vars.push(("START_MARKER", crate::vm::START_MARKER.into()));
        vars.push(("END_MARKER", crate::vm::END_MARKER.into()));
        let mut out = String::with_capacity(kept.len());
        let mut rest = kept.as_str();
        let mut used = BTreeSet::new();
        while let Some(at) = rest.find('@') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let name_len = after
                .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                .unwrap_or(after.len());
            if name_len > 0 && after[name_len..].starts_with('@') {
                let name = &after[..name_len];
                let Some((_, v)) = vars.iter().find(|(k, _)| *k == name) else {
                    panic!("template {}: no value for @{name}@", self.name);
                };
                out.push_str(v);
                used.insert(name.to_owned());
                rest = &after[name_len + 1..];
            } else {
                out.push('@');
                rest = after;
            }
        }
        out.push_str(rest);
        // A value may belong to a dropped block, but it must belong somewhere.
        for (k, _) in &vars {
            let marker = matches!(*k, "START_MARKER" | "END_MARKER");
            assert!(
                marker || used.contains(*k) || self.text.contains(&format!("@{k}@")),
                "template {}: @{k}@ is not used",
                self.name
            );
        }
        out
    }

    /// The text with each block's lines kept or dropped, and the `# @begin`/`# @end` lines gone.
    fn keep_blocks(&self, blocks: &[(&str, bool)]) -> String {
        let mut out = String::with_capacity(self.text.len());
        let mut open: Option<(&str, bool)> = None;
        let mut seen = BTreeSet::new();
        for line in self.text.lines() {
            let t = line.trim();
            if let Some(name) = t.strip_prefix("# @begin ") {
                assert!(
                    open.is_none(),
                    "template {}: nested block {name}",
                    self.name
                );
                let Some((_, on)) = blocks.iter().find(|(k, _)| *k == name) else {
                    panic!("template {}: block {name} not switched", self.name);
                };
                open = Some((name, *on));
                seen.insert(name.to_owned());
            } else if let Some(name) = t.strip_prefix("# @end ") {
                assert_eq!(
                    open.map(|o| o.0),
                    Some(name),
                    "template {}: stray end",
                    self.name
                );
                open = None;
            } else if open.is_none_or(|(_, on)| on) {
                out.push_str(line);
                out.push('\n');
            }
        }
        assert!(open.is_none(), "template {}: unclosed block", self.name);
        for (k, _) in blocks {
            assert!(seen.contains(*k), "template {}: no block {k}", self.name);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Template = Template {
        name: "t.sh",
        text: "#!/bin/sh\necho @START_MARKER@\nX=@X@\n# @begin B\necho block @X@\n# @end B\nmail a@b.c\necho @END_MARKER@\n",
    };

    #[test]
    fn substitutes_and_switches_blocks() {
        let on = T.render(&[("X", shell_quote("it's"))], &[("B", true)]);
        assert_eq!(
            on,
            format!(
                "#!/bin/sh\necho {}\nX='it'\\''s'\necho block 'it'\\''s'\nmail a@b.c\necho {}\n",
                crate::vm::START_MARKER,
                crate::vm::END_MARKER
            )
        );
        let off = T.render(&[("X", "1".into())], &[("B", false)]);
        assert!(!off.contains("block") && !off.contains("@begin") && off.contains("X=1\n"));
    }

    #[test]
    #[should_panic(expected = "no value for @X@")]
    fn a_placeholder_without_a_value_is_a_bug() {
        T.render(&[], &[("B", true)]);
    }

    #[test]
    #[should_panic(expected = "@Y@ is not used")]
    fn a_value_without_a_placeholder_is_a_bug() {
        T.render(&[("X", "1".into()), ("Y", "2".into())], &[("B", true)]);
    }

    #[test]
    #[should_panic(expected = "block B not switched")]
    fn an_unswitched_block_is_a_bug() {
        T.render(&[("X", "1".into())], &[]);
    }

    #[test]
    fn every_template_starts_as_sh_and_marks_start_and_end() {
        for t in [CASES, FUZZ, PROBE, EXEC] {
            assert!(t.text.starts_with("#!/bin/sh\n"), "{}", t.name);
            assert!(t.text.contains("echo @START_MARKER@"), "{}", t.name);
            assert!(t.text.contains("@END_MARKER@"), "{}", t.name);
        }
    }

    #[test]
    fn words_are_quoted_one_by_one() {
        assert_eq!(shell_words(&["a b", "it's", ""]), "'a b' 'it'\\''s' ''");
    }
}
