"""``rnnkit report DIR``: everything rnnkit can show about one run, as one self-contained HTML
file (every image a data: URI, the script inline, no network) or as separate PNG files.

What is here: ``collect`` runs the probes on a run and draws their figures into memory
(training curves, diagnostics, gradient flow before/after training, step-Jacobian spectra, gate
saturation, discovered cells, samples at several temperatures, and the activation trace the
page colours); ``write_html`` and ``write_pngs`` put that on disk, atomically. The page itself is
``report.html`` beside this file (a ``string.Template``): the activation heatmap is drawn in the
browser from int8-quantised unit values so that every unit of every layer can be selected.

What is not here: the probes (``rnnkit.analysis.*``) and the plots (``*_plots.py``). Runs of
tasks other than the language model get their training curves and the task's own figures.
"""

from __future__ import annotations

import base64
import html
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import numpy as np
import torch

from rnnkit.checkpoint.runs import find_checkpoint
from rnnkit.errors import UserError
from rnnkit.io_errors import writing
from rnnkit.nn.registry import get_cell
from rnnkit.tasks import get_task
from rnnkit.tasks.saved import read_run_checkpoint
from rnnkit.wording import plural

TEMPERATURES = (0.5, 0.8, 1.0)


@dataclass
class Figure:
    name: str  # file stem for --format png
    title: str
    caption: str
    png: bytes


@dataclass
class ReportData:
    """What the report shows, computed once; rendered by ``write_html`` or ``write_pngs``."""

    title: str
    subtitle: str
    sections: dict[str, list[Figure]] = field(default_factory=dict)
    matches: list = field(default_factory=list)  # text_features.UnitMatch
    samples: list[tuple[float, str]] = field(default_factory=list)
    trace_payload: dict | None = None
    notes: dict[str, str] = field(default_factory=dict)
    traced: object = None  # activations.Trace, for the PNG-only figures


def _draw(function, *args, **kwargs) -> bytes:
    """Run a plot function that writes a PNG path and return the bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "figure.png"
        function(*args, path, **kwargs)
        return path.read_bytes()


def collect(
    path: str | Path,
    *,
    text: str | None = None,
    chars: int = 1000,
    gradient_length: int = 100,
    sample_length: int = 300,
    temperatures: tuple[float, ...] = TEMPERATURES,
    seed: int = 0,
    log=print,
    device: torch.device | str = "cpu",
) -> ReportData:
    """Run every probe that applies to the run at ``path`` on ``device`` (gradient flow, the
    trace with its gates, the samples) and draw its figures on the host."""
    log = log or (lambda *_: None)
    run = Path(path)
    ckpt_dir = find_checkpoint(run)
    run_dir = ckpt_dir.parent if ckpt_dir.name in ("best", "last") else ckpt_dir
    _, config, meta = read_run_checkpoint(ckpt_dir)
    m = config.model
    data = ReportData(
        title=f"rnnkit report: {run_dir.name}",
        subtitle=f"--task {config.task.name}, {m.cell.upper()} {m.stack()}, checkpoint {ckpt_dir}",
    )
    data.sections["training"] = _training_figures(run_dir, config, meta)
    if not get_task(config.task.name).language_model:
        data.notes["activations"] = (
            "Gradient flow, activations, gates and samples are drawn for language-model runs "
            f"(--task lm); this run is --task {config.task.name}."
        )
        data.sections["training"] += _task_figures(run_dir)
        return data
    from rnnkit.analysis.runs import language_model_run, validation_text

    model, vocab, _ = language_model_run(ckpt_dir, device)
    long_text = text if text is not None else validation_text(ckpt_dir, max(chars, 20000))
    if get_cell(m.cell).probes:
        log(f"report: gradient flow over {plural(gradient_length, 'step')}")
        data.sections["gradients"] = _gradient_figures(
            ckpt_dir, long_text, gradient_length, seed, device
        )
        log(f"report: tracing {plural(min(chars, len(long_text)), 'character')}")
        _activation_sections(data, model, vocab, long_text[:chars])
    else:
        data.notes["gradients"] = (
            f"The probes (gradient flow, activations, gates) read the cells whose registry row "
            f"allows them; this run's --cell {m.cell} is not one of them."
        )
    log(f"report: samples at temperatures {', '.join(map(str, temperatures))}")
    from rnnkit.generation import generate

    for temperature in temperatures:
        sample = generate(model, vocab, length=sample_length, temperature=temperature, seed=seed)
        data.samples.append((temperature, sample[0]))
    return data


def _training_figures(run_dir: Path, config, meta: dict | None = None) -> list[Figure]:
    from rnnkit.tasks import get_task
    from rnnkit.training.diagnostics import plot_ratios
    from rnnkit.training.metrics import plot_losses

    figures = []
    metrics = run_dir / "metrics.csv"
    if metrics.exists():
        unit = get_task(config.task.name)(config, meta).loss_name  # nats/char, MSE...
        ylabel = unit if unit.startswith("loss") else f"loss ({unit})"
        png = _draw(plot_losses, metrics, title=f"{run_dir.name}: training curves", ylabel=ylabel)
        caption = "Training loss at every logged step and validation loss at every evaluation."
        figures.append(Figure("loss", "Training curves", caption, png))
    ratios = run_dir / "diagnostics.csv"
    if ratios.exists():
        png = _draw(plot_ratios, ratios, title=f"{run_dir.name}: diagnostics")
        caption = (
            "Per parameter: gradient norm / weight norm, and the optimiser's update norm / "
            "weight norm (rnnkit train --diagnostics). About 1e-3 is the usual healthy update."
        )
        figures.append(Figure("diagnostics", "Update-to-data ratios", caption, png))
    return figures


def _task_figures(run_dir: Path) -> list[Figure]:
    from rnnkit.analysis.captions import TASK_FIGURES

    skip = {"loss.png", "diagnostics.png"}
    figures = []
    for p in sorted(run_dir.glob("*.png")):
        if p.name in skip:
            continue
        title, caption = TASK_FIGURES.get(p.name, (p.stem.replace("_", " "), p.name))
        figures.append(Figure(p.stem, title, caption, p.read_bytes()))
    return figures


def _gradient_figures(ckpt_dir: Path, text: str, length: int, seed: int, device) -> list[Figure]:
    from rnnkit.analysis.gradient_flow import run_gradient_flow
    from rnnkit.analysis.gradient_plots import plot_gradient_flow, plot_jacobian_spectrum

    flow = run_gradient_flow(ckpt_dir, text=text, length=length, seed=seed, device=device)
    flows = {"this run": flow}
    return [
        Figure(
            "gradient_flow",
            "Gradient flow through time",
            "||dL/dh_k|| of the top layer for the loss at the last step, against the distance "
            "to it: the freshly initialised model (before) and the trained one (after). A "
            "straight falling line on this log scale is a vanishing gradient.",
            _draw(plot_gradient_flow, flows),
        ),
        Figure(
            "jacobian_spectrum",
            "Step Jacobians",
            "Singular values of the state Jacobian ds_t/ds_(t-1) along a sequence: above 1 "
            "the state amplifies perturbations (exploding), below 1 it forgets them.",
            _draw(plot_jacobian_spectrum, flows),
        ),
    ]


def _activation_sections(data: ReportData, model, vocab, text: str) -> None:
    from rnnkit.analysis import activation_plots as plots
    from rnnkit.analysis.activations import trace
    from rnnkit.analysis.gates import gate_saturation
    from rnnkit.analysis.text_features import discover_units, text_features

    traced = trace(model, vocab, text)
    found = discover_units(traced, text_features(traced.text))
    data.matches = sorted(found, key=lambda m: -abs(m.r))  # the clearest cells first
    data.trace_payload = trace_payload(traced, data.matches)
    if traced.cell == "rnn":
        data.notes["gates"] = "A vanilla RNN has no gates."
    elif not any(traced.gates):  # the trace reads the gates of LSTM, GRU and the modern layers
        data.notes["gates"] = f"The trace reads no gates of a {traced.cell} network."
    else:
        saturation = gate_saturation(traced)
        caption = (
            "Per unit: the fraction of characters at which a gate is below 0.1 (x) or above "
            "0.9 (y), as in Karpathy, Johnson & Fei-Fei (2015). Points near the top-left "
            "corner are gates that are almost always open; near x + y = 1, switching gates."
        )
        png = _draw(plots.plot_gate_saturation, saturation, cell=traced.cell)
        data.sections["gates"] = [Figure("gate_saturation", "Gate saturation", caption, png)]
    data.traced = traced


def _unit_figures(data: ReportData, limit: int = 8) -> list[Figure]:
    """PNG only (the page draws these itself): the discovered cells side by side, and a
    heatmap of the best unit of each of the ``limit`` best-matched features."""
    from rnnkit.analysis import activation_plots as plots

    if data.traced is None or not data.matches:
        return []
    caption = "The unit that tracks each text feature best, over the traced text."
    png = _draw(plots.plot_discovered_units, data.traced, data.matches)
    figures = [Figure("discovered_units", "Discovered cells", caption, png)]
    best: dict[str, object] = {}
    for match in data.matches:
        if abs(match.r) > abs(getattr(best.get(match.feature), "r", 0.0)):
            best[match.feature] = match
    for match in sorted(best.values(), key=lambda m: -abs(m.r))[:limit]:
        png = _draw(plots.plot_activation_heatmap, data.traced, match.key)
        caption = f"{_label(match)}: r = {match.r:+.2f} with '{match.feature}'"
        figures.append(Figure(f"heatmap_{match.feature}", match.feature, caption, png))
    return figures


def _label(match) -> str:
    return f"layer {match.layer + 1} {match.kind}[{match.unit}]"


def trace_payload(traced, matches) -> dict:
    """The JSON the page's script reads: text, top predictions, every unit's values as int8
    (value / scale * 127, ``scale`` = the unit's largest |value|) in one base64 string, and the
    selector's entries."""
    from rnnkit.analysis.activations import units, values

    keys = units(traced)
    table = np.stack([values(traced, key) for key in keys]).astype(np.float64)  # (U, L)
    scale = np.maximum(np.abs(table).max(axis=1), 1e-8)  # (U,)
    quantised = np.round(table / scale[:, None] * 127).astype(np.int8)
    entries = []
    for (layer, kind, unit), s in zip(keys, scale, strict=True):
        label = f"layer {layer + 1} {kind}[{unit}]"
        colour_range = 1.0 if kind == "h" else float(s)  # h lives in [-1, 1]; c is unbounded
        entries.append({"label": label, "scale": float(s), "range": colour_range})
    index = {key: i for i, key in enumerate(keys)}
    return {
        "text": list(traced.text),
        "top": [[[c, round(float(p), 4)] for c, p in top] for top in traced.top],
        "units": entries,
        "values": base64.b64encode(quantised.tobytes()).decode("ascii"),
        "discovered": [
            [index[(m.layer, m.kind, m.unit)], m.feature, round(float(m.r), 3)] for m in matches
        ],
    }


SECTION_TITLES = {
    "training": "Training",
    "gradients": "Gradient flow",
    "gates": "Gate saturation",
    "activations": "Activations over text",
    "cells": "Discovered cells",
    "samples": "Samples",
}


def render_html(data: ReportData) -> str:
    """The whole page as one string (no external resource)."""
    parts = []
    for key, title in SECTION_TITLES.items():
        body = "".join(_figure_html(f) for f in data.sections.get(key, []))
        if key == "activations":
            body += _activations_html(data)
        elif key == "cells":
            body += _cells_table(data)
        elif key == "samples":
            body += "".join(
                f"<h3>temperature {t}</h3><pre class='sample'>{html.escape(s)}</pre>"
                for t, s in data.samples
            )
        if key in data.notes:
            body += f"<p class='note'>{html.escape(data.notes[key])}</p>"
        if body:
            parts.append((key, title, body))
    sections = "\n".join(
        f"<section id='{key}'><h2>{title}</h2>{body}</section>" for key, title, body in parts
    )
    nav = " ".join(f"<a href='#{key}'>{title}</a>" for key, title, _ in parts)
    payload = json.dumps(data.trace_payload, separators=(",", ":")).replace("</", "<\\/")
    template = Template((Path(__file__).with_name("report.html")).read_text(encoding="utf-8"))
    return template.substitute(
        title=html.escape(data.title),
        subtitle=html.escape(data.subtitle),
        nav=nav,
        sections=sections,
        trace_json=payload,
    )


def _figure_html(figure: Figure) -> str:
    uri = "data:image/png;base64," + base64.b64encode(figure.png).decode("ascii")
    return (
        f"<figure id='fig-{figure.name}'><img alt='{html.escape(figure.title)}' src='{uri}'>"
        f"<figcaption><b>{html.escape(figure.title)}.</b> {html.escape(figure.caption)}"
        "</figcaption></figure>"
    )


def _activations_html(data: ReportData) -> str:
    payload = data.trace_payload
    if payload is None:
        return ""
    options = []
    if payload["discovered"]:
        found = "".join(
            f"<option value='{u}'>{html.escape(payload['units'][u]['label'])} "
            f"~ {html.escape(feature)} (r={r:+.2f})</option>"
            for u, feature, r in payload["discovered"]
        )
        options.append(f"<optgroup label='discovered cells'>{found}</optgroup>")
    groups: dict[str, list[str]] = {}
    for u, unit in enumerate(payload["units"]):
        group = unit["label"].split("[")[0]
        groups.setdefault(group, []).append(f"<option value='{u}'>{unit['label']}</option>")
    options += [f"<optgroup label='{g}'>{''.join(o)}</optgroup>" for g, o in groups.items()]
    return (
        "<p>Each character is coloured by the chosen unit's value after reading it "
        "(<span class='legend'></span> negative to positive). Hover a character for the "
        "model's most likely next characters.</p>"
        "<div class='controls'><label for='unit-select'>unit </label>"
        f"<select id='unit-select'>{''.join(options)}</select> "
        "<span id='unit-label'></span></div><div id='heatmap'></div>"
    )


def _cells_table(data: ReportData) -> str:
    if data.trace_payload is None or not data.matches:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(m.feature)}</td><td>{_label(m)}</td>"
        f"<td class='num'>{m.r:+.3f}</td><td><button class='show' "
        f"data-unit='{u}'>show</button></td></tr>"
        for m, (u, _, _) in zip(data.matches, data.trace_payload["discovered"], strict=True)
    )
    return (
        "<p>Each unit's activation correlated (Pearson r) with simple features of the text; the "
        "best units per feature.</p><table id='cells-table'><tr><th>feature</th><th>unit</th>"
        f"<th>r</th><th></th></tr>{rows}</table>"
    )


def write_html(data: ReportData, out: str | Path) -> Path:
    """Write the page atomically (a temp file beside ``out``, then ``os.replace``)."""
    return _atomic_write(Path(out), render_html(data).encode("utf-8"))


def write_pngs(data: ReportData, out_dir: str | Path) -> list[Path]:
    """Every figure as ``out_dir/<name>.png`` (the heatmaps of the discovered cells included)."""
    out_dir = check_png_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = [f for section in data.sections.values() for f in section] + _unit_figures(data)
    return [_atomic_write(out_dir / f"{f.name}.png", f.png) for f in figures]


def check_png_dir(out_dir: str | Path) -> Path:
    """``--format png`` writes a directory: refuse a file in its place."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"-o {out_dir} is a file; --format png writes a directory of figures")
    return out_dir


def _atomic_write(path: Path, content: bytes) -> Path:
    if path.is_dir():
        raise UserError(f"-o {path} is a directory; give the .html file to write")
    if not path.parent.is_dir():
        raise UserError(f"-o {path}: the directory {path.parent} does not exist")
    with writing(path):  # full disk, file-size limit, read-only: one line naming the file
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        umask = os.umask(0)
        os.umask(umask)
        try:
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is an ordinary file
            with os.fdopen(fd, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path
