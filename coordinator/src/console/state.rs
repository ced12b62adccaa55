//! What the console's handlers share, apart from the router so that sign-in and pages import it
//! without importing each other.

use std::sync::Arc;

use crate::auth::TokenSet;
use crate::coordinator::Coordinator;
use crate::service::control::ControlServiceImpl;

/// What the handlers share.
pub(crate) struct Console {
    pub(super) coordinator: Arc<Coordinator>,
    pub(super) control: ControlServiceImpl,
    pub(super) tokens: TokenSet,
    /// Mark the sign-in cookie `Secure` (the port serves TLS).
    pub(super) secure_cookie: bool,
}
