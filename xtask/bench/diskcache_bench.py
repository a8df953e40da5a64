"""python-diskcache's column of `cargo xtask bench`.

The same workloads as crates/cache-core/benches/compare.rs, with the same key names, value bytes,
random order (xorshift64, same seed) and output: one JSON line per workload on stdout, progress on
stderr. Keep the two in step.

Usage: diskcache_bench.py --n N --reps R
Child modes (spawned by the parent with this interpreter):
  diskcache_bench.py child-open DIR KEY
  diskcache_bench.py child-rss DIR N
  diskcache_bench.py child-write DIR START COUNT
"""

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import diskcache

COLUMN = "diskcache"
VALUE_BYTES = 100
BLOB_BYTES = 64 * 1024 * 1024
RSS_GETS = 1000
WRITER_PROCESSES = 4
SEED = 0x9E3779B97F4A7C15
MASK64 = (1 << 64) - 1


def key(i):
    return "key-%06d" % i


def miss_key(i):
    """Sorts right after key(i): misses spread through the stored keys, as in compare.rs."""
    return "key-%06d~" % i


def value(i):
    return bytes(ord("a") + (i + j) % 26 for j in range(VALUE_BYTES))


def xorshift64(state):
    """Marsaglia's xorshift64, as in compare.rs: yields the same sequence."""
    while True:
        state ^= (state << 13) & MASK64
        state ^= state >> 7
        state ^= (state << 17) & MASK64
        yield state


def shuffled(n):
    """0..n in the fixed shuffled order (Fisher-Yates over xorshift64), as in compare.rs."""
    generator = xorshift64(SEED)
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = next(generator) % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def random_keys(n, count):
    return [key(i) for i in shuffled(n)[:count]]


def blob():
    # Incompressible bytes; they need not equal the Rust blob's, only its size.
    return random.Random(SEED).randbytes(BLOB_BYTES)


def open_cache(directory):
    # Defaults, as an application would use it. diskcache's sets are durable when they return
    # (SQLite commit); values over 32 KiB are stored as files.
    return diskcache.Cache(directory)


def peak_rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    raise RuntimeError("no VmHWM line in /proc/self/status")


class Results:
    def __init__(self):
        self.samples = {}

    def add(self, workload, ops, seconds, extra=None, extra_max=None):
        print("diskcache: %-12s %-9s %10.4f s" % (workload, COLUMN, seconds), file=sys.stderr)
        entry = self.samples.setdefault(workload, {"ops": ops, "seconds": [], "extra": {}, "max": {}})
        entry["seconds"].append(seconds)
        for name, number in (extra or {}).items():
            entry["extra"].setdefault(name, []).append(number)
        for name, number in (extra_max or {}).items():
            entry["max"].setdefault(name, []).append(number)

    def json_lines(self):
        for workload in sorted(self.samples):
            entry = self.samples[workload]
            extra = {name: statistics.median(v) for name, v in entry["extra"].items()}
            extra.update({name: max(v) for name, v in entry["max"].items()})
            yield json.dumps(
                {
                    "workload": workload,
                    "column": COLUMN,
                    "median_s": statistics.median(entry["seconds"]),
                    "ops": entry["ops"],
                    "reps": len(entry["seconds"]),
                    "extra": dict(sorted(extra.items())),
                },
                separators=(",", ":"),
            )


def run_child(arguments):
    output = subprocess.run(
        [sys.executable, os.path.abspath(__file__)] + arguments,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        check=True,
        text=True,
    ).stdout
    return parse_report(output)


def parse_report(output):
    return {name: float(number) for name, number in (pair.split("=", 1) for pair in output.split())}


def small_values(n, results):
    directory = tempfile.mkdtemp(prefix="diskcache-bench-")
    try:
        open_cache(directory).close()
        cache = open_cache(directory)
        values = [value(i) for i in range(26)]
        keys = [key(i) for i in range(n)]
        started = time.perf_counter()
        for i, k in enumerate(keys):
            cache.set(k, values[i % 26])
        results.add("set_100b", n, time.perf_counter() - started)

        # Closed and opened again: the gets read the file, as in compare.rs.
        cache.close()
        cache = open_cache(directory)
        order = shuffled(n)
        hit_keys = [key(i) for i in order]
        miss_keys = [miss_key(i) for i in order]
        get = cache.get
        started = time.perf_counter()
        hits = 0
        for k in hit_keys:
            if get(k) is not None:
                hits += 1
        elapsed = time.perf_counter() - started
        if hits != n:
            raise RuntimeError("get_hit found %d of %d keys" % (hits, n))
        results.add("get_hit", n, elapsed)

        started = time.perf_counter()
        found = 0
        for k in miss_keys:
            if get(k) is not None:
                found += 1
        elapsed = time.perf_counter() - started
        if found != 0:
            raise RuntimeError("get_miss found %d absent keys" % found)
        results.add("get_miss", n, elapsed)
        cache.close()

        started = time.perf_counter()
        report = run_child(["child-open", directory, key(n // 2)])
        results.add("open_100k", 1, report["open_s"], {"wall_s": time.perf_counter() - started})

        started = time.perf_counter()
        report = run_child(["child-rss", directory, str(n)])
        results.add(
            "rss_cli",
            RSS_GETS,
            report["run_s"],
            {"vmhwm_kib": report["vmhwm_kib"], "wall_s": time.perf_counter() - started},
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def multi_process(n, results):
    directory = tempfile.mkdtemp(prefix="diskcache-bench-")
    try:
        open_cache(directory).close()
        per_process = n // WRITER_PROCESSES
        started = time.perf_counter()
        children = [
            subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "child-write", directory,
                 str(index * per_process), str(per_process)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                text=True,
            )
            for index in range(WRITER_PROCESSES)
        ]
        reports = []
        for child in children:
            output, _ = child.communicate()
            if child.returncode != 0:
                raise RuntimeError("a writer child failed (%d): %s" % (child.returncode, output))
            reports.append(parse_report(output))
        wall = time.perf_counter() - started
        span = max(r["end_unix_s"] for r in reports) - min(r["start_unix_s"] for r in reports)
        cache = open_cache(directory)
        # Count the rows themselves, not diskcache's running count.
        counted = sum(1 for _ in cache.iterkeys())
        cache.close()
        written = per_process * WRITER_PROCESSES
        results.add(
            "multi_4proc",
            written,
            span,
            {"wall_s": wall},
            {"lost": max(0, written - counted), "counted_max": counted},
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def large_value(results):
    directory = tempfile.mkdtemp(prefix="diskcache-bench-")
    try:
        open_cache(directory).close()
        cache = open_cache(directory)
        data = blob()
        started = time.perf_counter()
        cache.set("blob", data)
        set_seconds = time.perf_counter() - started
        started = time.perf_counter()
        read = cache.get("blob")
        get_seconds = time.perf_counter() - started
        if read != data:
            raise RuntimeError("the blob read back differs")
        cache.close()
        results.add(
            "blob_64m",
            1,
            set_seconds + get_seconds,
            {"set_s": set_seconds, "get_s": get_seconds, "bytes": BLOB_BYTES},
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def child_open(directory, probe):
    started = time.perf_counter()
    cache = open_cache(directory)
    found = cache.get(probe) is not None
    open_seconds = time.perf_counter() - started
    if not found:
        raise RuntimeError("child-open: the probe key is missing")
    print("open_s=%r" % open_seconds)
    cache.close()


def child_rss(directory, n):
    keys = random_keys(n, RSS_GETS)
    started = time.perf_counter()
    cache = open_cache(directory)
    for k in keys:
        if cache.get(k) is None:
            raise RuntimeError("child-rss: a key is missing")
    cache.close()
    run_seconds = time.perf_counter() - started
    print("run_s=%r vmhwm_kib=%r" % (run_seconds, peak_rss_kib()))


def child_write(directory, start, count):
    start_unix = time.time()
    cache = open_cache(directory)
    values = [value(i) for i in range(26)]
    for i in range(start, start + count):
        cache.set(key(i), values[i % 26])
    cache.close()
    print("start_unix_s=%r end_unix_s=%r" % (start_unix, time.time()))


def main(arguments):
    if arguments[:1] == ["child-open"] and len(arguments) == 3:
        return child_open(arguments[1], arguments[2])
    if arguments[:1] == ["child-rss"] and len(arguments) == 3:
        return child_rss(arguments[1], int(arguments[2]))
    if arguments[:1] == ["child-write"] and len(arguments) == 4:
        return child_write(arguments[1], int(arguments[2]), int(arguments[3]))
    n, repetitions = 100_000, 5
    words = iter(arguments)
    for word in words:
        if word == "--n":
            n = int(next(words))
        elif word == "--reps":
            repetitions = int(next(words))
        else:
            raise SystemExit("diskcache_bench.py: unknown argument %r" % word)
    print("diskcache: diskcache %s, python %s" % (diskcache.__version__, sys.version.split()[0]),
          file=sys.stderr)
    results = Results()
    for repetition in range(1, repetitions + 1):
        print("diskcache: repetition %d/%d (n = %d)" % (repetition, repetitions, n), file=sys.stderr)
        small_values(n, results)
        multi_process(n, results)
        large_value(results)
    for line in results.json_lines():
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
