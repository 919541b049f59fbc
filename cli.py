"""The ``marketlake`` command line: parse, build settings, call one pipeline function, render.

Exit codes: 0 success, 1 some tasks failed (the others done), 2 usage or configuration error.
Every failure is one line on stderr; ``--debug`` (or ``MARKETLAKE_DEBUG=1``) adds the
traceback. Off a terminal nothing is wrapped: rows and error lines stay whole for pipes.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

app = typer.Typer(
    name="marketlake",
    help="Keep market data in sync: providers -> Delta lake -> indicators -> PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
universe_app = typer.Typer(help="Manage the universe of instruments.", no_args_is_help=True)
app.add_typer(universe_app, name="universe")

_UNWRAPPED = 100_000  # width off a terminal: rows and error lines are never folded
_state = {"debug": False}


def _console(stderr: bool = False) -> Console:
    """A console for this moment's stream: wrapped to the terminal, or full width off it."""
    probe = Console(stderr=stderr, soft_wrap=True)
    if probe.is_terminal:
        return probe
    return Console(stderr=stderr, soft_wrap=True, width=_UNWRAPPED)


def out() -> Console:
    return _console()


def err() -> Console:
    return _console(stderr=True)


Home = Annotated[Path | None, typer.Option("--home", help="Lake root (env MARKETLAKE_HOME).")]
Dsn = Annotated[
    str | None,
    typer.Option("--dsn", help="PostgreSQL DSN (env MARKETLAKE_DSN).", show_default=False),
]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", help="Settings file (default ./marketlake.toml).")
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON object last on stdout.")]
Wait = Annotated[
    bool, typer.Option("--wait", help="If another run is writing the lake, wait for it.")
]


@app.callback()
def main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Print tracebacks (also MARKETLAKE_DEBUG=1).")
    ] = False,
) -> None:
    """Keep market data in sync: providers -> Delta lake -> indicators -> PostgreSQL."""
    _state["debug"] = debug or os.environ.get("MARKETLAKE_DEBUG", "") not in ("", "0")


def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _env_secrets() -> tuple[str, ...]:
    from marketlake.pipeline.config import SECRET_ENV

    return tuple(v for k in SECRET_ENV.values() if (v := os.environ.get(k)))


def _fail(exc: BaseException, secrets: tuple[str, ...]) -> typer.Exit:
    """One line on stderr (the traceback too with --debug) and the exit code."""
    from marketlake.errors import MarketlakeError
    from marketlake.pipeline.redact import redact

    code = exc.exit_code if isinstance(exc, MarketlakeError) else 1
    lines = str(exc).strip().splitlines()
    msg = lines[0] if lines else type(exc).__name__
    if not isinstance(exc, MarketlakeError):
        msg = f"internal error: {type(exc).__name__}: {msg}"
    console = err()
    console.print(Text.assemble(("error: ", "bold red"), redact(msg, secrets)), highlight=False)
    if _state["debug"]:
        console.print_exception()
    return typer.Exit(code)


@contextmanager
def _session(
    home: Path | None, dsn: str | None, config: Path | None, **overrides: Any
) -> Iterator[Any]:
    """Load and validate the settings, then run the command body, inside the one error guard:
    marketlake errors, foreign errors and the panics of polars and delta-rs (``BaseException``
    subclasses) all become one line and an exit code."""
    secrets = _env_secrets()
    try:
        from marketlake.pipeline.config import load_settings

        settings = load_settings(
            home=home, dsn=dsn, config_file=config, env=os.environ, **overrides
        )
        secrets = settings.secrets()
        yield settings
    except (typer.Exit, SystemExit, GeneratorExit):
        raise
    except KeyboardInterrupt:
        err().print("interrupted")
        raise typer.Exit(130) from None
    except BaseException as exc:  # the one place every failure becomes an exit code
        raise _fail(exc, secrets) from None


class _Steps:
    """Progress of a command whose stages report one after another: each stage's ``start``
    opens a counter of its own (so no counter ever runs past its total); ``table_*`` events
    (the load stage) count tables."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.steps = 0
        self.kind = ""
        self.done = 0
        self.total: int | None = None

    def name(self) -> str:
        return self.label if self.steps <= 1 else f"{self.label} [{self.steps}]"

    def begin(self, kind: str, total: int | None) -> None:
        self.steps += 1
        self.kind, self.done, self.total = kind, 0, total

    def advance(self, n: int) -> None:
        self.done += n
        if self.total is not None:
            self.done = min(self.done, self.total)


@contextmanager
def _progress(label: str, enabled: bool) -> Iterator[Callable[..., None]]:
    """A rich progress bar per step on a terminal, plain lines otherwise, nothing with --json."""
    if not enabled:
        yield lambda *a, **k: None
        return
    steps = _Steps(label)
    console = err()
    if console.is_terminal:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        state = {"rows": 0, "errors": 0, "task": None}
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        ) as bar:

            def open_step(kind: str, total: int | None) -> None:
                steps.begin(kind, total)
                state.update(rows=0, errors=0)
                state["task"] = bar.add_task(steps.name(), total=total, info="")

            def cb(event: str, **info: Any) -> None:
                if event == "start":
                    open_step("tasks", info.get("total"))
                elif event == "table_start" and steps.kind != "tables":
                    open_step("tables", None)
                elif event == "table_done":
                    steps.advance(1)
                    bar.update(state["task"], completed=steps.done, info=str(info.get("table", "")))
                elif event == "advance" and state["task"] is not None:
                    steps.advance(int(info.get("advance", 1) or 1))
                    state["rows"] += info.get("rows", 0) or 0
                    state["errors"] += 1 if info.get("error") else 0
                    bar.update(
                        state["task"],
                        completed=steps.done,
                        info=f"{state['rows']:,} rows, {state['errors']} errors",
                    )

            yield cb
        return
    marks = {"next": 0}

    def plain(event: str, **info: Any) -> None:
        if event == "start":
            steps.begin("tasks", info.get("total") or 0)
            marks["next"] = 0
            console.print(f"{steps.name()}: {steps.total} tasks", highlight=False, markup=False)
        elif event == "table_start" and steps.kind != "tables":
            steps.begin("tables", None)
        elif event == "table_done":
            steps.advance(1)
            console.print(
                f"{steps.name()}: {info.get('table')} {info.get('status', '')}".rstrip(),
                highlight=False,
                markup=False,
            )
        elif event == "advance":
            steps.advance(int(info.get("advance", 1) or 1))
            if steps.done >= marks["next"] or info.get("error"):
                console.print(
                    f"{steps.name()}: {steps.done}/{steps.total}"
                    + (f" - {info.get('symbol')}: {info['error']}" if info.get("error") else ""),
                    highlight=False,
                    markup=False,
                )
                marks["next"] = steps.done + max(1, (steps.total or 0) // 10)

    yield plain


def _emit(result, as_json: bool) -> None:
    """Render a StageResult and exit with its code."""
    data = result.to_json()
    if as_json:
        print(json.dumps(data, default=str))
    else:
        t = Table(title=f"{data['stage']} {data['run_id']}: {data['status']}")
        for col in (
            "tasks ok",
            "failed",
            "skipped",
            "inserted",
            "updated",
            "unchanged",
            "quarantined",
            "seconds",
        ):
            t.add_column(col, justify="right")
        t.add_row(
            *map(
                str,
                (
                    data["tasks"]["ok"],
                    data["tasks"]["failed"],
                    data["tasks"]["skipped"],
                    data["rows"]["inserted"],
                    data["rows"]["updated"],
                    data["rows"]["unchanged"],
                    data["rows"]["quarantined"],
                    data["duration_seconds"],
                ),
            )
        )
        out().print(t)
        for e in data["errors"][:20]:
            err().print(Text.assemble(("  x ", "red"), e), highlight=False)
    raise typer.Exit(0 if data["status"] == "ok" else 1)


def _print_frame(frame, fmt: str, dest: Path | None) -> None:
    """Write a polars frame as table / csv / json / parquet."""
    from marketlake.errors import ConfigError
    from marketlake.lake.atomic import atomic_write

    if fmt == "parquet":
        if dest is None:
            raise ConfigError("--format parquet needs --out FILE")
        atomic_write(dest, lambda p: frame.write_parquet(p))
        err().print(f"wrote {frame.height} rows to {dest}")
        return
    if fmt == "csv":
        text = frame.write_csv()
    elif fmt == "json":
        text = json.dumps(frame.to_dicts(), default=str)
    elif fmt == "table":
        t = Table(show_lines=False)
        for c in frame.columns:
            t.add_column(c)
        for row in frame.head(200).iter_rows():
            t.add_row(*["" if v is None else str(v) for v in row])
        if dest is None:
            out().print(t)
            if frame.height > 200:
                err().print(f"... {frame.height - 200} more rows (use --format csv)")
            return
        text = frame.write_csv()
    else:
        raise ConfigError(f"--format: unknown format {fmt!r}: table, csv, json or parquet")
    if dest is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        atomic_write(dest, lambda p: p.write_text(text))
        err().print(f"wrote {frame.height} rows to {dest}")


# ---------------------------------------------------------------------------- commands


@app.command()
def demo(
    home: Home = None,
    dsn: Dsn = None,
    config: ConfigFile = None,
    symbols: Annotated[int, typer.Option(help="Number of synthetic equities.")] = 40,
    json_out: JsonOut = False,
    wait: Wait = False,
) -> None:
    """Run the whole pipeline offline on a synthetic market and show where everything is."""
    with _session(home, dsn, config, lock_wait=wait) as settings:
        from marketlake.pipeline.orchestration import run_demo

        with _progress("demo", not json_out) as cb:
            report = run_demo(settings, equities=symbols, progress=cb)
        if json_out:
            report["sample"] = report["sample"].to_dicts()
            print(json.dumps(report, default=str))
            raise typer.Exit(0 if report["status"] == "ok" else 1)
        out().print(f"\n[bold]Lake:[/] {report['lake']}")
        for step in report["steps"]:
            out().print(
                f"  {step['stage']:<9} {step['status']:<8} "
                f"inserted={step['rows']['inserted']:,} updated={step['rows']['updated']:,}"
                f" unchanged={step['rows']['unchanged']:,} "
                f"({step['duration_seconds']:.1f}s)",
                highlight=False,
            )
        _status_table(report["status_rows"])
        out().print(f"\n[bold]Sample query:[/] {report['sample_sql']}")
        _print_frame(report["sample"], "table", None)
        out().print('\nTry: marketlake query "SELECT timeframe, count(*) FROM ohlcv GROUP BY 1"')
        raise typer.Exit(0 if report["status"] == "ok" else 1)


@universe_app.command("import")
def universe_import(
    file: Annotated[Path, typer.Argument(help="CSV with a symbol/ticker column.")],
    asset_type: Annotated[str | None, typer.Option(help="Asset type for every row.")] = None,
    provider: Annotated[str | None, typer.Option(help="Default provider for every row.")] = None,
    home: Home = None,
    config: ConfigFile = None,
    json_out: JsonOut = False,
    wait: Wait = False,
) -> None:
    """Import instruments from a CSV (e.g. a Russell 2000 list)."""
    with _session(home, None, config, lock_wait=wait) as settings:
        from marketlake.pipeline.commands import import_universe

        res, problems = import_universe(settings, file, asset_type=asset_type, provider=provider)
        for p in problems:
            err().print(Text.assemble(("skipped: ", "yellow"), p), highlight=False)
        if json_out:
            print(
                json.dumps(
                    {
                        "inserted": res.inserted,
                        "updated": res.updated,
                        "unchanged": res.unchanged,
                        "problems": problems,
                    }
                )
            )
        else:
            out().print(
                f"instruments: {res.inserted} added, {res.updated} updated, "
                f"{res.unchanged} unchanged"
            )


@universe_app.command("add")
def universe_add(
    symbol: Annotated[str, typer.Argument(help="Canonical symbol, e.g. BRK.B or BTC/IDR.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    asset_type: Annotated[
        str, typer.Option(help="equity, etf, index, crypto, fx, future, option.")
    ] = "equity",
    exchange: Annotated[str | None, typer.Option(help="Exchange code.")] = None,
    etf: Annotated[bool, typer.Option("--etf", help="Mark as ETF.")] = False,
    provider: Annotated[str | None, typer.Option(help="Default provider.")] = None,
    timezone: Annotated[str | None, typer.Option(help="Exchange timezone.")] = None,
    currency: Annotated[str | None, typer.Option(help="Trading currency.")] = None,
    home: Home = None,
    config: ConfigFile = None,
    wait: Wait = False,
) -> None:
    """Add (or update) one instrument."""
    with _session(home, None, config, lock_wait=wait) as settings:
        from marketlake.pipeline.commands import add_instrument

        res = add_instrument(
            settings,
            symbol,
            name=name,
            asset_type=asset_type,
            exchange=exchange,
            is_etf=str(etf),
            provider=provider,
            timezone=timezone,
            currency=currency,
        )
        out().print(
            f"{symbol}: {'added' if res.inserted else 'updated' if res.updated else 'unchanged'}",
            highlight=False,
            markup=False,
        )


@universe_app.command("refresh")
def universe_refresh(
    source: Annotated[str, typer.Argument(help="file, fmp-etf, coingecko, indodax or upstox.")],
    file: Annotated[
        Path | None, typer.Option(help="CSV for the file source ([universe] file by default).")
    ] = None,
    home: Home = None,
    config: ConfigFile = None,
    json_out: JsonOut = False,
    wait: Wait = False,
) -> None:
    """Bring the universe in line with a source: add new instruments, update changed ones,
    mark those gone as inactive (their history stays) and report duplicates."""
    with _session(home, None, config, lock_wait=wait) as settings:
        from marketlake.pipeline.commands import refresh_universe

        res = refresh_universe(settings, source, file)
        for p in res.duplicates:
            err().print(Text.assemble(("duplicate: ", "yellow"), p), highlight=False)
        for p in res.problems[:50]:
            err().print(Text.assemble(("skipped: ", "yellow"), p), highlight=False)
        if json_out:
            print(json.dumps(res.to_json()))
        else:
            out().print(
                f"{source}: {res.listed} listed, {res.added} added, {res.updated} updated, "
                f"{res.unchanged} unchanged, {res.inactivated} marked inactive, "
                f"{len(res.duplicates)} duplicates",
                highlight=False,
                markup=False,
            )


@universe_app.command("list")
def universe_list(
    asset_type: Annotated[str | None, typer.Option(help="Only this asset type.")] = None,
    home: Home = None,
    config: ConfigFile = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    json_out: JsonOut = False,
) -> None:
    """List the universe."""
    with _session(home, None, config) as settings:
        from marketlake.pipeline.commands import list_universe

        frame = list_universe(settings, asset_type)
        _print_frame(frame, "json" if json_out else fmt, None)


@app.command()
def sync(
    segments: Annotated[list[str] | None, typer.Argument(help="Segments (default: all).")] = None,
    provider: Annotated[
        str | None, typer.Option(help="Use this provider for every symbol.")
    ] = None,
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols.")] = None,
    timeframes: Annotated[str | None, typer.Option(help="Comma-separated, e.g. 1D,1h.")] = None,
    kinds: Annotated[
        str | None, typer.Option(help="ohlcv, actions, profile, fundamentals.")
    ] = None,
    scope: Annotated[str, typer.Option(help="all, never (never synced) or stale.")] = "all",
    limit: Annotated[int | None, typer.Option(help="At most this many symbols.")] = None,
    start: Annotated[str | None, typer.Option(help="Start date (UTC), e.g. 2020-01-01.")] = None,
    end: Annotated[str | None, typer.Option(help="End date (UTC, exclusive).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Re-fetch the whole range.")] = False,
    concurrency: Annotated[int | None, typer.Option(help="Parallel requests.")] = None,
    show_status: Annotated[
        bool, typer.Option("--status", help="Show the named segments and their state.")
    ] = False,
    home: Home = None,
    config: ConfigFile = None,
    json_out: JsonOut = False,
    wait: Wait = False,
) -> None:
    """Fetch what the lake is missing (plus an overlap window) and commit it. Named segments
    (`sync --status` lists them) may run their own task: `sync fo_expired` syncs expired F&O
    expiry by expiry, `sync indicators` computes the indicators of its instruments."""
    with _session(home, None, config, concurrency=concurrency, lock_wait=wait) as settings:
        from marketlake.pipeline.stages.ingest import run_sync

        if show_status:
            from marketlake.pipeline.commands import segment_overview

            rows = segment_overview(settings, segments or None)
            if json_out:
                print(json.dumps(rows, default=str))
            else:
                t = Table(title="segments")
                cols = ("segment", "task", "instruments", "synced", "failed", "overdue")
                for c in (*cols, "last_success_at", "description"):
                    t.add_column(c, overflow="fold")
                for r in rows:
                    last = str(r["last_success_at"] or "")[:16].replace("T", " ")
                    t.add_row(*[str(r[c]) for c in cols], last, r["description"])
                out().print(t)
            raise typer.Exit(0)

        with _progress("sync", not json_out and not dry_run) as cb:
            result = run_sync(
                settings,
                segments=segments or (),
                provider=provider,
                symbols=_csv(symbols),
                timeframes=_csv(timeframes),
                kinds=_csv(kinds),
                scope=scope,
                limit=limit,
                start=start,
                end=end,
                force=force,
                dry_run=dry_run,
                progress=cb,
            )
        if dry_run:
            tasks = result.details["tasks"]
            if json_out:
                print(
                    json.dumps(
                        {
                            "run_id": result.run_id,
                            "stage": result.stage,
                            "dry_run": True,
                            "tasks": tasks,
                            "count": len(tasks),
                        }
                    )
                )
            else:
                t = Table(title=f"plan: {len(tasks)} requests")
                for c in ("symbol", "timeframe", "kind", "start", "end", "provider", "reason"):
                    t.add_column(c)
                for task in tasks[:500]:
                    t.add_row(
                        *[
                            str(task[c])
                            for c in (
                                "symbol",
                                "timeframe",
                                "kind",
                                "start",
                                "end",
                                "provider",
                                "reason",
                            )
                        ]
                    )
                out().print(t)
            raise typer.Exit(0)
        _emit(result, json_out)


@app.command()
def backfill(
    segment: Annotated[str, typer.Argument(help="Segment (or asset type) to backfill.")],
    start: Annotated[str, typer.Option(help="Earliest date wanted, e.g. 2010-01-01.")],
    end: Annotated[str | None, typer.Option(help="End date (UTC, exclusive).")] = None,
    timeframes: Annotated[str | None, typer.Option(help="Comma-separated timeframes.")] = None,
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols.")] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="Fetch on Dask: a scheduler address tcp://host:8786, or local:N for N local "
            "worker processes (one rate limit per provider across all workers; this process "
            "commits)."
        ),
    ] = None,
    home: Home = None,
    config: ConfigFile = None,
    json_out: JsonOut = False,
    wait: Wait = False,
) -> None:
    """Fill history back to --start in provider-sized chunks, committing as it goes."""
    with _session(home, None, config, lock_wait=wait) as settings:
        from marketlake.pipeline.stages.ingest import run_sync

        if cluster is not None:
            from marketlake.pipeline.stages.distributed import check_cluster

            check_cluster(cluster)
        with _progress("backfill", not json_out) as cb:
            result = run_sync(
                settings,
                segments=[segment],
                start=start,
                end=end,
                timeframes=_csv(timeframes),
                symbols=_csv(symbols),
                progress=cb,
                trigger="backfill",
                stage="backfill",
                cluster=cluster,
            )
        _emit(result, json_out)


@app.command()
def compute(
    indicators: Annotated[str | None, typer.Option(help="e.g. 'sma(20),rsi(14)'.")] = None,
    timeframes: Annotated[str | None, typer.Option(help="Comma-separated timeframes.")] = None,
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Recompute everything.")] = False,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="Run on Dask: a scheduler address tcp://host:8786, or local:N for N local "
            "worker processes (recomputes whole timeframes, one commit)."
        ),
    ] = None,
    home: Home = None,
    config: ConfigFile = None,
    json_out: JsonOut = False,
    wait: Wait = False,
) -> None:
    """Compute indicators for every series whose bars changed since the last compute."""
    with _session(home, None, config, lock_wait=wait) as settings:
        from marketlake.errors import ConfigError
        from marketlake.pipeline.commands import split_indicators
        from marketlake.pipeline.stages.compute import run_compute

        specs = split_indicators(indicators)
        if cluster is not None:
            from marketlake.pipeline.stages.distributed import check_cluster

            check_cluster(cluster)
        if cluster is not None and symbols:
            raise ConfigError(
                "--symbols cannot be combined with --cluster (it recomputes whole timeframes)"
            )
        with _progress("compute", not json_out) as cb:
            if cluster is not None:
                from marketlake.pipeline.stages.distributed import run_compute_cluster

                result = run_compute_cluster(
                    settings,
                    cluster=cluster,
                    indicators=specs,
                    timeframes=_csv(timeframes),
                    full=full,
                    progress=cb,
                )
            else:
                result = run_compute(
                    settings,
                    indicators=specs,
                    timeframes=_csv(timeframes),
                    symbols=_csv(symbols),
                    full=full,
                    progress=cb,
                )
        _emit(result, json_out)


@app.command()
def load(
    tables: Annotated[str | None, typer.Option(help="Comma-separated lake tables.")] = None,
    home: Home = None,
    dsn: Dsn = None,
    config: ConfigFile = None,
    json_out: JsonOut = False,
    wait: Wait = False,
) -> None:
    """Ship what changed in the lake since the last load into PostgreSQL."""
    with _session(home, dsn, config, lock_wait=wait) as settings:
        from marketlake.pipeline.stages.load import run_load

        with _progress("load", not json_out) as cb:
            result = run_load(settings, tables=_csv(tables), progress=cb)
        _emit(result, json_out)


RemoteUrl = Annotated[
    str | None,
    typer.Option(
        "--remote", help="The remote service, e.g. https://host:8765.", show_default=False
    ),
]


@app.command()
def push(
    remote: RemoteUrl = None,
    tables: Annotated[
        str | None, typer.Option(help="Comma-separated lake tables (default: market data).")
    ] = None,
    home: Home = None,
    config: ConfigFile = None,
    json_out: JsonOut = False,
) -> None:
    """Send what changed in the lake since the last acknowledged push to a remote service
    (token: MARKETLAKE_REMOTE_TOKEN), which merges it into its lake and its database."""
    with _session(home, None, config) as settings:
        from marketlake.pipeline.remote.client import Remote
        from marketlake.pipeline.stages.push import run_push

        target = Remote.parse(remote, os.environ.get("MARKETLAKE_REMOTE_TOKEN"))
        with _progress("push", not json_out) as cb:
            result = run_push(settings, target, tables=_csv(tables), progress=cb)
        _emit(result, json_out)


@app.command()
def pull(
    remote: RemoteUrl = None,
    tables: Annotated[
        str | None, typer.Option(help="Comma-separated tables the remote exposes for pull.")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Read whole tables; drop rows the remote deleted.")
    ] = False,
    home: Home = None,
    config: ConfigFile = None,
    json_out: JsonOut = False,
    wait: Wait = False,
) -> None:
    """Bring rows of the remote's app tables changed since the last pull into local lake
    tables of the same name (token: MARKETLAKE_REMOTE_TOKEN)."""
    with _session(home, None, config, lock_wait=wait) as settings:
        from marketlake.pipeline.remote.client import Remote
        from marketlake.pipeline.stages.pull import run_pull

        target = Remote.parse(remote, os.environ.get("MARKETLAKE_REMOTE_TOKEN"))
        with _progress("pull", not json_out) as cb:
            result = run_pull(settings, target, tables=_csv(tables), full=full, progress=cb)
        _emit(result, json_out)


@app.command()
def daily(
    home: Home = None,
    dsn: Dsn = None,
    config: ConfigFile = None,
    json_out: JsonOut = False,
    wait: Wait = False,
) -> None:
    """Universe refresh, sync of every segment, compute, load: one failing task never stops
    the next."""
    with _session(home, dsn, config, lock_wait=wait) as settings:
        from marketlake.pipeline.orchestration import run_daily

        with _progress("daily", not json_out) as cb:
            result = run_daily(settings, progress=cb)
        _emit(result, json_out)


def _status_table(rows: list[dict]) -> None:
    t = Table(title="sync status")
    cols = {
        "segment": "segment",
        "timeframe": "tf",
        "kind": "kind",
        "symbols": "symbols",
        "failed": "failed",
        "never": "never synced",
        "rows": "rows",
        "first_ts": "from",
        "last_ts": "to",
        "freshness_hours": "age h",
        "overdue": "overdue",
        "last_error": "last error",
    }
    for c, title in cols.items():
        t.add_column(
            title,
            justify="right"
            if c in ("symbols", "failed", "never", "rows", "overdue", "freshness_hours")
            else "left",
            overflow="fold",
        )

    def cell(c: str, v: object) -> str:
        if v is None:
            return ""
        if c in ("first_ts", "last_ts"):
            return str(v)[:16].replace("T", " ").removesuffix(" 00:00")
        if c == "freshness_hours":
            return f"{float(v):.1f}"
        if c == "rows":
            return f"{int(v):,}"
        return str(v)[:80]

    for r in rows:
        t.add_row(*[cell(c, r.get(c)) for c in cols])
    out().print(t)


@app.command()
def status(home: Home = None, config: ConfigFile = None, json_out: JsonOut = False) -> None:
    """Per segment: coverage, freshness, overdue symbols and the last error."""
    with _session(home, None, config) as settings:
        from marketlake.pipeline.commands import status_rows

        rows = status_rows(settings)
        if json_out:
            print(json.dumps(rows, default=str))
        elif not rows:
            out().print("nothing synced yet: run `marketlake sync` (or `marketlake demo`)")
        else:
            _status_table(rows)


@app.command()
def logs(
    failed: Annotated[bool, typer.Option("--failed", help="Only failed tasks.")] = False,
    task: Annotated[str | None, typer.Option(help="Task name contains this text.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 20,
    home: Home = None,
    config: ConfigFile = None,
    json_out: JsonOut = False,
) -> None:
    """Recent sync_logs rows, newest first."""
    with _session(home, None, config) as settings:
        from marketlake.pipeline.commands import recent_logs

        frame = recent_logs(settings, limit=limit, failed=failed, task=task)
        _print_frame(frame, "json" if json_out else "table", None)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="DuckDB SQL over the lake tables (as views).")],
    fmt: Annotated[str, typer.Option("--format", help="table, csv, json or parquet.")] = "table",
    out_file: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
    home: Home = None,
    config: ConfigFile = None,
) -> None:
    """Run one read-only SELECT over every lake table (write results with --out)."""
    with _session(home, None, config) as settings:
        from marketlake.pipeline.commands import query as run_query

        frame = run_query(settings, sql, out=out_file)
        _print_frame(frame, fmt, out_file)


@app.command()
def export(
    table: Annotated[str, typer.Argument(help="Lake table, e.g. ohlcv.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write into.")],
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols.")] = None,
    timeframes: Annotated[str | None, typer.Option(help="Comma-separated timeframes.")] = None,
    start: Annotated[str | None, typer.Option(help="ts >= this date (UTC).")] = None,
    end: Annotated[str | None, typer.Option(help="ts < this date (UTC).")] = None,
    home: Home = None,
    config: ConfigFile = None,
    json_out: JsonOut = False,
) -> None:
    """Write a lake table as one clean parquet or CSV file."""
    with _session(home, None, config) as settings:
        from marketlake.pipeline.commands import export as export_table

        path, n = export_table(
            settings,
            table,
            out_dir,
            fmt=fmt,
            symbols=_csv(symbols),
            timeframes=_csv(timeframes),
            start=start,
            end=end,
        )
        if json_out:
            print(json.dumps({"table": table, "path": str(path), "rows": n}))
        else:
            out().print(f"wrote {n:,} rows to {path}")


@app.command()
def maintain(
    tables: Annotated[str | None, typer.Option(help="Comma-separated lake tables.")] = None,
    vacuum_hours: Annotated[int, typer.Option(help="Keep files younger than this.")] = 168,
    home: Home = None,
    config: ConfigFile = None,
    json_out: JsonOut = False,
    wait: Wait = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify", help="Only check every data file (page checksums); exit 1 on damage."
        ),
    ] = False,
) -> None:
    """Compact small files, vacuum files no recent version needs, remove files no version
    references; with --verify, check every data file instead."""
    with _session(home, None, config, lock_wait=wait) as settings:
        from marketlake.pipeline.commands import maintain as run

        report = run(settings, tables=_csv(tables), vacuum_hours=vacuum_hours, verify=verify)
        if json_out:
            print(json.dumps(report, default=str))
        else:
            for name, info in report.items():
                out().print(f"{name}: {info}", highlight=False)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default 127.0.0.1; [serve] host).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8765; [serve] port).")] = None,
    home: Home = None,
    dsn: Dsn = None,
    config: ConfigFile = None,
) -> None:
    """The sync service: scheduler, HTTP API under /api/v1 (token: MARKETLAKE_API_TOKEN, or
    generated into $MARKETLAKE_HOME/api-token) and the admin page at /."""
    with _session(home, dsn, config) as settings:
        from marketlake.pipeline.service.server import serve as run_service
        from marketlake.pipeline.service.server import serve_options

        run_service(
            settings,
            serve_options(settings, host, port),
            token=os.environ.get("MARKETLAKE_API_TOKEN") or None,
            announce=lambda msg: err().print(msg, highlight=False, markup=False),
        )


@app.command()
def chart(
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. AAPL or BTC/IDR.")],
    out_file: Annotated[Path, typer.Option("--out", help="PNG file to write.")] = Path("chart.png"),
    timeframe: Annotated[str, typer.Option(help="Timeframe, e.g. 1D or 1h.")] = "1D",
    indicators: Annotated[
        str | None, typer.Option(help="e.g. 'sma(20),bbands(20,2),rsi(14),macd(12,26,9)'.")
    ] = None,
    start: Annotated[str | None, typer.Option(help="From this date (UTC).")] = None,
    end: Annotated[str | None, typer.Option(help="Before this date (UTC).")] = None,
    bars: Annotated[int, typer.Option(help="At most this many (latest) bars.")] = 250,
    home: Home = None,
    config: ConfigFile = None,
) -> None:
    """Candles and chosen indicators of one symbol to a PNG (overlays on the price, RSI, MACD
    and other oscillators in panes below)."""
    with _session(home, None, config) as settings:
        from marketlake.pipeline.bars import read_bars
        from marketlake.pipeline.chart import render
        from marketlake.pipeline.commands import split_indicators
        from marketlake.pipeline.planning import parse_when

        frame = read_bars(
            settings.open_lake(),
            symbol,
            timeframe,
            start=parse_when(start, "--start"),
            end=parse_when(end, "--end"),
            indicators=split_indicators(indicators),
            limit=bars,
        )
        render(frame, out_file, title=f"{symbol} {timeframe}")
        out().print(f"wrote {out_file} ({frame.height} bars)", highlight=False, markup=False)


if __name__ == "__main__":
    app()
