//! The languages a plugin project can be written in.

use std::fmt;

/// The language of a new plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// `stepback-sdk`, built for `wasm32-wasip2` by cargo.
    Rust,
    /// CPython inside the component, by componentize-py.
    Python,
    /// StarlingMonkey (SpiderMonkey) inside the component, by componentize-js.
    Js,
}

impl Lang {
    /// Every language, in the order `--help` lists them.
    pub const ALL: [Lang; 3] = [Lang::Rust, Lang::Python, Lang::Js];

    fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Lang {
    type Err = String;

    fn from_str(text: &str) -> Result<Lang, String> {
        let known = Lang::ALL.iter().map(|l| l.name()).collect::<Vec<_>>().join(", ");
        Lang::ALL
            .into_iter()
            .find(|lang| lang.name() == text || (*lang == Lang::Js && text == "javascript"))
            .ok_or_else(|| format!("{text:?} is not a language of `plugin new` (one of {known})"))
    }
}
