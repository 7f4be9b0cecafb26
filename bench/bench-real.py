#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""bench-real: guestkeeperd side by side with Debian's unmodified libvirt-guests.sh, on the
same real QEMU guests (TCG) under one private libvirtd, in one run.

  1. preserve 4 big guests (512 MiB, 400 MiB filled): libvirt-guests.sh stop with
     ON_SHUTDOWN=suspend vs guestkeeperd Save=all with ParallelSaves=1, 2, 4;
  2. restore them: libvirt-guests.sh start (ON_BOOT=start) vs guestkeeperd's restore;
  3. the physical limit: bytes the saves wrote / the save directory's sequential write
     bandwidth (dd oflag=direct, same run);
  4. shut down 4 cooperative guests: ON_SHUTDOWN=shutdown PARALLEL_SHUTDOWN=4 vs Save=none;
  5. orchestration at scale: N_SCALE (100) test-driver guests served by the private libvirtd,
     libvirt-guests.sh stop (suspend) vs guestkeeperd.
Prints a table with the ratios. Environment: BIG_MIB (512), FILL_MIB (400), N_SCALE (100),
ONLY_SCALE=1 (run part 5 alone)."""

import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'integration'))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'e2e'))
import guests  # noqa: E402
import harness  # noqa: E402
import libvirt  # noqa: E402

libvirt.registerErrorHandler(lambda *a: None, None)
BIG_MIB = int(os.environ.get('BIG_MIB', '512'))
FILL_MIB = int(os.environ.get('FILL_MIB', '400'))
# libvirt-guests.sh polls each suspend with "sleep 1": N guests cost it over N seconds.
N_SCALE = int(os.environ.get('N_SCALE', '100'))
ONLY_SCALE = os.environ.get('ONLY_SCALE') == '1'
SCRIPT = '/usr/lib/libvirt/libvirt-guests.sh'


class LibvirtGuests:
    """Runs the unmodified script with our /etc/default/libvirt-guests and a private
    /var/lib/libvirt (its list of guests to bring back) in its own mount namespace."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, 'libvirt-guests')
        os.makedirs(os.path.join(self.dir, 'varlib'), exist_ok=True)

    def run(self, action, **settings):
        listfile = os.path.join(self.dir, 'varlib', 'libvirt-guests')
        if action == 'stop' and os.path.exists(listfile):
            # The script does nothing at "stop" while the list of its last stop is there
            # ("last stop was not followed by start"): each measurement starts clean.
            os.unlink(listfile)
        cfg = os.path.join(self.dir, 'config')
        with open(cfg, 'w') as f:
            for k, v in settings.items():
                f.write(f'{k}={v}\n')
        script = (f'mount --bind {cfg} /etc/default/libvirt-guests && '
                  f'mount --bind {self.dir}/varlib /var/lib/libvirt && exec {SCRIPT} {action}')
        t = time.monotonic()
        r = subprocess.run(['unshare', '--mount', '--propagation', 'private', '--', '/bin/sh', '-c', script],
                           capture_output=True, text=True, timeout=3600)
        took = time.monotonic() - t
        if r.returncode != 0:
            print(f'libvirt-guests.sh {action} exited {r.returncode}: {r.stdout[-500:]} {r.stderr[-500:]}')
        return took


class Bench:
    def __init__(self):
        self.wd = harness.Workdir()
        self.lv = harness.Libvirtd(self.wd.path)
        self.bus = harness.PrivateBus(self.wd.path)
        self.logind = harness.Logind(self.bus, os.path.join(self.wd.path, 'logind.log'))
        self.notify = harness.NotifyListener(os.path.join(self.wd.path, 'notify'))
        self.image = guests.image_dir()
        self.uri = self.lv.uri('qemu', '/system')
        self.conn = libvirt.open(self.uri)
        self.lg = LibvirtGuests(self.wd.path)
        self.daemon = None
        self.client = None
        self.rows = []

    def close(self):
        if self.daemon:
            self.daemon.kill()
        for d in self.conn.listAllDomains():
            p = d.isPersistent()
            if d.isActive():
                d.destroy()
            if p:
                if d.hasManagedSaveImage():
                    d.managedSaveRemove()
                d.undefine()
        self.conn.close()
        self.logind.stop()
        self.bus.stop()
        self.lv.stop()
        self.wd.cleanup()

    def boot(self, specs):
        for name, kind, mem, fill in specs:
            con = os.path.join(self.wd.path, f'{name}.console')
            if os.path.exists(con):
                os.unlink(con)
            try:
                d = self.conn.lookupByName(name)
            except libvirt.libvirtError:
                d = self.conn.defineXML(guests.domain_xml(name, self.image, con, kind, mem, fill))
            if not d.isActive():
                d.create()
        for name, *_ in specs:
            guests.Console(os.path.join(self.wd.path, f'{name}.console')).wait_for('GK-READY', timeout=300)

    def gk(self, config, uri=None):
        """(Re)starts guestkeeperd with this [Shutdown] config."""
        if self.daemon:
            self.daemon.stop()
        cfg = os.path.join(self.wd.path, 'gk.conf')
        with open(cfg, 'w') as f:
            f.write(f'[Guests]\nURIs={uri or self.uri}\n[Shutdown]\n{config}\n[Boot]\nRestore=no\n')
        self.daemon = harness.Daemon(self.wd.path, self.bus, self.notify, cfg).start()
        self.client = harness.Client(self.bus)
        self.client.wait_state('idle', 60)

    def gk_run(self, method, kind):
        n = len([r for r in self.client.run_finished if r[0] == kind])
        t = time.monotonic()
        self.client.call(method)
        _, done, failed = self.client.wait_run_finished(kind, timeout=3600, count=n + 1)
        took = time.monotonic() - t
        if failed:
            print(f'guestkeeper {kind}: {failed} failed')
        return took

    def save_bytes(self):
        return sum(os.path.getsize(p) for p in glob.glob(os.path.join(self.lv.dir, 'lib', 'qemu', 'save', '*.save')))

    def disk_bandwidth(self):
        path = os.path.join(self.lv.dir, 'lib', 'qemu', 'save', 'dd-test')
        r = subprocess.run(['dd', 'if=/dev/zero', f'of={path}', 'bs=4M', 'count=256', 'oflag=direct'],
                           capture_output=True, text=True)
        os.unlink(path)
        # "1073741824 bytes (1.1 GB, 1.0 GiB) copied, 0.6 s, 1.8 GB/s"
        secs = float(r.stderr.strip().split('\n')[-1].split(',')[-2].strip().split()[0])
        return (1 << 30) / secs

    def row(self, what, baseline, ours, note=''):
        self.rows.append((what, baseline, ours, note))
        ratio = f'{baseline / ours:5.2f}x faster' if baseline and ours else ''
        print(f'  {what:<46} {baseline:8.2f} s {ours:8.2f} s  {ratio} {note}', flush=True)

    def running(self, names):
        return all(self.conn.lookupByName(n).isActive() for n in names)

    def main(self):
        if ONLY_SCALE:
            return self.scale()
        big = [(f'big{i}', 'cooperative', BIG_MIB, FILL_MIB) for i in range(4)]
        names = [b[0] for b in big]
        print(f'4 big guests ({BIG_MIB} MiB, {FILL_MIB} MiB filled), QEMU TCG, private libvirtd; '
              f'bandwidth measured in the save directory.', flush=True)
        bw = self.disk_bandwidth()
        print(f'  dd oflag=direct: {bw / 1e6:.0f} MB/s', flush=True)
        print(f'  {"":<46} {"libvirt-guests":>10} {"guestkeeper":>10}', flush=True)

        # 1+2: libvirt-guests
        self.boot(big)
        lg_stop = self.lg.run('stop', URIS=self.uri, ON_SHUTDOWN='suspend', ON_BOOT='start')
        assert not any(self.conn.lookupByName(n).isActive() for n in names), 'libvirt-guests left guests running'
        lg_bytes = self.save_bytes()
        lg_start = self.lg.run('start', URIS=self.uri, ON_SHUTDOWN='suspend', ON_BOOT='start')
        assert self.running(names), 'libvirt-guests did not restore'

        results = {}
        for p in (1, 2, 4):
            self.gk(f'Save=all\nParallelSaves={p}\n')
            pre = self.gk_run('PreserveGuests', 'preserve')
            assert not any(self.conn.lookupByName(n).isActive() for n in names)
            b = self.save_bytes()
            post = self.gk_run('RestoreGuests', 'restore')
            assert self.running(names)
            results[p] = (pre, post, b)
        best = min(results, key=lambda p: results[p][0])
        for p in (1, 2, 4):
            pre, post, b = results[p]
            self.row(f'preserve 4 big, ParallelSaves={p}', lg_stop, pre,
                     f'({b / pre / 1e6:.0f} MB/s written = {b / pre / bw:.2f} of the disk)')
        self.row(f'restore 4 big (guestkeeper ParallelStarts=4)', lg_start, results[best][1])
        print(f'  libvirt-guests wrote {lg_bytes / 1e6:.0f} MB in {lg_stop:.2f} s = '
              f'{lg_bytes / lg_stop / 1e6:.0f} MB/s = {lg_bytes / lg_stop / bw:.2f} of the disk', flush=True)
        for d in names:
            self.conn.lookupByName(d).destroy()

        # 4: graceful shutdown of 4 cooperative guests
        coop = [(f'coop{i}', 'cooperative', 128, 0) for i in range(4)]
        self.boot(coop)
        lg_shut = self.lg.run('stop', URIS=self.uri, ON_SHUTDOWN='shutdown', PARALLEL_SHUTDOWN=4,
                              SHUTDOWN_TIMEOUT=120)
        self.boot(coop)
        self.gk('Save=none\nShutdownTimeoutSec=120\n')
        gk_shut = self.gk_run('PreserveGuests', 'preserve')
        self.row('shut down 4 cooperative (PARALLEL_SHUTDOWN=4)', lg_shut, gk_shut)
        print(f'best ParallelSaves here: {best}', flush=True)
        self.scale()

    def scale(self):
        # 5: orchestration at scale, test driver served by the same libvirtd
        turi = self.lv.uri('test', '/default')
        tconn = libvirt.open(turi)
        for d in tconn.listAllDomains():
            d.destroy()
            d.undefine()
        for i in range(N_SCALE):
            tconn.defineXML(harness.test_domain_xml(f't{i:05d}')).create()
        lg_scale = self.lg.run('stop', URIS=turi, ON_SHUTDOWN='suspend')
        lg_saved = sum(1 for d in tconn.listAllDomains() if d.hasManagedSaveImage())
        for d in tconn.listAllDomains():
            if not d.isActive():
                d.create()
        self.gk('Save=all\nParallelSaves=4\n', uri=turi)
        gk_scale = self.gk_run('PreserveGuests', 'preserve')
        saved = sum(1 for d in tconn.listAllDomains() if d.hasManagedSaveImage())
        self.row(f'preserve {N_SCALE} test-driver guests (orchestration)', lg_scale, gk_scale,
                 f'(saved: libvirt-guests {lg_saved}, guestkeeper {saved})')
        self.daemon.stop()
        self.daemon = None
        tconn.close()


if __name__ == '__main__':
    b = Bench()
    try:
        b.main()
    finally:
        b.close()
