#!/usr/bin/env bash
# xenbus lab: boots a real Xen 4.17 under QEMU, with Debian's Linux 6.1 as a PV dom0 and as PV
# domUs, and runs tests/xenlab/scenarios/*.sh in dom0 against this project's programs.
#
# Usage: scripts/xenlab.sh [--build DIR] [--cache DIR] [--only GLOB] [--timeout S] [--cycles N]
#                          [--xenstored oxenstored|xenstored|PATH] [--accel tcg|kvm] [--shell]
#
#   --build DIR     the build tree holding the programs listed in tests/xenlab/binaries.txt (build/dev)
#   --cache DIR     downloaded packages, unpacked kernel and hypervisor, images and serial logs
#                   (default $XENBUS_XENLAB_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/xenbus-xenlab)
#   --only GLOB     run only the scenarios whose file name matches GLOB (default: all)
#   --timeout S     hard deadline for the whole QEMU run in seconds (default 600)
#   --cycles N      create/destroy cycles in the domain-death scenario (default 20)
#   --xenstored X   dom0's xenstored: oxenstored (default), xenstored (C), or a path inside dom0
#                   such as /xenlab/bin/xenbus-xenstored
#   --accel A       tcg (default; the only one that runs Xen on hosts without nested virtualisation)
#                   or kvm (untested here)
#   --shell         serial console on this terminal, a dom0 shell after the scenarios, no deadline
#
# It downloads xen-hypervisor-4.17-amd64, the linux-image that linux-image-amd64 points to and
# busybox-static with `apt-get download` into the cache and unpacks them there: it never installs a
# hypervisor or touches /boot. The dom0 image carries the host's Xen tools (xen-utils-4.17). Prints
# one `XENLAB PASS|FAIL <check>` line per check and a summary; exits 0 only if every check passed
# and every selected scenario ran to its end. It stops only the QEMU process it started.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LAB=$ROOT/tests/xenlab
BUILD=$ROOT/build/dev
CACHE=${XENBUS_XENLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xenbus-xenlab}
ONLY='*'
TIMEOUT=600
CYCLES=20
XENSTORED=oxenstored
ACCEL=tcg
SHELL_MODE=0
while (($#)); do
  case $1 in
    --build) BUILD=$(cd "$2" && pwd); shift 2 ;;
    --cache) CACHE=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --cycles) CYCLES=$2; shift 2 ;;
    --xenstored) XENSTORED=$2; shift 2 ;;
    --accel) ACCEL=$2; shift 2 ;;
    --shell) SHELL_MODE=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "xenlab: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done

XENV=4.17
XENBIN=/usr/lib/xen-$XENV/bin
T0=$(date +%s.%N)
since() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
step() { echo "xenlab [+$(since)s] $*" >&2; }
die() { echo "XENLAB FAIL setup: $*"; exit 1; }

# ---- 1. what the host must have (scripts/deps.sh installs all of it)
for tool in qemu-system-x86_64 cpio xz zcat dpkg-deb apt-get ldd flock depmod strip; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/deps.sh"
done
[ -x "$XENBIN/xl" ] || die "$XENBIN/xl is missing: xen-utils-$XENV (run scripts/deps.sh)"
[ -x /usr/bin/xenstore ] || die "/usr/bin/xenstore is missing: xenstore-utils (run scripts/deps.sh)"
mkdir -p "$CACHE"/{debs,logs}
exec 9>"$CACHE/lock"
flock -n 9 || die "another xenlab run holds $CACHE/lock"

is_elf() { [ "$(od -An -tx1 -N4 "$1" 2>/dev/null | tr -d ' \n')" = 7f454c46 ]; }

# ---- 2. hypervisor, kernel and busybox: downloaded and unpacked, never installed
EXT=$CACHE/ext
if ! ls "$EXT"/boot/vmlinuz-* >/dev/null 2>&1 || [ ! -f "$EXT/boot/xen-$XENV-amd64.gz" ] || [ ! -x "$EXT/bin/busybox" ]; then
  kpkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'; }
  KPKG=$(kpkg)
  if [ -z "$KPKG" ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    KPKG=$(kpkg)
  fi
  [ -n "$KPKG" ] || die "apt cannot resolve linux-image-amd64"
  step "downloading xen-hypervisor-$XENV-amd64 $KPKG busybox-static"
  rm -rf "$EXT" "$CACHE"/debs/*.deb
  (cd "$CACHE/debs" && apt-get download -q "xen-hypervisor-$XENV-amd64" "$KPKG" busybox-static) \
    >"$CACHE/logs/download.log" 2>&1 || die "apt-get download failed (see $CACHE/logs/download.log)"
  mkdir -p "$EXT"
  for deb in "$CACHE"/debs/*.deb; do dpkg-deb -x "$deb" "$EXT"; done
fi
VMLINUZ=$(ls "$EXT"/boot/vmlinuz-* | sort -V | tail -1)
KVER=${VMLINUZ##*/vmlinuz-}
MODDIR=$EXT/lib/modules/$KVER
# The package leaves modules.dep to depmod at install time; make it here, inside the cache.
[ -s "$MODDIR/modules.dep" ] || depmod -b "$EXT" "$KVER" || die "depmod for $KVER failed"
XEN_ELF=$CACHE/xen-$XENV.elf
# QEMU's multiboot loader takes Xen's ELF32 image as it is: no boot loader, no ISO.
[ -s "$XEN_ELF" ] || zcat "$EXT/boot/xen-$XENV-amd64.gz" >"$XEN_ELF"
# The kernel as an ELF, unpacked once here: Xen and libxenguest accept it, and unpacking the
# bzImage's xz payload under emulation would cost seconds at every boot and every `xl create`.
VMLINUX=$CACHE/vmlinux-$KVER
if [ ! -s "$VMLINUX" ]; then
  magic=$(grep -abo $'\xfd7zXZ\x00' "$VMLINUZ" | head -1 | cut -d: -f1)
  [ -n "$magic" ] || die "no xz payload in $VMLINUZ"
  tail -c +$((magic + 1)) "$VMLINUZ" | xz -dc --single-stream >"$VMLINUX.tmp" 2>/dev/null || true
  is_elf "$VMLINUX.tmp" || die "could not unpack the kernel in $VMLINUZ"
  mv "$VMLINUX.tmp" "$VMLINUX"
fi
step "Xen $XENV, Linux $KVER"

# ---- 3. the two initramfs images
IMG=$CACHE/images
rm -rf "$IMG" && mkdir -p "$IMG"

# put_elf ROOT SRC [DEST]: copies an executable or library and every library ldd names for it.
put_elf() {
  local root=$1 src=$2 dest=${3:-$2} lib
  mkdir -p "$root$(dirname "$dest")"
  cp -L "$src" "$root$dest"
  for lib in $(ldd "$src" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    [ -e "$root$lib" ] && continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
# base_root ROOT: busybox and the directories both domains need.
base_root() {
  local root=$1 applet
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,etc,root,var/log,xenlab/bin}
  cp "$EXT/bin/busybox" "$root/bin/busybox"
  for applet in $("$EXT/bin/busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  ln -s ../run "$root/var/run"
  echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
  echo 'root:x:0:' >"$root/etc/group"
  put_elf "$root" /usr/bin/xenstore
  for t in chmod exists list ls read rm watch write; do ln -s xenstore "$root/usr/bin/xenstore-$t"; done
}
# modules ROOT NAME...: the named modules and what they depend on (modules.dep), in load order.
modules() {
  local root=$1 m dep f
  shift
  mkdir -p "$root/lib/modules/xenlab"
  : >"$root/lib/modules/xenlab/order"
  add_module() {
    local name=$1 path line d
    grep -qx "$name" "$root/lib/modules/xenlab/order" && return 0
    path=$(awk -F: -v n="$name" '{ b = $1; sub(/.*\//, "", b); sub(/\.ko.*/, "", b); gsub(/_/, "-", b); x = n; gsub(/_/, "-", x) } b == x { print $1; exit }' "$MODDIR/modules.dep")
    if [ -z "$path" ]; then
      grep -q "/${name//-/[-_]}.ko" "$MODDIR/modules.builtin" 2>/dev/null && return 0  # built into the kernel
      die "kernel module $name not found in $MODDIR"
    fi
    line=$(grep "^$path:" "$MODDIR/modules.dep" | cut -d: -f2)
    for d in $line; do
      d=${d##*/}
      add_module "${d%%.ko*}"
    done
    case $path in
      *.ko.xz) xz -dc "$MODDIR/$path" >"$root/lib/modules/xenlab/$name.ko" ;;
      *.ko) cp "$MODDIR/$path" "$root/lib/modules/xenlab/$name.ko" ;;
      *) die "unsupported module compression: $path" ;;
    esac
    echo "$name" >>"$root/lib/modules/xenlab/order"
  }
  for m in "$@"; do add_module "$m"; done
}
# Our programs, from tests/xenlab/binaries.txt, go to /xenlab/bin in both domains.
programs() {
  local root=$1 t f
  while read -r t; do
    t=${t%%#*}
    t=${t// /}
    [ -n "$t" ] || continue
    f=$(find "$BUILD" -path "$BUILD/_deps" -prune -o -type f -name "$t" -perm -u+x -print | head -1)
    [ -n "$f" ] || die "program $t (tests/xenlab/binaries.txt) is not built in $BUILD"
    put_elf "$root" "$f" "/xenlab/bin/$t"
    # Without debug info (a RelWithDebInfo program is ~10x its code): the domU unpacks its
    # initramfs into 128 MiB, and a 26 MiB image already failed there ("Initramfs unpacking
    # failed: write error", then every file the agent writes is lost).
    strip --strip-debug "$root/xenlab/bin/$t"
  done <"$LAB/binaries.txt"
}
cpio_of() { (cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >"$2"; }

step "building the domU image"
R=$IMG/domu-root
base_root "$R"
programs "$R"
modules "$R" xen-blkfront xen-netfront xen-evtchn xen-gntdev xen-gntalloc ext4 crc32c_generic  # the blkback scenario mounts ext2
cp "$LAB/domu-init.sh" "$R/init"
chmod +x "$R/init"
cpio_of "$R" "$IMG/domu.cpio"  # uncompressed: libxenguest would otherwise unpack it under emulation

step "building the dom0 image"
R=$IMG/dom0-root
base_root "$R"
programs "$R"
for f in "$XENBIN"/*; do is_elf "$f" && put_elf "$R" "$f"; done
# xl's pthread_cancel dlopens libgcc_s; ldd cannot see that.
put_elf "$R" "$(gcc -print-file-name=libgcc_s.so.1 2>/dev/null || echo /lib/x86_64-linux-gnu/libgcc_s.so.1)" /lib/x86_64-linux-gnu/libgcc_s.so.1
for t in xl xenstored oxenstored xenconsoled xen-init-dom0; do ln -sf "$XENBIN/$t" "$R/usr/sbin/$t"; done
mkdir -p "$R/etc/xen/scripts" "$R/var/lib/xen" "$R/var/lib/xenstored" "$R/var/log/xen/console"
for f in xl.conf oxenstored.conf; do [ -f "/etc/xen/$f" ] && cp "/etc/xen/$f" "$R/etc/xen/"; done
cp "$LAB"/hotplug/* "$R/etc/xen/scripts/"
chmod +x "$R"/etc/xen/scripts/*
modules "$R" xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs xen-blkback xen-netback bridge brd loop ext4 crc32c_generic
mkdir -p "$R/xenlab/domu" "$R/xenlab/scenarios"
cp "$VMLINUX" "$R/xenlab/domu/vmlinux"
cp "$IMG/domu.cpio" "$R/xenlab/domu/initrd.cpio"
cp "$LAB/lib.sh" "$R/xenlab/lib.sh"
cp "$LAB"/scenarios/*.sh "$R/xenlab/scenarios/"
cp "$LAB/dom0-init.sh" "$R/init"
chmod +x "$R/init"
cat >"$R/xenlab/config.sh" <<EOF
XENLAB_ONLY='$ONLY'
XENLAB_CYCLES=$CYCLES
XENLAB_XENSTORED='$XENSTORED'
XENLAB_SHELL=$SHELL_MODE
EOF
cpio_of "$R" "$IMG/dom0.cpio"
step "images: dom0 $(du -h "$IMG/dom0.cpio" | cut -f1), domU $(du -h "$IMG/domu.cpio" | cut -f1)"

# ---- 4. boot
case $ACCEL in
  # SMAP off: with it, QEMU's emulation and Xen's PV bounce frames crash dom0 at its first fault.
  tcg) QACCEL=(-accel tcg,thread=multi,tb-size=512 -cpu max,-smap) ;;
  kvm) QACCEL=(-accel kvm -cpu host,-arch-capabilities,-smap) ;;
  *) die "--accel $ACCEL" ;;
esac
XEN_CMDLINE="console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all console_timestamps=boot dom0_mem=768M,max:768M dom0_max_vcpus=1 noreboot"
DOM0_CMDLINE="console=hvc0 earlyprintk=xen loglevel=4 clocksource=xen rdinit=/init"
QEMU=(qemu-system-x86_64 -machine pc "${QACCEL[@]}" -m 2048 -smp 2 -nodefaults -display none -no-reboot -nic none
  -kernel "$XEN_ELF" -append "$XEN_CMDLINE" -initrd "$VMLINUX $DOM0_CMDLINE,$IMG/dom0.cpio")
if [ "$SHELL_MODE" = 1 ]; then
  step "QEMU with the serial console here; Ctrl-a x quits"
  exec "${QEMU[@]}" -serial mon:stdio
fi
LOG=$CACHE/logs/serial-$(date +%Y%m%d-%H%M%S).log
ln -sf "$(basename "$LOG")" "$CACHE/logs/serial-latest.log"
"${QEMU[@]}" -serial "file:$LOG" -monitor none >"$LOG.qemu" 2>&1 &
QPID=$!
stop_qemu() {
  if kill -0 "$QPID" 2>/dev/null; then
    kill -TERM "$QPID" 2>/dev/null || true
    for _ in 1 2 3 4 5; do kill -0 "$QPID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$QPID" 2>/dev/null || true
  fi
  wait "$QPID" 2>/dev/null || true
}
trap 'stop_qemu' EXIT
trap 'stop_qemu; exit 130' INT TERM
step "QEMU pid $QPID, serial log $LOG, deadline ${TIMEOUT}s"

# Follow the serial log: print our lines as they come, stop at the end marker, a crash, or the deadline.
shown=0
end=""
qcpu=""
qrss=""
show_new() {
  local n
  n=$(wc -l <"$LOG" 2>/dev/null || echo 0)
  if ((n > shown)); then
    sed -n "$((shown + 1)),${n}p" "$LOG" | tr -d '\r' | grep -a -E '^XENLAB ' || true
    shown=$n
  fi
}
while :; do
  show_new
  if grep -aq '^XENLAB-END' "$LOG" 2>/dev/null; then end=done; break; fi
  if grep -aqE 'Panic on CPU|Kernel panic|Hardware Dom0 crashed|\*\*\*\* PANIC' "$LOG" 2>/dev/null; then
    sleep 2; end=crash; break
  fi
  kill -0 "$QPID" 2>/dev/null || { end=exited; break; }
  if awk -v e="$(since)" -v t="$TIMEOUT" 'BEGIN { exit !(e > t) }'; then end=deadline; break; fi
  if [ -r "/proc/$QPID/stat" ]; then
    qcpu=$(awk '{ printf "%.0f", ($14 + $15) / 100 }' "/proc/$QPID/stat" 2>/dev/null || echo "$qcpu")
    qrss=$(awk '/VmHWM/ { printf "%.2f GB", $2 / 1048576 }' "/proc/$QPID/status" 2>/dev/null || echo "$qrss")
  fi
  sleep 1
done
# dom0 powers off after the end marker; Xen then leaves QEMU through ACPI S5.
for _ in $(seq 1 20); do kill -0 "$QPID" 2>/dev/null || break; sleep 0.5; done
stop_qemu
show_new
wall=$(since)

# ---- 5. verdict
passes=$(tr -d '\r' <"$LOG" | grep -ac '^XENLAB PASS ' || true)
fails=$(tr -d '\r' <"$LOG" | grep -ac '^XENLAB FAIL ' || true)
summary=$(tr -d '\r' <"$LOG" | grep -a '^XENLAB-END' | tail -1 || true)
echo "== xenlab: Xen $XENV + Linux $KVER under QEMU ($ACCEL), xenstored $XENSTORED: $wall s wall, QEMU ${qcpu:-?} s CPU, peak RSS ${qrss:-?}"
echo "   serial log: $LOG"
if [ "$end" = done ] && [ "$fails" = 0 ] && [ "$passes" -gt 0 ] && [[ $summary == *" complete=yes"* ]]; then
  echo "XENLAB PASSED: $passes checks, 0 failed (${summary#XENLAB-END })"
  exit 0
fi
case $end in
  crash) echo "XENLAB FAIL: a crash or panic in the serial log" ;;
  exited) echo "XENLAB FAIL: QEMU exited before the end marker" ;;
  deadline) echo "XENLAB FAIL: deadline of ${TIMEOUT}s hit" ;;
esac
echo "XENLAB FAILED: $passes passed, $fails failed${summary:+ (${summary#XENLAB-END })}; last lines of the serial log:"
tr -d '\r' <"$LOG" | tail -40 | sed 's/^/  | /'
exit 1
