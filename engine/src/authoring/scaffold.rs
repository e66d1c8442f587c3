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
/// not exist or be empty: nothing is written when anything is wrong.
pub fn create(name: &str, lang: Lang, dir: &Path) -> anyhow::Result<Created> {
    check_name(name)?;
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        bail!(
            "{} already exists and is not empty: choose another name or directory",
            dir.display()
        );
    }
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk}}", &sdk_dependency())
    };
    let mut files = Vec::new();
    for &(path, text) in super::template::files(lang) {
        let target = dir.join(path);
        std::fs::create_dir_all(target.parent().unwrap_or(dir))
            .and_then(|()| std::fs::write(&target, fill(text)))
            .with_context(|| format!("writing {}", target.display()))?;
        files.push(path);
    }
    Ok(Created {
        dir: dir.to_owned(),
        files,
    })
}

/// A name that is at once a cargo package, an npm package and a file name.
fn check_name(name: &str) -> anyhow::Result<()> {
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

/// The Rust SDK as a dependency: this checkout's `plugin-sdk` when the
/// engine runs from one (the SDK and the engine then match exactly),
/// else the engine's own version from crates.io.
fn sdk_dependency() -> String {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk");
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
