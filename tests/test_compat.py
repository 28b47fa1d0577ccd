"""Issue 12 point 7: Debian's static programs in the guest against the same programs natively.

A root tree holds busybox-static (every applet), bash-static, zsh-static, sash, klibc's mksh and gzip,
e2fsck.static, gpgv-static, a dietlibc-built program and data to work on. The guest boots that tree as
its ext2 root; natively the same tree runs under `chroot` with /proc mounted in it (a fresh copy per
run, stdin /dev/null, one CPU as the guest has). Each case is a script for one shell; a driver runs
every case in turn and prints a marker with the case's exit status, so one boot checks many cases and
each keeps its own status. Output and status must be identical, except for what a case names among
NORMALISERS (applied to both sides alike, each with its reason). A few cases run as their own boots
through `ballast run` to check the status of init itself (exit codes, deaths by signal).

The default run covers CASES (>150); BALLAST_COMPAT_LONG=1 adds every busybox applet's --help (about
210 more cases, a few minutes)."""
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from guestos.kernel.sys import UTS_NODENAME, UTS_RELEASE, UTS_VERSION
from vmm.machine import DiskConfig, Machine, MachineConfig
from vmm.mkdisk import mkdisk

REPO = Path(__file__).resolve().parents[1]
PROGRAMS = Path(__file__).resolve().parent / "programs"
HOST = {
    "busybox": Path("/bin/busybox"),
    "bash": Path("/bin/bash-static"),
    "zsh": Path("/bin/zsh-static"),
    "sash": Path("/bin/sash"),
    "mksh": Path("/usr/lib/klibc/bin/mksh"),
    "kgzip": Path("/usr/lib/klibc/bin/gzip"),
    "e2fsck": Path("/sbin/e2fsck.static"),
    "gpgv": Path("/usr/bin/gpgv-static"),
    "gojq": Path("/usr/bin/gojq"),
}
MISSING = [str(p) for p in HOST.values() if not p.exists()] + ([] if shutil.which("diet") else ["diet (dietlibc-dev)"])
pytestmark = [
    pytest.mark.skipif(bool(MISSING), reason=f"needs Debian's static packages (.ci/run installs them): {MISSING}"),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("taskset") is None or shutil.which("mke2fs") is None,
                       reason="the native side runs chrooted with /proc mounted, as root"),
]
PRINTK = re.compile(r"\[ *\d+\.\d{6}\] ")       # the kernel's console lines, between the programs' output
GUEST_BUDGET_NS = 600 * 10**9            # virtual time for one batch: a hung case ends the batch, visibly


# --- normalisers: each says why the two sides may differ, and applies to both -----------------------

def _dir_order(text: str) -> str:
    """readdir order: ext2 on the guest and the native file system (ext2 image vs this host's copy of
    the tree) list a directory in their own hash or creation order."""
    return "".join(sorted(text.splitlines(True)))


def _uname(text: str) -> str:
    """the kernel's release and version and the host name are the guest kernel's, not this host's."""
    host = os.uname()
    guest = [v.decode() for v in (UTS_RELEASE, UTS_VERSION, UTS_NODENAME)]
    for value in sorted({host.release, host.version, host.nodename, *guest}, key=len, reverse=True):
        text = text.replace(value, "<uname>")
    return text


def _time(text: str) -> str:
    """wall-clock times and dates: the guest's clock is virtual (it starts at its own epoch)."""
    text = re.sub(r"\b\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d(\.\d+)?)?( ?[+-]\d{4})?\b", "<time>", text)
    text = re.sub(r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                  r"[ \d]\d \d\d:\d\d:\d\d( UTC)? \d{4}\b", "<time>", text)
    text = re.sub(r"\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d+ +(\d\d:\d\d|\d{4})\b", "<time>", text)
    return re.sub(r"\b\d{9,10}\b", "<epoch>", text)


def _wakeup_order(text: str) -> str:
    """busybox sh prints "Terminated" for a job killed by a signal when it reaps the job inside `wait`,
    not when a SIGCHLD reaped it earlier. Which comes first is scheduling: Linux's CFS runs a task
    woken by a signal at once (wakeup preemption) so it dies before the sender goes on; the guest's
    round robin lets the sender run on to `wait` first. A known difference of the guest's scheduler."""
    return "".join(line for line in text.splitlines(True) if line != "Terminated\n")


NORMALISERS = {"dir_order": _dir_order, "uname": _uname, "time": _time,
               "wakeup_order": _wakeup_order}


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple                     # run in /w/<name> with stdin /dev/null, stderr on stdout
    script: str = None              # written to /t/<name>.sh; "{script}" in argv stands for its path
    normalise: tuple = ()

    def command(self) -> str:
        return " ".join(_shquote(a.replace("{script}", f"/t/{self.name}.sh")) for a in self.argv)


def _shquote(s: str) -> str:
    return s if re.fullmatch(r"[\w@%+=:,./-]+", s) else "'" + s.replace("'", "'\\''") + "'"


SHELLS = {"sh": "/bin/sh", "bash": "/bin/bash", "mksh": "/bin/mksh", "zsh": "/bin/zsh"}


def sh(name, script, shell="sh", normalise=()):
    return Case(name, (SHELLS[shell], "{script}"), script, tuple(normalise))


def run(name, *argv, normalise=()):
    return Case(name, tuple(argv), None, tuple(normalise))


# --- the cases ----------------------------------------------------------------------------------------

LONG_SCRIPT = r"""
# a long script: functions, loops, arithmetic, case, here-documents, traps, pipes and subshells
set -u
total=0
count=0
add() {
    total=$((total + $1))
    count=$((count + 1))
}
classify() {
    case "$1" in
        [0-9]) echo "digit $1" ;;
        [a-z]*) echo "word $1" ;;
        *) echo "other $1" ;;
    esac
}
for n in 1 2 3 4 5 6 7 8 9 10; do
    add "$n"
done
echo "total=$total count=$count"
i=0
while [ "$i" -lt 5 ]; do
    i=$((i + 1))
    if [ $((i % 2)) -eq 0 ]; then
        echo "even $i"
    else
        echo "odd $i"
    fi
done
for w in 7 apple Zed 3 -x; do
    classify "$w"
done
cat > /w/long/data.txt <<EOF
one $total
two $count
three $((total * count))
EOF
cat <<'EOF'
literal $total stays
EOF
while read -r key value; do
    echo "key=$key value=$value"
done < /w/long/data.txt
lines=$(wc -l < /w/long/data.txt)
echo "lines: $lines"
sorted=$(printf '%s\n' pear apple fig banana | sort | tr '\n' ' ')
echo "sorted: $sorted"
( cd /w/long && echo "in subshell: $(pwd)" && exit 3 )
echo "subshell status $?"
f() { return 7; }
f || echo "f failed with $?"
trap 'echo trapped EXIT' EXIT
x=abc
echo "${#x} ${x}def"
set -- a b c d
echo "args $# first $1 rest $*"
shift 2
echo "after shift $*"
seq 1 20 | grep 5 | while read -r line; do echo "grep got $line"; done
echo data | { read -r v; echo "braced $v"; }
j=0
until [ $j -ge 3 ]; do j=$((j + 1)); done
echo "until $j"
printf '%05d|%-4s|%x\n' 42 ab 255
echo done > /w/long/out; cat /w/long/out
false; echo "false gives $?"
echo last line
"""

CASES = [
    # busybox applets through its sh
    sh("echo", "echo hello world; echo -n no-newline; echo"),
    sh("cat_file", "cat /data/words"),
    sh("cat_n", "cat -n /data/words"),
    sh("ls_sorted", "ls /data | sort"),
    sh("ls_l", "ls -ln /data/words /data/sub/note | sed 's/  */ /g' | cut -d' ' -f1-5,9"),
    sh("ls_dir", "ls -1 /data", normalise=["dir_order"]),
    sh("wc", "wc /data/words /data/blob"),
    sh("wc_l", "wc -l < /data/words"),
    sh("head", "head -n 2 /data/words; head -c 10 /data/words"),
    sh("tail", "tail -n 2 /data/words; tail -c 6 /data/words"),
    sh("sort", "sort -r /data/words; sort -n /data/numbers | head -3; sort -u /data/dups"),
    sh("uniq", "sort /data/dups | uniq -c"),
    sh("cut", "cut -d: -f1,3 /etc/passwd"),
    sh("tr", "echo Hello World | tr a-z A-Z; echo aabbcc | tr -s abc; echo abc | tr -d b"),
    sh("sed", "sed -n '2,3p' /data/words; sed 's/a/A/g' /data/words; sed -e '1d' -e 's/$/!/' /data/words"),
    sh("awk", "awk '{ s += length($0) } END { print NR, s }' /data/words; awk -F: '{print $1\":\"$NF}' /etc/passwd"),
    sh("awk_printf", "awk 'BEGIN { for (i = 1; i <= 5; i++) printf \"%d^2=%d\\n\", i, i*i }'"),
    sh("grep", "grep -n a /data/words; grep -c e /data/words; grep -v a /data/words; grep -q zz /data/words; echo $?"),
    sh("grep_r", "grep -r nested /data | sort"),
    sh("egrep", "grep -E '^(alpha|delta)$' /data/words"),
    sh("find", "find /data -type f | sort"),
    sh("find_name", "find /data -name '*o*' | sort; find /data -type d | sort"),
    sh("find_xargs", "find /data -type f -name '[a-w]*' | sort | xargs wc -c"),
    sh("xargs_n", "seq 1 10 | xargs -n 3 echo"),
    sh("md5sum", "md5sum /data/words /data/blob"),
    sh("sha1sum", "sha1sum /data/blob"),
    sh("sha256sum", "sha256sum /data/blob /data/words"),
    sh("sha512sum", "sha512sum /data/words"),
    sh("md5sum_c", "cd /data && md5sum words blob > /w/md5sum_c/sums && md5sum -c /w/md5sum_c/sums"),
    sh("od", "od -A x -t x1 -N 64 /data/blob"),
    sh("hexdump", "hexdump -C -n 48 /data/blob"),
    sh("xxd", "xxd -l 32 /data/blob"),
    sh("base64", "base64 /data/words; base64 /data/words | base64 -d"),
    sh("basename", "basename /a/b/c.txt .txt; dirname /a/b/c.txt; basename /"),
    sh("expr", "expr 3 + 4; expr 7 \\* 6; expr length hello; expr 5 \\> 9; echo $?"),
    sh("seq", "seq 5; seq 2 3 11; seq -s, 1 4"),
    sh("printf", "printf '%s-%d-%5.2f-%x-%o\\n' a 12 3.14159 255 8"),
    sh("test", "test -f /data/words && echo file; test -d /data && echo dir; [ 3 -lt 4 ] && echo lt; "
               "[ abc = abd ]; echo $?"),
    sh("true_false", "true; echo $?; false; echo $?; ! true; echo $?"),
    sh("yes_head", "yes | head -3; yes abc | head -n 2"),
    sh("tee", "echo teed | tee /w/tee/a /w/tee/b; cat /w/tee/a /w/tee/b"),
    sh("cmp", "cmp /data/words /data/words; echo $?; cmp /data/words /data/dups; echo $?"),
    sh("diff", "printf 'a\\nb\\nc\\n' > x; printf 'a\\nB\\nc\\n' > y; diff x y | tail -n +3; echo $?"),
    sh("comm", "printf 'a\\nb\\nc\\n' > x; printf 'b\\nc\\nd\\n' > y; comm x y; comm -12 x y"),
    sh("paste", "seq 3 > x; seq 4 6 > y; paste x y; paste -s -d+ x"),
    sh("fold", "echo abcdefghijklmnopqrstuvwxyz | fold -w 7"),
    sh("rev_tac", "rev /data/words; tac /data/words"),
    sh("nl", "nl /data/words"),
    sh("split", "split -l 2 /data/words part; cat partaa; echo --; cat partab; ls part*"),
    sh("dd", "dd if=/data/blob of=out bs=4096 count=3 2>/dev/null; wc -c out; "
             "dd if=/data/words bs=1 skip=6 count=4 2>/dev/null; echo"),
    sh("dd_status", "dd if=/data/blob of=/dev/null bs=65536 2>&1 | head -2"),
    sh("truncate", "echo hello > t; truncate -s 100 t; wc -c t; truncate -s 2 t; cat t; echo"),
    sh("stat", "stat -c '%s %a %F %h %n' /data/words /data /data/sub/note"),
    sh("stat_dev", "stat -c '%t %T %F' /dev/null"),
    sh("touch_mkdir", "touch a; mkdir -p b/c/d; ls -R | sort; rmdir b/c/d; ls b/c"),
    sh("rm_r", "mkdir -p x/y; touch x/y/z x/w; rm -r x; ls"),
    sh("cp_a", "cp -a /data/sub copy; ls -ln copy | sed 's/  */ /g' | cut -d' ' -f1,5,9; cat copy/note"),
    sh("mv", "echo m > a; mv a b; cat b; ls"),
    sh("ln_readlink", "ln -s /data/words l; readlink l; readlink -f l; cat l | head -1; ln /data/words h 2>&1; "
                      "echo $?; stat -c %h /data/words"),
    sh("realpath", "mkdir -p a/b; ln -s a/b c; realpath c; realpath ./a/../a/b"),
    sh("du", "du -s /data/sub; du -a /data/sub"),
    sh("chmod", "touch f; chmod 640 f; stat -c %a f; chmod u+x,g-r f; stat -c %a f; ls -l f | cut -c1-10"),
    sh("umask", "umask 027; touch f; mkdir d; stat -c '%a %n' f d"),
    sh("id", "id; id -u; id -gn"),
    sh("whoami", "whoami; echo $HOME"),
    sh("env", "env | sort | grep -v '^_='; env -i A=1 env"),
    sh("printenv", "X=5 printenv X; printenv NOPE; echo $?"),
    sh("sleep_short", "sleep 0.1; echo slept"),
    sh("timeout", "timeout 1 sleep 3; echo $?; timeout 3 sleep 0.2; echo $?"),
    sh("nproc", "nproc"),
    sh("kill_l", "kill -l 9; kill -l 15; kill -l | head -3"),
    sh("uname", "uname -s; uname -m; uname -a", normalise=["uname", "time"]),
    sh("hostname", "hostname", normalise=["uname"]),
    sh("date", "date -u -d @86400 '+%Y %m %d %H'; date -u -d '2001-02-03 04:05:06' +%s; date > /dev/null; echo $?"),
    sh("cal", "cal 2 2024"),
    sh("factor", "factor 360 97 1001"),
    sh("bc_dc", "echo '2 3 + p' | dc; echo '10 3 / p' | dc"),
    sh("sum", "sum /data/words; cksum /data/words"),
    sh("strings", "strings -n 6 /data/words /data/mixed"),
    sh("gzip_round", "cp /data/blob b; gzip -9 b; ls; gzip -t b.gz; echo $?; gunzip b.gz; cmp b /data/blob && echo same"),
    sh("gzip_pipe", "gzip -c /data/words | gunzip -c; gzip -c /data/words | zcat | md5sum"),
    sh("bzip2", "bzip2 -c /data/blob | bunzip2 -c | md5sum; md5sum < /data/blob"),
    sh("xz", "xz -c /data/words 2>/dev/null | unxz -c 2>/dev/null || echo no-xz-compress"),
    sh("tar_round", "tar -cf t.tar -C /data words sub; tar -tvf t.tar | awk '{print $1, $3, $6}'; mkdir x; "
                    "tar -xf t.tar -C x; cmp x/words /data/words && cmp x/sub/note /data/sub/note && echo same"),
    sh("tar_gz", "tar -czf t.tgz -C / data; tar -tzf t.tgz | sort; mkdir x; tar -xzf t.tgz -C x; "
                 "cd x && find . -type f | sort | xargs md5sum"),
    sh("tar_pipe", "tar -cf - -C /data sub | tar -xvf - ; cat sub/note"),
    sh("cpio_round", "cd /data && find . | sort | cpio -o -H newc > /w/cpio_round/a.cpio 2>/dev/null; "
                     "cd /w/cpio_round; cpio -t < a.cpio 2>/dev/null | sort; mkdir x; cd x; "
                     "cpio -id < ../a.cpio 2>/dev/null; find . -type f | sort | xargs md5sum"),
    sh("md5_tree", "cd /data && find . -type f | sort | xargs md5sum | md5sum"),
    sh("find_exec", "find /data -type f -exec wc -c {} \\; | sort"),
    sh("sort_k", "printf 'b 2\\na 10\\nc 1\\n' | sort -k2 -n; printf 'b 2\\na 10\\nc 1\\n' | sort -k1,1"),
    sh("awk_sum", "seq 1 100 | awk '{ s += $1 } END { print s }'"),
    sh("sed_script", "printf 's/alpha/ALPHA/\\n/beta/d\\n' > s.sed; sed -f s.sed /data/words"),
    sh("which", "which sh ls busybox; which nope; echo $?"),
    sh("mktemp", "d=$(mktemp -d /w/mktemp/tmp.XXXXXX); test -d $d && echo made; f=$(mktemp /w/mktemp/f.XXXX); "
                 "test -f $f && echo file"),
    sh("mkfifo", "mkfifo p; (echo through-fifo > p &); cat p; test -p p && echo fifo"),
    sh("sync", "sync; echo synced"),
    sh("dmesg_head", "dmesg > /dev/null 2>&1; echo $?"),
    sh("proc_self", "cat /proc/self/stat | cut -d' ' -f2,3; readlink /proc/self/exe; cat /proc/self/comm"),
    sh("proc_cmdline", "tr '\\0' ' ' < /proc/self/cmdline; echo"),
    sh("proc_status", "grep -E '^(Name|State|Umask):' /proc/self/status"),
    sh("hexdump_x", "echo -n abcdef | hexdump -x"),
    sh("sort_stable", "printf 'b1\\na2\\nb0\\na1\\n' | sort -s -k1,1.1"),
    sh("nice", "nice -n 5 sh -c 'cat /proc/self/stat' | cut -d' ' -f19; nice"),
    sh("renice", "sleep 2 & renice -n 3 -p $! >/dev/null; cut -d' ' -f19 /proc/$!/stat; kill $!"),
    sh("usleep", "usleep 1000; echo ok"),
    sh("watch_seq", "seq 3 | while read n; do echo line $n; done"),
    # the shell itself (busybox ash)
    sh("pipeline", "echo a b c | tr ' ' '\\n' | sort -r | head -2"),
    sh("pipe_status", "false | true; echo $?; true | false; echo $?"),
    sh("cmdsubst", "x=$(echo inner $(echo nested)); echo \"$x\"; y=`echo back`; echo $y"),
    sh("subshell", "(cd /data; pwd); pwd; (exit 4); echo $?"),
    sh("heredoc", "cat <<EOF\nvalue $((6 * 7))\nEOF\ncat <<'EOF'\nliteral $HOME\nEOF\ncat <<-EOF\n\tstripped\n\tEOF"),
    sh("redirections", "echo one > f; echo two >> f; cat < f; echo err 1>&2; ls nope 2>/dev/null; echo $?; "
                       "exec 3> g; echo fd3 >&3; exec 3>&-; cat g; cat <> f"),
    sh("trap_exit", "trap 'echo exit trap' EXIT; echo body"),
    sh("trap_int", "trap 'echo got INT' INT; kill -INT $$; echo after"),
    sh("trap_term_child", "sh -c 'trap \"echo child TERM; exit 9\" TERM; kill -TERM $$; echo not here'; echo $?"),
    sh("trap_reset", "trap 'echo usr1' USR1; trap - USR1; sh -c 'kill -USR1 $$'; echo $?"),
    sh("signal_status", "sh -c 'kill -KILL $$'; echo $?; sh -c 'kill -SEGV $$'; echo $?"),
    sh("exit_codes", "sh -c 'exit 3'; echo $?; sh -c 'exit 255'; echo $?; nope 2>/dev/null; echo $?"),
    sh("functions", "f() { echo \"f:$1:$#\"; return 2; }; f x y; echo $?"),
    sh("loops", "for i in 1 2 3; do echo $i; done; i=0; while [ $i -lt 3 ]; do i=$((i+1)); done; echo $i"),
    sh("case", "for w in abc 12 ZZ; do case $w in [0-9]*) echo num;; a*) echo a-word;; *) echo other;; esac; done"),
    sh("arith", "echo $((7 * 6)) $((17 % 5)) $((1 << 10)) $(( (3 + 4) * 2 )) $((0x10))"),
    sh("params", "set -- x 'y z'; echo $#; for a in \"$@\"; do echo \"[$a]\"; done; echo ${UNSET:-default}"),
    sh("read_loop", "while IFS=: read -r user x uid rest; do echo \"$user $uid\"; done < /etc/passwd"),
    sh("read_file", "read x < /data/words; echo $x"),
    sh("set_e", "set -e; true; echo before; false; echo not reached"),
    sh("background_wait", "sleep 0.2 & echo started; wait; echo waited $?"),
    sh("background_status", "(exit 5) & wait $!; echo $?"),
    sh("jobs_list", "set -m; sleep 1 & jobs; kill %1; wait; echo done"),
    sh("job_stop_cont", "set -m; sleep 1 & p=$!; kill -STOP $p; sleep 0.1; cat /proc/$p/stat | cut -d' ' -f3; "
                        "kill -CONT $p; sleep 0.1; cut -d' ' -f3 /proc/$p/stat; wait $p; echo status $?"),
    sh("job_fg", "set -m; (sleep 0.3; echo bg done) & fg %1; echo fg status $?; wait"),
    sh("kill_group", "setsid sh -c 'sleep 5 & sleep 5 & wait' & p=$!; sleep 0.2; kill -TERM -$p; wait $p; "
                     "echo status $?; kill -0 -$p; echo $?", normalise=["wakeup_order"]),
    sh("exec", "sh -c 'exec echo replaced; echo never'"),
    sh("eval", "cmd='echo evaluated'; eval $cmd; eval 'x=5'; echo $x"),
    sh("ifs", "IFS=,; set -- a,b,c; echo $#; IFS=' '; echo $*"),
    sh("long_sh", LONG_SCRIPT),
    # bash
    sh("bash_pipeline", "echo a b c | tr ' ' '\\n' | sort -r | head -2; echo ${PIPESTATUS[@]}", "bash"),
    sh("bash_arrays", "a=(one two three); echo ${#a[@]} ${a[1]}; declare -A m; m[k]=v; echo ${m[k]}", "bash"),
    sh("bash_heredoc", "cat <<EOF\n$((2**10))\nEOF\ncat <<< 'herestring'", "bash"),
    sh("bash_trap", "trap 'echo bye' EXIT; trap 'echo int' INT; kill -INT $$; echo after", "bash"),
    sh("bash_subshell", "x=1; (x=2; echo $x); echo $x; echo $(echo $BASH_SUBSHELL; (echo $BASH_SUBSHELL))", "bash"),
    sh("bash_procsub", "diff <(seq 3) <(seq 3) && echo same", "bash"),
    sh("bash_redirect", "exec 4>f; echo four >&4; exec 4>&-; cat f; { echo g1; echo g2; } > g; cat g; "
                        "echo e >&2 2>/dev/null", "bash"),
    sh("bash_jobs", "set -m; sleep 1 & jobs; kill -STOP %1; jobs; kill -CONT %1; kill %1; wait; jobs; echo end",
       "bash"),
    sh("bash_wait_n", "sleep 0.2 & sleep 0.1 & wait -n; echo one; wait; echo all", "bash"),
    sh("bash_regex", "[[ abc123 =~ ^([a-z]+)([0-9]+)$ ]] && echo ${BASH_REMATCH[2]}", "bash"),
    sh("bash_printf_v", "printf -v x '%03d' 7; echo $x; echo ${x/0/o} ${x^^} ${#x}", "bash"),
    sh("bash_read_file", "while read -r l; do echo \"<$l>\"; done < /data/words; mapfile -t L < /data/words; "
                         "echo ${#L[@]}", "bash"),
    sh("bash_coproc_like", "exec 3< <(echo from-proc); read -u 3 v; echo $v", "bash"),
    sh("bash_errexit", "set -eo pipefail; false | true; echo not reached", "bash"),
    sh("bash_times", "times > /dev/null; echo $?; ulimit -n; ulimit -s", "bash"),
    sh("bash_long", LONG_SCRIPT, "bash"),
    # mksh (klibc)
    sh("mksh_pipeline", "echo a b c | tr ' ' '\\n' | sort -r | head -2", "mksh"),
    sh("mksh_cmdsubst", "x=$(echo $(echo nested)); print -r -- \"$x\"; typeset -i n=6; n=n*7; echo $n", "mksh"),
    sh("mksh_trap", "trap 'echo bye' EXIT; trap 'echo int' INT; kill -INT $$; echo after", "mksh"),
    sh("mksh_heredoc", "cat <<EOF\n$((3 * 3))\nEOF", "mksh"),
    sh("mksh_wait", "sleep 0.1 & wait $!; echo $?; (exit 6) & wait $!; echo $?", "mksh"),
    sh("mksh_arrays", "set -A a x y z; echo ${#a[*]} ${a[2]}", "mksh"),
    sh("mksh_long", LONG_SCRIPT, "mksh"),
    # zsh
    sh("zsh_pipeline", "echo a b c | tr ' ' '\\n' | sort -r | head -2", "zsh"),
    sh("zsh_glob", "cd /data && print -l *(.) | sort; print -l **/note", "zsh"),
    sh("zsh_trap", "trap 'echo bye' EXIT; TRAPINT() { echo int; }; kill -INT $$; echo after", "zsh"),
    sh("zsh_arith", "integer x=5; (( x *= 3 )); echo $x; echo $(( 2 ** 8 ))", "zsh"),
    sh("zsh_wait", "sleep 0.1 & wait; echo $?; (exit 6) & wait $!; echo $?", "zsh"),
    sh("zsh_heredoc", "cat <<EOF\n${(U)HOME}x\nEOF", "zsh"),
    sh("zsh_jobs", "setopt monitor; sleep 1 & jobs; kill %1; wait; echo done", "zsh"),
    sh("zsh_long", LONG_SCRIPT, "zsh"),
    # sash: its built-in commands
    run("sash_builtins", "/bin/sash", "-c", "-echo sash works"),
    run("sash_ls", "/bin/sash", "-c", "-ls /data/sub"),
    run("sash_cat", "/bin/sash", "-c", "-cat /data/words"),
    run("sash_mkdir", "/bin/sash", "-c", "-mkdir /w/sash_mkdir/d"),
    run("sash_sum", "/bin/sash", "-c", "-sum /data/words"),
    run("sash_ext", "/bin/sash", "-c", "/bin/echo external"),
    # klibc's static programs
    sh("klibc_gzip", "/bin/kgzip -c /data/blob > b.gz; /bin/kgunzip -c b.gz | cmp - /data/blob && echo same; "
                     "/bin/kzcat b.gz | md5sum"),
    run("mksh_c", "/bin/mksh", "-c", "echo $((1+2)); for i in a b; do echo $i; done"),
    # e2fsck, gpgv, dietlibc
    run("e2fsck_image", "/sbin/e2fsck.static", "-fn", "/data/fs.img"),
    run("gpgv_version", "/bin/gpgv", "--version"),
    run("diet_program", "/bin/dietprog", "/data/words"),
    # Go: Debian's gojq (threads, futexes, epoll) and the firmware's gothreads (goroutines, channels, GC)
    sh("gojq_add", "echo '{\"a\":[1,2,3],\"b\":{\"c\":\"x\"}}' | gojq -c '{sum: (.a | add), c: .b.c}'"),
    sh("gojq_range", "gojq -n -c '[range(10)] | map(. * .) | {n: length, s: add}'; echo $?"),
    sh("gojq_file", "printf '{\"w\":\"%s\"}\\n' alpha beta gamma > in.json; gojq -r .w in.json | sort -r; "
                    "gojq . nope.json; echo $?"),
    sh("gojq_pipe", "seq 1 200 | gojq -s 'map(select(. % 7 == 0)) | length'"),
    run("gothreads", "/bin/gothreads", "all", "16"),
    # priorities, groups, times, interval timers, waitid and job control (tests/programs/jobctl.c)
    run("jobctl", "/bin/jobctl"),
    sh("jobctl_under_bash", "/bin/jobctl | tail -3", "bash"),
    # exit statuses across exec
    run("status_direct", "/bin/sh", "-c", "exit 42"),
    run("status_signal", "/bin/sh", "-c", "kill -TERM $$"),
]

# Each its own `ballast run --root IMG`: init's own exit status or death by a signal, as the command's
# status (128 + N when killed), against the same command natively (its status, or -N from subprocess).
BOOTS = [
    ("/bin/sh", "-c", "echo out; exit 42"),
    ("/bin/sh", "-c", "sleep 5 & p=$!; kill -STOP $p; sleep 0.1; kill -TERM $p; sleep 0.1; "
                      "grep State /proc/$p/status; kill -CONT $p; wait $p; echo $?; kill -ABRT $$", "wakeup_order"),
    ("/bin/sh", "-c", "kill -TERM $$"),
    ("/bin/bash", "-c", "kill -SEGV $$"),
    ("/bin/mksh", "-c", "kill -INT $$"),
    ("/bin/zsh", "-c", "sleep 1 & kill -STOP $!; sleep 0.2; kill -CONT $!; sleep 0.2; wait $!; echo waited $?; exit 7"),
    ("/bin/bash", "-c", "trap 'echo term; exit 3' TERM; kill -TERM $$; echo not"),
    ("/sbin/e2fsck.static", "-fn", "/data/fs.img"),
]


def _applet_cases():
    """BALLAST_COMPAT_LONG: every applet's --help (usage to stderr, status 1 or 0) through busybox."""
    applets = subprocess.run([str(HOST["busybox"]), "--list"], capture_output=True, text=True).stdout.split()
    skip = {"init", "linuxrc", "halt", "poweroff", "reboot", "sh", "ash", "hush", "getty", "login", "su", "sulogin",
            "acpid", "klogd", "syslogd", "watchdog", "crond", "httpd", "inetd", "telnetd", "ftpd", "udhcpd",
            "ntpd", "tcpsvd", "udpsvd", "nc", "ping", "ping6", "nameif", "ifup", "ifdown", "swapoff", "swapon",
            "mount", "umount", "losetup", "fbsplash", "chvt", "openvt", "deallocvt", "setconsole", "run-init",
            "switch_root", "pivot_root", "chroot", "mdev", "rfkill", "hwclock", "rdate", "top", "vi", "less",
            "more", "watch", "script", "microcom", "resize", "reset", "setserial", "stty", "ttysize", "ts",
            "nuke", "busybox", "tc", "ip", "route", "ifconfig", "arp", "arping", "brctl", "vconfig", "zcip"}
    return [run(f"help_{a}", "/bin/busybox", a, "--help") for a in applets if a not in skip]


if os.environ.get("BALLAST_COMPAT_LONG"):
    CASES = CASES + _applet_cases()


DIET_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <time.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
    char buf[4096]; int n, lines = 0, fd = open(argv[1], O_RDONLY);
    if (fd < 0) { perror("open"); return 1; }
    while ((n = read(fd, buf, sizeof buf)) > 0) for (int i = 0; i < n; i++) lines += buf[i] == '\n';
    close(fd);
    printf("diet: %d lines in %s\n", lines, argv[1]);
    time_t t = time(0);
    printf("time is %s\n", t > 1000000 ? "sane" : "zero");
    pid_t pid = fork();
    if (pid == 0) { printf("child %s\n", getppid() > 0 ? "has a parent" : "orphan"); _exit(7); }
    int status; waitpid(pid, &status, 0);
    printf("child exited %d\n", WEXITSTATUS(status));
    char *p = malloc(1 << 20); memset(p, 'x', 1 << 20);
    printf("malloc ok %c\n", p[12345]);
    return 3;
}
"""


def _build_tree(base: Path) -> Path:
    tree = base / "root"
    for d in ("bin", "sbin", "etc", "dev", "proc", "tmp", "t", "w", "data/sub"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    shutil.copy(HOST["busybox"], tree / "bin" / "busybox")
    applets = subprocess.run([str(HOST["busybox"]), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (tree / "bin" / applet).symlink_to("busybox")
    shutil.copy(HOST["bash"], tree / "bin" / "bash")
    shutil.copy(HOST["zsh"], tree / "bin" / "zsh")
    shutil.copy(HOST["sash"], tree / "bin" / "sash")
    shutil.copy(HOST["mksh"], tree / "bin" / "mksh")
    shutil.copy(HOST["kgzip"], tree / "bin" / "kgzip")
    (tree / "bin" / "kgunzip").symlink_to("kgzip")
    (tree / "bin" / "kzcat").symlink_to("kgzip")
    (tree / "bin" / "sash").chmod(0o755)
    shutil.copy(HOST["e2fsck"], tree / "sbin" / "e2fsck.static")
    shutil.copy(HOST["gpgv"], tree / "bin" / "gpgv")
    shutil.copy(HOST["gojq"], tree / "bin" / "gojq")
    shutil.copy(REPO / "firmware" / "bin" / "gothreads", tree / "bin" / "gothreads")
    diet = shutil.which("diet")
    if diet is not None:
        src = base / "dietprog.c"
        src.write_text(DIET_SOURCE)
        subprocess.run([diet, "gcc", "-O1", "-o", str(tree / "bin" / "dietprog"), str(src)], check=True,
                       capture_output=True)
    subprocess.run(["gcc", "-static", "-O1", "-o", str(tree / "bin" / "jobctl"), str(PROGRAMS / "jobctl.c")],
                   check=True, capture_output=True)
    os.mknod(tree / "dev" / "null", 0o20666, os.makedev(1, 3))
    os.mknod(tree / "dev" / "zero", 0o20666, os.makedev(1, 5))
    (tree / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
    (tree / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\n")
    data = tree / "data"
    (data / "words").write_text("alpha\nbeta\ngamma\ndelta\n")
    (data / "numbers").write_text("".join(f"{(i * 7919) % 1000}\n" for i in range(50)))
    (data / "dups").write_text("b\na\nb\nc\na\nb\n")
    (data / "mixed").write_bytes(b"\x00\x01binary\xffprintable text here\x00zz\n")
    import hashlib
    (data / "blob").write_bytes(hashlib.shake_256(b"blob").digest(96_000))
    (data / "sub" / "note").write_text("nested\n")
    fs = data / "fs.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", "-b", "1024", "-E", "root_owner=0:0", "-d", str(data / "sub"),
                    str(fs), "1024"], check=True, capture_output=True, env={**os.environ, "E2FSPROGS_FAKE_TIME": "1",
                                                                           "MKE2FS_DEVICE_SECTSIZE": "512"})
    for case in CASES:
        (tree / "w" / case.name).mkdir()
        if case.script is not None:
            (tree / "t" / f"{case.name}.sh").write_text(case.script + "\n")
    return tree


def _driver(cases) -> str:
    lines = ["#!/bin/sh"]
    for case in cases:
        lines.append(f"cd /w/{case.name}; echo '@@case {case.name}'; {case.command()} </dev/null 2>&1; "
                     f"echo \"@@status $?\"")
    lines.append("echo '@@end'")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def compat(tmp_path_factory):
    base = tmp_path_factory.mktemp("compat")
    tree = _build_tree(base)
    (tree / "t" / "driver.sh").write_text(_driver(CASES))
    image = base / "root.img"
    mkdisk(str(tree), str(image))
    return base, tree, image


def guest_run(image: Path, argv) -> tuple:
    """(wait status of init, console text without printk lines, printk lines)."""
    from vmm.machine import MachineStopped
    m = Machine(MachineConfig(mem=256 << 20, disks=[DiskConfig(str(image))]))
    try:
        m.load(None, argv[0], list(argv[1:]), root_device="/dev/vda")
        m.stop_at(GUEST_BUDGET_NS, "compat budget")
        try:
            status = m.boot()
        except MachineStopped:
            status = None
        out = m.console_output.decode(errors="replace")
    finally:
        m.close()
    lines = out.splitlines(True)
    printk = [line for line in lines if PRINTK.match(line)]
    return status, "".join(line for line in lines if not PRINTK.match(line)), printk


def native_run(base: Path, tree: Path, argv, merge_stderr: bool = False) -> subprocess.CompletedProcess:
    """argv chrooted into a fresh copy of the tree with /proc mounted there (unmounted afterwards);
    merge_stderr: stderr into stdout, as both reach the guest's console."""
    work = base / "native"
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run(["cp", "-a", str(tree), str(work)], check=True)      # device nodes as nodes (not their data)
    subprocess.run(["mount", "-t", "proc", "proc", str(work / "proc")], check=True)
    try:
        with open(work / "dev_stdin", "wb+") as stdin:
            return subprocess.run(["taskset", "-c", "0", "chroot", str(work), *argv], stdin=stdin,
                                  preexec_fn=_boot_limits, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE, timeout=300, env={"HOME": "/", "TERM": "linux",
                                                                         "PATH": "/sbin:/bin:/usr/sbin:/usr/bin"})
    finally:
        subprocess.run(["umount", "-l", str(work / "proc")], check=False)


def _boot_limits() -> None:
    """The resource limits Linux gives init (INIT_RLIMITS), which the guest's processes have: not
    whatever this test runner inherited."""
    import resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 4096))
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.RLIM_INFINITY))
    resource.setrlimit(resource.RLIMIT_STACK, (8 << 20, resource.RLIM_INFINITY))


def split_cases(text: str) -> dict:
    """name -> (status, output) from the driver's markers."""
    results = {}
    for block in text.split("@@case ")[1:]:
        name, _, rest = block.partition("\n")
        body, sep, tail = rest.rpartition("@@status ")
        if not sep:
            results[name] = (None, rest)
            continue
        results[name] = (int(tail.split()[0]), body)
    return results


@pytest.fixture(scope="module")
def results(compat):
    base, tree, image = compat
    copy = base / "run.img"
    shutil.copy(image, copy)
    status, out, printk = guest_run(copy, ["/bin/sh", "/t/driver.sh"])
    fsck = subprocess.run(["e2fsck", "-fn", str(copy)], capture_output=True, text=True)
    native = native_run(base, tree, ["/bin/sh", "/t/driver.sh"])
    return split_cases(out), split_cases(native.stdout.decode(errors="replace")), printk, (status, out, fsck)


def normalised(case, text: str) -> str:
    for name in case.normalise:
        text = NORMALISERS[name](text)
    return text


@pytest.mark.parametrize("boot", BOOTS, ids=lambda a: a[0].rsplit("/", 1)[-1] + ":" + a[2][:24])
def test_boot_status_matches_native(compat, boot, capfd):
    """`ballast run` with the command as init: the same status (and output) as the command natively."""
    from vmm import cli
    argv, names = boot[:3], boot[3:]
    case = Case("boot", argv, None, names)
    base, tree, image = compat
    copy = base / "boot.img"
    shutil.copy(image, copy)
    capfd.readouterr()
    code = cli.main(["run", "--mem", "128M", "--root", str(copy), *argv])
    out = capfd.readouterr().out
    native = native_run(base, tree, list(argv), merge_stderr=True)
    native_code = native.returncode if native.returncode >= 0 else 128 - native.returncode
    assert (code, normalised(case, out)) == (native_code, normalised(case, native.stdout.decode()))


def test_driver_ends_and_leaves_a_clean_disk(results):
    """The guest ran every case to the end (init exited 0) and the disk it wrote is sound."""
    _, _, printk, (status, out, fsck) = results
    assert status == 0 and out.rstrip().endswith("@@end"), "".join(printk[-5:])
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_enough_cases():
    assert len(CASES) >= 150
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case_matches_native(results, case):
    guest, native, printk, _ = results
    assert case.name in native, f"the native run did not reach {case.name}"
    assert case.name in guest, f"the guest did not reach {case.name}: " + "".join(printk[-5:])
    g_status, g_out = guest[case.name]
    n_status, n_out = native[case.name]
    assert (g_status, normalised(case, g_out)) == (n_status, normalised(case, n_out))
