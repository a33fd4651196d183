//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's rules
//! (`staging/src/k8s.io/client-go/tools/leaderelection`): the holder renews every retry period;
//! another replica takes the Lease over only once `renewTime + leaseDurationSeconds` has passed;
//! every write carries the resourceVersion it read, so two replicas racing for it get one 200 and
//! one 409; a holder that has not renewed within the renew deadline stops acting before anyone can
//! take over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

use crate::cluster::Cluster;

/// client-go's defaults for controllers.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// A holder that has not renewed for this long stops acting.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often to try.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Whether this replica holds the Lease, shared with the deciding loop.
#[derive(Debug, Clone, Default)]
pub struct Leadership(Arc<AtomicBool>);

impl Leadership {
    /// Leadership that is always held (no `--leader-elect`).
    pub fn always() -> Leadership {
        Leadership(Arc::new(AtomicBool::new(true)))
    }

    /// Whether this replica may act now.
    pub fn is_leader(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn set(&self, v: bool) -> bool {
        self.0.swap(v, Ordering::SeqCst) != v
    }
}

fn now() -> MicroTime {
    MicroTime(jiff_now())
}

fn jiff_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

fn expired(lease: &Lease) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let duration = spec.lease_duration_seconds.unwrap_or(15) as i64;
    match &spec.renew_time {
        Some(t) => t.0.as_second() + duration < jiff_now().as_second(),
        None => true,
    }
}

/// One attempt to acquire or renew; whether this replica holds the Lease afterwards.
async fn try_hold(api: &Api<Lease>, name: &str, identity: &str) -> Result<bool, kube::Error> {
    let spec = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
        acquire_time: acquired.or_else(|| Some(now())),
        renew_time: Some(now()),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    let Some(mut lease) = api.get_opt(name).await? else {
        let fresh = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            spec: Some(spec(0, None)),
        };
        return match api.create(&PostParams::default(), &fresh).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let current = lease.spec.clone().unwrap_or_default();
    let ours = current.holder_identity.as_deref() == Some(identity);
    if !ours && !expired(&lease) {
        return Ok(false);
    }
    let transitions = current.lease_transitions.unwrap_or(0) + if ours { 0 } else { 1 };
    let acquired = if ours {
        current.acquire_time.clone()
    } else {
        None
    };
    lease.spec = Some(spec(transitions, acquired));
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        // Someone else wrote it since we read it: they won this round.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Keeps trying to hold the Lease `namespace/name` as `identity`, updating `leadership` and
/// logging each change through `say`.
pub async fn hold(
    cluster: Cluster,
    namespace: String,
    name: String,
    identity: String,
    leadership: Leadership,
    say: impl Fn(String) + Send + 'static,
) {
    let api: Api<Lease> = Api::namespaced(cluster.client().clone(), &namespace);
    let mut last_renewal = tokio::time::Instant::now() - RENEW_DEADLINE * 2;
    loop {
        let outcome = tokio::time::timeout(RETRY_PERIOD, try_hold(&api, &name, &identity)).await;
        match outcome {
            Ok(Ok(true)) => {
                last_renewal = tokio::time::Instant::now();
                if leadership.set(true) {
                    say(format!(
                        "Became the leader (Lease {namespace}/{name}, holder {identity})"
                    ));
                }
            }
            Ok(Ok(false)) => {
                if leadership.set(false) {
                    say(format!(
                        "Lost the Lease {namespace}/{name} to another replica: standing by"
                    ));
                }
            }
            // Could not reach the API server: keep acting only within the renew deadline.
            _ => {
                if last_renewal.elapsed() > RENEW_DEADLINE && leadership.set(false) {
                    say(format!(
                        "Could not renew the Lease {namespace}/{name} within {}s: standing by",
                        RENEW_DEADLINE.as_secs()
                    ));
                }
            }
        }
        tokio::time::sleep(RETRY_PERIOD).await;
    }
}
