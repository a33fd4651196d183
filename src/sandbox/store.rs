//! The sandbox's object store: JSON objects keyed by resource, namespace and name, one global
//! resourceVersion counter, and an event history that watches replay from any recent
//! resourceVersion (older ones get 410 Gone, as from etcd compaction).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Weak};

use serde_json::{Value, json};
use std::collections::HashMap;

use tokio::sync::{broadcast, mpsc};

/// How many events the history keeps for watch replay; an older resourceVersion gets 410 Gone and
/// the client relists, as from kube-apiserver's watch cache (`--default-watch-cache-size`, 100 per
/// resource there). Each event holds its object, so this bounds the sandbox's memory in a storm.
pub const HISTORY: usize = 4_096;

/// The most bytes of objects (as JSON) the history keeps: a node patching its own status with
/// large objects would otherwise hold 4,096 of them. Past it, the oldest events go (410 Gone for a
/// watch from before them), as the watch cache's capacity bounds kube-apiserver.
pub const HISTORY_BYTES: usize = 8 * 1024 * 1024;

/// How many events a watch pinned to one object may have waiting; a watcher that lets more pile
/// up is dropped (its watch ends and the client resumes), as kube-apiserver ends slow watchers.
pub const NAMED_QUEUE: usize = 8;

/// (resource plural, namespace or "", name).
pub type Key = (String, String, String);

/// A change.
#[derive(Debug, Clone)]
pub struct Event {
    /// The resourceVersion this change produced.
    pub rv: u64,
    /// `ADDED`, `MODIFIED`, `DELETED`.
    pub kind: &'static str,
    /// Resource plural.
    pub resource: String,
    /// Namespace or "".
    pub namespace: String,
    /// The object's name: a watch pinned to one object compares it without reading the object.
    pub name: String,
    /// The object after the change (before, for deletions). Shared: every watch receives every
    /// event, and a deep copy per watch would make a storm quadratic in memory traffic.
    pub object: Arc<Value>,
    /// The object's size as JSON, for the history's byte budget.
    pub size: usize,
}

/// The store.
pub struct Store {
    rv: u64,
    /// Shared with the events that carry them: a change stores one copy, not one per event, and
    /// a read (authentication, authorization, the controllers) takes a reference, not a copy.
    objects: BTreeMap<Key, Arc<Value>>,
    /// Events are shared between the history, the broadcast and the pinned watches: one
    /// allocation per change, and a channel slot of one pointer.
    history: VecDeque<Arc<Event>>,
    /// The JSON bytes of the objects the history holds.
    history_bytes: usize,
    /// Whether the history has dropped events (an older resourceVersion is then 410 Gone).
    history_trimmed: bool,
    /// Every event, to the controllers and the unpinned watches: weak, so that what the history
    /// has let go (its byte budget) is not held by the channel's ring as well; a receiver that
    /// finds an event gone has fallen behind.
    tx: broadcast::Sender<Weak<Event>>,
    /// Watches pinned to one object (`fieldSelector=metadata.name=…`, how a node waits for its
    /// CSR), by (resource, name): they hear only that object's events. Through the broadcast,
    /// a thousand waiting nodes would each wake for every node's events.
    named: HashMap<(String, String), Vec<mpsc::Sender<Arc<Event>>>>,
}

/// What a watch hears: every event of the store, or only one object's.
pub enum Subscription {
    /// Every event (filtered by the watch).
    All(broadcast::Receiver<Weak<Event>>),
    /// The events of one object.
    Named(mpsc::Receiver<Arc<Event>>),
}

impl Subscription {
    /// The next event; `None` when the watch fell behind (it ends, and the client resumes from
    /// its last resourceVersion) or the store is gone.
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        match self {
            Subscription::All(rx) => rx.recv().await.ok()?.upgrade(),
            Subscription::Named(rx) => rx.recv().await,
        }
    }
}

/// Failure of a store operation, mapped to a Status by the API layer.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreError {
    /// 404.
    NotFound,
    /// 409 AlreadyExists.
    AlreadyExists,
    /// 409 Conflict (stale resourceVersion).
    Conflict,
    /// The object is larger than etcd takes (`--max-request-bytes` of etcd, 1.5 MiB).
    TooLarge,
}

/// The largest object etcd stores by default (1.5 MiB).
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;

fn too_large(obj: &Value) -> bool {
    json_size(obj) > MAX_OBJECT_BYTES
}

/// The bytes `obj` serializes to as JSON, counted without keeping them.
fn json_size(obj: &Value) -> usize {
    /// Counts the bytes the object serializes to without keeping them: every write is measured.
    struct Counted(usize);
    impl std::io::Write for Counted {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counted = Counted(0);
    let _ = serde_json::to_writer(&mut counted, obj);
    counted.0
}

/// RFC 3339 seconds, as Kubernetes writes timestamps.
pub fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn uid() -> String {
    let mut b = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        let (tx, _) = broadcast::channel(4096);
        Store {
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_bytes: 0,
            history_trimmed: false,
            tx,
            named: HashMap::new(),
        }
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Subscribes to every future event (the controllers).
    pub fn subscribe(&self) -> broadcast::Receiver<Weak<Event>> {
        self.tx.subscribe()
    }

    /// Subscribes a watch to future events: of the object `name` of `resource` only, when given.
    pub fn subscribe_watch(&mut self, resource: &str, name: Option<&str>) -> Subscription {
        match name {
            None => Subscription::All(self.tx.subscribe()),
            Some(name) => {
                let (tx, rx) = mpsc::channel(NAMED_QUEUE);
                self.named
                    .entry((resource.to_string(), name.to_string()))
                    .or_default()
                    .push(tx);
                Subscription::Named(rx)
            }
        }
    }

    /// Events after `rv` for `resource` (of the object `name` only, when given), or `None` when
    /// `rv` is older than the history. A node waiting for its CSR resumes from the version its
    /// create returned, and in a storm every other node's events follow it: the name is compared
    /// before anything else so that replaying them is a string comparison each.
    pub fn events_since(
        &self,
        rv: u64,
        resource: &str,
        name: Option<&str>,
    ) -> Option<Vec<Arc<Event>>> {
        if let Some(oldest) = self.history.front()
            && rv + 1 < oldest.rv
            && self.history_trimmed
        {
            return None;
        }
        // The history is in resourceVersion order: start at the first newer event instead of
        // walking all of it (a watch from a recent version is the common case).
        let first = self.history.partition_point(|e| e.rv <= rv);
        Some(
            self.history
                .range(first..)
                .filter(|e| e.resource == resource && name.is_none_or(|n| e.name == n))
                .cloned()
                .collect(),
        )
    }

    /// An object (shared; `Arc::unwrap_or_clone` for a copy to change).
    pub fn get(&self, resource: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(&(resource.into(), ns.into(), name.into()))
            .cloned()
    }

    /// Objects of a resource, in one namespace or all (""), in key order.
    pub fn list(&self, resource: &str, ns: &str) -> Vec<Value> {
        self.range(resource, ns, None)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Objects of a resource (one namespace or all) after `after`, in key order, without
    /// walking the other resources: the store is ordered by (resource, namespace, name).
    pub fn range<'a>(
        &'a self,
        resource: &'a str,
        ns: &'a str,
        after: Option<&Key>,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        use std::ops::Bound;
        let start: Key = (resource.to_string(), ns.to_string(), String::new());
        let lower = match after {
            Some(k) if *k >= start => Bound::Excluded(k.clone()),
            _ => Bound::Included(start),
        };
        self.objects
            .range((lower, Bound::Unbounded))
            .take_while(move |((r, n, _), _)| r == resource && (ns.is_empty() || n == ns))
            .map(|(k, v)| (k, &**v))
    }

    /// How many objects of `resource` are stored.
    pub fn count(&self, resource: &str) -> usize {
        self.range(resource, "", None).count()
    }

    fn emit(&mut self, kind: &'static str, resource: &str, ns: &str, object: Arc<Value>) {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ev = Arc::new(Event {
            rv: self.rv,
            kind,
            resource: resource.into(),
            namespace: ns.into(),
            name,
            size: json_size(&object),
            object,
        });
        self.history_bytes += ev.size;
        self.history.push_back(ev.clone());
        while self.history.len() > HISTORY
            || (self.history_bytes > HISTORY_BYTES && self.history.len() > 1)
        {
            let Some(old) = self.history.pop_front() else {
                break;
            };
            self.history_bytes -= old.size;
            self.history_trimmed = true;
        }
        let key = (ev.resource.clone(), ev.name.clone());
        if let Some(watchers) = self.named.get_mut(&key) {
            // A full queue is a watcher that does not read: it is dropped, not waited for.
            watchers.retain(|w| w.try_send(ev.clone()).is_ok());
            if watchers.is_empty() {
                self.named.remove(&key);
            }
        }
        let _ = self.tx.send(Arc::downgrade(&ev));
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Creates an object, filling uid, resourceVersion and creationTimestamp.
    pub fn create(
        &mut self,
        resource: &str,
        ns: &str,
        mut obj: Value,
    ) -> Result<Arc<Value>, StoreError> {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key = (resource.to_string(), ns.to_string(), name);
        if self.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists);
        }
        if too_large(&obj) {
            return Err(StoreError::TooLarge);
        }
        let rv = self.next_rv();
        let meta = obj["metadata"].as_object_mut().expect("metadata object");
        meta.insert("uid".into(), json!(uid()));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("creationTimestamp".into(), json!(timestamp()));
        if !ns.is_empty() {
            meta.insert("namespace".into(), json!(ns));
        }
        let obj = Arc::new(obj);
        self.objects.insert(key, obj.clone());
        self.emit("ADDED", resource, ns, obj.clone());
        Ok(obj)
    }

    /// Replaces an object. A given `metadata.resourceVersion` must be current (optimistic
    /// concurrency); uid and creationTimestamp are kept.
    pub fn update(
        &mut self,
        resource: &str,
        ns: &str,
        name: &str,
        mut obj: Value,
    ) -> Result<Arc<Value>, StoreError> {
        let key = (resource.to_string(), ns.to_string(), name.to_string());
        let Some(old) = self.objects.get(&key) else {
            return Err(StoreError::NotFound);
        };
        if let Some(given) = obj["metadata"]["resourceVersion"].as_str()
            && !given.is_empty()
            && Some(given) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(StoreError::Conflict);
        }
        if too_large(&obj) {
            return Err(StoreError::TooLarge);
        }
        let uid = old["metadata"]["uid"].clone();
        let created = old["metadata"]["creationTimestamp"].clone();
        let rv = self.next_rv();
        let meta = obj["metadata"].as_object_mut().expect("metadata object");
        meta.insert("uid".into(), uid);
        meta.insert("creationTimestamp".into(), created);
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("name".into(), json!(name));
        if !ns.is_empty() {
            meta.insert("namespace".into(), json!(ns));
        }
        let obj = Arc::new(obj);
        self.objects.insert(key, obj.clone());
        self.emit("MODIFIED", resource, ns, obj.clone());
        Ok(obj)
    }

    /// Deletes an object, returning it. With `uid`, only if it still has that uid.
    pub fn delete(
        &mut self,
        resource: &str,
        ns: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<Arc<Value>, StoreError> {
        let key = (resource.to_string(), ns.to_string(), name.to_string());
        let Some(old) = self.objects.get(&key) else {
            return Err(StoreError::NotFound);
        };
        if let Some(u) = uid
            && old["metadata"]["uid"].as_str() != Some(u)
        {
            return Err(StoreError::Conflict);
        }
        let mut old = Arc::unwrap_or_clone(self.objects.remove(&key).expect("present"));
        let rv = self.next_rv();
        old["metadata"]["resourceVersion"] = json!(rv.to_string());
        let old = Arc::new(old);
        self.emit("DELETED", resource, ns, old.clone());
        Ok(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_conflicts_and_history() {
        let mut s = Store::new();
        let a = s
            .create("secrets", "ns", json!({"metadata": {"name": "a"}}))
            .unwrap();
        assert_eq!(
            s.create("secrets", "ns", json!({"metadata": {"name": "a"}})),
            Err(StoreError::AlreadyExists)
        );
        let rv: u64 = a["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let mut stale = (*a).clone();
        s.update("secrets", "ns", "a", (*a).clone()).unwrap();
        stale["data"] = json!({"x": "eQ=="});
        assert_eq!(
            s.update("secrets", "ns", "a", stale),
            Err(StoreError::Conflict)
        );
        let evs = s.events_since(rv, "secrets", None).unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].kind, "MODIFIED");
        assert_eq!(s.events_since(rv, "secrets", Some("a")).unwrap().len(), 1);
        assert!(
            s.events_since(rv, "secrets", Some("b")).unwrap().is_empty(),
            "a watch pinned to another object replays none of a's events"
        );
        s.delete("secrets", "ns", "a", None).unwrap();
        assert!(s.get("secrets", "ns", "a").is_none());
    }

    #[test]
    fn ranges_stay_within_their_resource_and_namespace() {
        let mut s = Store::new();
        for (r, ns, n) in [
            ("configmaps", "a", "x"),
            ("secrets", "a", "1"),
            ("secrets", "a", "2"),
            ("secrets", "b", "3"),
            ("services", "a", "z"),
        ] {
            s.create(r, ns, json!({"metadata": {"name": n}})).unwrap();
        }
        let names = |it: Vec<Value>| {
            it.iter()
                .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(s.list("secrets", "")), ["1", "2", "3"]);
        assert_eq!(names(s.list("secrets", "a")), ["1", "2"]);
        let after = ("secrets".to_string(), "a".to_string(), "1".to_string());
        let rest: Vec<Value> = s
            .range("secrets", "", Some(&after))
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(names(rest), ["2", "3"]);
        assert_eq!(s.count("secrets"), 3);
        let huge = json!({"metadata": {"name": "h"}, "data": {"x": "y".repeat(MAX_OBJECT_BYTES)}});
        assert_eq!(s.create("secrets", "a", huge), Err(StoreError::TooLarge));
    }
}
