//! How `cozyboot validate`'s own requests to matchbox look, so that `cozyboot nodes` never
//! takes validate for a machine. Here, below both, since validate writes them and the
//! parsers recognise them.

/// A MAC no real NIC has (locally administered), as iPXE's `${mac:hexhyp}` writes it.
pub const SAMPLE_MAC: &str = "02-63-6f-7a-79-01";

/// Added to every `/ipxe` and `/generic` request validate makes (matchbox ignores a label no
/// group selects on): a node's check asks as that node's MAC, and `cozyboot nodes` must not
/// take validate for the machine.
pub const MARK: &str = "cozyboot=validate";
