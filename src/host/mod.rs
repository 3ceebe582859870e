//! What asks the host's network directly, never through Docker: can a port be bound
//! ([`ports`]), may an address be asked from here ([`reach`]), and a DHCP + TFTP client that
//! asks as a booting machine would ([`probe`]).

pub mod ports;
pub mod probe;
pub mod reach;
