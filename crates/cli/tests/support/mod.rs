//! Test helpers: the RESP client is shared with the server crate's tests.

pub mod cluster;
pub mod proxy;
#[path = "../../../server/tests/support/resp.rs"]
pub mod resp;
pub mod writers;
