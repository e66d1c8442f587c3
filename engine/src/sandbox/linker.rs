//! The linker every step is instantiated with (each capability adds its
//! part: [`super::capability`]), and the check, before a plugin is
//! compiled, that its imports are among what the linker provides.
//! `wasi:http` is not linked.

use super::state::StepState;
use wasmtime::Engine;
use wasmtime::component::Linker;

/// Interface prefixes and the version series the linker provides them in.
const PROVIDED: &[(&str, &str)] = &[
    ("wasi:cli/", "0.2."),
    ("wasi:clocks/", "0.2."),
    ("wasi:filesystem/", "0.2."),
    ("wasi:io/", "0.2."),
    ("wasi:random/", "0.2."),
    ("wasi:sockets/", "0.2."),
    ("stepback:plugin/", "0.1."),
];

pub fn build(engine: &Engine) -> wasmtime::Result<Linker<StepState>> {
    let mut linker = Linker::new(engine);
    super::capability::link(&mut linker)?;
    Ok(linker)
}

/// The version of `stepback:plugin` this host implements, from its WIT.
pub fn host_wit_version() -> &'static str {
    const WIT: &str = include_str!("../../../wit/plugin.wit");
    WIT.lines()
        .find_map(|l| l.trim().strip_prefix("package stepback:plugin@"))
        .and_then(|v| v.strip_suffix(';'))
        .expect("wit/plugin.wit declares its package version")
}

/// Why a plugin importing `imports` cannot be linked, in Stepback's words
/// rather than a linker's: interfaces this host does not provide (with the
/// version wanted), or a newer `stepback:plugin` than this host's.
pub fn refusal(label: &str, imports: &[String]) -> Option<String> {
    let host = host_wit_version();
    let newer = imports.iter().find_map(|name| {
        let version = name.strip_prefix("stepback:plugin/")?.split_once('@')?.1;
        (numbers(version) > numbers(host)).then_some(version)
    });
    if let Some(version) = newer {
        return Some(format!(
            "plugin {label} was built against stepback:plugin {version}; this host provides {host}: upgrade stepback"
        ));
    }
    let missing: Vec<&str> = imports
        .iter()
        .map(String::as_str)
        .filter(|name| {
            let (interface, version) = name.split_once('@').unwrap_or((name, ""));
            !PROVIDED
                .iter()
                .any(|(prefix, series)| interface.starts_with(prefix) && version.starts_with(series))
        })
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "plugin {label} imports {}, which Stepback does not provide (it provides {})",
            missing.join(", "),
            provided_summary()
        )
    })
}

/// `1.2.3` as numbers, for comparing versions (pre-release tags ignored).
fn numbers(version: &str) -> Vec<u64> {
    version
        .split(['-', '+'])
        .next()
        .unwrap_or("")
        .split('.')
        .map(|n| n.parse().unwrap_or(0))
        .collect()
}

/// What the linker provides, for messages.
fn provided_summary() -> String {
    PROVIDED
        .iter()
        .map(|(prefix, series)| format!("{}*@{}x", prefix, series))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    /// The SDK carries the WIT inside its crate (so that it can be
    /// published): it must be the very contract this host is built from.
    #[test]
    fn the_sdk_carries_the_hosts_wit() {
        let sdk = include_str!("../../../plugin-sdk/wit/plugin.wit");
        let host = include_str!("../../../wit/plugin.wit");
        assert!(
            sdk == host,
            "plugin-sdk/wit/plugin.wit differs from wit/plugin.wit: copy it (cp wit/plugin.wit plugin-sdk/wit/)"
        );
    }

    /// The SDK's (and the engine's: one workspace version) major and minor
    /// version are the WIT package's: `stepback-sdk` 0.1.x builds plugins
    /// for `stepback:plugin@0.1.*`.
    #[test]
    fn the_crates_version_series_is_the_wits() {
        let series = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
        assert_eq!(
            series(env!("CARGO_PKG_VERSION")),
            series(super::host_wit_version()),
            "the workspace version and wit/plugin.wit's package version are in different series"
        );
    }
}
