#!/usr/bin/env python3
"""Benchmark helpers for certinel (stdlib only): fixture configs, the /probe load driver,
sweep verification, /metrics scrape timing, process accounting and the markdown summary.

Every subcommand talks to loopback only and stops by itself. Results are JSON files under
bench/out/results/, which `summary` turns into markdown.
"""

import argparse
import http.client
import json
import os
import queue
import re
import resource
import socket
import ssl
import statistics
import sys
import threading
import time
import urllib.parse

CLK_TCK = os.sysconf("SC_CLK_TCK")
BENCH_SNI_NAMES = 10  # certinel-10k.toml probes every port under this many SNI names


# ---------------------------------------------------------------- process accounting

def proc_cpu_seconds(pid):
    """utime + stime of a live process, in seconds (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name may contain spaces; the fields we want follow its ')'.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_memory_kib(pid):
    """VmRSS and VmHWM (peak RSS) of a live process, in KiB."""
    memory = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                memory[key] = int(value.split()[0])
    return memory


def own_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------- ports and readiness

def port_is_free(port):
    """Whether nginx could listen on 127.0.0.1:PORT. Like nginx, set SO_REUSEADDR, so that
    connections of an earlier run lingering in TIME_WAIT do not count as busy."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cmd_free_range(args):
    """Print the first base >= --base such that base..base+count-1 are all free."""
    base = args.base
    for _ in range(20):
        busy = [port for port in range(base, base + args.count) if not port_is_free(port)]
        if not busy:
            print(base)
            return 0
        base = busy[-1] + 1
    sys.exit(f"no free range of {args.count} loopback ports from {args.base}")


def cmd_free_port(_args):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        print(probe.getsockname()[1])


def cmd_wait_http(args):
    """Poll URL until it answers 200 (bounded by --timeout); print the seconds it took."""
    url = urllib.parse.urlsplit(args.url)
    started = time.monotonic()
    deadline = started + args.timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection(url.netloc, timeout=2)
            connection.request("GET", url.path or "/")
            if connection.getresponse().status == 200:
                print(f"{time.monotonic() - started:.3f}")
                return 0
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"{args.url} did not answer 200 within {args.timeout}s")


# ---------------------------------------------------------------- fixture configs

def cmd_write_configs(args):
    """From minted.tsv (PORT, 'notAfter=...'), write targets.tsv and the exporter configs."""
    out = os.path.abspath(args.out)
    ca = os.path.join(out, "ca.pem")
    ports = []
    with open(args.minted) as minted, open(os.path.join(out, "targets.tsv"), "w") as targets:
        for line in minted:
            port, end = line.rstrip("\n").split("\t")
            not_after = ssl.cert_time_to_seconds(end.removeprefix("notAfter="))
            targets.write(f"127.0.0.1:{port}\t{not_after}\n")
            ports.append(int(port))

    exporter = (
        '[exporter]\nlisten = "127.0.0.1:9798"  # bench/run overrides it with --listen\n\n'
        f'[exporter.module.bench]\nca_file = "{ca}"\ntimeout = "5s"\n'
    )
    scanner = '[scanner]\nconcurrency = 256\ntimeout = "10s"\n\n'
    with open(os.path.join(out, "certinel-exporter.toml"), "w") as config:
        config.write("# /probe comparison: no scheduled endpoints.\n" + exporter)
    with open(os.path.join(out, "certinel-bench.toml"), "w") as config:
        config.write(f"# Scanner sweep: {len(ports)} nginx ports.\n" + scanner + exporter)
        for port in ports:
            config.write(f'\n[[endpoint]]\ntarget = "127.0.0.1:{port}"\nca_file = "{ca}"\n')
    with open(os.path.join(out, "certinel-10k.toml"), "w") as config:
        # Every port under several SNI names (all covered by the leaf's *.bench.test), so
        # the state holds N * BENCH_SNI_NAMES targets; a long interval keeps the scrapes
        # free of re-probes once the first sweep is done.
        config.write(f"# /metrics with {len(ports) * BENCH_SNI_NAMES} targets.\n")
        config.write(scanner + exporter)
        for port in ports:
            for index in range(BENCH_SNI_NAMES):
                config.write(
                    f'\n[[endpoint]]\ntarget = "127.0.0.1:{port}"\nsni = "s{index}.bench.test"\n'
                    f'ca_file = "{ca}"\ninterval = "1h"\n'
                )
    with open(os.path.join(out, "blackbox.yml"), "w") as config:
        config.write(
            "modules:\n  tls_bench:\n    prober: tcp\n    timeout: 5s\n    tcp:\n"
            f"      tls: true\n      tls_config:\n        ca_file: {ca}\n"
        )


def read_targets(path):
    """targets.tsv as a list of (target, notAfter unix seconds)."""
    with open(path) as targets:
        return [(target, int(end)) for target, end in (line.split() for line in targets)]


# ---------------------------------------------------------------- scanner sweep

def cmd_check_verify(args):
    """Verify `certinel check --output json` against targets.tsv; record time(1) numbers."""
    expected = dict(read_targets(args.targets))
    problems = []
    seen = set()
    lines = 0
    with open(args.json) as rows:
        for line in rows:
            lines += 1
            row = json.loads(line)
            target = row.get("target")
            if target not in expected:
                problems.append(f"unexpected target {target!r}")
                continue
            seen.add(target)
            if row.get("status") != "OK":
                problems.append(f"{target}: status {row.get('status')} ({row.get('reason')})")
            not_after = (row.get("leaf") or {}).get("not_after_unix")
            if not_after != expected[target]:
                problems.append(f"{target}: notAfter {not_after}, minted {expected[target]}")
    missing = sorted(set(expected) - seen)
    problems += [f"{target}: no row" for target in missing]
    if args.exit_code != 0:
        problems.append(f"certinel check exited {args.exit_code}, expected 0 (all OK)")
    if lines != len(expected):
        problems.append(f"{lines} rows for {len(expected)} endpoints")
    wall, user, system, max_rss_kib = open(args.time).read().split()
    result = {
        "endpoints": len(expected),
        "rows": lines,
        "correct": not problems,
        "problems": problems[:20],
        "exit_code": args.exit_code,
        "wall_s": float(wall),
        "cpu_s": float(user) + float(system),
        "max_rss_kib": int(max_rss_kib),
    }
    write_result(args.out, result)
    if problems:
        sys.exit("sweep results are wrong:\n  " + "\n  ".join(problems[:20]))


# ---------------------------------------------------------------- /probe load

class Driver:
    """A fixed pool of threads, each with one keep-alive connection, pulling paths from a
    shared queue. Threads suffice: the work is waiting on sockets, and the driver's own
    CPU use is measured and reported."""

    def __init__(self, netloc, concurrency, headers):
        self.netloc = netloc
        self.concurrency = concurrency
        self.headers = headers

    def run(self, paths, check):
        """GET every path; return (wall seconds, latencies, failures, driver CPU seconds)."""
        work = queue.Queue()
        for path in paths:
            work.put(path)
        latencies, failures = [], []
        lock = threading.Lock()

        def worker():
            connection = http.client.HTTPConnection(self.netloc, timeout=30)
            while True:
                try:
                    path = work.get_nowait()
                except queue.Empty:
                    break
                started = time.monotonic()
                try:
                    connection.request("GET", path, headers=self.headers)
                    response = connection.getresponse()
                    body = response.read().decode("utf-8", "replace")
                    ok = response.status == 200 and check(body)
                    problem = None if ok else f"{path}: HTTP {response.status}: {body[:300]!r}"
                except (OSError, http.client.HTTPException) as error:
                    connection.close()
                    connection = http.client.HTTPConnection(self.netloc, timeout=30)
                    problem = f"{path}: {error!r}"
                elapsed = time.monotonic() - started
                with lock:
                    latencies.append(elapsed)
                    if problem:
                        failures.append(problem)
            connection.close()

        cpu_before = own_cpu_seconds()
        started = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(self.concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.monotonic() - started, latencies, failures, own_cpu_seconds() - cpu_before


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def cmd_probe_load(args):
    """Probe every target through one exporter's /probe, --rounds times, measuring the
    exporter's CPU and memory from /proc and the driver's own CPU."""
    url = urllib.parse.urlsplit(args.url)
    targets = [target for target, _ in read_targets(args.targets)]
    success = re.compile(args.success, re.MULTILINE)
    # Both exporters honour Prometheus' scrape-timeout header; send the same to both.
    driver = Driver(url.netloc, args.concurrency, {"X-Prometheus-Scrape-Timeout-Seconds": "10"})

    def probe_path(target):
        query = urllib.parse.urlencode({"target": target, "module": args.module})
        return f"{url.path.rstrip('/')}/probe?{query}"

    # Ceiling of the driver itself: the same pool against a path that does no work.
    calibration_wall, _, calibration_failures, calibration_cpu = driver.run(
        [args.calibrate_path] * len(targets), lambda _body: True
    )
    # Warm-up (not measured): first connections, lazily built TLS configurations.
    driver.run([probe_path(target) for target in targets[:64]], success.search)

    rounds = []
    for _ in range(args.rounds):
        cpu_before = proc_cpu_seconds(args.pid)
        server_before = proc_cpu_seconds(args.server_pid)
        wall, latencies, failures, driver_cpu = driver.run(
            [probe_path(target) for target in targets], success.search
        )
        cpu = proc_cpu_seconds(args.pid) - cpu_before
        server_cpu = proc_cpu_seconds(args.server_pid) - server_before
        memory = proc_memory_kib(args.pid)
        rounds.append({
            "probes": len(targets),
            "failures": len(failures),
            "failure_examples": failures[:5],
            "wall_s": wall,
            "probes_per_s": len(targets) / wall,
            "exporter_cpu_s": cpu,
            "exporter_cpu_s_per_1000": cpu * 1000 / len(targets),
            "wall_s_per_1000": wall * 1000 / len(targets),
            "latency_p50_ms": percentile(latencies, 0.5) * 1000,
            "latency_p99_ms": percentile(latencies, 0.99) * 1000,
            "rss_kib": memory["VmRSS"],
            "peak_rss_kib": memory["VmHWM"],
            # The TLS server's work per probe: the same for both exporters unless one of
            # them does more handshakes than asked.
            "nginx_cpu_s_per_1000": server_cpu * 1000 / len(targets),
            "driver_cpu_s": driver_cpu,
            "driver_busy_fraction": driver_cpu / wall,
        })
    median = min(rounds, key=lambda r: abs(r["wall_s"] - statistics.median(x["wall_s"] for x in rounds)))
    result = {
        "name": args.name,
        "concurrency": args.concurrency,
        "rounds": rounds,
        "median_round": median,
        "driver_ceiling_per_s": len(targets) / calibration_wall,
        "driver_ceiling_cpu_s": calibration_cpu,
        "calibration_failures": len(calibration_failures),
        "all_succeeded": all(r["failures"] == 0 for r in rounds),
    }
    write_result(args.out, result)
    print(
        f"{args.name}: {median['probes_per_s']:.0f} probes/s, "
        f"{median['exporter_cpu_s_per_1000']:.2f} CPU s per 1000, "
        f"RSS {median['rss_kib'] / 1024:.1f} MiB, failures {median['failures']}; "
        f"driver ceiling {result['driver_ceiling_per_s']:.0f} req/s",
        file=sys.stderr,
    )
    if not result["all_succeeded"]:
        sys.exit(f"{args.name}: some probes failed, e.g. {median['failure_examples'][:2]}")


# ---------------------------------------------------------------- /metrics

def cmd_scrape(args):
    """Time --count sequential /metrics scrapes; count the up series; record RSS."""
    url = urllib.parse.urlsplit(args.url)
    timings, body = [], ""
    # Memory once ready holds the state; after the scrapes it includes rendering buffers.
    ready_memory = proc_memory_kib(args.pid)
    cpu_before = proc_cpu_seconds(args.pid)
    for _ in range(args.count):
        connection = http.client.HTTPConnection(url.netloc, timeout=60)
        started = time.monotonic()
        connection.request("GET", url.path)
        response = connection.getresponse()
        body = response.read().decode()
        timings.append(time.monotonic() - started)
        connection.close()
        if response.status != 200:
            sys.exit(f"/metrics answered HTTP {response.status}")
    cpu = proc_cpu_seconds(args.pid) - cpu_before
    with open(args.body, "w") as saved:
        saved.write(body)
    up = re.findall(r"^certinel_endpoint_up\{[^}]*\} (\S+)$", body, re.MULTILINE)
    memory = proc_memory_kib(args.pid)
    result = {
        "scrapes": args.count,
        "median_ms": statistics.median(timings) * 1000,
        "min_ms": min(timings) * 1000,
        "max_ms": max(timings) * 1000,
        "cpu_s_per_scrape": cpu / args.count,
        "body_bytes": len(body.encode()),
        "samples": sum(1 for line in body.splitlines() if line and not line.startswith("#")),
        "up_series": len(up),
        "up_ones": sum(1 for value in up if float(value) == 1),
        "expected_targets": args.expect,
        "rss_ready_kib": ready_memory["VmRSS"],
        "rss_kib": memory["VmRSS"],
        "peak_rss_kib": memory["VmHWM"],
        "ready_after_s": args.ready_after,
    }
    write_result(args.out, result)
    if result["up_ones"] != args.expect:
        sys.exit(f"/metrics has {result['up_ones']} endpoints up, expected {args.expect}")


# ---------------------------------------------------------------- summary

def write_result(path, result):
    with open(path, "w") as out:
        json.dump(result, out, indent=2)


def load_result(directory, name):
    path = os.path.join(directory, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as result:
        return json.load(result)


def fmt(value, digits=2, pending="pending"):
    if value is None:
        return pending
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def cmd_meta(args):
    """Record KEY=VALUE pairs (machine, versions, ...) for the summary."""
    write_result(args.out, dict(pair.split("=", 1) for pair in args.pairs))


def add_meta_and_summary(commands, summarize):
    """The `meta` and `summary` subcommands every bench driver has; `summary` runs
    `summarize`, the driver's own table."""
    meta = commands.add_parser("meta")
    meta.add_argument("--out", required=True)
    meta.add_argument("pairs", nargs="*", metavar="KEY=VALUE")
    meta.set_defaults(run=cmd_meta)
    summary = commands.add_parser("summary")
    summary.add_argument("--results", required=True)
    summary.set_defaults(run=summarize)


def add_scrape_command(commands, run, count):
    """The `scrape` subcommand of a bench driver: `count` scrapes of --url while --pid's
    CPU is measured, each expected to hold --expect series; the last body goes to --body,
    the result to --out. Returns the parser, for the driver's own options."""
    scrape = commands.add_parser("scrape")
    scrape.add_argument("--url", required=True, help="the /metrics URL")
    scrape.add_argument("--pid", type=int, required=True)
    scrape.add_argument("--count", type=int, default=count)
    scrape.add_argument("--expect", type=int, required=True)
    scrape.add_argument("--body", required=True)
    scrape.add_argument("--out", required=True)
    scrape.set_defaults(run=run)
    return scrape


def run_driver(parser, commands, summarize):
    """Adds `meta` and `summary` (see add_meta_and_summary), parses the command line and
    runs the chosen subcommand; returns its exit status."""
    add_meta_and_summary(commands, summarize)
    args = parser.parse_args()
    return args.run(args)


def cmd_summary(args):
    """Markdown tables from the results directory; missing certinel numbers say pending."""
    results = args.results
    meta = load_result(results, "meta") or {}
    print("## certinel benchmarks\n")
    for key, value in meta.items():
        print(f"- {key}: {value}")
    print()

    sweep = load_result(results, "sweep")
    print("### Scanner sweep (`certinel check --output json`)\n")
    print("| endpoints | wall s | CPU s | max RSS MiB | rows | all OK and notAfter matches |")
    print("|---:|---:|---:|---:|---:|---|")
    if sweep:
        print(
            f"| {sweep['endpoints']} | {sweep['wall_s']:.2f} | {sweep['cpu_s']:.2f} "
            f"| {sweep['max_rss_kib'] / 1024:.1f} | {sweep['rows']} | {sweep['correct']} |"
        )
    else:
        print("| pending | pending | pending | pending | pending | pending |")

    print("\n### `/probe`: certinel vs blackbox_exporter (median round)\n")
    exporters = {name: load_result(results, f"probe-{name}") for name in ("blackbox", "certinel")}
    print("| exporter | probes | concurrency | wall s / 1000 | probes/s | CPU s / 1000 "
          "| p50 ms | p99 ms | RSS MiB | peak RSS MiB | failures | nginx CPU s / 1000 | driver CPU share |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, result in exporters.items():
        if not result:
            print(f"| {name} | pending |" + " pending |" * 11)
            continue
        r = result["median_round"]
        print(
            f"| {name} | {r['probes']} | {result['concurrency']} | {r['wall_s_per_1000']:.2f} "
            f"| {r['probes_per_s']:.0f} | {r['exporter_cpu_s_per_1000']:.2f} "
            f"| {r['latency_p50_ms']:.1f} | {r['latency_p99_ms']:.1f} | {r['rss_kib'] / 1024:.1f} "
            f"| {r['peak_rss_kib'] / 1024:.1f} | {r['failures']} | {r['nginx_cpu_s_per_1000']:.2f} "
            f"| {r['driver_busy_fraction']:.0%} |"
        )
    blackbox, certinel = exporters["blackbox"], exporters["certinel"]
    if blackbox and certinel:
        b, c = blackbox["median_round"], certinel["median_round"]
        print(
            f"\nRatios certinel/blackbox: wall {c['wall_s'] / b['wall_s']:.2f}, "
            f"CPU {c['exporter_cpu_s'] / b['exporter_cpu_s']:.2f}, "
            f"RSS {c['rss_kib'] / b['rss_kib']:.2f}."
        )
    else:
        print("\nRatios certinel/blackbox: pending.")
    for name, result in exporters.items():
        if result:
            print(
                f"Driver ceiling against {name} (no-op path, same pool): "
                f"{result['driver_ceiling_per_s']:.0f} requests/s."
            )

    scrape = load_result(results, "metrics-10k")
    print("\n### `/metrics` with 10,000 targets in state\n")
    print("| targets up | ready after s | median scrape ms | min / max ms | CPU ms / scrape "
          "| body KiB | samples | RSS MiB ready | RSS MiB after scrapes | peak RSS MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    if scrape:
        print(
            f"| {scrape['up_ones']}/{scrape['expected_targets']} | {fmt(scrape['ready_after_s'], 1)} "
            f"| {scrape['median_ms']:.1f} | {scrape['min_ms']:.1f} / {scrape['max_ms']:.1f} "
            f"| {scrape['cpu_s_per_scrape'] * 1000:.1f} | {scrape['body_bytes'] / 1024:.0f} "
            f"| {scrape['samples']} | {scrape['rss_ready_kib'] / 1024:.1f} "
            f"| {scrape['rss_kib'] / 1024:.1f} | {scrape['peak_rss_kib'] / 1024:.1f} |"
        )
    else:
        print("| pending |" + " pending |" * 9)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    free_range = commands.add_parser("free-range")
    free_range.add_argument("--count", type=int, required=True)
    free_range.add_argument("--base", type=int, required=True)
    free_range.set_defaults(run=cmd_free_range)

    commands.add_parser("free-port").set_defaults(run=cmd_free_port)

    wait = commands.add_parser("wait-http")
    wait.add_argument("url")
    wait.add_argument("--timeout", type=float, default=30)
    wait.set_defaults(run=cmd_wait_http)

    configs = commands.add_parser("write-configs")
    configs.add_argument("--out", required=True)
    configs.add_argument("--minted", required=True)
    configs.set_defaults(run=cmd_write_configs)

    verify = commands.add_parser("check-verify")
    verify.add_argument("--targets", required=True)
    verify.add_argument("--json", required=True)
    verify.add_argument("--time", required=True, help="file with: wall user sys maxrss_kib")
    verify.add_argument("--exit-code", type=int, required=True)
    verify.add_argument("--out", required=True)
    verify.set_defaults(run=cmd_check_verify)

    load = commands.add_parser("probe-load")
    load.add_argument("--name", required=True)
    load.add_argument("--url", required=True, help="exporter base URL")
    load.add_argument("--module", required=True)
    load.add_argument("--targets", required=True)
    load.add_argument("--pid", type=int, required=True)
    load.add_argument("--server-pid", type=int, required=True, help="the nginx worker")
    load.add_argument("--concurrency", type=int, default=32)
    load.add_argument("--rounds", type=int, default=3)
    load.add_argument("--success", required=True, help="regex a successful body matches")
    load.add_argument("--calibrate-path", required=True, help="a cheap path of the exporter")
    load.add_argument("--out", required=True)
    load.set_defaults(run=cmd_probe_load)

    scrape = add_scrape_command(commands, cmd_scrape, count=7)
    scrape.add_argument("--ready-after", type=float)

    return run_driver(parser, commands, cmd_summary)


if __name__ == "__main__":
    sys.exit(main())
