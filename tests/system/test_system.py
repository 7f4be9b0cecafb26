#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The real thing: a Debian 12 tree booted with systemd-nspawn — systemd as PID 1, journald,
dbus, a real logind, libvirtd running TCG guests — with the built project installed in it
(meson install) and guestkeeper.service enabled. Inside, `systemctl poweroff` sends a real
PrepareForShutdown; guestkeeper.service has TimeoutStopSec=3, shorter than its saves take,
so only its EXTEND_TIMEOUT_USEC keepalives keep systemd waiting. Boot again: the guests run,
the saved ones resumed (their heartbeat goes on). Then the same with libvirt-guests.service.
A power cut (SIGKILL to the container's PID 1) with guests running: the next boot starts them
again. A maintenance hold (preserve --hold) through a daemon restart and a reboot. polkitd
deciding for a user who is not root.

Each run gets a fresh overlay on the cached tree (tests/system/build-rootfs)."""

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import gi
gi.require_version('GLib', '2.0')
from gi.repository import GLib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'e2e'))
import guests as guests_mod  # noqa: E402

SOURCE_DIR = os.environ.get('GK_SOURCE_DIR', os.path.join(HERE, '..', '..'))
BUILD_DIR = os.environ.get('GK_BUILD_DIR', os.path.join(SOURCE_DIR, 'build'))
BOOT_TIMEOUT = 600

# Saved one at a time (ParallelSaves=1) these take ~8 s (TCG, ~350 MiB/s); the fill stays
# under ~80 % of the guest's memory (more and the guest's own kernel runs out of memory).
GUESTS = [('small', 128, 0), ('medium', 512, 400), ('big', 1024, 800)]
TIMEOUT_STOP_SEC = 1
SAVE_ALL_ONE_AT_A_TIME = '[Guests]\nURIs=qemu:///system\n[Shutdown]\nSave=all\nParallelSaves=1\n'
# Two small guests (saved in ~2 s each) for the tests about what comes back, not about the save.
TWO_GUESTS = [('small', 128, 0), ('medium', 256, 100)]
SYSTEM_URI = '[Guests]\nURIs=qemu:///system\n'
PROM = '/var/lib/prometheus/node-exporter/guestkeeper.prom'


def seconds_of_day(stamp):
    """'Nov 23 11:51:54.235531' → seconds since midnight, with the fraction."""
    h, m, sec = stamp.split()[2].split(':')
    return int(h) * 3600 + int(m) * 60 + float(sec)


def evidence(journal):
    """The shutdown's lines that matter: logind, our daemon, the units around it, the guests."""
    keep = ('guestkeeperd[', 'guestkeeper.service', 'libvirt-guests', 'systemd-logind[', 'libvirtd.service',
            'machine-qemu', 'virt-guest-shutdown', 'libvirtd[')
    start = journal.find('The system will power off now!')
    lines = journal[max(0, start - 200):].split('\n')
    return '\n'.join(line for line in lines if any(k in line for k in keep)) + '\n'


def stop_seconds(journal, unit):
    a = re.search(rf'^(\S+ \S+ \S+) .*Stopping {re.escape(unit)}', journal, re.M)
    b = re.search(rf'^(\S+ \S+ \S+) .*Stopped {re.escape(unit)}', journal, re.M)
    return seconds_of_day(b.group(1)) - seconds_of_day(a.group(1)) if a and b else None


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


class Container:
    def __init__(self, rootfs, workdir):
        self.rootfs = rootfs
        self.dir = workdir
        self.upper = os.path.join(workdir, 'upper')
        self.work = os.path.join(workdir, 'work')
        self.merged = os.path.join(workdir, 'merged')
        for d in (self.upper, self.work, self.merged):
            os.makedirs(d, exist_ok=True)
        self.boots = 0

    def _mount(self):
        return (f'mount -t overlay overlay -o lowerdir={self.rootfs},upperdir={self.upper},'
                f'workdir={self.work} {self.merged}')

    def in_overlay(self, script):
        """Runs a shell script with the overlay mounted at self.merged (private namespace)."""
        return run(['unshare', '--mount', '--propagation', 'private', '--', '/bin/sh', '-ec',
                    f'{self._mount()}\n{script}'], timeout=600)

    def boot(self, cut_when=None):
        """Boots the tree until it powers itself off; returns the console output. With
        @cut_when (a callable), the power is cut instead as soon as it returns true."""
        # A machine without systemd as PID 1 may have no /run/systemd to mount the tmpfs on
        # (seen on a freshly installed one): create it, and remove what was created.
        if not os.path.isdir('/run/systemd'):
            os.makedirs('/run/systemd')
            try:
                return self._boot(cut_when)
            finally:
                shutil.rmtree('/run/systemd', ignore_errors=True)
        return self._boot(cut_when)

    def _boot(self, cut_when):
        self.boots += 1
        log = os.path.join(self.dir, f'console-{self.boots}.log')
        script = (f'{self._mount()}\nmount -t tmpfs tmpfs /run/systemd\n'
                  f'exec systemd-nspawn -q -D {self.merged} -b --register=no --keep-unit --console=pipe')
        t = time.monotonic()
        with open(log, 'w') as out:
            # unshare and sh exec: this is systemd-nspawn's PID.
            p = subprocess.Popen(['unshare', '--mount', '--propagation', 'private', '--', '/bin/sh', '-ec', script],
                                 stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                if cut_when:
                    self._cut(p, cut_when, t + BOOT_TIMEOUT)
                p.wait(timeout=max(1, t + BOOT_TIMEOUT - time.monotonic()))
            finally:
                if p.poll() is None:  # a SIGKILLed nspawn would leave the container running
                    self._kill_pid1(p.pid)
                    p.wait(timeout=60)
        self.last_boot_seconds = time.monotonic() - t
        with open(log, errors='replace') as f:
            text = f.read()
        if p.returncode != 0 and not cut_when:
            raise AssertionError(f'container exited {p.returncode}: {text[-3000:]}')
        return text

    @staticmethod
    def _pid1(nspawn):
        """The container's systemd: the process under @nspawn that is PID 1 in its own PID
        namespace (not necessarily nspawn's direct child). None if there is none (yet)."""
        parent, nspid = {}, {}
        for d in filter(str.isdigit, os.listdir('/proc')):
            try:
                with open(f'/proc/{d}/status') as f:
                    status = f.read()
            except OSError:  # gone meanwhile
                continue
            parent[int(d)] = int(re.search(r'^PPid:\s+(\d+)', status, re.M).group(1))
            nspid[int(d)] = re.search(r'^NSpid:\s+(.*)$', status, re.M).group(1).split()
        for pid, ns in nspid.items():
            if len(ns) > 1 and ns[-1] == '1':
                p = pid
                while p in parent and p != nspawn:
                    p = parent[p]
                if p == nspawn:
                    return pid
        return None

    def _kill_pid1(self, nspawn):
        pid = self._pid1(nspawn)
        if pid:
            os.kill(pid, signal.SIGKILL)
        return pid

    def _cut(self, p, cut_when, deadline):
        """The power cut: SIGKILL to the container's PID 1 ends the whole container at once
        (every process of its PID namespace: journald, libvirtd, QEMU, guestkeeperd)."""
        while not cut_when():
            if p.poll() is not None:
                raise AssertionError(f'container exited {p.returncode} before the power cut')
            if time.monotonic() > deadline:
                raise AssertionError('the condition for the power cut never came')
            time.sleep(0.2)
        pid = self._kill_pid1(p.pid)
        if not pid:
            raise AssertionError("no container PID 1 under systemd-nspawn")
        p.wait(timeout=60)
        if os.path.exists(f'/proc/{pid}'):
            raise AssertionError(f'the container PID 1 ({pid}) outlived its SIGKILL')

    def path(self, p):
        return os.path.join(self.upper, p.lstrip('/'))

    def journal(self, boot, *args):
        """journalctl over the container's persistent journal; boot 0 = first boot."""
        jdir = self.path('/var/log/journal')
        boots = run(['journalctl', '-D', jdir, '--list-boots', '--no-pager', '-q']).stdout.strip().split('\n')
        boot_id = boots[boot].split()[1]
        return run(['journalctl', '-D', jdir, '-b', boot_id, '--no-pager', '-o', 'short-precise', *args]).stdout


def source_hash():
    """A hash of the checkout's files as tools/build-deb copies them (git's files, committed or
    not): the .deb is rebuilt only when one of them changed."""
    files = run(['git', '-C', SOURCE_DIR, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'])
    h = hashlib.sha256()
    for name in sorted(set(files.stdout.split('\0')) - {''}):
        path = os.path.join(SOURCE_DIR, name)
        if os.path.isfile(path):
            h.update(name.encode() + b'\0')
            with open(path, 'rb') as f:
                h.update(f.read())
    return h.hexdigest()[:16]


def package_debs():
    """The package as tools/build-deb builds it, and a newer build of the same (its version
    with "+test1", repacked with dpkg-deb): the upgrade. Cached by source_hash()."""
    cache = os.path.join(BUILD_DIR, 'system-deb')
    out = os.path.join(cache, source_hash())
    if not os.path.exists(os.path.join(out, 'complete')):
        shutil.rmtree(cache, ignore_errors=True)  # older sources' packages too
        deb = run([os.path.join(SOURCE_DIR, 'tools', 'build-deb'), out], timeout=1200).stdout.strip().split('\n')[-1]
        tree = os.path.join(out, 'repack')
        run(['dpkg-deb', '-R', deb, tree])
        control = os.path.join(tree, 'DEBIAN', 'control')
        with open(control) as f:
            text = f.read()
        version = re.search(r'(?m)^Version: (.*)$', text).group(1)
        with open(control, 'w') as f:
            f.write(text.replace(f'Version: {version}', f'Version: {version}+test1'))
        run(['dpkg-deb', '--root-owner-group', '-b', tree,
             os.path.join(out, os.path.basename(deb).replace(f'_{version}_', f'_{version}+test1_'))])
        shutil.rmtree(tree)
        open(os.path.join(out, 'complete'), 'w').close()
    debs = [os.path.join(out, f) for f in os.listdir(out) if f.startswith('guestkeeper_') and f.endswith('.deb')]
    return sorted(debs, key=lambda d: '+test1_' in d)


PENDING_RECORD = """[Record]
Version=1
Updated=2026-11-23T11:12:52.118910Z
Guests=1

[Guest 0]
URI=qemu:///system
UUID=6695eb01-f6a4-8304-79aa-97f2502e0001
Name=parked
Persistent=true
Steps=save,shutdown,poweroff
Outcome=saved

[End]
Guests=1
"""


class SystemTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rootfs = run([os.path.join(HERE, 'build-rootfs')]).stdout.strip().split('\n')[-1]
        cls.image = guests_mod.image_dir()
        # The installed tree is built with prefix /usr, as a package would be.
        cls.build = os.path.join(BUILD_DIR, 'system-install')
        if not os.path.exists(os.path.join(cls.build, 'build.ninja')):
            run(['meson', 'setup', cls.build, SOURCE_DIR, '--wrap-mode=nodownload', '--prefix=/usr',
                 '--sysconfdir=/etc', '--localstatedir=/var', '-Dtests=false'])
        run(['ninja', '-C', cls.build])

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='gk-system-', dir='/var/tmp')
        if not os.environ.get('GK_KEEP_TMP'):
            self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.c = Container(self.rootfs, self.tmp)

    def prepare(self, services, mode='plain', guests=GUESTS, config=None, timeout_stop=TIMEOUT_STOP_SEC,
                libvirt_guests_conf='URIS=qemu:///system\nON_BOOT=start\nON_SHUTDOWN=suspend\n', chaos=None,
                install_project=True):
        """Installs the project, the guests and the scenario; enables @services. @config: the
        guestkeeper.conf to install (None: none); @libvirt_guests_conf: /etc/default/libvirt-guests
        (None: as Debian ships it); @chaos: a script run as ExecStop of a unit stopped at the same
        time as guestkeeper.service (no ordering between the two); @install_project: False for
        a tree where the test installs the package itself."""
        stage = os.path.join(self.tmp, 'stage')
        os.makedirs(os.path.join(stage, 'var/lib/gk-guest'))
        os.makedirs(os.path.join(stage, PROM.lstrip('/').rsplit('/', 1)[0]))  # as prometheus-node-exporter ships it
        if install_project:
            self.install_into(stage)
        g = os.path.join(stage, 'var/lib/gk-guest')
        shutil.copy(os.path.join(self.image, 'vmlinuz'), g)
        shutil.copy(os.path.join(self.image, 'initramfs.gz'), g)
        img = '/var/lib/gk-guest'
        for name, mem, fill in guests:
            with open(os.path.join(g, f'{name}.xml'), 'w') as f:
                f.write(guests_mod.domain_xml(name, img, f'{img}/{name}.console', 'cooperative', mem, fill))
        with open(os.path.join(g, 'guests'), 'w') as f:
            f.write(' '.join(n for n, _, _ in guests) + '\n')
        with open(os.path.join(g, 'probe.xml'), 'w') as f:  # defined, never started
            f.write(guests_mod.domain_xml('probe', img, f'{img}/probe.console'))
        with open(os.path.join(g, 'mode'), 'w') as f:
            f.write(mode + '\n')
        os.makedirs(os.path.join(stage, 'usr/local/bin'))
        shutil.copy(os.path.join(HERE, 'gk-scenario'), os.path.join(stage, 'usr/local/bin/gk-scenario'))
        units = os.path.join(stage, 'etc/systemd/system')
        os.makedirs(os.path.join(units, 'multi-user.target.wants'))
        with open(os.path.join(units, 'gk-scenario.service'), 'w') as f:
            f.write('[Unit]\nDescription=guestkeeper system test scenario\n'
                    'After=libvirtd.service guestkeeper.service libvirt-guests.service\n'
                    'Wants=libvirtd.service\n[Service]\nType=oneshot\n'
                    'ExecStart=/usr/local/bin/gk-scenario\nTimeoutStartSec=600\n'
                    '[Install]\nWantedBy=multi-user.target\n')
        enabled = ['gk-scenario.service', *services]
        if chaos:
            with open(os.path.join(stage, 'usr/local/bin/gk-chaos'), 'w') as f:
                f.write(chaos)
            os.chmod(os.path.join(stage, 'usr/local/bin/gk-chaos'), 0o755)
            with open(os.path.join(units, 'gk-chaos.service'), 'w') as f:
                f.write('[Unit]\nDescription=guestkeeper system test: trouble during the shutdown\n'
                        '[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n'
                        'ExecStop=/usr/local/bin/gk-chaos\nTimeoutStopSec=300\n'
                        '[Install]\nWantedBy=multi-user.target\n')
            enabled.append('gk-chaos.service')
        for unit in enabled:
            os.symlink(f'/etc/systemd/system/{unit}' if unit.startswith('gk-') else f'/lib/systemd/system/{unit}',
                       os.path.join(units, 'multi-user.target.wants', unit))
        if config is not None:
            os.makedirs(os.path.join(stage, 'etc/guestkeeper'), exist_ok=True)
            with open(os.path.join(stage, 'etc/guestkeeper/guestkeeper.conf'), 'w') as f:
                f.write(config)
        if install_project:
            os.makedirs(os.path.join(units, 'guestkeeper.service.d'))
            with open(os.path.join(units, 'guestkeeper.service.d', 'test.conf'), 'w') as f:
                # Shorter than the saves take: only the keepalives can carry the stop.
                f.write(f'[Service]\nTimeoutStopSec={timeout_stop}\n')
                if os.environ.get('GK_SYSTEM_CORES'):  # debugging aid: a crash leaves state/core
                    f.write('LimitCORE=infinity\nWorkingDirectory=/var/lib/guestkeeper\n')
        if libvirt_guests_conf is not None:
            os.makedirs(os.path.join(stage, 'etc/default'), exist_ok=True)
            with open(os.path.join(stage, 'etc/default/libvirt-guests'), 'w') as f:
                f.write(libvirt_guests_conf)
        # The tree has a merged /usr (/lib -> usr/lib): keep its directory symlinks.
        # logind waits for delay locks at most 1 s (default 5): the shutdown then goes on while
        # the saves run, and only the unit's stop path (ordering + keepalives) protects them.
        os.makedirs(os.path.join(stage, 'etc/systemd/logind.conf.d'), exist_ok=True)
        with open(os.path.join(stage, 'etc/systemd/logind.conf.d/test.conf'), 'w') as f:
            f.write('[Login]\nInhibitDelayMaxSec=1\n')
        self.c.in_overlay(f'tar -C {stage} -cf - . | tar -C {self.c.merged} -xf - --keep-directory-symlink')

    def install_into(self, stage):
        """The project as `meson install` puts it, under @stage."""
        run(['meson', 'install', '-C', self.build, '--quiet'], env=dict(os.environ, DESTDIR=stage))

    def read(self, path):
        with open(self.c.path(path)) as f:
            return f.read()

    def results(self):
        with open(self.c.path('/var/lib/gk-scenario/result')) as f:
            out = {}
            for line in f:
                name, *kv = line.split()
                out[name] = dict(x.split('=', 1) for x in kv)
            return out

    def assert_resumed(self, r, guests):
        """Every guest runs again, resumed: one GK-INIT, and its heartbeat went on."""
        for name, _, _ in guests:
            self.assertEqual(r[name]['state'], 'running', r)
            self.assertEqual(r[name]['inits'], '1', f'{name} booted instead of resuming: {r}')
            self.assertGreater(int(r[name]['last_tick']), int(r[name]['tick_before']), r)

    def test_guestkeeper_service(self):
        # The textfile in Debian's node_exporter directory: the unit (ProtectSystem=strict) must let
        # the daemon write there.
        self.prepare(['guestkeeper.service'], config=SAVE_ALL_ONE_AT_A_TIME + f'[Metrics]\nTextfilePath={PROM}\n')
        self.c.boot()
        first = self.c.journal(0)
        # The shutdown: a real PrepareForShutdown, the saves, and the stop carried past
        # TimeoutStopSec=3 by the keepalives.
        self.assertIn('logind: PrepareForShutdown(true)', first)
        self.assertRegex(first, r'Preserve run finished: 3 guests, 3 done, 0 failed')
        self.assertNotIn('end of file', first)
        self.assertNotRegex(first, r'guestkeeper\.service: State .stop-sigterm. timed out')
        stop = re.search(r'^(\S+ \S+ \S+) .*Stopping guestkeeper\.service', first, re.M)
        done = re.search(r'^(\S+ \S+ \S+) .*guestkeeperd\[\d+\]: Preserve run finished', first, re.M)
        self.assertTrue(stop and done, first[-3000:])
        carried = seconds_of_day(done.group(1)) - seconds_of_day(stop.group(1))
        self.stop_took = stop_seconds(first, 'guestkeeper.service')
        print(f'\n  guestkeeper.service: stop began at {stop.group(1)}, the run finished {carried:.1f} s later '
              f'(TimeoutStopSec={TIMEOUT_STOP_SEC}; the whole stop took {stop_seconds(first, "guestkeeper.service"):.1f} s); first boot took {self.c.last_boot_seconds:.0f} s',
              file=sys.stderr)
        with open(os.path.join(BUILD_DIR, 'system-guestkeeper.txt'), 'w') as f:
            f.write(evidence(first))
        # The keepalives kept systemd waiting past TimeoutStopSec, and the unit stopped cleanly.
        self.assertGreater(carried, TIMEOUT_STOP_SEC)
        self.assertRegex(first, r'guestkeeper\.service: Deactivated successfully')
        # The guests' scopes were still there while saving: no QEMU was killed mid-save.
        self.assertNotRegex(first, r'qemu.*(terminating on signal|shutting down, reason=crashed)')

        # Structured journal entries: journalctl GUEST_NAME=… finds a guest's lines.
        by_guest = self.c.journal(0, 'GUEST_NAME=big')
        self.assertIn('big: saved', by_guest)
        self.assertNotIn('small: saved', by_guest)
        self.assertIn('Preserve run finished', self.c.journal(0, 'MESSAGE_ID=7b1d9e3f5a2c4e6b8d0f1a3c5e7b9d4f'))
        # The run kept in runs/: a poweroff (systemd 252's logind does not say; the shutdown
        # target's job, queued by the time of our SIGTERM, does), and its id in the journal.
        shutdown_run, = self.runs_kept()
        self.assertEqual((shutdown_run['Kind'], shutdown_run['Reason'], shutdown_run['RequestedBy']),
                         ('preserve', 'poweroff', 'logind'))
        by_run = self.c.journal(0, f'GUESTKEEPER_RUN_ID={shutdown_run["ID"]}')
        self.assertIn('big: saved', by_run)
        self.assertIn('Preserve run finished', by_run)
        self.assertNotIn('Ready:', by_run)
        # journalctl -x explains the run's end with the installed catalog, its fields filled in
        # (a package's trigger compiles the catalog; here the container's journalctl does, in a
        # chroot: journalctl --root would read the host's compiled catalog).
        self.assertTrue(os.path.exists(self.c.path('/usr/lib/systemd/catalog/guestkeeper.catalog')))
        explained = self.c.in_overlay(
            f'chroot {self.c.merged} journalctl --update-catalog\n'
            f'chroot {self.c.merged} journalctl -D /var/log/journal -x --no-pager '
            'MESSAGE_ID=7b1d9e3f5a2c4e6b8d0f1a3c5e7b9d4f').stdout
        self.assertIn('Subject: A guestkeeper preserve run has finished', explained)
        self.assertIn(f'The preserve run {shutdown_run["ID"]} (reason: poweroff)', explained)
        self.assertIn('is over: 3 of 3 guests done, none failed.', explained)
        metrics = self.read(PROM)
        self.assertIn('guestkeeper_last_run_guests{kind="preserve",outcome="saved"} 3\n', metrics)

        self.c.boot()
        r = self.results()
        self.assert_resumed(r, GUESTS)
        second = self.c.journal(1)
        self.assertRegex(second, r'Restore run finished: 3 guests, 3 done, 0 failed')
        restore_run = self.runs_kept()[1]
        self.assertEqual((restore_run['Kind'], restore_run['Reason'], restore_run['Done']), ('restore', 'start-up', '3'))
        self.assertIn('guestkeeper_last_run_guests{kind="restore",outcome="restored"} 3\n', self.read(PROM))

    def runs_kept(self):
        """The [Run] sections of the container's run history, oldest first."""
        d = self.c.path('/var/lib/guestkeeper/runs')
        out = []
        for name in sorted(os.listdir(d)):
            kf = GLib.KeyFile()
            kf.load_from_file(os.path.join(d, name), GLib.KeyFileFlags.NONE)
            out.append({k: kf.get_string('Run', k) for k in kf.get_keys('Run')[0]})
        return out

    def test_libvirt_guests_service_for_comparison(self):
        """libvirt-guests.service alone (ON_SHUTDOWN=suspend, ON_BOOT=start) on the same setup:
        what it did is asserted (every guest managed-saved and resumed) and its figures kept."""
        self.prepare(['libvirt-guests.service'])
        self.c.boot()
        first = self.c.journal(0)
        self.c.boot()
        r = self.results()
        eof = 'end of file' in first
        took = stop_seconds(first, 'libvirt-guests.service')
        print(f'\n  libvirt-guests.service: stop took {took:.1f} s; {r}; "end of file" in the journal: {eof}',
              file=sys.stderr)
        with open(os.path.join(BUILD_DIR, 'system-libvirt-guests.txt'), 'w') as f:
            f.write(f'result: {r}\nstop took: {took:.1f} s\nend of file: {eof}\n')
            f.write(evidence(first))
        self.assert_resumed(r, GUESTS)

    def test_switch_from_libvirt_guests(self):
        """libvirt-guests.service enabled and active as Debian ships it
        (ON_SHUTDOWN=shutdown), a guest running; a local user's busctl while guestkeeper is
        disabled; then the README's commands. No guest is touched, guestkeeper ends active,
        and the next poweroff is handled once, by guestkeeper."""
        guests = [('small', 128, 0)]
        self.prepare(['libvirt-guests.service'], mode='switch', guests=guests, libvirt_guests_conf=None)
        self.c.boot()
        first = self.c.journal(0)
        sw = self.read('/var/lib/gk-scenario/switch')
        events = self.read('/var/lib/gk-scenario/events')
        print(f'\n  switch: {sw}', file=sys.stderr)
        with open(os.path.join(BUILD_DIR, 'system-switch.txt'), 'w') as f:
            f.write(sw + '\n--- events\n' + events + '\n--- takeover\n' +
                    self.read('/var/lib/gk-scenario/takeover.out') + evidence(first))
        self.assertIn('before: guestkeeper=inactive libvirt-guests=active/enabled', sw)
        self.assertRegex(sw, r'unprivileged busctl exit=[1-9]')
        self.assertIn('after busctl: guestkeeper=inactive', sw)
        self.assertIn('enable --now exit=0', sw)
        self.assertIn('takeover exit=0', sw, self.read('/var/lib/gk-scenario/takeover.out'))
        self.assertIn('restart exit=0', sw)
        self.assertIn('after: guestkeeper=active libvirt-guests=inactive/disabled', sw)
        self.assertIn('small state=running', sw)
        self.assertIn('conflicts=as 0', sw)
        # ExecReload is synchronous: a bad drop-in fails "systemctl reload" visibly.
        self.assertRegex(sw, r'bad reload exit=[1-9]\d* guestkeeper=active')
        self.assertIn('good reload exit=0', sw)
        self.assertIn('99-bad.conf: [Shutdown] ParallelSaves', first)
        # Not one lifecycle event for the guest while switching: it was never touched. (The
        # watcher saw the probe being defined: it was listening.)
        self.assertRegex(events, r"event 'lifecycle' for domain '?probe'?: Defined", events)
        self.assertNotIn("domain 'small'", events, events)
        self.assertNotIn('domain small', events, events)
        self.assertNotRegex(first, r'libvirt-guests\.sh\[\d+\]: .*(Shutting down|Suspending|Running guests)')
        # The settings imported from Debian's libvirt-guests (its shipped file leaves every
        # variable unset: ON_SHUTDOWN=shutdown, ON_BOOT=ignore).
        imported = self.read('/etc/guestkeeper/guestkeeper.conf.d/50-libvirt-guests.conf')
        self.assertRegex(imported, r'(?m)^Save=none$')
        self.assertRegex(imported, r'(?m)^Restore=no$')
        # The poweroff: guestkeeper alone acted on the guest, once: a graceful shutdown, as
        # libvirt-guests was configured to do.
        self.assertRegex(first, r'Preserve run finished: 1 guests, 1 done, 0 failed')
        self.assertEqual(first.count('Preserve run started'), 1)
        self.assertIn('small: shutdown', first)
        self.assertRegex(first, r'guestkeeper\.service: Deactivated successfully')
        # The next boot: guestkeeper is up (READY, idle) and, as ON_BOOT=ignore said, starts
        # nothing; libvirt-guests is not there to do anything either.
        self.c.boot()
        r = self.results()
        self.assertEqual(r['guestkeeper']['state'], 'idle', r)
        self.assertEqual(r['small']['state'], 'shut_off', r)
        second = self.c.journal(1)
        self.assertNotIn('Restore run started', second)
        self.assertNotRegex(second, r'Started libvirt-guests\.service')

    def test_takeover_brings_back_what_libvirt_guests_suspended(self):
        """libvirt-guests (ON_SHUTDOWN=suspend, ON_BOOT=start) suspended the guests at the last
        shutdown and was disabled before this boot, so its list file still names them: the
        takeover lets libvirt-guests' own start bring them back before retiring it."""
        guests = [('small', 128, 0)]
        self.prepare(['libvirt-guests.service'], mode='listfile', guests=guests)
        self.c.boot()
        self.assertRegex(self.c.journal(0), r'libvirt-guests\.sh\[\d+\]: Suspending guests')
        os.unlink(self.c.path('/etc/systemd/system/multi-user.target.wants/libvirt-guests.service'))
        self.c.boot()
        sw = self.read('/var/lib/gk-scenario/switch')
        with open(os.path.join(BUILD_DIR, 'system-takeover-listfile.txt'), 'w') as f:
            f.write(sw + '\n--- takeover\n' + self.read('/var/lib/gk-scenario/takeover.out'))
        self.assertIn('before: listfile=2 libvirt-guests=inactive', sw)  # "URI UUID"
        self.assertIn('small before=shut_off', sw)
        self.assertIn('takeover exit=0', sw, self.read('/var/lib/gk-scenario/takeover.out'))
        self.assertIn('after: guestkeeper=active libvirt-guests=inactive/disabled listfile=gone', sw)
        self.assert_resumed(self.results(), guests)

    def test_both_enabled_guestkeeper_acts_first(self):
        """Both units enabled at a host shutdown: guestkeeper (ordered after libvirt-guests, so
        stopped first) saves the guests; libvirt-guests' stop then finds none running."""
        guests = [('small', 128, 0), ('medium', 512, 400)]
        self.prepare(['libvirt-guests.service', 'guestkeeper.service'], guests=guests,
                     config=SAVE_ALL_ONE_AT_A_TIME, libvirt_guests_conf=None)
        self.c.boot()
        first = self.c.journal(0)
        with open(os.path.join(BUILD_DIR, 'system-both.txt'), 'w') as f:
            f.write(evidence(first))
        self.assertIn('CONFLICT: libvirt-guests.service is enabled and active', first)
        self.assertRegex(first, r'Preserve run finished: 2 guests, 2 done, 0 failed')
        self.assertRegex(first, r'libvirt-guests\.sh\[\d+\]: Running guests on \S+ URI:')
        self.assertRegex(first, r'libvirt-guests\.sh\[\d+\]: no running guests\.')
        self.assertNotRegex(first, r'libvirt-guests\.sh\[\d+\]: (Shutting down|Suspending) guests')
        a = re.search(r'^(\S+ \S+ \S+) .*Stopped guestkeeper\.service', first, re.M)
        b = re.search(r'^(\S+ \S+ \S+) .*Stopping libvirt-guests\.service', first, re.M)
        self.assertTrue(a and b, first[-3000:])
        self.assertLessEqual(seconds_of_day(a.group(1)), seconds_of_day(b.group(1)))
        self.c.boot()
        r = self.results()
        self.assert_resumed(r, guests)

    def test_hung_libvirtd_during_the_shutdown(self):
        """libvirtd stops answering for 40 s (SIGSTOP, then SIGCONT) in the
        middle of the saves of a real `systemctl poweroff`, with TimeoutStopSec=1: the
        keepalives carry the unit (the run is bounded by DeadlineSec), the guests end saved,
        the next boot resumes them."""
        chaos = ('#!/bin/sh\n'
                 'pid=$(systemctl show -p MainPID --value libvirtd.service)\n'
                 'sleep 0.5\n'
                 'echo "gk-chaos: SIGSTOP libvirtd $pid" >/dev/kmsg 2>/dev/null; logger -t gk-chaos "SIGSTOP libvirtd $pid"\n'
                 'kill -STOP "$pid"\nsleep 40\nkill -CONT "$pid"\n'
                 'logger -t gk-chaos "SIGCONT libvirtd $pid"\n')
        self.prepare(['guestkeeper.service'], config=SAVE_ALL_ONE_AT_A_TIME, chaos=chaos)
        self.c.boot()
        first = self.c.journal(0)
        with open(os.path.join(BUILD_DIR, 'system-hung-libvirtd.txt'), 'w') as f:
            f.write(evidence(first) + '\n'.join(line for line in first.split('\n') if 'gk-chaos' in line))
        self.assertIn('SIGSTOP libvirtd', first)
        self.assertIn('SIGCONT libvirtd', first)
        self.assertNotRegex(first, r'guestkeeper\.service: State .stop-sigterm. timed out')
        self.assertNotRegex(first, r'guestkeeper\.service: Killing process')
        self.assertRegex(first, r'Preserve run finished: 3 guests, 3 done, 0 failed')
        self.assertRegex(first, r'guestkeeper\.service: Deactivated successfully')
        stop = re.search(r'^(\S+ \S+ \S+) .*Stopping guestkeeper\.service', first, re.M)
        cont = re.search(r'^(\S+ \S+ \S+) .*SIGCONT libvirtd', first, re.M)
        done = re.search(r'^(\S+ \S+ \S+) .*guestkeeperd\[\d+\]: Preserve run finished', first, re.M)
        self.assertTrue(stop and cont and done, first[-3000:])
        # The run went on past the hang, and far past TimeoutStopSec=1.
        self.assertGreater(seconds_of_day(done.group(1)), seconds_of_day(cont.group(1)))
        print(f'\n  hung libvirtd: the run finished {seconds_of_day(done.group(1)) - seconds_of_day(stop.group(1)):.1f} s '
              f'after the stop began (TimeoutStopSec={TIMEOUT_STOP_SEC})', file=sys.stderr)
        self.c.boot()
        r = self.results()
        self.assert_resumed(r, GUESTS)

    def test_package_install_upgrade_purge(self):
        """The .deb (tools/build-deb) on a Debian 12 host as Debian ships libvirt: libvirt-guests
        enabled and active, a guest running. `apt install ./guestkeeper_….deb`: enabled and
        started, the conflict reported, libvirt-guests still active; a newer build: the daemon
        restarted; `apt purge`: nothing left but the pending record. The guest never sees a
        lifecycle event (same QEMU process, booted once)."""
        old, new = package_debs()
        version = re.escape(os.path.basename(old).split('_')[1])
        guests = [('small', 128, 0)]
        self.prepare(['libvirt-guests.service'], mode='package', guests=guests, libvirt_guests_conf=None,
                     install_project=False)
        with open(os.path.join(self.tmp, 'pending-record'), 'w') as f:
            f.write(PENDING_RECORD)
        pkg = f'{self.c.merged}/var/lib/gk-guest/pkg'
        self.c.in_overlay(f'mkdir -p {pkg}/install {pkg}/upgrade\ncp {old} {pkg}/install/\ncp {new} {pkg}/upgrade/\n'
                          f'cp {self.tmp}/pending-record {self.c.merged}/var/lib/gk-guest/')
        self.c.boot()
        journal = self.c.journal(0)
        out = self.read('/var/lib/gk-scenario/package')
        events = self.read('/var/lib/gk-scenario/events')
        install, upgrade, purge = (self.read(f'/var/lib/gk-scenario/{x}.out') for x in ('install', 'upgrade', 'purge'))
        with open(os.path.join(BUILD_DIR, 'system-package.txt'), 'w') as f:
            f.write(f'{out}\n--- install\n{install}\n--- upgrade\n{upgrade}\n--- purge\n{purge}\n--- events\n{events}\n'
                    '--- status after the install\n' + self.read('/var/lib/gk-scenario/status-installed') +
                    '--- journal\n' + '\n'.join(line for line in journal.split('\n')
                                                 if 'guestkeeperd[' in line or 'guestkeeper.service' in line) + '\n')
        print(f'\n  package: {out}', file=sys.stderr)
        lines = dict(line.split(': ', 1) for line in out.split('\n') if ': ' in line)
        qemu = re.search(r'qemu: (small=\d+)', lines['before']).group(1)
        self.assertRegex(lines['before'], r'^guestkeeper=inactive/ pid=0 libvirt-guests=active/enabled ')
        # Installed: enabled and started by the package, libvirt-guests left alone and the
        # conflict reported, with the way out.
        self.assertIn('install exit=0', out, install)
        self.assertRegex(lines['installed'], rf'^guestkeeper=active/enabled pid=[1-9]\d* '
                                             rf'libvirt-guests=active/enabled qemu: {qemu} +version={version}$')
        self.assertIn('guestkeeperctl import-libvirt-guests --takeover', install)
        note_doc = re.search(r'See (/\S+)\.$', install, re.M).group(1)
        self.assertIn(f'.{note_doc}\n', run(['dpkg-deb', '-c', old]).stdout.replace(' ', '\n'))
        self.assertIn('libvirt-guests.service is enabled', self.read('/var/lib/gk-scenario/status-installed'))
        # Upgraded: a new daemon (new MainPID), the same guest process.
        self.assertIn('upgrade exit=0', out, upgrade)
        self.assertRegex(lines['upgraded'], rf'^guestkeeper=active/enabled pid=[1-9]\d* '
                                            rf'libvirt-guests=active/enabled qemu: {qemu} +version={version}\+test1$')
        pid = re.compile(r'pid=(\d+)')
        # The upgrade's restart and the purge's stop: two SIGTERMs outside a shutdown.
        self.assertEqual(len(re.findall(r'guestkeeperd\[\d+\]: SIGTERM and the host is not shutting down .*: '
                                        r'exiting, no guest touched', journal)), 2, journal[-3000:])
        self.assertNotEqual(pid.search(lines['installed']).group(1), pid.search(lines['upgraded']).group(1))
        # Purged: no unit, no binary, no configuration; the pending record kept, and said so.
        self.assertIn('purge exit=0', out, purge)
        self.assertRegex(lines['purged'], rf'^guestkeeper=inactive/ pid=0 libvirt-guests=active/enabled '
                                          rf'qemu: {qemu} +dpkg=$')
        self.assertNotIn('left:', out)
        self.assertIn('unit files: 0', out)
        self.assertIn('record kept', out)
        self.assertIn('/var/lib/guestkeeper kept', purge)
        # The guest: running all along, booted once, not one lifecycle event.
        self.assertIn('small state=running inits=1', out)
        self.assertRegex(events, r"event 'lifecycle' for domain '?probe'?: Defined", events)
        self.assertNotIn("domain 'small'", events, events)
        self.assertNotIn('domain small', events, events)
        # Until the poweroff that ends the test, neither service acted on a guest.
        before_poweroff = journal[:journal.find('Stopping libvirt-guests.service')]
        self.assertNotRegex(before_poweroff, r'libvirt-guests\.sh\[\d+\]: .*(Shutting down|Suspending)')
        self.assertNotIn('Preserve run started', before_poweroff)

    def running_set(self):
        """The guests /var/lib/guestkeeper/running lists (empty if it is not there yet)."""
        try:
            return sorted(re.findall(r'(?m)^Name=(.*)$', self.read('/var/lib/guestkeeper/running')))
        except FileNotFoundError:
            return []

    def test_power_cut(self):
        """guestkeeper.service active, two guests running and one defined but off; once the
        running set lists the two, the container is killed outright (SIGKILL to its PID 1: no
        shutdown, no save, every process gone at once). The next boot of the same tree starts
        the two again (a cold boot: their init runs again) and leaves the third off."""
        names = sorted(n for n, _, _ in TWO_GUESTS)
        self.prepare(['guestkeeper.service'], mode='powercut', guests=TWO_GUESTS, config=SYSTEM_URI)

        def armed():
            return os.path.exists(self.c.path('/var/lib/gk-scenario/armed')) and self.running_set() == names

        console = self.c.boot(cut_when=armed)
        # What the next boot starts from: the two that ran, not the one that was off.
        before_cut = self.read('/var/lib/guestkeeper/running')
        self.assertEqual(self.running_set(), names, before_cut)
        first = self.c.journal(0)
        # A power cut, not a shutdown: nothing was asked to stop, nothing was saved.
        self.assertNotIn('PrepareForShutdown', first)
        self.assertNotIn('Preserve run started', first)
        self.assertIn('boot 1: guests ready; waiting for the power cut', self.read('/var/lib/gk-scenario/log'))
        self.assertIn('terminated by signal KILL', console)

        self.c.boot()
        r = self.results()
        second = self.c.journal(1)
        status = self.read('/var/lib/gk-scenario/status-recovered')
        with open(os.path.join(BUILD_DIR, 'system-power-cut.txt'), 'w') as f:
            f.write(f'--- running set before the cut\n{before_cut}\n--- result\n{r}\n--- status\n{status}\n'
                    '--- next boot\n' + '\n'.join(line for line in second.split('\n')
                                                   if 'guestkeeperd[' in line) + '\n')
        print(f'\n  power cut: the next boot took {self.c.last_boot_seconds:.0f} s; {r}', file=sys.stderr)
        for name in names:
            g = r[f'recovered:{name}']
            self.assertEqual(g['state'], 'running', r)
            self.assertEqual(g['inits'], '2', f'{name} did not boot afresh: {r}')
            self.assertEqual(g['outcome'], 'recovered', r)
            self.assertRegex(second, rf'guestkeeperd\[\d+\]: {name} was running and stopped while guestkeeper was '
                                     'not watching')
            self.assertRegex(second, rf'guestkeeperd\[\d+\]: {name}: restored after an unclean stop')
        self.assertEqual(r['recovered:probe']['state'], 'shut_off', r)
        self.assertNotEqual(r['recovered:probe']['outcome'], 'recovered', r)
        self.assertNotIn('probe was running', second)
        self.assertRegex(second, r'Restore run finished: 2 guests, 2 done \(2 restored after an unclean stop\), '
                                 r'0 failed')
        self.assertIn('Last run: restore', status)
        for name in names:
            self.assertRegex(status, rf'{name} \(qemu:///system\): restored after an unclean stop')

    def test_hold_across_reboot(self):
        """A maintenance hold: `guestkeeperctl preserve --hold` saves the guests and keeps them
        down through a daemon restart and a clean reboot, `status` saying HELD all along;
        `guestkeeperctl restore` resumes every one (from its managed-save image) and ends it."""
        names = [n for n, _, _ in TWO_GUESTS]
        self.prepare(['guestkeeper.service'], mode='hold', guests=TWO_GUESTS, config=SYSTEM_URI)
        self.c.boot()
        first = self.c.journal(0)
        r = self.results()
        self.assertEqual(r['preserve:guestkeeperctl']['exit'], '0', self.read('/var/lib/gk-scenario/preserve.out'))
        for stage in ('preserved', 'restarted'):
            self.assertEqual(r[f'{stage}:guestkeeper']['held'], 'true', r)
            self.assertIn('HELD:', self.read(f'/var/lib/gk-scenario/status-{stage}'), stage)
            for name in names:
                self.assertEqual(r[f'{stage}:{name}']['state'], 'shut_off', r)
                self.assertEqual(r[f'{stage}:{name}']['saved'], 'yes', r)
        self.assertIn("Maintenance hold: the preserved guests stay down until 'guestkeeperctl restore'", first)
        self.assertRegex(first, r'Preserve run finished: 2 guests, 2 done, 0 failed')
        # The restarted daemon said why it started nothing.
        self.assertIn("Maintenance hold: 2 preserved guests stay down until 'guestkeeperctl restore'", first)
        self.assertNotIn('Restore run started', first)

        self.c.boot()
        r = self.results()
        second = self.c.journal(1)
        with open(os.path.join(BUILD_DIR, 'system-hold.txt'), 'w') as f:
            f.write(f'--- result\n{r}\n')
            for stage in ('preserved', 'restarted', 'rebooted', 'restored'):
                f.write(f'--- status, {stage}\n' + self.read(f'/var/lib/gk-scenario/status-{stage}'))
            f.write('--- both boots\n' + '\n'.join(line for line in (first + second).split('\n')
                                                   if 'guestkeeperd[' in line) + '\n')
        print(f'\n  hold: {r}', file=sys.stderr)
        # The reboot: still held, nothing started.
        self.assertEqual(r['rebooted:guestkeeper']['held'], 'true', r)
        self.assertIn('HELD:', self.read('/var/lib/gk-scenario/status-rebooted'))
        self.assertIn("Maintenance hold: 2 preserved guests stay down until 'guestkeeperctl restore'", second)
        for name in names:
            self.assertEqual(r[f'rebooted:{name}']['state'], 'shut_off', r)
            self.assertEqual(r[f'rebooted:{name}']['saved'], 'yes', r)
        # restore: every guest resumed from its image (one GK-INIT, the heartbeat went on), the
        # hold is over.
        self.assertEqual(r['restore:guestkeeperctl']['exit'], '0', self.read('/var/lib/gk-scenario/restore.out'))
        self.assertEqual(r['restored:guestkeeper']['held'], 'false', r)
        self.assertNotIn('HELD:', self.read('/var/lib/gk-scenario/status-restored'))
        self.assertIn('Maintenance hold released', second)
        self.assertRegex(second, r'Restore run finished: 2 guests, 2 done, 0 failed')
        for name in names:
            g = r[f'restored:{name}']
            self.assertEqual(g['state'], 'running', r)
            self.assertEqual(g['inits'], '1', f'{name} booted instead of resuming: {r}')
            self.assertEqual(g['saved'], 'no', r)
            self.assertGreater(int(g['last_tick']), int(r[f'rebooted:{name}']['last_tick']), r)
        self.assertEqual(r['restored:probe']['state'], 'shut_off', r)


    def test_polkit_decides_for_unprivileged_users(self):
        """A local user (no session) asks for a preserve run: polkitd refuses (the actions need
        an administrator's password in an active session); with the example rule copied to
        /etc/polkit-1/rules.d and the user in the libvirt group, the same call saves the guest.
        The journal names who asked and what polkit said."""
        guests = [('small', 128, 0)]
        self.prepare(['guestkeeper.service'], mode='polkit', guests=guests, config=SYSTEM_URI)
        self.c.boot()
        out = self.read('/var/lib/gk-scenario/polkit')
        journal = self.c.journal(0)
        with open(os.path.join(BUILD_DIR, 'system-polkit.txt'), 'w') as f:
            f.write(out + '--- journal\n' + '\n'.join(line for line in journal.split('\n')
                                                    if 'guestkeeperd[' in line or 'polkitd[' in line) + '\n')
        print(f'\n  polkit: {out}', file=sys.stderr)
        uid = re.search(r'^uid=(\d+)$', out, re.M).group(1)
        self.assertNotEqual(uid, '0')
        # guestkeeperctl shows the daemon's refusal as sent.
        self.assertIn(f'PreserveGuests() refused: polkit does not authorize org.guestkeeper1.preserve for uid {uid}',
                      out)
        self.assertRegex(out, r'refused exit=[1-9]\d* state=s "idle"')
        before, after = map(int, re.search(r'rules: (\d+) -> (\d+)', out).groups())
        self.assertEqual(after, before + 1, out)
        self.assertIn('allowed exit=0', out)
        self.assertIn('after: state=preserved', out)
        self.assertIn('small state=shut_off saved=yes', out)
        self.assertRegex(journal, rf'guestkeeperd\[\d+\]: PreserveGuests\(\) by uid {uid} '
                                  r'\(guestkeeperctl\[\d+\]\): refused by polkit \(org\.guestkeeper1\.preserve\)')
        self.assertRegex(journal, rf'guestkeeperd\[\d+\]: PreserveGuests\(\) by uid {uid} \(busctl\[\d+\]\): '
                                  r'authorized by polkit \(org\.guestkeeper1\.preserve\)')
        self.assertRegex(journal, r'Preserve run finished: 1 guests, 1 done, 0 failed')

if __name__ == '__main__':
    unittest.main(verbosity=2)
