//! Watches: synthetic ADDED events for the current state when no resourceVersion (or "0") is
//! given, else every change after it (410 Gone when it is older than the history); bookmarks when
//! asked for; Table events when the client asks for tables (`kubectl get -w`); ends at
//! `timeoutSeconds`, at shutdown, or abruptly when watch drops are injected.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};

use super::http::{Body, Query};
use super::request::Target;
use super::selectors::Selectors;
use super::state::State;
use super::store::Event;

/// How each event's object is written.
#[derive(Clone, Copy)]
struct Encoding {
    table: bool,
}

impl Encoding {
    fn line(&self, t: &Target, kind: &str, object: &Value, rv: u64, first: &mut bool) -> Bytes {
        let table;
        let object = if self.table && kind != "ERROR" && kind != "BOOKMARK" {
            let with_columns = std::mem::replace(first, false);
            table =
                super::tables::table_with(t.def, std::slice::from_ref(object), rv, with_columns);
            &table
        } else {
            object
        };
        // Written around the borrowed object: `json!` would deep-copy it for every event of
        // every watch.
        let mut line = Vec::with_capacity(256);
        line.extend_from_slice(b"{\"type\":");
        let written = serde_json::to_writer(&mut line, kind)
            .and_then(|()| {
                line.extend_from_slice(b",\"object\":");
                serde_json::to_writer(&mut line, object)
            })
            .is_ok();
        if !written {
            // Not reached for a JSON value; an empty line keeps the stream well-formed.
            return Bytes::from_static(b"\n");
        }
        line.extend_from_slice(b"}\n");
        Bytes::from(line)
    }
}

fn event_matches(ev: &Event, t: &Target, sel: &Selectors) -> bool {
    ev.resource == t.def.plural
        && (t.namespace.is_empty() || ev.namespace == t.namespace)
        && sel.matches(&ev.object)
}

/// How long a watch waits for its client to take a line before ending the watch (kube-apiserver
/// ends watchers that do not keep up, and their clients resume from their last resourceVersion).
pub const SLOW_WATCHER: Duration = Duration::from_secs(10);

/// Sends a line, or gives up on a client that has not read for [`SLOW_WATCHER`]: `false` ends the
/// watch.
async fn send_or_drop(
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    line: Bytes,
) -> bool {
    matches!(
        tokio::time::timeout(SLOW_WATCHER, tx.send(Ok(line))).await,
        Ok(Ok(()))
    )
}

/// Serves a watch of `t` with `query` (selectors already validated in `sel`).
pub fn serve(
    state: Arc<State>,
    t: &Target,
    query: &Query,
    sel: Selectors,
    accept: &str,
) -> Response<Body> {
    // Lines, not frames: a channel allocates its slots 32 at a time, and a frame is two and a
    // half times the size of a line (it may hold trailers).
    // Few lines in flight: a client that stops reading holds at most these (and the socket's
    // buffers), and one that does not take a line within SLOW_WATCHER is dropped.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let t = Target {
        subresource: String::new(),
        ..t.clone()
    };
    let enc = Encoding {
        table: accept.contains("as=Table"),
    };
    let from = query.get("resourceVersion").cloned().unwrap_or_default();
    if !from.is_empty() && from.parse::<u64>().is_err() {
        // The watch cache parses it as etcd's revision and fails the request, no reason given.
        return super::http::status(
            500,
            "",
            &format!(
                "resourceVersion: Invalid value: \"{from}\": strconv.ParseUint: parsing \"{from}\": invalid syntax"
            ),
            None,
        );
    }
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true" || v == "1");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let mut first = true;
    let (initial, mut rx_events, mut last_rv) = {
        let mut store = state.store.lock().expect("store");
        let current = store.resource_version();
        let initial: Result<Vec<Bytes>, Bytes> = if from.is_empty() || from == "0" {
            Ok(store
                .range(t.def.plural, &t.namespace, None)
                .filter(|((_, _, name), _)| sel.pinned_name().is_none_or(|n| n == name))
                .map(|(_, o)| o)
                .filter(|o| sel.matches(o))
                .map(|o| enc.line(&t, "ADDED", o, current, &mut first))
                .collect())
        } else {
            match from
                .parse::<u64>()
                .ok()
                .and_then(|rv| store.events_since(rv, t.def.plural, sel.pinned_name()))
            {
                Some(evs) => Ok(evs
                    .iter()
                    .filter(|e| event_matches(e, &t, &sel))
                    .map(|e| enc.line(&t, e.kind, &e.object, e.rv, &mut first))
                    .collect()),
                None => Err(enc.line(
                    &t,
                    "ERROR",
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": format!("too old resource version: {from} ({current})"), "reason": "Expired", "code": 410}),
                    current,
                    &mut first,
                )),
            }
        };
        (
            initial,
            store.subscribe_watch(t.def.plural, sel.pinned_name()),
            current,
        )
    };
    let mut shutdown = state.shutdown.clone();
    let drop_after = state.options.drop_watch_after;
    let bookmark_every = state.options.bookmark_interval;
    tokio::spawn(async move {
        let lines = match initial {
            Ok(lines) => lines,
            Err(gone) => {
                let _ = tx.send(Ok(gone)).await;
                return;
            }
        };
        for l in lines {
            if tx.send(Ok(l)).await.is_err() {
                return;
            }
        }
        let end = tokio::time::Instant::now() + timeout;
        let dropped_at = drop_after.map(|d| tokio::time::Instant::now() + d);
        let mut bookmark = tokio::time::interval(bookmark_every);
        bookmark.tick().await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(end) => return,
                _ = async { match dropped_at { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                    let _ = tx.send(Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "bootlet sandbox dropped the watch"))).await;
                    return;
                }
                _ = shutdown.changed() => return,
                _ = bookmark.tick(), if bookmarks => {
                    let obj = json!({"kind": t.def.kind, "apiVersion": t.def.api_version(), "metadata": {"resourceVersion": last_rv.to_string()}});
                    if tx.send(Ok(enc.line(&t, "BOOKMARK", &obj, last_rv, &mut first))).await.is_err() { return; }
                }
                ev = rx_events.recv() => match ev {
                    Some(ev) => {
                        if ev.rv <= last_rv { continue; }
                        last_rv = ev.rv;
                        if event_matches(&ev, &t, &sel) && !send_or_drop(&tx, enc.line(&t, ev.kind, &ev.object, ev.rv, &mut first)).await {
                            return;
                        }
                    }
                    // Fell behind: end the watch; the client resumes from its last resourceVersion.
                    None => return,
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (line.map(Frame::data), rx))
    });
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("response")
}
