#!/usr/bin/env python3
"""Deterministic root-filesystem tarballs for cozyboot's offline test images.

Used by scripts/test-images; std-lib only.

  mkrootfs.py talos   --variant V --tag T --layout LAYOUT --out F.tar --manifest M.json --ref REF
  mkrootfs.py hostile --variant V --tag T --kind entries|links --out F.tar --manifest M.json --ref REF

Asset content is pseudo-random (SHAKE-256 of a seed naming variant, tag, arch and
file), so two builds are byte-identical and different variants/tags differ.
The manifest file (JSON) is updated in place with the path, size and sha256 of every
asset file written, under the image reference REF.

Layouts, in the shapes upstream publishes (shared/netboot-facts.md, "What the real published
images look like"; docs/testing.md):
  assets         /assets/talos/<arch>/{vmlinuz,initramfs.xz}          (the seed layout)
  usr-install    a Talos installer < v1.10: /usr/install/<arch>/{vmlinuz,initramfs.xz},
                 systemd-boot.efi, systemd-stub.efi, and for arm64 dtb/ (with a relative
                 symlink among the device trees), u-boot/, raspberrypi-firmware/
  uki            a Talos installer >= v1.10: /usr/install/<arch>/{systemd-boot.efi,vmlinuz.efi}
                 (a UKI: .osrel, .cmdline, .linux, .initrd sections) on installer-base style
                 files with usr-merge links (/bin -> usr/bin)
  assets-boot    the ARM64 fork's asset container (arm64 only): /assets/talos/arm64/boot/
                 {vmlinuz,initramfs.xz}, checksums.sha256 (./boot/... lines for every file),
                 validation/build-report.txt and a large metal.raw.xz
  bad-checksum   assets-boot whose checksums.sha256 has a wrong digest for boot/initramfs.xz
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


class Zeros(io.RawIOBase):
    """`size` zero bytes, never held in memory at once."""

    def __init__(self, size: int):
        self.left = size

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


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

    def file_zeros(self, path: str, size: int):
        self.mkdirs(os.path.dirname(path))
        ti = self._info(path, tarfile.REGTYPE, 0o644)
        ti.size = size
        self.tf.addfile(ti, Zeros(size))

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


def pe_image(machine: int, sections) -> bytes:
    """A minimal PE32+ EFI application with the given (name, bytes) sections, laid out as
    ukify does: headers, then each section's raw data at a 512-byte file alignment, the
    virtual size being the exact data length. Mirrors cozyboot::artifacts::uki::build_for_tests."""
    align = lambda n: (n + 0x1FF) // 0x200 * 0x200
    pe_at, opt_len = 0x80, 240
    table_at = pe_at + 24 + opt_len
    headers = align(table_at + 40 * len(sections))
    out = bytearray(headers)
    out[0:2] = b"MZ"
    struct.pack_into("<I", out, 0x3C, pe_at)
    out[pe_at:pe_at + 4] = b"PE\0\0"
    struct.pack_into("<HH", out, pe_at + 4, machine, len(sections))
    struct.pack_into("<HH", out, pe_at + 20, opt_len, 0x0206)
    opt = pe_at + 24
    struct.pack_into("<H", out, opt, 0x20B)
    struct.pack_into("<II", out, opt + 32, 0x1000, 0x200)
    struct.pack_into("<I", out, opt + 60, headers)
    struct.pack_into("<H", out, opt + 68, 10)
    struct.pack_into("<I", out, opt + 108, 16)
    raw, vaddr = headers, 0x1000
    for i, (name, data) in enumerate(sections):
        h = table_at + 40 * i
        out[h:h + 8] = name.encode().ljust(8, b"\0")[:8]
        struct.pack_into("<IIII", out, h + 8, len(data), vaddr, align(len(data)), raw)
        struct.pack_into("<I", out, h + 36, 0x40000040)
        raw += align(len(data))
        vaddr += (len(data) + 0xFFF) // 0x1000 * 0x1000
    struct.pack_into("<I", out, opt + 56, vaddr)
    for _, data in sections:
        out += data
        out += b"\0" * (align(len(out)) - len(out))
    return bytes(out)


def efi_stub(arch: str, what: str) -> bytes:
    """A stand-in systemd-boot/systemd-stub binary: a PE of the right machine."""
    machine = 0xAA64 if arch == "arm64" else 0x8664
    return pe_image(machine, [(".text", pseudo_random(f"cozyboot-test:{what}:{arch}", 4096))])


def cmd_talos(a):
    t = Tar(a.out)
    files, extra = [], []
    seed = a.seed_tag or a.tag
    arches = ("arm64",) if a.layout in ("assets-boot", "bad-checksum") else ("arm64", "amd64")
    if a.layout == "uki":
        # installer-base: the installer and its tools, with usr-merge links
        t.file("/usr/bin/installer", pseudo_random("cozyboot-test:installer", 64 * 1024), 0o755)
        t.file("/usr/lib/os-release", b"NAME=Talos\nID=talos\n")
        for link, target in (("/bin", "usr/bin"), ("/lib", "usr/lib"), ("/sbin", "usr/bin")):
            t.symlink(link, target)
        extra.append({"path": "/bin", "type": "symlink", "target": "usr/bin"})
    for arch in arches:
        pair = {n: make_asset(a.variant, seed, arch, n, SIZES[(arch, n)]) for n in ("vmlinuz", "initramfs.xz")}
        if a.layout == "assets":
            for name, data in pair.items():
                t.file(f"/assets/talos/{arch}/{name}", data)
                files.append(describe(f"/assets/talos/{arch}/{name}", data))
        elif a.layout == "usr-install":
            d = f"/usr/install/{arch}"
            for name, data in pair.items():
                t.file(f"{d}/{name}", data)
                files.append(describe(f"{d}/{name}", data))
            t.file(f"{d}/systemd-boot.efi", efi_stub(arch, "systemd-boot"))
            t.file(f"{d}/systemd-stub.efi", efi_stub(arch, "systemd-stub"))
            if arch == "arm64":
                for i in range(1, 4):
                    t.file(f"{d}/dtb/broadcom/bcm{i}.dtb", b"\xd0\x0d\xfe\xed" + pseudo_random(f"dtb{i}", 2048))
                t.file(f"{d}/dtb/rockchip/rk3588-rock-5b.dtb", b"\xd0\x0d\xfe\xed" + pseudo_random("rk", 2048))
                t.symlink(f"{d}/dtb/broadcom/bcm2711-rpi-cm4.dtb", "bcm1.dtb")
                t.file(f"{d}/u-boot/rpi_arm64/u-boot.bin", pseudo_random("u-boot", 8192))
                t.file(f"{d}/raspberrypi-firmware/boot/start4.elf", pseudo_random("start4", 8192))
                t.file(f"{d}/raspberrypi-firmware/boot/config.txt", b"arm_64bit=1\nenable_uart=1\n")
                extra.append({"path": f"{d}/dtb/broadcom/bcm2711-rpi-cm4.dtb", "type": "symlink", "target": "bcm1.dtb"})
        elif a.layout == "uki":
            d = f"/usr/install/{arch}"
            machine = 0xAA64 if arch == "arm64" else 0x8664
            cmdline = b"talos.platform=metal console=tty0 cozyboot.embedded=1\0"
            uki = pe_image(machine, [(".osrel", b"ID=talos\n"), (".cmdline", cmdline),
                                     (".linux", pair["vmlinuz"]), (".initrd", pair["initramfs.xz"])])
            t.file(f"{d}/systemd-boot.efi", efi_stub(arch, "systemd-boot"))
            t.file(f"{d}/vmlinuz.efi", uki)
            files.append(describe(f"{d}/vmlinuz.efi", uki))
            # what cozyboot must take out of the UKI's sections
            for name, data in pair.items():
                files.append(describe(f"{d}/vmlinuz.efi:{name}", data))
        else:  # assets-boot, bad-checksum: the ARM64 fork's asset container
            d = f"/assets/talos/{arch}"
            sums = []
            for name, data in pair.items():
                t.file(f"{d}/boot/{name}", data)
                files.append(describe(f"{d}/boot/{name}", data))
                digest = hashlib.sha256(data).hexdigest()
                if a.layout == "bad-checksum" and name == "initramfs.xz":
                    digest = hashlib.sha256(b"not the initramfs").hexdigest()
                sums.append(f"{digest}  ./boot/{name}")
            report = b"build: cozystack-spin-only arm64\nkernel: ok\ninitramfs: ok\n"
            t.file(f"{d}/validation/build-report.txt", report)
            sums.append(f"{hashlib.sha256(report).hexdigest()}  ./validation/build-report.txt")
            # large, and compressible so the registry does not care: never to be read
            big = (a.extra_mib if a.extra_mib is not None else 256 if a.layout == "assets-boot" else 1) * 1024 * 1024
            t.file_zeros(f"{d}/metal.raw.xz", big)
            sums.append(f"{hashlib.sha256(bytes(big)).hexdigest()}  ./metal.raw.xz")
            text = ("\n".join(sums) + "\n").encode()
            t.file(f"{d}/checksums.sha256", text)
            extra.append({"path": f"{d}/metal.raw.xz", "size": big})
    t.close()
    record(a.manifest, a.ref, {"kind": "talos", "layout": a.layout, "variant": a.variant, "files": files, "extra": extra})


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
            s.add_argument("--layout", choices=["assets", "usr-install", "uki", "assets-boot", "bad-checksum"],
                           default="assets")
            s.add_argument("--extra-mib", type=int, help="size of metal.raw.xz (default 256 for assets-boot, else 1)")
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
