"""``rnnkit report``: the page is self-contained, holds every section, its data round-trips, and
it works in a real browser (headless Chromium: no console errors, the unit selector recolours
the heatmap, hovering shows the model's predictions)."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from analysis_runs import rnnkit

from browser import headless_chromium
from rnnkit.analysis import report
from rnnkit.analysis.activations import trace, units, values
from rnnkit.analysis.runs import language_model_run

SECTIONS = ("training", "gradients", "gates", "activations", "cells", "samples")


@pytest.fixture(scope="module")
def page(lstm_run, tmp_path_factory):
    data = report.collect(lstm_run, chars=400, gradient_length=30, sample_length=60, log=None)
    out = tmp_path_factory.mktemp("report") / "report.html"
    report.write_html(data, out)
    return data, out


def payload_of(html_text: str) -> dict:
    match = re.search(r'<script type="application/json" id="trace-data">(.*?)</script>', html_text)
    return json.loads(match.group(1))


def test_page_is_self_contained_and_has_every_section(page):
    data, out = page
    text = out.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f"<section id='{section}'>" in text, section
    links = re.findall(r"""(?:src|href)=['"]([^'"]*)['"]""", text)
    assert links and all(link.startswith(("data:image/png;base64,", "#")) for link in links)
    assert "http://" not in text and "https://" not in text
    assert len(data.samples) == 3 and all(len(s) > 0 for _, s in data.samples)
    names = {f.name for section in data.sections.values() for f in section}
    assert {"loss", "diagnostics", "gradient_flow", "jacobian_spectrum"} <= names
    assert "gate_saturation" in names


def test_quantised_values_decode_to_the_trace(page, lstm_run):
    data, out = page
    payload = payload_of(out.read_text(encoding="utf-8"))
    model, vocab, _ = language_model_run(lstm_run)
    traced = trace(model, vocab, "".join(payload["text"]))
    keys = units(traced)
    q = np.frombuffer(base64.b64decode(payload["values"]), dtype=np.int8)
    q = q.reshape(len(keys), len(payload["text"]))
    for u in (0, len(keys) // 2, len(keys) - 1):
        scale = payload["units"][u]["scale"]
        decoded = q[u] / 127 * scale
        np.testing.assert_allclose(decoded, values(traced, keys[u]), atol=scale / 127)
    top = payload["top"][5]
    assert len(top) == 5 and sum(p for _, p in top) <= 1.0 + 1e-6
    for index, feature, r in payload["discovered"]:
        assert 0 <= index < len(keys) and feature and -1 <= r <= 1


def test_rnn_run_says_it_has_no_gates(rnn_run, tmp_path):
    data = report.collect(rnn_run, chars=200, gradient_length=20, sample_length=20, log=None)
    html_text = report.render_html(data)
    assert "A vanilla RNN has no gates." in html_text
    assert "<section id='activations'>" in html_text


def test_cli_report_html_and_png(lstm_run, tmp_path):
    short = ["--chars", 300, "--length", 20, "--sample-length", 40]
    result = rnnkit("report", lstm_run, "-o", "r.html", *short, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "self-contained" in result.stdout and (tmp_path / "r.html").stat().st_size > 50_000
    result = rnnkit("report", lstm_run, "--format", "png", "-o", "figs", *short, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    paths = sorted((tmp_path / "figs").iterdir())
    names = {p.name for p in paths}
    assert {"loss.png", "gradient_flow.png", "gate_saturation.png", "discovered_units.png"} <= names
    assert any(n.startswith("heatmap_") for n in names)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    assert len(result.stdout.splitlines()) == len(paths)  # one "wrote" line per figure


@pytest.mark.parametrize(
    "args, message",
    [
        (["report", "nowhere"], "nowhere"),
        (["report", "{run}", "-o", "missing/dir/r.html"], "does not exist"),
        (["report", "{run}", "-o", "."], "is a directory"),
        (["report", "{run}", "--text", "binary.bin"], "binary"),
        (["report", "{run}", "--text", "empty.txt"], "empty"),
        (["report", "{run}", "--text", "foreign.txt"], "vocabulary"),
        (["report", "{run}", "--chars", "0"], "--chars"),
        (["report", "{run}", "--format", "png", "-o", "empty.txt"], "is a file"),
        (["report", "{run}", "--format", "png", "-o", "empty.txt/x"], "cannot create"),
    ],
)
def test_cli_report_bad_input(lstm_run, tmp_path, args, message):
    (tmp_path / "binary.bin").write_bytes(b"abc\x00\x01\x02" * 10)
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "foreign.txt").write_text("\u4e2d\u6587\u6587\u672c " * 50)
    result = rnnkit(*[a.format(run=lstm_run) for a in args], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()  # progress lines ("report: ...") may come first
    errors = [line for line in lines if not line.startswith("report: ")]
    assert len(errors) == 1 and errors[0].startswith("rnnkit: error: "), result.stderr
    assert message in errors[0] and lines[-1] == errors[0]
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.html")) and not list(tmp_path.glob(".*.tmp"))


# ---- in a real browser ------------------------------------------------------------------------
def browser():
    return headless_chromium()


def test_report_in_headless_chromium(page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _, out = page
    driver = browser()
    try:
        driver.get(Path(out).resolve().as_uri())
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert errors == [], errors
        for section in SECTIONS:
            element = driver.find_element(By.ID, section)
            assert element.is_displayed(), section
        images = driver.find_elements(By.CSS_SELECTOR, "figure img")
        assert images and all(
            driver.execute_script("return arguments[0].naturalWidth", img) > 100 for img in images
        )  # every inlined PNG decoded
        spans = driver.find_elements(By.CSS_SELECTOR, "#heatmap span")
        assert len(spans) == len(payload_of(out.read_text(encoding="utf-8"))["text"])

        def colours():
            return driver.execute_script(
                "return Array.from(document.querySelectorAll('#heatmap span'))"
                ".map(s => s.style.backgroundColor)"
            )

        before = colours()
        select = Select(driver.find_element(By.ID, "unit-select"))
        first = select.first_selected_option.get_attribute("value")
        other = next(o for o in select.options if o.get_attribute("value") != first)
        select.select_by_value(other.get_attribute("value"))
        after = colours()
        assert after != before
        assert driver.find_element(By.ID, "heatmap").get_attribute(
            "data-unit"
        ) == other.get_attribute("value")  # noqa: E501
        label = driver.find_element(By.ID, "unit-label").text
        assert other.text.split(" ~ ")[0] in label
        button = driver.find_elements(By.CSS_SELECTOR, "button.show")[-1]
        driver.execute_script("arguments[0].click()", button)
        assert select.first_selected_option.get_attribute("value") == button.get_attribute(
            "data-unit"
        )  # noqa: E501
        ActionChains(driver).move_to_element(spans[10]).perform()
        tip = driver.find_element(By.ID, "tip")
        assert tip.is_displayed() and "next character" in tip.text
        assert driver.get_log("browser") == []
    finally:
        driver.quit()


def test_written_files_have_ordinary_permissions(page, tmp_path):
    data, out = page
    mode = out.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_mingru_run_gets_curves_probes_samples_and_a_gates_note(tmp_path):
    from analysis_runs import make_run

    run = make_run(tmp_path, "mingru", layers=1, steps=10, diagnostics=False)
    data = report.collect(run, chars=100, sample_length=20, log=None, gradient_length=20)
    html_text = report.render_html(data)
    assert data.sections["gradients"] and data.traced.cell == "mingru"  # probes: any cell
    assert data.notes["gates"] == "The trace reads no gates of a mingru network."
    assert "<section id='training'>" in html_text and len(data.samples) == 3


@pytest.mark.parametrize("cell", ["mlstm", "mamba2"])
def test_a_modern_run_gets_its_gradient_flow_units_and_gate_saturation(tmp_path, cell):
    """A modern layer in the report: the state-gradient flow of h and of its memory, the
    discovered units (h's: the memory is carried, not traced unit by unit) and the saturation
    of the gates its mixer reads out."""
    from analysis_runs import make_run

    from rnnkit.nn.registry import get_cell

    run = make_run(tmp_path, cell, layers=1, steps=10, diagnostics=False)
    data = report.collect(run, chars=100, sample_length=20, log=None, gradient_length=20)
    assert data.sections["gradients"] and data.traced.cell == cell
    assert data.traced.cell_state is None and data.traced.hidden[0].shape[1] == 24
    assert set(data.traced.gates[0]) == set(get_cell(cell).gates)
    assert [f.name for f in data.sections["gates"]] == ["gate_saturation"]
    assert "gates" not in data.notes
    assert "<section id='gates'>" in report.render_html(data)
