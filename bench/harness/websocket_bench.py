"""bench/websocket.sh: WebSockets through revgate and nginx (1 worker each) to the same
`revgate echo` backend, in one run: the memory of N open idle tunnels (the proxy's RSS with
them open minus before, per tunnel), and echo round trips per second over C connections
through each proxy against the backend directly. Client: Debian's python3-websockets.

  bench/websocket.sh [--tunnels 1000] [--connections 10] [--clients 2] [--seconds 5]
                     [--rounds 2] [--revgate PATH]
"""

import argparse
import asyncio
import multiprocessing
import os
import shutil
import sys
import tempfile
import time

import websockets

from . import processes

HOST = "hello.default.example.com"
LOOPBACK = processes.LOOPBACK


def revgate_config(port, admin_port, backend_port):
    return (f"workers: 1\n"
            f"listeners: [{{name: http, address: \"{LOOPBACK}:{port}\"}}]\n"
            f"admin: {{address: \"{LOOPBACK}:{admin_port}\"}}\n"
            f"services:\n"
            f"  - name: hello\n"
            f"    revisions: [{{name: hello-00001, endpoints: [\"{LOOPBACK}:{backend_port}\"]}}]\n")


def nginx_config(port, backend_port, workdir, nofile):
    # nginx's documented WebSocket proxying (proxy_http_version 1.1, Upgrade and Connection
    # passed on), its idle tunnel timeout raised past the run.
    return "\n".join([
        "worker_processes 1;", "daemon off;", "master_process on;",
        f"pid {workdir}/nginx.pid;", f"error_log {workdir}/error.log warn;",
        f"worker_rlimit_nofile {nofile};",
        f"events {{ worker_connections {min(nofile - 64, 65536)}; }}",
        "http {", "  access_log off;",
        f"  client_body_temp_path {workdir}/tmp/body;", f"  proxy_temp_path {workdir}/tmp/proxy;",
        f"  fastcgi_temp_path {workdir}/tmp/fastcgi;", f"  uwsgi_temp_path {workdir}/tmp/uwsgi;",
        f"  scgi_temp_path {workdir}/tmp/scgi;",
        "  map $http_upgrade $connection_upgrade { default upgrade; '' close; }",
        f"  upstream hello {{ server {LOOPBACK}:{backend_port}; }}",
        f"  server {{ listen {LOOPBACK}:{port}; location / {{",
        "    proxy_pass http://hello; proxy_http_version 1.1;",
        "    proxy_set_header Upgrade $http_upgrade;",
        "    proxy_set_header Connection $connection_upgrade;",
        "    proxy_set_header Host $host; proxy_read_timeout 1h; } }",
        "}", ""])


def connect(port):
    return websockets.connect(f"ws://{HOST}:{port}/chat", host=LOOPBACK, port=port,
                              open_timeout=30, close_timeout=5, max_size=None, ping_interval=None)


async def idle_tunnels(port, count, pids):
    """KiB of the proxy's RSS per open tunnel (each has echoed one message, then sits idle)."""
    before = processes.status_kib(pids, "VmRSS")
    sockets = []
    try:
        for _ in range(count):
            ws = await connect(port)
            await ws.send("hello")
            await ws.recv()
            sockets.append(ws)
        await asyncio.sleep(1.0)  # past revgate's 200 ms idle-buffer release, nginx's as is
        after = processes.status_kib(pids, "VmRSS")
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return (after - before) / count


async def round_trips(port, connections, seconds):
    """Echo round trips per second: `connections` clients, each send-then-receive in a loop."""
    message = "x" * 64
    stop = time.monotonic() + seconds
    counts = []

    async def client():
        n = 0
        async with connect(port) as ws:
            while time.monotonic() < stop:
                await ws.send(message)
                await ws.recv()
                n += 1
        counts.append(n)
    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(connections)))
    return sum(counts) / (time.monotonic() - started)


def _round_trips_in_process(args):
    return asyncio.run(round_trips(*args))


def round_trips_parallel(port, connections, seconds, processes_count):
    """round_trips() in `processes_count` client processes at once (one Python process is
    slower than the proxy), `connections` each; their rates summed."""
    if processes_count <= 1:
        return asyncio.run(round_trips(port, connections, seconds))
    with multiprocessing.Pool(processes_count) as pool:
        return sum(pool.map(_round_trips_in_process,
                            [(port, connections, seconds)] * processes_count))


def main(argv):
    parser = argparse.ArgumentParser(prog="bench/websocket.sh")
    parser.add_argument("--tunnels", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--clients", type=int, default=2,
                        help="client processes for the round trips (connections each)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--revgate", default=os.path.join(
        os.path.dirname(__file__), "..", "..", "build", "revgate"))
    args = parser.parse_args(argv)
    nofile = processes.raise_nofile(4 * args.tunnels + 1024)
    if nofile < 2 * args.tunnels + 256:
        print(f"open-files limit {nofile} is too low for {args.tunnels} tunnels", file=sys.stderr)
        return 2
    processes.install_signal_handlers()
    supervisor = processes.Supervisor()
    work = tempfile.mkdtemp(prefix="revgate-ws-bench-")
    try:
        backend_port = processes.free_port()
        echo = supervisor.start([args.revgate, "echo", "--name", "hello-00001", "--listen",
                                 f"{LOOPBACK}:{backend_port}"], "echo",
                                os.path.join(work, "echo.log"))
        processes.wait_for_port(echo, backend_port)
        results = {name: {"kib": [], "rt": [], "cpu": []}
                   for name in ("revgate", "nginx", "direct")}
        for round_index in range(args.rounds):
            for name in ("revgate", "nginx"):
                port = processes.free_port()
                d = os.path.join(work, f"{name}-{round_index}")
                os.makedirs(os.path.join(d, "tmp"))
                if name == "revgate":
                    path = os.path.join(d, "revgate.yaml")
                    with open(path, "w") as f:
                        f.write(revgate_config(port, processes.free_port(), backend_port))
                    child = supervisor.start([args.revgate, "run", "-c", path], name,
                                             os.path.join(d, "log"))
                else:
                    path = os.path.join(d, "nginx.conf")
                    with open(path, "w") as f:
                        f.write(nginx_config(port, backend_port, d, nofile))
                    child = supervisor.start(["nginx", "-p", d, "-c", path, "-e",
                                              os.path.join(d, "error.log")], name,
                                             os.path.join(d, "log"))
                processes.wait_for_port(child, port)
                time.sleep(0.3)
                pids = processes.tree(child.pid)
                results[name]["kib"].append(asyncio.run(idle_tunnels(port, args.tunnels, pids)))
                ticks = processes.cpu_ticks(pids)
                started = time.monotonic()
                rate = round_trips_parallel(port, args.connections, args.seconds, args.clients)
                cpu = (processes.cpu_ticks(pids) - ticks) / os.sysconf("SC_CLK_TCK")
                results[name]["rt"].append(rate)
                # proxy CPU seconds per 10,000 round trips: what it costs, whatever the client
                results[name]["cpu"].append(cpu / (rate * (time.monotonic() - started)) * 1e4)
                supervisor.stop(child)
            results["direct"]["rt"].append(round_trips_parallel(
                backend_port, args.connections, args.seconds, args.clients))
        direct = max(results["direct"]["rt"])
        print(f"WebSockets, {args.rounds} rounds: {args.tunnels} idle tunnels; echo round trips "
              f"over {args.clients} client processes x {args.connections} connections for "
              f"{args.seconds:g} s (64-byte messages)")
        print(f"  direct to the backend: {direct:,.0f} round trips/s (best round)")
        for name in ("revgate", "nginx"):
            kib = min(results[name]["kib"])
            rt = max(results[name]["rt"])
            cpu = min(results[name]["cpu"])
            print(f"  {name:8} {kib:6.1f} KiB per idle tunnel (RSS, best round), "
                  f"{rt:,.0f} round trips/s = {rt / direct:.2f}x direct, "
                  f"{cpu:.3f} proxy CPU s / 10k round trips")
        ratio = min(results["revgate"]["kib"]) / max(min(results["nginx"]["kib"]), 0.01)
        print(f"  revgate/nginx: memory per tunnel {ratio:.2f}x; round trips/s "
              f"{max(results['revgate']['rt']) / max(results['nginx']['rt']):.2f}x; CPU per "
              f"round trip {min(results['revgate']['cpu']) / min(results['nginx']['cpu']):.2f}x")
        return 0
    except processes.Interrupted:
        return 130
    finally:
        supervisor.stop_all()
        shutil.rmtree(work, ignore_errors=True)
