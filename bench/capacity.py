"""How the cost per delivered tick scales with web processes behind HAProxy.

``python -m bench.capacity`` (``make bench-capacity``) runs the same load, ``--clients``
dashboards of every symbol of a 50-symbol market at ``--rate`` ticks/s, against Ticker with
1, 2 and 4 Daphne processes (``--procs``) behind one HAProxy (Debian's, plain HTTP: TLS is
the balancer's own cost, measured apart from this), the dashboards spread over them by
HAProxy (``leastconn``). For each it reports the web processes' CPU per delivered tick
summed, the balancer's, the p99 and the delivery, and writes
``bench/results/<stamp>-capacity.json`` and ``.md``; ``docs/capacity.md`` reads them.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.clients import ClientGroup
from bench.plan import RESULTS, Config, Scenario
from bench.procs import REPO, free_port, http_ready, wait_for
from bench.results import BALANCER
from bench.scenarios import RunContext
from bench.targets import TickerTarget

logger = logging.getLogger("bench.capacity")

HAPROXY_CONFIG = """global
    maxconn 9000
defaults
    mode http
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
frontend dashboards
    bind 127.0.0.1:{port}
    default_backend web
backend web
    balance leastconn
{servers}
"""


def haproxy_config(port: int, web_ports: list[int]) -> str:
    servers = "\n".join(f"    server web{i + 1} 127.0.0.1:{p}" for i, p in enumerate(web_ports))
    return HAPROXY_CONFIG.format(port=port, servers=servers)


class BalancedTicker(TickerTarget):
    """Ticker with its web processes behind one HAProxy: every dashboard connects to it."""

    def __init__(self, workdir: Path, symbols: int, web_procs: int, users: int) -> None:
        super().__init__(workdir, symbols, REPO, web_procs=web_procs, users=users)
        self.lb_port = free_port()

    def start(self, rate: float) -> None:
        super().start(rate)
        config = self.workdir / "haproxy.cfg"
        config.write_text(haproxy_config(self.lb_port, self.web_ports))
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        process = self._add(BALANCER, [haproxy, "-f", str(config), "-db"], self.env(), self.workdir)
        process.start()
        url = f"http://127.0.0.1:{self.lb_port}/accounts/login/"
        wait_for(lambda: http_ready(url), 30, "HAProxy", 0.1)

    def stream_urls(self, web_procs: int = 1) -> list[str]:
        return [f"ws://127.0.0.1:{self.lb_port}{self.stream_path}"]


def measure(procs: int, args: argparse.Namespace, config: Config, stamp: str) -> dict[str, Any]:
    """One load against ``procs`` web processes behind HAProxy: the scenario's result row."""
    workdir = Path(tempfile.mkdtemp(prefix=f"ticker-bench-capacity-{procs}-"))
    ctx = RunContext(config, workdir, stamp)
    target = BalancedTicker(workdir, args.symbols, procs, users=args.clients)
    scenario = Scenario("stream", args.clients, args.rate, args.symbols, web_procs=procs)
    try:
        target.start(args.rate)
        target.wait_rate(args.rate)
        ctx.rate_origin = scenarios.mark(target)
        notes = scenarios.settle(target, target.web_names(procs))
        start = scenarios.mark(target)
        group = ClientGroup(workdir, f"capacity {procs} web")
        result = scenarios.new_result(target, scenario, notes)
        try:
            scenarios.steady(ctx, target, scenario, group, result, start)
        finally:
            group.close()
    finally:
        target.stop()
    result["web_procs"] = procs
    return result


ROW_KEYS = (
    ("web_procs", "web processes"),
    ("clients_connected", "dashboards"),
    ("delivered_pct", "delivered %"),
    ("p99_ms", "p99 ms"),
    ("web_cpu_pct", "web CPU % (all)"),
    ("cpu_us_per_tick", "web µs CPU per tick"),
    ("balancer_cpu_pct", "HAProxy CPU %"),
    ("balancer_us_per_tick", "HAProxy µs per tick"),
    ("redis_cpu_pct", "Redis CPU %"),
    ("stack_cpu_pct", "stack CPU %"),
    ("client_cpu_pct", "clients CPU %"),
)


def render(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    header = "| " + " | ".join(title for _, title in ROW_KEYS) + " |"
    lines = [
        f"{args.clients} dashboards x {args.symbols} symbols @{args.rate:.0f} ticks/s, behind one HAProxy:",
        header,
        "|" + "---|" * len(ROW_KEYS),
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(key, "-")) for key, _ in ROW_KEYS) + " |")
    base = rows[0].get("cpu_us_per_tick") if rows else None
    for row in rows[1:]:
        if base and row.get("cpu_us_per_tick"):
            ratio = row["cpu_us_per_tick"] / base
            lines.append(f"{row['web_procs']} web processes: web CPU per tick x{ratio:.2f} of one process's")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--procs", default="1,2,4", help="web processes per run, e.g. 1,2,4")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    config = Config()
    config.clients = [args.clients]
    config.symbols = args.symbols
    config.per_client = args.symbols
    config.duration = args.duration
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    rows = [measure(int(n), args, config, stamp) for n in args.procs.split(",") if n.strip()]
    text = render(rows, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"stamp": stamp, "clients": args.clients, "symbols": args.symbols, "rate": args.rate, "rows": rows}
    (out / f"{stamp}-capacity.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (out / f"{stamp}-capacity.md").write_text(text + "\n")
    logger.info("\n%s\nWritten: %s/%s-capacity.json and .md", text, out, stamp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
