"""Scenario files: YAML -> plain dataclasses, validated in one pass.

Every error names the file, the line and the key path, e.g.
    canary.yaml:7: revisions[1].percent: must be an integer from 0 to 100, got 120
and all of a file's errors are reported together (ScenarioError.errors). Unknown keys are errors
(they are typos), with a suggestion when a known key is close. See README "Benchmark harness".
"""

import dataclasses
import difflib
import math
import os
import re

import yaml

KINDS = ("revgate", "nginx", "haproxy")
SPLIT_POLICIES = ("smooth", "random", "hash")
LOAD_BALANCERS = ("ROUND_ROBIN", "LEAST_REQUEST")
MODES = ("throughput", "idle-connections", "reload")
RELOAD_TRIGGERS = ("post", "sighup", "rename")
RELOAD_CHANGES = ("weights", "none")
WINDOW_KINDS = ("steady", "reload", "metrics", "services")
# reload mode: the measured wrk run starts this long before the first window and outlasts the
# last one by RELOAD_TAIL_S (connections opened, the last responses in)
RELOAD_LEAD_S = 0.15
RELOAD_TAIL_S = 0.1
LOAD_MODES = ("keepalive", "close")
MAX_DELAY_MS = 3_600_000
LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h)?\s*$")
UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class ScenarioError(Exception):
    """Every error of one scenario file, one line each."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclasses.dataclass
class Latency:
    kind: str = "none"        # none | fixed | lognormal
    fixed_ms: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0

    def echo_args(self):
        """The `revgate echo` flags for this profile."""
        if self.kind == "fixed" and float(self.fixed_ms).is_integer():
            return ["--delay-ms", str(int(self.fixed_ms))]
        if self.kind == "fixed":  # sub-millisecond resolution: a distribution of zero spread
            return ["--delay-p50-ms", repr(self.fixed_ms), "--delay-p99-ms", repr(self.fixed_ms)]
        if self.kind == "lognormal":
            return ["--delay-p50-ms", repr(self.p50_ms), "--delay-p99-ms", repr(self.p99_ms)]
        return []

    def describe(self):
        if self.kind == "fixed":
            return f"{self.fixed_ms:g} ms"
        if self.kind == "lognormal":
            return f"p50 {self.p50_ms:g} ms, p99 {self.p99_ms:g} ms"
        return "none"


@dataclasses.dataclass
class Instance:
    """One `revgate echo` process of a revision."""
    latency: Latency = dataclasses.field(default_factory=Latency)
    error_rate: float = 0.0
    threads: int = 1


@dataclasses.dataclass
class Revision:
    name: str
    percent: int
    instances: int = 1        # how many echo processes (len(specs))
    threads: int = 1
    latency: Latency = dataclasses.field(default_factory=Latency)
    error_rate: float = 0.0
    specs: list = dataclasses.field(default_factory=list)   # [Instance], one per process

    def describe(self):
        kinds = {(i.latency.describe(), i.error_rate) for i in self.specs}
        if len(kinds) <= 1:
            return (f"{self.instances} x latency {self.latency.describe()}"
                    + (f", errors {self.error_rate * 100:g}%" if self.error_rate else ""))
        return "; ".join(f"latency {i.latency.describe()}"
                         + (f", errors {i.error_rate * 100:g}%" if i.error_rate else "")
                         for i in self.specs)


@dataclasses.dataclass
class HashOn:
    kind: str   # header | cookie
    name: str


@dataclasses.dataclass
class Proxy:
    name: str
    kind: str
    workers: int = 1
    split_policy: str = "smooth"
    hash_on: HashOn = None
    load_balancer: str = "ROUND_ROBIN"
    binary: str = None       # revgate only: another build (say, the previous revision's)
    access_log: str = "off"  # revgate only: off | json | text (to a file in the run's dir)

    def policy(self):
        """A short human description: "smooth", "hash(header X-User), LEAST_REQUEST"."""
        text = self.split_policy
        if self.hash_on:
            text += f"({self.hash_on.kind} {self.hash_on.name})"
        if self.load_balancer != "ROUND_ROBIN":
            text += f", {self.load_balancer}"
        if self.access_log != "off":
            text += f", access log {self.access_log}"
        return text


@dataclasses.dataclass
class Load:
    connections: int = 50
    threads: int = 1
    duration_s: float = 10.0
    warmup_s: float = 2.0
    rounds: int = 3
    timeout_s: float = 5.0
    modes: list = dataclasses.field(default_factory=lambda: ["keepalive"])
    users: int = 0            # population of the sticky key (X-User header / cookie); 0 = none
    request_hosts: int = 0    # many hosts: spread over the first N (0 = all)
    path: str = "/"


@dataclasses.dataclass
class Idle:
    connections: int = 10000


@dataclasses.dataclass
class Reload:
    """mode: reload. One measured wrk run per proxy and interval; its time is cut into windows
    of `window_s` that follow `cycle` (steady, reload, steady, reload, ...)."""
    every_s: list = dataclasses.field(default_factory=lambda: [0.1])   # one run per interval
    trigger: str = "post"       # revgate: post (POST /reload) | sighup | rename (inotify)
    change: str = "weights"     # weights: alternate the split with `weights` | none: same file
    weights: list = None        # the other split, one percent per revision
    window_s: float = 2.0
    cycle: list = dataclasses.field(default_factory=lambda: ["steady", "reload"])

    def windows(self, duration_s):
        """How many whole windows fit in a measured run of duration_s (wrk's whole seconds)."""
        usable = max(1, round(duration_s)) - RELOAD_LEAD_S - RELOAD_TAIL_S
        return int(usable / self.window_s + 1e-9)


def every_label(seconds):
    """100ms, 1s, 1.5s: a reload interval as written in a label."""
    ms = seconds * 1000.0
    if ms < 1000 or not float(seconds).is_integer():
        return f"{ms:g}ms" if ms < 1000 else f"{seconds:g}s"
    return f"{int(seconds)}s"


@dataclasses.dataclass
class Scenario:
    name: str
    path: str
    description: str = ""
    mode: str = "throughput"
    tls: bool = False
    hosts: int = 1
    revisions: list = dataclasses.field(default_factory=list)
    proxies: list = dataclasses.field(default_factory=list)
    load: Load = dataclasses.field(default_factory=Load)
    idle: Idle = dataclasses.field(default_factory=Idle)
    reload: Reload = dataclasses.field(default_factory=Reload)

    def configured_split(self):
        """{revision: percent} of the revisions that get traffic."""
        return {r.name: r.percent for r in self.revisions}

    def host_names(self):
        """The Host of each service when hosts > 1 (many-hosts), else []."""
        if self.hosts <= 1:
            return []
        width = len(str(self.hosts - 1))
        return [f"svc-{i:0{width}d}.bench.test" for i in range(self.hosts)]

    def sticky_keys(self):
        """(headers, cookies): names the load must send a user id in, for hash policies."""
        headers, cookies = [], []
        for p in self.proxies:
            if p.hash_on:
                target = headers if p.hash_on.kind == "header" else cookies
                if p.hash_on.name not in target:
                    target.append(p.hash_on.name)
        return headers, cookies

    def runs(self):
        """(proxy, load mode) pairs in the order of a round."""
        if self.mode == "reload":
            modes = [f"every {every_label(e)}" for e in self.reload.every_s]
        else:
            modes = self.load.modes if self.mode == "throughput" else ["idle"]
        return [(p, m) for p in self.proxies for m in modes]

    def reload_every(self, mode):
        """The reload interval (s) of a run's mode ("every 100ms")."""
        for e in self.reload.every_s:
            if mode == f"every {every_label(e)}":
                return e
        raise ValueError(f"not a reload mode: {mode!r}")

    def alternate(self):
        """The scenario with the other split of `reload.weights` (change: weights), or itself."""
        if self.reload.change != "weights" or not self.reload.weights:
            return self
        revs = [dataclasses.replace(r, percent=w)
                for r, w in zip(self.revisions, self.reload.weights)]
        return dataclasses.replace(self, revisions=revs)


# ------------------------------------------------------------------------------ YAML with lines

class _Map(dict):
    """A mapping that remembers its own line and each key's line."""
    line = 0
    key_lines = None


class _Seq(list):
    line = 0
    item_lines = None


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader, node):
    loader.flatten_mapping(node)
    out = _Map()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            key = str(key)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_seq(loader, node):
    out = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)


# ------------------------------------------------------------------------------------- checking

class _Checker:
    def __init__(self, path):
        self.path = path
        self.file = os.path.basename(path)
        self.errors = []

    def error(self, line, key, message):
        self.errors.append(f"{self.file}:{line}: {key}: {message}")

    # Reads keys out of one mapping; `done()` reports the keys nobody asked for.
    class Node:
        def __init__(self, checker, mapping, key, line):
            self.c = checker
            self.m = mapping
            self.key = key
            self.line = line
            self.seen = set()

        def sub(self, k):
            return f"{self.key}.{k}" if self.key else k

        def line_of(self, k):
            lines = getattr(self.m, "key_lines", None) or {}
            return lines.get(k, self.line)

        def has(self, k):
            return k in self.m

        def raw(self, k, default=None):
            self.seen.add(k)
            return self.m.get(k, default)

        def fail(self, k, message):
            self.c.error(self.line_of(k), self.sub(k), message)

        def string(self, k, default=None, required=False):
            self.seen.add(k)
            if k not in self.m:
                if required:
                    self.c.error(self.line, self.sub(k), "required")
                return default
            v = self.m[k]
            if not isinstance(v, str) or not v:
                self.fail(k, f"must be a non-empty string, got {v!r}")
                return default
            return v

        def integer(self, k, default, lo, hi=None):
            self.seen.add(k)
            if k not in self.m:
                return default
            v = self.m[k]
            if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
                rng = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
                self.fail(k, f"must be an integer {rng}, got {v!r}")
                return default
            return v

        def number(self, k, default, lo, hi):
            self.seen.add(k)
            if k not in self.m:
                return default
            v = self.m[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                self.fail(k, f"must be a number from {lo} to {hi}, got {v!r}")
                return default
            return float(v)

        def boolean(self, k, default):
            self.seen.add(k)
            if k not in self.m:
                return default
            v = self.m[k]
            if not isinstance(v, bool):
                self.fail(k, f"must be true or false, got {v!r}")
                return default
            return v

        def choice(self, k, default, choices):
            self.seen.add(k)
            if k not in self.m:
                return default
            v = self.m[k]
            if v not in choices:
                self.fail(k, f"must be one of {', '.join(choices)}, got {v!r}")
                return default
            return v

        def duration(self, k, default, lo=0.0):
            self.seen.add(k)
            if k not in self.m:
                return default
            seconds = parse_duration(self.m[k])
            if seconds is None or seconds < lo:
                self.fail(k, f"must be a duration like 500ms, 10s or 2m (>= {lo:g} s), "
                             f"got {self.m[k]!r}")
                return default
            return seconds

        def done(self, known):
            for k in self.m:
                if k in known:
                    continue
                hint = difflib.get_close_matches(str(k), list(known), n=1)
                extra = f" (did you mean {hint[0]}?)" if hint else ""
                self.c.error(self.line_of(k), self.sub(k),
                             f"unknown key{extra}; known: {', '.join(sorted(known))}")

    def mapping(self, value, key, line):
        if not isinstance(value, dict):
            self.error(line, key or "(top level)", f"must be a mapping, got {_kind(value)}")
            return None
        return self.Node(self, value, key, getattr(value, "line", line))


def _kind(v):
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return repr(v)


def parse_duration(value):
    """Seconds from 500ms / 10s / 2m / 1h / a bare number of seconds; None when invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    m = DURATION_RE.match(value)
    if not m:
        return None
    return float(m.group(1)) * UNIT_SECONDS[m.group(2)]


def parse_ms(value):
    """Milliseconds from 2ms / 1.5ms / 300us / 1s / a bare number of ms; None when invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    m = DURATION_RE.match(value)
    if not m:
        return None
    unit = m.group(2) or "ms"
    return float(m.group(1)) * UNIT_SECONDS[unit] * 1000.0


# --------------------------------------------------------------------------------------- loading

TOP_KEYS = {"name", "description", "mode", "tls", "hosts", "revisions", "proxies", "load", "idle",
            "reload"}
REVISION_KEYS = {"name", "percent", "instances", "threads", "latency", "errorRate"}
PROXY_KEYS = {"name", "kind", "workers", "splitPolicy", "hashOn", "loadBalancer", "binary",
              "accessLog"}
LOAD_KEYS = {"connections", "threads", "duration", "warmup", "rounds", "timeout", "modes", "users",
             "requestHosts", "path"}
IDLE_KEYS = {"connections"}
RELOAD_KEYS = {"every", "trigger", "change", "weights", "window", "cycle"}
INSTANCE_KEYS = {"latency", "errorRate", "threads"}


def load(path):
    """Reads and validates a scenario file; raises ScenarioError with every error found."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ScenarioError([f"{path}: cannot read: {e.strerror}"]) from None
    return loads(text, path)


def loads(text, path="scenario.yaml"):
    c = _Checker(path)
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{c.file}:{mark.line + 1}" if mark else c.file
        problem = getattr(e, "problem", None) or str(e)
        raise ScenarioError([f"{where}: (yaml): {problem}"]) from None
    top = c.mapping(doc, "", 1)
    if top is None:
        raise ScenarioError(c.errors)

    default_name = os.path.splitext(os.path.basename(path))[0]
    s = Scenario(name=top.string("name", default_name), path=os.path.abspath(path))
    s.description = top.string("description", "")
    s.mode = top.choice("mode", "throughput", MODES)
    s.tls = top.boolean("tls", False)
    s.hosts = top.integer("hosts", 1, 1, 100_000)

    # revisions
    revs = _required_list(c, top, "revisions", "revisions")
    names = set()
    for i, raw in enumerate(revs):
        key = f"revisions[{i}]"
        n = c.mapping(raw, key, _item_line(revs, i, top.line))
        if n is None:
            continue
        name = n.string("name", required=True)
        if name is not None:
            if not LABEL_RE.match(name):
                n.fail("name", f"must be a DNS-1123 label (a-z, 0-9, '-'), got {name!r}")
            elif name in names:
                n.fail("name", f"duplicate revision name {name!r}")
            names.add(name)
        if not n.has("percent"):
            c.error(n.line, f"{key}.percent", "required: the configured share, 0..100")
        r = Revision(name=name or f"rev-{i}", percent=n.integer("percent", 0, 0, 100))
        r.threads = n.integer("threads", 1, 1, 256)
        r.error_rate = n.number("errorRate", 0.0, 0.0, 1.0)
        r.latency = _latency(n, "latency")
        raw_instances = n.raw("instances", 1)
        if isinstance(raw_instances, list):
            # per-instance settings: [{latency: 1ms}, {latency: {p50: 20ms, p99: 80ms}}, ...]
            if not raw_instances or len(raw_instances) > 64:
                n.fail("instances", "must be 1..64, or a list of 1..64 instances")
            for j, raw_inst in enumerate(raw_instances[:64]):
                ikey = f"{key}.instances[{j}]"
                inst = c.mapping(raw_inst if raw_inst is not None else _Map(), ikey,
                                 _item_line(raw_instances, j, n.line))
                if inst is None:
                    continue
                spec = Instance(latency=r.latency, error_rate=r.error_rate, threads=r.threads)
                if inst.has("latency"):
                    spec.latency = _latency(inst, "latency")
                spec.error_rate = inst.number("errorRate", r.error_rate, 0.0, 1.0)
                spec.threads = inst.integer("threads", r.threads, 1, 256)
                inst.done(INSTANCE_KEYS)
                r.specs.append(spec)
        else:
            count = n.integer("instances", 1, 1, 64)
            r.specs = [Instance(latency=r.latency, error_rate=r.error_rate, threads=r.threads)
                       for _ in range(count)]
        r.instances = max(1, len(r.specs))
        n.done(REVISION_KEYS)
        s.revisions.append(r)
    if s.revisions and sum(r.percent for r in s.revisions) != 100:
        c.error(getattr(revs, "line", top.line_of("revisions")), "revisions",
                f"the percents must sum to 100, got {sum(r.percent for r in s.revisions)}")

    # proxies
    proxies = _required_list(c, top, "proxies", "proxies to compare")
    pnames = set()
    for i, raw in enumerate(proxies):
        key = f"proxies[{i}]"
        n = c.mapping(raw, key, _item_line(proxies, i, top.line))
        if n is None:
            continue
        if not n.has("kind"):
            c.error(n.line, f"{key}.kind", f"required: one of {', '.join(KINDS)}")
        p = Proxy(name="", kind=n.choice("kind", "revgate", KINDS))
        p.workers = n.integer("workers", 1, 1, 64)
        p.split_policy = n.choice("splitPolicy", "smooth", SPLIT_POLICIES)
        p.load_balancer = n.choice("loadBalancer", "ROUND_ROBIN", LOAD_BALANCERS)
        hash_raw = n.raw("hashOn")
        if hash_raw is not None:
            p.hash_on = _hash_on(c, n, hash_raw, f"{key}.hashOn")
        if p.split_policy == "hash" and p.hash_on is None and hash_raw is None:
            c.error(n.line, f"{key}.hashOn",
                    "required with splitPolicy: hash: {header: NAME} or {cookie: NAME}")
        if p.split_policy != "hash" and hash_raw is not None:
            n.fail("hashOn", "only with splitPolicy: hash")
        binary = n.string("binary")
        if binary is not None:
            # "${REVGATE_BASELINE}" and the like: a build that is not this checkout's.
            p.binary = os.path.expandvars(binary)
            if p.kind != "revgate":
                n.fail("binary", "only for kind: revgate")
            elif not os.access(p.binary, os.X_OK):
                n.fail("binary", f"{binary!r} ({p.binary}) is not an executable file")
        p.access_log = n.choice("accessLog", "off", ("off", "json", "text"))
        if p.access_log != "off" and p.kind != "revgate":
            n.fail("accessLog", "only for kind: revgate")
        p.name = n.string("name") or _default_proxy_name(p)
        if p.name in pnames:
            n.fail("name", f"duplicate proxy name {p.name!r}: give each proxy its own name")
        pnames.add(p.name)
        n.done(PROXY_KEYS)
        s.proxies.append(p)

    # load
    load_raw = top.raw("load", _Map())
    n = c.mapping(load_raw, "load", top.line_of("load"))
    if n is not None:
        L = s.load
        L.connections = n.integer("connections", L.connections, 1, 100_000)
        L.threads = n.integer("threads", L.threads, 1, 64)
        L.duration_s = n.duration("duration", L.duration_s, lo=0.5)
        L.warmup_s = n.duration("warmup", L.warmup_s)
        L.rounds = n.integer("rounds", L.rounds, 1, 1000)
        L.timeout_s = n.duration("timeout", L.timeout_s, lo=0.1)
        L.path = n.string("path", L.path)
        if not L.path.startswith("/"):
            n.fail("path", f"must start with '/', got {L.path!r}")
        modes = n.raw("modes")
        if modes is not None:
            if (not isinstance(modes, list) or not modes or len(set(map(str, modes))) != len(modes)
                    or any(m not in LOAD_MODES for m in modes)):
                n.fail("modes", f"must be a list of distinct {', '.join(LOAD_MODES)}, got {modes!r}")
            else:
                L.modes = list(modes)
        sticky = any(p.hash_on for p in s.proxies)
        L.users = n.integer("users", 1000 if sticky else 0, 0, 10_000_000)
        if sticky and L.users == 0:
            n.fail("users", "must be > 0 when a proxy uses splitPolicy: hash")
        L.request_hosts = n.integer("requestHosts", 0, 0, 100_000)
        if L.request_hosts > s.hosts:
            n.fail("requestHosts", f"must be at most hosts ({s.hosts}), got {L.request_hosts}")
        if L.threads > L.connections:
            n.fail("threads", f"must not exceed connections ({L.connections}), got {L.threads}")
        n.done(LOAD_KEYS)

    idle_raw = top.raw("idle", _Map())
    n = c.mapping(idle_raw, "idle", top.line_of("idle"))
    if n is not None:
        s.idle.connections = n.integer("connections", s.idle.connections, 1, 1_000_000)
        n.done(IDLE_KEYS)
    if s.mode == "idle-connections" and s.tls:
        top.fail("tls", "idle-connections measures plain HTTP keep-alive connections only")

    reload_raw = top.raw("reload")
    if reload_raw is not None and s.mode != "reload":
        top.fail("reload", f"only with mode: reload (this scenario's mode is {s.mode})")
    elif s.mode == "reload":
        _reload(c, top, s, reload_raw if reload_raw is not None else _Map(),
                load_raw if isinstance(load_raw, dict) else _Map())

    # many hosts: nginx and HAProxy get one weighted upstream per service
    if s.hosts > 1:
        for i, p in enumerate(s.proxies):
            if p.kind != "revgate" and (p.split_policy != "smooth" or p.load_balancer != "ROUND_ROBIN"):
                c.error(_item_line(proxies, i, top.line), f"proxies[{i}]",
                        f"with hosts > 1, {p.kind} supports splitPolicy smooth with "
                        "loadBalancer ROUND_ROBIN only")

    top.done(TOP_KEYS)
    if c.errors:
        raise ScenarioError(c.errors)
    return s


def _required_list(c, top, key, what):
    """The non-empty list at `key`, or [] after reporting why it is missing or wrong."""
    items = top.raw(key)
    if items is None:
        c.error(top.line, key, f"required: a list of {what}")
        return []
    if not isinstance(items, list) or not items:
        got = "an empty list" if items == [] else _kind(items)
        top.fail(key, f"must be a non-empty list, got {got}")
        return []
    return items


def _item_line(seq, i, fallback):
    lines = getattr(seq, "item_lines", None)
    return lines[i] if lines and i < len(lines) else fallback


def _default_proxy_name(p):
    parts = [p.kind]
    if p.split_policy != "smooth":
        parts.append(p.split_policy)
    if p.load_balancer == "LEAST_REQUEST":
        parts.append("lr")
    return "-".join(parts)


def _hash_on(c, parent, raw, key):
    n = c.mapping(raw, key, parent.line_of("hashOn"))
    if n is None:
        return None
    kinds = [k for k in ("header", "cookie") if n.has(k)]
    if len(kinds) != 1:
        c.error(n.line, key, "must have exactly one of header: NAME or cookie: NAME")
        n.done({"header", "cookie"})
        return None
    name = n.string(kinds[0], required=True)
    n.done({"header", "cookie"})
    if name is None:
        return None
    if not TOKEN_RE.match(name):
        n.fail(kinds[0], f"must be a header/cookie name token, got {name!r}")
        return None
    return HashOn(kinds[0], name)


def _latency(n, k):
    """0 | "2ms" | {fixed: 2ms} | {p50: 2ms, p99: 20ms}."""
    if not n.has(k):
        n.seen.add(k)
        return Latency()
    raw = n.raw(k)
    if isinstance(raw, dict):
        sub = n.c.mapping(raw, n.sub(k), n.line_of(k))
        if sub.has("fixed"):
            ms = parse_ms(sub.raw("fixed"))
            sub.done({"fixed"})
            if ms is None or ms > MAX_DELAY_MS:
                sub.fail("fixed", f"must be a latency like 2ms or 500us, got {raw.get('fixed')!r}")
                return Latency()
            return Latency("fixed", fixed_ms=ms) if ms > 0 else Latency()
        p50, p99 = parse_ms(sub.raw("p50")), parse_ms(sub.raw("p99"))
        sub.done({"p50", "p99", "fixed"})
        if not sub.has("p50") or not sub.has("p99"):
            n.c.error(sub.line, n.sub(k), "a distribution needs both p50 and p99 (e.g. "
                                         "{p50: 2ms, p99: 20ms}), or use fixed: 2ms")
            return Latency()
        if p50 is None or p50 <= 0:
            sub.fail("p50", f"must be a latency > 0 like 2ms, got {raw.get('p50')!r}")
            return Latency()
        if p99 is None or p99 < p50 or p99 > MAX_DELAY_MS:
            sub.fail("p99", f"must be a latency >= p50 ({p50:g} ms) and <= 1h, got {raw.get('p99')!r}")
            return Latency()
        return Latency("lognormal", p50_ms=p50, p99_ms=p99)
    ms = parse_ms(raw)
    if ms is None or ms > MAX_DELAY_MS:
        n.fail(k, f"must be a latency like 2ms, or {{p50: 2ms, p99: 20ms}}, got {raw!r}")
        return Latency()
    return Latency("fixed", fixed_ms=ms) if ms > 0 else Latency()


def _reload(c, top, s, raw, load_raw):
    """The `reload:` mapping of mode: reload, and what it needs of the rest of the file."""
    n = c.mapping(raw, "reload", top.line_of("reload"))
    if n is None:
        return
    R = s.reload
    every = n.raw("every")
    if every is not None:
        items = every if isinstance(every, list) else [every]
        seconds = [parse_duration(x) for x in items]
        if (not items or any(x is None or x < 0.01 for x in seconds)
                or len(set(seconds)) != len(seconds)):
            n.fail("every", "must be a duration like 100ms or 1s (>= 10ms), or a list of "
                            f"distinct ones (one run per interval), got {every!r}")
        else:
            R.every_s = seconds
    R.trigger = n.choice("trigger", R.trigger, RELOAD_TRIGGERS)
    R.change = n.choice("change", R.change, RELOAD_CHANGES)
    R.window_s = n.duration("window", R.window_s, lo=0.1)
    cycle = n.raw("cycle")
    if cycle is not None:
        if (not isinstance(cycle, list) or any(k not in WINDOW_KINDS for k in cycle)
                or "steady" not in cycle or len(set(cycle)) < 2):
            n.fail("cycle", f"must be a list of {', '.join(WINDOW_KINDS)} with steady and at "
                            f"least one other kind, got {cycle!r}")
        else:
            R.cycle = list(cycle)
    weights = n.raw("weights")
    if R.change == "weights":
        if weights is None:
            R.weights = _default_weights(s.revisions)
            if R.weights is None and s.revisions:
                c.error(n.line, "reload.weights",
                        "required here: change: weights needs two revisions and a first one with "
                        "traffic to move (or give the other split, e.g. [80, 20])")
        elif (not isinstance(weights, list) or len(weights) != len(s.revisions)
              or any(isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= 100
                     for w in weights) or sum(weights) != 100):
            n.fail("weights", f"must be {len(s.revisions)} integer percents (one per revision, "
                              f"in their order) that sum to 100, got {weights!r}")
        elif [r.percent for r in s.revisions] == list(weights):
            n.fail("weights", "is the revisions' own split: nothing would change (use "
                              "change: none to reload an unchanged file)")
        else:
            R.weights = list(weights)
    elif weights is not None:
        n.fail("weights", "only with change: weights")
    n.done(RELOAD_KEYS)

    if any(e > R.window_s for e in R.every_s):
        n.fail("every", f"must not exceed the window ({R.window_s:g} s): a reload window would "
                        "see no reload")
    need = len(R.cycle)
    if R.windows(s.load.duration_s) < need:
        lines = getattr(load_raw, "key_lines", None) or {}
        c.error(lines.get("duration", top.line_of("load")), "load.duration",
                f"too short for one cycle of {need} windows of {R.window_s:g} s "
                f"({', '.join(R.cycle)}): give at least "
                f"{math.ceil(need * R.window_s + RELOAD_LEAD_S + RELOAD_TAIL_S):g}s")
    if s.load.modes != ["keepalive"]:
        lines = getattr(load_raw, "key_lines", None) or {}
        c.error(lines.get("modes", top.line_of("load")), "load.modes",
                "mode: reload measures keep-alive load only (leave modes out)")


def _default_weights(revisions):
    """90/10 -> 80/20: up to 10 points moved from the first revision to the last."""
    if len(revisions) < 2 or revisions[0].percent == 0:
        return None
    moved = min(10, revisions[0].percent)
    out = [r.percent for r in revisions]
    out[0] -= moved
    out[-1] += moved
    return out
