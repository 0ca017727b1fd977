"""Starting and stopping every process of a run, by pid, and reading them from /proc.

Each child starts in its own session (so its process group id is its pid, and a Ctrl-C in the
terminal reaches only the harness); stopping sends SIGTERM to that group, then SIGKILL after a
grace period. The Supervisor knows every child it started; `stop_all()` runs from a `finally`
and from the SIGINT/SIGTERM/SIGHUP handler's unwinding, so nothing is left behind on failure or
Ctrl-C. Nothing is ever killed by name.
"""

import os
import re
import resource
import signal
import socket
import subprocess
import time

LOOPBACK = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
_BLOCK = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class Interrupted(Exception):
    """Raised in the main thread by SIGINT/SIGTERM/SIGHUP."""

    def __init__(self, signum):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


class StartError(Exception):
    pass


# While a child is being started and recorded, a signal is held back (not blocked: a blocked
# mask would be inherited by the child, which then could not be stopped with SIGTERM).
_critical = 0
_pending = None


def _handler(signum, frame):
    global _pending
    if _critical:
        _pending = signum
        return
    raise Interrupted(signum)


def install_signal_handlers():
    for sig in _BLOCK:
        signal.signal(sig, _handler)


def ignore_signals():
    """While cleaning up: a second Ctrl-C must not cut the cleanup short."""
    global _pending
    _pending = None
    for sig in _BLOCK:
        signal.signal(sig, signal.SIG_IGN)


def raise_nofile(wanted):
    """Raises this process's open-files soft limit (children inherit it) towards `wanted`, as far
    as the hard limit allows (root may raise the hard limit too). Returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if wanted > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass
    target = min(max(soft, wanted), hard)
    if target != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def free_port():
    """A port that was free a moment ago (for nginx and HAProxy, which cannot report port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_open(port, host=LOOPBACK):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Child:
    def __init__(self, popen, name, log_path):
        self.popen = popen
        self.pid = popen.pid
        self.name = name
        self.log_path = log_path

    def running(self):
        return self.popen.poll() is None

    def log_tail(self, lines=20):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


class Supervisor:
    """Every process the harness started, until it is stopped."""

    def __init__(self):
        self.children = []

    def start(self, argv, name, log_path, env=None, cwd=None, stdout=None):
        """Starts argv in its own session; stderr (and stdout unless given) go to log_path."""
        global _critical, _pending
        log = open(log_path, "wb")
        _critical += 1           # no gap between the fork and the record of the child
        try:
            try:
                popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=stdout if stdout is not None else log,
                                         stderr=log, env=env, cwd=cwd, start_new_session=True)
            except OSError as e:
                raise StartError(f"cannot start {name} ({argv[0]}): {e.strerror}") from None
            child = Child(popen, name, log_path)
            self.children.append(child)
        finally:
            _critical -= 1
            log.close()
        if _pending is not None and not _critical:
            signum, _pending = _pending, None
            raise Interrupted(signum)
        return child

    def stop(self, child, grace=5.0):
        """SIGTERM to the child's process group, SIGKILL after `grace` seconds, then reap."""
        if child not in self.children:
            return
        group = child.pid
        if child.running():
            _killpg(group, signal.SIGTERM)
            try:
                child.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # whatever is left in the group (nginx workers, a leader that ignored SIGTERM)
        if child.running() or _group_alive(group):
            _killpg(group, signal.SIGKILL)
            try:
                child.popen.wait(5)
            except subprocess.TimeoutExpired:
                pass
            deadline = time.monotonic() + 5
            while _group_alive(group) and time.monotonic() < deadline:
                time.sleep(0.02)
        self.children.remove(child)

    def stop_all(self):
        for child in reversed(list(self.children)):
            try:
                self.stop(child, grace=3.0)
            except Exception:   # keep stopping the others
                pass


def _killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid):
    """True while a live (non-zombie) process is in process group `pgid`."""
    for pid in _pids():
        st = _stat(pid)
        if st and st[2] == pgid and st[0] != "Z":
            return True
    return False


# ------------------------------------------------------------------------------------- /proc

def _pids():
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def _stat(pid):
    """(state, ppid, pgrp, utime, stime) from /proc/PID/stat, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[2]), int(rest[11]), int(rest[12])


def tree(pid):
    """pid and all its descendants (nginx: master and workers)."""
    children = {}
    for p in _pids():
        st = _stat(p)
        if st:
            children.setdefault(st[1], []).append(p)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ticks(pids):
    """utime + stime summed over pids, in clock ticks (CLK_TCK per second)."""
    total = 0
    for p in pids:
        st = _stat(p)
        if st:
            total += st[3] + st[4]
    return total


def cpu_ticks_with_reaped(root, pids):
    """cpu_ticks(pids) plus the CPU of root's children that exited and were reaped (cutime +
    cstime of root): nginx and HAProxy replace their workers on reload, and a worker that is
    gone by the end of a run still counts."""
    total = cpu_ticks(pids)
    try:
        with open(f"/proc/{root}/stat") as f:
            data = f.read()
        rest = data[data.rindex(")") + 2:].split()
        total += int(rest[13]) + int(rest[14])
    except (OSError, ValueError, IndexError):
        pass
    return total


def status_kib(pids, field):
    """A /proc/PID/status field in KiB (VmRSS, VmHWM) summed over pids."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def reset_peak(pids):
    """Resets VmHWM of each pid to its current VmRSS (/proc/PID/clear_refs, Linux 4.0+), so that
    a later VmHWM is the peak since now. False when the kernel refuses."""
    ok = True
    for p in pids:
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


def host_ticks():
    """(busy, total) jiffies of the whole host from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def children_cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wait_for_log(child, pattern, timeout=15.0, poll=0.02):
    """Waits for a line matching `pattern` in the child's log; the match, or StartError."""
    regex = re.compile(pattern, re.M)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(child.log_path, errors="replace") as f:
                m = regex.search(f.read())
            if m:
                return m
        except OSError:
            pass
        if not child.running():
            raise StartError(f"{child.name} exited with {child.popen.returncode} before it was "
                             f"ready; its log ({child.log_path}):\n{child.log_tail()}")
        if time.monotonic() > deadline:
            raise StartError(f"{child.name} not ready within {timeout:g} s; its log "
                             f"({child.log_path}):\n{child.log_tail()}")
        time.sleep(poll)


def wait_for_port(child, port, timeout=15.0, poll=0.02):
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if not child.running():
            raise StartError(f"{child.name} exited with {child.popen.returncode} before it "
                             f"listened on :{port}; its log ({child.log_path}):\n{child.log_tail()}")
        if time.monotonic() > deadline:
            raise StartError(f"{child.name} did not listen on :{port} within {timeout:g} s; its "
                             f"log ({child.log_path}):\n{child.log_tail()}")
        time.sleep(poll)


def read_text(path):
    """The file's text, or "" when it cannot be read (a log that was never written)."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""
