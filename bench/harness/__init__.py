"""revgate's load-benchmark harness behind `bench/run` (README "Benchmark harness").

scenario.py  scenario files -> dataclasses, validated with file:line: key errors
configs.py   revgate, nginx and HAProxy configs for the same split
processes.py start/stop by pid (process groups), free ports, signals, /proc CPU and memory
load.py      wrk with a generated Lua script; the idle-connection client
report.py    report.json, report.md, gnuplot pictures (PNG and SVG)
runner.py    the command line and the rounds
"""
