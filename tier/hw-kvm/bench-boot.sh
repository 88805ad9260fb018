#!/bin/sh
# Runs inside the tier's guest (run.sh --bench-boot): `trapbox boot` and QEMU with KVM boot the
# same kernel, initramfs and command line, alternately, ROUNDS times each. Both are timed the
# same way by tstamp (process start → first console byte, → init's line, → exit), and VM exits
# are KVM's own count (debugfs /sys/kernel/debug/kvm/exits, io_exits, mmio_exits: every exit,
# in-kernel ones included) up to init's line: KVM sums those files over the VMs alive when they
# are read, so tstamp reads them the moment the line appears. (A background sampler would be
# simpler, but with one running the inner QEMU stalls in this nested setup.) Prints one row per run, then medians.
export PATH=/bin:/sbin:/usr/bin
T=/tb/trapbox
K=/tb/boot/vmlinuz
I=/tb/boot/initrd.gz
ROUNDS=${ROUNDS:-3}
CMDLINE="console=ttyS0 reboot=k panic=-1 pci=off i8042.nokbd i8042.noaux i8042.nomux i8042.nopnp"
MARK=TRAPBOX-INNER-INIT
# The first three go in the table; the rest break the in-kernel exits down.
COUNTERS="exits io_exits mmio_exits halt_exits irq_exits irq_window_exits nmi_window_exits insn_emulation hypercalls irq_injections pf_taken"
mount -t debugfs debugfs /sys/kernel/debug || echo "bench-boot: cannot mount debugfs"
[ -r /sys/kernel/debug/kvm/exits ] || { echo "bench-boot: no /sys/kernel/debug/kvm/exits:"; ls /sys/kernel/debug /sys/kernel/debug/kvm | head; }

# tstamp execs its arguments, so each VMM's command line is a small script.
cat > /tmp/vmm-trapbox <<EOT
exec $T boot --kernel $K --initrd $I --no-default-cmdline --cmdline "$CMDLINE" --time --silence-timeout 300 --timeout 300 </dev/null
EOT
cat > /tmp/vmm-qemu <<EOT
exec timeout 300 qemu-system-x86_64 -enable-kvm -cpu host -m 256M -smp 1 -nographic -vga none -no-reboot -nic none \\
  -kernel $K -initrd $I -append "$CMDLINE" </dev/null
EOT

echo "bench-boot: $(uname -r) + busybox initramfs, 1 vCPU, 256 MiB, same command line; kvm_amd inside QEMU TCG"
echo "bench-boot: qemu: $(qemu-system-x86_64 --version | head -1)"
rows=/tmp/bench-rows
: > $rows
r=1
while [ $r -le $ROUNDS ]; do
  for vmm in trapbox qemu; do
    TSTAMP_COUNTERS="$(for c in $COUNTERS; do printf '/sys/kernel/debug/kvm/%s ' $c; done)" \
      /tb/tstamp "$MARK" sh /tmp/vmm-$vmm > /tmp/bench.out 2> /tmp/bench.err
    t=$(grep '^tstamp:' /tmp/bench.err | tail -1)
    set -- $t
    first=$3; mark=$5; end=$7; st=$9; ex=${11}; io=${12}; mm=${13}
    shift 13
    echo "bench-boot: $vmm round $r, more KVM counters up to init's line: $(n=4; for c in $(echo $COUNTERS | cut -d' ' -f4-); do printf '%s=%s ' $c "$1"; shift; done)"
    grep -q "^$MARK" /tmp/bench.out || { echo "bench-boot: $vmm round $r: init's line not seen (status $st)"; tail -5 /tmp/bench.out; tail -5 /tmp/bench.err; }
    own=$(grep "time from VM creation" /tmp/bench.err | sed 's/.*time from VM creation: //')
    ownx=$(grep "VM exits:" /tmp/bench.err | sed 's/.*VM exits: //')
    echo "$vmm $r $first $mark $end $ex $io $mm $st" >> $rows
    [ -n "$own" ] && echo "bench-boot: trapbox round $r, its own clock from VM creation: $own; exits: $ownx"
  done
  r=$((r + 1))
done
# Rows: vmm round first-byte init-line exit (ms from process start) exits io-exits mmio-exits status.
echo "bench-boot: times in ms from process start; VM exits (KVM debugfs, in-kernel ones included) up to init's line"
printf '%-8s %5s %14s %14s %12s %12s %10s %10s %6s\n' VMM round "1st byte ms" "init line ms" "exit ms" "VM exits" "io exits" "mmio exits" status
while read -r vmm r a b c d e f g; do
  printf '%-8s %5s %14s %14s %12s %12s %10s %10s %6s\n' $vmm $r $a $b $c $d $e $f $g
done < $rows
for vmm in trapbox qemu; do
  med() { grep "^$vmm " $rows | awk -v c=$1 '{print $c}' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
  printf '%-8s %5s %14s %14s %12s %12s %10s %10s\n' $vmm median "$(med 3)" "$(med 4)" "$(med 5)" "$(med 6)" "$(med 7)" "$(med 8)"
done
echo "bench-boot: done"
