"""paper_values.yaml holds every row of the paper's Tables 1, 2, 3, 6 and 7: read back from their transcription
(tests/paper_tables.md, verbatim from dps_facts.md §5), so a missing or mistyped row, method or value fails."""

from __future__ import annotations

import re
from pathlib import Path

from dps_exp.analysis.paper_table import load_values

TABLES = Path(__file__).with_name("paper_tables.md")
# the transcription's table headers: data set and the two metrics of each "a / b" cell
GRIDS = {"Table 1": ("ffhq", "fid", "lpips"), "Table 2": ("imagenet", "fid", "lpips"),
         "Table 6": ("ffhq", "psnr", "ssim"), "Table 7": ("imagenet", "psnr", "ssim")}  # fmt: skip
COLUMNS = {"SR×4": "sr4", "Inpaint box": "inpaint_box", "Inpaint random": "inpaint_random",
           "Deblur gauss": "deblur_gauss", "Deblur motion": "deblur_motion"}  # fmt: skip


def number(text: str) -> float | None:
    return None if text.strip() == "–" else float(text)


def transcribed() -> dict[tuple[str, str, str, str], tuple[float | None, str]]:
    """{(data set, task, method label, metric): (value, table)} of every cell of the transcription."""
    cells, grid, columns = {}, None, []
    for line in TABLES.read_text().splitlines():
        if line.startswith("### "):
            grid = next((name for name in GRIDS if name in line), None)
        elif grid and line.startswith("| Method"):
            columns = [COLUMNS[c.strip()] for c in line.strip("|").split("|")[1:]]
        elif grid and line.startswith("| ") and not line.startswith("|---"):
            method, *values = (c.strip().strip("*") for c in line.strip("|").split("|"))
            dataset, first, second = GRIDS[grid]
            for task, cell in zip(columns, values, strict=True):
                a, b = cell.split(" / ") if "/" in cell else (cell, cell)
                cells[dataset, task, method, first] = (number(a), grid)
                cells[dataset, task, method, second] = (number(b), grid)
    # Table 3 is a sentence (over two lines): "DPS 55.61 / 0.399; OSS 137.7 / 0.635; ..." (FFHQ, FID / LPIPS)
    (sentence,) = re.findall(
        r"\*\*Table 3, phase retrieval \(FFHQ\), FID / LPIPS:\*\*(.*?)\. Every", TABLES.read_text(), re.S
    )
    for method, fid, lpips in re.findall(r"(\w+) ([\d.]+) / ([\d.]+)", sentence):
        cells["ffhq", "phase_retrieval", method, "fid"] = (float(fid), "Table 3")
        cells["ffhq", "phase_retrieval", method, "lpips"] = (float(lpips), "Table 3")
    return cells


def test_every_cell_of_the_papers_tables_is_in_paper_values():
    values = load_values()
    cells = transcribed()
    assert len(cells) == 4 * 5 * 6 * 2 + 4 * 2  # 4 grids of 5 tasks x 6 methods x 2 metrics; Table 3: 4 x 2
    ours = {}
    for dataset, spec in values["datasets"].items():
        for task, by_method in spec["values"].items():
            for method, metrics in by_method.items():
                for metric, value in metrics.items():
                    table = spec["source"].get(task, spec["source"][metric]).split(" (")[0]
                    ours[dataset, task, values["methods"][method]["label"], metric] = (value, table)
    # the phase-retrieval table prints no PSNR or SSIM: paper_values.yaml says so with nulls
    unprinted = {k: v for k, v in ours.items() if k not in cells}
    assert unprinted and all(k[1] == "phase_retrieval" and k[3] in ("psnr", "ssim") for k in unprinted)
    assert {v for v in unprinted.values()} == {(None, "Table 3")}
    assert {k: v for k, v in ours.items() if k in cells} == cells


def test_every_method_names_a_sampler_with_a_paper_protocol_file():
    from dps_exp.run.cli import CONF_DIR

    values = load_values()
    for method, spec in values["methods"].items():
        text = (CONF_DIR / "sampler" / f"{method}.yaml").read_text()
        assert f".{spec['sampler']}\n" in text, method  # the sampler YAML's _target_ names the class
        assert (CONF_DIR / "protocol" / "paper" / f"{method}.yaml").is_file(), method
