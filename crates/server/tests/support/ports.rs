//! Ports for test nodes whose config must name them before they bind.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};

/// A free port on `ip` below the kernel's ephemeral range (32768 and up),
/// tried at random. A port the OS hands out for `:0` and the test releases
/// can be taken by any outgoing connection before the node binds it (CI saw
/// "Address already in use"); none takes a port below that range, and tests
/// running in parallel seldom pick the same one.
pub fn free_address_on(ip: IpAddr) -> SocketAddr {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new();
    (0..1_000u32)
        .find_map(|attempt| {
            let mut hasher = random.build_hasher();
            hasher.write_u32(attempt);
            let port = 20_000 + (hasher.finish() % 12_000) as u16;
            TcpListener::bind(SocketAddr::new(ip, port)).ok()
        })
        .unwrap_or_else(|| TcpListener::bind(SocketAddr::new(ip, 0)).unwrap())
        .local_addr()
        .unwrap()
}

/// [`free_address_on`] loopback.
pub fn free_address() -> SocketAddr {
    free_address_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}
