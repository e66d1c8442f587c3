//! How a flow's `uses = "oci://…"` becomes a component to load: through
//! the flow's lock and the store when it runs or is validated, through the
//! registry (recording what it found) when it is locked. Either way the
//! trust policy is asked before anything is loaded.

use super::client::{Pulled, Registry};
use super::digest::Digest;
use super::lock::{Lock, Locked};
use super::reference::PluginRef;
use super::signature::Signatures;
use super::store::{Artifact, Store};
use super::trust::{TrustPolicy, Trusted};
use crate::plugin::PluginSource;
use anyhow::{Context, bail};
use std::path::Path;
use std::sync::Mutex;

/// Where registry plugins come from, and who is trusted to publish them.
pub struct Remote {
    store: Store,
    /// The policy, or what is wrong with its file (said when a registry
    /// plugin is used, so a broken policy stops no flow that uses none).
    trust: Result<TrustPolicy, String>,
    plain_http: Vec<String>,
    mode: Mode,
}

/// What a `uses` is resolved through.
enum Mode {
    /// The flow's lock: what it pins, from the store (pulled by digest
    /// where missing, unless offline). `asked` holds every `uses` looked
    /// up, so that entries no step asked for are found stale.
    Locked {
        offline: bool,
        asked: Mutex<std::collections::BTreeSet<String>>,
    },
    /// The registry, now: what each reference names is recorded, for
    /// `stepback lock` to write.
    Locking(Mutex<Vec<Locked>>),
}

impl Remote {
    /// Registry plugins through their flow's lock; `offline`: from the
    /// store alone.
    pub fn locked(
        store: Store,
        trust: Result<TrustPolicy, String>,
        plain_http: Vec<String>,
        offline: bool,
    ) -> Remote {
        Remote {
            store,
            trust,
            plain_http,
            mode: Mode::Locked {
                offline,
                asked: Mutex::default(),
            },
        }
    }

    /// Registry plugins as the registry names them now, recorded for a lock.
    pub fn locking(store: Store, trust: Result<TrustPolicy, String>, plain_http: Vec<String>) -> Remote {
        Remote {
            store,
            trust,
            plain_http,
            mode: Mode::Locking(Mutex::new(Vec::new())),
        }
    }

    /// The registry of `reference`.
    pub fn registry(&self, reference: &PluginRef) -> anyhow::Result<Registry> {
        Registry::connect(reference, &self.plain_http)
    }

    /// What locking found, for the lock file (empty unless [`Remote::locking`]).
    pub fn into_lock(self) -> Lock {
        let plugins = match self.mode {
            Mode::Locking(found) => found.into_inner().unwrap_or_else(|e| e.into_inner()),
            Mode::Locked { .. } => Vec::new(),
        };
        Lock {
            version: super::lock::VERSION,
            plugins,
        }
    }

    /// The component `uses` (which parsed as `reference`) names for the
    /// flow at `flow`, checked against the trust policy.
    pub async fn source(
        &self,
        flow: &Path,
        uses: &str,
        reference: &PluginRef,
    ) -> anyhow::Result<PluginSource> {
        let artifact = match &self.mode {
            Mode::Locked { offline, asked } => {
                asked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(uses.to_owned());
                self.through_lock(flow, uses, reference, *offline).await?
            }
            Mode::Locking(found) => {
                let (artifact, trusted) = self.pull(reference).await?;
                found.lock().unwrap_or_else(|e| e.into_inner()).push(Locked {
                    uses: uses.to_owned(),
                    manifest: artifact.manifest.clone(),
                    layer: artifact.layer.digest.clone(),
                    signed_by: signer(&trusted),
                });
                artifact
            }
        };
        Ok(PluginSource::Stored {
            label: reference.pinned(&artifact.manifest).to_string(),
            path: artifact.component,
            sha256: artifact.layer.digest.hex().to_owned(),
        })
    }

    /// What is wrong with the lock of the flow at `flow` that no `uses`
    /// shows: entries no step asked for (the flow changed since it was
    /// locked). Empty unless through the lock, and for a flow without one.
    pub fn unused_entries(&self, flow: &Path) -> Vec<String> {
        let Mode::Locked { asked, .. } = &self.mode else {
            return Vec::new();
        };
        let asked = asked.lock().unwrap_or_else(|e| e.into_inner());
        let path = Lock::path_for(flow);
        let Ok(Some(lock)) = Lock::read(&path) else {
            return Vec::new();
        };
        (lock.plugins.iter())
            .filter(|p| !asked.contains(&p.uses))
            .map(|p| {
                format!(
                    "{} pins {}, which no step or action of the flow uses: the lock is stale; lock the flow again",
                    path.display(),
                    p.uses
                )
            })
            .collect()
    }

    /// Pulls `reference` into the store and asks the trust policy about
    /// it: what `plugin pull` and `lock` do.
    pub async fn pull(&self, reference: &PluginRef) -> anyhow::Result<(Artifact, Trusted)> {
        self.policy()?.covers(reference).map_err(anyhow::Error::msg)?;
        let Pulled {
            artifact,
            signatures,
            found,
        } = self.registry(reference)?.pull(reference, &self.store).await?;
        // The store keeps valid signatures only: a trusted key's that did
        // not verify is said as such (from what arrived), not as "unsigned".
        let forged = found.as_ref().filter(|doc| {
            self.policy()
                .is_ok_and(|p| p.forged(reference, &artifact.manifest, doc))
        });
        let trusted = self.check(reference, &artifact.manifest, forged.or(signatures.as_ref()))?;
        self.store.set_tag(reference, &artifact.manifest)?;
        Ok((artifact, trusted))
    }

    /// The locked plugin, from the store (pulled by its digest where
    /// missing, unless `offline`), checked against the lock and the policy.
    async fn through_lock(
        &self,
        flow: &Path,
        uses: &str,
        reference: &PluginRef,
        offline: bool,
    ) -> anyhow::Result<Artifact> {
        let lock_path = Lock::path_for(flow);
        let lock = Lock::read(&lock_path).map_err(anyhow::Error::msg)?;
        let Some(lock) = lock else {
            bail!(
                "{uses} comes from a registry, and the flow has no lock ({}): pin what it runs by locking it",
                lock_path.display()
            );
        };
        // Whatever prunes the store later must spare what this lock pins.
        self.store.remember_lock(&lock_path)?;
        let Some(entry) = lock.get(uses) else {
            bail!(
                "{uses} is not in {}: the lock is stale; lock the flow again",
                lock_path.display()
            );
        };
        if let Some(digest) = &reference.digest
            && *digest != entry.manifest
        {
            bail!(
                "{uses} names {digest}, but {} pins {}: the lock is stale; lock the flow again",
                lock_path.display(),
                entry.manifest
            );
        }
        let pinned = reference.pinned(&entry.manifest);
        let artifact = match self.store.artifact(&entry.manifest)? {
            Some(artifact) => artifact,
            None if offline => bail!(
                "{pinned} is not in the store ({}), and nothing is fetched offline: pull it into the store first",
                self.store.dir().display()
            ),
            None => {
                self.policy()?.covers(reference).map_err(anyhow::Error::msg)?;
                self.registry(&pinned)?.pull(&pinned, &self.store).await?.artifact
            }
        };
        if artifact.layer.digest != entry.layer {
            bail!(
                "{}: {uses} pins manifest {} with component {}, but that manifest names component {}: the lock was altered; lock the flow again",
                lock_path.display(),
                entry.manifest,
                entry.layer,
                artifact.layer.digest
            );
        }
        let signatures = self
            .store
            .signatures(&reference.repository, &entry.manifest)
            .with_context(|| format!("the stored signatures of {pinned}"))?;
        let trusted = self.check(reference, &entry.manifest, signatures.as_ref())?;
        // A plugin locked as signed stays signed by that key: a policy that
        // now lets it run unsigned, or signed by another, is a change to lock.
        if let Some(locked) = &entry.signed_by
            && signer(&trusted).as_ref() != Some(locked)
        {
            let now =
                signer(&trusted).map_or("no trusted key".to_owned(), |k| format!("the trusted key {k}"));
            bail!(
                "{}: {uses} was locked as signed by {locked}, and what signs it now is {now}: lock the flow again if that is meant",
                lock_path.display()
            );
        }
        Ok(artifact)
    }
}

impl Remote {
    /// The trust policy, or what is wrong with its file.
    fn policy(&self) -> anyhow::Result<&TrustPolicy> {
        self.trust.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// What the trust policy says of a plugin.
    fn check(
        &self,
        reference: &PluginRef,
        manifest: &Digest,
        signatures: Option<&Signatures>,
    ) -> anyhow::Result<Trusted> {
        self.policy()?
            .check(reference, manifest, signatures)
            .map_err(anyhow::Error::msg)
    }
}

/// The lock's `signed-by` of a verdict.
fn signer(trusted: &Trusted) -> Option<String> {
    match trusted {
        Trusted::Signed(key) => Some(key.to_string()),
        Trusted::Unsigned => None,
    }
}
