//! The trust policy: which keys a registry's plugins must be signed by.
//!
//! ```toml
//! version = 1
//!
//! [[trust]]
//! plugins = "registry.example/acme/*"   # REGISTRY/REPOSITORY, `/*`: anything beneath
//! keys = ["ed25519:…"]                  # one of these must have signed it
//!
//! [[trust]]
//! plugins = "127.0.0.1:5000/scratch/*"
//! unsigned = true                       # runs unsigned plugins (for trying things out)
//! ```
//!
//! A plugin is judged by the most specific rule that matches its name (the
//! longest pattern); one no rule matches is refused, as is one whose rule
//! lists keys and that none of them signed. Deny by default: no policy file
//! trusts nothing.

use super::digest::Digest;
use super::reference::PluginRef;
use super::signature::{PublicKey, Signatures, Untrusted};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Where the policy is, unless `--trust` or `STEPBACK_TRUST` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/stepback/trust.toml";

/// A trust policy, as read from its file.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    path: PathBuf,
    /// Whether the file exists (a missing one trusts nothing: said so).
    exists: bool,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: String,
    keys: Vec<PublicKey>,
    unsigned: bool,
    line: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    #[serde(default)]
    trust: Vec<RuleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    plugins: toml::Spanned<String>,
    #[serde(default)]
    keys: Vec<toml::Spanned<String>>,
    #[serde(default)]
    unsigned: bool,
}

/// How a plugin passed the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trusted {
    /// Signed by this key, which its rule trusts.
    Signed(PublicKey),
    /// Not signed by a trusted key, and its rule lets it run unsigned.
    Unsigned,
}

impl TrustPolicy {
    /// The policy at `path`; a missing file is a policy with no rules (it
    /// trusts nothing). `Err` says what is wrong with the file, and where.
    pub fn read(path: &Path) -> Result<TrustPolicy, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(TrustPolicy {
                    path: path.to_owned(),
                    exists: false,
                    rules: Vec::new(),
                });
            }
            Err(e) => return Err(format!("trust policy {}: {e}", path.display())),
        };
        let line_of = |span: std::ops::Range<usize>| text[..span.start].matches('\n').count() + 1;
        let at = |span: Option<std::ops::Range<usize>>| {
            format!("trust policy {}:{}", path.display(), span.map_or(1, line_of))
        };
        let file: File = toml::from_str(&text).map_err(|e| format!("{}: {}", at(e.span()), e.message()))?;
        if file.version != 1 {
            return Err(format!(
                "{}: version {} (this Stepback reads 1)",
                at(None),
                file.version
            ));
        }
        let mut rules = Vec::new();
        for rule in file.trust {
            let line = line_of(rule.plugins.span());
            let here = at(Some(rule.plugins.span()));
            let pattern = rule.plugins.into_inner();
            let mut keys = Vec::new();
            for key in rule.keys {
                let where_ = at(Some(key.span()));
                keys.push(PublicKey::parse(key.get_ref()).map_err(|e| format!("{where_}: {e}"))?);
            }
            if keys.is_empty() && !rule.unsigned {
                return Err(format!(
                    "{here}: the rule for {pattern:?} lists no keys: list the keys its plugins must be signed by, or say `unsigned = true`"
                ));
            }
            if !keys.is_empty() && rule.unsigned {
                return Err(format!(
                    "{here}: the rule for {pattern:?} lists keys and says `unsigned = true`, which would let anything run: say one or the other"
                ));
            }
            check_pattern(&pattern).map_err(|why| format!("{here}: {why}"))?;
            if let Some(first) = rules.iter().find(|r: &&Rule| r.pattern == pattern) {
                return Err(format!(
                    "{here}: a second rule for {pattern:?} (the first is at line {}): one rule per pattern",
                    first.line
                ));
            }
            rules.push(Rule {
                pattern,
                keys,
                unsigned: rule.unsigned,
                line,
            });
        }
        Ok(TrustPolicy {
            path: path.to_owned(),
            exists: true,
            rules,
        })
    }

    /// Whether some rule judges `reference`; `Err` says none does and how
    /// to add one. Asked before the registry is spoken to: a plugin no rule
    /// covers is never fetched.
    pub fn covers(&self, reference: &PluginRef) -> Result<(), String> {
        let name = reference.name();
        match (self.rule(&name), self.exists) {
            (Some(_), _) => Ok(()),
            (None, false) => Err(format!(
                "{reference} is not trusted: there is no trust policy at {} (without one, no registry plugin is); write one with a [[trust]] rule for {name:?} that lists the keys its plugins must be signed by (README: Using a published plugin)",
                self.path.display()
            )),
            (None, true) => Err(format!(
                "{reference} is not trusted: no rule of the trust policy ({}) covers {name}; add a [[trust]] rule with plugins = {name:?} and the keys its plugins must be signed by",
                self.path.display()
            )),
        }
    }

    /// The rule for `name` (`REGISTRY/REPOSITORY`): the longest pattern that matches.
    fn rule(&self, name: &str) -> Option<&Rule> {
        let matches = |p: &str| match p.strip_suffix("/*") {
            _ if p == "*" => true,
            Some(prefix) => name.starts_with(prefix) && name[prefix.len()..].starts_with('/'),
            None => p == name,
        };
        self.rules
            .iter()
            .filter(|r| matches(&r.pattern))
            .max_by_key(|r| r.pattern.len())
    }

    /// Whether `signatures` holds a signature by a key the rule for
    /// `reference` trusts that does not verify (the plugin or its signature
    /// altered), whatever else it holds.
    pub fn forged(&self, reference: &PluginRef, manifest: &Digest, signatures: &Signatures) -> bool {
        let Some(rule) = self.rule(&reference.name()) else {
            return false;
        };
        let verdict = signatures.verify(&reference.repository, manifest, &rule.keys);
        matches!(verdict, Err(Untrusted::Invalid(_)))
    }

    /// Whether the plugin `reference` (manifest `manifest`, signed as
    /// `signatures` says) may run; `Err` says why not and how to trust it.
    pub fn check(
        &self,
        reference: &PluginRef,
        manifest: &Digest,
        signatures: Option<&Signatures>,
    ) -> Result<Trusted, String> {
        self.covers(reference)?;
        let Some(rule) = self.rule(&reference.name()) else {
            unreachable!("covers found one")
        };
        let unsigned_doc = Signatures::new(&reference.repository, manifest);
        let verdict = signatures
            .unwrap_or(&unsigned_doc)
            .verify(&reference.repository, manifest, &rule.keys);
        let rule_at = format!(
            "the rule for {:?} ({}:{})",
            rule.pattern,
            self.path.display(),
            rule.line
        );
        match verdict {
            Ok(key) => Ok(Trusted::Signed(key)),
            Err(Untrusted::Invalid(keys)) => Err(format!(
                "{reference}: the signature by {} does not verify against {manifest}: the plugin or its signature was altered; refused",
                keys[0]
            )),
            Err(_) if rule.unsigned => Ok(Trusted::Unsigned),
            Err(Untrusted::Unsigned) => Err(format!(
                "{reference} is not signed, and {rule_at} requires a signature by one of: {}: its publisher signs it with their key",
                list(&rule.keys)
            )),
            Err(Untrusted::OtherKeys(keys)) => Err(format!(
                "{reference} is signed only by {}, which {rule_at} does not trust (it trusts: {}). To trust the signer, add its key to that rule's `keys`",
                keys.join(", "),
                list(&rule.keys)
            )),
        }
    }
}

/// A pattern that can match a plugin's name: `*`, `REGISTRY/…/*` or an
/// exact `REGISTRY/REPOSITORY`.
fn check_pattern(pattern: &str) -> Result<(), String> {
    let as_name = match pattern.strip_suffix("/*") {
        _ if pattern == "*" => return Ok(()),
        Some(prefix) => format!("{}{prefix}/x:t", super::reference::SCHEME),
        None => format!("{}{pattern}:t", super::reference::SCHEME),
    };
    match PluginRef::parse(&as_name) {
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "the pattern {pattern:?} matches no plugin: write REGISTRY/REPOSITORY, a prefix of one followed by /* (REGISTRY/acme/*), or *"
        )),
    }
}

fn list(keys: &[PublicKey]) -> String {
    match keys {
        [] => "no key".into(),
        keys => keys
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::super::signature::SecretKey;
    use super::*;

    fn policy(text: &str) -> Result<TrustPolicy, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.toml");
        std::fs::write(&path, text).unwrap();
        TrustPolicy::read(&path)
    }

    #[test]
    fn the_most_specific_rule_judges_and_nothing_is_trusted_by_default() {
        let key = SecretKey::generate().unwrap();
        let p = policy(&format!(
            "version = 1\n[[trust]]\nplugins = \"reg.example/acme/*\"\nkeys = [\"{}\"]\n[[trust]]\nplugins = \"reg.example/acme/dev/*\"\nunsigned = true\n",
            key.public()
        ))
        .unwrap();
        let manifest = Digest::of(b"m");
        let r = |t: &str| PluginRef::parse(t).unwrap();
        let mut signed = Signatures::new("acme/hello", &manifest);
        signed.add(key.sign("acme/hello", &manifest));
        assert_eq!(
            p.check(&r("oci://reg.example/acme/hello:1"), &manifest, Some(&signed)),
            Ok(Trusted::Signed(key.public()))
        );
        let unsigned = p
            .check(&r("oci://reg.example/acme/hello:1"), &manifest, None)
            .unwrap_err();
        assert!(
            unsigned.contains("is not signed") && unsigned.contains(":3)"),
            "{unsigned}"
        );
        assert_eq!(
            p.check(&r("oci://reg.example/acme/dev/x:1"), &manifest, None),
            Ok(Trusted::Unsigned)
        );
        let other = p
            .check(&r("oci://reg.example/acmeish/x:1"), &manifest, Some(&signed))
            .unwrap_err();
        assert!(
            other.contains("no rule") && other.contains("reg.example/acmeish/x"),
            "{other}"
        );
        // A trusted key's signature that does not verify is told from none.
        let mut altered = Signatures::new("acme/hello", &manifest);
        altered.add(key.sign("acme/hello", &Digest::of(b"another manifest")));
        let hello = r("oci://reg.example/acme/hello:1");
        assert!(p.forged(&hello, &manifest, &altered) && !p.forged(&hello, &manifest, &signed));
        let said = p.check(&hello, &manifest, Some(&altered)).unwrap_err();
        assert!(said.contains("does not verify"), "{said}");
        let none = TrustPolicy::read(Path::new("/nonexistent/trust.toml")).unwrap();
        assert!(
            none.check(&r("oci://reg.example/acme/hello:1"), &manifest, Some(&signed))
                .is_err()
        );
    }

    #[test]
    fn a_policy_that_is_not_right_is_refused_where_it_is_wrong() {
        let e = policy("version = 1\n[[trust]]\nplugins = \"a/*\"\nkeys = [\"ed25519:nope\"]\n").unwrap_err();
        assert!(
            e.contains("trust.toml:4") && e.contains("not a public key"),
            "{e}"
        );
        let e = policy("version = 1\n[[trust]]\nplugins = \"a/*\"\n").unwrap_err();
        assert!(e.contains("lists no keys"), "{e}");
        for (text, says) in [
            (
                "plugins = \"reg.example/a/*\"\nkeys = [\"KEY\"]\nunsigned = true",
                "one or the other",
            ),
            (
                "plugins = \"reg.example/*\"\nunsigned = true\n[[trust]]\nplugins = \"reg.example/*\"\nunsigned = true",
                "a second rule",
            ),
            (
                "plugins = \"oci://reg.example/a/*\"\nunsigned = true",
                "matches no plugin",
            ),
            (
                "plugins = \"reg.example/a-*\"\nunsigned = true",
                "matches no plugin",
            ),
            ("plugins = \"*/acme/*\"\nunsigned = true", "matches no plugin"),
        ] {
            let key = SecretKey::generate().unwrap().public().to_string();
            let e = policy(&format!(
                "version = 1\n[[trust]]\n{}\n",
                text.replace("KEY", &key)
            ))
            .unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        let e = policy("version = 1\n[[trust]]\nplugin = \"a/*\"\n").unwrap_err();
        assert!(e.contains("trust.toml:3") && e.contains("plugin"), "{e}");
    }
}
