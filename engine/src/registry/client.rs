//! Talking to a registry: pushing a plugin or its signatures, pulling them
//! into the store. What arrives is hashed before it is kept (see
//! [`Store::put`]); a pull by digest refuses a manifest with another one.

use super::digest::Digest;
use super::layout::{Descriptor, MANIFEST, Manifest, WASM_CONFIG, WASM_LAYER, WasmConfig};
use super::reference::PluginRef;
use super::signature::Signatures;
use super::store::{Artifact, Store};
use anyhow::{Context, bail};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};

/// The artifact type of a signature document's manifest.
const SIGNATURES: &str = "application/vnd.stepback.plugin.signatures.v1+json";
/// The empty config of an artifact that has none.
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The largest component Stepback pulls: a registry cannot fill the disk.
const MAX_COMPONENT: u64 = 512 << 20;
/// The largest config or signature document.
const MAX_DOCUMENT: u64 = 4 << 20;

/// One registry, with this user's credentials for it.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
}

/// What a pull brought into the store.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The plugin.
    pub artifact: Artifact,
    /// Every signature of it known here: pulled now, or with the same
    /// manifest from anywhere before.
    pub signatures: Option<Signatures>,
    /// The signature document the registry has now, as it came (its
    /// invalid entries too: for saying what was wrong).
    pub found: Option<Signatures>,
}

impl Registry {
    /// The registry of `reference`: over HTTPS, or plain HTTP where it is
    /// this machine or `plain_http` names it (an operator's opt-in, per
    /// registry).
    pub fn connect(reference: &PluginRef, plain_http: &[String]) -> anyhow::Result<Registry> {
        let plain = reference.is_loopback() || plain_http.contains(&reference.registry);
        let config = ClientConfig {
            protocol: match plain {
                true => ClientProtocol::Http,
                false => ClientProtocol::Https,
            },
            ..ClientConfig::default()
        };
        Ok(Registry {
            client: Client::new(config),
            auth: super::auth::credentials(&reference.registry)?,
        })
    }

    async fn login(&self, reference: &PluginRef, op: RegistryOperation) -> anyhow::Result<()> {
        self.client
            .auth(&reference.to_oci(), &self.auth, op)
            .await
            .map(|_| ())
            .map_err(|e| explain(e, reference, &self.auth))
    }

    /// Pushes `component` as `reference` in the Wasm artifact layout;
    /// returns the manifest's digest.
    pub async fn push(&self, reference: &PluginRef, component: &[u8]) -> anyhow::Result<Digest> {
        let interfaces = crate::plugin::component_interfaces(component)?;
        let config = serde_json::to_vec(&WasmConfig::of(component, interfaces))?;
        let manifest = Manifest::bytes(
            None,
            Descriptor::of(WASM_CONFIG, &config),
            vec![Descriptor::of(WASM_LAYER, component)],
        );
        self.login(reference, RegistryOperation::Push).await?;
        self.push_blobs(reference, &[&config, component]).await?;
        self.push_manifest(reference, manifest).await
    }

    async fn push_blobs(&self, reference: &PluginRef, blobs: &[&[u8]]) -> anyhow::Result<()> {
        let oci = reference.to_oci();
        for blob in blobs {
            let digest = Digest::of(blob).to_string();
            if !self.client.blob_exists(&oci, &digest).await.unwrap_or(false) {
                self.client
                    .push_blob(&oci, blob.to_vec(), &digest)
                    .await
                    .map_err(|e| explain(e, reference, &self.auth))?;
            }
        }
        Ok(())
    }

    async fn push_manifest(&self, reference: &PluginRef, manifest: Vec<u8>) -> anyhow::Result<Digest> {
        let digest = Digest::of(&manifest);
        self.client
            .push_manifest_raw(
                &reference.to_oci(),
                manifest,
                http::HeaderValue::from_static(MANIFEST),
            )
            .await
            .map_err(|e| explain(e, reference, &self.auth))?;
        Ok(digest)
    }

    /// Pulls `reference` into `store`, with its signatures: the manifest,
    /// config and component, each hashed and refused if it is not what was
    /// asked for. A component the store holds already is not fetched again.
    /// Its tag is not recorded: that waits for the trust policy's word
    /// ([`Store::set_tag`]).
    pub async fn pull(&self, reference: &PluginRef, store: &Store) -> anyhow::Result<Pulled> {
        self.login(reference, RegistryOperation::Pull).await?;
        let bytes = self.manifest(reference).await?;
        let manifest = Digest::of(&bytes);
        let parsed = Manifest::parse(&bytes).map_err(|e| anyhow::anyhow!("{reference}: {e}"))?;
        let layer = parsed
            .component()
            .map_err(|e| anyhow::anyhow!("{reference}: {e}"))?
            .clone();
        self.fetch(reference, store, &parsed.config, MAX_DOCUMENT, "config")
            .await?;
        self.fetch(reference, store, &layer, MAX_COMPONENT, "component layer")
            .await?;
        store.put(&manifest, &bytes, "manifest")?;
        let found = self.signatures(reference, &manifest).await?;
        if let Some(found) = &found {
            store.add_signatures(found)?;
        }
        let signatures = store.signatures(&reference.repository, &manifest)?;
        let artifact = store
            .artifact(&manifest)?
            .context("the store lost what was just pulled")?;
        Ok(Pulled {
            artifact,
            signatures,
            found,
        })
    }

    /// Fetches one blob into the store, unless it is there already.
    async fn fetch(
        &self,
        reference: &PluginRef,
        store: &Store,
        blob: &Descriptor,
        max: u64,
        what: &str,
    ) -> anyhow::Result<()> {
        if store.read(&blob.digest).ok().flatten().is_some() {
            return Ok(());
        }
        if blob.size > max {
            bail!(
                "{reference}: its {what} is {} bytes, more than the {max} Stepback pulls",
                blob.size
            );
        }
        let mut bytes = Capped::new(blob.size);
        let descriptor = oci_descriptor(blob);
        match self
            .client
            .pull_blob(&reference.to_oci(), &descriptor, &mut bytes)
            .await
        {
            Err(OciDistributionError::DigestError(_)) => bail!(
                "{reference}: the {what} the registry sent does not match its digest {}: refused (altered in the registry or on the way)",
                blob.digest
            ),
            other => other.map_err(|e| explain(e, reference, &self.auth))?,
        }
        store
            .put(&blob.digest, &bytes.0, what)
            .with_context(|| reference.to_string())
    }

    /// The tag signatures of `manifest` are pushed under (cosign's scheme).
    fn signature_ref(reference: &PluginRef, manifest: &Digest) -> PluginRef {
        PluginRef {
            tag: Some(format!("sha256-{}.sig", manifest.hex())),
            digest: None,
            ..reference.clone()
        }
    }

    /// The signatures of `manifest` in the registry, if it has any. A
    /// signature artifact that cannot be read (not a manifest, no layer,
    /// too big, not a signature document) counts as none: whoever can push
    /// a tag must not be able to stop a pull the trust policy allows, and
    /// one that needs a signature is refused as unsigned.
    pub async fn signatures(
        &self,
        reference: &PluginRef,
        manifest: &Digest,
    ) -> anyhow::Result<Option<Signatures>> {
        let at = Registry::signature_ref(reference, manifest);
        let pulled = self
            .client
            .pull_manifest_raw(&at.to_oci(), &self.auth, &[MANIFEST])
            .await;
        let bytes = match pulled {
            Ok((bytes, _)) => bytes,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(explain(e, &at, &self.auth)),
        };
        Ok(self.signature_document(&at, &bytes).await)
    }

    /// The signature document a signature artifact's manifest names.
    async fn signature_document(&self, at: &PluginRef, manifest: &[u8]) -> Option<Signatures> {
        let parsed = Manifest::parse(manifest).ok()?;
        let layer = parsed.layers.first().filter(|l| l.size <= MAX_DOCUMENT)?;
        let mut doc = Capped::new(layer.size);
        let descriptor = oci_descriptor(layer);
        self.client
            .pull_blob(&at.to_oci(), &descriptor, &mut doc)
            .await
            .ok()?;
        Signatures::parse(&doc.0).ok()
    }

    /// Pushes `signatures` beside the manifest they sign.
    pub async fn push_signatures(
        &self,
        reference: &PluginRef,
        signatures: &Signatures,
    ) -> anyhow::Result<()> {
        let at = Registry::signature_ref(reference, &signatures.manifest);
        let doc = signatures.bytes();
        let manifest = Manifest::bytes(
            Some(SIGNATURES),
            Descriptor::of(EMPTY, b"{}"),
            vec![Descriptor::of(SIGNATURES, &doc)],
        );
        self.login(&at, RegistryOperation::Push).await?;
        self.push_blobs(&at, &[b"{}", &doc]).await?;
        self.push_manifest(&at, manifest).await.map(|_| ())
    }

    /// The digest `reference` names in the registry now.
    pub async fn manifest_digest(&self, reference: &PluginRef) -> anyhow::Result<Digest> {
        self.login(reference, RegistryOperation::Pull).await?;
        Ok(Digest::of(&self.manifest(reference).await?))
    }

    /// The manifest's bytes; by digest, only those that have it.
    async fn manifest(&self, reference: &PluginRef) -> anyhow::Result<bytes::Bytes> {
        let altered = |actual: String| {
            anyhow::anyhow!(
                "the registry answered {reference} with a manifest whose digest is {actual}: refused (it was altered or re-pointed in the registry)"
            )
        };
        let pulled = self
            .client
            .pull_manifest_raw(&reference.to_oci(), &self.auth, &[MANIFEST])
            .await;
        let bytes = match pulled {
            Ok((bytes, _)) => bytes,
            Err(OciDistributionError::DigestError(oci_client::errors::DigestError::VerificationError {
                actual,
                ..
            })) => return Err(altered(actual)),
            Err(e) => return Err(explain(e, reference, &self.auth)),
        };
        match &reference.digest {
            Some(asked) if *asked != Digest::of(&bytes) => Err(altered(Digest::of(&bytes).to_string())),
            _ => Ok(bytes),
        }
    }
}

/// The client's descriptor of `blob`.
fn oci_descriptor(blob: &Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: blob.media_type.clone(),
        digest: blob.digest.to_string(),
        size: blob.size as i64,
        ..OciDescriptor::default()
    }
}

/// A blob's bytes as they arrive, refused past the size its descriptor
/// declared: a registry cannot make Stepback read more than it asked for.
struct Capped(Vec<u8>, usize);

impl Capped {
    fn new(size: u64) -> Capped {
        Capped(Vec::with_capacity(size as usize), size as usize)
    }
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        bytes: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.0.len() + bytes.len() > self.1 {
            let e = std::io::Error::other(format!(
                "the registry sent more than the {} bytes it declared",
                self.1
            ));
            return std::task::Poll::Ready(Err(e));
        }
        self.0.extend_from_slice(bytes);
        std::task::Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, oci_client::errors::OciErrorCode::ManifestUnknown)),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        _ => false,
    }
}

/// Whether the registry refused who we are (or that we are nobody).
fn refused(e: &OciDistributionError) -> bool {
    use oci_client::errors::OciErrorCode::{Denied, Unauthorized};
    match e {
        OciDistributionError::AuthenticationFailure(_) | OciDistributionError::UnauthorizedError { .. } => {
            true
        }
        OciDistributionError::ServerError { code, .. } => matches!(code, 401 | 403),
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, Unauthorized | Denied)),
        _ => false,
    }
}

/// A client error as an operator reads it: which registry, and what to do.
fn explain(e: OciDistributionError, reference: &PluginRef, auth: &RegistryAuth) -> anyhow::Error {
    let registry = &reference.registry;
    match &e {
        _ if refused(&e) && matches!(auth, RegistryAuth::Anonymous) => anyhow::anyhow!(
            "{reference}: the registry {registry} requires credentials, and none are set for it; log in with `docker login {registry}` or `podman login {registry}`, or set STEPBACK_REGISTRY={registry} with STEPBACK_REGISTRY_USERNAME and STEPBACK_REGISTRY_PASSWORD"
        ),
        _ if refused(&e) => {
            anyhow::anyhow!(
                "{reference}: the registry {registry} refused the credentials ({e}); log in with `docker login {registry}` or `podman login {registry}`, or set STEPBACK_REGISTRY={registry} with STEPBACK_REGISTRY_USERNAME and STEPBACK_REGISTRY_PASSWORD"
            )
        }
        _ if not_found(&e) => anyhow::anyhow!("{reference}: the registry has no such plugin ({e})"),
        OciDistributionError::RequestError(inner) if inner.is_connect() => anyhow::anyhow!(
            "{reference}: cannot reach the registry {registry} ({e:#}){}",
            match reference.is_loopback() {
                true => "",
                false =>
                    "; a registry on another machine is spoken to over HTTPS unless `--plain-http REGISTRY` says otherwise",
            }
        ),
        _ => anyhow::anyhow!("{reference}: {e}"),
    }
}
