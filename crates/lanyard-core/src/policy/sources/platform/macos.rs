//! macOS: managed preferences from configuration profiles, the optional administrator's JSON
//! file and the user's settings, as [`MacosPolicyPaths::system`] describes them (FSEvents through
//! `notify` for changes). Chooses; reads nothing itself.

use std::sync::Arc;

use super::PolicySource;
use crate::policy::sources::macos_files::MacosPolicyPaths;

pub(super) fn default_source() -> Arc<dyn PolicySource> {
    Arc::new(MacosPolicyPaths::system())
}
