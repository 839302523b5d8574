//! `/metrics`: the API's Prometheus metrics, with bounded labels.
//! (Skeleton: filled in by the cache work of issue 5.)

/// The API's metrics.
#[derive(Default)]
pub struct Metrics {}

impl Metrics {
    /// Counts a served request (route label bounded by the route table).
    pub fn observe(&self, info: warp::log::Info<'_>) {
        let _ = info;
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        String::new()
    }
}
