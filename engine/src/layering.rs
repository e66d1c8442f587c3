//! Keeps the crate's dependencies pointing one way: no two modules (files)
//! may use each other, directly or through others. A module may use its
//! ancestors' re-exports; everything else counts. Read from the source, so
//! that a new `use` that closes a circle fails here, naming the circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`journal::undo`) of every source file, with its text.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        for entry in std::fs::read_dir(src.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let path = rel.join(&name);
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
                continue;
            }
            let Some(stem) = name.strip_suffix(".rs") else {
                continue;
            };
            let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
            if !matches!(stem, "mod" | "lib" | "main") {
                parts.push(stem.to_owned());
            }
            out.insert(parts.join("::"), std::fs::read_to_string(src.join(path)).unwrap());
        }
    }
    out
}

/// The modules that `module`'s code (comments left out) refers to.
fn uses(module: &str, text: &str, known: &BTreeMap<String, String>) -> BTreeSet<String> {
    let parent = |m: &str| m.rsplit_once("::").map_or(String::new(), |(p, _)| p.to_owned());
    let mut out = BTreeSet::new();
    for line in text.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
        for (i, _) in line.match_indices("crate::").chain(line.match_indices("super::")) {
            let rest = &line[i..];
            let (mut base, rest) = match rest.strip_prefix("crate::") {
                Some(rest) => (String::new(), rest),
                None => (parent(module), &rest["super::".len()..]),
            };
            // The longest prefix of the path that is a module.
            let mut target = base.clone();
            for segment in rest.split("::") {
                let segment: String = segment
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let next = if base.is_empty() {
                    segment
                } else {
                    format!("{base}::{segment}")
                };
                if !known.contains_key(&next) {
                    break;
                }
                target = next.clone();
                base = next;
            }
            let ancestor =
                module == target || module.starts_with(&format!("{target}::")) || target.is_empty();
            if !ancestor {
                out.insert(target);
            }
        }
    }
    out
}

/// A circle through `start`, if there is one.
fn circle(start: &str, graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                return Some([path.clone(), vec![start.to_owned()]].concat());
            }
            if seen.insert(next.clone()) {
                stack.push((next.clone(), [path.clone(), vec![next.clone()]].concat()));
            }
        }
    }
    None
}

#[test]
fn no_two_modules_depend_on_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&src);
    // The binary's CLI is a crate of its own over the library.
    let graph: BTreeMap<String, BTreeSet<String>> = known
        .iter()
        .filter(|(m, _)| !m.starts_with("cli"))
        .map(|(m, text)| (m.clone(), uses(m, text, &known)))
        .collect();
    let circles: Vec<String> = graph
        .keys()
        .filter_map(|m| circle(m, &graph))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(circles.is_empty(), "modules in a circle:\n{}", circles.join("\n"));
}

#[test]
fn leaves_depend_on_nothing_in_the_crate() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&src);
    for leaf in ["events", "grant", "cancel", "diagnostic"] {
        let used = uses(leaf, &known[leaf], &known);
        assert!(used.is_empty(), "{leaf} uses {used:?}");
    }
}

#[test]
fn library_messages_name_no_command_or_flag() {
    // The CLI adds which command or flag fixes a problem: an embedding
    // program has none of them. (Advice to run other tools, `cargo` or
    // `wasm-tools`, is the library's to give.)
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let command = ["`", "stepback "].concat();
    let mut found = Vec::new();
    for (module, text) in modules(&src)
        .iter()
        .filter(|(m, _)| !m.starts_with("cli") && *m != "layering")
    {
        for line in text.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
            let flag = line
                .match_indices(" --")
                .chain(line.match_indices("\"--"))
                .any(|(i, _)| line[i + 3..].starts_with(|c: char| c.is_ascii_lowercase()));
            let other_tool = line.contains("cargo ") || line.contains("wasm-tools ");
            if line.contains('"') && !other_tool && (line.contains(&command) || flag) {
                found.push(format!("{module}: {line}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "library messages that name the CLI:\n{}",
        found.join("\n")
    );
}
