pub mod node;
pub mod resp;
