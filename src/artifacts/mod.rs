//! Pure facts about what cozyboot serves: the architecture table, image references, where
//! the published images keep their files, PE and UKI images, the TLS certificates of
//! matchbox's gRPC API, which matchbox versions will do, and the Raspberry Pi EEPROM's
//! network boot with the Pi UEFI firmware's release, U-Boot's script images. No Docker and no network: at
//! most the files they are handed.

pub mod arch;
pub mod image_ref;
pub mod layout;
pub mod matchbox_version;
pub mod pe;
pub mod rpi;
pub mod rpi_uefi_vars;
pub mod tls;
pub mod uimage;
pub mod uki;
