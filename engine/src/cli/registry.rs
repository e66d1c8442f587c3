//! The registry commands: `plugin push`, `pull`, `sign`, `list`, `plugin
//! inspect oci://…`, `key generate` and `lock`. Each is a thin call into
//! `stepback::registry`.

use super::args::{Cli, FlowArgs, OutputFormat};
use super::out::{errln, outln};
use super::{Input, error, exit, json};
use serde_json::json;
use std::path::{Path, PathBuf};
use stepback::plugin::PluginSource;
use stepback::registry::{PluginRef, Registry, Remote, SecretKey, Signatures, Store, TrustPolicy, Trusted};
use stepback::sandbox::Sandbox;

/// The registry plugins of a run or validation: through the flow's lock.
pub fn locked(cli: &Cli, state_dir: &Path, offline: bool) -> Remote {
    Remote::locked(
        Store::new(state_dir),
        TrustPolicy::read(&cli.trust),
        cli.plain_http.clone(),
        offline,
    )
}

/// A reference given on the command line; `Err` is the exit code, said.
fn reference(text: &str) -> Result<PluginRef, u8> {
    PluginRef::parse(text).map_err(|e| error(exit::INVALID_INPUT, e))
}

/// `stepback plugin push FILE REF`.
pub async fn push(file: &Path, to: &str, cli: &Cli) -> u8 {
    let Ok(to) = reference(to) else {
        return exit::INVALID_INPUT;
    };
    if let Some(digest) = &to.digest {
        return error(
            exit::INVALID_INPUT,
            format_args!(
                "{to}: a plugin is pushed to a tag (oci://REGISTRY/REPOSITORY:TAG); its digest ({digest} here) is what the push prints"
            ),
        );
    }
    let bytes = match PluginSource::File(file.to_owned()).read() {
        Ok((bytes, _)) => bytes,
        Err(e) => return error(exit::INVALID_INPUT, format_args!("{e:#}")),
    };
    let pushed = async { Registry::connect(&to, &cli.plain_http)?.push(&to, &bytes).await }.await;
    match pushed {
        Ok(digest) => {
            let pinned = to.pinned(&digest);
            match cli.output {
                OutputFormat::Human => outln!("pushed {pinned}"),
                OutputFormat::Json => json::print_result(
                    "pushed",
                    json!({ "reference": pinned.to_string(), "manifest": digest }),
                ),
            }
            exit::SUCCESS
        }
        Err(e) => error(exit::ENGINE_ERROR, format_args!("{e:#}")),
    }
}

/// `stepback plugin pull REF`: into the store, judged, compiled.
pub async fn pull(from: &str, cli: &Cli, state_dir: &Path, sandbox: &Sandbox) -> u8 {
    let Ok(from) = reference(from) else {
        return exit::INVALID_INPUT;
    };
    let remote = Remote::locking(
        Store::new(state_dir),
        TrustPolicy::read(&cli.trust),
        cli.plain_http.clone(),
    );
    let (artifact, trusted) = match remote.pull(&from).await {
        Ok(pulled) => pulled,
        Err(e) => {
            let message = format!("{e:#}");
            let code = error(exit::INVALID_INPUT, &message);
            hints(std::iter::once(message.as_str()), Path::new("FLOW"));
            return code;
        }
    };
    let pinned = from.pinned(&artifact.manifest);
    let source = PluginSource::Stored {
        label: pinned.to_string(),
        path: artifact.component.clone(),
        sha256: artifact.layer.digest.hex().to_owned(),
    };
    if let Err(e) = sandbox.load(&source) {
        return error(exit::INVALID_INPUT, format_args!("{e:#}"));
    }
    match cli.output {
        OutputFormat::Human => outln!("pulled {pinned} ({})", verdict(&trusted)),
        OutputFormat::Json => json::print_result(
            "pulled",
            json!({ "reference": pinned.to_string(), "manifest": artifact.manifest, "layer": artifact.layer.digest, "signed_by": signer(&trusted) }),
        ),
    }
    exit::SUCCESS
}

fn verdict(trusted: &Trusted) -> String {
    match trusted {
        Trusted::Signed(key) => format!("signed by {key}"),
        Trusted::Unsigned => "unsigned, as the trust policy allows".into(),
    }
}

fn signer(trusted: &Trusted) -> Option<String> {
    match trusted {
        Trusted::Signed(key) => Some(key.to_string()),
        Trusted::Unsigned => None,
    }
}

/// `stepback plugin sign REF --key FILE`.
pub async fn sign(what: &str, key: &Path, cli: &Cli) -> u8 {
    let Ok(what) = reference(what) else {
        return exit::INVALID_INPUT;
    };
    let key = match SecretKey::read(key) {
        Ok(key) => key,
        Err(e) => return error(exit::INVALID_INPUT, format_args!("{e:#}")),
    };
    let signed = async {
        let registry = Registry::connect(&what, &cli.plain_http)?;
        let manifest = registry.manifest_digest(&what).await?;
        let mut doc = registry
            .signatures(&what, &manifest)
            .await?
            // Kept: the valid signatures of this manifest in this repository.
            .filter(|d| d.repository == what.repository && d.manifest == manifest)
            .map(|d| d.valid())
            .unwrap_or_else(|| Signatures::new(&what.repository, &manifest));
        doc.add(key.sign(&what.repository, &manifest));
        registry.push_signatures(&what, &doc).await?;
        anyhow::Ok(manifest)
    }
    .await;
    match signed {
        Ok(manifest) => {
            let pinned = what.pinned(&manifest);
            match cli.output {
                OutputFormat::Human => outln!("signed {pinned} with {}", key.public()),
                OutputFormat::Json => json::print_result(
                    "signed",
                    json!({ "reference": pinned.to_string(), "manifest": manifest, "key": key.public().to_string() }),
                ),
            }
            exit::SUCCESS
        }
        Err(e) => error(exit::ENGINE_ERROR, format_args!("{e:#}")),
    }
}

/// `stepback key generate FILE`.
pub fn generate(file: &Path, output: OutputFormat) -> u8 {
    let made = SecretKey::generate().and_then(|key| Ok((key.write(file)?, key.public())));
    match made {
        Ok((public_file, public)) => {
            match output {
                OutputFormat::Human => {
                    outln!(
                        "wrote {} (secret: keep it to yourself) and {}",
                        file.display(),
                        public_file.display()
                    );
                    outln!("public key: {public}");
                }
                OutputFormat::Json => json::print_result(
                    "key",
                    json!({ "secret": file, "public_file": public_file, "public": public.to_string() }),
                ),
            }
            exit::SUCCESS
        }
        Err(e) => error(exit::INVALID_INPUT, format_args!("{e:#}")),
    }
}

/// `stepback plugin list`.
pub fn list(state_dir: &Path, output: OutputFormat) -> u8 {
    let store = Store::new(state_dir);
    let rows: Vec<_> = store
        .tags()
        .into_iter()
        .map(|(reference, manifest)| {
            let artifact = store.artifact(&manifest).ok().flatten();
            (reference, manifest, artifact)
        })
        .collect();
    match output {
        OutputFormat::Human if rows.is_empty() => outln!("no plugins pulled into {}", store.dir().display()),
        OutputFormat::Human => {
            for (reference, manifest, artifact) in &rows {
                let size = artifact.as_ref().map_or("incomplete".to_owned(), |a| {
                    bytesize::ByteSize(a.layer.size).to_string()
                });
                outln!("{reference}  {manifest}  {size}");
            }
        }
        OutputFormat::Json => {
            let plugins: Vec<_> = rows
                .iter()
                .map(|(r, m, a)| json!({ "reference": r.to_string(), "manifest": m, "layer": a.as_ref().map(|a| &a.layer.digest), "bytes": a.as_ref().map(|a| a.layer.size) }))
                .collect();
            json::print_result("plugins", json!({ "store": store.dir(), "plugins": plugins }));
        }
    }
    exit::SUCCESS
}

/// The registry lines of `plugin inspect oci://…`: pulled into the store
/// (not trusted by that), and the policy's verdict shown, not enforced.
pub async fn inspected(
    what: &PluginRef,
    cli: &Cli,
    state_dir: &Path,
) -> anyhow::Result<(PluginSource, serde_json::Value)> {
    let store = Store::new(state_dir);
    let pulled = Registry::connect(what, &cli.plain_http)?
        .pull(what, &store)
        .await?;
    let artifact = &pulled.artifact;
    let pinned = what.pinned(&artifact.manifest);
    let verdict = TrustPolicy::read(&cli.trust)
        .and_then(|p| p.check(what, &artifact.manifest, pulled.signatures.as_ref()))
        .map_or_else(|why| format!("NOT TRUSTED: {why}"), |t| verdict(&t));
    let signers: Vec<String> = pulled
        .signatures
        .iter()
        .flat_map(|d| d.signatures.iter().map(|s| s.key.clone()))
        .collect();
    let value = json!({
        "reference": pinned.to_string(),
        "manifest": artifact.manifest,
        "layer": artifact.layer.digest,
        "signed_by": signers,
        "trust": verdict,
        "wit": artifact.config.wit_version(),
    });
    let source = PluginSource::Stored {
        label: pinned.to_string(),
        path: artifact.component.clone(),
        sha256: artifact.layer.digest.hex().to_owned(),
    };
    Ok((source, value))
}

/// `stepback lock FLOW`: validates the flow with its registry plugins
/// resolved now, and writes their digests beside it.
pub async fn lock(args: &FlowArgs, cli: &Cli, state_dir: &Path, engine: (&Sandbox, &[PathBuf])) -> u8 {
    let remote = Remote::locking(
        Store::new(state_dir),
        TrustPolicy::read(&cli.trust),
        cli.plain_http.clone(),
    );
    let input = Input {
        flow: &args.flow,
        params: &args.params,
        output: cli.output,
    };
    if let Err(code) = super::plan(&input, (engine.0, engine.1, &remote)).await {
        return code;
    }
    // Beside the flow's file (`flow.toml` of a directory given).
    let file = stepback::flow::FlowSource::read(&args.flow).map_or_else(|_| args.flow.clone(), |s| s.path);
    let path = stepback::registry::Lock::path_for(&file);
    let lock = remote.into_lock();
    let written = lock
        .write(&path)
        .and_then(|()| Store::new(state_dir).remember_lock(&path));
    if let Err(e) = written {
        return error(exit::ENGINE_ERROR, format_args!("{e:#}"));
    }
    match cli.output {
        OutputFormat::Human => {
            outln!(
                "wrote {}: {} registry plugin{}",
                path.display(),
                lock.plugins.len(),
                if lock.plugins.len() == 1 { "" } else { "s" }
            );
            for p in &lock.plugins {
                let signed = p.signed_by.as_deref().unwrap_or("unsigned");
                outln!("  {}  {}  ({signed})", p.uses, p.manifest);
            }
        }
        OutputFormat::Json => json::print_result("lock", json!({ "lock": path, "plugins": lock.plugins })),
    }
    exit::SUCCESS
}

/// The commands that fix what was said of registry plugins (the library
/// names none: an embedding program has other ways).
pub fn hints<'a>(messages: impl Iterator<Item = &'a str> + Clone, flow: &Path) {
    let said = |what: &str| messages.clone().any(|m| m.contains(what));
    if said("lock the flow") || said("by locking it") {
        errln!(
            "(`stepback lock {}` pins the flow's registry plugins: pulls, checks and compiles each, and writes the lock)",
            flow.display()
        );
    }
    if said("pull it into the store first") {
        errln!("(`stepback plugin pull REFERENCE@DIGEST` fetches it; `run` without --offline does too)");
    }
    if said("is not signed") {
        errln!("(a publisher signs a plugin with `stepback plugin sign REFERENCE --key KEY`)");
    }
}
