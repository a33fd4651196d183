//! An answer as the goldens hold it: the status code, a `Status`'s reason and its causes' fields,
//! and the fields of the object a client reads, with what differs run to run (uids,
//! resourceVersions, timestamps, certificates, the case's own names) replaced by stable
//! placeholders.

use serde_json::{Map, Value, json};

/// One step's normalized answer.
pub type Answer = Value;

/// The names a case made for itself, which the goldens hold as `{id}` and `{tokenid}`, and the
/// admin's user name, which the goldens hold as `{admin}` (kubeadm's `up` gives the real control
/// plane's admin `kubernetes-super-admin`, the sandbox calls its own `kubernetes-admin`).
pub struct Names {
    /// `conf-NNN-xxxx`: the case's objects are named after it.
    pub id: String,
    /// Six characters, for a bootstrap token's id (`bootstrap-token-{tokenid}`).
    pub tokenid: String,
    /// The user name the `admin` identity authenticates as.
    pub admin: String,
}

impl Names {
    /// `s` with the case's own names replaced by their placeholders.
    pub fn mask(&self, s: &str) -> String {
        s.replace(&self.id, "{id}")
            .replace(&self.tokenid, "{tokenid}")
            .replace(&self.admin, "{admin}")
    }
}

/// The answer to a plain request.
pub fn of_response(
    code: u16,
    content_type: &str,
    bytes: &[u8],
    read: &[String],
    names: &Names,
) -> Answer {
    let mut a = Map::new();
    a.insert("code".into(), json!(code));
    let Ok(body) = serde_json::from_slice::<Value>(bytes) else {
        a.insert("text".into(), json!(text_summary(content_type, bytes)));
        return Value::Object(a);
    };
    if body["kind"] == "Status" {
        a.insert("reason".into(), body["reason"].clone());
        let mut causes: Vec<String> = body["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{}: {}",
                    c["field"].as_str().unwrap_or_default(),
                    c["reason"].as_str().unwrap_or_default()
                )
            })
            .collect();
        causes.sort();
        causes.dedup();
        if !causes.is_empty() {
            a.insert("causes".into(), json!(causes));
        }
        if code < 300 {
            a.insert("read".into(), reads(&body, read, names));
        }
    } else {
        a.insert("read".into(), reads(&body, read, names));
    }
    Value::Object(a)
}

/// The answer to a watch: its events' types and read fields, or the refusal.
pub fn of_watch(
    events: Result<Vec<Value>, (u16, Vec<u8>)>,
    read: &[String],
    names: &Names,
) -> Answer {
    match events {
        Err((code, bytes)) => of_response(code, "application/json", &bytes, &[], names),
        Ok(events) => {
            let events: Vec<Value> = events
                .iter()
                .map(|e| json!({"type": e["type"], "read": reads(e, read, names)}))
                .collect();
            json!({"code": 200, "events": events})
        }
    }
}

/// Short text answers as they are (`ok`), long ones by size class only.
fn text_summary(content_type: &str, bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let kind = content_type.split(';').next().unwrap_or_default();
    match text.lines().count() {
        // A health check's verbose list: its checks are each server's own, its verdict is not.
        n if n > 1 => format!(
            "<{kind} text ending {:?}>",
            text.lines().last().unwrap_or_default()
        ),
        _ if text.len() <= 64 => text.to_string(),
        _ => format!("<{kind} text>"),
    }
}

fn reads(body: &Value, read: &[String], names: &Names) -> Value {
    let mut out = Map::new();
    for path in read {
        let v = match read_path(body, path, names) {
            Some(v) => normalize(v, last_key(path), names),
            None => json!("<absent>"),
        };
        out.insert(path.clone(), v);
    }
    Value::Object(out)
}

fn last_key(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Reads `path` from `v`: dotted keys; `['a.b']` a key with dots; `[*]` every element;
/// `[k=v]` the first element whose `k` is `v`; `[mine]` the list items named after the case;
/// a last segment `@keys`, `@len`, `@present` or `@sorted`.
pub fn read_path(v: &Value, path: &str, names: &Names) -> Option<Value> {
    let segments = split(path);
    if segments.last().is_some_and(|s| s == "@present") {
        let found = eval(v, &segments[..segments.len() - 1], names).is_some();
        return Some(json!(found));
    }
    eval(v, &segments, names)
}

fn split(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for ch in path.chars() {
        match ch {
            '[' if depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                depth = 1;
                cur.push('[');
            }
            ']' if depth == 1 => {
                cur.push(']');
                out.push(std::mem::take(&mut cur));
                depth = 0;
            }
            '.' if depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn eval(v: &Value, segs: &[String], names: &Names) -> Option<Value> {
    let Some((seg, rest)) = segs.split_first() else {
        return Some(v.clone());
    };
    if let Some(inner) = seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        if let Some(key) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
            return eval(v.get(key)?, rest, names);
        }
        let items = v.as_array()?;
        return match inner {
            "*" => Some(Value::Array(
                items.iter().filter_map(|i| eval(i, rest, names)).collect(),
            )),
            "mine" => Some(Value::Array(
                items
                    .iter()
                    .filter(|i| {
                        i["metadata"]["name"]
                            .as_str()
                            .is_some_and(|n| n.contains(&names.id))
                    })
                    .filter_map(|i| eval(i, rest, names))
                    .collect(),
            )),
            filter => {
                let (k, want) = filter.split_once('=')?;
                let hit = items.iter().find(|i| {
                    let field = eval(i, &split(k), names);
                    field.as_ref().and_then(Value::as_str) == Some(want)
                })?;
                eval(hit, rest, names)
            }
        };
    }
    match seg.as_str() {
        "@keys" => {
            let mut keys: Vec<&String> = v.as_object()?.keys().collect();
            keys.sort();
            Some(json!(keys))
        }
        "@len" => Some(json!(
            v.as_array().map(Vec::len).or(v.as_object().map(Map::len))?
        )),
        "@sorted" => {
            let mut items = v.as_array()?.clone();
            items.sort_by_key(|i| i.to_string());
            Some(Value::Array(items))
        }
        key => eval(v.get(key)?, rest, names),
    }
}

/// `v` with what differs run to run replaced; `key` is the field `v` was read from.
fn normalize(v: Value, key: &str, names: &Names) -> Value {
    match v {
        Value::String(s) => Value::String(normalize_str(&s, key, names)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|i| normalize(i, key, names))
                .collect(),
        ),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let nv = normalize(v, &k, names);
                    (names.mask(&k), nv)
                })
                .collect(),
        ),
        other => other,
    }
}

fn normalize_str(s: &str, key: &str, names: &Names) -> String {
    match key {
        "uid" => return "<uid>".into(),
        "resourceVersion" => return "<rv>".into(),
        "certificate" => return certificate_summary(s),
        "request" => return "<csr>".into(),
        _ => {}
    }
    if s.starts_with("X509SHA256=") {
        return "X509SHA256=<the client certificate's hash>".into();
    }
    if let Some(kind) = time_kind(s) {
        return kind.into();
    }
    names.mask(s)
}

/// `<time>` for RFC 3339 seconds, `<microtime>` for the fractional form (Leases' MicroTime).
fn time_kind(s: &str) -> Option<&'static str> {
    static TIME: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = TIME.get_or_init(|| {
        regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
            .unwrap()
    });
    let c = re.captures(s)?;
    Some(if c.get(1).is_some() {
        "<microtime>"
    } else {
        "<time>"
    })
}

/// An issued certificate by what a node checks in it: subject and extended key usages.
fn certificate_summary(b64: &str) -> String {
    use base64::Engine;
    let Ok(pem) = base64::engine::general_purpose::STANDARD.decode(b64) else {
        return "<not base64>".into();
    };
    let Ok(ders) = bootlet::pki::parse_certs_pem(&pem, "certificate") else {
        return "<not a certificate>".into();
    };
    let Ok(info) = bootlet::pki::cert::CertInfo::parse(&ders[0]) else {
        return "<not a certificate>".into();
    };
    let mut usages = Vec::new();
    if info.client_auth {
        usages.push("client");
    }
    if info.server_auth {
        usages.push("server");
    }
    format!(
        "<certificate CN={} O={} DNS={} IP={} {}>",
        info.common_names.join(","),
        info.organizations.join(","),
        info.dns_names.join(","),
        info.ip_addresses
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(","),
        usages.join("+")
    )
}
