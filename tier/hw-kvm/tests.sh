#!/bin/sh
# Runs inside the tier's guest: each test runs natively and under `trapbox run` on kvm_amd
# and compares stdout and exit status, like the differential tests do on the host.
T=/tb/trapbox
G=/tb/guests
pass=0
fail=0
# Which part this VM runs (run.sh runs the boot checks in a VM of their own): main, boot or all.
part=$(sed -n 's/.*tier\.part=\([a-z]*\).*/\1/p' /proc/cmdline)
part=${part:-all}

ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() {
  fail=$((fail + 1)); echo "FAIL $1"
  [ -s /tmp/b.err ] && sed 's/^/     box stderr: /' /tmp/b.err | head -5
}

# same NAME STDIN ARGV...: native and boxed stdout + status must match.
same() {
  name=$1; input=$2; shift 2
  printf '%s' "$input" | "$@" > /tmp/n.out 2> /tmp/n.err; ns=$?
  printf "%s" "$input" | timeout 120 $T run -- "$@" > /tmp/b.out 2> /tmp/b.err; bs=$?
  if cmp -s /tmp/n.out /tmp/b.out && [ "$ns" = "$bs" ]; then ok "$name"; else
    bad "$name (native status $ns, box status $bs)"; diff /tmp/n.out /tmp/b.out | head -12; fi
}

# boxed NAME EXPECTED_STATUS PATTERN ARGV...: status and a line in stdout+stderr.
boxed() {
  name=$1; want=$2; pat=$3; shift 3
  timeout 120 $T run "$@" > /tmp/b.out 2> /tmp/b.err < /dev/null; bs=$?
  if [ "$bs" = "$want" ] && cat /tmp/b.out /tmp/b.err | grep -q -- "$pat"; then ok "$name"; else
    bad "$name (status $bs, want $want, pattern '$pat')"; cat /tmp/b.out | head -5; fi
}

echo "trapbox: $($T run -v -- $G/hello-static 2>&1 >/dev/null | head -1)"
if [ "$part" != boot ]; then
boxed "trap path is hardware KVM" 0 "trap path: hardware KVM" -v -- $G/hello-static
# The CPU view on this kind of KVM and this (emulated) CPU, printed for the record.
if $T inspect --cpu > /tmp/cpu.out 2> /tmp/b.err && grep -q "^guest view: consistent" /tmp/cpu.out; then
  ok "inspect --cpu: the guest's view is consistent"; else bad "inspect --cpu"; fi
grep -E "^(CPU|XCR0|state saved|XSAVE area|features hidden)" /tmp/cpu.out

for f in static static-pie dynamic; do
  same "hello/$f" "" $G/hello-$f
  same "args/$f" "" $G/args-$f one "two words"
  mkdir -p /tmp/fio-$f && same "fileio/$f" "" $G/fileio-$f /tmp/fio-$f
  same "malloc/$f" "" $G/malloc-$f
  same "mprotect/$f" "" $G/mprotect-$f
  same "tls/$f" "" $G/tls-$f
  same "random_clock/$f" "" $G/random_clock-$f
  same "bigstr/$f" "" $G/bigstr-$f
  same "regs/$f" "" $G/regs-$f
  same "cpu/$f" "" $G/cpu-$f
  same "cpu_view/$f" "" $G/cpu_view-$f
  same "vec_state/$f" "" $G/vec_state-$f
  same "selfexe/$f" "" $G/selfexe-$f
  same "stdin_echo/$f" "piped
into the box" $G/stdin_echo-$f
  same "exitcode/$f" "" $G/exitcode-$f 42
  same "cpuloop/$f" "" $G/cpuloop-$f 2000000
  same "getppid_loop/$f" "" $G/getppid_loop-$f 500
  same "adv_stack/$f" "" $G/adv_stack-$f
done

same "echo" "" /bin/echo hello from the tier
same "cat" "" /bin/cat /tb/data/lines.txt
same "cat stdin" "from stdin" /bin/cat -
same "sha256sum" "" /usr/bin/sha256sum /tb/data/lines.txt
same "sort -r" "" /usr/bin/sort -r /tb/data/lines.txt
same "gzip -c" "" /bin/gzip -c -n /tb/data/lines.txt
same "ls" "" /bin/ls -1 /tb/guests

# The box shows the guest only its own mappings, so these attacks are told from outside where
# trapbox's image is: with randomization off (this VM is the tier's own), at ELF_ET_DYN_BASE.
echo 0 > /proc/sys/kernel/randomize_va_space
export ADV_TRAPBOX_AT=0x555555554000
boxed "adv_trapbox_mem" 0 "read into trapbox memory: EFAULT" -- $G/adv_trapbox_mem-dynamic
boxed "adv_map_fixed" 0 "mmap fixed over trapbox: ENOMEM" -- $G/adv_map_fixed-dynamic
unset ADV_TRAPBOX_AT
echo 2 > /proc/sys/kernel/randomize_va_space
boxed "adv_proc_mem" 0 "open /proc/self/mem: EACCES" -- $G/adv_proc_mem-dynamic
same "adv_fds" "" $G/adv_fds-dynamic
same "adv_procfd" "" $G/adv_procfd-dynamic
same "adv_badptr" "" $G/adv_badptr-static
for i in hlt cli wrmsr out lgdt ud2 int3 sysenter; do
  same "adv_priv $i" "" $G/adv_priv-static $i
done
# int 0x80 is a #UD on PVM and a #GP here: either way the guest dies with the refusal.
timeout 120 $T run -- $G/adv_priv-static int80 > /tmp/b.out 2> /tmp/b.err; bs=$?
if [ "$bs" -gt 128 ] && grep -q "32-bit syscall ABI is not supported" /tmp/b.err; then ok "adv_priv int80 refused"; else bad "adv_priv int80 refused (status $bs)"; fi
boxed "adv_loop --timeout" 124 "timed out" --timeout 2 -- $G/adv_loop-static
boxed "adv_fork" 0 "forked 5" -- $G/adv_fork-dynamic

# Processes, threads and signals on the hardware path: fork rebuilds the VM in the child,
# signal frames and rt_sigreturn resume through the ring-0 iretq path, threads run vCPUs in
# parallel. (Static forms only: nested TCG makes every fork and exec slow.)
for f in static; do
  same "pthread_stress/$f" "" $G/pthread_stress-$f
  same "futex_pingpong/$f" "" $G/futex_pingpong-$f 200
  same "fork_chain/$f" "" $G/fork_chain-$f
  same "fork_chain chain/$f" "" $G/fork_chain-$f chain 5
  for s in sig_segv sig_alarm sig_chld sig_altstack sig_pipe sig_ucontext sig_kill; do
    same "$s/$f" "" $G/$s-$f
  done
done
same "sh pipeline" "" /bin/sh -c 'seq 1 50 | sort -r | head -3; echo $(echo sub)'

timeout 120 $T trace -- $G/hello-dynamic > /dev/null 2> /tmp/b.err
if grep -qF 'write(1, "hello, world\n", 13)' /tmp/b.err; then ok "trace"; else bad "trace"; fi
timeout 120 $T trace -o /tmp/t.txt -- $G/hello-static > /dev/null 2>&1
if grep -q '^exit_group(0)' /tmp/t.txt && grep -q '^+++ exited with 0 +++' /tmp/t.txt; then ok "trace -o"; else bad "trace -o"; fi
# `--backend auto` takes hardware KVM where there is one; the in-process engine gives the same
# lines on this kernel too.
timeout 120 $T trace -v -o /tmp/t.txt -- $G/hello-static > /dev/null 2> /tmp/b.err
if grep -q '^trapbox: trap path: hardware KVM' /tmp/b.err; then ok "trace auto: hardware KVM"; else bad "trace auto: hardware KVM ($(head -2 /tmp/b.err))"; fi
timeout 120 $T trace --backend inproc -o /tmp/t2.txt -- $G/hello-static > /dev/null 2> /tmp/b.err
if [ "$(grep -v '^set_tid_address\|^getrandom' /tmp/t.txt)" = "$(grep -v '^set_tid_address\|^getrandom' /tmp/t2.txt)" ]; then ok "trace inproc = trace kvm"; else bad "trace inproc differs: $(diff /tmp/t.txt /tmp/t2.txt | head -5)"; fi

# The REPL on hardware KVM: a line runs, a fault is reported, a syscall is traced, undo.
printf 'mov rax, 5\nadd rax, rax\nmov rbx, [0]\nmov eax, 39\nsyscall\n.undo\n.undo\n.regs\n' | timeout 60 $T repl > /tmp/r.out 2>&1
if grep -q '^rax=0xa$' /tmp/r.out && grep -q '^fault: SIGSEGV' /tmp/r.out && grep -q '^getpid() *= [0-9]' /tmp/r.out \
   && [ "$(grep -c '^undone$' /tmp/r.out)" = 2 ] && grep -q '^rax=0xa$' /tmp/r.out; then ok "repl"; else bad "repl: $(head -c 600 /tmp/r.out)"; fi

# The fuzzer on hardware KVM: resets restore memory (the target aborts if its call counter is
# not 1), and the planted crash is found (with a dictionary of its pieces) and saved.
mkdir -p /tmp/fz/seeds && printf A > /tmp/fz/seeds/a && printf 'a="FU"\nb="ZZ!"\n' > /tmp/fz/d.dict
timeout 300 $T fuzz -q --seed 7 -i /tmp/fz/seeds -o /tmp/fz/out1 --entry LLVMFuzzerTestOneInput --runs 1000 -- $G/fuzz_target-static > /tmp/f.out 2> /tmp/b.err
if grep -q '^trapbox fuzz: [0-9]* executions' /tmp/f.out && ! ls /tmp/fz/out1/crashes 2>/dev/null | grep -q sig-6; then ok "fuzz resets: $(head -1 /tmp/f.out)"; else bad "fuzz resets: $(head -3 /tmp/f.out)"; fi
timeout 300 $T fuzz -q --seed 7 -i /tmp/fz/seeds -o /tmp/fz/out2 --dict /tmp/fz/d.dict --entry LLVMFuzzerTestOneInput --runs 100000 --until-crash -- $G/fuzz_target-dynamic > /tmp/f.out 2> /tmp/b.err; fs=$?
if [ "$fs" = 1 ] && grep -q 'SIGSEGV: page fault: write at 0x0' /tmp/f.out && ls /tmp/fz/out2/crashes | grep -q sig-11; then ok "fuzz finds the planted crash"; else bad "fuzz finds the planted crash (status $fs): $(head -3 /tmp/f.out)"; fi

# The shared vDSO reads the host clock correctly (guest TSC offset zero on hardware KVM).
t_box=$($T run -- $G/clock_now-dynamic | cut -d' ' -f1); t_host=$(date +%s)
if [ -n "$t_box" ] && [ $((t_host - t_box)) -le 2 ] && [ $((t_box - t_host)) -le 2 ]; then ok "vdso clock ($t_box vs $t_host)"; else bad "vdso clock (box '$t_box', host $t_host)"; fi

# record / replay on the hardware path: rdtsc, cpuid and getrandom come back identical, and
# replay needs neither the input file nor stdin.
for f in static dynamic; do
  echo "recorded input" > /tmp/rr-in.txt
  echo "typed" | timeout 300 $T record -o /tmp/rr.trace -- $G/nondet-$f /tmp/rr-in.txt > /tmp/rr-rec.out 2> /tmp/b.err
  rm -f /tmp/rr-in.txt
  timeout 300 $T replay /tmp/rr.trace > /tmp/rr-rep.out 2>> /tmp/b.err < /dev/null; rs=$?
  if [ "$rs" = 0 ] && cmp -s /tmp/rr-rec.out /tmp/rr-rep.out && grep -q "^rdtsc " /tmp/rr-rep.out; then ok "record/replay nondet/$f"; else
    bad "record/replay nondet/$f (replay status $rs)"; diff /tmp/rr-rec.out /tmp/rr-rep.out | head -5; fi
done

# Threads that hand a token over by spinning: recording preempts the spinning holder (a kick,
# a single step with the trap flag, a breakpoint), and the replay stops each thread there.
timeout 300 $T record -o /tmp/rr-s.trace -- $G/spin_handoff-static 10 > /tmp/rr-rec.out 2> /tmp/b.err < /dev/null; rs=$?
timeout 300 $T replay /tmp/rr-s.trace > /tmp/rr-rep.out 2>> /tmp/b.err < /dev/null; ps=$?
if [ "$rs" = 0 ] && [ "$ps" = 0 ] && cmp -s /tmp/rr-rec.out /tmp/rr-rep.out && grep -q "partner saw 10" /tmp/rr-rep.out; then ok "record/replay spin_handoff"; else
  bad "record/replay spin_handoff (record status $rs, replay status $ps)"; diff /tmp/rr-rec.out /tmp/rr-rep.out | head -5; fi

# A recorded process that execs (static into dynamic into static): each new image replays
# at its recorded placement.
echo "recorded input" > /tmp/rr-in.txt
timeout 300 $T record -o /tmp/rr-x.trace -- $G/exec_then-static $G/exec_then-dynamic $G/nondet-static /tmp/rr-in.txt > /tmp/rr-rec.out 2> /tmp/b.err < /dev/null
rm -f /tmp/rr-in.txt
timeout 300 $T replay /tmp/rr-x.trace > /tmp/rr-rep.out 2>> /tmp/b.err < /dev/null; rs=$?
if [ "$rs" = 0 ] && cmp -s /tmp/rr-rec.out /tmp/rr-rep.out && [ "$(grep -c '^exec_then pid' /tmp/rr-rep.out)" = 2 ] && grep -q "^rdtsc " /tmp/rr-rep.out; then ok "record/replay across exec"; else
  bad "record/replay across exec (replay status $rs)"; head -3 /tmp/b.err; diff /tmp/rr-rec.out /tmp/rr-rep.out | head -5; fi

# record / replay with trapbox's own vDSO on the hardware path: thousands of time calls read the
# right clock and come back identical; they stay in the guest (few exits) when this kernel's
# clocksource is one its vDSO reads (the TSC).
clocksource=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null)
most_exits=1000
[ "$clocksource" = tsc ] || most_exits=100000
for f in static dynamic; do
  timeout 300 $T record -v -o /tmp/rr-t.trace -- $G/vdso_time-$f 2000 > /tmp/rr-rec.out 2> /tmp/b.err
  exits=$(sed -n 's/^trapbox: \([0-9]*\) VM exits.*/\1/p' /tmp/b.err)
  timeout 300 $T replay /tmp/rr-t.trace > /tmp/rr-rep.out 2>> /tmp/b.err < /dev/null; rs=$?
  if [ "$rs" = 0 ] && cmp -s /tmp/rr-rec.out /tmp/rr-rep.out && grep -q "^calls failed 0, monotonic went back 0" /tmp/rr-rep.out \
    && [ -n "$exits" ] && [ "$exits" -lt "$most_exits" ]; then ok "record/replay vdso_time/$f ($exits exits, clocksource $clocksource)"; else
    bad "record/replay vdso_time/$f (replay status $rs, $exits exits)"; head -3 /tmp/b.err; fi
done
timeout 300 $T record -o /tmp/rr-c.trace -- $G/clock_now-static > /tmp/rr-c.out 2> /tmp/b.err
t_box=$(cut -d' ' -f1 /tmp/rr-c.out); t_host=$(date +%s)
if [ -n "$t_box" ] && [ $((t_host - t_box)) -le 2 ] && [ $((t_box - t_host)) -le 2 ]; then ok "recorded vdso clock ($t_box vs $t_host)"; else bad "recorded vdso clock (box '$t_box', host $t_host)"; fi

# The escape suite (tests/guests/ESCAPES.md) on the hardware path, each attack from a second
# thread: every line as natively.
for p in esc_proc_mem esc_fd_smuggle esc_sysv_shm esc_double_fetch esc_struct_ptrs esc_limits esc_proc_state esc_self_view esc_signals; do
  same "$p thread" "" $G/$p-dynamic thread
done
# Every blocking call lets the other threads run; signals aimed at threads run on them, and
# one that waits for a handler's rt_sigreturn does not restart it.
same "block_unblock" "" $G/block_unblock-static
same "sig_thread" "" $G/sig_thread-static
same "sig_after_sigreturn" "" $G/sig_after_sigreturn-static

# The GDB stub on the hardware path (single steps and watchpoints through KVM's guest debug),
# with Debian's gdb as the client: a live run, and reverse execution on a replay.
# debug PROGRAM COMMANDS TOOL...: `trapbox TOOL --gdb 127.0.0.1:0 ...` (the port is read from
# what trapbox says), gdb in batch mode on PROGRAM with COMMANDS (one per line). gdb's output
# is in /tmp/g.out, the program's in /tmp/g.prog, trapbox's status in $gs.
debug() {
  prog=$1; cmds=$2; shift 2
  : > /tmp/g.err
  timeout 600 $T "$@" > /tmp/g.prog 2> /tmp/g.err < /dev/null &
  tb=$!
  port=""
  for i in $(seq 1 120); do
    port=$(sed -n 's/.*target remote :\([0-9]*\).*/\1/p' /tmp/g.err | head -1)
    [ -n "$port" ] && break
    sleep 1
  done
  printf 'target remote 127.0.0.1:%s\n%s\n' "$port" "$cmds" > /tmp/g.cmds
  timeout 300 gdb -q -batch -nx "$prog" -x /tmp/g.cmds > /tmp/g.out 2>&1
  # A session that went wrong may leave trapbox waiting for gdb: it gets a minute to end.
  for i in $(seq 1 60); do kill -0 $tb 2>/dev/null || break; sleep 1; done
  kill $tb 2>/dev/null
  wait $tb; gs=$?
}
# has FILE TEXT...: every TEXT (fixed strings) is in FILE.
has() { f=$1; shift; for t in "$@"; do grep -qF -- "$t" "$f" || { echo "     missing: $t"; return 1; }; done; }
gdb_bad() { bad "$1 (trapbox status $gs)"; tail -8 /tmp/g.out | sed 's/^/     gdb: /'; tail -3 /tmp/g.err | sed 's/^/     trapbox: /'; }

P=$G/gdb_target-debug-dynamic
debug $P 'break square
continue
print x
bt
finish
info sharedlibrary
print counter
delete
continue' run --gdb 127.0.0.1:0 -- $P
if [ "$gs" = 0 ] && has /tmp/g.out "Breakpoint 1, square (x=1) at" '$1 = 1' ' in main () at ' 'Value returned is $2 = 1' 'libc.so.6' '$3 = 1' 'exited normally]' \
   && [ "$(cat /tmp/g.prog)" = "total 14 counter 6" ]; then ok "gdb: breakpoint, backtrace, finish, shared libraries (live, dynamic)"; else gdb_bad "gdb live"; fi

P=$G/gdb_pipe-debug-static
W='break main
continue
watch counter
continue
continue
continue
print counter
delete
watch buf
continue
print buf
delete
continue'
debug $P "$W" run --gdb 127.0.0.1:0 -- $P
if [ "$gs" = 0 ] && has /tmp/g.out 'Old value = 0' 'New value = 1' 'Old value = 1' 'New value = 3' 'Old value = 3' 'New value = 6' '$1 = 6' '$2 = "wxyz\000\000\000"' 'exited normally]' \
   && [ "$(cat /tmp/g.prog)" = "wxyz 6" ]; then ok "gdb: watchpoints on the program's and the kernel's writes (live)"; else gdb_bad "gdb watchpoints"; fi

timeout 300 $T record -o /tmp/g.trace -- $P > /dev/null 2> /tmp/b.err < /dev/null
debug $P 'break 17
continue
watch counter
reverse-continue
print counter
reverse-continue
print counter
reverse-continue
print counter
reverse-continue
continue
print counter
delete
reverse-stepi
print counter
stepi
print counter
continue' replay --gdb 127.0.0.1:0 /tmp/g.trace
if [ "$gs" = 0 ] && has /tmp/g.out 'Old value = 6' 'New value = 3' '$1 = 3' 'Old value = 3' 'New value = 1' '$2 = 1' 'Old value = 1' 'New value = 0' '$3 = 0' \
     'No more reverse-execution history.' '$4 = 1' '$5 = 0' '$6 = 1' 'exited normally]' && [ "$(cat /tmp/g.prog)" = "wxyz 6" ]; then
  ok "gdb: reverse-continue to a watchpoint, to the start, reverse-stepi (replay)"; else gdb_bad "gdb reverse"; fi
fi

if [ "$part" != main ]; then
# trapbox boot: this guest's own Debian kernel with a busybox initramfs, in a VM trapbox makes on
# kvm_amd; init prints what the kernel told it and powers off (a halt, "reboot: System halted":
# the VM has no ACPI).
B="--kernel /tb/boot/vmlinuz --silence-timeout 120 --timeout 200"
# The inner kernel's console is copied to this one as it boots ("L2: " lines, which run.sh does
# not print), so that a VM that stops can be seen to stop somewhere.
boot() {
  : > /tmp/boot.out
  tail -f /tmp/boot.out 2>/dev/null | sed 's/^/L2: /' &
  local follower=$!
  timeout 230 $T boot "$@" < /dev/null > /tmp/boot.out 2> /tmp/boot.err
  bs=$?
  sleep 1
  kill $follower 2>/dev/null
  pkill -f "tail -f /tmp/boot.out" 2>/dev/null
}
boot $B --initrd /tb/boot/initrd.gz --cmdline "tier=yes" --time
if [ "$bs" = 0 ] && grep -q "^TRAPBOX-INNER-INIT: hello from init on $(uname -r), 1 cpu(s), cmdline: console=ttyS0 .* tier=yes" /tmp/boot.out \
   && grep -q "^trapbox: boot: guest halted" /tmp/boot.err; then ok "boot: Debian kernel + busybox initramfs, init ran, poweroff ended the VM"; else
  bad "boot: Debian kernel + busybox initramfs (status $bs)"; tail -5 /tmp/boot.out; tail -3 /tmp/boot.err; fi
grep -E "time from VM creation|VM exits" /tmp/boot.err | sed 's/^trapbox: boot: /boot timing: /'
# SMP through the MP table: the kernel brings up the second vCPU and init counts two.
boot $B --initrd /tb/boot/initrd.gz --cpus 2
if [ "$bs" = 0 ] && grep -q "^TRAPBOX-INNER-INIT: .* 2 cpu(s)" /tmp/boot.out; then ok "boot --cpus 2: init sees 2 cpus"; else
  bad "boot --cpus 2 (status $bs)"; grep -iE "smp|cpu|mptable|apic" /tmp/boot.out | tail -8; tail -3 /tmp/boot.err; fi
# A real panic: no initrd, so no root file system; the kernel's panic line is the diagnosis.
boot $B
if [ "$bs" = 4 ] && grep -q "^trapbox: boot: kernel panicked: Kernel panic - not syncing: VFS: Unable to mount root fs" /tmp/boot.err; then
  ok "boot without initrd: panic reported (status 4)"; else bad "boot without initrd: panic (status $bs)"; tail -3 /tmp/boot.out; tail -3 /tmp/boot.err; fi
fi

echo "hw-kvm tier: $pass passed, $fail failed"
