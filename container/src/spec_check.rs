//! Reading a bundle's `config.json` strictly: malformed JSON, fields this
//! runtime does not know (and so would silently ignore) and a missing rootfs
//! are refused up front, before anything is created on the host.

use std::path::Path;

use libcontainer::oci_spec::runtime::Spec;
use serde_json::Value;

use crate::Error;

/// Loads and checks `<bundle>/config.json`.
pub fn load_bundle_spec(bundle: &Path) -> Result<Spec, Error> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|source| Error::ReadSpec {
        path: path.clone(),
        source,
    })?;
    let malformed = |source| Error::MalformedSpec {
        path: path.clone(),
        source,
    };
    let raw: Value = serde_json::from_slice(&text).map_err(malformed)?;
    // serde would read a struct from an array too; a config is an object.
    if !raw.is_object() {
        return Err(malformed(serde::de::Error::custom("not a JSON object")));
    }
    let spec: Spec = serde_json::from_value(raw.clone()).map_err(malformed)?;
    let known = serde_json::to_value(&spec).map_err(malformed)?;
    let mut fields = Vec::new();
    unknown_fields(&raw, &known, "", &mut fields);
    if !fields.is_empty() {
        return Err(Error::UnknownFields { path, fields });
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or(Error::MissingSpecField("root"))?;
    let rootfs = bundle.join(root.path());
    if !rootfs.is_dir() {
        return Err(Error::MissingRootfs(rootfs));
    }
    if spec.linux().is_none() {
        return Err(Error::MissingSpecField("linux"));
    }
    Ok(spec)
}

/// Collects the paths of keys present in `raw` that did not survive a round
/// trip through the typed spec. Explicit nulls count as absent.
fn unknown_fields(raw: &Value, known: &Value, at: &str, out: &mut Vec<String>) {
    match (raw, known) {
        (Value::Object(raw), Value::Object(known)) => {
            for (key, value) in raw {
                let path = format!("{at}/{key}");
                match known.get(key) {
                    Some(k) => unknown_fields(value, k, &path, out),
                    None if value.is_null() => {}
                    None => out.push(path),
                }
            }
        }
        (Value::Array(raw), Value::Array(known)) => {
            for (i, (r, k)) in raw.iter().zip(known).enumerate() {
                unknown_fields(r, k, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<Spec, Error> {
        let dir = std::env::temp_dir().join(format!(
            "isola-spec-check-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rootfs")).expect("temp bundle");
        std::fs::write(dir.join("config.json"), json).expect("write config");
        let result = load_bundle_spec(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    fn default_json() -> Value {
        serde_json::to_value(Spec::default()).expect("default spec serializes")
    }

    #[test]
    fn accepts_the_default_spec() {
        assert!(check(&default_json().to_string()).is_ok());
    }

    #[test]
    fn rejects_malformed_json() {
        assert!(matches!(
            check("{\"ociVersion\": "),
            Err(Error::MalformedSpec { .. })
        ));
        assert!(matches!(check("[]"), Err(Error::MalformedSpec { .. })));
    }

    #[test]
    fn names_unknown_fields() {
        let mut v = default_json();
        v["bogus"] = Value::from(1);
        v["process"]["alsoBogus"] = Value::from("x");
        v["process"]["nothing"] = Value::Null;
        match check(&v.to_string()) {
            Err(Error::UnknownFields { fields, .. }) => {
                assert_eq!(fields, vec!["/bogus", "/process/alsoBogus"]);
            }
            other => panic!("expected unknown fields, got {other:?}"),
        }
    }

    #[test]
    fn rejects_missing_rootfs() {
        let mut v = default_json();
        v["root"]["path"] = Value::from("no-such-dir");
        assert!(matches!(
            check(&v.to_string()),
            Err(Error::MissingRootfs(_))
        ));
    }
}
