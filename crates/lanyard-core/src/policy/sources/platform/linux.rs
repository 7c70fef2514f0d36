//! Linux (and other Unix systems but macOS): the policy files under `/etc/lanyard/` and the
//! user's settings, as [`LinuxPolicyPaths::system`] describes them. Chooses; reads nothing itself.

use std::sync::Arc;

use super::PolicySource;
use crate::policy::sources::linux_files::LinuxPolicyPaths;

pub(super) fn default_source() -> Arc<dyn PolicySource> {
    Arc::new(LinuxPolicyPaths::system())
}
