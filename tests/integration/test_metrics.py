#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The metrics (guestkeeper-metrics(7)) with real parts: the daemon on a private bus with
libvirt's test driver (test_daemon's set-up), `guestkeeperctl metrics`, Debian's `promtool check
metrics`, the [Metrics] TextfilePath= file, and a real prometheus-node-exporter reading it with
its textfile collector, scraped over HTTP on 127.0.0.1."""

import os
import re
import subprocess
import sys
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import wait_until  # noqa: E402
from test_daemon import Base  # noqa: E402

from gi.repository import Gio, GLib  # noqa: E402

CTL = os.path.join(harness.BUILD_DIR, 'ctl', 'guestkeeperctl')
PROMTOOL = '/usr/bin/promtool'
NODE_EXPORTER = '/usr/bin/prometheus-node-exporter'

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def parse(text):
    """{(name, ((label, value), …)): float} of every sample; a repeated series fails."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith('#'):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise AssertionError(f'not a sample: {line!r}')
        labels = tuple(sorted((k, re.sub(r'\\(.)', lambda e: '\n' if e[1] == 'n' else e[1], v))
                              for k, v in LABEL.findall(m[2] or '')))
        key = (m[1], labels)
        if key in out:
            raise AssertionError(f'series repeated: {line!r}')
        out[key] = float(m[3])
    return out


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def series(samples, name):
    """{labels as a dict, frozen as a sorted tuple: value} of one family."""
    return {labels: v for (n, labels), v in samples.items() if n == name}


def read(path):
    with open(path) as f:
        return f.read()


class MetricsTest(Base):
    def setUp(self):
        super().setUp()
        self.textdir = os.path.join(self.wd.path, 'node-exporter')
        os.mkdir(self.textdir)
        self.textfile = os.path.join(self.textdir, 'guestkeeper.prom')

    def ctl(self, *args, check=True):
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address)
        r = subprocess.run([CTL, *args], capture_output=True, text=True, env=env, timeout=60,
                           stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError(f'guestkeeperctl {" ".join(args)} exited {r.returncode}: {r.stderr}')
        return r

    def promtool_ok(self, text):
        r = subprocess.run([PROMTOOL, 'check', 'metrics'], input=text, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, '', ''), f'promtool on:\n{text}')

    def metrics(self):
        """`guestkeeperctl metrics`, checked by promtool, parsed."""
        r = self.ctl('metrics')
        self.assertEqual(r.stderr, '')
        self.assertTrue(r.stdout.endswith('\n# EOF\n'), r.stdout[-200:])
        self.promtool_ok(r.stdout)
        return r.stdout, parse(r.stdout)

    def textfile_text(self):
        try:
            with open(self.textfile) as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def textfile_inode(self):
        try:
            return os.stat(self.textfile).st_ino
        except FileNotFoundError:
            return None

    def hold_textfile(self):
        """The textfile as it is now, kept open: its inode number cannot be given to a later file
        while it is (after two rewrites, the second temp file could otherwise get the first
        file's number back). Returns a function: whether the path names another file now."""
        f = open(self.textfile)
        self.addCleanup(f.close)
        return lambda: self.textfile_inode() != os.fstat(f.fileno()).st_ino

    def wait_textfile(self, cond, what):
        """The textfile's samples once cond(samples) holds (the file is replaced whole: a read
        never sees half of it)."""
        def check():
            text = self.textfile_text()
            return text.endswith('# EOF\n') and cond(parse(text)) and text
        text = wait_until(check, 20, f'the textfile: {what}')
        self.promtool_ok(text)
        self.assertEqual(os.stat(self.textfile).st_mode & 0o7777, 0o644)
        return parse(text)

    def last_runs(self):
        v = self.client.conn.call_sync(harness.BUS_NAME, harness.OBJ, harness.IFACE, 'LastRuns',
                                       GLib.Variant('(b)', (False,)), None, Gio.DBusCallFlags.NONE,
                                       int(10000 * harness.SCALE), None)
        return {run[1]: run for run in v.unpack()[0]}

    def assert_guests_match_list(self, samples):
        """guestkeeper_guests{state} counts what ListGuests() shows, every state listed."""
        rows = self.guests().values()
        want = {s: sum(1 for r in rows if r[3] == s)
                for s in ('running', 'paused', 'shutoff', 'saved', 'unreachable')}
        got = {dict(labels)['state']: v for labels, v in series(samples, 'guestkeeper_guests').items()}
        self.assertEqual(got, want)

    def assert_run(self, samples, kind, outcomes):
        """The last run of @kind as LastRuns() has it: outcomes per guest, times, steps."""
        run = self.last_runs()[kind]
        _, _, _, _, started, finished, duration, cancelled, total, done, failed, unreachable, guests = run
        got = {dict(labels)['outcome']: v for labels, v in series(samples, 'guestkeeper_last_run_guests').items()
               if dict(labels)['kind'] == kind}
        self.assertEqual({o: n for o, n in got.items() if n}, outcomes)
        self.assertEqual(sum(got.values()), total)
        self.assertEqual(value(samples, 'guestkeeper_last_run_start_timestamp_seconds', kind=kind), started / 1e6)
        self.assertEqual(value(samples, 'guestkeeper_last_run_end_timestamp_seconds', kind=kind), finished / 1e6)
        self.assertEqual(value(samples, 'guestkeeper_last_run_duration_seconds', kind=kind), duration / 1e6)
        self.assertEqual(value(samples, 'guestkeeper_last_run_cancelled', kind=kind), float(cancelled))
        self.assertEqual(value(samples, 'guestkeeper_last_run_unreachable_uris', kind=kind), len(unreachable))
        # One series per guest of the run and step, with the run's durations.
        want = {}
        for uri, _, name, _, _, _, _, steps in guests:
            for step, _, usec, _ in steps:
                want[(('guest', name), ('kind', kind), ('step', step), ('uri', uri))] = \
                    want.get((('guest', name), ('kind', kind), ('step', step), ('uri', uri)), 0) + usec / 1e6
        got = {labels: v for labels, v in series(samples, 'guestkeeper_last_run_step_duration_seconds').items()
               if dict(labels)['kind'] == kind}
        self.assertEqual(set(got), set(want))
        for k in want:
            self.assertAlmostEqual(got[k], want[k], places=6)
        if kind == 'preserve':
            self.assertEqual(value(samples, 'guestkeeper_last_run_saved_bytes', kind='preserve'),
                             sum(g[5] for g in guests if g[5] > 0))
        return run

    def start_node_exporter(self):
        port = harness.free_port()
        log = open(os.path.join(self.wd.path, 'node-exporter.log'), 'wb')
        self.addCleanup(log.close)
        proc = subprocess.Popen([NODE_EXPORTER, f'--web.listen-address=127.0.0.1:{port}',
                                 '--collector.disable-defaults', '--collector.textfile',
                                 f'--collector.textfile.directory={self.textdir}'],
                                stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(harness.stop_process, proc, 10)
        url = f'http://127.0.0.1:{port}/metrics'

        def scrape():
            if proc.poll() is not None:
                raise AssertionError(f'node_exporter exited {proc.returncode}')
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    return r.read().decode()
            except OSError:
                return None
        wait_until(scrape, 20, f'node_exporter answering on {url}')
        return scrape

    def test_runs_textfile_and_node_exporter(self):
        self.define('web1')
        self.define('web2')
        self.define('tmp', persistent=False)  # Save=persistent: shut down
        self.define('off')
        self.conn.lookupByName('off').destroy()
        cfg = self.write_config(f'[Metrics]\nTextfilePath={self.textfile}\n')
        self.start_daemon(cfg)
        self.client.wait_state('idle')
        wait_until(lambda: len(self.guests()) == 4, 10, 'four guests listed')

        text, m = self.metrics()
        self.assertEqual(value(m, 'guestkeeper_build_info', version=self.client.get('Version')), 1)
        self.assertEqual({dict(k)['state']: v for k, v in series(m, 'guestkeeper_state').items()},
                         {'starting': 0, 'idle': 1, 'preserving': 0, 'preserved': 0, 'restoring': 0,
                          'stopping': 0})
        self.assertEqual(value(m, 'guestkeeper_inhibitor_held'), 1)
        self.assertEqual(value(m, 'guestkeeper_maintenance_hold'), 0)
        self.assertEqual(value(m, 'guestkeeper_conflicts'), len(self.client.get('Conflicts')))
        self.assertEqual(value(m, 'guestkeeper_restore_waiting_guests'), 0)
        self.assert_guests_match_list(m)
        self.assertEqual(value(m, 'guestkeeper_guests', state='running'), 3)
        # As Plan() says: the persistent guests are saved, the transient one shut down.
        self.assertEqual({dict(k)['action']: v for k, v in series(m, 'guestkeeper_guests_planned').items()},
                         {'save': 2, 'shutdown': 1, 'poweroff': 0, 'none': 0})
        plan = self.client.call('Plan')[0]
        self.assertEqual(sorted(r[3].split(',')[0] for r in plan), ['save', 'save', 'shutdown'])
        self.assertEqual(series(m, 'guestkeeper_last_run_guests'), {})  # no run yet
        # The units OpenMetrics knows, where the name ends in them.
        self.assertIn('# UNIT guestkeeper_last_run_duration_seconds seconds\n', text)
        self.assertIn('# UNIT guestkeeper_last_run_saved_bytes bytes\n', text)
        self.assertNotIn('# UNIT guestkeeper_guests ', text)

        # The textfile: written at start-up, the same text.
        self.wait_textfile(lambda s: value(s, 'guestkeeper_state', state='idle') == 1, 'idle')
        wait_until(lambda: self.textfile_text() == self.ctl('metrics').stdout, 10, 'the textfile as ctl prints it')
        self.assertEqual([n for n in os.listdir(self.textdir)], ['guestkeeper.prom'])  # no temp file left

        # A rehearsal: rewritten on the state change, and at the run's end.
        replaced = self.hold_textfile()
        self.client.call('PreserveGuests')
        self.wait_textfile(lambda s: value(s, 'guestkeeper_state', state='preserving') == 1, 'preserving')
        self.assertTrue(replaced())  # replaced (temp file + rename), not edited
        self.client.wait_run_finished('preserve')
        s = self.wait_textfile(lambda s: value(s, 'guestkeeper_state', state='preserved') == 1 and
                               series(s, 'guestkeeper_last_run_guests'), 'preserved, with the run')
        self.assertEqual((self.state('web1'), self.state('web2'), self.state('tmp')), ('saved', 'saved', 'gone'))
        self.assert_run(s, 'preserve', {'saved': 2, 'shutdown': 1})
        text, m = self.metrics()
        self.assert_run(m, 'preserve', {'saved': 2, 'shutdown': 1})
        self.assert_guests_match_list(m)
        self.assertEqual(value(m, 'guestkeeper_guests', state='saved'), 2)
        self.assertEqual(value(m, 'guestkeeper_guests', state='running'), 0)
        # A rehearsal keeps the inhibitor.
        self.assertEqual(value(m, 'guestkeeper_inhibitor_held'), 1)

        # The restore: every guest runs again, as libvirt shows.
        self.client.call('RestoreGuests')
        self.client.wait_run_finished('restore')
        self.assertEqual((self.state('web1'), self.state('web2'), self.state('tmp')),
                         ('running', 'running', 'running'))
        s = self.wait_textfile(lambda s: value(s, 'guestkeeper_state', state='idle') == 1 and
                               any(dict(k)['kind'] == 'restore' for k in series(s, 'guestkeeper_last_run_guests')),
                               'idle, with the restore')
        self.assert_run(s, 'restore', {'restored': 3})
        self.assert_run(s, 'preserve', {'saved': 2, 'shutdown': 1})  # the last of each kind
        wait_until(lambda: self.textfile_text() == self.ctl('metrics').stdout, 10, 'the textfile as ctl prints it')
        _, m = self.metrics()
        self.assert_guests_match_list(m)
        self.assertEqual(value(m, 'guestkeeper_guests', state='running'), 3)

        # Nothing changed, nothing written: a reload with the same configuration.
        replaced = self.hold_textfile()
        self.client.call('Reload')
        harness.assert_never(replaced, 1.0, 'the textfile rewritten unchanged')

        # A real node_exporter reads the file with its textfile collector.
        scrape = self.start_node_exporter()
        out = wait_until(lambda: (lambda t: t and 'guestkeeper_last_run_guests' in t and t)(scrape()), 20,
                         'guestkeeper metrics in the scrape')
        n = parse('\n'.join(line for line in out.splitlines() if not line.startswith('#')))
        self.assertEqual(value(n, 'node_textfile_scrape_error'), 0)
        self.assertEqual(value(n, 'guestkeeper_last_run_guests', kind='restore', outcome='restored'), 3)
        self.assertEqual(value(n, 'guestkeeper_last_run_guests', kind='preserve', outcome='saved'), 2)
        self.assertEqual(value(n, 'guestkeeper_state', state='idle'), 1)
        self.assertEqual(value(n, 'guestkeeper_guests', state='running'), 3)
        for (name, labels), v in parse(self.textfile_text()).items():
            self.assertEqual(n[(name, labels)], v, name)
        # A clean exit (valgrind: no leak), the write in flight waited for.
        self.assertEqual(self.daemon.stop(), 0)

    def test_reload_new_path_and_off(self):
        self.define('web1')
        other = os.path.join(self.textdir, 'other.prom')
        cfg = self.write_config(f'[Metrics]\nTextfilePath={self.textfile}\n')
        self.start_daemon(cfg)
        self.client.wait_state('idle')
        self.wait_textfile(lambda s: value(s, 'guestkeeper_state', state='idle') == 1, 'idle')
        # Reload picks up a new path: written at once, whatever changed.
        self.write_config(f'[Metrics]\nTextfilePath={other}\n')
        self.client.call('Reload')
        wait_until(lambda: os.path.exists(other), 10, 'the new textfile')
        self.promtool_ok(read(other))
        # Without the key: no more updates; the files stay.
        self.write_config()
        self.client.call('Reload')
        before = read(other)
        inode = os.stat(other).st_ino
        self.client.call('PreserveGuests')
        self.client.wait_run_finished('preserve')
        self.client.wait_state('preserved')
        harness.assert_never(lambda: os.stat(other).st_ino != inode, 0.5, 'the textfile rewritten when off')
        self.assertEqual(read(other), before)
        self.assertIn(f'Metrics textfile {other}: no longer updated', self.daemon.log_text())
        self.assertEqual(self.daemon.stop(), 0)

    def test_write_error_logged_once(self):
        self.define('web1')
        bad = os.path.join(self.wd.path, 'missing-dir', 'guestkeeper.prom')
        cfg = self.write_config(f'[Metrics]\nTextfilePath={bad}\n')
        self.start_daemon(cfg)
        self.client.wait_state('idle')
        line = f'Cannot write the metrics textfile {bad}: No such file or directory'
        wait_until(lambda: line in self.daemon.log_text(), 10, 'the write error logged')
        # More changes, more failed writes: still said once.
        self.client.call('PreserveGuests')
        self.client.wait_run_finished('preserve')
        self.client.wait_state('preserved')
        self.client.call('RestoreGuests')
        self.client.wait_run_finished('restore')
        self.client.wait_state('idle')
        self.assertEqual(self.daemon.log_text().count(line), 1)
        # The directory appears: the next change is written, and that is said.
        os.mkdir(os.path.dirname(bad))
        self.client.call('PreserveGuests')
        self.client.wait_run_finished('preserve')
        wait_until(lambda: os.path.exists(bad), 10, 'the textfile written at last')
        self.promtool_ok(read(bad))
        wait_until(lambda: f'Metrics textfile {bad} written again' in self.daemon.log_text(), 10, 'said')
        self.assertEqual(self.daemon.stop(), 0)

    def test_bad_path_is_a_config_error(self):
        for value_, what in (('guestkeeper.prom', 'relative'), ('/var/lib/x/guestkeeper.txt', 'not .prom')):
            cfg = self.write_config(f'[Metrics]\nTextfilePath={value_}\n')
            d = harness.Daemon(self.wd.path, self.bus, self.notify, cfg)
            d.start(wait_ready=False)
            self.assertEqual(d.proc.wait(10 * harness.SCALE), 1, what)
            d.log.close()
            self.assertIn(f'{cfg}: [Metrics] TextfilePath: "{value_}" is not an absolute path of a file ending '
                          'in ".prom"', d.log_text())
            os.unlink(d.log_path)

    def test_ctl_metrics_exit_codes(self):
        r = self.ctl('metrics', check=False)  # no daemon
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertEqual(r.stdout, '')
        self.assertIn('guestkeeperd is not running', r.stderr)
        self.assertEqual(self.ctl('metrics', 'extra', check=False).returncode, 2)
        self.assertEqual(self.ctl('--json', 'metrics', check=False).returncode, 2)
        # Escaped label values: a guest name with a quote, a backslash and a new line.
        self.conn.defineXML(harness.test_domain_xml('we"ird\\name')).create()
        self.start_daemon()
        self.client.wait_state('idle')
        self.client.call('PreserveGuests')
        self.client.wait_run_finished('preserve')
        text, m = self.metrics()
        self.assertIn('guest="we\\"ird\\\\name"', text)
        self.assertEqual(value(m, 'guestkeeper_last_run_guests', kind='preserve', outcome='saved'), 1)
        self.assertEqual(self.daemon.stop(), 0)


if __name__ == '__main__':
    unittest.main(verbosity=2)
