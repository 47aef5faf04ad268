"""The paper's tables (Tables 1 and 2) as files: plain text to print, and CSV, JSON and Markdown beside the figures."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from mixcollapse.files import atomic_write_text


def format_table(header: list[str], rows: list[list], caption: str = "") -> str:
    """A plain-text table (what ``reproduce`` prints)."""
    text = [[str(h) for h in header]] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(header))]
    lines = [caption] if caption else []
    for i, r in enumerate(text):
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_table(stem: Path, header: list[str], rows: list[list], caption: str, scale: str) -> list[Path]:
    """``stem.csv``, ``stem.json`` and ``stem.md``, each written atomically."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    cell = lambda v: "–" if v is None else str(v)  # noqa: E731
    md = [caption, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    out = []
    for suffix, text in (
        (".csv", buf.getvalue()),
        (".json", json.dumps({"caption": caption, "scale": scale, "header": header, "rows": rows}, indent=2)),
        (".md", "\n".join(md) + "\n"),
    ):
        out.append(atomic_write_text(stem.with_suffix(suffix), text))
    return out
