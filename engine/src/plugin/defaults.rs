//! The defaults a plugin's config schema declares, applied to a step's
//! `with` table before the plugin sees it: a Rust plugin fills its own
//! through serde, but a plugin in another language gets only the keys the
//! flow wrote unless the host fills in the rest. And the keys it knows,
//! for naming the one an unknown key was meant to be.
//!
//! Followed: `properties` (and nested objects), local `$ref`s (`#/$defs/…`,
//! `#/definitions/…`), `allOf`, and a `oneOf`/`anyOf` whose one matching
//! branch is told by its `const` properties (a tagged enum's tag).

use serde_json::{Map, Value};

/// Fills in, in `config`, every key that `schema` gives a default for and
/// `config` lacks.
pub fn apply(schema: &Value, config: &mut Value) {
    fill(schema, schema, config, 0);
}

/// Every default `schema` declares, as (dotted key path, value), for
/// showing what a plugin assumes.
pub fn list(schema: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    collect(schema, schema, "", &mut out, 0);
    out
}

/// Deep enough for any real config; a schema that refers to itself ends.
const MAX_DEPTH: usize = 32;

fn resolve<'s>(root: &'s Value, schema: &'s Value) -> &'s Value {
    let mut schema = schema;
    for _ in 0..MAX_DEPTH {
        let Some(target) = schema.get("$ref").and_then(Value::as_str) else {
            break;
        };
        let Some(found) = target.strip_prefix('#').and_then(|p| root.pointer(p)) else {
            break;
        };
        schema = found;
    }
    schema
}

/// The schemas that apply to `config`: the schema itself, its `allOf`
/// parts, and the one `oneOf`/`anyOf` branch whose tags match (every
/// branch, for listing, without a config).
fn parts<'s>(root: &'s Value, schema: &'s Value, config: Option<&Map<String, Value>>) -> Vec<&'s Value> {
    let schema = resolve(root, schema);
    let mut out = vec![schema];
    for part in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(resolve(root, part));
    }
    for key in ["oneOf", "anyOf"] {
        let Some(branches) = schema.get(key).and_then(Value::as_array) else {
            continue;
        };
        let branches = branches.iter().map(|b| resolve(root, b));
        let Some(config) = config else {
            out.extend(branches);
            continue;
        };
        let matching: Vec<&Value> = branches.filter(|b| tags_match(root, b, config)).collect();
        if let [one] = matching[..] {
            out.push(one);
        }
    }
    out
}

/// Whether every `const` property of `branch` has that value in `config`.
fn tags_match(root: &Value, branch: &Value, config: &Map<String, Value>) -> bool {
    let Some(properties) = branch.get("properties").and_then(Value::as_object) else {
        return false;
    };
    let mut tagged = false;
    for (key, property) in properties {
        if let Some(tag) = resolve(root, property).get("const") {
            tagged = true;
            if config.get(key) != Some(tag) {
                return false;
            }
        }
    }
    tagged
}

/// A property's default: beside its `$ref` (as schemars writes a field
/// whose type is defined apart), or in what it refers to.
fn default_of<'s>(root: &'s Value, property: &'s Value) -> Option<&'s Value> {
    property
        .get("default")
        .or_else(|| resolve(root, property).get("default"))
}

fn fill(root: &Value, schema: &Value, config: &mut Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let Value::Object(map) = config else { return };
    for part in parts(root, schema, Some(map)) {
        for (key, property) in part
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            match map.get_mut(key) {
                Some(value) => fill(root, property, value, depth + 1),
                None => {
                    if let Some(default) = default_of(root, property) {
                        map.insert(key.clone(), default.clone());
                    }
                }
            }
        }
    }
}

/// The keys `schema` (within `root`, for its `$ref`s) lets the object
/// `config` have, found as its defaults are: the properties of the schema
/// and its `allOf` parts, and of the `oneOf`/`anyOf` branch `config`'s
/// tags pick (of every branch where no tag picks one). `None` where a part
/// takes keys it does not name (no `additionalProperties: false`, or
/// `patternProperties`): then no key is unknown.
pub fn known_keys(root: &Value, schema: &Value, config: &Map<String, Value>) -> Option<Vec<String>> {
    let schema = resolve(root, schema);
    let unpicked = parts(root, schema, None);
    let mut picked = parts(root, schema, Some(config));
    let own = 1 + schema.get("allOf").and_then(Value::as_array).map_or(0, Vec::len);
    if picked.len() == own {
        picked = unpicked;
    }
    let named: Vec<&Value> = picked
        .into_iter()
        .filter(|part| part.get("properties").is_some())
        .collect();
    let closed = named.iter().all(|part| {
        part.get("additionalProperties") == Some(&Value::Bool(false))
            && part.get("patternProperties").is_none()
    });
    if named.is_empty() || !closed {
        return None;
    }
    let mut keys: Vec<String> = named
        .iter()
        .filter_map(|part| part.get("properties").and_then(Value::as_object))
        .flat_map(|m| m.keys().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    Some(keys)
}

/// The tag of `schema`'s `oneOf`/`anyOf` (within `root`) whose every branch
/// is told apart by the same `const` property, as a tagged enum's are: its
/// key, and the value each branch takes.
pub fn tag(root: &Value, schema: &Value) -> Option<(String, Vec<String>)> {
    let schema = resolve(root, schema);
    let branches = ["oneOf", "anyOf"]
        .iter()
        .find_map(|k| schema.get(*k)?.as_array())?;
    let mut key: Option<&String> = None;
    let mut values = Vec::new();
    for branch in branches {
        let properties = resolve(root, branch).get("properties")?.as_object()?;
        let (k, value) = properties
            .iter()
            .find_map(|(k, p)| Some((k, resolve(root, p).get("const")?.as_str()?)))?;
        if *key.get_or_insert(k) != k {
            return None;
        }
        values.push(value.to_owned());
    }
    Some((key?.clone(), values))
}

/// A step from a value into one inside it.
pub enum Inside<'a> {
    /// The value of this key of an object.
    Key(&'a str),
    /// An item of an array.
    Item,
}

/// The schema of the value at `path` within `root`'s instance.
pub fn schema_at<'s, 'p>(root: &'s Value, path: impl IntoIterator<Item = Inside<'p>>) -> Option<&'s Value> {
    let mut here = resolve(root, root);
    for step in path {
        let next = match step {
            Inside::Key(key) => here.get("properties")?.get(key)?,
            Inside::Item => here.get("items")?,
        };
        here = resolve(root, next);
    }
    Some(here)
}

fn collect(root: &Value, schema: &Value, prefix: &str, out: &mut Vec<(String, Value)>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    for part in parts(root, schema, None) {
        for (key, property) in part
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            if let Some(default) = default_of(root, property) {
                out.push((path.clone(), default.clone()));
            }
            collect(root, property, &path, out, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "$defs": {
                "Mode": {"type": "string", "enum": ["auto", "copy"]},
                "Retry": {"type": "object", "properties": {
                    "times": {"type": "integer", "default": 3},
                    "delay": {"type": "string", "default": "1s"},
                }},
            },
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "append": {"type": "boolean", "default": false},
                "retry": {"$ref": "#/$defs/Retry"},
                "mode": {"$ref": "#/$defs/Mode", "default": "auto"},
            },
        })
    }

    #[test]
    fn missing_keys_get_their_defaults_and_given_ones_stay() {
        let mut config = json!({"path": "/x", "append": true, "retry": {"times": 5}});
        apply(&schema(), &mut config);
        assert_eq!(
            config,
            json!({"path": "/x", "append": true, "mode": "auto", "retry": {"times": 5, "delay": "1s"}})
        );
    }

    #[test]
    fn the_keys_known_are_those_of_the_branch_the_tags_pick_or_of_every_branch() {
        let closed =
            |props: Value| json!({"type": "object", "properties": props, "additionalProperties": false});
        let schema = json!({"oneOf": [
            closed(json!({"mode": {"const": "echo"}, "greeting": {}})),
            closed(json!({"mode": {"const": "spin"}, "speed": {}})),
        ]});
        let keys = |config: Value| known_keys(&schema, &schema, config.as_object().unwrap());
        assert_eq!(
            keys(json!({"mode": "spin"})),
            Some(vec!["mode".into(), "speed".into()])
        );
        assert_eq!(
            keys(json!({"mode": "other"})),
            Some(vec!["greeting".into(), "mode".into(), "speed".into()])
        );
        let open = json!({"oneOf": [closed(json!({"a": {}})), {"type": "object", "properties": {"b": {}}}]});
        assert_eq!(
            known_keys(&open, &open, &Map::new()),
            None,
            "a branch takes any key"
        );
        let mut patterned = closed(json!({"a": {}}));
        patterned["patternProperties"] = json!({"^x-": {}});
        assert_eq!(
            known_keys(&patterned, &patterned, &Map::new()),
            None,
            "x-… keys are taken"
        );
        let nested = json!({"properties": {"retry": {"$ref": "#/$defs/R"}}, "$defs": {"R": closed(json!({"times": {}}))}});
        let at = schema_at(&nested, [Inside::Key("retry")]).unwrap();
        assert_eq!(known_keys(&nested, at, &Map::new()), Some(vec!["times".into()]));
    }

    #[test]
    fn a_tagged_enum_has_one_tag_and_a_value_per_variant() {
        let schema = json!({"oneOf": [
            {"properties": {"mode": {"const": "echo"}}},
            {"properties": {"mode": {"type": "string", "const": "spin"}, "speed": {}}},
        ]});
        assert_eq!(
            tag(&schema, &schema),
            Some(("mode".into(), vec!["echo".into(), "spin".into()]))
        );
        let untagged =
            json!({"oneOf": [{"properties": {"mode": {"const": "echo"}}}, {"properties": {"a": {}}}]});
        assert_eq!(tag(&untagged, &untagged), None);
    }

    #[test]
    fn a_tagged_variant_gets_the_defaults_of_its_own_branch() {
        let schema = json!({"oneOf": [
            {"type": "object", "properties": {"mode": {"const": "echo"}, "greeting": {"default": "hello"}}},
            {"type": "object", "properties": {"mode": {"const": "spin"}, "speed": {"default": 9}}},
        ]});
        let mut echo = json!({"mode": "echo"});
        apply(&schema, &mut echo);
        assert_eq!(echo, json!({"mode": "echo", "greeting": "hello"}));
        let mut unknown = json!({"mode": "other"});
        apply(&schema, &mut unknown);
        assert_eq!(unknown, json!({"mode": "other"}));
        // Listed, every branch's.
        assert_eq!(
            list(&schema),
            [("greeting".into(), json!("hello")), ("speed".into(), json!(9))]
        );
    }

    #[test]
    fn defaults_are_listed_by_their_key_path() {
        let listed = list(&schema());
        assert!(listed.contains(&("append".into(), json!(false))));
        assert!(listed.contains(&("retry.delay".into(), json!("1s"))));
        assert!(listed.contains(&("mode".into(), json!("auto"))));
    }

    #[test]
    fn a_schema_that_refers_to_itself_ends() {
        let schema = json!({"$defs": {"Node": {"type": "object", "properties": {
            "next": {"$ref": "#/$defs/Node"}, "weight": {"default": 1}}}},
            "$ref": "#/$defs/Node"});
        let mut config = json!({"next": {"next": {}}});
        apply(&schema, &mut config);
        assert_eq!(
            config,
            json!({"weight": 1, "next": {"weight": 1, "next": {"weight": 1}}})
        );
        assert!(list(&schema).len() > 1);
    }
}
