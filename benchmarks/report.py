"""The benchmark's report: rows (ours against a baseline, with the samples each rests on), the stated
targets each case is judged against at every size, and the Markdown the README shows."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.quality import format_quality


@dataclass(frozen=True)
class Target:
    """A stated target for a case: its ratio ≤ ``limit``; ``sizes`` are the token counts it was stated for
    (empty: every size). Rows at other sizes are still judged against it, and say so."""

    limit: float
    sizes: tuple[int, ...] = ()

    def terms(self, tokens: int) -> str:
        """'≤ 0.6', and the sizes it was stated for when ``tokens`` is not one of them."""
        stated = ", ".join(f"{n:,}" for n in self.sizes)
        return f"≤ {self.limit:g}" + (
            f", stated for {stated} tokens" if stated and tokens not in self.sizes else ""
        )


# The targets of issues 8, 13, 25, 26 and 27 (bytes, page, atlas and study times: against their budget, so ≤ 1).
TARGETS = {
    "trace_full": Target(0.6, (1024, 2048)),
    "trace_full_sdpa": Target(1.2, (1024, 2048)),
    "trace_full_memory": Target(0.5),
    "trace_layer": Target(1.05),
    "first_view": Target(1.5, (512, 1024)),
    "attribution_attention": Target(0.15),
    "model_load_cached": Target(0.1),
    "payload_explore": Target(1.0),
    "time_to_first_page": Target(1.0),
    "first_page_started": Target(1.0),
    "study_attention": Target(1.0),
    "atlas_budget": Target(1.0),
}


@dataclass(frozen=True)
class Row:
    """One case at one size: our figure, its baseline's, their ratio and unit, peak memory of each side."""

    case: str
    tokens: int
    ours: float
    baseline: float
    ratio: float
    unit: str
    ours_peak_mb: float | None
    baseline_peak_mb: float | None
    note: str = ""
    samples: int = 1  # runs each side's figure rests on (the fewer of the two)

    def met(self) -> bool | None:
        """Whether the ratio meets the case's target (None: the case has none)."""
        target = TARGETS.get(self.case)
        return None if target is None else self.ratio <= target.limit

    def verdict(self) -> str:
        """'≤ 0.6: met', 'not met' (with the sizes the target was stated for, when not this one), or ''."""
        met = self.met()
        return (
            "" if met is None else f"{TARGETS[self.case].terms(self.tokens)}: {'met' if met else 'not met'}"
        )


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table of the rows (also what the README shows), each with its samples and its target."""
    header = "| case | tokens | ours | baseline | ratio | samples | target | ours peak MB | baseline peak MB | note |"
    lines = [header, "|" + "---|" * 10]
    for r in rows:
        peak = lambda v: "" if v is None else f"{v:,.0f}"  # noqa: E731
        amount = {"B": lambda v: f"{v / 1e6:.2f} MB", "MB": lambda v: f"{v:,.0f} MB"}.get(
            r.unit, lambda v: f"{v:.3g} s"
        )
        lines.append(
            f"| {r.case} | {r.tokens or ''} | {amount(r.ours)} | {amount(r.baseline)} | {r.ratio:.3f} "
            f"| {r.samples} | {r.verdict()} | {peak(r.ours_peak_mb)} | {peak(r.baseline_peak_mb)} | {r.note} |"
        )
    return "\n".join(lines)


def format_verdicts(rows: Sequence[Row]) -> str:
    """The README's Met / Not met lists: every row that has a target, at every size, with its ratio to three
    decimals, as in the table (1.505 shown as "1.5" would read as met against "≤ 1.5")."""
    lines = []
    for heading, met in (("Met", True), ("Not met", False)):
        items = "; ".join(
            f"`{r.case}`{f' at {r.tokens:,} tokens' if r.tokens else ''} {r.ratio:.3f} ({TARGETS[r.case].terms(r.tokens)})"
            for r in rows
            if r.met() is met
        )
        lines.append(f"- **{heading}:** {items or 'none'}.")
    return "\n".join(lines)


def format_report(result: dict[str, object]) -> str:
    """The Markdown written next to the JSON: machine line, speed table, Met / Not met lists, quality table."""
    parts = [f"Machine: {result['machine']}; run on {time.strftime('%Y-%m-%d')}."]
    if result["rows"]:
        rows = [Row(**row) for row in result["rows"]]
        parts += [format_table(rows), "Against the targets:\n\n" + format_verdicts(rows)]
    if "attribution_quality" in result:
        parts.append(format_quality(result["attribution_quality"]))
    return "\n\n".join(parts) + "\n"
