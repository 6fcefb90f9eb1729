//! Test helpers: the RESP client is shared with the server crate's tests.

pub mod cluster;
#[path = "../../../server/tests/support/resp.rs"]
pub mod resp;
