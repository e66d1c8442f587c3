//! The one place where a step's imports are linked.
//!
//! Every interface a plugin can reach is linked here: the WASI 0.2 imports
//! and `stepback:plugin/host`. `wasi:filesystem` is linked with the rest of
//! WASI, then shadowed by the journaled filesystem layer ([`super::fs`]). Sockets are linked so that
//! components which import them without using them (componentize-py's do)
//! still instantiate; the WASI context grants no address, so every socket
//! call fails. `wasi:http` is not linked.

use super::bindings::Step;
use super::fs::{FsView, JournaledFs};
use super::state::StepState;
use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime_wasi::filesystem::WasiFilesystemView;
use wasmtime_wasi::p2::bindings::filesystem;

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
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    linker.allow_shadowing(true);
    filesystem::types::add_to_linker::<StepState, JournaledFs>(&mut linker, fs_view)?;
    filesystem::preopens::add_to_linker::<StepState, JournaledFs>(&mut linker, fs_view)?;
    linker.allow_shadowing(false);
    Step::add_to_linker::<StepState, HasSelf<StepState>>(&mut linker, |state| state)?;
    Ok(linker)
}

pub(super) fn fs_view(state: &mut StepState) -> FsView<'_> {
    FsView {
        inner: state.wasi.filesystem(),
        layer: &mut state.fs,
    }
}

/// Names the imports of `component` that the linker does not provide, so
/// an unfit plugin is refused with the interface and version it wanted
/// rather than a raw linker error.
pub fn unprovided_imports(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .filter(|name| {
            let (interface, version) = name.split_once('@').unwrap_or((name, ""));
            !PROVIDED
                .iter()
                .any(|(prefix, series)| interface.starts_with(prefix) && version.starts_with(series))
        })
        .collect()
}

/// What the linker provides, for messages.
pub fn provided_summary() -> String {
    PROVIDED
        .iter()
        .map(|(prefix, series)| format!("{}*@{}x", prefix, series))
        .collect::<Vec<_>>()
        .join(", ")
}
