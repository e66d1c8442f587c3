//! `stepback plugin new`: a project that builds to a step component with
//! one command (`stepback plugin build`), tests itself in the real engine
//! (`stepback plugin test`), and needs no WIT written by hand.

use super::Lang;
use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};

/// A project written by [`create`].
#[derive(Debug)]
pub struct Created {
    /// The project's directory.
    pub dir: PathBuf,
    /// The files written, relative to `dir`, in the order written.
    pub files: Vec<&'static str>,
}

/// Writes a new `lang` project for plugin `name` into `dir`, which must
/// not exist or be empty: nothing is written when anything is wrong. The
/// files are written into a sibling directory renamed into place at the
/// end, so a failed write (a full disk) leaves no half project.
pub fn create(name: &str, lang: Lang, dir: &Path) -> anyhow::Result<Created> {
    check_name(name)?;
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        bail!(
            "{} already exists and is not empty: choose another name or directory",
            dir.display()
        );
    }
    let absolute = std::path::absolute(dir).with_context(|| format!("finding {}", dir.display()))?;
    let parent = absolute.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.new-"))
        .tempdir_in(parent)
        .with_context(|| format!("creating a directory in {}", parent.display()))?;
    let files = write_files(name, lang, staging.path())?;
    // Over an empty directory, or where none is: rename(2) does both.
    std::fs::rename(staging.path(), &absolute)
        .with_context(|| format!("moving the new project to {}", dir.display()))?;
    // Moved: nothing left for the guard to remove.
    let _ = staging.keep();
    Ok(Created {
        dir: dir.to_owned(),
        files,
    })
}

/// Writes the template's files for `name` into `dir`.
fn write_files(name: &str, lang: Lang, dir: &Path) -> anyhow::Result<Vec<&'static str>> {
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk}}", &checkout_dependency("plugin-sdk"))
            .replace("{{harness}}", &checkout_dependency("plugin-test"))
    };
    let mut files = Vec::new();
    for &(path, text) in super::template::files(lang) {
        let target = dir.join(path);
        std::fs::create_dir_all(target.parent().unwrap_or(dir))
            .and_then(|()| std::fs::write(&target, fill(text)))
            .with_context(|| format!("writing {path}"))?;
        files.push(path);
    }
    Ok(files)
}

/// A name that is at once a cargo package, an npm package and a file name.
pub(super) fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let starts = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !starts || !rest || name.ends_with('-') || name.contains("--") || name.len() > 64 {
        bail!(
            "{name:?} is not a plugin name: use lowercase letters, digits and hyphens, \
             starting with a letter (such as \"deploy-site\")"
        );
    }
    Ok(())
}

/// One of this repository's crates (the SDK, the test harness) as a
/// dependency: this checkout's `dir` when the engine runs from one (the
/// crate and the engine then match exactly), else the engine's own version
/// from crates.io.
fn checkout_dependency(dir: &str) -> String {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    match checkout.canonicalize() {
        Ok(path) if path.join("Cargo.toml").is_file() => {
            format!("{{ path = {:?} }}", path.display().to_string())
        }
        _ => format!("\"{}\"", env!("CARGO_PKG_VERSION")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_package_names_are_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "Hello", "1st", "a_b", "end-", "a--b", "a b", "../x"] {
            let target = dir.path().join("p");
            let error = create(bad, Lang::Rust, &target).unwrap_err().to_string();
            assert!(error.contains("is not a plugin name"), "{bad:?}: {error}");
            assert!(!target.exists(), "{bad:?} wrote something");
        }
    }

    #[test]
    fn a_directory_with_something_in_it_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mine.txt"), "mine").unwrap();
        let error = create("hello", Lang::Python, dir.path()).unwrap_err().to_string();
        assert!(error.contains("is not empty"), "{error}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failure_after_the_files_are_written_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the project should go: every file is written, then
        // the move into place fails.
        let target = dir.path().join("p");
        std::fs::write(&target, "mine").unwrap();
        let error = create("hello", Lang::Rust, &target).unwrap_err();
        assert!(
            format!("{error:#}").contains("moving the new project"),
            "{error:#}"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["p"], "no staging directory left beside it");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "mine");
    }

    #[test]
    fn every_placeholder_is_filled_in() {
        for lang in Lang::ALL {
            let dir = tempfile::tempdir().unwrap();
            let created = create("my-step", lang, &dir.path().join("p")).unwrap();
            for file in created.files {
                let text = std::fs::read_to_string(created.dir.join(file)).unwrap();
                assert!(!text.contains("{{"), "{lang}: {file} keeps a placeholder");
            }
        }
    }

    #[test]
    fn a_rust_build_names_cargos_output_for_a_hyphenated_name() {
        let dir = tempfile::tempdir().unwrap();
        create("my-step", Lang::Rust, dir.path()).unwrap();
        let manifest = std::fs::read_to_string(dir.path().join("plugin.toml")).unwrap();
        assert!(manifest.contains("release/my_step.wasm"), "{manifest}");
        assert!(manifest.contains("name = \"my-step\""), "{manifest}");
    }

    #[test]
    fn languages_parse_by_name() {
        for lang in Lang::ALL {
            assert_eq!(lang.to_string().parse::<Lang>(), Ok(lang));
        }
        assert!(
            "go".parse::<Lang>()
                .unwrap_err()
                .contains("one of rust, python, js")
        );
    }
}
