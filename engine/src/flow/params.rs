//! `${name}` substitution of update parameters; `$${` writes a literal `${`.

use std::collections::BTreeMap;

/// The flow's parameters after `--param` overrides.
#[derive(Debug, Clone, Default)]
pub struct Params(pub BTreeMap<String, String>);

impl Params {
    /// Replaces every `${name}` in `text`; the error names what is wrong.
    pub fn substitute(&self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(escaped) = after.strip_prefix("${") {
                out.push_str("${");
                rest = escaped;
            } else if let Some(inner) = after.strip_prefix('{') {
                let end = inner
                    .find('}')
                    .ok_or_else(|| format!("unclosed `${{` in {text:?}"))?;
                let name = &inner[..end];
                let value = self.0.get(name).ok_or_else(|| {
                    let known: Vec<&str> = self.0.keys().map(String::as_str).collect();
                    format!(
                        "undefined parameter `${{{name}}}` in {text:?} {}",
                        super::unknown::known_ones(name, "declared", &known)
                    )
                })?;
                out.push_str(value);
                rest = &inner[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Every parameter and its value, sorted by name (what steps see).
    pub fn sorted(&self) -> Vec<(String, String)> {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params(BTreeMap::from([("release".to_string(), "1.5.0".to_string())]))
    }

    #[test]
    fn substitutes_escapes_and_leaves_lone_dollars() {
        let p = params();
        assert_eq!(p.substitute("/a/${release}/b").unwrap(), "/a/1.5.0/b");
        assert_eq!(
            p.substitute("$${release} costs $5").unwrap(),
            "${release} costs $5"
        );
    }

    #[test]
    fn undefined_and_unclosed_references_are_errors() {
        let p = params();
        let e = p.substitute("x-${relase}").unwrap_err();
        assert!(
            e.contains("undefined parameter `${relase}`") && e.contains("release"),
            "{e}"
        );
        assert!(p.substitute("${release").unwrap_err().contains("unclosed"));
    }
}
