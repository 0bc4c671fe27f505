"""``make bench``: every benchmark, one after the other, and ``bench/RESULTS.md`` with their eight sections.

Benchmarks print figures; they never pass or fail on time. The machine is shared and noisy: each comparison
is made against the peer measured in the same run, interleaved, and quoted as a ratio.

    .venv/bin/python -m bench.run                 # the full run (about 24 minutes on 2 cores)
    .venv/bin/python -m bench.run --quick         # one tiny iteration of each, for the smoke test
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import callback_delay, calls, coldstart, cost, fair_share, load, priority, report_scale, size, warm
from bench.common import ROOT, median


def run(*, quick: bool, output: Path | None) -> str:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "No application metrics to publish")
        return _run(quick=quick, output=output)


def _run(*, quick: bool, output: Path | None) -> str:
    began = time.monotonic()
    sections: list[tuple[str, str]] = []

    cold = coldstart.measure(1, verbs=("get",)) if quick else coldstart.measure(15)
    compiled = coldstart.bytecode(1 if quick else 15)
    sections.append(("1. Cold start", coldstart.report(cold) + "\n\n" + coldstart.bytecode_report(compiled)))
    hot = warm.measure(20 if quick else 300, 1 if quick else 10)
    sections.append(("2. Warm per-request overhead", warm.report(hot)))
    counted = calls.measure()
    sections.append(("3. AWS calls per operation", calls.report(counted)))
    loaded = load.measure(1, [2], engines=("moto",)) if quick else load.measure(6, [1, 4, 16])
    sections.append(("4. The local stack under load", load.report(loaded)))
    sizes = size.measure(build=not quick)
    sections.append(("5. Size and memory", size.report(sizes, peak_rss(cold, hot))))
    ranked = (
        priority.measure(backlog=20, high=2, dynamodb="moto", drain_seconds=120)
        if quick
        else priority.measure(backlog=1000, high=20, concurrencies=(2, 4))
    )
    sections.append(("6. Priority", priority.report(ranked)))
    shared = fair_share.measure(30, 2, modes=(True,)) if quick else fair_share.measure(1000, 10)
    sections.append(("7. A fair share between owners", fair_share.report(shared)))
    scaled = report_scale.measure([(200, 1024)] if quick else report_scale.BENCH_OWNERS)
    sections.append(("8. A report that scales with its owner", report_scale.report(scaled)))
    costed = cost.measure(quick=quick)
    sections.append(("9. What a million jobs cost on AWS", cost.report(costed)))
    sections.append(("10. Latency budget on AWS: 201 to RUNNING, on paper", cost.latency_report(costed)))
    delayed = callback_delay.measure(3, 2, 15.0, 0.2) if quick else callback_delay.measure(30, 20, 30.0, 0.2)
    sections.append(("11. Callbacks behind another owner's slow receiver", callback_delay.report(delayed)))

    text = render(sections, cold, hot, compiled, costed, time.monotonic() - began, quick=quick)
    if output is not None:
        output.write_text(text, encoding="utf-8")
    return text


def peak_rss(cold: dict[str, Any], hot: dict[str, Any]) -> dict[str, float]:
    targets = cold["targets"]
    api = max(target.median("max_rss_kb") for name, target in targets.items() if name.startswith("ours"))
    peer = max(target.median("max_rss_kb") for name, target in targets.items() if name.startswith("peer"))
    return {
        "API function, after its first request (cold start)": api / 1024,
        "API function, after all warm requests": hot["rss_kb"]["ours"] / 1024,
        "consumer, after its first batch (cold start)": targets["consumer"].median("max_rss_kb") / 1024,
        "peer, after its first request (cold start)": peer / 1024,
        "peer, after all warm requests": hot["rss_kb"]["peer"] / 1024,
    }


def render(
    sections: list[tuple[str, str]],
    cold: dict[str, Any],
    hot: dict[str, Any],
    compiled: dict[str, Any],
    costed: dict[str, Any],
    seconds: float,
    **kw: Any,
) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    header = [
        "# Benchmarks",
        "",
        f"`make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit `{commit or 'unknown'}`: Python "
        f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores shared with other work "
        f"(so absolute figures are noisy; the ratios compare runs interleaved with each other), {seconds:.0f} s."
        + (" QUICK RUN: one tiny iteration, not figures to quote." if kw.get("quick") else ""),
        "",
        "The peer is `bench/peer/app.py`: the same four routes as a FastAPI app behind Mangum, with the same "
        "pydantic models, PyJWT verification, service, DynamoDB and SQS calls, and the same powertools Logger "
        "and Metrics, so that only the framework differs.",
    ]
    body = [f"## {title}\n\n{text}" for title, text in sections]
    return "\n".join(header) + "\n\n" + "\n\n".join(body) + "\n\n" + closing_note(cold, hot, compiled, costed) + "\n"


def compiled_ratio(compiled: dict[str, Any], build: int) -> str:
    """The cold start of ``bytecode()``'s build number ``build`` over the one from sources only, as ``0.57x``."""
    totals = [median([run.total_ms for run in runs]) for runs in compiled["results"].values()]
    return f"{totals[build] / totals[0]:.2f}x"


def closing_note(cold: dict[str, Any], hot: dict[str, Any], compiled: dict[str, Any], costed: dict[str, Any]) -> str:
    """What the figures say is left, from this run's own profile, and the bill of a million jobs."""
    targets = cold["targets"]
    ours, peer = targets["ours get"], targets["peer get"]
    framework = ", ".join(f"{name} {ms:.0f}" for name, ms in ours.packages("framework", 6))
    shared = ", ".join(f"{name} {ms:.0f}" for name, ms in ours.packages("shared", 6))
    peer_framework = ", ".join(f"{name} {ms:.0f}" for name, ms in peer.packages("framework", 6))
    routes = hot["routes"]
    warm_ratios = ", ".join(
        f"{route} {sides['ours']['framework_us'] / sides['peer']['framework_us']:.2f}x"
        for route, sides in routes.items()
    )
    totals = {key: cost.total(lines) for key, lines in cost.bills(costed).items()}
    bill = "; ".join(
        f"{shape}: ours ${totals[(shape, 'ours')]:,.2f}, the peer design ${totals[(shape, 'peer')]:,.2f}"
        for shape in cost.SHAPES
    )
    return "\n".join(
        [
            "## Closing note: what is left",
            "",
            f"- A million `noop` jobs on AWS (section 9, USD, {cost.PRICED_REGION}): {bill}.",
            f"- Cold start, what our framework part is made of (GET, median ms of import time by package): "
            f"{framework}. The peer's: {peer_framework}. powertools' `event_handler` package imports every "
            "resolver it has (AppSync's pulls in asyncio and ssl), and request validation builds pydantic models "
            "for OpenAPI at import; neither can be skipped without patching powertools. PyJWT no longer loads "
            "cryptography in HS256 mode.",
            f"- Cold start, the shared part (GET, ms): {shared}. pydantic and botocore are needed by any "
            "implementation. boto3 (and s3transfer, multiprocessing with it) is no longer imported by the API "
            "function: the store converts DynamoDB values itself (boto3's TypeSerializer's table; powertools' "
            "boto3-free TypeDeserializer), the token secret is one GetParameter on the shared botocore session "
            "instead of powertools' parameters utility, and powertools' idempotency package loads with the first "
            "request that carries an Idempotency-Key (the error table maps jobs' own idempotency errors).",
            f"- Warm framework ratios (ours/peer): {warm_ratios}. What is left of ours is mostly what the peer pays "
            "alike: the 'User <sub> authenticated successfully' line DESIGN.md asks for, the Logger's "
            "per-invocation context and the EMF line; the rest is powertools' routing and validation. Three cuts "
            "made the last of it: a list page's jobs are written to JSON once (the service writes them to size the "
            "page against Lambda's response limit, and the route sends that text: `JobPage.json_text`); the "
            "millisecond timestamp serialiser runs at half its cost (`jobs.models.format_timestamp`, 80 calls per "
            "page); and a sandbox remembers the tokens it verified (`jobs.auth.VerifiedTokens`: a repeated token "
            "skips PyJWT's decode while the key that verified it is still the key and its exp still holds, so a "
            "rotated secret or a retired key stops it exactly when it stops a new token). The bench sends one "
            "token, as one client does; a request with a token the sandbox has not seen pays the decode (~50 µs). "
            "The API function freezes its heap after its first invocation (`jobs.sandbox`): a full garbage "
            "collection of the ~190,000 objects of a warm sandbox cost 170-370 ms at random requests before.",
            f"- Bytecode: the layer and the functions ship it ({compiled_ratio(compiled, 1)} of the cold start from "
            f"sources only with the layer's, {compiled_ratio(compiled, 2)} with the function's own too; table 1): "
            "sam's python builder leaves out `__pycache__` and Lambda's /opt and /var/task are read-only, so "
            "`layers/jobs/Makefile` and `functions/Makefile` compile it at build time. The other cold-start "
            "figures run with bytecode on both sides.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one tiny iteration of each benchmark")
    parser.add_argument("--output", type=Path, default=None, help="write the Markdown there (make bench: RESULTS.md)")
    args = parser.parse_args(argv)
    text = run(quick=args.quick, output=args.output)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
