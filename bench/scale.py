"""Scaling out, measured in one run on this machine:

1. ``compute --full`` rows/s in one process, then on a Dask cluster of 1 and of 2 local
   workers (``local:1``, ``local:2``: the cluster path, one commit; worker start-up and
   imports are not timed, as on a cluster that is already running), in interleaved rounds
   (medians, the spread, and CPU seconds of the driver and the workers together);
2. the cost of an ``s3://`` lake against a local one for the same synthetic sync and compute
   (the S3 API is moto's server on loopback: it measures the object-store code path and its
   request count, not a real network).

    python bench/scale.py [--symbols 200] [--start 2016-01-01] [--rounds 3]

Needs the test extra (moto[server]) and the cluster extra (dask[distributed]).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

NOW = "2026-11-20T18:00:00+00:00"


def _settings(home: Path, env: dict[str, str]):
    from marketlake.pipeline.config import load_settings

    return load_settings(home=home, env={"MARKETLAKE_NOW": NOW, **env})


def _seed(home: Path, env: dict[str, str], symbols: int, start: str) -> tuple[float, int]:
    """Universe + synthetic daily sync; (seconds, rows)."""
    from marketlake.pipeline import universe
    from marketlake.pipeline.stages.ingest import run_sync

    settings = _settings(home, env)
    csv = home / "universe.csv"
    csv.write_text("symbol\n" + "\n".join(f"B{i:04d}" for i in range(symbols)) + "\n")
    universe.import_csv(settings.open_lake(), csv, run_id="bench-u", provider="synthetic")
    t0 = time.perf_counter()
    res = run_sync(settings, timeframes=["1D"], start=start)
    return time.perf_counter() - t0, res.inserted


def _cpu() -> float:
    """CPU seconds of this process (all its threads)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cluster_cpu(client) -> float:
    return sum(client.run(_cpu).values()) if client is not None else 0.0


def _compute(home: Path, env: dict[str, str], cluster: str | None, client=None):
    """One ``compute --full``: (wall seconds, CPU seconds of driver + workers, rows)."""
    from marketlake.pipeline.stages.compute import run_compute
    from marketlake.pipeline.stages.distributed import run_compute_cluster

    settings = _settings(home, env)
    cpu0, wcpu0 = _cpu(), _cluster_cpu(client)
    t0 = time.perf_counter()
    if client is None:
        res = run_compute(settings, full=True)
    else:
        res = run_compute_cluster(settings, cluster=cluster, full=True, client=client)
    secs = time.perf_counter() - t0
    cpu = _cpu() - cpu0 + _cluster_cpu(client) - wcpu0
    return secs, cpu, res.inserted + res.updated + res.unchanged


def _open(cluster: str | None):
    """A started cluster with the kernels imported (start-up is not timed: a running
    cluster), or None for one process."""
    from marketlake.pipeline.stages.distributed import open_cluster

    if cluster is None:
        return None
    client = open_cluster(cluster)
    client.run(lambda: __import__("marketlake.kernels"))
    return client


def _moto() -> tuple[object, dict[str, str]]:
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_ALLOW_HTTP": "true",
        "MARKETLAKE_LAKE_URI": "s3://bench-lake/lake",
    }
    boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench-secret",
    ).create_bucket(Bucket="bench-lake")
    return server, env


def main() -> None:
    from marketlake.pipeline.stages.distributed import close_cluster

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--start", default="2016-01-01")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ml-scale-"))
    try:
        base = tmp / "base"
        base.mkdir()
        sync_local, rows = _seed(base, {}, args.symbols, args.start)
        print(f"bars: {rows:,} daily bars of {args.symbols} symbols since {args.start}")
        configs = (
            ("one process", None),
            ("--cluster local:1", "local:1"),
            ("--cluster local:2", "local:2"),
        )
        clients = {label: _open(cluster) for label, cluster in configs}
        runs: dict[str, list[tuple[float, float, int]]] = {label: [] for label, _ in configs}
        print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        try:
            for r in range(args.rounds):  # interleaved: the machine's load hits all alike
                for label, cluster in configs:
                    home = tmp / f"{label.replace(' ', '_').replace(':', '')}_{r}"
                    shutil.copytree(base, home)
                    runs[label].append(_compute(home, {}, cluster, clients[label]))
                    if r < args.rounds - 1:
                        shutil.rmtree(home)
        finally:
            for client in clients.values():
                if client is not None:
                    close_cluster(client)
        print(f"load average after:  {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(
            f"\ncompute --full, {args.rounds} interleaved rounds"
            "           median s   rows/s (min-max)      ratio   CPU s"
        )
        ref = statistics.median(n / w for w, _, n in runs["one process"])
        for label, _ in configs:
            rates = [n / w for w, _, n in runs[label]]
            med = statistics.median(rates)
            print(
                f"  {label:<40} {statistics.median(w for w, _, _ in runs[label]):8.2f}"
                f" {med:9,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"
                f" {med / ref:8.2f}x {statistics.median(c for _, c, _ in runs[label]):7.2f}"
            )
        print(f"\nlocal vs s3:// lake (moto on loopback, {os.cpu_count()} cores)")
        server, env = _moto()
        try:
            s3home = tmp / "s3"
            s3home.mkdir()
            sync_s3, _ = _seed(s3home, env, args.symbols, args.start)
            last = tmp / f"one_process_{args.rounds - 1}"
            comp_local, _, _ = _compute(last, {}, None)  # a no-change recompute
            comp_s3_first, _, n = _compute(s3home, env, None)
            comp_s3, _, _ = _compute(s3home, env, None)
        finally:
            server.stop()
        print("                                    local        s3     ratio")
        print(
            f"  sync                          {sync_local:8.2f}  {sync_s3:8.2f}  {sync_s3 / sync_local:8.2f}"
        )
        print(f"  compute --full (first)        {'':8}  {comp_s3_first:8.2f}")
        print(
            f"  compute --full (no change)    {comp_local:8.2f}  {comp_s3:8.2f}  {comp_s3 / comp_local:8.2f}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
