//! The address plan: each twin draws its own block inside 127.0.0.0/8 for public IPv4s.
//!
//! Blocks are /20s (4094 addresses), never inside 127.0.0.0/20, so never 127.0.0.1 nor
//! 127.0.0.0/24. A twin reserves its block by listening on the block's network address at
//! [`RESERVATION_PORT`]; a second twin (in this or another process) that draws the same block
//! fails to bind and draws again, so parallel twins never collide.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use ipnet::Ipv4Net;

/// Port on a block's network address that marks the block as taken.
pub const RESERVATION_PORT: u16 = 61999;

/// Prefix length of randomly drawn blocks.
pub const BLOCK_PREFIX: u8 = 20;

/// Reserving an address block failed.
#[derive(Debug, thiserror::Error)]
pub enum AddrError {
    /// The given block is not a usable part of 127.0.0.0/8.
    #[error("address block {0} is not inside 127.0.0.0/8 or overlaps 127.0.0.0/24")]
    OutsideLoopback(Ipv4Net),
    /// The block is held by another twin.
    #[error("address block {block} is already reserved")]
    Reserve {
        /// The block.
        block: Ipv4Net,
        /// Why binding the reservation failed.
        #[source]
        source: std::io::Error,
    },
    /// No free block after many draws.
    #[error("no free address block in 127.0.0.0/8 after {0} attempts")]
    Exhausted(usize),
}

/// A reserved block of loopback addresses.
#[derive(Debug)]
pub struct AddrBlock {
    net: Ipv4Net,
    _reservation: TcpListener,
}

fn usable(net: Ipv4Net) -> bool {
    let lo: Ipv4Net = Ipv4Net::new(Ipv4Addr::new(127, 0, 0, 0), 8).unwrap_or_default();
    let first24: Ipv4Net = Ipv4Net::new(Ipv4Addr::new(127, 0, 0, 0), 24).unwrap_or_default();
    lo.contains(&net)
        && !net.contains(&first24)
        && !first24.contains(&net)
        && net.prefix_len() <= 30
}

impl AddrBlock {
    /// Reserves exactly this block.
    pub fn reserve(net: Ipv4Net) -> Result<Self, AddrError> {
        let net = net.trunc();
        if !usable(net) {
            return Err(AddrError::OutsideLoopback(net));
        }
        let addr = SocketAddr::from((net.network(), RESERVATION_PORT));
        let listener =
            TcpListener::bind(addr).map_err(|source| AddrError::Reserve { block: net, source })?;
        Ok(Self {
            net,
            _reservation: listener,
        })
    }

    /// Draws random /20 blocks until one can be reserved.
    pub fn random() -> Result<Self, AddrError> {
        const ATTEMPTS: usize = 64;
        for _ in 0..ATTEMPTS {
            // 127.0.0.0/8 has 4096 /20 blocks; block 0 holds 127.0.0.1.
            let n: u32 = rand::random_range(1..4096);
            let base = u32::from(Ipv4Addr::new(127, 0, 0, 0)) | (n << 12);
            let Ok(net) = Ipv4Net::new(Ipv4Addr::from(base), BLOCK_PREFIX) else {
                continue;
            };
            if let Ok(b) = Self::reserve(net) {
                return Ok(b);
            }
        }
        Err(AddrError::Exhausted(ATTEMPTS))
    }

    /// The block.
    pub fn net(&self) -> Ipv4Net {
        self.net
    }
}

/// Hands out the host addresses of a block (the network address is the reservation).
#[derive(Debug, Clone)]
pub struct AddrPool {
    net: Ipv4Net,
    next: u32,
    used: BTreeSet<Ipv4Addr>,
}

impl AddrPool {
    /// A pool over `net`'s hosts.
    pub fn new(net: Ipv4Net) -> Self {
        Self {
            net,
            next: 1,
            used: BTreeSet::new(),
        }
    }

    /// The next free address, cycling through the block; `None` when all are taken.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let base = u32::from(self.net.network());
        let size = 1u32 << (32 - u32::from(self.net.prefix_len()));
        for _ in 0..size {
            let off = self.next;
            self.next = if self.next + 2 >= size {
                1
            } else {
                self.next + 1
            };
            if off == 0 || off >= size - 1 {
                continue;
            }
            let ip = Ipv4Addr::from(base + off);
            if self.used.insert(ip) {
                return Some(ip);
            }
        }
        None
    }

    /// The block the pool hands out.
    pub fn net(&self) -> Ipv4Net {
        self.net
    }

    /// Whether `ip` is inside the block.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.net.contains(&ip)
    }

    /// Returns an address to the pool.
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_blocks_avoid_first_24_and_do_not_collide() {
        let a = AddrBlock::random().unwrap();
        let b = AddrBlock::random().unwrap();
        assert_ne!(a.net(), b.net());
        for blk in [&a, &b] {
            assert_eq!(blk.net().prefix_len(), BLOCK_PREFIX);
            assert!(!blk.net().contains(&Ipv4Addr::new(127, 0, 0, 1)));
            assert_eq!(blk.net().network().octets()[0], 127);
        }
        let err = AddrBlock::reserve(a.net()).unwrap_err();
        assert!(matches!(err, AddrError::Reserve { .. }));
    }

    #[test]
    fn refuses_blocks_outside_loopback() {
        for bad in ["10.0.0.0/20", "127.0.0.0/20", "127.0.0.0/8", "127.0.0.0/24"] {
            let net: Ipv4Net = bad.parse().unwrap();
            assert!(
                matches!(AddrBlock::reserve(net), Err(AddrError::OutsideLoopback(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn pool_skips_network_and_broadcast_and_reuses_released() {
        let mut p = AddrPool::new("127.9.0.0/30".parse().unwrap());
        let a = p.allocate().unwrap();
        let b = p.allocate().unwrap();
        assert_eq!(
            (a, b),
            (Ipv4Addr::new(127, 9, 0, 1), Ipv4Addr::new(127, 9, 0, 2))
        );
        assert_eq!(p.allocate(), None);
        p.release(a);
        assert_eq!(p.allocate(), Some(a));
    }
}
