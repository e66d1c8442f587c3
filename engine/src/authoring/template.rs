//! The files of a new project, per language, embedded in the binary from
//! `engine/templates/`. `{{name}}` is the plugin's name, `{{crate}}` its
//! Rust identifier and `{{sdk}}` the Rust SDK's dependency line.

use super::Lang;

/// The WIT contract (`wit/` at the root of this repository).
const PLUGIN_WIT: &str = include_str!("../../../wit/plugin.wit");

/// `template!("rust", "src/lib.rs")`: the file's path in the project, and
/// its text.
macro_rules! template {
    ($lang:literal, $path:literal) => {
        (
            $path,
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/templates/",
                $lang,
                "/",
                $path
            )),
        )
    };
}

const RUST: &[(&str, &str)] = &[
    template!("rust", "Cargo.toml"),
    template!("rust", "plugin.toml"),
    template!("rust", "README.md"),
    template!("rust", ".gitignore"),
    template!("rust", "src/lib.rs"),
    template!("rust", "tests/step.rs"),
];

const PYTHON: &[(&str, &str)] = &[
    template!("python", "app.py"),
    template!("python", "build.sh"),
    template!("python", "plugin.toml"),
    template!("python", "README.md"),
    template!("python", ".gitignore"),
    template!("python", "requirements.txt"),
    template!("python", "test_step.py"),
    ("wit/plugin.wit", PLUGIN_WIT),
];

const JS: &[(&str, &str)] = &[
    template!("js", "plugin.js"),
    template!("js", "build.sh"),
    template!("js", "package.json"),
    template!("js", "plugin.toml"),
    template!("js", "README.md"),
    template!("js", ".gitignore"),
    template!("js", "step.test.mjs"),
    template!("js", "wit/world.wit"),
    ("wit/deps/stepback-plugin/plugin.wit", PLUGIN_WIT),
    template!("js", "wit/deps/wasi-io/io.wit"),
    template!("js", "wit/deps/wasi-clocks/clocks.wit"),
    template!("js", "wit/deps/wasi-filesystem/filesystem.wit"),
];

/// Every file of a `lang` project: its path inside the project and its
/// text, placeholders not yet filled in.
pub(super) fn files(lang: Lang) -> &'static [(&'static str, &'static str)] {
    match lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
        Lang::Js => JS,
    }
}
