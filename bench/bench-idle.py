#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""bench-idle: what an idle guestkeeperd costs while it waits for a shutdown.

A private libvirtd serving the test driver with GUESTS running guests (100), the private bus,
dbusmock's logind and the built daemon, in two situations: started with nothing to restore, and
started after a host shutdown (it preserved the guests, was stopped, and restored them when started
again: the state a host is in for days after a boot). After the daemon is idle and SETTLE seconds
(20: GLib ends pool threads idle for 15 s) have passed, it is watched for SECONDS (30): CPU ticks
(utime+stime of all threads, /proc/PID/stat),
wake-ups (voluntary + involuntary context switches summed over its threads,
/proc/PID/task/*/status, per thread too), threads alive and VmRSS, with the goals
(0 ticks per 30 s, under 8 MiB) as ratios; then where the resident memory is (smaps).
STRACE=1 adds `strace -f -c` of a second window (which syscalls the wake-ups make).
LIBVIRTD_CONF='keepalive_interval = -1' stops libvirtd's own keepalive pings (every 5 s to each
client that receives events, by default): what is left is the daemon's own."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'integration'))
import harness  # noqa: E402
import libvirt  # noqa: E402

libvirt.registerErrorHandler(lambda *a: None, None)
GUESTS = int(os.environ.get('GUESTS', '100'))
SETTLE = float(os.environ.get('SETTLE', '20'))
SECONDS = float(os.environ.get('SECONDS', '30'))
GOAL_TICKS = 0  # per 30 s
GOAL_RSS_KIB = 8 * 1024
TICK = os.sysconf('SC_CLK_TCK')


def ticks(pid):
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


def status(path):
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(':')
            out[k] = v.strip()
    return out


def smaps(pid):
    """{kind: [Rss, Anonymous, Pss] in KiB}: heap, thread stacks, other anonymous memory (malloc
    arenas of threads, libvirt's and GLib's allocations), and each file (the libraries: their
    Anonymous part is what relocations and their data made private)."""
    kinds = {}
    cur = None
    with open(f'/proc/{pid}/smaps') as f:
        for line in f:
            head = line.split()
            if not head[0].endswith(':'):
                lo, hi = (int(x, 16) for x in head[0].split('-'))
                name = head[5] if len(head) > 5 else ''
                if name == '[heap]':
                    cur = 'heap (main arena)'
                elif name.startswith('['):
                    cur = name
                elif name:
                    cur = os.path.basename(name)
                elif (hi - lo) // 1024 in (8192, 8188):
                    cur = 'thread stacks'
                else:
                    cur = 'anon (thread arenas, libvirt/GLib allocations)'
                kinds.setdefault(cur, [0, 0, 0])
            elif head[0] in ('Rss:', 'Anonymous:', 'Pss:'):
                kinds[cur][('Rss:', 'Anonymous:', 'Pss:').index(head[0])] += int(head[1])
    return kinds


def watch(pid):
    """The daemon over SECONDS, after SETTLE."""
    time.sleep(SETTLE)
    t0, s0, w0 = ticks(pid), harness.thread_stats(pid), time.monotonic()
    time.sleep(SECONDS)
    t1, s1, elapsed = ticks(pid), harness.thread_stats(pid), time.monotonic() - w0
    out = {'elapsed': elapsed, 'ticks': t1 - t0, 'threads': (len(s0), len(s1)),
           'wakeups': {tid: (name, n - s0[tid][1]) for tid, (name, n) in s1.items() if tid in s0},
           'status': status(f'/proc/{pid}/status'), 'smaps': smaps(pid)}
    if os.environ.get('STRACE'):
        out['strace'] = subprocess.run(['timeout', '-s', 'INT', str(SECONDS), 'strace', '-f', '-c', '-p', str(pid)],
                                       capture_output=True, text=True).stderr
    return out


def report(title, m):
    per30 = 30 / m['elapsed']
    cpu = m['ticks'] * per30
    total = sum(n for _, n in m['wakeups'].values())
    st = m['status']
    rss = int(st['VmRSS'].split()[0])
    mem = m['smaps']
    conf = os.environ.get('LIBVIRTD_CONF')
    print(f'{title}: {GUESTS} test-driver guests via a private libvirtd{f" ({conf})" if conf else ""}, '
          f'{m["elapsed"]:.1f} s '
          f'after {SETTLE:.0f} s settling')
    print(f'  CPU      {cpu:.1f} ticks per 30 s ({TICK} ticks/s)   goal {GOAL_TICKS}   '
          f'baseline 8 ({cpu / 8:.2f}x of it)')
    print(f'  wake-ups {total * per30:.0f} context switches per 30 s   threads {m["threads"][1]} '
          f'({m["threads"][0]} at the start of the window)')
    for tid, (name, n) in sorted(m['wakeups'].items()):
        print(f'    tid {tid:<8} {name:<16} {n * per30:6.0f}')
    print(f'  VmRSS    {rss / 1024:.1f} MiB   goal {GOAL_RSS_KIB / 1024:.0f} MiB ({rss / GOAL_RSS_KIB:.2f}x)   '
          f'baseline 20 MiB ({rss / 20480:.2f}x)')
    print(f'           RssAnon {st["RssAnon"]}, RssFile {st["RssFile"]} (library pages, shared with other '
          f'processes), Pss {sum(v[2] for v in mem.values())} kB')
    print('  resident by kind, KiB (Rss / of which anonymous):')
    for kind, (r, a, _) in sorted(mem.items(), key=lambda kv: -kv[1][0]):
        if r >= 128 or a >= 64:
            print(f'    {r:7d} / {a:5d}  {kind}')
    rest = [v for v in mem.values() if not (v[0] >= 128 or v[1] >= 64)]
    print(f'    {sum(v[0] for v in rest):7d} / {sum(v[1] for v in rest):5d}  (the rest, {len(rest)} kinds)')
    if m.get('strace'):
        print('  strace -f -c over another window:')
        print('\n'.join('    ' + line for line in m['strace'].splitlines()))


def main():
    wd = harness.Workdir()
    lv = harness.Libvirtd(wd.path, conf=os.environ.get('LIBVIRTD_CONF', '') + '\n')
    bus = harness.PrivateBus(wd.path)
    logind = harness.Logind(bus, os.path.join(wd.path, 'logind.log'))
    notify = harness.NotifyListener(os.path.join(wd.path, 'notify'))
    conn = libvirt.open(lv.uri())
    daemon = None
    results = []
    try:
        harness.running_test_guests(conn, GUESTS)
        cfg = os.path.join(wd.path, 'gk.conf')
        with open(cfg, 'w') as f:
            f.write(f'[Guests]\nURIs={lv.uri()}\n')
        daemon = harness.Daemon(wd.path, bus, notify, cfg, {'G_DEBUG': ''}).start()
        client = harness.Client(bus)
        client.wait_state('idle')
        harness.wait_until(lambda: len(client.list_guests()) == GUESTS, 20, 'all guests known')
        results.append(('Started with nothing to restore', watch(daemon.proc.pid)))

        logind.emit_prepare_for_shutdown(True)
        client.wait_state('preserved', 60)
        daemon.stop()
        daemon.start()
        client = harness.Client(bus)
        client.wait_run_finished('restore', 60)
        client.wait_state('idle')
        assert len(conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)) == GUESTS
        results.append(('Started after a host shutdown, restored the guests', watch(daemon.proc.pid)))
    finally:
        if daemon:
            daemon.kill()
        conn.close()
        logind.stop()
        bus.stop()
        lv.stop()
        wd.cleanup()
    for title, m in results:
        report(title, m)


if __name__ == '__main__':
    main()
