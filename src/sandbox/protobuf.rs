//! Decoding the Kubernetes protobuf encoding for the few objects kubectl's typed commands send
//! (`certificate approve/deny`, `auth whoami`, `create secret/configmap/namespace`), into the
//! JSON the rest of the sandbox works with. kubectl sends these as
//! `application/vnd.kubernetes.protobuf` and does not fall back to JSON.
//!
//! The envelope is the magic `k8s\0` followed by a `runtime.Unknown` message
//! (`typeMeta` = 1, `raw` = 2). Field numbers are those of `k8s.io/api/*/generated.proto`.

use base64::Engine;
use serde_json::{Map, Value, json};

/// The content type kubectl uses.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn next(&mut self) -> Option<Result<(u64, Field<'a>), String>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        Some((|| {
            let key = self.varint()?;
            let field = match key & 7 {
                0 => Field::Varint(self.varint()?),
                1 => {
                    self.pos += 8;
                    Field::Fixed
                }
                2 => {
                    let len = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
                    let end = self
                        .pos
                        .checked_add(len)
                        .filter(|e| *e <= self.buf.len())
                        .ok_or("truncated field")?;
                    let bytes = &self.buf[self.pos..end];
                    self.pos = end;
                    Field::Bytes(bytes)
                }
                5 => {
                    self.pos += 4;
                    Field::Fixed
                }
                w => return Err(format!("unsupported wire type {w}")),
            };
            if self.pos > self.buf.len() {
                return Err("truncated field".into());
            }
            Ok((key >> 3, field))
        })())
    }
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut r = Reader::new(buf);
    let mut out = Vec::new();
    while let Some(f) = r.next() {
        out.push(f?);
    }
    Ok(out)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A `map<string, X>` entry: key = 1, value = 2.
fn entry(b: &[u8]) -> Result<(String, Vec<u8>), String> {
    let mut k = String::new();
    let mut v = Vec::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(x)) => k = text(x),
            (2, Field::Bytes(x)) => v = x.to_vec(),
            _ => {}
        }
    }
    Ok((k, v))
}

/// `meta.v1.Time`: seconds = 1, nanos = 2. Go's zero time (what kubectl sends for a condition
/// time it leaves to the server) is "unset", as the JSON encoding omits it, not 1970.
fn time(b: &[u8]) -> Result<Value, String> {
    let mut secs = 0i64;
    for (n, f) in fields(b)? {
        if let (1, Field::Varint(v)) = (n, f) {
            secs = v as i64;
        }
    }
    // Go's zero time.Time is 0001-01-01T00:00:00Z: -62135596800 seconds from the Unix epoch.
    if secs == 0 || secs == -62_135_596_800 {
        return Ok(Value::Null);
    }
    Ok(json!(crate::pki::cert::fmt_unix(secs)))
}

/// `meta.v1.ObjectMeta`. Go writes every string field, empty ones too; JSON leaves empty ones
/// out (`omitempty`), so they are left out here as well.
fn object_meta(b: &[u8]) -> Result<Value, String> {
    let mut m = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    for (n, f) in fields(b)? {
        let Field::Bytes(x) = f else { continue };
        let key = match n {
            1 => "name",
            2 => "generateName",
            3 => "namespace",
            5 => "uid",
            6 => "resourceVersion",
            11 => {
                let (k, v) = entry(x)?;
                labels.insert(k, json!(text(&v)));
                continue;
            }
            12 => {
                let (k, v) = entry(x)?;
                annotations.insert(k, json!(text(&v)));
                continue;
            }
            _ => continue,
        };
        if !x.is_empty() {
            m.insert(key.into(), json!(text(x)));
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations));
    }
    Ok(Value::Object(m))
}

fn secret(b: &[u8]) -> Result<Value, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut obj = json!({"metadata": {}});
    let mut data = Map::new();
    let mut string_data = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(x)) => obj["metadata"] = object_meta(x)?,
            (2, Field::Bytes(x)) => {
                let (k, v) = entry(x)?;
                data.insert(k, json!(b64.encode(v)));
            }
            (3, Field::Bytes(x)) => obj["type"] = json!(text(x)),
            (4, Field::Bytes(x)) => {
                let (k, v) = entry(x)?;
                string_data.insert(k, json!(text(&v)));
            }
            (5, Field::Varint(v)) => obj["immutable"] = json!(v != 0),
            _ => {}
        }
    }
    if !data.is_empty() {
        obj["data"] = Value::Object(data);
    }
    if !string_data.is_empty() {
        obj["stringData"] = Value::Object(string_data);
    }
    Ok(obj)
}

fn config_map(b: &[u8]) -> Result<Value, String> {
    let mut obj = json!({"metadata": {}});
    let mut data = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(x)) => obj["metadata"] = object_meta(x)?,
            (2, Field::Bytes(x)) => {
                let (k, v) = entry(x)?;
                data.insert(k, json!(text(&v)));
            }
            _ => {}
        }
    }
    if !data.is_empty() {
        obj["data"] = Value::Object(data);
    }
    Ok(obj)
}

fn metadata_only(b: &[u8]) -> Result<Value, String> {
    let mut obj = json!({"metadata": {}});
    for (n, f) in fields(b)? {
        if let (1, Field::Bytes(x)) = (n, f) {
            obj["metadata"] = object_meta(x)?;
        }
    }
    Ok(obj)
}

fn csr_condition(b: &[u8]) -> Result<Value, String> {
    let mut c = Map::new();
    for (n, f) in fields(b)? {
        let Field::Bytes(x) = f else { continue };
        let (k, v) = match n {
            1 => ("type", json!(text(x))),
            2 => ("reason", json!(text(x))),
            3 => ("message", json!(text(x))),
            4 => ("lastUpdateTime", time(x)?),
            5 => ("lastTransitionTime", time(x)?),
            6 => ("status", json!(text(x))),
            _ => continue,
        };
        c.insert(k.into(), v);
    }
    Ok(Value::Object(c))
}

fn csr(b: &[u8]) -> Result<Value, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut obj = json!({"metadata": {}, "spec": {}, "status": {}});
    for (n, f) in fields(b)? {
        let Field::Bytes(x) = f else { continue };
        match n {
            1 => obj["metadata"] = object_meta(x)?,
            2 => {
                let mut usages = Vec::new();
                for (sn, sf) in fields(x)? {
                    match (sn, sf) {
                        (1, Field::Bytes(r)) => obj["spec"]["request"] = json!(b64.encode(r)),
                        (5, Field::Bytes(u)) => usages.push(json!(text(u))),
                        (7, Field::Bytes(s)) => obj["spec"]["signerName"] = json!(text(s)),
                        (8, Field::Varint(v)) => obj["spec"]["expirationSeconds"] = json!(v),
                        _ => {}
                    }
                }
                obj["spec"]["usages"] = json!(usages);
            }
            3 => {
                let mut conditions = Vec::new();
                for (sn, sf) in fields(x)? {
                    match (sn, sf) {
                        (1, Field::Bytes(c)) => conditions.push(csr_condition(c)?),
                        (2, Field::Bytes(c)) => obj["status"]["certificate"] = json!(b64.encode(c)),
                        _ => {}
                    }
                }
                obj["status"]["conditions"] = json!(conditions);
            }
            _ => {}
        }
    }
    Ok(obj)
}

/// The string fields of a message, by field number.
fn strings(b: &[u8], names: &[(u64, &str)]) -> Result<Value, String> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        if let (Field::Bytes(x), Some((_, name))) = (f, names.iter().find(|(k, _)| *k == n)) {
            m.insert((*name).into(), json!(text(x)));
        }
    }
    Ok(Value::Object(m))
}

/// `authorization.v1.SelfSubjectAccessReview` (`kubectl auth can-i`): spec = 2 with
/// resourceAttributes = 1 and nonResourceAttributes = 2.
fn access_review(b: &[u8]) -> Result<Value, String> {
    let mut obj = json!({"metadata": {}, "spec": {}});
    for (n, f) in fields(b)? {
        let Field::Bytes(x) = f else { continue };
        match n {
            1 => obj["metadata"] = object_meta(x)?,
            2 => {
                for (sn, sf) in fields(x)? {
                    let Field::Bytes(a) = sf else { continue };
                    match sn {
                        1 => {
                            obj["spec"]["resourceAttributes"] = strings(
                                a,
                                &[
                                    (1, "namespace"),
                                    (2, "verb"),
                                    (3, "group"),
                                    (4, "version"),
                                    (5, "resource"),
                                    (6, "subresource"),
                                    (7, "name"),
                                ],
                            )?
                        }
                        2 => {
                            obj["spec"]["nonResourceAttributes"] =
                                strings(a, &[(1, "path"), (2, "verb")])?
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(obj)
}

/// `authorization.v1.SelfSubjectRulesReview` (`kubectl auth can-i --list`): spec = 2 with
/// namespace = 1.
fn rules_review(b: &[u8]) -> Result<Value, String> {
    let mut obj = json!({"metadata": {}, "spec": {}});
    for (n, f) in fields(b)? {
        let Field::Bytes(x) = f else { continue };
        match n {
            1 => obj["metadata"] = object_meta(x)?,
            2 => obj["spec"] = strings(x, &[(1, "namespace")])?,
            _ => {}
        }
    }
    Ok(obj)
}

/// `authentication.v1.TokenRequest` (`kubectl create token`): spec = 2 with audiences = 1 and
/// expirationSeconds = 4.
fn token_request(b: &[u8]) -> Result<Value, String> {
    let mut obj = json!({"metadata": {}, "spec": {}});
    for (n, f) in fields(b)? {
        let Field::Bytes(x) = f else { continue };
        match n {
            1 => obj["metadata"] = object_meta(x)?,
            2 => {
                let mut audiences = Vec::new();
                for (sn, sf) in fields(x)? {
                    match (sn, sf) {
                        (1, Field::Bytes(a)) => audiences.push(json!(text(a))),
                        (4, Field::Varint(v)) => obj["spec"]["expirationSeconds"] = json!(v),
                        _ => {}
                    }
                }
                obj["spec"]["audiences"] = json!(audiences);
            }
            _ => {}
        }
    }
    Ok(obj)
}

/// Decodes a protobuf-encoded object of `kind` into its JSON form.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or("missing the k8s protobuf magic")?;
    let mut kind = String::new();
    let mut api_version = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(rest)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (tn, tf) in fields(tm)? {
                    match (tn, tf) {
                        (1, Field::Bytes(v)) => api_version = text(v),
                        (2, Field::Bytes(k)) => kind = text(k),
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    let mut obj = match kind.as_str() {
        "Secret" => secret(raw)?,
        "ConfigMap" => config_map(raw)?,
        "CertificateSigningRequest" => csr(raw)?,
        "Namespace" | "SelfSubjectReview" => metadata_only(raw)?,
        "SelfSubjectAccessReview" => access_review(raw)?,
        "SelfSubjectRulesReview" => rules_review(raw)?,
        "TokenRequest" => token_request(raw)?,
        other => {
            return Err(format!(
                "the sandbox cannot decode protobuf {other:?}; send JSON"
            ));
        }
    };
    obj["kind"] = json!(kind);
    obj["apiVersion"] = json!(api_version);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![((n << 3) | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn decodes_a_secret_envelope() {
        let meta = [field(1, b"s1"), field(3, b"kube-system")].concat();
        let data_entry = [field(1, b"k"), field(2, b"v")].concat();
        let raw = [field(1, &meta), field(2, &data_entry), field(3, b"Opaque")].concat();
        let type_meta = [field(1, b"v1"), field(2, b"Secret")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(v["metadata"]["name"], "s1");
        assert_eq!(v["metadata"]["namespace"], "kube-system");
        assert_eq!(v["data"]["k"], "dg==");
        assert_eq!(v["type"], "Opaque");
        assert!(
            decode(b"k8s\0\x0a\xff").is_err(),
            "truncated input is an error, not a panic"
        );
        assert!(decode(b"{}").is_err());
    }
}
