"""``mixcollapse report DIR``: one self-contained HTML page of a reproduce directory's figures and tables.

Reads the manifests ``DIR/experiments/*.json`` written by :mod:`mixcollapse.experiments.reproduce` (in the
paper's order) and writes ``DIR/report.html``: every PNG figure embedded as base64 (the page needs
no other file), every table with the measured values beside the paper's, the runs behind each
experiment, and a banner when any result comes from synthetic data. The file is written atomically.
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

from mixcollapse.files import atomic_write_text

STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em 0; padding: 0 1em;
       color: #222; line-height: 1.45; }
body > :not(.fig) { max-width: 1200px; margin-left: auto; margin-right: auto; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
.banner { background: #fff3cd; border: 1px solid #e0c060; padding: .7em 1em; border-radius: 4px; }
.expected { background: #f4f6fa; border-left: 4px solid #6c8ebf; padding: .5em 1em; }
.fig { text-align: center; }
.fig img { max-width: 100%; height: auto; border: 1px solid #eee; margin: .5em 0; box-sizing: border-box; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.paper, th.paper { background: #eef5ee; }
.meta { color: #666; font-size: .88em; }
nav a { margin-right: .8em; }
"""


def load_manifests(directory: str | Path) -> list[dict]:
    """The manifests of ``directory``, in the paper's order (unknown names last, alphabetically)."""
    from mixcollapse.experiments.paper import EXPERIMENTS

    folder = Path(directory) / "experiments"
    manifests = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    order = {name: i for i, name in enumerate(EXPERIMENTS)}
    return sorted(manifests, key=lambda m: (order.get(m.get("name"), len(order)), m.get("name", "")))


def _e(value) -> str:
    return html.escape(str(value))


def _number(value, percent: bool = False) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{100 * value:.2f}%" if percent else f"{value:.4g}"
    return _e(value)


def _image(path: Path) -> str:
    if not path.is_file():
        return f"<p class='meta'>missing figure: {_e(path)}</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    # A figure may be wider than the text column: it gets the body's whole width (at its own size at most), with
    # no 100vw, which counts the vertical scrollbar and so adds a horizontal one.
    return f"<div class='fig'><img alt='{_e(path.name)}' src='data:image/png;base64,{data}'></div>"


def _table(table: dict) -> str:
    """A measured-vs-paper table: columns whose header says (paper) are shaded."""
    header = table["header"]
    paper_cols = {i for i, h in enumerate(header) if "(paper)" in str(h)}
    out = [f"<table><caption>{_e(table.get('caption', ''))}</caption><tr>"]
    out += [f"<th class='{'paper' if i in paper_cols else ''}'>{_e(h)}</th>" for i, h in enumerate(header)]
    out.append("</tr>")
    for row in table["rows"]:
        cells = []
        for i, v in enumerate(row):
            cls = ("paper " if i in paper_cols else "") + ("num" if isinstance(v, (int, float)) else "")
            cells.append(f"<td class='{cls.strip()}'>{'–' if v is None else _e(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _rows_table(header: list[str], rows: list[list]) -> str:
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return "<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" + body + "</table>"


def _section(m: dict, directory: Path) -> str:
    parts = [f"<h2 id='{_e(m['name'])}'>{_e(m['name'])}: {_e(m.get('title', ''))}</h2>"]
    parts.append(f"<p class='expected'><b>The paper:</b> {_e(m.get('expected', ''))}</p>")
    meta = [f"scale: <b>{_e(m.get('scale_note') or m.get('scale'))}</b>"]
    gpu = m.get("estimated_gpu_hours_full_scale") or {}
    if gpu:
        meta.append(
            f"full scale: {m.get('trainings_full_scale', '?')} trainings, about {gpu.get('A100')} "
            f"A100-hours / {gpu.get('H100')} H100-hours (estimate)"
        )
    meta.append(
        f"this run: {m.get('seconds_training', 0)} s training (shared), {m.get('seconds_analysis', 0)} s analysis"
    )
    parts.append(f"<p class='meta'>{' · '.join(meta)}</p>")
    for line in (m.get("data") or {}).values():
        cls = "banner" if "SYNTHETIC" in line else "meta"
        parts.append(f"<p class='{cls}'>data: {_e(line)}</p>")
    for fig in m.get("figures", []):
        if str(fig).endswith(".png"):
            parts.append(_image(directory / fig))
    for table in m.get("tables", []):
        parts.append(_table(table))
    parts += _panel_rows(m) + _trajectory_lines(m) + _final_rows(m) + _run_rows(m)
    return "\n".join(parts)


def _panel_rows(m: dict) -> list[str]:
    """The configuration panels of an experiment as a table: run, epoch, classes, batch norm, numbers."""
    if not m.get("panels"):
        return []
    rows = [
        [
            _e(p["run"]),
            _e(p.get("epoch")),
            _e(", ".join(p.get("class_names") or map(str, p["classes"]))),
            _e(p.get("bn_mode")),
            _number(p.get("test_accuracy"), True),
            _number(p.get("pair_prob_mae")),
        ]
        for p in m["panels"]
    ]
    return [_rows_table(["panel: run", "epoch", "classes", "batch norm", "test acc", "mean |p_a − λ|"], rows)]


def _trajectory_lines(m: dict) -> list[str]:
    """One line per run of Figure 3: its projection, batch norm, classes and probes' R²."""
    lines = []
    for t in m.get("trajectories", []):
        r2 = ", ".join("–" if v is None else f"{v:.2f}" for v in (t.get("probe_r2") or []))
        lines.append(
            f"<p class='meta'>{_e(t['run'])}: projection <b>{_e(t['projection'])}</b>, batch norm "
            f"{_e(t.get('bn_mode'))}, classes {_e(', '.join(t.get('class_names', [])))}"
            + (f", probe R² per layer: {_e(r2)}" if r2 else "")
            + "</p>"
        )
    return lines


def _final_rows(m: dict) -> list[str]:
    """Figure 5's final numbers per run."""
    if not m.get("final"):
        return []
    rows = [[_e(k), _number(v.get("norm_cv")), _number(v.get("cos_std"))] for k, v in m["final"].items()]
    return [_rows_table(["run", "final norm CV", "final cosine std"], rows)]


def _run_rows(m: dict) -> list[str]:
    """The runs behind an experiment, folded: directory, chosen hyper-parameters, epochs, accuracy, ECE."""
    runs = m.get("runs") or {}
    if not runs:
        return []
    rows = [
        [
            _e(k),
            _e(r.get("run_dir")),
            _e(" ".join(r.get("hyper") or []) or "–"),
            _e(r.get("epochs")),
            _number(r.get("test_accuracy"), True),
            _number(r.get("test_ece")),
        ]
        for k, r in runs.items()
    ]
    header = ["run", "directory", "hyper-parameters (best of sweep)", "epochs", "test acc", "ECE"]
    return ["<details><summary>runs behind this experiment</summary>" + _rows_table(header, rows) + "</details>"]


def render_report(manifests: list[dict], directory: str | Path) -> str:
    """The HTML text of the report for ``manifests`` (figures read from ``directory``)."""
    directory = Path(directory)
    scales = sorted({str(m.get("scale")) for m in manifests})
    synthetic = [m["name"] for m in manifests if m.get("synthetic")]
    head = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta name='generator' content='{GENERATOR}'>",
        "<title>mixcollapse: Pushing Boundaries, reproduced</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Pushing Boundaries: Mixup's Influence on Neural Collapse (Fisher, Meng, Papyan, ICLR 2024), "
        "reproduced with mixcollapse</h1>",
        f"<p class='meta'>{_e(directory)} · scale: {_e(', '.join(scales))} · "
        f"generated {time.strftime('%Y-%m-%d %H:%M')}</p>",
    ]
    if "tiny" in scales:
        head.append(
            "<p class='banner'>Tiny scale: small models, a few images and epochs, for checking the pipeline; "
            "numbers are not comparable with the paper's. Use <code>--scale full</code> for those.</p>"
        )
    if "cpu" in scales:
        head.append(
            "<p class='meta'>CPU scale: the real data with a small network on a subset of the training "
            "images, trained once per variant (no sweep) into the terminal phase; the configuration is "
            "comparable with the paper's, test accuracy is not (presets/*-cpu.yaml).</p>"
        )
    halving = [m["name"] for m in manifests if m.get("sweep") == "halving"]
    if halving:
        head.append(
            f"<p class='meta'>Learning rates of {_e(', '.join(halving))} chosen by successive halving "
            "(<code>--sweep halving</code>: every grid point to 1/9 of its epochs, the best third on), a deviation "
            "from Appendix B.1's full sweep; the pick is still the best final test accuracy.</p>"
        )
    if synthetic:
        head.append(
            f"<p class='banner'><b>Synthetic data</b> ({_e(', '.join(synthetic))}): these results come from "
            "synthetic files written in the datasets' real on-disk formats, not from the real datasets.</p>"
        )
    head.append("<nav>" + "".join(f"<a href='#{_e(m['name'])}'>{_e(m['name'])}</a>" for m in manifests) + "</nav>")
    body = [_section(m, directory) for m in manifests]
    return "\n".join(head + body + ["</body></html>"]) + "\n"


GENERATOR = "mixcollapse report"  # marks the pages this command wrote: those, and only those, it replaces


def check_report_path(path: Path, overwrite: bool = False) -> None:
    """Refuse ``path`` when it is a folder, or a file that is not a report this command wrote (unless ``overwrite``)."""
    if path.is_dir():
        raise IsADirectoryError(f"--out {path} is a folder; give the HTML file to write, e.g. {path / 'report.html'}")
    if path.exists() and not overwrite:
        with open(path, "rb") as f:
            start = f.read(4096)
        if f"content='{GENERATOR}'".encode() not in start:
            raise FileExistsError(
                f"--out {path} exists and is not a report written by mixcollapse; pass --overwrite "
                "(overwrite=True) to replace it or choose another --out"
            )


def build_report(directory: str | Path, path: str | Path | None = None, overwrite: bool = False) -> Path:
    """Write the report of ``directory`` to ``path`` (default ``directory/report.html``) and return its path.

    An existing report written by this command is replaced; any other file only with ``overwrite``.
    """
    directory = Path(directory)
    path = Path(path) if path is not None else directory / "report.html"
    check_report_path(path, overwrite)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory; run mixcollapse reproduce --out {directory} first")
    manifests = load_manifests(directory)
    if not manifests:
        raise FileNotFoundError(
            f"{directory} holds no reproduce results (no experiments/*.json); run "
            f"mixcollapse reproduce EXPERIMENT --out {directory} first"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, render_report(manifests, directory))
