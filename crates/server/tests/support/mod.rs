pub mod node;
pub mod ports;
pub mod resp;
