//! macOS and Windows, for now: no native notice source yet, only the portable drift check every
//! [`super::COARSE_CHECK`]. A resume or clock change is noticed up to that late (a stated gap).

use std::sync::Arc;

use tokio::sync::watch;
use tracing::info;

use super::{drift, Notice, SystemClock, COARSE_CHECK};

pub(super) fn spawn(tx: watch::Sender<Notice>) {
    info!(
        every_secs = COARSE_CHECK.as_secs(),
        "no OS wake notices on this system yet; checking the wall clock periodically"
    );
    drift::spawn(tx, Arc::new(SystemClock), COARSE_CHECK);
}
