//! The plugins shipped inside the binary, built by `engine/build.rs`.

macro_rules! builtin {
    ($name:literal, $file:literal) => {
        (
            $name,
            include_bytes!(concat!(env!("STEPBACK_PLUGIN_DIR"), "/", $file)) as &[u8],
        )
    };
}

/// `(name, component bytes)`, used as `builtin:NAME` in flows.
pub const BUILTINS: &[(&str, &[u8])] = &[
    builtin!("deploy-files", "deploy_files.wasm"),
    builtin!("fail", "fail.wasm"),
    builtin!("remove", "remove.wasm"),
    builtin!("run-command", "run_command.wasm"),
    builtin!("run-script", "run_script.wasm"),
    builtin!("write-file", "write_file.wasm"),
];

/// The built-in plugins' names, for messages.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(n, _)| *n)
}
