#!/bin/sh
# Runs inside the tier's guest (run.sh --bench-boot): `trapbox boot` and QEMU with KVM boot the
# same kernel, initramfs and command line, alternately, ROUNDS times each. Both are timed the
# same way by tstamp (process start → first console byte, → init's line, → exit), and VM exits
# are KVM's own count (debugfs /sys/kernel/debug/kvm/exits, every exit, in-kernel ones
# included) read before and after each run. Prints one row per run, then medians.
T=/tb/trapbox
K=/tb/boot/vmlinuz
I=/tb/boot/initrd.gz
ROUNDS=${ROUNDS:-3}
CMDLINE="console=ttyS0 reboot=k panic=-1 pci=off i8042.nokbd i8042.noaux i8042.nomux i8042.nopnp"
MARK=TRAPBOX-INNER-INIT
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
stat() { cat /sys/kernel/debug/kvm/$1 2>/dev/null || echo 0; }

# tstamp execs its arguments, so each VMM's command line is a small script.
cat > /tmp/vmm-trapbox <<EOT
exec $T boot --kernel $K --initrd $I --no-default-cmdline --cmdline "$CMDLINE" --time --silence-timeout 600 --timeout 900 </dev/null
EOT
cat > /tmp/vmm-qemu <<EOT
exec timeout 900 qemu-system-x86_64 -enable-kvm -cpu host -m 256M -smp 1 -nographic -vga none -no-reboot -nic none \\
  -kernel $K -initrd $I -append "$CMDLINE" </dev/null
EOT

echo "bench-boot: $(uname -r) + busybox initramfs, 1 vCPU, 256 MiB, same command line; kvm_amd inside QEMU TCG"
echo "bench-boot: qemu: $(qemu-system-x86_64 --version | head -1)"
rows=/tmp/bench-rows
: > $rows
r=1
while [ $r -le $ROUNDS ]; do
  for vmm in trapbox qemu; do
    e0=$(stat exits); io0=$(stat io_exits); m0=$(stat mmio_exits)
    /tb/tstamp "$MARK" sh /tmp/vmm-$vmm > /tmp/bench.out 2> /tmp/bench.err
    e1=$(stat exits); io1=$(stat io_exits); m1=$(stat mmio_exits)
    t=$(grep '^tstamp:' /tmp/bench.err | tail -1)
    first=$(echo "$t" | awk '{print $3}'); mark=$(echo "$t" | awk '{print $5}'); end=$(echo "$t" | awk '{print $7}'); st=$(echo "$t" | awk '{print $9}')
    grep -q "^$MARK" /tmp/bench.out || { echo "bench-boot: $vmm round $r: init's line not seen (status $st)"; tail -5 /tmp/bench.out; tail -5 /tmp/bench.err; }
    own=$(grep "time from VM creation" /tmp/bench.err | sed 's/.*time from VM creation: //')
    echo "$vmm $r $first $mark $end $((e1 - e0)) $((io1 - io0)) $((m1 - m0)) $st" >> $rows
    [ -n "$own" ] && echo "bench-boot: trapbox round $r, its own clock from VM creation: $own"
  done
  r=$((r + 1))
done
# Rows: vmm round first-byte init-line exit (ms from process start) exits io-exits mmio-exits status.
printf '%-8s %5s %14s %14s %12s %12s %10s %10s %6s\n' VMM round "1st byte ms" "init line ms" "exit ms" "VM exits" "io exits" "mmio exits" status
while read -r vmm r a b c d e f g; do
  printf '%-8s %5s %14s %14s %12s %12s %10s %10s %6s\n' $vmm $r $a $b $c $d $e $f $g
done < $rows
for vmm in trapbox qemu; do
  med() { grep "^$vmm " $rows | awk -v c=$1 '{print $c}' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
  printf '%-8s %5s %14s %14s %12s %12s %10s %10s\n' $vmm median "$(med 3)" "$(med 4)" "$(med 5)" "$(med 6)" "$(med 7)" "$(med 8)"
done
echo "bench-boot: done"
