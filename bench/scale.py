"""Scaling out, measured in one run on this machine:

1. ``compute --full`` rows/s in one process, then on a Dask cluster of 1 and of 2 local
   workers (``local:1``, ``local:2``: the cluster path, one commit; worker start-up and
   imports are not timed, as on a cluster that is already running);
2. the cost of an ``s3://`` lake against a local one for the same synthetic sync and compute
   (the S3 API is moto's server on loopback: it measures the object-store code path and its
   request count, not a real network).

    python bench/scale.py [--symbols 200] [--start 2016-01-01]

Needs the test extra (moto[server]) and the cluster extra (dask[distributed]).
"""

from __future__ import annotations

import argparse
import os
import shutil
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


def _compute(home: Path, env: dict[str, str], cluster: str | None) -> tuple[float, int]:
    from marketlake.pipeline.stages.compute import run_compute
    from marketlake.pipeline.stages.distributed import (
        close_cluster,
        open_cluster,
        run_compute_cluster,
    )

    settings = _settings(home, env)
    client = open_cluster(cluster) if cluster else None  # worker start-up is not timed
    try:
        if client is not None:
            client.run(lambda: __import__("marketlake.kernels"))  # imports, as a warm cluster
        t0 = time.perf_counter()
        if client is None:
            res = run_compute(settings, full=True)
        else:
            res = run_compute_cluster(settings, cluster=cluster, full=True, client=client)
        secs = time.perf_counter() - t0
    finally:
        if client is not None:
            close_cluster(client)
    return secs, res.inserted + res.updated + res.unchanged


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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--start", default="2016-01-01")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ml-scale-"))
    try:
        base = tmp / "base"
        base.mkdir()
        sync_local, rows = _seed(base, {}, args.symbols, args.start)
        print(f"bars: {rows:,} daily bars of {args.symbols} symbols since {args.start}")
        print("\ncompute --full                      seconds     rows/s")
        for label, cluster in (
            ("one process", None),
            ("--cluster local:1", "local:1"),
            ("--cluster local:2", "local:2"),
        ):
            home = tmp / label.replace(" ", "_").replace(":", "")
            shutil.copytree(base, home)
            secs, n = _compute(home, {}, cluster)
            print(f"  {label:<32} {secs:8.2f} {n / secs:10,.0f}")
        print(f"\nlocal vs s3:// lake (moto on loopback, {os.cpu_count()} cores)")
        server, env = _moto()
        try:
            s3home = tmp / "s3"
            s3home.mkdir()
            sync_s3, _ = _seed(s3home, env, args.symbols, args.start)
            comp_local, _ = _compute(tmp / "one_process", {}, None)  # a no-change recompute
            comp_s3_first, n = _compute(s3home, env, None)
            comp_s3, _ = _compute(s3home, env, None)
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
