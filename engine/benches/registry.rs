//! Registry plugins, per built-in plugin published to a real registry
//! (Debian's `docker-registry`, started here on 127.0.0.1) and signed:
//!
//! - cold: pull (manifest, config, component and signatures, each hashed
//!   into the store) + trust check + compile, with an empty store and cache
//!   (what `stepback lock` or `plugin pull` pays once);
//! - warm: what `run` pays per plugin of a locked flow: the lock read, the
//!   manifest and config hashed from the store, the signature verified
//!   against the trust policy, and the component loaded from the compiled
//!   cache (no compile; target < 5 ms); beside it, the same component
//!   loaded as a built-in plugin, warm (no store, no signature).
//!
//! Run with `cargo bench --bench registry` (needs `docker-registry`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stepback::events::Discard;
use stepback::plugin::{CompiledCache, PluginSource, builtin::BUILTINS};
use stepback::registry::{PluginRef, Registry, Remote, SecretKey, Signatures, Store, TrustPolicy};
use stepback::sandbox::Sandbox;

const COLD: usize = 3;
const WARM: usize = 31;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// A registry on a free port of 127.0.0.1, storing under `dir`.
fn registry(dir: &Path) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: {addr}}}\n",
            dir.join("registry").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry (apt-get install docker-registry)");
    while std::net::TcpStream::connect(&addr).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, addr)
}

fn remote_locking(state: &Path, trust: &Path) -> Remote {
    Remote::locking(Store::new(state), TrustPolicy::read(trust), Vec::new())
}

#[tokio::main]
async fn main() {
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir");
    let dir = scratch.path();
    let (mut server, addr) = registry(dir);
    let key = SecretKey::generate().unwrap();
    let trust = dir.join("trust.toml");
    std::fs::write(
        &trust,
        format!(
            "version = 1\n[[trust]]\nplugins = \"{addr}/bench/*\"\nkeys = [\"{}\"]\n",
            key.public()
        ),
    )
    .unwrap();
    let mut published = Vec::new();
    for (name, bytes) in BUILTINS {
        let reference = PluginRef::parse(&format!("oci://{addr}/bench/{name}:1")).unwrap();
        let registry = Registry::connect(&reference, &[]).unwrap();
        let manifest = registry.push(&reference, bytes).await.expect("push");
        let mut signatures = Signatures::new(&reference.repository, &manifest);
        signatures.add(key.sign(&reference.repository, &manifest));
        registry
            .push_signatures(&reference, &signatures)
            .await
            .expect("sign");
        published.push((*name, reference));
    }
    let flow = dir.join("flow.toml");
    let warm_state = dir.join("warm-state");
    let warm_sandbox = Sandbox::new(CompiledCache::new(dir.join("warm-cache")), Arc::new(Discard)).unwrap();
    let locking = remote_locking(&warm_state, &trust);
    for ((name, reference), (_, bytes)) in published.iter().zip(BUILTINS) {
        let uses = reference.to_string();
        // Cold: empty store and cache each time.
        let mut cold = Vec::new();
        for round in 0..COLD {
            let state = dir.join(format!("cold-{name}-{round}"));
            let sandbox = Sandbox::new(CompiledCache::new(state.join("cache")), Arc::new(Discard)).unwrap();
            let remote = remote_locking(&state, &trust);
            let start = Instant::now();
            let source = remote.source(&flow, &uses, reference).await.expect("pull");
            sandbox.load(&source).expect("compile");
            cold.push(start.elapsed());
        }
        let source = locking.source(&flow, &uses, reference).await.expect("lock");
        warm_sandbox.load(&source).expect("compile");
        let mut builtin = Vec::new();
        let plain = PluginSource::Builtin(name, bytes);
        warm_sandbox.load(&plain).expect("built-in");
        for _ in 0..WARM {
            let start = Instant::now();
            warm_sandbox.load(&plain).expect("built-in");
            builtin.push(start.elapsed());
        }
        published_warm(name, bytes.len(), cold, builtin);
    }
    locking
        .into_lock()
        .write(&stepback::registry::Lock::path_for(&flow))
        .unwrap();
    let locked = Remote::locked(
        Store::new(&warm_state),
        TrustPolicy::read(&trust),
        Vec::new(),
        true,
    );
    for (name, reference) in &published {
        let uses = reference.to_string();
        let mut warm = Vec::new();
        for _ in 0..WARM {
            let start = Instant::now();
            let source = locked
                .source(&flow, &uses, reference)
                .await
                .expect("from the lock");
            warm_sandbox.load(&source).expect("warm load");
            warm.push(start.elapsed());
        }
        println!(
            "{name:<13} warm from the lock and the store (offline): {}",
            ms(median(warm))
        );
    }
    let _ = server.kill();
    let _ = server.wait();
}

fn published_warm(name: &str, size: usize, cold: Vec<Duration>, builtin: Vec<Duration>) {
    println!(
        "{name:<13} {:>6} KiB  cold pull+verify+compile {:>10}  built-in warm load {:>9}",
        size / 1024,
        ms(median(cold)),
        ms(median(builtin))
    );
}
