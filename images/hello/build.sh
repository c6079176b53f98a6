#!/bin/sh
# Rebuild the tiny static "hello" binaries in images/hello/<arch>/hello from
# the assembly sources in images/hello/src/<arch>.s.
#
# Needs only GNU binutils cross assemblers/linkers (no compiler, no libc).
# On Debian/Ubuntu:
#   apt-get install -y binutils-x86-64-linux-gnu binutils-i686-linux-gnu \
#     binutils-aarch64-linux-gnu binutils-arm-linux-gnueabihf \
#     binutils-arm-linux-gnueabi binutils-powerpc64le-linux-gnu \
#     binutils-s390x-linux-gnu binutils-riscv64-linux-gnu \
#     binutils-mips64el-linux-gnuabi64
#
# Output is reproducible: no build-id, symbols stripped, and nothing
# time- or path-dependent ends up in the ELF files.
#
# Usage: ./build.sh [arch...]      (default: all arches)
set -eu

cd "$(dirname "$0")"
export LC_ALL=C

ALL_ARCHES="amd64 i386 arm64v8 arm32v7 arm32v5 ppc64le s390x riscv64 mips64le"

# Per arch: binutils triplet prefix | extra `as` flags | extra `ld` flags
cfg() {
	case "$1" in
	amd64)    echo "x86_64-linux-gnu|--64 -mx86-used-note=no|-m elf_x86_64" ;;
	i386)     echo "i686-linux-gnu|--32 -mx86-used-note=no|-m elf_i386" ;;
	arm64v8)  echo "aarch64-linux-gnu|-EL|-m aarch64linux -EL" ;;
	arm32v7)  echo "arm-linux-gnueabihf|-EL -meabi=5 -march=armv7-a -mfpu=vfpv3-d16 -mfloat-abi=hard|-m armelf_linux_eabi -EL" ;;
	arm32v5)  echo "arm-linux-gnueabi|-EL -meabi=5 -march=armv5te -mfloat-abi=soft|-m armelf_linux_eabi -EL" ;;
	ppc64le)  echo "powerpc64le-linux-gnu|-a64 -mlittle -mpower8|-m elf64lppc -EL" ;;
	s390x)    echo "s390x-linux-gnu|-m64|-m elf64_s390" ;;
	riscv64)  echo "riscv64-linux-gnu|-march=rv64gc -mabi=lp64d|-m elf64lriscv" ;;
	mips64le) echo "mips64el-linux-gnuabi64|-EL -mabi=64 -march=mips64r2 -non_shared|-m elf64ltsmip -EL" ;;
	*) echo "unknown arch: $1" >&2; return 1 ;;
	esac
}

[ "$#" -gt 0 ] || set -- $ALL_ARCHES

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for arch in "$@"; do
	c=$(cfg "$arch")
	triplet=${c%%|*}; rest=${c#*|}
	asflags=${rest%%|*}; ldflags=${rest#*|}
	for tool in as ld; do
		command -v "$triplet-$tool" >/dev/null 2>&1 || {
			echo "missing $triplet-$tool (apt-get install binutils-$(echo "$triplet" | tr _ -))" >&2
			exit 1
		}
	done

	mkdir -p "$arch"
	# shellcheck disable=SC2086
	"$triplet-as" $asflags -o "$tmp/$arch.o" "src/$arch.s"
	# -static -s --build-id=none: static, stripped, no build-id note.
	# -z noseparate-code: one R+X segment, so the file stays a few hundred bytes.
	# shellcheck disable=SC2086
	"$triplet-ld" $ldflags -static -s --build-id=none -z noseparate-code \
		-z noexecstack -o "$tmp/$arch.hello" "$tmp/$arch.o"
	chmod 0755 "$tmp/$arch.hello"
	mv "$tmp/$arch.hello" "$arch/hello"
	printf '%-9s %5s bytes  %s\n' "$arch" "$(wc -c <"$arch/hello" | tr -d ' ')" \
		"$(sha256sum "$arch/hello" | cut -d' ' -f1)"
done
