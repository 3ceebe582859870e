//! What asks the host's network directly, never through Docker: can a port be bound
//! ([`ports`]), may an address be asked from here ([`reach`]), and a DHCP + TFTP client that
//! asks as a booting machine's firmware would ([`pxe_client`]), and powering declared
//! machines: a Wake-on-LAN packet out of the site's interface, or a command ([`power`]).

pub mod ports;
pub mod power;
pub mod pxe_client;
pub mod reach;
