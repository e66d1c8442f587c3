//! What a component imports, read from its bytes without compiling it.

use anyhow::Context;
use wasmparser::{ComponentExternalKind, ComponentTypeRef, Encoding, Parser, Payload};

/// The names (`wasi:cli/stdout@0.2.6`) of the top-level imports of the
/// component in `bytes`; nested components' and core modules' own imports
/// are theirs, satisfied inside it.
pub fn component_imports(bytes: &[u8]) -> anyhow::Result<Vec<String>> {
    Ok(component_interfaces(bytes)?.imports)
}

/// A component's top-level imports and exports, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interfaces {
    /// What the host must provide (`stepback:plugin/host@0.3.0`).
    pub imports: Vec<String>,
    /// What it provides (`stepback:plugin/step@0.3.0`).
    pub exports: Vec<String>,
}

/// The names of the top-level imports and exports of the component in
/// `bytes`, without compiling it (what a registry's artifact config lists).
pub fn component_interfaces(bytes: &[u8]) -> anyhow::Result<Interfaces> {
    let mut depth = 0usize;
    let mut found = Interfaces {
        imports: Vec::new(),
        exports: Vec::new(),
    };
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.context("not a valid WebAssembly binary")? {
            Payload::Version { encoding, .. } => {
                depth += 1;
                if depth == 1 && encoding != Encoding::Component {
                    anyhow::bail!("not a component");
                }
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import?;
                    // A type import names a type of another import, or of
                    // an export: nothing the host provides.
                    if !matches!(import.ty, ComponentTypeRef::Type(_)) {
                        found.imports.push(import.name.name.to_owned());
                    }
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export?;
                    if export.kind != ComponentExternalKind::Type {
                        found.exports.push(export.name.name.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_imports_are_listed_and_nested_ones_are_not() {
        let wasm = wat::parse_str(
            r#"(component
                (import "wasi:cli/stdout@0.2.6" (instance))
                (import "a-type" (type (sub resource)))
                (component (import "inner:only/here@1.0.0" (instance)))
                (import "stepback:plugin/host@0.1.0" (instance))
                (instance $i)
                (export "stepback:plugin/step@0.1.0" (instance $i)))"#,
        )
        .unwrap();
        assert_eq!(
            component_imports(&wasm).unwrap(),
            ["wasi:cli/stdout@0.2.6", "stepback:plugin/host@0.1.0"]
        );
        assert_eq!(
            component_interfaces(&wasm).unwrap().exports,
            ["stepback:plugin/step@0.1.0"]
        );
        assert!(component_imports(&wat::parse_str("(module)").unwrap()).is_err());
        assert!(component_imports(b"nonsense").is_err());
    }
}
