#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""soak: CYCLES (200) preserve/restore cycles against one guestkeeperd (test driver through a
private libvirtd), with random faults: guests whose save fails or that ignore ACPI (injected),
guests that stop by themselves or pause during a run, cancelled host shutdowns. After every
cycle each guest that was running before it must be running again. Reports cycles, guests
handled, guests lost (must be 0), and the daemon's RSS after warm-up and at the end (must
not grow). Not in CI: minutes long."""

import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'integration'))
import harness  # noqa: E402
import libvirt  # noqa: E402

libvirt.registerErrorHandler(lambda *a: None, None)
CYCLES = int(os.environ.get('CYCLES', '200'))
N = 16
SEED = int(os.environ.get('SEED', '1'))


def rss_kib(pid):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def main():
    rnd = random.Random(SEED)
    wd = harness.Workdir()
    lv = harness.Libvirtd(wd.path)
    bus = harness.PrivateBus(wd.path)
    logind = harness.Logind(bus, os.path.join(wd.path, 'logind.log'))
    notify = harness.NotifyListener(os.path.join(wd.path, 'notify'))
    conn = libvirt.open(lv.uri())
    for d in conn.listAllDomains():
        d.destroy()
        d.undefine()
    names = [f'g{i:02d}' for i in range(N)]
    for n in names:
        conn.defineXML(harness.test_domain_xml(n)).create()
    faults = 'g00=save-fails,g01=save-fails,g02=save-fails,g02=ignore-shutdown,g03=slow-save'
    cfg = os.path.join(wd.path, 'gk.conf')
    with open(cfg, 'w') as f:
        f.write(f'[Guests]\nURIs={lv.uri()}\n[Shutdown]\nSave=all\nShutdownTimeoutSec=1\nParallelSaves=4\n')
    daemon = harness.Daemon(wd.path, bus, notify, cfg, {'GUESTKEEPER_FAULTS': faults}).start()
    client = harness.Client(bus)
    handled = lost = cancels = stops = pauses = 0
    rss_warm = rss_end = 0
    t0 = time.monotonic()
    try:
        client.wait_state('idle')
        for cycle in range(1, CYCLES + 1):
            running = {n for n in names if conn.lookupByName(n).isActive()}
            if rnd.random() < 0.1:  # a guest paused by its owner
                n = rnd.choice(sorted(running))
                conn.lookupByName(n).suspend()
                pauses += 1
            n_pre = len([r for r in client.run_finished if r[0] == 'preserve'])
            n_res = len([r for r in client.run_finished if r[0] == 'restore'])
            if rnd.random() < 0.15:  # a host shutdown that gets cancelled mid-run
                logind.emit_prepare_for_shutdown(True)
                client.wait_state('preserving', 30)
                logind.emit_prepare_for_shutdown(False)
                cancels += 1
                client.wait_run_finished('preserve', 60, n_pre + 1)
                client.wait_run_finished('restore', 60, n_res + 1)
            else:
                client.call('PreserveGuests')
                if rnd.random() < 0.2:  # a guest stops by itself during the run
                    # ...once the run has listed it: a guest stopped before that was not running
                    # when the run began, and is rightly never started again.
                    harness.wait_until(lambda: client.get('GuestsTotal') == len(running) or
                                       client.get('State') != 'preserving', 30, 'the run listed the guests')
                    rows = client.list_guests()
                    victims = sorted(n for n in running if rows.get(n, ('',) * 5)[4] in ('', 'saving')
                                     and conn.lookupByName(n).isActive())
                    if victims:
                        try:
                            conn.lookupByName(rnd.choice(victims)).destroy()
                            stops += 1
                        except libvirt.libvirtError:
                            pass  # saved in the meantime
                client.wait_run_finished('preserve', 60, n_pre + 1)
                client.call('RestoreGuests')
                client.wait_run_finished('restore', 60, n_res + 1)
            client.wait_state('idle', 30)
            for n in running:
                d = conn.lookupByName(n)
                if d.info()[0] == libvirt.VIR_DOMAIN_PAUSED:
                    d.resume()  # it comes back paused, as it was; the owner resumes it
                if not d.isActive():
                    lost += 1
                    log = [line for line in daemon.log_text().split('\n') if n in line or 'run ' in line]
                    print(f'cycle {cycle}: {n} was running and is not (state {d.info()[0]}, managed save '
                          f'{d.hasManagedSaveImage()}); daemon log:\n  ' + '\n  '.join(log[-40:]), flush=True)
                    os.environ['GK_KEEP_TMP'] = '1'
                    d.create()
            handled += len(running)
            if cycle == 10:
                rss_warm = rss_kib(daemon.proc.pid)
            if cycle % 50 == 0:
                print(f'  cycle {cycle}: RSS {rss_kib(daemon.proc.pid)} KiB', flush=True)
        rss_end = rss_kib(daemon.proc.pid)
        daemon.stop()  # a clean exit: under valgrind, its leak summary
    finally:
        daemon.kill()
        conn.close()
        logind.stop()
        bus.stop()
        lv.stop()
        wd.cleanup()
    print(f'soak: {CYCLES} cycles in {time.monotonic() - t0:.0f} s, {handled} guests handled, {lost} lost; '
          f'{cancels} cancelled shutdowns, {stops} guests stopped mid-run, {pauses} paused; '
          f'RSS {rss_warm} KiB after 10 cycles, {rss_end} KiB at the end ({rss_end - rss_warm:+d} KiB)')
    sys.exit(1 if lost else 0)


if __name__ == '__main__':
    main()
