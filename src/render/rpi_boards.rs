//! Each Raspberry Pi board's own boot folder in the TFTP tree: `<serial>/`, holding every file
//! of the Pi UEFI firmware with the board's settings in its `RPI_EFI.fd`.
//!
//! Why the whole folder and not just `RPI_EFI.fd`: the EEPROM asks for `<serial>/start4.elf`
//! first (TFTP_PREFIX 0, the default: the serial as 8 hex digits), and only when neither
//! `start4.elf` nor `start.elf` is in that directory does it drop the prefix (raspberrypi/rpi-eeprom
//! `firmware/raspberry_pi4_network_boot_beta.md`, "TFTP_PREFIX"). Once it has the prefix,
//! `start4.elf` loads `config.txt`, `fixup4.dat`, the dtb, `overlays/` and the armstub
//! (`RPI_EFI.fd`) from the same directory. A board with no settings needs no folder: the root's
//! files are the firmware's own.

use crate::artifacts::rpi_uefi_vars::board_fd;
use crate::error::{ConfigError, Error};
use crate::settings::RpiNode;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The firmware file a board's settings go into.
pub const FD_NAME: &str = "RPI_EFI.fd";

/// One file of a board's folder, relative to the TFTP root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardFile<'a> {
    pub path: String,
    pub content: Cow<'a, [u8]>,
}

/// The folders of the boards that have settings. `firmware` is the Pi UEFI firmware as laid at
/// the TFTP root (relative path → bytes: `start4.elf`, `config.txt`, `overlays/…`, `RPI_EFI.fd`);
/// `field` names the setting the firmware came from, for errors. Fails with a settings error
/// (exit 2), naming the fix, when the firmware has no `RPI_EFI.fd` or its variable store
/// cannot take the settings.
pub fn board_files<'a>(
    firmware: &'a BTreeMap<String, Vec<u8>>,
    nodes: &[RpiNode],
    field: &str,
) -> Result<Vec<BoardFile<'a>>, Error> {
    let boards: Vec<&RpiNode> = nodes.iter().filter(|n| !n.settings.is_empty()).collect();
    if boards.is_empty() {
        return Ok(Vec::new());
    }
    let fd = firmware.get(FD_NAME).ok_or_else(|| {
        Error::config(ConfigError::new(
            field,
            format!("the Pi UEFI firmware has no {FD_NAME}, so boards' settings have nowhere to go"),
            "give the pftf/RPi4 release zip (or its unpacked folder) as published",
        ))
    })?;
    let mut out = Vec::new();
    for board in boards {
        let own = board_fd(fd, &board.settings).map_err(|e| {
            let mut err = e.config_error(field);
            err.problem = format!("board {}: {}", board.serial, err.problem);
            Error::config(err)
        })?;
        for (path, content) in firmware {
            let content = if path == FD_NAME {
                Cow::Owned(own.clone())
            } else {
                Cow::Borrowed(content.as_slice())
            };
            out.push(BoardFile {
                path: format!("{}/{path}", board.serial),
                content,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::rpi_uefi_vars::tests::release_fd;
    use crate::artifacts::rpi_uefi_vars::BoardSettings;

    fn firmware(fd: Vec<u8>) -> BTreeMap<String, Vec<u8>> {
        [
            ("start4.elf", b"elf".to_vec()),
            ("config.txt", b"armstub=RPI_EFI.fd\n".to_vec()),
            ("overlays/miniuart-bt.dtbo", b"dtbo".to_vec()),
            (FD_NAME, fd),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn node(serial: &str, pairs: &[(&str, &str)]) -> RpiNode {
        let mut settings = BoardSettings::default();
        for (k, v) in pairs {
            settings.set(k, v).unwrap();
        }
        RpiNode {
            serial: serial.into(),
            mac: None,
            settings,
        }
    }

    #[test]
    fn a_board_with_settings_gets_the_whole_folder_and_its_own_fd() {
        let fw = firmware(release_fd());
        let nodes = [node("1a2b3c4d", &[("ram-above-3gb", "true")]), node("0000beef", &[])];
        let files = board_files(&fw, &nodes, "rpi-uefi").unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "1a2b3c4d/RPI_EFI.fd",
                "1a2b3c4d/config.txt",
                "1a2b3c4d/overlays/miniuart-bt.dtbo",
                "1a2b3c4d/start4.elf"
            ]
        );
        assert_ne!(files[0].content.as_ref(), fw[FD_NAME].as_slice());
        assert_eq!(files[0].content.len(), fw[FD_NAME].len());
        assert!(matches!(files[3].content, Cow::Borrowed(b"elf")));
    }

    #[test]
    fn a_firmware_without_the_fd_or_its_store_is_refused_naming_the_board() {
        let mut fw = firmware(vec![0xff; 4096]);
        let nodes = [node("1a2b3c4d", &[("system-table", "devicetree")])];
        let Error::Config(errs) = board_files(&fw, &nodes, "rpi-uefi").unwrap_err() else {
            panic!("not a settings error")
        };
        assert_eq!(errs[0].field, "rpi-uefi");
        assert!(
            errs[0].problem.starts_with("board 1a2b3c4d: no edk2 variable store"),
            "{}",
            errs[0]
        );
        fw.remove(FD_NAME);
        let err = board_files(&fw, &nodes, "rpi-uefi").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("has no RPI_EFI.fd"), "{err}");
        assert!(board_files(&fw, &[node("0000beef", &[])], "rpi-uefi")
            .unwrap()
            .is_empty());
    }
}
