"""A change against another checkout, on bench/tenants.py's databases, in alternating turns.

On a shared machine one bench run's figures move more from minute to minute than a change of a
few percent does (the raw baseline alone served 177 to 465 requests a second in runs of the
same evening). So this keeps three servers up at once on the small organization's database
among the others: this checkout's `server.py`, another checkout's (`--base`, a `git worktree`
of the commit to compare with), and `bench/raw_server.py`; and loads each in turn, 10 clients
for `--seconds`, the order reversed every round, reading each server's CPU (and PostgreSQL's)
per request from /proc. Drift of the machine then falls on all three alike.

    git worktree add /tmp/base <commit> && ln -s $PWD/.venv /tmp/base/.venv
    .venv/bin/python bench/tenants.py --seed-only          # once: prints MULTI,ALONE
    .venv/bin/python bench/ab.py --reuse MULTI,ALONE --base /tmp/base [--viewer admin]
        [--page 10] [--rounds 8] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import tenants  # noqa: E402
from tests import processes  # noqa: E402
from tests.processes import ServerProcess  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, children: bool = False) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    used = int(fields[11]) + int(fields[12])
    if children:
        used += int(fields[13]) + int(fields[14])
    return used / TICK


def postgres_seconds() -> float:
    """CPU of every PostgreSQL process (backends come and go: their parents' children count)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as comm:
                if comm.read().strip() != "postgres":
                    continue
            total += cpu_seconds(int(entry), children=True)
        except OSError:
            continue
    return total


class OtherCheckout(ServerProcess):
    """`server.py` of another checkout."""

    def __init__(self, root: Path, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.root = root

    async def start(self) -> OtherCheckout:
        here, processes.ROOT = processes.ROOT, self.root
        try:
            await super().start()
        finally:
            processes.ROOT = here
        return self


async def run(args: argparse.Namespace) -> None:
    found = await tenants.reuse(args.reuse)
    viewers, _ = await tenants.prepare(found)
    viewer = viewers[f"small {args.viewer}"]
    page = tenants.Page(args.page)
    env = {"DATABASE_URL": tenants.url(found.multi), **tenants.SERVER_ENV}
    async with (
        OtherCheckout(Path(args.base), env, startup_timeout=120) as base,
        ServerProcess(env, startup_timeout=120) as change,
        tenants.RawProcess(tenants.url(found.multi), 10_000) as raw,
    ):
        loads: dict[str, tuple[list[tenants.Call], int]] = {}
        for name, server in (("base", base), ("change", change)):
            side = tenants.Side(
                "multi", tenants.client(server.base_url), tenants.client(raw.base_url)
            )
            await tenants.login(side, viewer)
            calls = [tenants.graph_call(side, viewer, page) for _ in range(10)]
            assert server.process is not None
            loads[name] = (calls, server.process.pid)
        assert raw.process is not None
        loads["raw"] = ([tenants.raw_call(side, viewer, page) for _ in range(10)], raw.process.pid)
        for calls, _ in loads.values():
            await tenants.load_all(calls, 1)  # warm
        figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in loads}
        order = list(loads)
        for turn in range(args.rounds):
            for name in order if turn % 2 == 0 else order[::-1]:
                calls, pid = loads[name]
                server_before, postgres_before = cpu_seconds(pid), postgres_seconds()
                per_second, _ = await tenants.load_all(calls, args.seconds)
                requests = per_second * args.seconds
                figures[name].append(
                    (
                        per_second,
                        1000 * (cpu_seconds(pid) - server_before) / requests,
                        1000 * (postgres_seconds() - postgres_before) / requests,
                    )
                )
    print(
        f"{args.viewer}, pages of {args.page}, 10 clients, {args.rounds} rounds of {args.seconds} s"
    )
    for name, rows in figures.items():
        rates = [row[0] for row in rows]
        line = (
            f"  {name:6}: {statistics.median(rates):7.1f} requests/s, server"
            f" {statistics.median(row[1] for row in rows):.2f} ms of CPU a request, PostgreSQL"
            f" {statistics.median(row[2] for row in rows):.2f} ms"
        )
        if name != "raw":
            ratios = [mine / theirs[0] for mine, theirs in zip(rates, figures["raw"], strict=True)]
            line += (
                f"; graph/raw {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            )
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse", required=True, metavar="MULTI,ALONE")
    parser.add_argument("--base", required=True, help="the other checkout's directory")
    parser.add_argument("--viewer", choices=["seller", "admin"], default="seller")
    parser.add_argument("--page", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
