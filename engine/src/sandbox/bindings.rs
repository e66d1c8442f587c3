//! Host-side bindings of the `stepback:plugin` WIT package.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "stepback:plugin/step",
    exports: { default: async },
    imports: { "stepback:plugin/exec.run": async },
});
