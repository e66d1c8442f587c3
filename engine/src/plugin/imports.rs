//! What a component imports, read from its bytes without compiling it.

use anyhow::Context;
use wasmparser::{ComponentTypeRef, Encoding, Parser, Payload};

/// The names (`wasi:cli/stdout@0.2.6`) of the top-level imports of the
/// component in `bytes`; nested components' and core modules' own imports
/// are theirs, satisfied inside it.
pub fn component_imports(bytes: &[u8]) -> anyhow::Result<Vec<String>> {
    let mut depth = 0usize;
    let mut names = Vec::new();
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
                        names.push(import.name.name.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(names)
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
                (import "stepback:plugin/host@0.1.0" (instance)))"#,
        )
        .unwrap();
        assert_eq!(
            component_imports(&wasm).unwrap(),
            ["wasi:cli/stdout@0.2.6", "stepback:plugin/host@0.1.0"]
        );
        assert!(component_imports(&wat::parse_str("(module)").unwrap()).is_err());
        assert!(component_imports(b"nonsense").is_err());
    }
}
