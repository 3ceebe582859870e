#!/usr/bin/env python3
"""Writes the seed inputs in fuzz/seeds/<target>/ (std-lib only; re-run after changing it).

Seeds give libFuzzer a start (valid archives and configs) and are replayed, with every
saved crash input, by `cargo test --test it reliability::`.

extract seeds are one mode byte (bits 0-1: the prefix to strip "", "arm64", "assets",
"a/b"; bits 2-3: the limits, see fuzz/src/lib.rs) followed by a tar archive.
"""

import io
import os
import shutil
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "seeds")


def tar(entries, fmt=tarfile.GNU_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for e in entries:
            kind, name = e[0], e[1]
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            data = b""
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "file":
                data = e[2]
                info.size, info.mode = len(data), 0o600
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, e[2]
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, e[2]
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif kind == "char":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "pax":
                data = e[2]
                info.size = len(data)
                info.pax_headers = {"comment": "cozyboot", "path": e[3]}
            t.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    kernel = b"MZ" + bytes(range(256)) * 4
    talos = [("dir", "arm64/"), ("file", "arm64/vmlinuz", kernel), ("file", "arm64/initramfs.xz", b"\xfd7zXZ\x00" + b"x" * 700)]
    write("extract", "talos-arm64", bytes([1]) + tar(talos))
    write("extract", "talos-no-prefix", bytes([0]) + tar(talos))
    write("extract", "talos-small-limits", bytes([1 | 8]) + tar(talos))
    write("extract", "talos-pax", bytes([1]) + tar(talos, tarfile.PAX_FORMAT))
    write("extract", "long-name", bytes([1]) + tar([("file", "arm64/" + "d" * 150 + "/f", b"x")]))
    write("extract", "nested", bytes([2]) + tar([("dir", "assets/"), ("dir", "assets/talos/"), ("file", "assets/talos/./k", b"k"), ("file", "assets//talos/i", b"i")]))
    write("extract", "parent", bytes([1]) + tar([("file", "arm64/../../x", b"x")]))
    write("extract", "absolute", bytes([0]) + tar([("file", "/tmp/cozyboot-fuzz-abs", b"x")]))
    write("extract", "symlink-then-file", bytes([1]) + tar([("symlink", "arm64/l", "/tmp"), ("file", "arm64/l/x", b"x")]))
    write("extract", "hardlink", bytes([1]) + tar([("file", "arm64/a", b"a"), ("hard", "arm64/b", "arm64/a")]))
    write("extract", "fifo-device", bytes([1]) + tar([("fifo", "arm64/p"), ("char", "arm64/null")]))
    write("extract", "duplicate", bytes([1]) + tar([("file", "arm64/a", b"1"), ("file", "arm64/a", b"2")]))
    write("extract", "file-then-dir", bytes([1]) + tar([("file", "arm64/a", b"1"), ("file", "arm64/a/b", b"2")]))
    write("extract", "pax-path", bytes([1]) + tar([("pax", "arm64/short", b"data", "arm64/../../pax-escape")], tarfile.PAX_FORMAT))
    write("extract", "many", bytes([1 | 4]) + tar([("file", f"arm64/f{i}", b"z") for i in range(8)]))

    readme = """variant: spin-only
tag: latest
registry: ghcr.io/urmanac/cozystack-assets
dnsmasq-image: quay.io/poseidon/dnsmasq:v0.5.0-32-g4327d60-{arch}
iface: eth0
server-ip: 10.20.13.140
subnet: 10.20.13.0/24
dhcp-range: 10.20.13.150,10.20.13.200
gateway: 10.20.13.1
dns: [10.20.13.1]
lease-time: 12h
http-port: 8080
data-dir: /opt/matchbox
arch: [arm64, amd64]
bootloader-arm64: bootaa64.efi
bootloader-x86-64: ipxe.efi
bootloader-bios: undionly.kpxe
ipxe-arm64: /usr/lib/ipxe/ipxe-arm64.efi
kernel-args: ["talos.halt_if_installed=1"]
talos-config: ./w.yaml
talos-nodes:
  - dc:a6:32:01:02:03=./cp.yaml
  - { mac: "dc:a6:32:01:02:04", arch: arm64, config: ./cp.yaml }
rpc: false
rpc-port: 8081
network: host
pull: missing
log-level: info
matchbox-name: matchbox
dnsmasq-name: dnsmasq
"""
    write("settings_yaml", "readme-example", readme)
    write("settings_yaml", "proxy", "iface: eth0\n")
    write("settings_yaml", "docker-network", "network: bootnet\nserver-ip: 10.20.13.10\nsubnet: 10.20.13.0/24\nrpc: true\n")
    write("settings_yaml", "bad-values", "iface: eth0\nserver-ip: 10.20.13.300\ndhcp-range: 10.20.13.200,10.20.13.150\nhttp-port: 99999\ntag: -x\n")
    write("settings_yaml", "unknown-key", "variant: spin-only\nhttp-prot: 9000\n")
    write("settings_yaml", "not-yaml", "variant: [spin-only\n")
    write("settings_yaml", "float-tag", "iface: eth0\ntag: 1.10\n")
    write("settings_yaml", "anchors", "a: &x eth0\niface: *x\n")
    write("settings_yaml", "talos-files", "iface: eth0\ntalos-config: braces.yaml\ntalos-nodes: [\"dc:a6:32:00:00:01=other.yaml\", \"zz=bad.yaml\"]\n")

    write("settings_cli", "full", "--iface=eth0\n--dhcp-range=10.20.13.150,10.20.13.200\n--gateway=10.20.13.1\n--dns=10.20.13.1\n--arch=arm64,amd64\n")
    write("settings_cli", "env", "--iface=eth0\nCOZYBOOT_ARCH=arm64,ppc64\nCOZYBOOT_HTTP_PORT=9090\n")
    write("settings_cli", "network", "--network=bootnet\n--server-ip=10.20.13.10\n--subnet=10.20.13.0/24\n--rpc\n--rpc-port=8080\n")
    write("settings_cli", "nodes", "--iface=eth0\n--arch=arm64,amd64\n--talos-nodes=dc:a6:32:00:00:01@arm64=cp.yaml\n--talos-config=w.yaml\n")
    write("settings_cli", "kernel-args", "--iface=br0\n--kernel-args=talos.config=http://10.20.13.140:8080/ignition?uuid=${uuid}\n")


if __name__ == "__main__":
    main()
