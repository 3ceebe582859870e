//! A Raspberry Pi board's own copy of the Pi UEFI firmware (`RPI_EFI.fd`, pftf/RPi4): the
//! firmware's setup-page settings written into the edk2 variable store inside the FD, where
//! the firmware reads them at boot. Settings changed at a netbooted board's screen are not
//! kept (nothing writes the FD back over the network), so this is how a board without a
//! screen gets more than 3 GB of RAM or a Devicetree.
//!
//! `fv` finds the store, `store` reads and writes its variables, `board` says which settings
//! there are and what variables they become.

pub mod board;
pub mod fv;
pub mod guid;
pub mod store;

pub use board::{BoardSettings, SettingProblem, SETTINGS};
pub use fv::{locate, KnownLayout, StoreLocation, KNOWN_LAYOUTS};

use crate::error::ConfigError;
use std::fmt;

/// Why a board's `RPI_EFI.fd` cannot be made from the firmware's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdError {
    /// No firmware volume with gEfiSystemNvDataFvGuid and a healthy edk2 variable store.
    NoStore {
        size: usize,
        rejected: Vec<String>,
    },
    SeveralStores(Vec<usize>),
    /// The store is there, but not where any known release's RPi4.fdf puts it.
    UnknownLayout {
        size: usize,
        volume: usize,
    },
    /// The variables in the store do not parse.
    Corrupt {
        at: usize,
        why: String,
    },
    StoreFull {
        needed: usize,
        free: usize,
    },
}

impl fmt::Display for FdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FdError::NoStore { size, rejected } => {
                write!(f, "no edk2 variable store found in this RPI_EFI.fd ({size} bytes)")?;
                if !rejected.is_empty() {
                    write!(f, "; candidates rejected: {}", rejected.join("; "))?;
                }
                Ok(())
            }
            FdError::SeveralStores(at) => {
                let at: Vec<String> = at.iter().map(|a| format!("{a:#x}")).collect();
                write!(
                    f,
                    "this RPI_EFI.fd has several variable stores (at {}), not one",
                    at.join(", ")
                )
            }
            FdError::UnknownLayout { size, volume } => {
                let known: Vec<String> = KNOWN_LAYOUTS
                    .iter()
                    .map(|l| format!("{:#x} in {:#x} bytes ({})", l.store_region, l.fd_size, l.name))
                    .collect();
                write!(
                    f,
                    "the variable store of this RPI_EFI.fd ({size:#x} bytes) sits at {volume:#x}, where no known release of the Pi UEFI firmware keeps it (known: {})",
                    known.join("; ")
                )
            }
            FdError::Corrupt { at, why } => write!(f, "the variable store is damaged at {at:#x}: {why}"),
            FdError::StoreFull { needed, free } => write!(
                f,
                "the board's settings need {needed} bytes of the variable store but only {free} are free"
            ),
        }
    }
}

impl FdError {
    pub fn fix(&self) -> &'static str {
        match self {
            FdError::NoStore { .. } | FdError::SeveralStores(_) | FdError::UnknownLayout { .. } => {
                "use an RPI_EFI.fd from a pftf/RPi4 release zip as published (not one rebuilt or saved by a board), or drop the board's settings from rpi-nodes"
            }
            FdError::Corrupt { .. } | FdError::StoreFull { .. } => {
                "use the RPI_EFI.fd from the release zip as published; a board's saved copy carries variables of its own"
            }
        }
    }

    /// The problem as a settings error on `field` (the setting that named the firmware).
    pub fn config_error(&self, field: &str) -> ConfigError {
        ConfigError::new(field, self.to_string(), self.fix())
    }
}

/// A board's `RPI_EFI.fd`: the firmware's `fd` with `settings` written into its variable store.
/// Every byte outside the store is the firmware's.
pub fn board_fd(fd: &[u8], settings: &BoardSettings) -> Result<Vec<u8>, FdError> {
    let loc = locate(fd)?;
    let mut out = fd.to_vec();
    store::write(&mut out, &loc, &settings.variables())?;
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests;
