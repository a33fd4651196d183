//! Field and label selectors on lists and watches. An unsupported field label is a 400, as
//! kube-apiserver answers (`field label not supported: …`), not an empty list.

#![allow(clippy::result_large_err)]

use serde_json::Value;

use super::http::{Reply, bad_request};
use super::resources::ResourceDef;
use super::validation::{label_value_ok, qualified_name_ok};

/// One `key=value` / `key!=value` term.
#[derive(Debug, Clone)]
struct FieldTerm {
    key: String,
    value: String,
    negated: bool,
}

/// How a label term tests a label.
#[derive(Debug, Clone)]
enum LabelOp {
    Eq(String),
    Ne(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    Absent,
}

/// The selectors of a list or watch.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    fields: Vec<FieldTerm>,
    labels: Vec<(String, LabelOp)>,
}

fn field_value<'a>(obj: &'a Value, key: &str) -> &'a str {
    let mut cur = obj;
    for part in key.split('.') {
        cur = &cur[part];
    }
    match cur {
        Value::String(s) => s,
        Value::Bool(true) => "true",
        Value::Bool(false) => "false",
        _ => "",
    }
}

fn parse_fields(def: &ResourceDef, text: &str) -> Reply<Vec<FieldTerm>> {
    let mut out = Vec::new();
    for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (key, value, negated) = if let Some((k, v)) = term.split_once("!=") {
            (k, v, true)
        } else if let Some((k, v)) = term.split_once("==") {
            (k, v, false)
        } else if let Some((k, v)) = term.split_once('=') {
            (k, v, false)
        } else {
            return Err(bad_request(&format!(
                "invalid field selector {term:?}: expected key=value"
            )));
        };
        let key = key.trim();
        if !def.supports_field(key) {
            return Err(bad_request(&format!("field label not supported: {key}")));
        }
        out.push(FieldTerm {
            key: key.into(),
            value: value.trim().into(),
            negated,
        });
    }
    Ok(out)
}

/// Splits on commas outside parentheses.
fn label_terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn set(text: &str) -> Vec<String> {
    text.trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn parse_labels(text: &str) -> Reply<Vec<(String, LabelOp)>> {
    let mut out = Vec::new();
    for term in label_terms(text) {
        let parsed = if let Some(k) = term.strip_prefix('!') {
            (k.trim().to_string(), LabelOp::Absent)
        } else if let Some((k, v)) = term.split_once(" notin ") {
            (k.trim().to_string(), LabelOp::NotIn(set(v)))
        } else if let Some((k, v)) = term.split_once(" in ") {
            (k.trim().to_string(), LabelOp::In(set(v)))
        } else if let Some((k, v)) = term.split_once("!=") {
            (k.trim().to_string(), LabelOp::Ne(v.trim().to_string()))
        } else if let Some((k, v)) = term.split_once("==") {
            (k.trim().to_string(), LabelOp::Eq(v.trim().to_string()))
        } else if let Some((k, v)) = term.split_once('=') {
            (k.trim().to_string(), LabelOp::Eq(v.trim().to_string()))
        } else {
            (term.trim().to_string(), LabelOp::Exists)
        };
        // `labels.Parse` checks each key and value as the object's labels are checked.
        let values: Vec<&String> = match &parsed.1 {
            LabelOp::Eq(v) | LabelOp::Ne(v) => vec![v],
            LabelOp::In(vs) | LabelOp::NotIn(vs) => vs.iter().collect(),
            LabelOp::Exists | LabelOp::Absent => Vec::new(),
        };
        if !qualified_name_ok(&parsed.0) || !values.iter().all(|v| label_value_ok(v)) {
            return Err(bad_request(&format!(
                "unable to parse requirement: invalid label selector {term:?}"
            )));
        }
        out.push(parsed);
    }
    Ok(out)
}

impl Selectors {
    /// Parses `fieldSelector` and `labelSelector` of a query for `def`.
    pub fn parse(def: &ResourceDef, query: &super::http::Query) -> Reply<Selectors> {
        Ok(Selectors {
            fields: match query.get("fieldSelector") {
                Some(f) => parse_fields(def, f)?,
                None => Vec::new(),
            },
            labels: match query.get("labelSelector") {
                Some(l) => parse_labels(l)?,
                None => Vec::new(),
            },
        })
    }

    /// Whether `obj` is selected.
    pub fn matches(&self, obj: &Value) -> bool {
        let fields_ok = self
            .fields
            .iter()
            .all(|t| (field_value(obj, &t.key) == t.value) != t.negated);
        let labels = &obj["metadata"]["labels"];
        let labels_ok = self.labels.iter().all(|(k, op)| {
            let v = labels[k].as_str();
            match op {
                LabelOp::Eq(want) => v == Some(want.as_str()),
                LabelOp::Ne(want) => v != Some(want.as_str()),
                LabelOp::In(set) => v.is_some_and(|v| set.iter().any(|s| s == v)),
                LabelOp::NotIn(set) => v.is_none_or(|v| !set.iter().any(|s| s == v)),
                LabelOp::Exists => v.is_some(),
                LabelOp::Absent => v.is_none(),
            }
        });
        fields_ok && labels_ok
    }

    /// The name a `metadata.name=` term pins the selection to, if any.
    pub fn pinned_name(&self) -> Option<&str> {
        self.fields
            .iter()
            .find(|t| t.key == "metadata.name" && !t.negated)
            .map(|t| t.value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(pairs: &[(&str, &str)]) -> super::super::http::Query {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_select_and_unknown_fields_are_refused() {
        let csr = super::super::resources::by_kind("CertificateSigningRequest").unwrap();
        let obj = json!({"metadata": {"name": "a", "labels": {"tier": "edge", "x": "1"}}, "spec": {"signerName": "kubernetes.io/kubelet-serving"}});
        let s = Selectors::parse(
            csr,
            &q(&[
                (
                    "fieldSelector",
                    "spec.signerName=kubernetes.io/kubelet-serving,metadata.name!=b",
                ),
                ("labelSelector", "tier in (edge,core),!missing,x"),
            ]),
        )
        .unwrap();
        assert!(s.matches(&obj));
        let s = Selectors::parse(csr, &q(&[("labelSelector", "tier notin (edge)")])).unwrap();
        assert!(!s.matches(&obj));
        let e = Selectors::parse(csr, &q(&[("fieldSelector", "spec.foo=bar")])).unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(
            Selectors::parse(csr, &q(&[("fieldSelector", "metadata.name=a")]))
                .unwrap()
                .pinned_name(),
            Some("a")
        );
    }
}
