#!/usr/bin/env python3
"""Deterministic root-filesystem tarballs for cozyboot's offline test images.

Used by scripts/test-images; std-lib only.

  mkrootfs.py talos   --variant V --tag T --layout assets|usr-install --out F.tar --manifest M.json --ref REF
  mkrootfs.py hostile --variant V --tag T --kind entries|links --out F.tar --manifest M.json --ref REF

Asset content is pseudo-random (SHAKE-256 of a seed naming variant, tag, arch and
file), so two builds are byte-identical and different variants/tags differ.
The manifest file (JSON) is updated in place with the path, size and sha256 of every
asset file written, under the image reference REF.
"""

import argparse
import hashlib
import io
import json
import os
import struct
import sys
import tarfile

MTIME = 1_700_000_000  # fixed for reproducible layers

# (arch, file) -> size in bytes; odd sizes so that a mixed-up file is noticed
SIZES = {
    ("arm64", "vmlinuz"): 3 * 1024 * 1024 + 4242,
    ("arm64", "initramfs.xz"): 5 * 1024 * 1024 + 777,
    ("amd64", "vmlinuz"): 3 * 1024 * 1024 + 512 * 1024 + 1001,
    ("amd64", "initramfs.xz"): 4 * 1024 * 1024 + 333,
}
SMALL = 256 * 1024 + 17  # hostile images do not need big files


def pseudo_random(seed: str, size: int) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(size)


def make_asset(variant: str, tag: str, arch: str, name: str, size: int) -> bytes:
    """Kernel-ish / initramfs-ish bytes with the right magic numbers."""
    data = bytearray(pseudo_random(f"cozyboot-test:{variant}:{tag}:{arch}:{name}", size))
    if name == "vmlinuz":
        # DOS stub "MZ", PE header offset at 0x3c, "PE\0\0" + COFF machine
        data[0:2] = b"MZ"
        pe = 0x40
        struct.pack_into("<I", data, 0x3C, pe)
        machine = 0xAA64 if arch == "arm64" else 0x8664
        data[pe : pe + 4] = b"PE\0\0"
        struct.pack_into("<H", data, pe + 4, machine)
        if arch == "arm64":
            # arm64 Linux Image header magic "ARM\x64" at 0x38
            data[0x38:0x3C] = b"ARM\x64"
        else:
            # x86 boot protocol signature "HdrS" at 0x202
            data[0x202:0x206] = b"HdrS"
    elif name == "initramfs.xz":
        data[0:6] = b"\xfd7zXZ\x00"
    return bytes(data)


class Tar:
    def __init__(self, path: str):
        self.tf = tarfile.open(path, "w", format=tarfile.GNU_FORMAT)
        self.dirs = set()

    def _info(self, name: str, typ, mode: int) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name.lstrip("/"))
        ti.type = typ
        ti.mode = mode
        ti.mtime = MTIME
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        return ti

    def mkdirs(self, path: str):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in self.dirs:
                self.dirs.add(d)
                self.tf.addfile(self._info(d, tarfile.DIRTYPE, 0o755))

    def file(self, path: str, data: bytes, mode: int = 0o644):
        self.mkdirs(os.path.dirname(path))
        ti = self._info(path, tarfile.REGTYPE, mode)
        ti.size = len(data)
        self.tf.addfile(ti, io.BytesIO(data))

    def symlink(self, path: str, target: str):
        self.mkdirs(os.path.dirname(path))
        ti = self._info(path, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.tf.addfile(ti)

    def hardlink(self, path: str, target: str):
        self.mkdirs(os.path.dirname(path))
        ti = self._info(path, tarfile.LNKTYPE, 0o644)
        ti.linkname = target.lstrip("/")
        self.tf.addfile(ti)

    def fifo(self, path: str):
        self.mkdirs(os.path.dirname(path))
        self.tf.addfile(self._info(path, tarfile.FIFOTYPE, 0o644))

    def device(self, path: str, char: bool, major: int, minor: int):
        self.mkdirs(os.path.dirname(path))
        ti = self._info(path, tarfile.CHRTYPE if char else tarfile.BLKTYPE, 0o666)
        ti.devmajor, ti.devminor = major, minor
        self.tf.addfile(ti)

    def close(self):
        self.tf.close()


def record(manifest_path: str, ref: str, entry: dict):
    try:
        with open(manifest_path) as f:
            m = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        m = {"images": {}}
    m["images"][ref] = entry
    tmp = manifest_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(m, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, manifest_path)


def describe(path: str, data: bytes) -> dict:
    return {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def cmd_talos(a):
    t = Tar(a.out)
    files = []
    base = {"assets": "/assets/talos/{arch}", "usr-install": "/usr/install/{arch}"}[a.layout]
    for arch in ("arm64", "amd64"):
        for name in ("vmlinuz", "initramfs.xz"):
            data = make_asset(a.variant, a.seed_tag or a.tag, arch, name, SIZES[(arch, name)])
            path = f"{base.format(arch=arch)}/{name}"
            t.file(path, data)
            files.append(describe(path, data))
    t.close()
    record(a.manifest, a.ref, {"kind": "talos", "layout": a.layout, "variant": a.variant, "files": files})


def cmd_hostile(a):
    t = Tar(a.out)
    files = []
    passwd = b"root:x:0:0:root:/root:/bin/sh\nhostile:x:666:666:written by a hostile image:/:/bin/false\n"
    t.file("/etc/passwd", passwd)
    d = "/assets/talos/arm64"
    special = []
    if a.kind == "entries":
        for name in ("vmlinuz", "initramfs.xz"):
            data = make_asset(a.variant, "hostile", "arm64", name, SMALL)
            t.file(f"{d}/{name}", data)
            files.append(describe(f"{d}/{name}", data))
        t.symlink(f"{d}/evil", "/etc/passwd")
        t.symlink(f"{d}/up", "../../..")
        t.hardlink(f"{d}/hard", "/etc/passwd")
        t.fifo(f"{d}/fifo")
        t.device(f"{d}/null", True, 1, 3)
        t.device(f"{d}/sda", False, 8, 0)
        special = [
            {"path": f"{d}/evil", "type": "symlink", "target": "/etc/passwd"},
            {"path": f"{d}/up", "type": "symlink", "target": "../../.."},
            {"path": f"{d}/hard", "type": "hardlink", "target": "/etc/passwd"},
            {"path": f"{d}/fifo", "type": "fifo"},
            {"path": f"{d}/null", "type": "chardev", "major": 1, "minor": 3},
            {"path": f"{d}/sda", "type": "blockdev", "major": 8, "minor": 0},
        ]
    else:  # links: the asset names themselves are links out
        t.symlink(f"{d}/vmlinuz", "/etc/passwd")
        t.hardlink(f"{d}/initramfs.xz", "/etc/passwd")
        special = [
            {"path": f"{d}/vmlinuz", "type": "symlink", "target": "/etc/passwd"},
            {"path": f"{d}/initramfs.xz", "type": "hardlink", "target": "/etc/passwd"},
        ]
    # a well-formed amd64 pair, so only arm64 is hostile
    for name in ("vmlinuz", "initramfs.xz"):
        data = make_asset(a.variant, f"hostile-{a.kind}", "amd64", name, SMALL)
        t.file(f"/assets/talos/amd64/{name}", data)
        files.append(describe(f"/assets/talos/amd64/{name}", data))
    t.close()
    record(
        a.manifest,
        a.ref,
        {"kind": "hostile", "layout": "assets", "variant": a.variant, "files": files, "special": special,
         "etc_passwd_sha256": hashlib.sha256(passwd).hexdigest()},
    )


def cmd_record(a):
    record(a.manifest, a.ref, json.loads(a.json))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("talos", "hostile"):
        s = sub.add_parser(name)
        s.add_argument("--variant", required=True)
        s.add_argument("--tag", required=True)
        s.add_argument("--out", required=True)
        s.add_argument("--manifest", required=True)
        s.add_argument("--ref", required=True)
        if name == "talos":
            s.add_argument("--layout", choices=["assets", "usr-install"], default="assets")
            s.add_argument("--seed-tag", help="content seed (default: --tag)")
        else:
            s.add_argument("--kind", choices=["entries", "links"], default="entries")
    s = sub.add_parser("record")
    s.add_argument("--manifest", required=True)
    s.add_argument("--ref", required=True)
    s.add_argument("--json", required=True)
    a = p.parse_args()
    {"talos": cmd_talos, "hostile": cmd_hostile, "record": cmd_record}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
