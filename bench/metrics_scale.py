#!/usr/bin/env python3
"""Driver of bench/metrics-scale: writes the any-SNI config, times /metrics scrapes (gzip
and plain) against a running certinel, and prints the markdown table. Stdlib only."""

import argparse
import gzip
import http.client
import json
import os
import re
import statistics
import sys
import time
import urllib.parse

# The process accounting and the meta/summary commands bench/run uses (this file sits
# beside bench.py).
from bench import add_scrape_command, proc_cpu_seconds, proc_memory_kib, run_driver


def cmd_write_config(args):
    """N endpoints on the any-SNI port, each under its own name (once an hour by default)."""
    with open(args.out, "w") as config:
        config.write(f"# /metrics with {args.targets} targets on one any-SNI port.\n")
        config.write('[scanner]\nconcurrency = 256\ntimeout = "10s"\n\n')
        config.write('[exporter]\nlisten = "127.0.0.1:9798"  # overridden with --listen\n')
        for index in range(args.targets):
            config.write(
                f'\n[[endpoint]]\ntarget = "127.0.0.1:{args.port}"\nsni = "h{index}.bench.test"\n'
                f'ca_file = "{os.path.abspath(args.ca)}"\ninterval = "{args.interval}"\n'
            )


def series(body):
    """The sample lines without their values (expiry values change between scrapes)."""
    return sorted(line.rsplit(" ", 1)[0] for line in body.splitlines()
                  if line and not line.startswith("#"))


def scrape_round(url, pid, count, gzip_wanted):
    timings, body, wire_bytes, encoding = [], b"", 0, None
    cpu_before = proc_cpu_seconds(pid)
    for _ in range(count):
        connection = http.client.HTTPConnection(url.netloc, timeout=120)
        headers = {"Accept-Encoding": "gzip"} if gzip_wanted else {}
        started = time.monotonic()
        connection.request("GET", url.path, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        timings.append(time.monotonic() - started)
        connection.close()
        if response.status != 200:
            sys.exit(f"/metrics answered HTTP {response.status}")
        encoding = response.getheader("Content-Encoding")
        wire_bytes = len(raw)
        body = gzip.decompress(raw) if encoding == "gzip" else raw
    cpu = proc_cpu_seconds(pid) - cpu_before
    return {
        "median_ms": statistics.median(timings) * 1000,
        "min_ms": min(timings) * 1000,
        "max_ms": max(timings) * 1000,
        "cpu_ms_per_scrape": cpu / count * 1000,
        "wire_bytes": wire_bytes,
        "content_encoding": encoding,
        "rss_after_kib": proc_memory_kib(pid)["VmRSS"],
    }, body.decode()


def cmd_scrape(args):
    url = urllib.parse.urlsplit(args.url)
    ready = proc_memory_kib(args.pid)
    gzipped, gzip_body = scrape_round(url, args.pid, args.count, True)
    plain, body = scrape_round(url, args.pid, args.count, False)
    with open(args.body, "w") as saved:
        saved.write(body)
    up = re.findall(r"^certinel_endpoint_up\{[^}]*\} (\S+)$", body, re.MULTILINE)
    with open(args.load_time) as timing:
        wall, user, system, max_kib = timing.read().split()[:4]
    result = {
        "label": args.label,
        "targets": args.expect,
        "scrapes": args.count,
        "load_wall_s": float(wall),
        "load_cpu_s": float(user) + float(system),
        "ready_after_s": args.ready_after,
        "gzip": gzipped,
        "plain": plain,
        "body_bytes": len(body.encode()),
        "samples": sum(1 for line in body.splitlines() if line and not line.startswith("#")),
        "up_ones": sum(1 for value in up if float(value) == 1),
        "same_series_gzip_and_plain": series(gzip_body) == series(body),
        "rss_ready_kib": ready["VmRSS"],
        "peak_rss_kib": proc_memory_kib(args.pid)["VmHWM"],
    }
    with open(args.out, "w") as out:
        json.dump(result, out, indent=2)
    if result["up_ones"] != args.expect:
        sys.exit(f"/metrics has {result['up_ones']} endpoints up, expected {args.expect}")
    if not result["same_series_gzip_and_plain"]:
        sys.exit("the gzip and plain bodies hold different series")


def cmd_summary(args):
    with open(os.path.join(args.results, "meta.json")) as meta_file:
        meta = json.load(meta_file)
    for key, value in meta.items():
        print(f"- {key}: {value}")
    print()
    print("| binary | targets up | config load s | ready after s | scrape ms gzip (median) "
          "| scrape ms plain | CPU ms / scrape gzip | CPU ms / scrape plain | body KiB plain "
          "| body KiB gzip | samples | RSS MiB ready | RSS MiB after the gzip scrapes "
          "| RSS MiB after the plain scrapes too | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label in ("baseline", "certinel"):
        path = os.path.join(args.results, f"{label}.json")
        if not os.path.exists(path):
            continue
        with open(path) as result_file:
            r = json.load(result_file)
        gz, plain = r["gzip"], r["plain"]
        gzip_kib = (f"{gz['wire_bytes'] / 1024:,.0f}" if gz["content_encoding"] == "gzip"
                    else "no gzip")
        print(f"| {label} | {r['up_ones']}/{r['targets']} | {r['load_wall_s']:.2f} "
              f"| {r['ready_after_s']:.1f} | {gz['median_ms']:.1f} | {plain['median_ms']:.1f} "
              f"| {gz['cpu_ms_per_scrape']:.1f} | {plain['cpu_ms_per_scrape']:.1f} "
              f"| {r['body_bytes'] / 1024:,.0f} | {gzip_kib} | {r['samples']:,} "
              f"| {r['rss_ready_kib'] / 1024:.1f} | {gz['rss_after_kib'] / 1024:.1f} "
              f"| {plain['rss_after_kib'] / 1024:.1f} | {r['peak_rss_kib'] / 1024:.1f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(required=True)
    write = commands.add_parser("write-config")
    write.add_argument("--targets", type=int, required=True)
    write.add_argument("--port", type=int, required=True)
    write.add_argument("--ca", required=True)
    write.add_argument("--interval", default="1h")
    write.add_argument("--out", required=True)
    write.set_defaults(run=cmd_write_config)
    scrape = add_scrape_command(commands, cmd_scrape, count=20)
    scrape.add_argument("--label", required=True)
    scrape.add_argument("--ready-after", type=float, required=True)
    scrape.add_argument("--load-time", required=True)
    return run_driver(parser, commands, cmd_summary)


if __name__ == "__main__":
    sys.exit(main())
