# cozyboot: copy the Talos kernel and initramfs of one architecture out of the variant's
# image into matchbox's assets, as `cozyboot up` does on a host. POSIX sh (busybox ash, dash):
# the Talos image has no shell of its own, so this runs under a busybox copied in beside it.
#
# Usage: fetch-assets.sh ROOT ARCH OUT
#   ROOT  where the image's files are (/ when run in the image, an image volume's mount else)
#   ARCH  the asset directory name (arm64, amd64)
#   OUT   where vmlinuz and initramfs.xz go
# LAYOUTS (environment): one "kind dir files checksums prefix" line per layout, in the order
# `up` tries them, written by `cozyboot render --kubernetes` from the same table (`-` = none).
set -eu
root=$1 arch=$2 out=$3
mkdir -p "$out"

u16() { od -An -tu2 -j "$2" -N2 "$1" | tr -d ' \n'; }
u32() { od -An -tu4 -j "$2" -N4 "$1" | tr -d ' \n'; }

# The byte range of the PE section named $2 of file $1, as "offset size": the same range
# Talos's own uki.Extract and cozyboot's split take (raw data, no more than the virtual size).
section() {
  pe=$(u32 "$1" 60)
  count=$(u16 "$1" $((pe + 6)))
  optional=$(u16 "$1" $((pe + 20)))
  table=$((pe + 24 + optional))
  i=0
  while [ "$i" -lt "$count" ]; do
    at=$((table + i * 40))
    name=$(dd if="$1" bs=1 skip="$at" count=8 2>/dev/null | tr -d '\000')
    if [ "$name" = "$2" ]; then
      virtual=$(u32 "$1" $((at + 8)))
      raw=$(u32 "$1" $((at + 16)))
      offset=$(u32 "$1" $((at + 20)))
      size=$raw
      [ "$virtual" -lt "$size" ] && size=$virtual
      echo "$offset $size"
      return 0
    fi
    i=$((i + 1))
  done
  return 1
}

extract() {
  range=$(section "$1" "$2") || { echo "cozyboot: $1 has no $2 section: not a UKI" >&2; exit 1; }
  set -- "$1" "$2" "$3" $range
  [ "$5" -gt 0 ] || { echo "cozyboot: the $2 section of $1 is empty" >&2; exit 1; }
  tail -c +$(($4 + 1)) "$1" | head -c "$5" > "$3"
  [ "$(wc -c < "$3" | tr -d " ")" -eq "$5" ] || { echo "cozyboot: $1 is shorter than its $2 section says (truncated?)" >&2; exit 1; }
}

echo "$LAYOUTS" | while read -r kind dir files sums prefix; do
  [ -n "$kind" ] || continue
  [ "$prefix" != "-" ] || prefix=
  missing=
  for f in $(echo "$files" | tr ',' ' '); do
    [ -f "$root$dir/$f" ] || missing=$f
  done
  [ -z "$missing" ] || continue
  echo "cozyboot: $arch assets: layout $kind in $dir"
  if [ "$sums" != "-" ] && [ -f "$root$sums" ]; then
    # Each served file must be listed, and match, as `up` insists.
    for f in $(echo "$files" | tr ',' ' '); do
      want=$(sed -n "s#^\([0-9a-fA-F]\{64\}\)[ ]\{1,2\}[*]\{0,1\}\(\./\)\{0,1\}$prefix$f\$#\1#p" "$root$sums" | head -n 1)
      [ -n "$want" ] || { echo "cozyboot: $root$sums lists no $prefix$f" >&2; exit 1; }
      got=$(sha256sum "$root$dir/$f" | cut -d ' ' -f 1)
      [ "$got" = "$(echo "$want" | tr 'A-F' 'a-f')" ] || { echo "cozyboot: $dir/$f does not match $sums" >&2; exit 1; }
    done
  fi
  case $kind in
    installer-uki)
      extract "$root$dir/vmlinuz.efi" .linux "$out/vmlinuz.part"
      extract "$root$dir/vmlinuz.efi" .initrd "$out/initramfs.xz.part"
      ;;
    *)
      cp "$root$dir/vmlinuz" "$out/vmlinuz.part"
      cp "$root$dir/initramfs.xz" "$out/initramfs.xz.part"
      ;;
  esac
  mv "$out/vmlinuz.part" "$out/vmlinuz"
  mv "$out/initramfs.xz.part" "$out/initramfs.xz"
  chmod 0644 "$out/vmlinuz" "$out/initramfs.xz"
  exit 0
done
[ -f "$out/vmlinuz" ] || {
  echo "cozyboot: no layout of the image holds the $arch kernel and initramfs; looked for:" >&2
  echo "$LAYOUTS" | sed 's/^/  /' >&2
  exit 1
}
