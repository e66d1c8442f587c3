//! Plugins from OCI registries: published by their authors, pulled and
//! pinned by operators, run only when signed by someone the operator
//! trusts.
//!
//! A flow names one with `uses = "oci://REGISTRY/REPOSITORY:TAG"` (or
//! `@sha256:DIGEST`). `stepback lock` pulls every such plugin into the
//! [store](Store) (hashing all it receives), asks the [trust
//! policy](TrustPolicy), compiles it into the compiled cache, and writes
//! the flow's [lock](Lock); `run` and `validate` then run what the lock
//! pins, from the store, asking the policy again (no network needed, and
//! none used with `--offline`).

mod auth;
mod client;
mod digest;
mod layout;
mod lock;
mod reference;
mod resolve;
mod signature;
mod store;
mod trust;

pub use client::{Pulled, Registry};
pub use digest::Digest;
pub use layout::WasmConfig;
pub use lock::{Lock, Locked};
pub use reference::{PluginRef, SCHEME};
pub use resolve::Remote;
pub use signature::{PublicKey, SecretKey, Signatures};
pub use store::{Artifact, Pins, Store};
pub use trust::{DEFAULT_PATH as DEFAULT_TRUST_PATH, TrustPolicy, Trusted};
