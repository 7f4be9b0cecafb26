#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""bench-saves: how fast guestkeeperd preserves and restores big real guests (QEMU under TCG,
one private libvirtd), case by case, against the disk and against libvirt-guests.sh.

For each case: guestkeeperd started with the case's [Shutdown]/[Boot] keys, PrepareForShutdown
emitted by dbusmock's logind (over a connection opened beforehand) → State=preserved; then the
daemon started again (the next boot) → every guest running. From libvirt's lifecycle events:
the signal → the first guest paused for its save ("reaction"), the last guest stopped →
State=preserved ("tail"). Bytes written: the save images' allocated size. The disk: `dd
oflag=direct` of 1 GiB in the save directory, in the same run; "disk time" = bytes / that.

Cases (CASES, comma-separated; default: the Debian 12 set, or the trixie set where libvirt
offers parallel saves):
  default            product defaults (persistent guests, managed saves)
  bypass             BypassCache=yes
  saves2, saves2-bypass  ParallelSaves=2 (without, with BypassCache)
  starts2            ParallelStarts=2
  managed-sparse, managed-sparse-bypass  qemu.conf save_image_format="sparse" (managed saves)
  file-raw, file-raw-bypass  transient guests, Save=all, SaveChannels=0 (plain format)
  file-auto, file-auto-bypass  transient guests, SaveChannels=auto
  file-chN, file-chN-bypass    transient guests, SaveChannels=N
Environment: COLD=1 (drop the page cache before each restore, as a reboot would), N_BIG (4),
BIG_MIB (512), FILL_MIB (400), BASELINE=1 (libvirt-guests.sh once, for
the ratios), GUEST_IMAGE (a directory with vmlinuz and initramfs.gz; default: built)."""

import glob
import subprocess
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'integration'))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'e2e'))
sys.path.insert(0, HERE)
import guests  # noqa: E402
import harness  # noqa: E402
import libvirt  # noqa: E402
from gi.repository import Gio, GLib  # noqa: E402

libvirt.registerErrorHandler(lambda *a: None, None)
N_BIG = int(os.environ.get('N_BIG', '4'))
BIG_MIB = int(os.environ.get('BIG_MIB', '512'))
FILL_MIB = int(os.environ.get('FILL_MIB', '400'))
COLD = os.environ.get('COLD') == '1'


def drop_page_cache():
    """The save images leave the page cache, as after a reboot (the machine's whole cache)."""
    if COLD:
        os.sync()
        with open('/proc/sys/vm/drop_caches', 'w') as f:
            f.write('1\n')


def case_config(name):
    """(guestkeeper.conf lines, qemu.conf save_image_format or None, transient guests)."""
    bypass = name == 'bypass' or name.endswith('-bypass')
    base = 'default' if name == 'bypass' else name[:-len('-bypass')] if bypass else name
    keys = 'BypassCache=yes\n' if bypass else ''
    fmt, transient = None, False
    if base == 'default':
        pass
    elif base == 'saves2':
        keys += 'ParallelSaves=2\n'
    elif base == 'starts2':
        keys += '[Boot]\nParallelStarts=2\n'
    elif base == 'managed-sparse':
        fmt = 'sparse'
    elif base.startswith('file-'):
        transient = True
        ch = {'raw': '0', 'auto': 'auto'}.get(base[5:]) or base[len('file-ch'):]
        keys = f'Save=all\nSaveChannels={ch}\n' + keys
    else:
        raise SystemExit(f'unknown case {name}')
    return keys, fmt, transient


class Events:
    def __init__(self, conn):
        self.lock = threading.Lock()
        self.paused, self.stopped, self.started = [], [], []
        conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._cb, None)

    def _cb(self, conn, dom, event, detail, opaque):
        t = time.monotonic()
        with self.lock:
            {libvirt.VIR_DOMAIN_EVENT_SUSPENDED: self.paused, libvirt.VIR_DOMAIN_EVENT_STOPPED: self.stopped,
             libvirt.VIR_DOMAIN_EVENT_STARTED: self.started}.get(event, []).append(t)

    def clear(self):
        with self.lock:
            self.paused.clear()
            self.stopped.clear()
            self.started.clear()


class Bench:
    def __init__(self):
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=lambda: [libvirt.virEventRunDefaultImpl() for _ in iter(int, 1)],
                         daemon=True).start()
        self.wd = harness.Workdir()
        self.lv = harness.Libvirtd(self.wd.path)
        self.fmt = None
        self.image = os.environ.get('GUEST_IMAGE') or guests.image_dir()
        self.uri = self.lv.uri('qemu', '/system')
        self.conn = libvirt.open(self.uri)
        self.events = Events(self.conn)
        self.transient = None

    def close(self):
        for d in self.conn.listAllDomains():
            try:
                if d.isActive():
                    d.destroy()
                if d.isPersistent():
                    if d.hasManagedSaveImage():
                        d.managedSaveRemove()
                    d.undefine()
            except libvirt.libvirtError:
                pass  # gone meanwhile (a transient guest stopped)
        self.conn.close()
        self.lv.stop()
        self.wd.cleanup()

    def set_format(self, fmt):
        if fmt == self.fmt:
            return
        path = os.path.join(self.lv.dir, 'etc', 'qemu.conf')
        with open(path) as f:
            lines = [x for x in f if not x.startswith('save_image_format')]
        if fmt:
            lines.append(f'save_image_format = "{fmt}"\n')
        with open(path, 'w') as f:
            f.writelines(lines)
        self.conn.close()
        self.lv.stop()
        self.lv.start()
        self.conn = libvirt.open(self.uri)
        self.events = Events(self.conn)
        self.fmt = fmt

    def names(self):
        return [f'big{i}' for i in range(N_BIG)]

    def boot(self, transient):
        """N_BIG guests running, persistent or transient, each with FILL_MIB written."""
        if self.transient is not None and self.transient != transient:
            for d in self.conn.listAllDomains():
                try:
                    d.destroy()
                except libvirt.libvirtError:
                    pass  # not running (any more)
                if d.isPersistent():
                    if d.hasManagedSaveImage():
                        d.managedSaveRemove()
                    d.undefine()
        self.transient = transient
        fresh = []
        for name in self.names():
            try:
                d = self.conn.lookupByName(name)
                if d.isActive():
                    continue
            except libvirt.libvirtError:
                d = None
            con = os.path.join(self.wd.path, f'{name}.console')
            if os.path.exists(con):
                os.unlink(con)
            xml = guests.domain_xml(name, self.image, con, 'cooperative', BIG_MIB, FILL_MIB)
            if transient:
                self.conn.createXML(xml)
            else:
                (d or self.conn.defineXML(xml)).create()
            fresh.append(con)
        for con in fresh:
            guests.Console(con).wait_for('GK-READY', timeout=300)

    def disk_bandwidth(self):
        path = os.path.join(self.lv.dir, 'lib', 'qemu', 'save', 'dd-test')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        r = subprocess.run(['dd', 'if=/dev/zero', f'of={path}', 'bs=4M', 'count=256', 'oflag=direct'],
                           capture_output=True, text=True)
        os.unlink(path)
        secs = float(r.stderr.strip().split('\n')[-1].split(',')[-2].strip().split()[0])
        return (1 << 30) / secs

    def save_bytes(self, state_dir):
        files = glob.glob(os.path.join(self.lv.dir, 'lib', 'qemu', 'save', '*.save'))
        files += glob.glob(os.path.join(state_dir, '**', '*.save'), recursive=True)
        return sum(os.stat(p).st_blocks * 512 for p in files)

    def run_case(self, name):
        keys, fmt, transient = case_config(name)
        self.set_format(fmt)
        self.boot(transient)
        wd = harness.Workdir()
        bus = harness.PrivateBus(wd.path)
        logind = harness.Logind(bus, os.path.join(wd.path, 'logind.log'))
        notify = harness.NotifyListener(os.path.join(wd.path, 'notify'))
        cfg = os.path.join(wd.path, 'gk.conf')
        shutdown, _, boot = keys.partition('[Boot]\n')
        with open(cfg, 'w') as f:
            f.write(f'[Guests]\nURIs={self.uri}\n[Shutdown]\n{shutdown}[Boot]\n{boot}')
        daemon = harness.Daemon(wd.path, bus, notify, cfg, {'G_DEBUG': ''})
        emitter = Gio.DBusConnection.new_for_address_sync(
            bus.address, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
            Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)
        try:
            daemon.start()
            client = harness.Client(bus)
            client.wait_state('idle', 60)
            harness.wait_until(lambda: sum(r[3] == 'running' for r in client.list_guests().values()) == N_BIG,
                               60, 'all guests known')
            self.events.clear()
            t0 = time.monotonic()
            emitter.call_sync('org.freedesktop.login1', '/org/freedesktop/login1', 'org.freedesktop.DBus.Mock',
                              'EmitSignal', GLib.Variant('(sssav)', ('org.freedesktop.login1.Manager',
                                                                     'PrepareForShutdown', 'b',
                                                                     [GLib.Variant('b', True)])),
                              None, Gio.DBusCallFlags.NONE, 10000, None)
            harness.wait_until(lambda: client.states_seen()[-1:] == ['preserved'], 600, 'State=preserved')
            preserved = [t for t, k, v in client.changes if k == 'State' and v == 'preserved'][-1]
            assert not self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE), 'a guest still runs'
            nbytes = self.save_bytes(daemon.state_dir)
            with self.events.lock:
                reaction = self.events.paused[0] - t0 if self.events.paused else float('nan')
                tail = preserved - self.events.stopped[-1]
            log = daemon.log_text()
            if os.environ.get('SHOW_LOG'):
                print(''.join(x + '\n' for x in log.splitlines() if 'ave' in x or 'efused' in x), flush=True)
            daemon.stop()

            drop_page_cache()
            self.events.clear()
            t1 = time.monotonic()
            daemon.start(wait_ready=False)
            harness.wait_until(lambda: len(self.events.started) >= N_BIG, 600, 'all guests running')
            with self.events.lock:
                restore = self.events.started[N_BIG - 1] - t1
            client = harness.Client(bus)
            client.wait_state('idle', 60)
            log += daemon.log_text()
        finally:
            emitter.close_sync(None)
            daemon.kill()
            logind.stop()
            bus.stop()
            notify.close()
            wd.cleanup()
        channels = sorted({line.split(' over ')[1].split(' channel')[0] for line in log.splitlines()
                           if 'in the sparse format over' in line and 'Saved' in line})
        refused = 'libvirt refused' in log
        return dict(preserve=preserved - t0, reaction=reaction, tail=tail, restore=restore, bytes=nbytes,
                    channels=','.join(channels) or '-', refused=refused)


def libvirt_guests(b):
    sys.path.insert(0, HERE)
    import importlib
    real = importlib.import_module('bench-real')
    lg = real.LibvirtGuests(b.wd.path)
    b.set_format(None)
    b.boot(False)
    stop = lg.run('stop', URIS=b.uri, ON_SHUTDOWN='suspend', ON_BOOT='start')
    drop_page_cache()
    start = lg.run('start', URIS=b.uri, ON_SHUTDOWN='suspend', ON_BOOT='start')
    harness.wait_until(lambda: all(b.conn.lookupByName(n).isActive() for n in b.names()), 60, 'running')
    return stop, start


def main():
    b = Bench()
    try:
        ver = b.conn.getLibVersion()
        qemu = b.conn.getVersion()
        parallel = ver >= 11002000 and qemu >= 9000000
        default_cases = ('default,bypass,saves2,saves2-bypass,starts2' if not parallel else
                         'default,bypass,managed-sparse,managed-sparse-bypass,file-raw,file-raw-bypass,'
                         'file-auto,file-auto-bypass,file-ch1,file-ch2,file-ch4')
        cases = os.environ.get('CASES', default_cases).split(',')
        bw = b.disk_bandwidth()
        print(f'libvirt {ver // 1000000}.{ver // 1000 % 1000}, QEMU {qemu // 1000000}.{qemu // 1000 % 1000}, '
              f'{os.cpu_count()} CPUs; {N_BIG} guests of {BIG_MIB} MiB with {FILL_MIB} MiB written; '
              f'dd oflag=direct {bw / 1e6:.0f} MB/s; page cache {"dropped" if COLD else "kept"} before restores',
              flush=True)
        base = libvirt_guests(b) if os.environ.get('BASELINE') == '1' else None
        if base:
            print(f'libvirt-guests.sh: stop {base[0]:.2f} s, start {base[1]:.2f} s', flush=True)
        print(f'{"case":<22} {"preserve":>8} {"react":>6} {"tail":>6} {"MB":>6} {"MB/s":>6} {"x disk":>6} '
              f'{"restore":>8} {"ch":>4}' + ('  vs libvirt-guests: preserve, restore' if base else ''), flush=True)
        for name in cases:
            r = b.run_case(name)
            disk_time = r['bytes'] / bw or float('nan')
            line = (f'{name:<22} {r["preserve"]:7.2f}s {r["reaction"] * 1000:5.0f}ms {r["tail"] * 1000:4.0f}ms '
                    f'{r["bytes"] / 1e6:6.0f} {r["bytes"] / r["preserve"] / 1e6:6.0f} '
                    f'{r["preserve"] / disk_time:6.2f} {r["restore"]:7.2f}s {r["channels"]:>4}')
            if base:
                line += f'  {r["preserve"] / base[0]:.2f}x, {r["restore"] / base[1]:.2f}x'
            if r['refused']:
                line += '  (libvirt refused the parallel path)'
            print(line, flush=True)
    finally:
        b.close()


if __name__ == '__main__':
    main()
