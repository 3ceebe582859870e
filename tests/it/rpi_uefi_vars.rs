//! A board's own `RPI_EFI.fd`: its settings written into the Pi UEFI firmware's variable store,
//! read back by a tool nobody here wrote (`virt-fw-vars`, PyPI virt-firmware), with every
//! byte outside the store as the firmware's.
//!
//! The real release cannot be downloaded here, so the tests use a stand-in of its exact shape,
//! built from the sources the release is built from (`support::rpi::stand_in_release_fd`
//! cites them: pftf/RPi4's release workflow and edk2-platforms' `RPi4.fdf`).

use crate::support::rpi::{stand_in_release_fd, FD_SIZE, NV_STORE_DATA, STORE_REGION, STORE_REGION_SIZE};
use crate::support::{guard, images};
use cozyboot::artifacts::rpi_uefi_vars::{self as vars, locate, BoardSettings, KNOWN_LAYOUTS};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn virt_fw_vars() -> Option<PathBuf> {
    let tool = images::state_dir().join("virt-firmware-venv/bin/virt-fw-vars");
    if tool.is_file() {
        Some(tool)
    } else {
        guard::skip(
            None,
            &format!("{} is missing: run scripts/install-test-deps", tool.display()),
        )
    }
}

/// `virt-fw-vars --input INPUT --set-json JSON --output OUTPUT`: the variables written by the
/// tool itself (bounded by `timeout`).
fn set_json(tool: &Path, input: &Path, json: &Path, output: &Path) {
    let out = Command::new("timeout")
        .arg("60")
        .arg(tool)
        .arg("--input")
        .arg(input)
        .arg("--set-json")
        .arg(json)
        .arg("--output")
        .arg(output)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// What `virt-fw-vars --input FILE --output-json -` reads in the store: name → (guid, attr, data).
fn read_back(tool: &Path, fd: &[u8]) -> Vec<(String, String, u64, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("RPI_EFI.fd");
    std::fs::write(&file, fd).unwrap();
    let out = Command::new("timeout")
        .arg("60")
        .arg(tool)
        .arg("--input")
        .arg(&file)
        .args(["--output-json", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "virt-fw-vars could not read the FD: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let hex = v["data"].as_str().unwrap();
            let data = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (
                v["name"].as_str().unwrap().to_string(),
                v["guid"].as_str().unwrap().to_string(),
                v["attr"].as_u64().unwrap(),
                data,
            )
        })
        .collect()
}

fn settings(pairs: &[(&str, &str)]) -> BoardSettings {
    let mut s = BoardSettings::default();
    for (k, v) in pairs {
        s.set(k, v).unwrap();
    }
    s
}

const CONFIG_DXE: &str = "cd7cc258-31db-22e6-9f22-63b0b8eed6b5";

#[test]
fn the_code_takes_the_layout_the_release_has() {
    let fd = stand_in_release_fd();
    // The transcribed header is a valid one: its UINT16s sum to zero with the .fdf's CheckSum.
    let sum = NV_STORE_DATA[..0x48]
        .chunks_exact(2)
        .fold(0u16, |s, w| s.wrapping_add(u16::from_le_bytes([w[0], w[1]])));
    assert_eq!(sum, 0, "RPi4.fdf's header checksum 0xF919 balances its header");
    let loc = locate(&fd).unwrap();
    assert_eq!(loc.volume, STORE_REGION, "PcdNvStorageVariableBase");
    assert_eq!(
        loc.header,
        STORE_REGION + 0x48,
        "after the volume header's HeaderLength"
    );
    assert_eq!(
        loc.end,
        STORE_REGION + STORE_REGION_SIZE,
        "Size 0xdfb8 ends the store at the region's end"
    );
    assert_eq!(loc.layout, KNOWN_LAYOUTS[0]);
    assert_eq!(
        (
            KNOWN_LAYOUTS[0].fd_size,
            KNOWN_LAYOUTS[0].store_region,
            KNOWN_LAYOUTS[0].store_region_size
        ),
        (FD_SIZE, STORE_REGION, STORE_REGION_SIZE)
    );
}

#[test]
fn virt_fw_vars_reads_a_boards_settings_and_nothing_else_changed() {
    let Some(tool) = virt_fw_vars() else { return };
    let fd = stand_in_release_fd();
    assert!(read_back(&tool, &fd).is_empty(), "the release's store is empty");
    let asked = settings(&[
        ("ram-above-3gb", "true"),
        ("system-table", "acpi+devicetree"),
        ("cpu-clock", "low"),
        ("fan-gpio", "18"),
        ("fan-temperature", "55"),
        ("asset-tag", "rack2-slot7"),
    ]);
    let board = vars::board_fd(&fd, &asked).unwrap();

    let loc = locate(&fd).unwrap();
    assert_eq!(board.len(), fd.len());
    let differ: Vec<usize> = (0..fd.len()).filter(|&i| fd[i] != board[i]).collect();
    assert!(!differ.is_empty());
    assert!(
        differ.iter().all(|&i| (loc.first_variable..loc.end).contains(&i)),
        "bytes changed outside the store: first {:#x}, last {:#x}",
        differ[0],
        differ[differ.len() - 1]
    );

    let mut tag: Vec<u8> = "rack2-slot7".encode_utf16().flat_map(u16::to_le_bytes).collect();
    tag.resize(66, 0);
    let u32v = |n: u32| n.to_le_bytes().to_vec();
    let mut got = read_back(&tool, &board);
    got.sort();
    let mut want: Vec<(String, String, u64, Vec<u8>)> = [
        ("AssetTag", tag),
        ("CpuClock", u32v(0)),
        ("FanOnGpio", u32v(18)),
        ("FanTemp", u32v(55)),
        ("RamLimitTo3GB", u32v(0)),
        ("SystemTableMode", u32v(1)),
    ]
    .into_iter()
    .map(|(n, d)| (n.to_string(), CONFIG_DXE.to_string(), 7, d))
    .collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn virt_fw_vars_reads_the_new_value_after_a_board_changes_its_mind() {
    let Some(tool) = virt_fw_vars() else { return };
    let first = vars::board_fd(
        &stand_in_release_fd(),
        &settings(&[("system-table", "acpi"), ("ram-above-3gb", "true")]),
    )
    .unwrap();
    let second = vars::board_fd(&first, &settings(&[("system-table", "devicetree")])).unwrap();
    let got = read_back(&tool, &second);
    let mode: Vec<&Vec<u8>> = got.iter().filter(|v| v.0 == "SystemTableMode").map(|v| &v.3).collect();
    assert_eq!(mode, [&2u32.to_le_bytes().to_vec()], "the retired copy is not read");
    assert!(got.iter().any(|v| v.0 == "RamLimitTo3GB" && v.3 == 0u32.to_le_bytes()));
}

#[test]
fn a_store_virt_fw_vars_wrote_is_read_and_extended() {
    let Some(tool) = virt_fw_vars() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (input, output, json) = (
        dir.path().join("in.fd"),
        dir.path().join("out.fd"),
        dir.path().join("vars.json"),
    );
    // virt-fw-vars is handed the store's volume alone (its writer rebuilds the whole file
    // byte by byte, which takes half a minute for the 4 MB FD) and its output put back in place.
    let mut fd = stand_in_release_fd();
    let volume = STORE_REGION..STORE_REGION + 0x2_0000;
    std::fs::write(&input, &fd[volume.clone()]).unwrap();
    // a variable of another vendor, as a board's own firmware would have left in its store
    std::fs::write(
        &json,
        r#"{"version": 2, "variables": [{"name": "Timeout", "guid": "8be4df61-93ca-11d2-aa0d-00e098032b8c", "attr": 7, "data": "0000"}]}"#,
    )
    .unwrap();
    set_json(&tool, &input, &json, &output);
    fd[volume].copy_from_slice(&std::fs::read(&output).unwrap());
    let ours = vars::board_fd(&fd, &settings(&[("ram-above-3gb", "true")])).unwrap();
    let mut names: Vec<String> = read_back(&tool, &ours).into_iter().map(|v| v.0).collect();
    names.sort();
    assert_eq!(names, ["RamLimitTo3GB", "Timeout"]);
}

#[test]
fn rpi_nodes_from_the_config_file_or_the_environment_become_boards_folders() {
    use crate::support::bad_inputs::{resolve, Case};
    use cozyboot::render::rpi_boards::{board_files, FD_NAME};
    let dir = tempfile::tempdir().unwrap();
    let case = |env: Vec<(&'static str, &'static str)>| {
        Case {
        name: "rpi nodes",
        flags: vec!["--iface=eth0".into()],
        env,
        file: Some(
            "rpi-nodes:\n  - serial: 1A2B3C4D\n    mac: DC-A6-32-01-02-03\n    settings:\n      ram-above-3gb: true\n      system-table: devicetree\n  - serial: 0000beef\n",
        ),
        expect: vec![],
    }
    };
    let from_file = resolve(&case(vec![]), dir.path()).unwrap().settings.rpi_nodes;
    let from_env = resolve(
        &case(vec![(
            "COZYBOOT_RPI_NODES",
            "1a2b3c4d@dc:a6:32:01:02:03;ram-above-3gb=true;system-table=devicetree,0000BEEF",
        )]),
        dir.path(),
    )
    .unwrap()
    .settings
    .rpi_nodes;
    assert_eq!(from_file, from_env);
    assert_eq!(from_file[0].serial, "1a2b3c4d");
    assert_eq!(from_file[0].mac.as_deref(), Some("dc:a6:32:01:02:03"));
    assert!(from_file[1].settings.is_empty());

    let firmware: std::collections::BTreeMap<String, Vec<u8>> = [
        (FD_NAME.to_string(), stand_in_release_fd()),
        ("start4.elf".to_string(), b"start4".to_vec()),
        ("config.txt".to_string(), b"armstub=RPI_EFI.fd\n".to_vec()),
    ]
    .into_iter()
    .collect();
    let files = board_files(&firmware, &from_file, "rpi-uefi").unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        ["1a2b3c4d/RPI_EFI.fd", "1a2b3c4d/config.txt", "1a2b3c4d/start4.elf"]
    );
    assert_eq!(
        files[0].content.as_ref(),
        vars::board_fd(&firmware[FD_NAME], &from_file[0].settings).unwrap()
    );
}

/// The same variables written by virt-fw-vars' own writer (`--set-json`) and by cozyboot give
/// the same bytes. (Measured once on the real pftf/RPi4 v1.35 `RPI_EFI.fd`, sha256 bf0b3f7b…,
/// with RamLimitTo3GB = 0: identical too.)
#[test]
fn the_store_is_byte_for_byte_what_virt_fw_vars_writes() {
    let Some(tool) = virt_fw_vars() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (input, output, json) = (
        dir.path().join("in.fd"),
        dir.path().join("out.fd"),
        dir.path().join("vars.json"),
    );
    let fd = stand_in_release_fd();
    let volume = STORE_REGION..STORE_REGION + 0x2_0000;
    std::fs::write(&input, &fd[volume.clone()]).unwrap();
    std::fs::write(
        &json,
        format!(
            r#"{{"version": 2, "variables": [
                {{"name": "RamLimitTo3GB", "guid": "{CONFIG_DXE}", "attr": 7, "data": "00000000"}},
                {{"name": "SystemTableMode", "guid": "{CONFIG_DXE}", "attr": 7, "data": "02000000"}}]}}"#
        ),
    )
    .unwrap();
    set_json(&tool, &input, &json, &output);
    let mut theirs = fd.clone();
    theirs[volume].copy_from_slice(&std::fs::read(&output).unwrap());
    let ours = vars::board_fd(
        &fd,
        &settings(&[("ram-above-3gb", "true"), ("system-table", "devicetree")]),
    )
    .unwrap();
    assert!(ours == theirs, "cozyboot's store differs from virt-fw-vars'");
}

/// Every setting `rpi-nodes` takes has its row in a docs table (whichever page holds it), naming
/// the firmware variable it writes, and the table lists no setting the code lacks.
#[test]
fn every_board_setting_is_documented_with_its_variable() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let text: String = std::fs::read_dir(&docs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| `")).collect();
    for s in vars::SETTINGS {
        let row = rows
            .iter()
            .find(|l| l.starts_with(&format!("| `{}` |", s.name)))
            .unwrap_or_else(|| panic!("no docs table row for the board setting {}", s.name));
        let variable = s.variable.split(' ').next().unwrap();
        assert!(
            row.contains(&format!("`{variable}`")),
            "the row for {} does not name {variable}: {row}",
            s.name
        );
    }
    let table_start = text
        .find("| setting | values | variable |")
        .expect("the settings table");
    let documented: Vec<&str> = text[table_start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('`').nth(1).unwrap())
        .collect();
    let code: Vec<&str> = vars::SETTINGS.iter().map(|s| s.name).collect();
    assert_eq!(documented, code);
}
