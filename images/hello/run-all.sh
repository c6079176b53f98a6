#!/bin/sh
# Run every images/hello/<arch>/hello — natively when the host can, otherwise
# under qemu-user (qemu-<arch>-static, Debian package qemu-user-static) — and
# check that each exits 0 and prints exactly its greeting naming the platform.
#
# Usage: ./run-all.sh [arch...]      (default: every <arch>/hello present)
set -u

cd "$(dirname "$0")"

# bashbrew arch -> OCI platform | qemu-user name | `uname -m` values that run it natively
info() {
	case "$1" in
	amd64)    echo "linux/amd64|x86_64|x86_64" ;;
	i386)     echo "linux/386|i386|i386 i486 i586 i686 x86_64" ;;
	arm64v8)  echo "linux/arm64/v8|aarch64|aarch64 arm64" ;;
	arm32v7)  echo "linux/arm/v7|arm|armv7l armv8l aarch64" ;;
	arm32v5)  echo "linux/arm/v5|arm|armv5tel armv6l armv7l armv8l aarch64" ;;
	ppc64le)  echo "linux/ppc64le|ppc64le|ppc64le" ;;
	s390x)    echo "linux/s390x|s390x|s390x" ;;
	riscv64)  echo "linux/riscv64|riscv64|riscv64" ;;
	mips64le) echo "linux/mips64le|mips64el|mips64" ;;
	*) return 1 ;;
	esac
}

if [ "$#" -eq 0 ]; then
	for d in */hello; do [ -f "$d" ] && set -- "$@" "${d%/hello}"; done
fi

host=$(uname -m)
fail=0
for arch in "$@"; do
	i=$(info "$arch") || { echo "FAIL $arch: unknown arch"; fail=1; continue; }
	platform=${i%%|*}; rest=${i#*|}
	qemu=${rest%%|*}; natives=${rest#*|}
	want="Hello from imgraph! This image runs on $platform ($arch)."
	bin=./$arch/hello

	[ -x "$bin" ] || { echo "FAIL $arch: $bin missing or not executable"; fail=1; continue; }

	runner="" out="" rc=1
	case " $natives " in *" $host "*)
		# Native is possible in principle (e.g. i386 on x86_64 needs
		# IA32 emulation in the kernel); fall back to qemu if exec fails.
		if out=$("$bin" 2>&1); then runner=native rc=0; fi ;;
	esac
	if [ -z "$runner" ]; then
		runner=$(command -v "qemu-$qemu-static" || command -v "qemu-$qemu") || {
			echo "FAIL $arch: no qemu-$qemu-static (apt-get install qemu-user-static)"
			fail=1; continue
		}
		out=$("$runner" "$bin"); rc=$?
	fi

	if [ "$rc" -eq 0 ] && [ "$out" = "$want" ]; then
		printf 'ok   %-9s [%s] %s\n' "$arch" "$(basename "$runner")" "$out"
	else
		printf 'FAIL %-9s [%s] rc=%s output=%s (want: %s)\n' "$arch" "$(basename "$runner")" "$rc" "$out" "$want"
		fail=1
	fi
done
exit "$fail"
