//! The layering rule, checked by `cargo xtask ci`: a module of
//! `xtask/src` imports only its own stage or earlier ones (`base` <
//! `inputs` < `builds` < `run` < `results` < `commands`, each a folder;
//! `lib.rs` and `main.rs` are the root and exempt), and the selftest's
//! modules (`kselftest/src`) import each other without a cycle.
//!
//! A reference is any `crate::NAME` in code (`use crate::x`, `crate::x::f`,
//! `use crate::{a, b::c}`), tests included; comments and strings are left
//! out, and `super::` stays within a folder. A crate-root name is resolved
//! through lib.rs: `pub mod run` is the folder itself, `pub use
//! results::{report, ..}` puts `report` in results. No compiler, no syn:
//! a small lexer is enough for paths, and keeps line numbers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The stages, lowest first: a module may import only its own or a lower one.
pub const STAGES: &[&str] = &["base", "inputs", "builds", "run", "results", "commands"];

/// Where the xtask's modules are, relative to the workspace.
pub const XTASK_SRC: &str = "xtask/src";

/// The crate whose modules must not import each other in a cycle.
pub const KSELFTEST_SRC: &str = "kselftest/src";

/// Every crate held to no cycles among its modules: the guests' (the
/// xtask is held to its stages instead).
pub const CYCLE_FREE: &[&str] = &[KSELFTEST_SRC, "probe/src"];

/// Both checks on the workspace at `root`: every finding in one error.
pub fn check(root: &Path) -> Result<()> {
    let mut findings = upward_imports(root)?;
    for src in CYCLE_FREE {
        findings.extend(cycles_in(root, src)?);
    }
    if !findings.is_empty() {
        bail!(
            "the layering is broken (a module imports only its own stage or an earlier one: {}; no cycle among the modules of {}):\n  {}",
            STAGES.join(" < "),
            CYCLE_FREE.join(" or "),
            findings.join("\n  ")
        );
    }
    Ok(())
}

/// One line per import of a later stage (and per file outside the stage
/// folders, or name lib.rs does not place), as `file:line imports module
/// (stage) from a lower stage (stage)`.
pub fn upward_imports(root: &Path) -> Result<Vec<String>> {
    let src = root.join(XTASK_SRC);
    let lib = std::fs::read_to_string(src.join("lib.rs"))
        .with_context(|| format!("reading {XTASK_SRC}/lib.rs"))?;
    let places = root_names(&lib);
    let mut findings = Vec::new();
    for (rel, text) in sources(&src)? {
        let shown = format!("{XTASK_SRC}/{}", rel.display());
        let mut parts = rel.iter().map(|p| p.to_string_lossy().into_owned());
        let first = parts.next().unwrap_or_default();
        if parts.next().is_none() {
            if first != "lib.rs" && first != "main.rs" {
                findings.push(format!(
                    "{shown} is in no stage folder ({})",
                    STAGES.join(", ")
                ));
            }
            continue;
        }
        let Some(rank) = STAGES.iter().position(|s| *s == first) else {
            findings.push(format!(
                "{shown} is in {first}/, which is no stage ({})",
                STAGES.join(", ")
            ));
            continue;
        };
        let mut seen = BTreeSet::new();
        for (line, name) in crate_refs(&text) {
            if !seen.insert((line, name.clone())) {
                continue;
            }
            match places.get(&name) {
                Some(stage) => {
                    let theirs = STAGES.iter().position(|s| s == stage);
                    if theirs.is_some_and(|t| t > rank) {
                        findings.push(format!(
                            "{shown}:{line} imports {name} ({stage}) from a lower stage ({first})"
                        ));
                    }
                }
                None => findings.push(format!(
                    "{shown}:{line} imports crate::{name}, which {XTASK_SRC}/lib.rs neither declares as a stage nor re-exports from one"
                )),
            }
        }
    }
    Ok(findings)
}

/// One line per import cycle among the modules of `kselftest/src`, as
/// `a -> b -> a`, with the lines that make each step.
pub fn import_cycles(root: &Path) -> Result<Vec<String>> {
    cycles_in(root, KSELFTEST_SRC)
}

/// The import cycles among the modules of the crate at `root/crate_src`
/// (none for a tree without that crate).
pub fn cycles_in(root: &Path, crate_src: &str) -> Result<Vec<String>> {
    let src = root.join(crate_src);
    if !src.is_dir() {
        return Ok(Vec::new());
    }
    let mut edges: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let files = sources(&src)?;
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|(rel, _)| rel.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|m| m != "lib" && m != "main")
        .collect();
    for (rel, text) in &files {
        let from = rel.file_stem().unwrap_or_default().to_string_lossy();
        if !modules.contains(from.as_ref()) {
            continue;
        }
        let out = edges.entry(from.to_string()).or_default();
        for (line, name) in crate_refs(text) {
            if modules.contains(&name) && name != from {
                out.entry(name).or_insert(line);
            }
        }
    }
    Ok(cycles(&edges)
        .into_iter()
        .map(|c| {
            let steps: Vec<String> = c
                .windows(2)
                .map(|w| format!("{crate_src}/{}.rs:{}", w[0], edges[&w[0]][&w[1]]))
                .collect();
            format!(
                "{crate_src}: import cycle {} ({})",
                c.join(" -> "),
                steps.join(", ")
            )
        })
        .collect())
}

/// The cycles a depth-first walk closes (each back edge one, starting at
/// the module it returns to): none exactly when the graph has none.
fn cycles(edges: &BTreeMap<String, BTreeMap<String, usize>>) -> Vec<Vec<String>> {
    fn walk(
        at: &str,
        edges: &BTreeMap<String, BTreeMap<String, usize>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        path.push(at.to_string());
        for next in edges.get(at).into_iter().flat_map(|e| e.keys()) {
            if let Some(i) = path.iter().position(|p| p == next) {
                let mut c = path[i..].to_vec();
                c.push(next.clone());
                found.push(c);
            } else if !done.contains(next) {
                walk(next, edges, path, done, found);
            }
        }
        path.pop();
        done.insert(at.to_string());
    }
    let (mut done, mut found) = (BTreeSet::new(), Vec::new());
    for m in edges.keys() {
        if !done.contains(m) {
            walk(m, edges, &mut Vec::new(), &mut done, &mut found);
        }
    }
    found
}

/// Every `.rs` file under `src`, relative to it, with its text, in order.
fn sources(src: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(src).sort_by_file_name() {
        let e = e.with_context(|| format!("listing {}", src.display()))?;
        if e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(e.path())
                .with_context(|| format!("reading {}", e.path().display()))?;
            let rel = e.path().strip_prefix(src).unwrap_or(e.path()).to_path_buf();
            out.push((rel, text));
        }
    }
    Ok(out)
}

/// Crate-root names and the stage folder each lives in, from lib.rs:
/// `pub mod base` is `base` itself; every name a `pub use FOLDER::...`
/// brings in (after `as`, if renamed) is in FOLDER.
pub fn root_names(lib_rs: &str) -> BTreeMap<String, String> {
    let tokens = tokens(&code_only(lib_rs));
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i < tokens.len() {
        let word = |j: usize| tokens.get(j).map(|t| t.text.as_str());
        if word(i) == Some("mod") {
            if let Some(name) = word(i + 1) {
                out.insert(name.to_string(), name.to_string());
            }
        } else if word(i) == Some("use") {
            let mut j = i + 1;
            while word(j).is_some_and(|w| w == "crate" || w == "self" || w == "::") {
                j += 1;
            }
            if let Some(folder) = word(j) {
                let mut names = Vec::new();
                let mut k = j;
                use_leaves(&tokens, &mut k, None, &mut names);
                for n in names {
                    out.insert(n, folder.to_string());
                }
            }
            i = j;
        }
        i += 1;
    }
    out
}

/// The names a use tree starting at `tokens[*at]` brings into scope:
/// `a::b` brings `b`, `a::{b, c as d}` brings `b` and `d`, `a::{self}`
/// brings `a`; a glob brings nothing that can be named here.
fn use_leaves(tokens: &[Token], at: &mut usize, parent: Option<&str>, out: &mut Vec<String>) {
    let word = |j: usize| tokens.get(j).map(|t| t.text.as_str());
    let mut last: Option<String> = None;
    loop {
        match word(*at) {
            Some("{") => {
                *at += 1;
                loop {
                    use_leaves(tokens, at, last.as_deref().or(parent), out);
                    match word(*at) {
                        Some(",") => *at += 1,
                        Some("}") => {
                            *at += 1;
                            break;
                        }
                        _ => return,
                    }
                    if word(*at) == Some("}") {
                        *at += 1;
                        break;
                    }
                }
                return;
            }
            Some("*") => {
                *at += 1;
                return;
            }
            Some("::") => *at += 1,
            Some("as") => {
                if let Some(alias) = word(*at + 1) {
                    out.push(alias.to_string());
                }
                *at += 2;
                return;
            }
            Some(w) if is_ident(w) => {
                last = Some(if w == "self" {
                    parent.unwrap_or(w).to_string()
                } else {
                    w.to_string()
                });
                *at += 1;
                if word(*at) != Some("::") && word(*at) != Some("as") {
                    out.extend(last);
                    return;
                }
            }
            _ => {
                out.extend(last);
                return;
            }
        }
    }
}

/// Every crate-root name `text` refers to as `crate::NAME` (or inside a
/// `crate::{..}` group), with its line (1-based), in order.
pub fn crate_refs(text: &str) -> Vec<(usize, String)> {
    let tokens = tokens(&code_only(text));
    let mut out = Vec::new();
    for i in 0..tokens.len() {
        let after_dollar = i > 0 && tokens[i - 1].text == "$";
        if tokens[i].text != "crate" || after_dollar {
            continue;
        }
        if tokens.get(i + 1).map(|t| t.text.as_str()) != Some("::") {
            continue;
        }
        let Some(next) = tokens.get(i + 2) else {
            continue;
        };
        if next.text == "{" {
            // The first word of each item at the group's own depth.
            let (mut depth, mut item_start) = (0usize, true);
            for t in &tokens[i + 2..] {
                match t.text.as_str() {
                    "{" => {
                        depth += 1;
                        item_start = depth == 1;
                        continue;
                    }
                    "}" => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    "," if depth == 1 => {
                        item_start = true;
                        continue;
                    }
                    w if item_start && depth == 1 && is_ident(w) && w != "self" => {
                        out.push((t.line, w.to_string()));
                    }
                    _ => {}
                }
                item_start = false;
            }
        } else if is_ident(&next.text) && next.text != "self" {
            out.push((next.line, next.text.clone()));
        }
    }
    out
}

#[derive(Debug)]
struct Token {
    text: String,
    line: usize,
}

fn is_ident(w: &str) -> bool {
    w.starts_with(|c: char| c.is_alphabetic() || c == '_')
}

/// Words, `::` and single punctuation marks, each with its line.
fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let (mut out, mut line, mut i) = (Vec::new(), 1, 0);
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token {
                text: chars[start..i].iter().collect(),
                line,
            });
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push(Token {
                text: "::".into(),
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                text: c.to_string(),
                line,
            });
            i += 1;
        }
    }
    out
}

/// `text` with comments, strings and character literals blanked out,
/// every newline kept so lines still count.
pub fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, s: &[char]| {
        out.extend(s.iter().map(|&ch| if ch == '\n' { '\n' } else { ' ' }));
    };
    let ident_before = |i: usize| i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
    let mut i = 0;
    while i < c.len() {
        let end = if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            // A line comment, doc comments included.
            let mut j = i;
            while j < c.len() && c[j] != '\n' {
                j += 1;
            }
            j
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            // A block comment; they nest.
            let (mut j, mut depth) = (i + 2, 1);
            while j < c.len() && depth > 0 {
                if c[j] == '/' && c.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if c[j] == '*' && c.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            j
        } else if c[i] == 'r'
            && (!ident_before(i) || (c[i - 1] == 'b' && !ident_before(i - 1)))
            && matches!(c.get(i + 1), Some('"' | '#'))
        {
            // A raw string, r"..." or r#"..."#, or a raw identifier (r#x).
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break j;
                }
                if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                    break j + 1 + hashes;
                }
                j += 1;
            }
        } else if c[i] == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            j + 1
        } else if c[i] == '\'' && c.get(i + 1) == Some(&'\\') {
            // An escaped character: '\n', '\'', '\u{..}'.
            let mut j = i + 3;
            while j < c.len() && c[j] != '\'' {
                j += 1;
            }
            j + 1
        } else if c[i] == '\'' && c.get(i + 2) == Some(&'\'') {
            i + 3
        } else {
            // Code, or a lifetime's quote.
            out.push(c[i]);
            i += 1;
            continue;
        };
        let end = end.min(c.len());
        blank(&mut out, &c[i..end]);
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_workspace_keeps_its_layers() {
        check(crate::workspace()).unwrap();
    }

    use super::*;

    /// A workspace in a tempdir with `files` (path, text) written.
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = t.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        t
    }

    const LIB: &str = "//! The crate.\n\
        pub mod base;\npub mod run;\npub mod results;\n\n\
        pub use base::packages as deps;\n\
        pub use base::workspace::{cargo_build_cached, workspace};\n\
        pub use base::{cache, ui};\n\
        pub use results::{report, trace};\n\
        pub use run::{\n    guest,\n    load,\n};\n";

    #[test]
    fn an_import_of_a_later_stage_is_named_with_its_line() {
        let t = tree(&[
            ("xtask/src/lib.rs", LIB),
            ("xtask/src/base/ui.rs", "use crate::cache;\n\n// crate::guest in a comment\npub fn event(e: crate::guest::Event) {\n    let _ = \"crate::report\";\n}\n"),
            ("xtask/src/run/guest.rs", "use crate::{cache, ui};\nfn f() { crate::trace::EVENTS; }\n"),
            ("xtask/src/results/trace.rs", "use crate::guest::Event;\nuse super::report;\n"),
            ("kselftest/src/lib.rs", "pub mod a;\n"),
        ]);
        assert_eq!(
            upward_imports(t.path()).unwrap(),
            [
                "xtask/src/base/ui.rs:4 imports guest (run) from a lower stage (base)",
                "xtask/src/run/guest.rs:2 imports trace (results) from a lower stage (run)",
            ]
        );
        let e = format!("{:#}", check(t.path()).unwrap_err());
        assert!(
            e.contains("base < inputs < builds < run < results < commands")
                && e.contains(
                    "\n  xtask/src/base/ui.rs:4 imports guest (run) from a lower stage (base)\n"
                ),
            "{e}"
        );
    }

    #[test]
    fn a_clean_tree_passes_and_tests_count_too() {
        let clean = [
            ("xtask/src/lib.rs", LIB),
            ("xtask/src/main.rs", "use xtask::report;\nfn main() { xtask::run::guest::boot(); }\n"),
            ("xtask/src/base/cache.rs", "pub fn f() { crate::ui::info(\"\"); crate::workspace(); crate::deps::ensure(); }\n"),
            ("xtask/src/results/report.rs", "use crate::{\n    guest::{self, Accel},\n    load,\n};\n#[cfg(test)]\nmod tests {\n    use crate::trace::tests::fixture;\n}\n"),
            ("kselftest/src/lib.rs", "pub mod a;\npub mod b;\n"),
            ("kselftest/src/a.rs", "use crate::b;\nuse crate::KSFT_FAIL;\n"),
            ("kselftest/src/b.rs", "pub fn f() {}\n"),
        ];
        let t = tree(&clean);
        assert!(upward_imports(t.path()).unwrap().is_empty());
        check(t.path()).unwrap();
        // A test module is held to the rule as well.
        let t = tree(&[
            ("xtask/src/lib.rs", LIB),
            (
                "xtask/src/run/load.rs",
                "#[cfg(test)]\nmod tests {\n    use crate::report::Row;\n}\n",
            ),
        ]);
        assert_eq!(
            upward_imports(t.path()).unwrap(),
            ["xtask/src/run/load.rs:3 imports report (results) from a lower stage (run)"]
        );
    }

    #[test]
    fn lib_rs_places_every_name_it_declares_or_re_exports() {
        let names = root_names(LIB);
        let at = |n: &str| names.get(n).map(String::as_str);
        assert_eq!(at("base"), Some("base"));
        assert_eq!(at("run"), Some("run"));
        assert_eq!(at("report"), Some("results"));
        assert_eq!(at("guest"), Some("run"));
        assert_eq!(at("load"), Some("run"));
        assert_eq!(at("deps"), Some("base"));
        assert_eq!(at("packages"), None, "renamed, not re-exported as itself");
        assert_eq!(at("workspace"), Some("base"));
        assert_eq!(at("cargo_build_cached"), Some("base"));
        assert_eq!(
            root_names("pub use builds::qemu::{self, binary::QemuBinary as Q};")
                .into_iter()
                .collect::<Vec<_>>(),
            [
                ("Q".into(), "builds".into()),
                ("qemu".into(), "builds".into())
            ]
        );
        // A name lib.rs does not place is named, not passed over.
        let t = tree(&[
            ("xtask/src/lib.rs", LIB),
            (
                "xtask/src/run/guest.rs",
                "fn f() { crate::nowhere::g(); }\n",
            ),
            ("xtask/src/stray.rs", ""),
        ]);
        let f = upward_imports(t.path()).unwrap();
        assert!(
            f[0].starts_with("xtask/src/run/guest.rs:1 imports crate::nowhere, which"),
            "{f:?}"
        );
        assert!(
            f[1].starts_with("xtask/src/stray.rs is in no stage folder"),
            "{f:?}"
        );
    }

    #[test]
    fn a_kselftest_import_cycle_is_found_and_named() {
        let t = tree(&[
            ("xtask/src/lib.rs", LIB),
            (
                "kselftest/src/lib.rs",
                "pub mod devices;\npub mod init;\npub mod run;\npub mod workload;\n",
            ),
            (
                "kselftest/src/devices.rs",
                "\nuse crate::workload::IO_SIZE;\n",
            ),
            ("kselftest/src/workload.rs", "use crate::devices::Opened;\n"),
            (
                "kselftest/src/init.rs",
                "use crate::{devices, run, KSFT_FAIL};\n",
            ),
            (
                "kselftest/src/run.rs",
                "use crate::devices;\nfn f() {\n    crate::init::boottime_ms();\n}\n",
            ),
        ]);
        assert_eq!(
            import_cycles(t.path()).unwrap(),
            [
                "kselftest/src: import cycle devices -> workload -> devices (kselftest/src/devices.rs:2, kselftest/src/workload.rs:1)",
                "kselftest/src: import cycle init -> run -> init (kselftest/src/init.rs:1, kselftest/src/run.rs:3)",
            ]
        );
        assert!(format!("{:#}", check(t.path()).unwrap_err()).contains("init -> run -> init"));
    }

    #[test]
    fn the_probe_is_held_to_no_cycles_too() {
        let t = tree(&[
            ("xtask/src/lib.rs", LIB),
            ("probe/src/lib.rs", "pub mod machine;\npub mod traps;\n"),
            (
                "probe/src/machine.rs",
                "fn f() { crate::traps::raise(); }\n",
            ),
            (
                "probe/src/traps.rs",
                "fn g() { crate::machine::exit(1); }\n",
            ),
        ]);
        assert_eq!(
            cycles_in(t.path(), "probe/src").unwrap(),
            ["probe/src: import cycle machine -> traps -> machine (probe/src/machine.rs:1, probe/src/traps.rs:1)"]
        );
        assert!(
            format!("{:#}", check(t.path()).unwrap_err()).contains("machine -> traps -> machine")
        );
    }

    #[test]
    fn comments_strings_and_char_literals_hide_no_code() {
        let text = "let a = '\"'; use crate::x;\nlet s = r#\"crate::y \"# ; /* crate::z /* nested */ */ crate::w\nfn f<'a>(v: &'a str) -> char { '\\'' } // crate::v\nlet b = b\"crate::u\"; crate::t";
        assert_eq!(
            crate_refs(text),
            [(1, "x".into()), (2, "w".into()), (4, "t".into())]
        );
        assert_eq!(code_only(text).lines().count(), 4);
        assert!(
            crate_refs("macro_rules! m { () => { $crate::x } }\npub(crate) fn f() {}").is_empty()
        );
    }
}
