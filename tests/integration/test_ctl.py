#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""guestkeeperctl against the real daemon on a private bus (harness.py), each command in text
and JSON, exit statuses, and clear errors when the daemon is not running."""

import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from test_daemon import Base  # noqa: E402

CTL = os.path.join(harness.BUILD_DIR, 'ctl', 'guestkeeperctl')
_german = []


def german_locale_env():
    """LC_ALL=de_DE.UTF-8 (decimal comma), compiled into a private LOCPATH when the system
    has not generated it: needs only Debian's "locales" package, not root."""
    if not _german:
        env = {'LC_ALL': 'de_DE.UTF-8'}
        have = subprocess.run(['locale', '-a'], capture_output=True, text=True).stdout.split()
        if 'de_DE.utf8' not in have:
            d = tempfile.mkdtemp(prefix='gk-locale-')
            atexit.register(shutil.rmtree, d, True)
            r = subprocess.run(['localedef', '-i', 'de_DE', '-f', 'UTF-8', os.path.join(d, 'de_DE.UTF-8')],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise AssertionError(f'localedef de_DE.UTF-8 failed (tools/install-deps test): {r.stderr}')
            env['LOCPATH'] = d
        # The test means something only if this locale really prints a decimal comma.
        out = subprocess.run(['/usr/bin/printf', '%.3f', '0.5'], capture_output=True, text=True,
                             env=dict(os.environ, **env)).stdout
        if out != '0,500':
            raise AssertionError(f'de_DE.UTF-8 prints 0.5 as {out!r}, not 0,500')
        _german.append(env)
    return _german[0]


class CtlTest(Base):
    def ctl(self, *args, check=True, env=None):
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address, **(env or {}))
        # Never a terminal on stdin: preserve would ask before touching every guest.
        r = subprocess.run([CTL, *args], capture_output=True, text=True, env=env, timeout=60,
                           stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError(f'guestkeeperctl {" ".join(args)} exited {r.returncode}: {r.stderr}')
        return r

    def ctl_pty(self, *args, env=None, answer=None, timeout=60):
        """guestkeeperctl on a pseudo-terminal (stdin, stdout and stderr, 200 columns), as a person
        runs it: returns the exit status and all it wrote there. @answer is typed once it asks
        a question ("[y/N]"). No pager, colour setting or NO_COLOR comes from the caller's
        environment."""
        e = {k: v for k, v in os.environ.items()
             if k not in ('PAGER', 'SYSTEMD_PAGER', 'NO_COLOR', 'SYSTEMD_COLORS', 'LESS')}
        e.update(DBUS_SYSTEM_BUS_ADDRESS=self.bus.address, TERM='xterm', **(env or {}))
        return harness.run_on_terminal([CTL, *args], e, answer=answer, timeout=timeout)

    def test_not_running(self):
        r = self.ctl('status', check=False)
        self.assertEqual(r.returncode, 4)
        self.assertIn('guestkeeperd is not running', r.stderr)

    def test_status_list_plan(self):
        self.define('web1')
        self.define('tmp', persistent=False)
        self.start_daemon()
        self.client.wait_state('idle')
        harness.wait_until(lambda: len(self.guests()) == 2, 10, 'guests listed')
        out = self.ctl('status').stdout
        self.assertRegex(out, r'guestkeeperd \S+: idle')
        self.assertIn('Inhibitor: held', out)
        self.assertIn(self.uri, out)
        st = json.loads(self.ctl('--json', 'status').stdout)
        self.assertEqual((st['state'], st['inhibitor_held'], st['uris']), ('idle', True, [self.uri]))

        out = self.ctl('list').stdout
        self.assertRegex(out, r'NAME +STATE +LAST OUTCOME +URI')
        self.assertRegex(out, r'web1 +running +- +')
        self.assertIn('2 guests listed.', out)
        self.assertNotIn('NAME', self.ctl('--no-legend', 'list').stdout)
        rows = {g['name']: g for g in json.loads(self.ctl('--json', 'list').stdout)}
        self.assertEqual(rows['tmp']['state'], 'running')

        out = self.ctl('plan').stdout
        self.assertRegex(out, r'web1 +persistent +save → shutdown → poweroff')
        self.assertRegex(out, r'tmp +transient +shutdown → poweroff')
        plan = {g['name']: g for g in json.loads(self.ctl('--json', 'plan').stdout)}
        self.assertEqual(plan['web1']['steps'], ['save', 'shutdown', 'poweroff'])
        # plan does nothing
        self.assertEqual(self.state('web1'), 'running')

    def test_plan_per_guest_policy(self):
        """Per-guest values and their sources: metadata over a [Guest] section over the
        defaults; skip shown as skipped (plan and list); metadata set while the daemon runs
        is seen through libvirt's metadata event; malformed metadata is reported."""
        import libvirt
        ns = 'https://guestkeeper.org/xmlns/guest/1'
        for n in ('web1', 'web2', 'keep', 'odd'):
            self.define(n)
        self.conn.lookupByName('web2').setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                                                   '<guest><order>3</order></guest>', 'gk', ns, 0)
        self.start_daemon(self.write_config('[Shutdown]\nShutdownMode=agent,acpi\n'
                                            '[Guest web*]\nOrder=10\nShutdownTimeoutSec=2min\n'
                                            '[Guest keep]\nAction=skip\n'))
        self.client.wait_state('idle')
        harness.wait_until(lambda: len(self.guests()) == 4, 10, 'guests listed')
        self.conn.lookupByName('odd').setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                                                  '<guest><order>first</order></guest>', 'gk', ns, 0)
        js = harness.wait_until(
            lambda: (p := {g['name']: g for g in json.loads(self.ctl('--json', 'plan').stdout)})
            and 'metadata-error' in p['odd']['settings'] and p, 10, 'the metadata event')
        self.assertEqual(js['web1']['settings']['order'], {'value': '10', 'source': 'Guest web*'})
        self.assertEqual(js['web2']['settings']['order'], {'value': '3', 'source': 'metadata'})
        self.assertEqual(js['web2']['settings']['shutdown-timeout'], {'value': '120', 'source': 'Guest web*'})
        self.assertEqual(js['web2']['settings']['shutdown-mode'], {'value': 'agent,acpi', 'source': 'default'})
        self.assertEqual(js['keep']['settings']['action'], {'value': 'skip', 'source': 'Guest keep'})
        self.assertEqual(js['keep']['steps'], [])
        self.assertIn('<order>: "first" is not an integer', js['odd']['settings']['metadata-error']['value'])
        r = self.ctl('plan')
        self.assertRegex(r.stdout, r'web2 +persistent +save → shutdown → poweroff +1\.7 s +3 \[metadata\] +'
                                   r'120 \[Guest web\*\] +agent,acpi +0 ')
        # Run order: the guests without an order, then order 10, then 3.
        names = [line.split()[0] for line in r.stdout.splitlines()[1:5]]
        self.assertEqual((set(names[:2]), names[2:]), ({'odd', 'keep'}, ['web1', 'web2']))
        self.assertRegex(r.stdout, r'keep +persistent +skipped \[Guest keep\]')
        self.assertIn('odd: malformed guestkeeper metadata, ignored', r.stderr)
        # ... and in the journal as soon as the guest is listed with it, not at the next shutdown.
        self.assertIn('warning: odd: malformed guestkeeper metadata, ignored: <order>', self.daemon.log_text())
        self.assertEqual(self.guests()['keep'][4], 'skipped')
        self.assertRegex(self.ctl('list').stdout, r'keep +running +skipped')
        # The order reaches the run: web2 (3) after web1 (10) after the others.
        self.client.call('PreserveGuests')
        self.client.wait_run_finished('preserve', timeout=30)
        log = self.daemon.log_text()
        self.assertLess(log.index('Shutdown: the guests order 10 begin'), log.index('web1: saved'))
        self.assertLess(log.index('web1: saved'), log.index('Shutdown: the guests order 3 begin'))
        self.assertEqual(self.state('keep'), 'running')

    def test_plan_preflight(self):
        """Pre-flight in the plan: each save's estimate (128 MiB guests, no speed measured yet:
        1.3 s + 350 MiB/s), a guest with a PCI passthrough device planned to shutdown with the
        reason (read from libvirt's XML), and the deadline warning."""
        self.define('a')
        self.define('b')
        xml = harness.test_domain_xml('pci').replace(
            '</domain>', "<devices><hostdev mode='subsystem' type='pci' managed='no'><source>"
            "<address domain='0' bus='0' slot='7' function='0'/></source></hostdev></devices></domain>")
        self.conn.defineXML(xml).create()
        self.start_daemon(self.write_config('[Shutdown]\nDeadlineSec=3\nParallelSaves=1\n'))
        self.client.wait_state('idle')
        harness.wait_until(lambda: len(self.guests()) == 3, 10, 'guests listed')
        js = {g['name']: g for g in json.loads(self.ctl('--json', 'plan').stdout)}
        self.assertEqual(js['a']['settings']['save-estimate'], {'value': '1.7', 'source': 'pre-flight'})
        self.assertEqual(js['pci']['steps'], ['shutdown', 'poweroff'])
        self.assertEqual(js['pci']['settings']['not-saved'],
                         {'value': 'host device passthrough cannot be saved', 'source': 'pre-flight'})
        self.assertNotIn('save-estimate', js['pci']['settings'])
        r = self.ctl('plan')
        self.assertRegex(r.stdout, r'pci +persistent +shutdown → poweroff +- ')
        self.assertIn('pci is not saved: host device passthrough cannot be saved', r.stdout)
        self.assertIn('2 saves, estimated 3.3 s (deadline 3.0 s)', r.stdout)
        self.assertIn('Warning: the saves are estimated to take 3.3 s, more than the deadline of 3.0 s: '
                      '1 of 2 saves are expected to end in time (shortest first)', r.stdout)
        # --json keeps its array on stdout; the warning goes to stderr.
        r = self.ctl('--json', 'plan')
        self.assertIn('guestkeeperctl: Warning: the saves are estimated', r.stderr)
        self.assertEqual(self.client.call('PlanSummary'),
                         (3331428, 3000000, 2, 1, 1, r.stderr.split('Warning: ')[1].strip()))
        # The run: pci is shut down, never saved, and says why.
        self.client.call('PreserveGuests')
        self.client.wait_run_finished('preserve', timeout=30)
        self.assertEqual(self.state('pci'), 'shutoff')
        self.assertEqual(self.state('a'), 'saved')
        self.assertIn('pci will not be saved: host device passthrough cannot be saved; shutting it down instead',
                      self.daemon.log_text())
        # The saves were measured: the speed file exists for the next plans (written on a worker
        # once the run is over).
        speed = os.path.join(self.daemon.state_dir, 'save-bandwidth')
        harness.wait_until(lambda: os.path.exists(speed), 10, 'the speed file')
        with open(speed) as f:
            self.assertRegex(f.read(), r'^fixed_usec=1300000\nbytes_per_sec=\d+\nruns=1\n$')

    def test_preserve_restore_follow(self):
        self.define('web1')
        self.define('web2')
        self.start_daemon()
        self.client.wait_state('idle')
        r = self.ctl('preserve')
        self.assertIn('preserve run finished: 2 done, 0 failed', r.stdout)
        self.assertEqual(self.state('web1'), 'saved')
        r = self.ctl('--json', 'restore')
        self.assertEqual(json.loads(r.stdout), {'kind': 'restore', 'done': 2, 'failed': 0})
        self.assertEqual(self.state('web1'), 'running')
        st = json.loads(self.ctl('--json', 'status').stdout)
        self.assertEqual((st['last_run'], st['guests_done']), ('restore', 2))

    def test_status_names_recovered_guests(self):
        """A guest the running set lists, found off at the next start (SIGKILLed daemon, guest
        destroyed: a power cut as libvirt sees it) and started again: status names it."""
        self.define('web1')
        self.define('web2')
        daemon = self.start_daemon()
        self.client.wait_state('idle')
        running = os.path.join(daemon.state_dir, 'running')
        harness.wait_until(lambda: os.path.exists(running) and sorted(harness.parse_record(running)) == ['web1', 'web2'],
                           10, 'the running set')
        daemon.kill()
        self.conn.lookupByName('web1').destroy()
        self.start_daemon()
        self.client.wait_run_finished('restore')
        out = self.ctl('status').stdout
        self.assertIn(f'Recovered: web1 ({self.uri}): restored after an unclean stop', out)
        self.assertNotIn('web2', out)
        st = json.loads(self.ctl('--json', 'status').stdout)
        self.assertEqual([(g['name'], g['uri']) for g in st['recovered']], [('web1', self.uri)])
        self.assertEqual(st['restore_waiting'], [])

    def test_status_names_guests_waiting_to_be_restored(self):
        """A recorded guest on a URI that does not answer waits to be restored: status says so,
        and its JSON stays JSON."""
        self.define('web1')
        self.start_daemon()
        self.client.wait_state('idle')
        self.ctl('preserve')
        self.daemon.stop()
        # The record now says web1 was saved on a URI whose libvirtd is not there.
        down = f'test+unix:///default?socket={self.wd.path}/no-such-libvirt-sock'
        path = os.path.join(self.daemon.state_dir, 'record')
        with open(path) as f:
            text = f.read()
        with open(path, 'w') as f:
            f.write(text.replace(f'URI={self.uri}\n', f'URI={down}\n'))
        self.start_daemon(config=self.write_config('ConnectTimeoutSec=1\n', uris=f'{self.uri} {down}'))
        harness.wait_until(lambda: self.ctl('status').stdout.count('Waiting: web1'), 20, 'web1 waiting')
        self.assertRegex(self.ctl('status').stdout, rf'Waiting: web1 \({re.escape(down)}\): \S')
        st = json.loads(self.ctl('--json', 'status').stdout)
        self.assertEqual([(g['name'], g['uri']) for g in st['restore_waiting']], [('web1', down)])
        self.assertTrue(st['restore_waiting'][0]['why'])
        self.assertEqual(st['recovered'], [])

    def follow_a_slow_preserve(self):
        """`guestkeeperctl preserve`, following a run whose save takes 3 s, once it is under way."""
        self.define('web1')
        self.start_daemon(env={'GUESTKEEPER_FAULTS': 'web1=slow-save'})
        self.client.wait_state('idle')
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address)
        ctl = subprocess.Popen([CTL, 'preserve'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)
        self.addCleanup(ctl.kill)
        harness.wait_until(lambda: self.client.get('State') == 'preserving', 10, 'the run started')
        return ctl

    def test_follow_survives_other_clients_leaving(self):
        # Every client that leaves the bus makes it broadcast NameOwnerChanged(":1.N", ":1.N",
        # ""); only the daemon's name leaving may end the follow.
        ctl = self.follow_a_slow_preserve()
        clients = 0
        while ctl.poll() is None and clients < 200:
            harness.busctl(self.bus, 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus',
                           'org.freedesktop.DBus', 'GetId')
            clients += 1
        out, err = ctl.communicate(timeout=30)
        self.assertEqual(ctl.returncode, 0, err)
        self.assertIn('preserve run finished: 1 done, 0 failed', out)
        self.assertGreater(clients, 3)  # the bus really was busy while it followed

    def test_follow_ends_when_the_daemon_dies(self):
        ctl = self.follow_a_slow_preserve()
        self.daemon.kill()
        out, err = ctl.communicate(timeout=30)
        self.assertEqual(ctl.returncode, 1)
        self.assertIn('guestkeeperd went away during the preserve run', err)

    def test_json_for_every_command_in_any_locale(self):
        self.define('web1')
        self.define('tmp', persistent=False)
        cfg = self.write_config()
        self.start_daemon(cfg)
        self.client.wait_state('idle')
        harness.wait_until(lambda: len(self.guests()) == 2, 10, 'guests listed')
        lg = os.path.join(self.wd.path, 'libvirt-guests')
        with open(lg, 'w') as f:
            f.write('ON_SHUTDOWN=suspend\nFROB="a \\"quoted\\" value"\n')
        de = german_locale_env()

        def js(*args):
            # json.loads takes exactly one document: a second line or a decimal comma fails.
            r = self.ctl('--json', *args, env=de)
            try:
                return json.loads(r.stdout)
            except ValueError as e:
                raise AssertionError(f'guestkeeperctl --json {" ".join(args)}: {e}: {r.stdout!r}')

        for st in (js(), js('status')):
            self.assertEqual((st['state'], st['progress'], st['uris']), ('idle', 0.0, [self.uri]))
        self.assertEqual({g['name'] for g in js('list')}, {'web1', 'tmp'})
        self.assertEqual({g['name']: g['steps'] for g in js('plan')}['tmp'], ['shutdown', 'poweroff'])
        self.assertEqual(js('preserve'), {'kind': 'preserve', 'done': 2, 'failed': 0})
        st = js('status')
        self.assertEqual((st['last_run'], st['progress'], st['guests_done']), ('preserve', 1.0, 2))
        self.assertEqual(js('restore'), {'kind': 'restore', 'done': 2, 'failed': 0})
        self.assertEqual(js('preserve', 'web1'), {'kind': 'preserve', 'done': 1, 'failed': 0})
        self.assertEqual(js('restore', 'web1'), {'kind': 'restore', 'done': 1, 'failed': 0})
        self.assertEqual(js('preserve', '--no-block'), {'kind': 'preserve', 'started': True})
        self.client.wait_run_finished('preserve', count=3)
        self.assertEqual(js('restore', '--no-block'), {'kind': 'restore', 'started': True})
        self.client.wait_run_finished('restore', count=3)
        runs = js('last-run', '--all')
        self.assertEqual(len(runs), 6)
        self.assertIsInstance(runs[0]['duration'], float)
        self.assertEqual(js('last-run')[-1]['kind'], 'restore')
        shown = js('show')
        self.assertEqual((shown['State'], shown['Progress'], shown['GuestsInFlight']), ('idle', 1.0, []))
        self.assertEqual(js('show', '-p', 'Progress'), {'Progress': 1.0})
        self.assertEqual(js('reload'), {'reloaded': True})
        # pretty: the same document, indented over several lines.
        r = self.ctl('--json=pretty', 'status', env=de)
        self.assertGreater(r.stdout.count('\n'), 10)
        self.assertEqual(json.loads(r.stdout)['state'], 'idle')
        self.assertEqual(self.ctl('--json', '--json=off', 'status').stdout.split(':')[0].split()[0], 'guestkeeperd')
        imp = js('import-libvirt-guests', lg)
        self.assertEqual((imp['file'], imp['defaults'], imp['warnings']), (lg, 'debian', []))
        self.assertIn('Save=persistent\n', imp['config'])
        self.assertTrue(any(n.startswith('FROB:') for n in imp['notes']), imp['notes'])

    def last_runs(self, *args):
        return json.loads(self.ctl('--json', 'last-run', *args).stdout)

    def test_last_run_kept_across_restarts(self):
        """A rehearsal and a restore, then a host shutdown and the restore of the next boot:
        last-run shows the last of each kind with its guests, --all every run, and the history
        survives the daemon's restarts."""
        self.define('web1')
        self.define('tmp', persistent=False)
        cfg = self.write_config('[Shutdown]\nShutdownTimeoutSec=30\n')
        self.start_daemon(cfg)
        self.client.wait_state('idle')
        self.assertEqual(self.ctl('last-run').stdout, 'No run kept yet.\n')
        self.assertEqual(self.last_runs(), [])
        self.ctl('preserve')
        self.ctl('restore')

        pre, res = self.last_runs()
        self.assertEqual((pre['kind'], pre['reason'], res['kind'], res['reason']),
                         ('preserve', 'rehearsal', 'restore', 'requested'))
        self.assertRegex(pre['requested_by'], r'^uid 0 via guestkeeperctl\[\d+\]')
        self.assertRegex(pre['id'], r'^[0-9a-f]{32}$')
        self.assertNotEqual(pre['id'], res['id'])
        self.assertLessEqual(pre['started'], pre['finished'])
        self.assertLessEqual(pre['finished'], res['started'])
        self.assertEqual((pre['total'], pre['done'], pre['failed'], pre['cancelled']), (2, 2, 0, False))
        g = {x['name']: x for x in pre['guests']}
        self.assertEqual((g['web1']['outcome'], [s['step'] for s in g['web1']['steps']]), ('saved', ['save']))
        self.assertEqual((g['tmp']['outcome'], [s['step'] for s in g['tmp']['steps']]),
                         ('shutdown', ['shutdown']))
        self.assertIsNone(g['web1']['bytes'])  # the test driver has no job stats
        self.assertIsNone(g['web1']['steps'][0]['error'])
        self.assertGreater(g['web1']['steps'][0]['duration'], 0)
        self.assertGreaterEqual(g['web1']['duration'], g['web1']['steps'][0]['duration'])
        self.assertEqual({x['name']: (x['outcome'], [s['step'] for s in x['steps']]) for x in res['guests']},
                         {'web1': ('restored', ['start']), 'tmp': ('restored', ['start'])})

        out = self.ctl('last-run').stdout
        self.assertIn(f'● preserve run {pre["id"]}\n', out)
        self.assertIn('     Reason: rehearsal\n', out)
        self.assertIn(f'    Journal: journalctl GUESTKEEPER_RUN_ID={pre["id"]}\n', out)
        self.assertRegex(out, r'\n    web1  saved +\d+\.\d s\n      save +\+\d+\.\d s +\d+\.\d s\n')
        self.assertIn(f'● restore run {res["id"]}\n', out)
        self.assertRegex(out, r'\n    tmp   restored +\d+\.\d s\n      start +\+')
        self.assertLess(out.index('preserve run'), out.index('restore run'))

        # A host shutdown, then the next boot: the restore at start-up.
        self.logind.emit_prepare_for_shutdown(True)
        self.client.wait_run_finished('preserve')
        self.assertEqual(self.daemon.stop(), 0)
        self.assertEqual(len(os.listdir(os.path.join(self.daemon.state_dir, 'runs'))), 3)
        self.start_daemon(cfg)
        self.client.wait_run_finished('restore', count=2)
        shut, boot = self.last_runs()
        self.assertEqual((shut['kind'], shut['reason'], shut['requested_by']), ('preserve', 'shutdown', 'logind'))
        self.assertEqual((boot['kind'], boot['reason'], boot['requested_by']), ('restore', 'start-up', 'start-up'))
        self.assertEqual({x['name']: x['outcome'] for x in boot['guests']}, {'web1': 'restored', 'tmp': 'restored'})
        every = self.last_runs('--all')
        self.assertEqual([r['id'] for r in every[:2]], [pre['id'], res['id']])
        self.assertEqual([r['reason'] for r in every], ['rehearsal', 'requested', 'shutdown', 'start-up'])
        self.assertEqual(self.ctl('status', '--all', check=False).returncode, 2)

    def test_last_run_shutdown_type(self):
        """systemd 252's logind does not say what kind of shutdown it is: the daemon asks
        systemd which shutdown target has a job; a newer logind's metadata says it directly.
        A cancelled shutdown's restore says so."""
        systemd = harness.Systemd(self.bus)
        self.addCleanup(systemd.stop)
        systemd.mock('AddMethod', 'sssss', 'org.freedesktop.systemd1.Manager', 'ListJobs', '', 'a(usssoo)',
                     'ret = [(7, "reboot.target", "start", "waiting", "/org/freedesktop/systemd1/job/7", '
                     '"/org/freedesktop/systemd1/unit/reboot_2etarget")]')
        self.define('web1')
        # The save starts 3 s late: systemd's answer, asked for at the start, comes first.
        self.start_daemon(env={'GUESTKEEPER_FAULTS': 'web1=slow-save'})
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown(True)
        self.client.wait_run_finished('preserve')
        self.logind.emit_prepare_for_shutdown(False)
        self.client.wait_run_finished('restore')
        shut, back = self.last_runs()
        self.assertEqual((shut['reason'], shut['requested_by']), ('reboot', 'logind'))
        self.assertEqual((back['reason'], back['requested_by']), ('shutdown-cancelled', 'logind'))
        self.assertIn('     Reason: reboot\n', self.ctl('last-run').stdout)

        harness.emit_shutdown_signals_like_logind(self.logind, True, kind='power-off')
        self.client.wait_run_finished('preserve', count=2)
        self.assertEqual(self.last_runs()[-1]['reason'], 'poweroff')

    def test_last_run_maintenance(self):
        self.define('web1')
        self.start_daemon()
        self.client.wait_state('idle')
        self.ctl('preserve', '--hold')
        run, = self.last_runs()
        self.assertEqual((run['kind'], run['reason']), ('preserve', 'maintenance'))
        self.assertRegex(run['requested_by'], r'^uid 0 via guestkeeperctl\[\d+\]')

    def test_last_run_failures_and_a_corrupt_file(self):
        """A guest whose steps fail shows each step's error; an unreadable history file is set
        aside and reported, and the daemon runs on."""
        self.define('web1')
        os.makedirs(os.path.join(self.wd.path, 'state', 'runs'))
        bad = os.path.join(self.wd.path, 'state', 'runs', '00000003-' + 'ab' * 16 + '.run')
        with open(bad, 'w') as f:
            f.write('[Run]\nVersion=1\n')
        self.start_daemon(self.write_config('[Shutdown]\nShutdownTimeoutSec=1\n'),
                          env={'GUESTKEEPER_FAULTS': 'web1=save-fails,web1=ignore-shutdown'})
        self.client.wait_state('idle')
        self.assertIn(f'error: Unreadable run history: {bad}: not a complete run', self.daemon.log_text())
        self.assertTrue(os.path.exists(bad + '.corrupt'))
        self.ctl('preserve', check=False)
        run, = self.last_runs()
        self.assertEqual(run['failed'], 0)
        g, = run['guests']
        self.assertEqual([(s['step'], s['error'] is not None) for s in g['steps']],
                         [('save', True), ('shutdown', True), ('poweroff', False)])
        self.assertIn('save failed', g['steps'][0]['error'])
        self.assertEqual(g['steps'][1]['error'], 'did not shut down within 1 s')
        self.assertGreaterEqual(g['steps'][1]['duration'], 1.0)
        self.assertEqual(g['outcome'], 'poweroff')
        out = self.ctl('last-run').stdout
        self.assertRegex(out, r'\n      save +\+\S+ s +\S+ s  failed: save failed: ')
        # The next run is numbered after the file set aside. LastRuns() answers from memory at
        # once; the file is written on a worker after it.
        harness.wait_until(lambda: any(n.startswith('00000004-') for n in os.listdir(os.path.dirname(bad))), 15,
                           'the run written as 00000004-*.run')
        self.assertFalse(any(n.startswith('00000001-') for n in os.listdir(os.path.dirname(bad))))

    def test_run_id_in_the_journal(self):
        """Every journal entry of a run carries GUESTKEEPER_RUN_ID=, the id last-run shows;
        entries outside a run do not."""
        journal = harness.Journal(self.wd.path)
        self.addCleanup(journal.close)
        self.define('web1')
        self.start_daemon(journal=journal)
        self.client.wait_state('idle')
        self.ctl('preserve')
        run, = self.last_runs()
        harness.wait_until(lambda: journal.matching(MESSAGE_ID='7b1d9e3f5a2c4e6b8d0f1a3c5e7b9d4f'), 10,
                           'the run finished in the journal')
        started, = journal.matching(MESSAGE_ID='3f0a5c6e8b2d4f7a9c1e0b3d5f7a9c2e')
        finished, = journal.matching(MESSAGE_ID='7b1d9e3f5a2c4e6b8d0f1a3c5e7b9d4f')
        saved, = journal.matching(GUEST_NAME='web1', MESSAGE='web1: saved')
        for e in (started, finished, saved):
            self.assertEqual(e.get('GUESTKEEPER_RUN_ID'), run['id'], e)
        self.assertIn(f'run ID {run["id"]}', started['MESSAGE'])
        ready, = [e for e in journal.matching() if e['MESSAGE'].startswith('Ready:')]
        self.assertNotIn('GUESTKEEPER_RUN_ID', ready)
        during = journal.entries[journal.entries.index(started):journal.entries.index(finished) + 1]
        self.assertTrue(all(e.get('GUESTKEEPER_RUN_ID') == run['id'] for e in during), during)

    def test_journal_fields(self):
        """The fields a sysadmin filters by: who called (uid, pid) on the call's entry, the run's
        id, kind and reason on each of its entries, a guest's step, outcome and the step's
        duration, the run's figures and duration at its end; a run with a failed guest ends with
        a MESSAGE_ID of its own."""
        called_id = '333038348bda4166a8f71098ff350207'
        finished_id = '7b1d9e3f5a2c4e6b8d0f1a3c5e7b9d4f'
        failed_id = '9f4f62c203f344ebb709c46ed5eda07d'
        journal = harness.Journal(self.wd.path)
        self.addCleanup(journal.close)
        self.define('web1')
        self.define('web2')
        self.start_daemon(journal=journal, env={'GUESTKEEPER_FAULTS': 'web2=save-fails'})
        self.client.wait_state('idle')
        self.ctl('preserve')
        pre, = self.last_runs()
        harness.wait_until(lambda: journal.matching(MESSAGE_ID=finished_id), 10, 'the run finished in the journal')

        call, = journal.matching(MESSAGE_ID=called_id)
        self.assertRegex(call['MESSAGE'], r'^PreserveGuests\(\) called by uid 0 via guestkeeperctl\[\d+\]')
        self.assertEqual(call['GUESTKEEPER_CALLER_UID'], '0')
        self.assertIn(f'guestkeeperctl[{call["GUESTKEEPER_CALLER_PID"]}]', call['MESSAGE'])
        self.assertEqual(call['GUESTKEEPER_RUN_ID'], pre['id'])

        of_run = journal.matching(GUESTKEEPER_RUN_ID=pre['id'])
        self.assertGreater(len(of_run), 5)
        for e in of_run:
            self.assertEqual((e.get('GUESTKEEPER_RUN_KIND'), e.get('GUESTKEEPER_RUN_REASON')),
                             ('preserve', 'rehearsal'), e)
        saved, = journal.matching(GUEST_NAME='web1', MESSAGE='web1: saved')
        self.assertEqual((saved['GUESTKEEPER_STEP'], saved['GUESTKEEPER_OUTCOME']), ('save', 'saved'))
        self.assertGreater(int(saved['GUESTKEEPER_DURATION_USEC']), 0)
        save_failed, = [e for e in journal.matching(GUEST_NAME='web2')
                        if e['MESSAGE'].startswith('Save of web2 failed')]
        self.assertEqual(save_failed['GUESTKEEPER_STEP'], 'save')
        self.assertNotIn('GUESTKEEPER_DURATION_USEC', save_failed)
        shut, = journal.matching(GUEST_NAME='web2', MESSAGE='web2: shutdown')
        self.assertEqual((shut['GUESTKEEPER_STEP'], shut['GUESTKEEPER_OUTCOME']), ('shutdown', 'shutdown'))
        step, = [s for s in pre['guests'] if s['name'] == 'web2'][0]['steps'][1:]
        self.assertAlmostEqual(int(shut['GUESTKEEPER_DURATION_USEC']) / 1e6, step['duration'], delta=0.01)
        end, = journal.matching(MESSAGE_ID=finished_id)
        self.assertEqual((end['GUESTKEEPER_GUESTS_TOTAL'], end['GUESTKEEPER_GUESTS_DONE'],
                          end['GUESTKEEPER_GUESTS_FAILED']), ('2', '2', '0'))
        self.assertGreater(int(end['GUESTKEEPER_DURATION_USEC']), int(saved['GUESTKEEPER_DURATION_USEC']))

        self.ctl('restore')
        harness.wait_until(lambda: len(journal.matching(MESSAGE_ID=finished_id)) == 2, 10, 'the restore finished')
        back = self.last_runs()[-1]
        self.assertEqual(back['kind'], 'restore')
        call = journal.matching(MESSAGE_ID=called_id)[-1]
        self.assertRegex(call['MESSAGE'], r'^RestoreGuests\(\) called by uid 0 via guestkeeperctl\[\d+\]')
        self.assertEqual(call['GUESTKEEPER_RUN_ID'], back['id'])
        restored, = journal.matching(GUEST_NAME='web1', GUESTKEEPER_RUN_ID=back['id'],
                                     GUESTKEEPER_OUTCOME='restored')
        self.assertEqual((restored['GUESTKEEPER_STEP'], restored['GUESTKEEPER_RUN_KIND'],
                          restored['GUESTKEEPER_RUN_REASON']), ('start', 'restore', 'requested'))

        # Nothing allowed any more: the next run fails, and says so with its own MESSAGE_ID.
        self.write_config('[Shutdown]\nSave=none\nShutdown=none\nPowerOff=none\n')
        self.ctl('reload')
        call = journal.matching(MESSAGE_ID=called_id)[-1]
        self.assertRegex(call['MESSAGE'], r'^Reload\(\) called by uid 0 via guestkeeperctl\[\d+\]')
        self.assertEqual(call['GUESTKEEPER_CALLER_UID'], '0')
        self.assertNotIn('GUESTKEEPER_RUN_ID', call)
        self.ctl('preserve', check=False)
        harness.wait_until(lambda: journal.matching(MESSAGE_ID=failed_id), 10, 'the failed run in the journal')
        end, = journal.matching(MESSAGE_ID=failed_id)
        self.assertEqual((end['PRIORITY'], end['GUESTKEEPER_GUESTS_FAILED']), ('4', '2'))
        failed = journal.matching(MESSAGE_ID='c4e8a2f6b0d3e5a7c9f1b2d4e6a8c0f3',
                                  GUESTKEEPER_RUN_ID=end['GUESTKEEPER_RUN_ID'])
        self.assertEqual(sorted((e['GUEST_NAME'], e['GUESTKEEPER_OUTCOME']) for e in failed),
                         [('web1', 'failed'), ('web2', 'failed')])

    def test_preserve_with_failure_exits_1(self):
        self.define('web1')
        cfg = self.write_config('[Shutdown]\nSave=none\nShutdown=none\nPowerOff=none\n')
        self.start_daemon(cfg)
        self.client.wait_state('idle')
        r = self.ctl('preserve', check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn('0 done, 1 failed', r.stdout)

    def test_reload_and_refusals(self):
        cfg = self.write_config()
        self.start_daemon(cfg)
        self.client.wait_state('idle')
        self.assertIn('reloaded', self.ctl('reload').stdout)
        with open(cfg, 'a') as f:
            f.write('[Boot]\nRestore=perhaps\n')
        r = self.ctl('reload', check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f'{cfg}: [Boot] Restore: "perhaps" is not a boolean', r.stderr)
        r = subprocess.run(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', CTL, 'preserve'],
                           capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address))
        self.assertEqual(r.returncode, 1)
        self.assertIn("PreserveGuests() needs root, or polkit's authorization for org.guestkeeper1.preserve, and "
                      'polkit is unavailable (caller uid 65534)', r.stderr)
        self.assertEqual(self.ctl('frobnicate', check=False).returncode, 2)

    def test_conflicts_reported(self):
        """libvirt-guests.service as systemd sees it (not by scanning *.wants), and qemu.conf."""
        systemd = harness.Systemd(self.bus, units={'libvirt-guests.service': ('enabled', 'active')})
        self.addCleanup(systemd.stop)
        root = os.path.join(self.wd.path, 'fakeroot')
        os.makedirs(os.path.join(root, 'etc/libvirt'))
        with open(os.path.join(root, 'etc/libvirt/qemu.conf'), 'w') as f:
            f.write('#auto_shutdown_try_save = "all"\nauto_shutdown_try_save = "persistent"\n'
                    'auto_shutdown_poweroff = "none"\n')
        self.start_daemon(env={'GUESTKEEPER_ROOT': root})
        self.client.wait_state('idle')
        harness.wait_until(lambda: len(self.client.get("Conflicts")) == 2, 10, 'two conflicts')
        conflicts = self.client.get('Conflicts')
        self.assertIn('libvirt-guests.service is enabled and active (UnitFileState=enabled, ActiveState=active)',
                      conflicts[0])
        self.assertIn('--takeover', conflicts[0])
        self.assertIn('auto_shutdown_try_save = "persistent"', conflicts[1])
        # A distinct exit status for monitoring scripts, in text and in JSON.
        r = self.ctl('status', check=False)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn('CONFLICTS:', r.stdout)
        r = self.ctl('--json', 'status', check=False)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertEqual(len(json.loads(r.stdout)['conflicts']), 2)
        # On a terminal the conflicts stand out (yellow); piped above, no escape at all.
        self.assertNotIn('\x1b[', self.ctl('status', check=False).stdout)
        code, out = self.ctl_pty('status', env={'SYSTEMD_PAGER': 'cat'})
        self.assertEqual(code, 3, out)
        self.assertIn('\x1b[0;1;33m    CONFLICTS:\x1b[0m', out)
        self.assertIn('warning: CONFLICT: libvirt-guests.service is enabled', self.daemon.log_text())

    def test_conflict_rechecked_on_reload_and_before_a_run(self):
        systemd = harness.Systemd(self.bus, units={'libvirt-guests.service': ('disabled', None)})
        self.start_daemon()
        self.client.wait_state('idle')
        harness.assert_never(lambda: self.client.get('Conflicts'), 1, 'a conflict')
        # Enabled while guestkeeper runs (not loaded yet, so not active): Reload sees it.
        systemd.stop()
        systemd = harness.Systemd(self.bus, units={'libvirt-guests.service': ('enabled', None)})
        self.addCleanup(systemd.stop)
        self.client.call('Reload')
        harness.wait_until(lambda: self.client.get("Conflicts"), 10, 'the conflict after Reload')
        self.assertIn('is enabled (UnitFileState=enabled, ActiveState=inactive)', self.client.get('Conflicts')[0])
        # Disabled again: the next run's check clears it.
        systemd.stop()
        systemd = harness.Systemd(self.bus, units={'libvirt-guests.service': ('disabled', None)})
        self.client.call('PreserveGuests')
        self.client.wait_run_finished('preserve')
        harness.wait_until(lambda: self.client.get("Conflicts") == [], 10, 'the conflict gone before the run')

    def test_no_conflicts(self):
        self.start_daemon()
        self.client.wait_state('idle')
        self.assertEqual(self.client.get('Conflicts'), [])

    def test_import_libvirt_guests(self):
        path = os.path.join(self.wd.path, 'libvirt-guests')
        with open(path, 'w') as f:
            f.write('# comment\nURIS="qemu:///system lxc:///"\nON_BOOT=start\nON_SHUTDOWN=suspend\n'
                    "PERSISTENT_ONLY=false\nSHUTDOWN_TIMEOUT='120'\nPARALLEL_SHUTDOWN=3\nBYPASS_CACHE=1\n"
                    'CONNECT_RETRIES=10\nFROB=1\n')
        r = self.ctl('import-libvirt-guests', path)
        conf = os.path.join(self.wd.path, 'imported.conf')
        with open(conf, 'w') as f:
            f.write(r.stdout)
        self.assertIn('URIs=qemu:///system lxc:///', r.stdout)
        self.assertIn('Save=all', r.stdout)
        self.assertIn('ParallelShutdowns=3', r.stdout)
        self.assertIn('CONNECT_RETRIES: not needed', r.stderr)
        self.assertIn('FROB: not a libvirt-guests setting', r.stderr)
        # what it prints is a config the daemon accepts
        d = harness.Daemon(self.wd.path, self.bus, self.notify, conf)
        d.start(wait_ready=False)
        harness.wait_until(lambda: d.proc.poll() is not None or 'Ready' in d.log_text(), 15, 'daemon up')
        self.assertIn('Ready', d.log_text())
        self.assertNotIn(f'{conf}:', d.log_text())  # no complaint about the file itself
        d.kill()
        with open(path, 'w') as f:
            f.write('ON_SHUTDOWN=hibernate\n')
        r = self.ctl('import-libvirt-guests', path, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn('ON_SHUTDOWN=hibernate', r.stderr)

    def test_import_defaults_and_warnings(self):
        # An empty file: all is the script's defaults — Debian's unless it is a sysconfig file.
        os.makedirs(os.path.join(self.wd.path, 'sysconfig'))
        for path, option, save, restore in (('libvirt-guests', None, 'none', 'no'),
                                            ('sysconfig/libvirt-guests', None, 'persistent', 'yes'),
                                            ('libvirt-guests', '--defaults=upstream', 'persistent', 'yes'),
                                            ('sysconfig/libvirt-guests', '--defaults=debian', 'none', 'no')):
            path = os.path.join(self.wd.path, path)
            open(path, 'w').close()
            out = self.ctl(*([option] if option else []), 'import-libvirt-guests', path).stdout
            self.assertIn(f'\nSave={save}\n', out, (path, option))
            self.assertIn(f'\nRestore={restore}\n', out, (path, option))
        with open(path, 'w') as f:
            f.write('SHUTDOWN_TIMEOUT=0\n')
        r = self.ctl('import-libvirt-guests', path)
        self.assertIn('warning: SHUTDOWN_TIMEOUT=0: libvirt-guests waits for ever', r.stderr)
        self.assertIn('consider ShutdownTimeoutSec=300', r.stderr)
        self.assertEqual(self.ctl('--defaults=suse', 'import-libvirt-guests', path, check=False).returncode, 2)
        self.assertEqual(self.ctl('--defaults=debian', 'status', check=False).returncode, 2)

    # --- show, pager, colour ---

    def test_show(self):
        self.define('web1')
        self.start_daemon()
        self.client.wait_state('idle')
        out = self.ctl('show').stdout
        for line in ('State=idle', 'InhibitorHeld=yes', f'URIs={self.uri}', 'Held=no', 'GuestsTotal=0',
                     'Progress=0', 'GuestsInFlight=', 'Conflicts=', 'RestoreWaiting='):
            self.assertIn(f'\n{line}\n', '\n' + out, out)
        self.assertRegex(out, r'(^|\n)Version=\S+\n')
        # -p repeats and takes lists; the properties come in the daemon's order.
        self.assertEqual(self.ctl('show', '-p', 'Held,State', '--property=URIs').stdout,
                         f'State=idle\nURIs={self.uri}\nHeld=no\n')
        self.assertEqual(self.ctl('show', '-p', 'State', '--value').stdout, 'idle\n')
        self.assertEqual(json.loads(self.ctl('--json', 'show', '-p', 'State,Held,URIs').stdout),
                         {'State': 'idle', 'Held': False, 'URIs': [self.uri]})
        full = json.loads(self.ctl('--json=pretty', 'show').stdout)
        self.assertEqual((full['GuestsTotal'], full['RestoreWaiting'], full['InhibitorHeld']), (0, [], True))
        self.assertEqual(self.ctl('status', '-p', 'State', check=False).returncode, 2)
        self.assertEqual(self.ctl('--json=long', 'status', check=False).returncode, 2)

    def pager_script(self):
        """A PAGER that records that it ran, with which LESS, and what it was given."""
        d = self.wd.path
        script = os.path.join(d, 'pager.sh')
        with open(script, 'w') as f:
            f.write(f'#!/bin/sh\necho "ran LESS=$LESS" >> {d}/pager.ran\ncat > {d}/pager.out\n')
        os.chmod(script, 0o755)
        return script, os.path.join(d, 'pager.ran'), os.path.join(d, 'pager.out')

    def test_pager(self):
        self.define('web1')
        self.start_daemon()
        self.client.wait_state('idle')
        harness.wait_until(lambda: len(self.guests()) == 1, 10, 'guests listed')
        script, ran, paged = self.pager_script()

        code, out = self.ctl_pty('list', env={'PAGER': script})
        self.assertEqual(code, 0, out)
        with open(ran) as f:
            self.assertEqual(f.read(), 'ran LESS=FRX\n')
        with open(paged) as f:
            self.assertRegex(f.read(), r'web1 +running')
        self.assertNotIn('web1', out)
        os.unlink(ran)

        # SYSTEMD_PAGER wins over PAGER, and a LESS of the user's own is kept.
        code, out = self.ctl_pty('status', env={'SYSTEMD_PAGER': script, 'PAGER': 'false', 'LESS': 'R'})
        self.assertEqual(code, 0, out)
        with open(ran) as f:
            self.assertEqual(f.read(), 'ran LESS=R\n')
        with open(paged) as f:
            self.assertIn('guestkeeperd', f.read())
        os.unlink(ran)

        # --no-pager, PAGER=cat or empty, and output that is not a terminal: no pager.
        for args, env in ((('--no-pager', 'list'), {'PAGER': script}), (('list',), {'PAGER': 'cat'}),
                          (('list',), {'PAGER': ''})):
            code, out = self.ctl_pty(*args, env=env)
            self.assertEqual(code, 0, out)
            self.assertRegex(out, r'web1 +running', (args, env))
        self.assertRegex(self.ctl('list', env={'PAGER': script}).stdout, r'web1 +running')
        self.assertFalse(os.path.exists(ran))

    def test_colour(self):
        """Failures in red on a terminal; none with NO_COLOR, SYSTEMD_COLORS=0, or piped."""
        self.define('web1')
        self.start_daemon(self.write_config('[Shutdown]\nSave=none\nShutdown=none\nPowerOff=none\n'))
        self.client.wait_state('idle')
        self.assertEqual(self.ctl('preserve', check=False).returncode, 1)
        code, out = self.ctl_pty('list', env={'SYSTEMD_PAGER': 'cat'})
        self.assertEqual(code, 0, out)
        self.assertRegex(out, r'web1 +running +\x1b\[0;1;31mfailed\x1b\[0m')
        code, out = self.ctl_pty('last-run', env={'SYSTEMD_PAGER': 'cat'})
        self.assertIn('\x1b[0;1;31m×\x1b[0m preserve run', out)
        for env in ({'NO_COLOR': '1'}, {'SYSTEMD_COLORS': '0'}):
            code, out = self.ctl_pty('list', env=dict(env, SYSTEMD_PAGER='cat'))
            self.assertRegex(out, r'web1 +running +failed')
            self.assertNotIn('\x1b[', out, env)
        for args in (('list',), ('last-run',), ('status',)):
            self.assertNotIn('\x1b[', self.ctl(*args).stdout)

    # --- cancel, named guests, confirmation, --no-block ---

    def test_cancel_a_rehearsal(self):
        """Cancel() while a save is under way: the rehearsal starts no further step (web3 is
        never touched), the guest under way ends its step, and what it stopped comes back."""
        for n in ('web1', 'web2', 'web3'):
            self.define(n)
        # One save at a time: web1 (no order comes first), web2's slow one, then web3.
        self.start_daemon(self.write_config('[Shutdown]\nParallelSaves=1\n[Guest web2]\nOrder=2\n'
                                            '[Guest web3]\nOrder=1\n'),
                          env={'GUESTKEEPER_FAULTS': 'web2=slow-save'})
        self.client.wait_state('idle')
        r = self.ctl('cancel', check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn('Cancel: No rehearsal or restore run is under way', r.stderr)

        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address)
        follow = subprocess.Popen([CTL, 'preserve'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env, stdin=subprocess.DEVNULL)
        self.addCleanup(follow.kill)
        harness.wait_until(lambda: self.guests()['web2'][4] == 'saving', 20, 'the second save')
        self.assertEqual(self.state('web1'), 'saved')
        self.assertEqual(json.loads(self.ctl('--json', 'cancel').stdout), {'cancelled': True})
        out, err = follow.communicate(timeout=30)
        self.assertIn('preserve run finished: 2 done, 0 failed', out)
        self.client.wait_run_finished('restore')
        self.assertEqual([self.state(n) for n in ('web1', 'web2', 'web3')], ['running'] * 3)
        pre, res = self.last_runs()
        self.assertTrue(pre['cancelled'])
        self.assertEqual({g['name']: g['outcome'] for g in pre['guests']},
                         {'web1': 'saved', 'web2': 'saved', 'web3': ''})
        self.assertEqual({g['name'] for g in res['guests']}, {'web1', 'web2', 'web3'})
        self.assertEqual((res['kind'], res['reason']), ('restore', 'cancelled'))
        self.assertRegex(res['requested_by'], r'^uid 0 via guestkeeperctl\[\d+\]')
        self.assertEqual(self.ctl('cancel', check=False).returncode, 1)

    def test_cancel_refused_during_a_host_shutdown(self):
        self.define('web1')
        self.start_daemon(env={'GUESTKEEPER_FAULTS': 'web1=slow-save'})
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown(True)
        self.client.wait_state('preserving')
        r = self.ctl('cancel', check=False)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(harness.remote_error(self.client.call, 'Cancel'), 'org.guestkeeper1.Error.Busy')
        self.assertIn('guestkeeper cannot cancel it', r.stderr)
        self.client.wait_run_finished('preserve')
        self.assertEqual(self.state('web1'), 'saved')

    def test_cancel_a_restore(self):
        """A restore starts no further guest once cancelled; the others stay recorded, with no
        retry, until the next restore."""
        for n in ('web1', 'web2', 'web3'):
            self.define(n)
        self.start_daemon(self.write_config('[Boot]\nParallelStarts=1\n'),
                          env={'GUESTKEEPER_FAULTS': 'web1=slow-start,web2=slow-start,web3=slow-start'})
        self.client.wait_state('idle')
        self.ctl('preserve')
        self.ctl('restore', '--no-block')
        harness.wait_until(lambda: any(g[4] == 'restoring' for g in self.guests().values()), 20, 'a start')
        self.ctl('cancel')
        self.client.wait_run_finished('restore')
        states = [self.state(n) for n in ('web1', 'web2', 'web3')]
        self.assertEqual(states.count('running'), 1, states)
        self.assertEqual(self.client.get('RestoreWaiting'), [])
        harness.assert_never(lambda: self.client.get('State') != 'idle', 3, 'a retry of the restore')
        self.assertEqual(self.ctl('restore').returncode, 0)
        self.assertEqual([self.state(n) for n in ('web1', 'web2', 'web3')], ['running'] * 3)

    def test_named_guests(self):
        self.define('web1')
        self.define('web2')
        self.start_daemon()
        self.client.wait_state('idle')
        harness.wait_until(lambda: len(self.guests()) == 2, 10, 'guests listed')
        r = self.ctl('preserve', 'web1', 'nope', check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn('No guest named nope', r.stderr)
        self.assertEqual(self.last_runs(), [])  # nothing started

        self.assertIn('preserve run finished: 1 done, 0 failed', self.ctl('preserve', 'web1').stdout)
        self.assertEqual((self.state('web1'), self.state('web2')), ('saved', 'running'))
        uuid = self.conn.lookupByName('web2').UUIDString()
        self.assertEqual(json.loads(self.ctl('--json', 'preserve', uuid).stdout),
                         {'kind': 'preserve', 'done': 1, 'failed': 0})
        self.assertEqual(self.state('web2'), 'saved')
        r = self.ctl('restore', 'web2')
        self.assertIn('restore run finished: 1 done, 0 failed', r.stdout)
        self.assertEqual((self.state('web1'), self.state('web2')), ('saved', 'running'))
        r = self.ctl('restore', 'web2', check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn('web2 was not stopped by guestkeeper', r.stderr)
        self.ctl('restore')
        self.assertEqual(self.state('web1'), 'running')

    def test_confirmation_on_a_terminal(self):
        """preserve on every guest asks on a terminal; n touches nothing; --yes asks nothing; the
        progress line names the guest being saved (from PropertiesChanged)."""
        self.define('web1')
        self.define('web2')
        self.start_daemon(env={'GUESTKEEPER_FAULTS': 'web1=slow-save'})
        self.client.wait_state('idle')
        harness.wait_until(lambda: len(self.guests()) == 2, 10, 'guests listed')
        code, out = self.ctl_pty('preserve', answer='n\n')
        self.assertEqual(code, 1, out)
        self.assertIn('Preserve all 2 running guests now? [y/N]', out)
        self.assertIn('not confirmed: no guest touched', out)
        self.assertEqual(self.last_runs(), [])
        self.assertEqual((self.state('web1'), self.state('web2')), ('running', 'running'))

        code, out = self.ctl_pty('preserve', '--yes')
        self.assertEqual(code, 0, out)
        self.assertNotIn('[y/N]', out)
        self.assertIn('saving web1', out)
        self.assertIn('preserve run finished: 2 done, 0 failed', out)
        self.ctl('restore')

        code, out = self.ctl_pty('preserve', answer='y\n')
        self.assertEqual(code, 0, out)
        self.assertEqual(self.state('web2'), 'saved')

    def test_no_block(self):
        self.define('web1')
        self.start_daemon(env={'GUESTKEEPER_FAULTS': 'web1=slow-save'})
        self.client.wait_state('idle')
        r = self.ctl('preserve', '--no-block')
        self.assertIn('preserve run started', r.stdout)
        # The save takes 3 s: the command came back before the run ended.
        self.assertEqual(self.client.get('State'), 'preserving')
        self.assertEqual(self.client.run_finished, [])
        self.client.wait_run_finished('preserve')
        self.assertEqual(json.loads(self.ctl('--json', 'restore', '--no-block').stdout),
                         {'kind': 'restore', 'started': True})
        self.client.wait_run_finished('restore')
        self.assertEqual(self.ctl('status', '--no-block', check=False).returncode, 2)

    def test_exit_statuses(self):
        self.assertEqual(self.ctl('status', check=False).returncode, 4)
        self.assertEqual(self.ctl('frobnicate', check=False).returncode, 2)
        self.assertEqual(self.ctl('list', 'extra', check=False).returncode, 2)
        self.start_daemon()
        self.client.wait_state('idle')
        self.assertEqual(self.ctl('status', check=False).returncode, 0)
        self.assertEqual(self.ctl('cancel', check=False).returncode, 1)


if __name__ == '__main__':
    unittest.main(verbosity=2)
