//! A plugin in a registry, as a flow's `uses` names it:
//! `oci://REGISTRY/REPOSITORY:TAG` or `oci://REGISTRY/REPOSITORY@sha256:DIGEST`
//! (both, `:TAG@sha256:DIGEST`, pins the digest and keeps the tag for people).

use super::digest::Digest;
use std::fmt;

/// What marks a `uses` as a registry's.
pub const SCHEME: &str = "oci://";

/// A reference to a plugin in a registry, checked as the OCI distribution
/// spec spells names. There is no implicit `latest` and no default
/// registry: what runs is named in full.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PluginRef {
    /// `host`, `host:port` or `[v6]:port`.
    pub registry: String,
    /// `acme/hello`.
    pub repository: String,
    /// The tag, if named.
    pub tag: Option<String>,
    /// The manifest's digest, if named (it pins: the tag is then only a label).
    pub digest: Option<Digest>,
}

impl PluginRef {
    /// `Some` for a `uses` that names a registry (checked: `Err` says what
    /// is wrong), `None` for any other (`builtin:`, a file).
    pub fn from_uses(uses: &str) -> Option<Result<PluginRef, String>> {
        uses.strip_prefix(SCHEME)?;
        Some(PluginRef::parse(uses))
    }

    /// Parses `oci://…`; `Err` says what is wrong and how it is written.
    pub fn parse(text: &str) -> Result<PluginRef, String> {
        let bad = |why: String| {
            format!(
                "{text:?} is not a plugin reference: {why} (write oci://REGISTRY/REPOSITORY:TAG or oci://REGISTRY/REPOSITORY@sha256:DIGEST)"
            )
        };
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("it does not start with oci://".into()))?;
        let (rest, digest) = match rest.split_once('@') {
            Some((name, digest)) => (name, Some(Digest::parse(digest).map_err(bad)?)),
            None => (rest, None),
        };
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("it names no repository after the registry".into()))?;
        check_registry(registry).map_err(bad)?;
        // A tag follows the last `:` of the path (a port's is in the registry).
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) => (repo, Some(tag)),
            None => (path, None),
        };
        check_repository(repository).map_err(bad)?;
        if let Some(tag) = tag {
            check_tag(tag).map_err(bad)?;
        }
        if tag.is_none() && digest.is_none() {
            return Err(bad("it names neither a tag nor a digest".into()));
        }
        Ok(PluginRef {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// The same plugin pinned to `digest` (the tag kept as a label).
    pub fn pinned(&self, digest: &Digest) -> PluginRef {
        PluginRef {
            digest: Some(digest.clone()),
            ..self.clone()
        }
    }

    /// `REGISTRY/REPOSITORY`, what a trust rule matches.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The registry's host without its port.
    pub fn host(&self) -> &str {
        let r = self.registry.as_str();
        match r.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => r.split(':').next().unwrap_or(r),
        }
    }

    /// Whether the registry is this machine (spoken to over plain HTTP
    /// without being asked to: nothing crosses a network).
    pub fn is_loopback(&self) -> bool {
        let host = self.host();
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The client's reference: by digest when one is named, so that what
    /// arrives is what was asked for.
    pub(super) fn to_oci(&self) -> oci_client::Reference {
        let (reg, repo) = (self.registry.clone(), self.repository.clone());
        match (&self.digest, &self.tag) {
            (Some(d), _) => oci_client::Reference::with_digest(reg, repo, d.to_string()),
            (None, Some(t)) => oci_client::Reference::with_tag(reg, repo, t.clone()),
            (None, None) => unreachable!("parse refuses a reference with neither"),
        }
    }
}

impl fmt::Display for PluginRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = match registry.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((ip, port)) if ip.parse::<std::net::Ipv6Addr>().is_ok() => (ip, port.strip_prefix(':')),
            _ => {
                return Err(format!(
                    "the registry {registry:?} is not a bracketed IPv6 address"
                ));
            }
        },
        None => match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        },
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !host_ok && !registry.starts_with('[') {
        return Err(format!("the registry {registry:?} is not a host name"));
    }
    if let Some(port) = port
        && (port.parse::<u16>().is_err() || (port.len() > 1 && port.starts_with('0')))
    {
        return Err(format!(
            "the registry's port {port:?} is not a number up to 65535"
        ));
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` components joined by `/`.
fn check_repository(repository: &str) -> Result<(), String> {
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
        !b.is_empty()
            && b.first().is_some_and(alnum)
            && b.last().is_some_and(alnum)
            && b.iter().all(|x| alnum(x) || matches!(x, b'.' | b'_' | b'-'))
            && !c.contains("..")
            && !c.contains("___")
    };
    if repository.is_empty() {
        return Err("it names no repository after the registry".into());
    }
    match repository.split('/').find(|c| !component_ok(c)) {
        Some(c) => Err(format!(
            "the repository part {c:?} may hold only lowercase letters, digits and single separators (. _ -), starting and ending with a letter or digit"
        )),
        None if repository.len() > 255 => Err("the repository is longer than 255 characters".into()),
        None => Ok(()),
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'.' | b'_' | b'-'));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "the tag {tag:?} may hold only letters, digits, `.`, `_` and `-` (at most 128, not starting with `.` or `-`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_parsed_and_printed_back() {
        let d = Digest::of(b"x");
        for text in [
            "oci://127.0.0.1:5000/acme/hello:1.0".to_owned(),
            format!("oci://registry.example/acme/hello@{d}"),
            format!("oci://[::1]:5000/a/b/c:v2@{d}"),
            "oci://localhost/x_y.z-w:latest".to_owned(),
        ] {
            let r = PluginRef::parse(&text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.to_string(), text);
        }
        let r = PluginRef::parse("oci://127.0.0.1:5000/acme/hello:1.0").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "acme/hello")
        );
        assert!(r.is_loopback());
        assert!(PluginRef::parse("oci://[::1]:5000/a:b").unwrap().is_loopback());
        assert!(
            !PluginRef::parse("oci://registry.example/a:b")
                .unwrap()
                .is_loopback()
        );
    }

    #[test]
    fn malformed_references_say_what_is_wrong() {
        for (text, says) in [
            ("oci://registry.example/acme/hello", "neither a tag nor a digest"),
            ("oci://registry.example", "no repository"),
            ("oci://registry.example/Acme/hello:1", "\"Acme\""),
            ("oci://registry.example/acme/hello:-x", "the tag"),
            ("oci://registry.example/acme/hello@sha256:abc", "64 lowercase hex"),
            ("oci://reg_istry/acme:1", "not a host name"),
            ("oci://registry:99999/acme:1", "port"),
            ("oci://registry:05000/acme:1", "port"),
            ("oci://registry.example/acme//hello:1", "\"\""),
        ] {
            let e = PluginRef::parse(text).unwrap_err();
            assert!(
                e.contains(says) && e.contains("oci://REGISTRY/REPOSITORY:TAG"),
                "{text}: {e}"
            );
        }
        assert!(PluginRef::from_uses("builtin:write-file").is_none());
    }
}
