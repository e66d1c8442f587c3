//! The CNCF "Wasm OCI artifact" layout a plugin is published in: an image
//! manifest whose config is `application/vnd.wasm.config.v0+json` and whose
//! one layer is the component, `application/wasm` (as wkg, wash and Spin
//! write and read it). Written here by hand: three media types and two
//! small JSON documents.
//!
//! The manifest carries no time stamp, so pushing the same component again
//! gives the same digest.

use super::digest::Digest;
use serde::{Deserialize, Serialize};

/// An OCI image manifest.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// A Wasm artifact's config.
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// A Wasm artifact's one layer: the component.
pub const WASM_LAYER: &str = "application/wasm";

/// A blob as a manifest names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

impl Descriptor {
    /// The descriptor of `bytes` as a blob of `media_type`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
        }
    }
}

/// An image manifest, as much of it as a plugin's or a signature's needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    #[serde(rename = "artifactType", default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl Manifest {
    /// A manifest of `config` and `layers`, as bytes to push (their digest
    /// is the manifest's).
    pub fn bytes(artifact_type: Option<&str>, config: Descriptor, layers: Vec<Descriptor>) -> Vec<u8> {
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MANIFEST.to_owned()),
            artifact_type: artifact_type.map(str::to_owned),
            config,
            layers,
        };
        serde_json::to_vec(&manifest).expect("a manifest serializes")
    }

    /// The manifest in `bytes`; `Err` says what is wrong with it.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("not an OCI image manifest: {e}"))?;
        if manifest.schema_version != 2 {
            return Err(format!(
                "manifest schema version {} (not 2)",
                manifest.schema_version
            ));
        }
        Ok(manifest)
    }

    /// The component's layer, when this is a Wasm artifact; `Err` says
    /// what it is instead.
    pub fn component(&self) -> Result<&Descriptor, String> {
        if self.config.media_type != WASM_CONFIG {
            return Err(format!(
                "it is not a Wasm component artifact: its config is {:?}, not {WASM_CONFIG:?}",
                self.config.media_type
            ));
        }
        match self.layers.as_slice() {
            [layer] if layer.media_type == WASM_LAYER => Ok(layer),
            [layer] => Err(format!("its layer is {:?}, not {WASM_LAYER:?}", layer.media_type)),
            layers => Err(format!("it has {} layers; a Wasm artifact has one", layers.len())),
        }
    }
}

/// A Wasm artifact's config: what the component imports and exports (and
/// so which WIT version of `stepback:plugin` it is built against).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WasmConfig {
    /// `wasm`.
    pub architecture: String,
    /// `wasip2`: the WASI a component of this artifact is built for.
    pub os: String,
    /// The digest of each layer (one: the component).
    #[serde(rename = "layerDigests")]
    pub layer_digests: Vec<Digest>,
    /// Its interfaces.
    pub component: ComponentInfo,
}

/// The `component` part of a [`WasmConfig`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentInfo {
    /// Top-level imports, by name.
    pub imports: Vec<String>,
    /// Top-level exports, by name.
    pub exports: Vec<String>,
    /// The WIT world it targets, when its author says.
    #[serde(default)]
    pub target: Option<String>,
}

impl WasmConfig {
    /// The config of `component`, whose interfaces are `interfaces`.
    pub fn of(component: &[u8], interfaces: crate::plugin::Interfaces) -> WasmConfig {
        WasmConfig {
            architecture: "wasm".into(),
            os: "wasip2".into(),
            layer_digests: vec![Digest::of(component)],
            component: ComponentInfo {
                imports: interfaces.imports,
                exports: interfaces.exports,
                target: None,
            },
        }
    }

    /// The version of `stepback:plugin` the component exports its step
    /// world at (`0.3.0`), if it does.
    pub fn wit_version(&self) -> Option<&str> {
        let names = self.component.exports.iter().chain(&self.component.imports);
        names
            .filter_map(|n| n.strip_prefix("stepback:plugin/"))
            .find_map(|n| n.split_once('@').map(|(_, v)| v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wasm_artifact_is_told_from_other_manifests() {
        let wasm = b"\0asm\x0d\0\x01\0";
        let config = serde_json::to_vec(&WasmConfig::of(
            wasm,
            crate::plugin::Interfaces {
                imports: vec!["stepback:plugin/host@0.3.0".into()],
                exports: vec![],
            },
        ))
        .unwrap();
        let bytes = Manifest::bytes(
            None,
            Descriptor::of(WASM_CONFIG, &config),
            vec![Descriptor::of(WASM_LAYER, wasm)],
        );
        let manifest = Manifest::parse(&bytes).unwrap();
        assert_eq!(manifest.component().unwrap().digest, Digest::of(wasm));
        let parsed: WasmConfig = serde_json::from_slice(&config).unwrap();
        assert_eq!(parsed.wit_version(), Some("0.3.0"));
        // Pushing it again gives the same digest.
        assert_eq!(
            Digest::of(&bytes),
            Digest::of(&Manifest::bytes(
                None,
                Descriptor::of(WASM_CONFIG, &config),
                vec![Descriptor::of(WASM_LAYER, wasm)]
            ))
        );
        let image = Manifest::bytes(
            None,
            Descriptor::of("application/vnd.oci.image.config.v1+json", b"{}"),
            vec![],
        );
        let e = Manifest::parse(&image).unwrap().component().unwrap_err();
        assert!(e.contains("not a Wasm component artifact"), "{e}");
    }
}
