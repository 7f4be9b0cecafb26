# SPDX-License-Identifier: LGPL-2.1-or-later
"""Test harness for guestkeeperd: a private system bus, dbusmock's logind, a NOTIFY_SOCKET
listener, a private libvirtd (its own mount namespace, docs/testing.md) and the built daemon.

Everything is started per test case and stopped by PID in cleanups, also when a test fails.
Waiting is on conditions (a datagram, a signal, a socket), each with a generous timeout."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

import gi
gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib  # noqa: E402

BUILD_DIR = os.environ.get('GK_BUILD_DIR', os.path.join(os.path.dirname(__file__), '../../build'))
SOURCE_DIR = os.environ.get('GK_SOURCE_DIR', os.path.join(os.path.dirname(__file__), '../..'))
# GK_DAEMON: an installed daemon instead (the package's autopkgtest, debian/tests/).
DAEMON = os.environ.get('GK_DAEMON') or os.path.join(BUILD_DIR, 'daemon', 'guestkeeperd')
PYTHON = '/usr/bin/python3'
# The QEMU capability cache survives between runs: the first probe takes seconds.
LIBVIRT_CACHE = '/var/tmp/guestkeeper-test-libvirt-cache'

# Slow setups (valgrind) stretch every time bound the tests assert: timeouts and latencies.
SCALE = float(os.environ.get('GK_TIME_SCALE', '1'))

BUS_NAME = 'org.guestkeeper1'
OBJ = '/org/guestkeeper1'
IFACE = 'org.guestkeeper1.Manager'


def wait_until(cond, timeout=15.0, what='condition', ctx=None):
    """Iterates the GLib main context (signals arrive) until cond() is true."""
    ctx = ctx or GLib.MainContext.default()
    timeout *= SCALE
    end = time.monotonic() + timeout
    while True:
        while ctx.iteration(False):
            pass
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f'timed out after {timeout} s waiting for {what}')
        time.sleep(0.005)


def iterate(seconds):
    """Lets signals arrive for about @seconds (a poll's pace, not a wait for a condition)."""
    ctx = GLib.MainContext.default()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        while ctx.iteration(False):
            pass
        time.sleep(0.005)


class DatagramListener:
    """A thread reading datagrams from a unix socket bound at @path, each handed to on_datagram().

    close() wakes the thread (shutdown) and waits for it before the socket is closed: a thread
    still in recv() when the fd is closed would, on a restarted syscall, read the socket of a
    later test that got the same fd number and steal its datagrams."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.closing = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                return
            if self.closing:
                return
            self.on_datagram(data)

    def on_datagram(self, data):
        raise NotImplementedError

    def close(self):
        if self.closing:
            return
        self.closing = True
        self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(10)
        self.sock.close()


class NotifyListener(DatagramListener):
    """Receives sd_notify datagrams on a socket whose path goes in NOTIFY_SOCKET."""

    def __init__(self, path):
        self.messages = []  # (monotonic time, dict of the datagram's assignments)
        self.lock = threading.Condition()
        super().__init__(path)

    def on_datagram(self, data):
        fields = {}
        for line in data.decode(errors='replace').split('\n'):
            if '=' in line:
                k, v = line.split('=', 1)
                fields[k] = v
        with self.lock:
            self.messages.append((time.monotonic(), fields))
            self.lock.notify_all()

    def values(self, key):
        with self.lock:
            return [f[key] for _, f in self.messages if key in f]

    def wait_for(self, key, value=None, timeout=15.0):
        timeout *= SCALE
        end = time.monotonic() + timeout
        with self.lock:
            while True:
                for _, f in self.messages:
                    if key in f and (value is None or f[key] == value):
                        return f[key]
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f'no {key}={value or "*"} from sd_notify within {timeout} s; '
                                         f'got {[m for _, m in self.messages]}')
                self.lock.wait(left)


class PrivateBus:
    CONF = '''<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow receive_requested_reply="true"/>
  </policy>
</busconfig>
'''

    def __init__(self, workdir):
        self.socket = os.path.join(workdir, 'system_bus_socket')
        conf = os.path.join(workdir, 'bus.conf')
        with open(conf, 'w') as f:
            f.write(self.CONF.format(path=self.socket))
        out = subprocess.check_output(['dbus-daemon', f'--config-file={conf}', '--fork',
                                       '--print-address=1', '--print-pid=1'], text=True)
        lines = out.split()
        self.address = lines[0]
        self.pid = int(lines[1])
        os.chmod(workdir, 0o755)  # unprivileged callers must reach the socket

    def stop(self):
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


class Logind:
    """dbusmock's logind template on the private bus."""

    def __init__(self, bus, log_path):
        self.bus = bus
        self.log_path = log_path
        self.proc = None
        self.start()

    def start(self):
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address)
        self.proc = subprocess.Popen([PYTHON, '-m', 'dbusmock', '--system', '--template', 'logind',
                                      '-l', self.log_path], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: name_has_owner(self.bus, 'org.freedesktop.login1'), 15, 'the logind mock')

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def emit_prepare_for_shutdown(self, start):
        busctl(self.bus, 'call', 'org.freedesktop.login1', '/org/freedesktop/login1',
               'org.freedesktop.DBus.Mock', 'EmitSignal', 'sssav', 'org.freedesktop.login1.Manager',
               'PrepareForShutdown', 'b', '1', 'b', 'true' if start else 'false')

    def emit_prepare_for_shutdown_with_metadata(self, start, kind):
        """systemd >= 255 also sends PrepareForShutdownWithMetadata(b, a{sv}) with a "type"."""
        conn = Gio.DBusConnection.new_for_address_sync(
            self.bus.address, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
            Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)
        args = [GLib.Variant('b', start), GLib.Variant('a{sv}', {'type': GLib.Variant('s', kind)})]
        conn.call_sync('org.freedesktop.login1', '/org/freedesktop/login1', 'org.freedesktop.DBus.Mock',
                       'EmitSignal', GLib.Variant('(sssav)', ('org.freedesktop.login1.Manager',
                                                              'PrepareForShutdownWithMetadata', 'ba{sv}', args)),
                       None, Gio.DBusCallFlags.NONE, 10000, None)
        conn.close_sync(None)

    def set_preparing(self, value):
        busctl(self.bus, 'call', 'org.freedesktop.login1', '/org/freedesktop/login1',
               'org.freedesktop.DBus.Mock', 'UpdateProperties', 'sa{sv}', 'org.freedesktop.login1.Manager',
               '1', 'PreparingForShutdown', 'b', 'true' if value else 'false')

    def inhibitors(self):
        out = busctl(self.bus, '--json=short', 'call', 'org.freedesktop.login1', '/org/freedesktop/login1',
                     'org.freedesktop.login1.Manager', 'ListInhibitors')
        import json
        return [tuple(i) for i in json.loads(out)['data'][0]]

    def our_inhibitors(self):
        return [i for i in self.inhibitors() if i[1] == 'guestkeeper']


class Polkitd:
    """dbusmock's polkitd template on the private bus: it refuses every action until told
    otherwise (allow()); every CheckAuthorization is in its log."""

    def __init__(self, bus, log_path):
        self.bus = bus
        self.log_path = log_path
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bus.address)
        self.proc = subprocess.Popen([PYTHON, '-m', 'dbusmock', '--system', '--template', 'polkitd',
                                      '-l', log_path], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: name_has_owner(bus, 'org.freedesktop.PolicyKit1'), 15, 'the polkitd mock')

    def mock(self, method, sig, *args):
        return busctl(self.bus, 'call', 'org.freedesktop.PolicyKit1', '/org/freedesktop/PolicyKit1/Authority',
                      'org.freedesktop.DBus.Mock', method, sig, *args)

    def allow(self, *actions):
        self.mock('SetAllowed', 'as', str(len(actions)), *actions)

    def queries(self):
        """(subject's bus name, action, flags) of every CheckAuthorization, in order."""
        import re
        try:
            with open(self.log_path) as f:
                text = f.read()
        except FileNotFoundError:
            return []
        return [(m[1], m[2], int(m[3])) for m in
                re.finditer(r"CheckAuthorization .*?dbus\.String\('(:[\d.]+)'.*?\) \"([^\"]*)\" \{\} (\d+) ", text)]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


# A GDBus client as another user: prints its unique name, then "OK" or the error's name and
# message as sent (busctl rewords well-known error names).
CALL_AS = '''import json
import sys
from gi.repository import Gio, GLib
addr, method, sig, interactive = sys.argv[1:5]
c = Gio.DBusConnection.new_for_address_sync(addr, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
                                            Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)
print(c.get_unique_name(), flush=True)
args = GLib.Variant(sig, tuple(json.loads(a) for a in sys.argv[5:])) if sig else None
flags = Gio.DBusCallFlags.ALLOW_INTERACTIVE_AUTHORIZATION if interactive == '1' else Gio.DBusCallFlags.NONE
try:
    c.call_sync("org.guestkeeper1", "/org/guestkeeper1", "org.guestkeeper1.Manager", method, args, None,
                flags, 30000, None)
    print("OK")
except GLib.Error as e:
    name = Gio.DBusError.get_remote_error(e)
    print(name, e.message.removeprefix(f"GDBus.Error:{name}: "))
    sys.exit(1)
'''


def call_as(bus, uid, method, sig='', *args, interactive=False, wait=True):
    """Calls a Manager method as @uid (gid the same, no supplementary groups). With @wait, the
    finished process (stdout: its unique name, then OK or "ERROR.NAME message"); else the
    running Popen."""
    cmd = ['setpriv', f'--reuid={uid}', f'--regid={uid}', '--clear-groups', PYTHON, '-c', CALL_AS,
           bus.address, method, sig, '1' if interactive else '0', *map(json.dumps, args)]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def run_on_terminal(cmd, env, answer=None, timeout=60):
    """Runs @cmd on a pseudo-terminal (200 columns) that is its controlling terminal, as a
    login's is: returns the exit status and all it wrote there. @answer is typed once it asks a
    question ("[y/N]")."""
    import fcntl
    import pty
    import select
    import struct
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 50, 200, 0, 0))
    p = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                         preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    out, end = b'', time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not data:
                    break
                out += data
                if answer is not None and b'[y/N]' in out:
                    os.write(master, answer.encode())
                    answer = None
            elif p.poll() is not None:
                break
        else:
            p.kill()
            raise AssertionError(f'{" ".join(cmd)} on a terminal did not end: {out!r}')
    finally:
        os.close(master)
    return p.wait(timeout=10), out.decode(errors='replace')


def busctl(bus, *args, user=None, check=True):
    cmd = ['busctl', f'--address={bus.address}', *args]
    if user is not None:
        cmd = ['setpriv', f'--reuid={user}', f'--regid={user}', '--clear-groups', *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise AssertionError(f'{" ".join(cmd)} failed: {r.stderr.strip()}')
    return r.stdout if check else r


def name_has_owner(bus, name):
    # NameHasOwner, not "busctl status": that one also reads the owner's credentials from /proc
    # and /sys, which a chroot (autopkgtest) may not have.
    r = subprocess.run(['busctl', f'--address={bus.address}', 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus',
                        'org.freedesktop.DBus', 'NameHasOwner', 's', name], capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip() == 'b true'


def name_owner_pid(bus, name):
    """The PID of the process that owns @name on @bus, or None."""
    r = subprocess.run(['busctl', f'--address={bus.address}', 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus',
                        'org.freedesktop.DBus', 'GetConnectionUnixProcessID', 's', name],
                       capture_output=True, text=True)
    return int(r.stdout.split()[1]) if r.returncode == 0 else None


class Libvirtd:
    """A private libvirtd: /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and
    /var/log/libvirt bind-mounted from a temp dir in its own mount namespace."""

    def __init__(self, workdir, conf=''):
        """@conf: more libvirtd.conf settings."""
        self.dir = os.path.join(workdir, 'libvirt')
        self.sockdir = os.path.join(self.dir, 'sock')
        for d in ('etc', 'run', 'lib', 'log', 'sock'):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        os.makedirs(LIBVIRT_CACHE, exist_ok=True)
        with open(os.path.join(self.dir, 'etc', 'libvirtd.conf'), 'w') as f:
            f.write(f'unix_sock_dir = "{self.sockdir}"\n'
                    'auth_unix_rw = "none"\nauth_unix_ro = "none"\n'
                    'unix_sock_ro_perms = "0777"\nunix_sock_rw_perms = "0770"\n'
                    'listen_tcp = 0\nlisten_tls = 0\n'
                    f'log_outputs = "3:file:{self.dir}/libvirtd.log"\n' + conf)
        with open(os.path.join(self.dir, 'etc', 'qemu.conf'), 'w') as f:
            f.write('user = "root"\ngroup = "root"\ndynamic_ownership = 0\nremember_owner = 0\n'
                    'security_driver = "none"\ncgroup_controllers = [ ]\nnamespaces = [ ]\n'
                    'stdio_handler = "file"\n')
        self.socket = os.path.join(self.sockdir, 'libvirt-sock')
        self.proc = None
        self.start()

    def uri(self, driver='test', path='/default'):
        return f'{driver}+unix://{path}?socket={self.socket}'

    def start(self):
        notify = NotifyListener(os.path.join(self.dir, f'notify-{time.monotonic_ns()}'))
        binds = [('etc', '/etc/libvirt'), ('run', '/run/libvirt'), ('lib', '/var/lib/libvirt'),
                 (LIBVIRT_CACHE, '/var/cache/libvirt'), ('log', '/var/log/libvirt')]
        script = ''
        for src, dst in binds:
            src = src if src.startswith('/') else os.path.join(self.dir, src)
            script += f'mkdir -p {dst} && mount --bind {src} {dst} && '
        script += (f'exec libvirtd -f {self.dir}/etc/libvirtd.conf -p {self.dir}/libvirtd.pid')
        env = dict(os.environ, NOTIFY_SOCKET=notify.path)
        with open(os.path.join(self.dir, 'stdout.log'), 'ab') as out:
            self.proc = subprocess.Popen(['unshare', '--mount', '--propagation', 'private', '--',
                                          '/bin/sh', '-c', script], env=env, stdout=out,
                                         stderr=subprocess.STDOUT)
        try:
            notify.wait_for('READY', '1', timeout=60)
        except AssertionError:
            self.proc.kill()
            raise AssertionError('libvirtd did not start: ' + self.log_tail())
        finally:
            notify.close()

    def stop(self):
        if self.proc:
            stop_process(self.proc, 20)
        self.proc = None

    def log_tail(self):
        try:
            with open(os.path.join(self.dir, 'libvirtd.log')) as f:
                return ''.join(f.readlines()[-20:])
        except OSError:
            return '(no log)'


class Journal(DatagramListener):
    """journald's native socket, as the daemon sees it when systemd runs it with stderr to the
    journal: the daemon starts in its own mount namespace with a tmpfs on /run and this
    directory on /run/systemd/journal, and JOURNAL_STREAM naming its stderr, so its structured
    entries (sd_journal_sendv) arrive here as datagrams. entries: one dict per entry."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, 'journal')
        os.makedirs(self.dir)
        self.entries = []
        self.lock = threading.Lock()
        super().__init__(os.path.join(self.dir, 'socket'))

    @staticmethod
    def parse(data):
        """The native protocol: KEY=value lines, or KEY, a 64-bit little-endian length and the
        value's bytes (values holding a newline)."""
        fields, i = {}, 0
        while i < len(data):
            nl = data.index(b'\n', i)
            line = data[i:nl]
            if b'=' in line:
                k, v = line.split(b'=', 1)
                i = nl + 1
            else:
                k, n = line, int.from_bytes(data[nl + 1:nl + 9], 'little')
                v = data[nl + 9:nl + 9 + n]
                i = nl + 9 + n + 1
            fields[k.decode()] = v.decode(errors='replace')
        return fields

    def on_datagram(self, data):
        with self.lock:
            self.entries.append(self.parse(data))

    def matching(self, **fields):
        with self.lock:
            return [e for e in self.entries if all(e.get(k) == v for k, v in fields.items())]

    def wrap(self, argv):
        script = ('mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && '
                  'mount --bind "$0" /run/systemd/journal && exec "$@"')
        return ['unshare', '--mount', '--propagation', 'private', '--', '/bin/sh', '-c', script, self.dir, *argv]


class Daemon:
    def __init__(self, workdir, bus, notify, config, env=None, name='guestkeeperd', journal=None):
        self.workdir = workdir
        self.bus = bus
        self.notify = notify
        self.config = config
        self.journal = journal
        self.extra_env = env or {}
        self.log_path = os.path.join(workdir, f'{name}.log')
        self.state_dir = os.path.join(workdir, 'state')
        self.proc = None

    def start(self, wait_ready=True):
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address, NOTIFY_SOCKET=self.notify.path,
                   STATE_DIRECTORY=self.state_dir, RUNTIME_DIRECTORY=os.path.join(self.workdir, 'run'),
                   G_DEBUG='fatal-criticals', GUESTKEEPER_ROOT=os.path.join(self.workdir, 'root'))
        env.pop('LIBVIRT_DEFAULT_URI', None)
        env.update(self.extra_env)
        self.log = open(self.log_path, 'ab')
        # GK_DAEMON_WRAPPER: e.g. valgrind (meson test --setup valgrinddaemon).
        wrapper = os.environ.get('GK_DAEMON_WRAPPER', '').split()
        argv = [*wrapper, DAEMON, '--config', self.config, '--log-level', 'debug']
        if self.journal:
            st = os.fstat(self.log.fileno())
            env['JOURNAL_STREAM'] = f'{st.st_dev}:{st.st_ino}'
            argv = self.journal.wrap(argv)
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        if wait_ready:
            wait_until(lambda: self.proc.poll() is not None or name_has_owner(self.bus, BUS_NAME), 60,
                       'guestkeeperd on the bus')
            if self.proc.poll() is not None:
                raise AssertionError(f'guestkeeperd exited with {self.proc.returncode}: {self.log_text()}')
        return self

    def log_text(self):
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def stop(self):
        if self.proc:
            stop_process(self.proc, 30)
            self.log.close()
            self.check_wrapper_report()
        return self.proc.returncode if self.proc else None

    def check_wrapper_report(self):
        """Under valgrind or the sanitizers, a daemon must report no error (and, when it exited
        by itself, no leak)."""
        text = self.log_text()
        for marker in ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:'):
            if marker in text:
                raise AssertionError(f'{marker} in guestkeeperd: {self.log_path}\n' + text[-4000:])
        if 'valgrind' not in os.environ.get('GK_DAEMON_WRAPPER', ''):
            return
        import re
        m = re.findall(r'ERROR SUMMARY: (\d+) errors', self.log_text())
        if m and int(m[-1]) > 0:
            raise AssertionError(f'valgrind found {m[-1]} errors in guestkeeperd: {self.log_path}\n'
                                 + self.log_text()[-4000:])

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.log.close()
        if self.proc:
            self.check_wrapper_report()


class Client:
    """A GDBus client on the private bus: properties, methods, and recorded signals."""

    def __init__(self, bus):
        self.conn = Gio.DBusConnection.new_for_address_sync(
            bus.address, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
            Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)
        self.changes = []  # (time, property, value)
        self.run_finished = []  # (kind, done, failed)
        self.conn.signal_subscribe(BUS_NAME, 'org.freedesktop.DBus.Properties', 'PropertiesChanged', OBJ,
                                   None, Gio.DBusSignalFlags.NONE, self._on_changed)
        self.conn.signal_subscribe(BUS_NAME, IFACE, 'RunFinished', OBJ, None, Gio.DBusSignalFlags.NONE,
                                   self._on_finished)

    def _on_changed(self, conn, sender, path, iface, signal_name, params):
        _, changed, _ = params.unpack()
        for k, v in changed.items():
            self.changes.append((time.monotonic(), k, v))

    def _on_finished(self, conn, sender, path, iface, signal_name, params):
        self.run_finished.append(params.unpack())

    def get(self, prop):
        v = self.conn.call_sync(BUS_NAME, OBJ, 'org.freedesktop.DBus.Properties', 'Get',
                                GLib.Variant('(ss)', (IFACE, prop)), None, Gio.DBusCallFlags.NONE, int(10000 * SCALE), None)
        return v.unpack()[0]

    def call(self, method):
        return self.conn.call_sync(BUS_NAME, OBJ, IFACE, method, None, None, Gio.DBusCallFlags.NONE,
                                   int(10000 * SCALE), None).unpack()

    def list_guests(self):
        return {row[2]: row for row in self.call('ListGuests')[0]}

    def states_seen(self):
        return [v for _, k, v in self.changes if k == 'State']

    def wait_state(self, state, timeout=20):
        wait_until(lambda: self.get('State') == state, timeout, f'State={state}')

    def wait_run_finished(self, kind, timeout=30, count=1):
        return wait_until(lambda: len([r for r in self.run_finished if r[0] == kind]) >= count and
                          [r for r in self.run_finished if r[0] == kind][count - 1], timeout,
                          f'RunFinished("{kind}")')


def guest_state(conn, name):
    """libvirt's view of a guest: running, saved (a managed-save image), shutoff, or gone
    (a transient guest that stopped or was saved to a file)."""
    import libvirt
    try:
        d = conn.lookupByName(name)
    except libvirt.libvirtError:
        return 'gone'
    if d.isActive():
        return 'running'
    return 'saved' if d.hasManagedSaveImage() else 'shutoff'


def running_test_guests(conn, n):
    """Replaces every guest of a test driver with @n running persistent ones, g0 … g<n-1>."""
    for d in conn.listAllDomains():
        if d.isActive():
            d.destroy()
        if d.isPersistent():
            d.undefine()
    for i in range(n):
        conn.defineXML(test_domain_xml(f'g{i}')).create()


def test_domain_xml(name, memory_mib=128):
    return (f"<domain type='test'><name>{name}</name><memory unit='MiB'>{memory_mib}</memory>"
            "<os><type>hvm</type></os></domain>")


def parse_record(path):
    """The record as {name: {key: value}}, via GLib's key file parser (as the daemon reads it)."""
    kf = GLib.KeyFile()
    kf.load_from_file(path, GLib.KeyFileFlags.NONE)
    out = {}
    for g in kf.get_groups()[0]:
        if g.startswith('Guest '):
            out[kf.get_string(g, 'Name')] = {k: kf.get_string(g, k) for k in kf.get_keys(g)[0]}
    return out


def introspection_interface(xml_text, iface=IFACE):
    """Members of one interface, normalised for comparison."""
    root = ET.fromstring(xml_text)
    node = root if root.tag == 'interface' else root.find(f"interface[@name='{iface}']")
    if node is None:
        raise AssertionError(f'{iface} not in the introspection data')
    out = set()
    for m in node:
        args = tuple((a.get('name'), a.get('type'), a.get('direction', 'in' if m.tag == 'method' else None))
                     for a in m.findall('arg'))
        annotations = tuple(sorted((a.get('name'), a.get('value')) for a in m.findall('annotation')))
        out.add((m.tag, m.get('name'), m.get('type'), m.get('access'), args, annotations))
    return out


class Workdir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix='gk-it-')

    def cleanup(self):
        if os.environ.get('GK_KEEP_TMP'):
            print('kept', self.path)
            return
        shutil.rmtree(self.path, ignore_errors=True)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def stop_process(proc, timeout):
    """SIGTERM, then SIGKILL if @proc has not exited within @timeout s; reaps it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def setup_environment(tc):
    """Per test case: a temp dir, a private bus, dbusmock's logind and a notify socket, all
    stopped in the test's cleanups (also when it fails). Sets tc.wd, tc.bus, tc.logind, tc.notify."""
    tc.wd = Workdir()
    tc.addCleanup(tc.wd.cleanup)
    tc.bus = PrivateBus(tc.wd.path)
    tc.addCleanup(tc.bus.stop)
    tc.logind = Logind(tc.bus, os.path.join(tc.wd.path, 'logind.log'))
    tc.addCleanup(tc.logind.stop)
    tc.notify = NotifyListener(os.path.join(tc.wd.path, 'notify'))
    tc.addCleanup(tc.notify.close)


def thread_stats(pid):
    """{tid: (name, voluntary + involuntary context switches)} of a process's threads alive now:
    every time a thread woke up counts."""
    out = {}
    for tid in os.listdir(f'/proc/{pid}/task'):
        try:
            with open(f'/proc/{pid}/task/{tid}/status') as f:
                st = dict(line.rstrip('\n').split(':\t', 1) for line in f if ':\t' in line)
        except (FileNotFoundError, ProcessLookupError):  # the thread ended between the listing and the read
            continue
        out[int(tid)] = (st['Name'], int(st['voluntary_ctxt_switches']) + int(st['nonvoluntary_ctxt_switches']))
    return out


def assert_never(cond, seconds, what, ctx=None):
    """The bounded wait for something that must NOT happen: iterates the GLib main context
    (signals arrive) for the whole of @seconds and fails as soon as cond() is true."""
    ctx = ctx or GLib.MainContext.default()
    end = time.monotonic() + seconds * SCALE
    while True:
        while ctx.iteration(False):
            pass
        if cond():
            raise AssertionError(f'{what} happened')
        if time.monotonic() > end:
            return
        time.sleep(0.005)


def remote_error(fn, *args):
    """The D-Bus error name @fn raised (a GLib.Error from a Gio call), or None if it did not."""
    try:
        fn(*args)
    except GLib.Error as e:
        return Gio.DBusError.get_remote_error(e)
    return None


def emit_shutdown_signals_like_logind(logind, start, kind='power-off'):
    """What systemd >= 255's logind sends for one shutdown (or its cancellation):
    PrepareForShutdownWithMetadata first, then PrepareForShutdown, back to back. Both
    EmitSignal calls are sent before either reply is awaited, so the mock emits the two
    signals as close together as logind does."""
    conn = Gio.DBusConnection.new_for_address_sync(
        logind.bus.address, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
        Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)
    calls = [('PrepareForShutdownWithMetadata', 'ba{sv}',
              [GLib.Variant('b', start), GLib.Variant('a{sv}', {'type': GLib.Variant('s', kind)})]),
             ('PrepareForShutdown', 'b', [GLib.Variant('b', start)])]
    ctx = GLib.MainContext.new()
    ctx.push_thread_default()
    replies = []
    try:
        for member, sig, args in calls:
            conn.call('org.freedesktop.login1', '/org/freedesktop/login1', 'org.freedesktop.DBus.Mock',
                      'EmitSignal', GLib.Variant('(sssav)', ('org.freedesktop.login1.Manager', member, sig, args)),
                      None, Gio.DBusCallFlags.NONE, 10000, None,
                      lambda c, res, _: replies.append(c.call_finish(res)), None)
        wait_until(lambda: len(replies) == len(calls), 10, 'the mock emitting both signals', ctx=ctx)
    finally:
        ctx.pop_thread_default()
    conn.close_sync(None)


class Systemd:
    """systemd's Manager on the private bus (dbusmock), as the daemon asks it: SystemState,
    and GetUnitFileState/GetUnit + the unit's ActiveState for @units {name: (file, active)}."""

    def __init__(self, bus, state='running', units=None, slow_after=None):
        """@slow_after: GetUnitFileState answers the first @slow_after calls at once, the
        later ones after 5 s."""
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bus.address)
        self.bus = bus
        self.proc = subprocess.Popen([PYTHON, '-m', 'dbusmock', '--system', 'org.freedesktop.systemd1',
                                      '/org/freedesktop/systemd1', 'org.freedesktop.systemd1.Manager'],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: name_has_owner(bus, 'org.freedesktop.systemd1'), 15, 'the systemd mock')
        self.mock('AddProperty', 'ssv', 'org.freedesktop.systemd1.Manager', 'SystemState', 's', state)
        units = units or {}
        files = {u: f for u, (f, _) in units.items()}
        paths = {u: '/org/freedesktop/systemd1/unit/' + ''.join(c if c.isalnum() else f'_{ord(c):02x}' for c in u)
                 for u, (_, a) in units.items() if a is not None}
        slow = ('' if slow_after is None else
                f'self.calls = getattr(self, "calls", 0) + 1\nif self.calls > {slow_after}: time.sleep(5)\n')
        self.mock('AddMethod', 'sssss', 'org.freedesktop.systemd1.Manager', 'GetUnitFileState', 's', 's',
                  slow + f'ret = {files!r}.get(args[0], "disabled")')
        self.mock('AddMethod', 'sssss', 'org.freedesktop.systemd1.Manager', 'GetUnit', 's', 'o',
                  f'p = {paths!r}.get(args[0])\n'
                  'if p is None: raise dbus.exceptions.DBusException("not loaded", '
                  'name="org.freedesktop.systemd1.NoSuchUnit")\n'
                  'ret = dbus.ObjectPath(p)')
        for u, p in paths.items():
            self.mock('AddObject', 'ssa{sv}a(ssss)', p, 'org.freedesktop.systemd1.Unit', '1', 'ActiveState', 's',
                      units[u][1], '0')

    def mock(self, method, sig, *args):
        busctl(self.bus, 'call', 'org.freedesktop.systemd1', '/org/freedesktop/systemd1',
               'org.freedesktop.DBus.Mock', method, sig, *args)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
