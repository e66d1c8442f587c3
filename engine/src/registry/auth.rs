//! Registry credentials, where Docker and Podman keep them, so that an
//! operator who has run `docker login` or `podman login` needs nothing more.
//!
//! In order: `STEPBACK_REGISTRY_USERNAME` and `STEPBACK_REGISTRY_PASSWORD`
//! for the one registry `STEPBACK_REGISTRY` names (CI jobs; never sent to
//! any other, so a flow naming a stranger's registry cannot collect them);
//! then the auth files, first match wins:
//! `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `~/.config/containers/auth.json` (Podman), `$DOCKER_CONFIG/config.json`
//! or `~/.docker/config.json` (Docker). In a file, a registry's `auth`
//! (base64 `user:password`) is used; where the file names a credential
//! helper for it (`credHelpers`, or `credsStore` for all), the helper
//! `docker-credential-NAME get` is asked. Nothing found: anonymous.

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Deserialize, Default)]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, Entry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
}

/// The credentials to use with `registry` (`host[:port]`).
pub fn credentials(registry: &str) -> anyhow::Result<RegistryAuth> {
    let env = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let (Some(user), Some(password), Some(_)) = (
        env("STEPBACK_REGISTRY_USERNAME"),
        env("STEPBACK_REGISTRY_PASSWORD"),
        env("STEPBACK_REGISTRY").filter(|r| r.as_str() == registry),
    ) {
        return Ok(RegistryAuth::Basic(user, password));
    }
    for path in auth_files() {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let file: AuthFile = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("registry auth file {}: {e}", path.display()))?;
        if let Some(found) = lookup(&file, registry, &path)? {
            return Ok(found);
        }
    }
    Ok(RegistryAuth::Anonymous)
}

fn auth_files() -> Vec<PathBuf> {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = dirs::home_dir();
    let mut files = Vec::new();
    files.extend(var("REGISTRY_AUTH_FILE"));
    files.extend(var("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")));
    files.extend(home.as_ref().map(|h| h.join(".config/containers/auth.json")));
    match var("DOCKER_CONFIG") {
        Some(dir) => files.push(dir.join("config.json")),
        None => files.extend(home.map(|h| h.join(".docker/config.json"))),
    }
    files
}

/// `registry`'s credentials in one auth file, if it has them.
fn lookup(file: &AuthFile, registry: &str, path: &std::path::Path) -> anyhow::Result<Option<RegistryAuth>> {
    // Docker writes keys as `host`, `https://host` or `https://host/v1/`.
    let key = file.auths.keys().find(|k| {
        let bare = k.trim_start_matches("https://").trim_start_matches("http://");
        bare.split('/').next() == Some(registry)
    });
    let helper = file.cred_helpers.get(registry).or(file.creds_store.as_ref());
    if let Some(entry) = key.and_then(|k| file.auths[k].auth.as_ref()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(entry.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let pair = decoded.as_deref().and_then(|d| d.split_once(':'));
        let Some((user, password)) = pair else {
            anyhow::bail!(
                "registry auth file {}: the `auth` of {registry} is not base64 of USER:PASSWORD",
                path.display()
            );
        };
        return Ok(Some(RegistryAuth::Basic(user.to_owned(), password.to_owned())));
    }
    match helper {
        Some(helper) => helper_credentials(helper, registry).map(Some),
        None => Ok(None),
    }
}

/// Asks `docker-credential-HELPER get` for `registry`'s credentials.
fn helper_credentials(helper: &str, registry: &str) -> anyhow::Result<RegistryAuth> {
    use std::io::Write;
    let program = format!("docker-credential-{helper}");
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "the credential helper {program} (named by the registry auth file) cannot run: {e}"
            )
        })?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(registry.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!(
            "the credential helper {program} gave no credentials for {registry}: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    #[derive(Deserialize)]
    struct Reply {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let reply: Reply = serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow::anyhow!("the credential helper {program} answered something else: {e}"))?;
    Ok(match reply.username.as_str() {
        "<token>" => RegistryAuth::Bearer(reply.secret),
        _ => RegistryAuth::Basic(reply.username, reply.secret),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_and_podman_entries_are_found_by_registry() {
        let file: AuthFile = serde_json::from_str(
            r#"{"auths": {"https://reg.example:5000/v1/": {"auth": "YWxpY2U6czNjcjN0"}, "other": {"auth": "bm9wZQ=="}}}"#,
        )
        .unwrap();
        let path = std::path::Path::new("config.json");
        match lookup(&file, "reg.example:5000", path).unwrap() {
            Some(RegistryAuth::Basic(user, password)) => {
                assert_eq!((user.as_str(), password.as_str()), ("alice", "s3cr3t"))
            }
            other => panic!("{other:?}"),
        }
        assert!(lookup(&file, "reg.example", path).unwrap().is_none());
        let e = lookup(&file, "other", path).unwrap_err().to_string();
        assert!(e.contains("not base64 of USER:PASSWORD"), "{e}");
    }
}
