//! Plugins from a real registry (Debian's `docker-registry`, installed by
//! `.ci/run`), started on 127.0.0.1 with a free port and its own storage:
//! push, sign, lock, pull, run, roll back; runs with the registry stopped;
//! and every way a plugin that is not what was locked, or not trusted, is
//! refused before anything runs.

use crate::support::{Env, guest};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use stepback::exit;

/// A registry of our own.
pub struct Registry {
    child: Option<Child>,
    /// Its storage (blobs under `docker/registry/v2/blobs`).
    pub root: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    config: PathBuf,
}

/// Installs Debian's registry and `htpasswd` where this machine lacks
/// them (the tests run as root; `.ci/run` installs them too), so that a
/// plain `cargo test` on a fresh machine has them.
fn installed() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let have = |program: &str| {
            Command::new("sh")
                .args(["-c", &format!("command -v {program}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if have("docker-registry") && have("htpasswd") {
            return;
        }
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let install = [
            "install",
            "-y",
            "--no-install-recommends",
            "docker-registry",
            "apache2-utils",
        ];
        let done = apt(&install) || (apt(&["update"]) && apt(&install));
        assert!(
            done,
            "cannot install docker-registry and apache2-utils with apt-get (as .ci/run does)"
        );
    });
}

impl Registry {
    /// Starts one; with `user`, it takes only that user (password `pw`).
    pub fn start(user: Option<&str>) -> Registry {
        installed();
        let root = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            root.path().join("data").display()
        );
        if let Some(user) = user {
            let hashed = Command::new("htpasswd")
                .args(["-Bbn", user, "pw"])
                .output()
                .expect("htpasswd (Debian's apache2-utils, installed by .ci/run)");
            std::fs::write(root.path().join("htpasswd"), hashed.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                root.path().join("htpasswd").display()
            ));
        }
        let config_path = root.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut registry = Registry {
            child: None,
            root,
            addr,
            config: config_path,
        };
        registry.resume();
        registry
    }

    /// (Re)starts the server on its storage and waits until it answers.
    pub fn resume(&mut self) {
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian's docker-registry, installed by .ci/run)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !self.answers() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry never answered"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn answers(&self) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(&self.addr) else {
            return false;
        };
        let _ = write!(s, "GET /v2/ HTTP/1.0\r\n\r\n");
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        reply.starts_with("HTTP/1.")
    }

    /// Stops the server (its storage stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `oci://ADDR/PATH`.
    pub fn at(&self, path: &str) -> String {
        format!("oci://{}/{path}", self.addr)
    }

    /// The file the registry keeps blob `digest` (`sha256:…`) in.
    pub fn blob(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.root
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A scratch env whose trust policy trusts `key` for `scope` (or lets
/// unsigned plugins run there, with `key` None).
pub fn trust(env: &Env, scope: &str, key: Option<&str>) {
    let rule = match key {
        Some(key) => format!(
            "keys = [\"{}\"]",
            std::fs::read_to_string(env.path(key)).unwrap().trim()
        ),
        None => "unsigned = true".into(),
    };
    env.write(
        "trust.toml",
        format!("version = 1\n[[trust]]\nplugins = \"{scope}\"\n{rule}\n"),
    );
}

/// `stepback ARGS` with this env's trust policy.
pub fn sb(env: &Env, args: &[&str]) -> crate::support::Run {
    let trust = env.path("trust.toml");
    env.stepback_env(args, &[("STEPBACK_TRUST", trust.to_str().unwrap())])
}

/// The manifest digest `plugin push` printed.
pub fn pushed(run: &crate::support::Run) -> String {
    run.expect_code(exit::SUCCESS);
    let out = run.stdout();
    out.rsplit('@').next().unwrap().trim().to_owned()
}

/// A flow writing `app/hello.txt` with `uses`, then failing when `fail`.
fn flow(env: &Env, uses: &str, fail: bool) -> PathBuf {
    env.mkdir("app");
    let mut text = format!(
        "name = \"hello\"\n[[mounts]]\nname = \"app\"\nhost = \"app\"\nguest = \"/app\"\naccess = \"read-write\"\n\
         [[steps]]\nname = \"write\"\nuses = \"{uses}\"\nmounts = [\"app\"]\nwith = {{ path = \"/app/hello.txt\", content = \"hi\" }}\n"
    );
    if fail {
        text.push_str("[[steps]]\nname = \"check\"\nuses = \"builtin:fail\"\n");
    }
    env.flow(text)
}

/// A registry holding write-file as `acme/write-file:1.0`, signed with
/// the env's key `acme`, which its trust policy trusts.
fn published(env: &Env, registry: &Registry) -> (String, String) {
    sb(env, &["key", "generate", "acme"]).expect_code(exit::SUCCESS);
    let reference = registry.at("acme/write-file:1.0");
    let digest = pushed(&sb(env, &["plugin", "push", &guest("write_file"), &reference]));
    sb(env, &["plugin", "sign", &reference, "--key", "acme"]).expect_code(exit::SUCCESS);
    trust(env, &format!("{}/acme/*", registry.addr), Some("acme.pub"));
    (reference, digest)
}

/// A registry with [`published`]'s plugin, and the env's flow using it, locked.
struct Locked {
    env: Env,
    registry: Registry,
    reference: String,
    digest: String,
    flow: PathBuf,
}

fn locked() -> Locked {
    let env = Env::new();
    let registry = Registry::start(None);
    let (reference, digest) = published(&env, &registry);
    let flow = flow(&env, &reference, false);
    sb(&env, &["lock", flow.to_str().unwrap()]).expect_code(exit::SUCCESS);
    Locked {
        env,
        registry,
        reference,
        digest,
        flow,
    }
}

fn no_runs(env: &Env) {
    let shown = env.stepback(&["show"]);
    assert!(
        !shown.stdout().contains("hello"),
        "a run was made: {}",
        shown.stdout()
    );
    assert!(!env.path("app/hello.txt").exists());
}

#[test]
fn a_signed_plugin_is_pushed_locked_and_run_from_the_store_even_with_the_registry_stopped() {
    let env = Env::new();
    let mut registry = Registry::start(None);
    let (reference, digest) = published(&env, &registry);
    // Pushing the same component again gives the same digest.
    assert_eq!(
        pushed(&sb(&env, &["plugin", "push", &guest("write_file"), &reference])),
        digest
    );
    // A push names a tag; a digest is what it makes.
    let to_digest = format!("{reference}@{digest}");
    sb(&env, &["plugin", "push", &guest("write_file"), &to_digest])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("is pushed to a tag");
    let f = flow(&env, &reference, false);
    let f = f.to_str().unwrap();
    // Without a lock, nothing runs, and the error is at the step's line.
    sb(&env, &["run", f])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("flow.toml:9:8")
        .expect_stderr("stepback lock");
    no_runs(&env);
    let locked = sb(&env, &["lock", f]);
    locked.expect_code(exit::SUCCESS).expect_stdout(&digest);
    let lock = env.read("flow.lock");
    assert!(
        lock.contains(&format!("manifest = \"{digest}\"")) && lock.contains("signed-by = \"ed25519:"),
        "{lock}"
    );
    // The lock compiled it: the run loads it from the cache.
    let run = sb(&env, &["--verbose", "run", f]);
    run.expect_code(exit::SUCCESS)
        .expect_stderr(&format!("plugin {reference}@{digest}"))
        .expect_stderr("compiled cache hit");
    assert!(!run.stderr().contains("compiled and cached"), "{}", run.stderr());
    assert_eq!(env.read("app/hello.txt"), "hi");
    // A failing later step rolls the registry plugin's change back.
    std::fs::remove_file(env.path("app/hello.txt")).unwrap();
    let failing = flow(&env, &reference, true);
    sb(&env, &["run", failing.to_str().unwrap()]).expect_code(exit::FLOW_FAILED);
    assert!(!env.path("app/hello.txt").exists());
    // The registry gone: the store still has it, with and without --offline.
    registry.stop();
    let ok = flow(&env, &reference, false);
    for args in [
        vec!["run", ok.to_str().unwrap()],
        vec!["run", "--offline", ok.to_str().unwrap()],
    ] {
        std::fs::remove_file(env.path("app/hello.txt")).ok();
        sb(&env, &args).expect_code(exit::SUCCESS);
        assert_eq!(env.read("app/hello.txt"), "hi");
    }
    sb(&env, &["validate", "--offline", f]).expect_code(exit::SUCCESS);
    // With an empty store, --offline fails before anything runs.
    std::fs::remove_dir_all(env.path("state/store")).unwrap();
    std::fs::remove_file(env.path("app/hello.txt")).unwrap();
    sb(&env, &["run", "--offline", f])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr(&format!("{reference}@{digest} is not in the store"))
        .expect_stderr("stepback plugin pull");
    assert!(!env.path("app/hello.txt").exists());
    // Online again, the run pulls what the lock pins.
    registry.resume();
    sb(&env, &["run", f]).expect_code(exit::SUCCESS);
    assert_eq!(env.read("app/hello.txt"), "hi");
}

#[test]
fn a_tag_that_moves_after_the_lock_still_runs_the_locked_digest() {
    let Locked {
        env,
        registry: _registry,
        reference,
        digest,
        flow: f,
    } = locked();
    let f = f.to_str().unwrap();
    // The tag now names another (signed) component.
    let moved = pushed(&sb(&env, &["plugin", "push", &guest("fail"), &reference]));
    assert_ne!(moved, digest);
    sb(&env, &["plugin", "sign", &reference, "--key", "acme"]).expect_code(exit::SUCCESS);
    std::fs::remove_dir_all(env.path("state/store")).unwrap();
    sb(&env, &["run", f]).expect_code(exit::SUCCESS);
    assert_eq!(env.read("app/hello.txt"), "hi");
    // Pulling again takes what the tag names now.
    sb(&env, &["plugin", "pull", &reference])
        .expect_code(exit::SUCCESS)
        .expect_stdout(&moved);
    // Pruning removes what was pulled and no lock pins, never what one does.
    let stored = |d: &str| {
        env.path(&format!(
            "state/store/blobs/sha256/{}",
            d.trim_start_matches("sha256:")
        ))
    };
    assert!(stored(&moved).exists() && stored(&digest).exists());
    sb(&env, &["cache", "prune"])
        .expect_code(exit::SUCCESS)
        .expect_stdout("no lock pins");
    assert!(!stored(&moved).exists() && stored(&digest).exists());
    std::fs::remove_file(env.path("app/hello.txt")).unwrap();
    sb(&env, &["run", "--offline", f]).expect_code(exit::SUCCESS);
    assert_eq!(env.read("app/hello.txt"), "hi");
    // Nor does a compile that overflows the cache's limit evict the
    // locked plugin's compiled code (in a cache of this test's own).
    let cache = env.path("own-cache");
    let own = |args: &[&str], limit: &str| {
        let mut command = env.command(args, &cache);
        command
            .env("STEPBACK_TRUST", env.path("trust.toml"))
            .env("STEPBACK_CACHE_LIMIT", limit);
        crate::support::Run(command.output().unwrap())
    };
    std::fs::remove_file(env.path("app/hello.txt")).unwrap();
    own(&["run", "--offline", f], "1GiB").expect_code(exit::SUCCESS);
    own(&["plugin", "pull", &reference], "1KiB").expect_code(exit::SUCCESS);
    std::fs::remove_file(env.path("app/hello.txt")).unwrap();
    own(&["--verbose", "run", "--offline", f], "1KiB")
        .expect_code(exit::SUCCESS)
        .expect_stderr("compiled cache hit");
    // A digest in `uses` that the lock does not pin: the lock is stale.
    let pinned = flow(&env, &format!("{reference}@{digest}"), false);
    sb(&env, &["run", pinned.to_str().unwrap()])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("the lock is stale");
}

#[test]
fn what_is_not_what_was_published_or_not_trusted_is_refused_before_anything_runs() {
    let Locked {
        env,
        registry,
        reference,
        digest,
        flow: _,
    } = locked();
    let lock = env.read("flow.lock");
    let layer = lock
        .split("layer = \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();

    // A stale lock: the flow names a plugin the lock does not.
    let other = flow(&env, &registry.at("acme/write-file:2.0"), false);
    sb(&env, &["run", other.to_str().unwrap()])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("is not in")
        .expect_stderr("the lock is stale");
    no_runs(&env);
    // The flow no longer uses what the lock pins: stale too.
    let changed = flow(&env, "builtin:write-file", false);
    sb(&env, &["run", changed.to_str().unwrap()])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("which no step or action of the flow uses")
        .expect_stderr("stepback lock");
    no_runs(&env);
    let f = flow(&env, &reference, false);
    let f = f.to_str().unwrap();
    // A lock edited by hand: its component is not the one its manifest names.
    let other_layer = format!("sha256:{}", "0".repeat(64));
    env.write("flow.lock", lock.replace(&layer, &other_layer));
    sb(&env, &["run", f])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("the lock was altered");
    no_runs(&env);
    env.write("flow.lock", &lock);

    // The store's copy changed on disk.
    let stored = env.path(&format!(
        "state/store/blobs/sha256/{}",
        layer.trim_start_matches("sha256:")
    ));
    let original = std::fs::read(&stored).unwrap();
    let mut altered = original.clone();
    *altered.last_mut().unwrap() ^= 1;
    std::fs::write(&stored, &altered).unwrap();
    sb(&env, &["run", f])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("no longer what was pulled");
    no_runs(&env);
    std::fs::remove_dir_all(env.path("state/store")).unwrap();

    // The registry's copy of the layer changed.
    let blob = registry.blob(&layer);
    std::fs::write(&blob, &altered).unwrap();
    sb(&env, &["run", f])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("does not match its digest");
    no_runs(&env);
    std::fs::write(&blob, &original).unwrap();

    // The registry answers the locked digest with another manifest.
    let manifest_blob = registry.blob(&digest);
    let real = std::fs::read(&manifest_blob).unwrap();
    let mut forged: serde_json::Value = serde_json::from_slice(&real).unwrap();
    forged["annotations"] = serde_json::json!({ "x": "y" });
    std::fs::write(&manifest_blob, serde_json::to_vec(&forged).unwrap()).unwrap();
    sb(&env, &["run", f])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("with a manifest whose digest is");
    no_runs(&env);
    std::fs::write(&manifest_blob, &real).unwrap();

    // A signature by a key the policy does not trust, and none at all.
    sb(&env, &["key", "generate", "mallory"]).expect_code(exit::SUCCESS);
    // (Other components: a signature covers a manifest wherever it is.)
    let unsigned = registry.at("acme/unsigned:1.0");
    pushed(&sb(&env, &["plugin", "push", &guest("fail"), &unsigned]));
    sb(&env, &["plugin", "pull", &unsigned])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("is not signed")
        .expect_stderr("stepback plugin sign");
    let mallory = std::fs::read_to_string(env.path("mallory.pub")).unwrap();
    let theirs = registry.at("acme/theirs:1.0");
    pushed(&sb(&env, &["plugin", "push", &guest("remove"), &theirs]));
    sb(&env, &["plugin", "sign", &theirs, "--key", "mallory"]).expect_code(exit::SUCCESS);
    let refused = sb(&env, &["lock", flow(&env, &theirs, false).to_str().unwrap()]);
    refused
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr(&format!("is signed only by {}", mallory.trim()))
        .expect_stderr("does not trust");
    // A refused lock leaves the lock as it was.
    assert_eq!(env.read("flow.lock"), lock);
    // A policy change after locking is honoured at run time: the trusted
    // key is no longer trusted.
    let f = flow(&env, &reference, false);
    env.write(
        "trust.toml",
        format!(
            "version = 1\n[[trust]]\nplugins = \"{}/acme/*\"\nkeys = [\"{}\"]\n",
            registry.addr,
            mallory.trim()
        ),
    );
    sb(&env, &["run", f.to_str().unwrap()])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("does not trust");
    no_runs(&env);
    // Nor does a policy that would let it run unsigned: the lock says who signed it.
    trust(&env, &format!("{}/acme/*", registry.addr), None);
    sb(&env, &["run", f.to_str().unwrap()])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("was locked as signed by ed25519:")
        .expect_stderr("what signs it now is no trusted key");
    no_runs(&env);
}

#[test]
fn a_registry_with_passwords_takes_the_environment_and_docker_auth_files() {
    let env = Env::new();
    let registry = Registry::start(Some("alice"));
    let reference = registry.at("acme/write-file:1.0");
    let push = ["plugin", "push", &guest("write_file"), &reference];
    sb(&env, &push)
        .expect_code(exit::ENGINE_ERROR)
        .expect_stderr("requires credentials")
        .expect_stderr("docker login");
    let trust_file = env.path("trust.toml");
    trust(&env, &format!("{}/acme/*", registry.addr), None);
    let with_password = |registry: &str, password: &str| {
        env.stepback_env(
            &push,
            &[
                ("STEPBACK_TRUST", trust_file.to_str().unwrap()),
                ("STEPBACK_REGISTRY", registry),
                ("STEPBACK_REGISTRY_USERNAME", "alice"),
                ("STEPBACK_REGISTRY_PASSWORD", password),
            ],
        )
    };
    // The credentials go only to the registry they are for.
    with_password("127.0.0.1:1", "pw")
        .expect_code(exit::ENGINE_ERROR)
        .expect_stderr("requires credentials");
    with_password(&registry.addr, "wrong")
        .expect_code(exit::ENGINE_ERROR)
        .expect_stderr("refused the credentials");
    pushed(&with_password(&registry.addr, "pw"));
    // Docker's config.json, as `docker login` writes it.
    let docker = env.mkdir("docker");
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "YWxpY2U6cHc="}}}}}}"#,
            registry.addr
        ),
    )
    .unwrap();
    let pulled = env.stepback_env(
        &["plugin", "pull", &reference],
        &[
            ("STEPBACK_TRUST", trust_file.to_str().unwrap()),
            ("DOCKER_CONFIG", docker.to_str().unwrap()),
        ],
    );
    pulled
        .expect_code(exit::SUCCESS)
        .expect_stdout("unsigned, as the trust policy allows");
    sb(&env, &["plugin", "list"]).expect_stdout(&reference);
}

#[test]
fn a_malformed_reference_is_refused_at_its_line() {
    let env = Env::new();
    let f = flow(&env, "oci://registry.example/Acme/hello", false);
    env.stepback(&["validate", f.to_str().unwrap()])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("flow.toml:9:8")
        .expect_stderr("\"Acme\"");
}

/// For the JSON census: every registry command's result, once.
pub fn json_results(env: &Env) -> Vec<String> {
    let registry = Registry::start(None);
    let reference = registry.at("census/write-file:1.0");
    let json = |args: &[&str]| {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let run = sb(env, &all);
        run.expect_code(exit::SUCCESS);
        run.stdout()
    };
    let mut out = vec![json(&["key", "generate", "census"])];
    out.push(json(&["plugin", "push", &guest("write_file"), &reference]));
    out.push(json(&["plugin", "sign", &reference, "--key", "census"]));
    trust(env, &format!("{}/census/*", registry.addr), Some("census.pub"));
    out.push(json(&["plugin", "pull", &reference]));
    out.push(json(&["plugin", "list"]));
    out.push(json(&["plugin", "inspect", &reference]));
    let f = env.write(
        "census.toml",
        format!(
            "name = \"census\"\n[[mounts]]\nname = \"app\"\nhost = \"census-app\"\nguest = \"/app\"\naccess = \"read-write\"\n[[steps]]\nname = \"w\"\nuses = \"{reference}\"\nmounts = [\"app\"]\nwith = {{ path = \"/app/x\", content = \"y\" }}\n"
        ),
    );
    env.mkdir("census-app");
    out.push(json(&["lock", f.to_str().unwrap()]));
    out
}
