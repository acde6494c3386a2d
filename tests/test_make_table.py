"""scripts/make_table.py on synthetic results with known metrics: the table, cell for cell, in all three formats.

The expected tables below are computed by hand from the rows written here and the paper's values
(dps_exp/analysis/paper_values.yaml): SR x4 has one seed (PSNR 24, 26 -> 25.00 ± 1.41), random inpainting two seeds
averaged per image (25 and 28 -> 26.50 ± 2.12; FID 20 and 22 over seeds -> 21.00 ± 1.41), phase retrieval the
best of 4 seeds by PSNR (seed 1: PSNR 14, LPIPS 0.4). The runs follow the paper's protocol but for random
inpainting's mask and the number of images (2, 2 and 1 instead of 1000), which the notes say, a remark shared by
rows said once. Every other method of the paper's tables shows the paper's values beside an empty "ours".
"""

from __future__ import annotations

import io
import json
import sys

from dps_exp.analysis import make_table
from dps_exp.analysis.paper_table import build, load_values, to_csv, to_markdown
from dps_exp.analysis.report import collect

PHYSICS = {
    "sr4": {"_target_": "dps_exp.physics.super_resolution.SuperResolution", "factor": 4},
    "inpaint_random": {"_target_": "dps_exp.physics.inpaint.RandomInpainting", "mask": 0.1},  # not the paper's
    "phase_retrieval": {"_target_": "dps_exp.physics.phase.PhaseRetrieval", "oversample": 2.0},
}


def write_run(path, task, seed, step_size, images, fid=None, first=0, **changes):
    """A run directory as the Run writes it: results.jsonl rows (of images `first`, `first` + 1, ...) and
    summary.json with the recorded config of a paper run (`experiment=paper/ffhq_*`), with groups replaced by
    `changes` (e.g. data={...})."""
    path.mkdir(parents=True)
    rows = []
    for index, metrics in enumerate(images, start=first):
        row = {"key": f"{index:05d}-{seed}", "index": index, "source": f"/data/{index:05d}.png", "seed": seed,
               "params": {"sampler.step_size": step_size}, "status": "ok" if metrics else "diverged",
               "metrics": metrics or {"psnr": None}}  # fmt: skip
        rows.append(row)
    (path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "physics": {**PHYSICS[task], "noise": {"kind": "gaussian", "sigma": 0.05}},
        "denoiser": {"_target_": "dps_exp.denoisers.pretrained.PretrainedADM", "architecture": "ffhq"},
        "sampler": {
            "_target_": "dps_exp.samplers.dps.DPS",
            "steps": 1000,
            "variance": "learned",
            "step_size": step_size,
        },
        "data": {"_target_": "dps_exp.data.datasets.FFHQVal", "first": 0, "count": 1000, "size": 256},
        "metrics": {"names": ["psnr", "ssim", "lpips", "fid"], "lpips_net": "vgg", "fid_features": 2048},
    }
    config.update(changes)
    summary = {"status": "complete", "config": config, "metrics": {"fid": fid} if fid else {}}
    (path / "summary.json").write_text(json.dumps(summary))


def synthetic_runs(root):
    write_run(root / "sr4", "sr4", 0, 0.3,
              [{"psnr": 24.0, "ssim": 0.80, "lpips": 0.20}, {"psnr": 26.0, "ssim": 0.90, "lpips": 0.30}],
              fid={"value": 40.0, "n": 2})  # fmt: skip
    write_run(
        root / "random" / "0", "inpaint_random", 0, 0.5, [{"psnr": 24.0}, {"psnr": 28.0}], {"value": 20.0, "n": 2}
    )
    write_run(root / "random" / "1", "inpaint_random", 1, 0.5, [{"psnr": 26.0}, None], {"value": 22.0, "n": 2})
    for seed, (psnr, lpips) in enumerate([(10.0, 0.5), (14.0, 0.4), (12.0, 0.3), (11.0, 0.6)]):
        write_run(root / "phase" / f"point-{seed}", "phase_retrieval", seed, 1.0, [{"psnr": psnr, "lpips": lpips}])


HEAD = (
    "| Task | Method | Images | Seeds | Step size | FID ↓ | paper | Δ | LPIPS ↓ | paper | Δ | PSNR ↑ | paper | Δ "
    "| SSIM ↑ | paper | Δ |"
)
DPS_ROWS = """\
| SR ×4 | DPS | 2 | 1 | 0.3 | 40.00 (2) | 39.35 | +0.65 | 0.250 ± 0.071 (2) | 0.214 | +0.036 | 25.00 ± 1.41 (2) | 25.67 | -0.67 | 0.850 ± 0.071 (2) | 0.852 | -0.002 |
| Inpainting (box) | DPS | 0 | 0 | – | – | 33.12 | – | – | 0.168 | – | – | 22.47 | – | – | 0.873 | – |
| Inpainting (random) | DPS | 2 | 2 | 0.5 | 21.00 ± 1.41 (2) | 21.19 | -0.19 | – | 0.212 | – | 26.50 ± 2.12 (2) | 25.23 | +1.27 | – | 0.851 | – |
| Gaussian deblur | DPS | 0 | 0 | – | – | 44.05 | – | – | 0.257 | – | – | 24.25 | – | – | 0.811 | – |
| Motion deblur | DPS | 0 | 0 | – | – | 39.92 | – | – | 0.242 | – | – | 24.92 | – | – | 0.859 | – |
| Phase retrieval | DPS | 1 | 4 | 1 | – | 55.61 | – | 0.400 (1) | 0.399 | +0.001 | 14.00 (1) | – | – | – | – | – |
""".splitlines()
NOTES = """\
- SR ×4, DPS; Inpainting (random), DPS: images = 2 (paper: 1000)
- Inpainting (random), DPS: physics.mask = 0.1 (paper: 0.08)
- Inpainting (random), DPS: 1 of 4 results diverged, left out of the cells
- Phase retrieval, DPS: per image the best of its samples (one per seed; the paper: best of 4), picked by psnr
- FID of Phase retrieval, DPS (best of seeds): the results record no reconstruction images
- Phase retrieval, DPS: images = 1 (paper: 1000)
- Paper values (Chung et al., ICLR 2023 (arXiv 2209.14687)): FID: Table 1; LPIPS: Table 1; PSNR: Table 6; \
SSIM: Table 6; Phase retrieval: Table 3 (FID, LPIPS; best of 4).
"""

LATEX_HEAD = r"""% FFHQ 256$\times$256 (1k validation images): reproduced vs. paper. Ours: mean $\pm$ std over images (n).
\begin{tabular}{llrrrrrrrrrrrrrrr}
\toprule
 & & & & & \multicolumn{3}{c}{FID $\downarrow$} & \multicolumn{3}{c}{LPIPS $\downarrow$} & \multicolumn{3}{c}{PSNR $\uparrow$} & \multicolumn{3}{c}{SSIM $\uparrow$} \\
\cmidrule(lr){6-8} \cmidrule(lr){9-11} \cmidrule(lr){12-14} \cmidrule(lr){15-17}
Task & Method & Images & Seeds & Step size & ours & paper & $\Delta$ & ours & paper & $\Delta$ & ours & paper & $\Delta$ & ours & paper & $\Delta$ \\
\midrule
SR $\times$4 & DPS & 2 & 1 & 0.3 & 40.00 (2) & 39.35 & $+0.65$ & 0.250 $\pm$ 0.071 (2) & 0.214 & $+0.036$ & 25.00 $\pm$ 1.41 (2) & 25.67 & $-0.67$ & 0.850 $\pm$ 0.071 (2) & 0.852 & $-0.002$ \\
SR $\times$4 & DDRM & 0 & 0 & -- & -- & 62.15 & -- & -- & 0.294 & -- & -- & 25.36 & -- & -- & 0.835 & -- \\
"""
LATEX_TAIL = r"""Phase retrieval & ER & 0 & 0 & -- & -- & 214.10 & -- & -- & 0.738 & -- & -- & -- & -- & -- & -- & -- \\
\bottomrule
\end{tabular}
% SR $\times$4, DPS; Inpainting (random), DPS: images = 2 (paper: 1000)
"""

CSV_HEAD = """\
dataset,task,method,row,images,seeds,step_size,fid,fid_std,fid_n,fid_paper,fid_diff,lpips,lpips_std,lpips_n,lpips_paper,lpips_diff,psnr,psnr_std,psnr_n,psnr_paper,psnr_diff,ssim,ssim_std,ssim_n,ssim_paper,ssim_diff
ffhq,sr4,dps,"SR ×4, DPS",2,1,0.3,40,,2,39.35,0.65,0.25,0.0707107,2,0.214,0.036,25,1.41421,2,25.67,-0.67,0.85,0.0707107,2,0.852,-0.002
ffhq,sr4,ddrm,"SR ×4, DDRM",0,0,,,,0,62.15,,,,0,0.294,,,,0,25.36,,,,0,0.835,
"""
CSV_DPS = [
    'ffhq,inpaint_random,dps,"Inpainting (random), DPS",2,2,0.5,21,1.41421,2,21.19,-0.19,,,0,0.212,,26.5,2.12132,2,25.23,1.27,,,0,0.851,',
    'ffhq,phase_retrieval,dps,"Phase retrieval, DPS",1,4,1,,,0,55.61,,0.4,,1,0.399,0.001,14,,1,,,,,0,,',
]


def paper_only_rows(markdown: str) -> list[list[str]]:
    """The table's rows other than DPS's, split into cells."""
    rows = [line.strip("|").split(" | ") for line in markdown.splitlines() if line.startswith("| ")][1:]
    return [[c.strip() for c in row] for row in rows if row[1].strip() != "DPS"]


def test_make_table_reproduces_a_hand_computed_table_in_three_formats(tmp_path, capsys):
    synthetic_runs(tmp_path / "runs")
    out = tmp_path / "tables"
    assert make_table.main([str(tmp_path / "runs"), "--out", str(out)]) == 0
    markdown = (out / "ffhq.md").read_text()
    lines = markdown.splitlines()
    assert lines[:3] == ["### FFHQ 256×256 (1k validation images): reproduced vs. paper", "", HEAD]
    assert [line for line in lines if "| DPS |" in line] == DPS_ROWS
    assert markdown.endswith("\n\n" + NOTES)
    # every other method of the paper's Tables 1, 6 and 3: a row with the paper's values and no run of ours
    values, tasks = load_values(), {t: spec["label"] for t, spec in load_values()["tasks"].items()}
    expected = [[tasks[task], values["methods"][method]["label"], "0", "0", "–"]
                + [cell for m in ("fid", "lpips", "psnr", "ssim") for cell in
                   ("–", "–" if paper[m] is None else f"{paper[m]:.{values['metrics'][m]['decimals']}f}", "–")]
                for task, by_method in values["datasets"]["ffhq"]["values"].items()
                for method, paper in by_method.items() if method != "dps"]  # fmt: skip
    assert paper_only_rows(markdown) == expected and len(expected) == 28
    latex = (out / "ffhq.tex").read_text()
    assert latex.startswith(LATEX_HEAD) and LATEX_TAIL in latex
    csv_text = (out / "ffhq.csv").read_text()
    assert csv_text.startswith(CSV_HEAD) and all(line in csv_text.splitlines() for line in CSV_DPS)
    assert len(csv_text.splitlines()) == 1 + 34
    assert markdown in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["ffhq.csv", "ffhq.md", "ffhq.tex"]


def test_fid_is_recomputed_where_no_run_recorded_it(tmp_path):
    """Two shards of one seed: neither summary's FID is the set's, so the table asks for it over the union."""
    write_run(tmp_path / "a", "sr4", 0, 0.3, [{"psnr": 24.0}], fid={"value": 1.0, "n": 1})
    write_run(tmp_path / "b", "sr4", 0, 0.3, [{"psnr": 26.0}], fid={"value": 2.0, "n": 1}, first=1)
    asked = []

    def fid(rows, config):
        asked.append(sorted(r["dir"].rsplit("/", 1)[1] for r in rows))
        return {"value": 7.0, "n": len(rows)}

    table = build(collect([tmp_path / "a", tmp_path / "b"]), "ffhq", load_values(), fid)
    sr4 = next(row for row in table.rows if row.task == "sr4")
    assert asked == [["a", "b"]] and (sr4.cells["fid"].mean, sr4.cells["fid"].n) == (7.0, 2)


def test_an_image_held_by_several_runs_is_in_the_fid_set_once(tmp_path):
    """Shards next to their merged run (`make_table.py outputs/` finds all three): FID over 2 images, not 4."""
    write_run(tmp_path / "shard0", "sr4", 0, 0.3, [{"psnr": 24.0}])
    write_run(tmp_path / "shard1", "sr4", 0, 0.3, [{"psnr": 26.0}], first=1)
    write_run(tmp_path / "merged", "sr4", 0, 0.3, [{"psnr": 24.0}, {"psnr": 26.0}])
    table = build(
        collect(sorted(tmp_path.iterdir())), "ffhq", load_values(), lambda rows, config: {"value": 7.0, "n": len(rows)}
    )
    sr4 = next(row for row in table.rows if row.task == "sr4")
    assert (sr4.images, sr4.cells["psnr"].n, sr4.cells["fid"].n) == (2, 2, 2)


def test_each_step_size_convention_gets_its_own_row(tmp_path):
    write_run(tmp_path / "scale", "sr4", 0, 0.3, [{"psnr": 24.0}])
    write_run(tmp_path / "zeta", "sr4", 0, 2.0, [{"psnr": 26.0}, {"psnr": 28.0}])
    table = build(collect([tmp_path / "zeta", tmp_path / "scale"]), "ffhq", load_values())
    sr4 = [(row.step_sizes, row.images, row.cells["psnr"].mean) for row in table.rows if row.images]
    assert sr4 == [([0.3], 1, 24.0), ([2.0], 2, 27.0)]
    gap = (
        "FID of SR ×4, DPS (step size 0.3), seed 0; SR ×4, DPS (step size 2), seed 0: not recorded, and not recomputed"
    )
    assert gap in table.notes


def test_runs_of_an_unknown_data_set_are_left_out_unless_named(tmp_path, capsys):
    write_run(tmp_path / "run", "sr4", 0, 0.3, [{"psnr": 24.0}])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    summary["config"]["denoiser"] = {"_target_": "dps_exp.denoisers.gaussian.StationaryGaussian"}
    summary["config"]["data"]["_target_"] = "dps_exp.data.images.ImageFolder"
    (tmp_path / "run" / "summary.json").write_text(json.dumps(summary))
    assert make_table.main([str(tmp_path / "run"), "--out", str(tmp_path / "t")]) == 1
    err = capsys.readouterr().err
    assert "is left out" in err and not (tmp_path / "t").exists()
    assert err.endswith("error: no table written: every run is left out (the warnings above say why)\n")
    assert make_table.main([str(tmp_path / "run"), "--out", str(tmp_path / "t"), "--paper", "imagenet"]) == 0
    assert "| SR ×4 | DPS | 1 | 1 | 0.3 |" in (tmp_path / "t" / "imagenet.md").read_text()
    assert make_table.main([str(tmp_path / "nowhere")]) == 2


def table_of(tmp_path, runs: dict, fid=None):
    """The FFHQ table of the runs {name: (write_run's arguments, its config changes)}."""
    for name, (args, changes) in runs.items():
        write_run(tmp_path / name, *args, **changes)
    return build(collect(sorted(tmp_path.iterdir())), "ffhq", load_values(), fid)


def test_notes_name_other_data_and_other_metric_backbones(tmp_path):
    sample = {"_target_": "dps_exp.data.images.SampleImages", "size": 256, "limit": None}  # data=sample
    alex = {"names": ["psnr", "lpips"], "lpips_net": "alex"}  # LPIPS on AlexNet, no FID
    notes = table_of(tmp_path, {
        "sample": (("sr4", 0, 0.3, [{"psnr": 24.0}, {"psnr": 26.0}]), {"data": sample}),
        "alex": (("inpaint_random", 0, 0.5, [{"psnr": 24.0}]), {"metrics": alex}),
    }).notes  # fmt: skip
    assert notes[:-1] == [
        "FID of SR ×4, DPS, seed 0: not recorded, and not recomputed",
        "SR ×4, DPS: data._target_ = dps_exp.data.images.SampleImages (paper: dps_exp.data.datasets.FFHQVal)",
        "SR ×4, DPS: images = 2 (paper: 1000)",
        "FID of Inpainting (random), DPS: left blank: the runs did not ask for it (fid is not in their metrics.names)",
        "Inpainting (random), DPS: physics.mask = 0.1 (paper: 0.08)",
        "Inpainting (random), DPS: metrics.lpips_net = alex (paper: vgg)",
        "Inpainting (random), DPS: images = 1 (paper: 1000)",
    ]


def test_notes_name_unfinished_runs_missing_shards_and_other_weights(tmp_path):
    data = {"_target_": "dps_exp.data.datasets.FFHQVal", "first": 0, "count": 1000, "size": 256}
    local = {
        "_target_": "dps_exp.denoisers.pretrained.PretrainedADM",
        "architecture": "ffhq",
        "checkpoint": "/my/ffhq.pt",
    }
    write_run(tmp_path / "shard0", "sr4", 0, 0.3, [{"psnr": 24.0}], data={**data, "shard": 0, "num_shards": 3})
    write_run(tmp_path / "phase", "phase_retrieval", 0, 0.5, [{"psnr": 24.0}], denoiser=local)
    summary = json.loads((tmp_path / "phase" / "summary.json").read_text())
    (tmp_path / "phase" / "summary.json").write_text(json.dumps(summary | {"status": "interrupted"}))
    notes = build(collect(sorted(tmp_path.iterdir())), "ffhq", load_values()).notes
    assert "SR ×4, DPS: shard 1, 2 of data.num_shards=3 not among the runs: the merged set is partial" in notes
    assert "Phase retrieval, DPS: denoiser.checkpoint = /my/ffhq.pt (paper: unset)" in notes
    assert "Phase retrieval, DPS: 1 run(s) interrupted: resume them (resume=true) to finish" in notes


def test_runs_differing_in_a_sampler_setting_get_a_row_each(tmp_path):
    sampler = {"_target_": "dps_exp.samplers.dps.DPS", "steps": 1000, "variance": "learned", "step_size": 0.3}
    table = table_of(tmp_path, {
        "eta1": (("sr4", 0, 0.3, [{"psnr": 24.0}]), {"sampler": {**sampler, "eta": 1.0}}),
        "eta05": (("sr4", 0, 0.3, [{"psnr": 28.0}]), {"sampler": {**sampler, "eta": 0.5}}),
        "ddim": (("sr4", 0, 0.3, [{"psnr": 20.0}]), {"sampler": {**sampler, "eta": 0.5, "steps": 100}}),
    })  # fmt: skip
    sr4 = [(row.label, row.images, row.cells["psnr"].mean) for row in table.rows if row.images]
    assert sr4 == [("SR ×4, DPS (η 0.5, steps 100)", 1, 20.0), ("SR ×4, DPS (η 0.5, steps 1000)", 1, 28.0),
                   ("SR ×4, DPS (η 1, steps 1000)", 1, 24.0)]  # fmt: skip
    assert "SR ×4, DPS (η 0.5, steps 100): sampler.steps = 100 (paper: 1000)" in table.notes
    assert "| SR ×4 | DPS (η 1, steps 1000) | 1 | 1 | 0.3 |" in to_markdown(table)
    assert 'ffhq,sr4,dps,"SR ×4, DPS (η 1, steps 1000)",1,1,0.3,' in to_csv(table)  # the CSV tells the rows apart too


def test_runs_differing_in_noise_or_an_operator_setting_get_a_row_each(tmp_path):
    noisy = {"_target_": PHYSICS["sr4"]["_target_"], "factor": 4, "noise": {"kind": "gaussian", "sigma": 0.5}}
    table = table_of(tmp_path, {
        "paper": (("sr4", 0, 0.3, [{"psnr": 24.0}]), {}),
        "noisy": (("sr4", 0, 0.3, [{"psnr": 18.0}]), {"physics": noisy}),
        "mask": (("inpaint_random", 0, 0.5, [{"psnr": 26.0}]), {}),
        "mask8": (("inpaint_random", 0, 0.5, [{"psnr": 25.0}]), {"physics": {**PHYSICS["inpaint_random"], "mask": 0.08,
                                                                        "noise": {"kind": "gaussian", "sigma": 0.05}}}),
    })  # fmt: skip
    got = [(row.label, row.cells["psnr"].mean) for row in table.rows if row.images]
    assert got == [("SR ×4, DPS (σ 0.05)", 24.0), ("SR ×4, DPS (σ 0.5)", 18.0),
                   ("Inpainting (random), DPS (mask 0.08)", 25.0), ("Inpainting (random), DPS (mask 0.1)", 26.0)]  # fmt: skip


def test_fid_is_neither_computed_nor_reported_for_runs_that_did_not_ask_for_it(tmp_path):
    without_fid = {"metrics": {"names": ["psnr", "ssim"]}}
    asked = []
    table = table_of(tmp_path, {
        "sr4": (("sr4", 0, 0.3, [{"psnr": 24.0}, {"psnr": 26.0}]), without_fid),
        **{f"phase{seed}": (("phase_retrieval", seed, 1.0, [{"psnr": 10.0 + seed}]), without_fid) for seed in range(2)},
    }, fid=lambda rows, config: asked.append(rows))  # fmt: skip
    assert asked == [] and all(row.cells["fid"].mean is None for row in table.rows)
    gaps = [note for note in table.notes if note.startswith("FID")]
    assert gaps == ["FID of SR ×4, DPS; Phase retrieval, DPS: left blank: the runs did not ask for it (fid is not in their "
                    "metrics.names)"]  # fmt: skip


class Sink(io.RawIOBase):
    """One file both streams write to, as `make_table.py ... 2>&1 | tee log` sees them."""

    def __init__(self):
        self.data = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.data += b
        return len(b)


def test_stderr_never_lands_inside_the_markdown(tmp_path, monkeypatch):
    synthetic_runs(tmp_path / "runs")
    sink = Sink()
    # a pipe: stdout block-buffered (here: a buffer larger than the table), stderr line-buffered
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BufferedWriter(sink, 1 << 20), encoding="utf-8"))
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(sink, encoding="utf-8", line_buffering=True))
    assert make_table.main([str(tmp_path / "runs"), "--out", str(tmp_path / "tables")]) == 0
    sys.stdout.flush()
    assert (
        sink.data.decode()
        == (tmp_path / "tables" / "ffhq.md").read_text() + f"\n7 runs; tables in {tmp_path / 'tables'}/\n"
    )


def test_baseline_runs_are_printed_beside_the_papers_rows_of_their_method(tmp_path, capsys):
    """Runs of DDRM, PnP-ADMM (on SR ×4) and ER (phase retrieval, best of 4 seeds), recorded as the Run writes
    them: each lands in its method's row beside the paper's values, with its deviations and protocol noted."""
    ddrm = {"_target_": "dps_exp.samplers.ddrm.DDRM", "steps": 20, "eta": 0.85, "eta_b": 1.0}
    pnp = {"_target_": "dps_exp.samplers.pnp_admm.PnPADMM", "iterations": 10, "rho": 0.2, "sigma": 0.2}
    er = {"_target_": "dps_exp.samplers.er.ER", "iterations": 2000}
    none = {"_target_": "dps_exp.denoisers.none.NoPrior"}  # what protocol/paper/er.yaml selects: no FFHQ network
    write_run(tmp_path / "runs" / "ddrm", "sr4", 0, None, [{"psnr": 24.0, "lpips": 0.3}], sampler=ddrm)
    write_run(tmp_path / "runs" / "ddrm10", "sr4", 0, None, [{"psnr": 20.0}], sampler={**ddrm, "steps": 10})
    write_run(tmp_path / "runs" / "pnp", "sr4", 0, None, [{"psnr": 26.0}, {"psnr": 27.0}], sampler=pnp)
    for seed, psnr in enumerate([9.0, 13.0, 11.0, 10.0]):
        write_run(tmp_path / "runs" / "er" / f"point-{seed}", "phase_retrieval", seed, None,
                  [{"psnr": psnr, "lpips": 0.9 - psnr / 100}], sampler=er, denoiser=none)  # fmt: skip
    assert make_table.main([str(tmp_path / "runs"), "--out", str(tmp_path / "t"), "--no-fid-recompute"]) == 0
    markdown = capsys.readouterr().out
    assert (
        "| SR ×4 | DDRM (steps 10) | 1 | 1 | – | – | 62.15 | – | – | 0.294 | – | 20.00 (1) | 25.36 | -5.36 |"
        in markdown
    )
    assert (
        "| SR ×4 | DDRM (steps 20) | 1 | 1 | – | – | 62.15 | – | 0.300 (1) | 0.294 | +0.006 | 24.00 (1) | 25.36 |"
        in markdown
    )
    assert (
        "| SR ×4 | PnP-ADMM | 2 | 1 | – | – | 66.52 | – | – | 0.353 | – | 26.50 ± 0.71 (2) | 26.55 | -0.05 |"
        in markdown
    )
    assert (
        "| Phase retrieval | ER | 1 | 4 | – | – | 214.10 | – | 0.770 (1) | 0.738 | +0.032 | 13.00 (1) | – | – |"
        in markdown
    )
    assert "| SR ×4 | DPS | 0 | 0 | – | – | 39.35 | – |" in markdown  # no DPS run: the paper's row, ours empty
    notes = markdown.split("\n- ", 1)[1]
    assert "- SR ×4, DDRM (steps 10): sampler.steps = 10 (paper: 20)" in notes  # DDRM's protocol, not DPS's
    assert "Phase retrieval, ER: per image the best of its samples" in notes
    assert "PnP-ADMM: the denoiser is the run's diffusion prior at a fixed noise level" in notes
    assert "denoiser" not in "".join(n for n in notes.splitlines() if n.startswith("- Phase retrieval, ER"))
    assert "DPS:" not in notes and "- ER: 2000 iterations" in notes


def test_a_sampler_the_paper_has_no_row_for_gets_a_row_of_its_own(tmp_path):
    other = {"_target_": "my_lab.samplers.Mine", "steps": 50}
    table = table_of(tmp_path, {"mine": (("sr4", 0, None, [{"psnr": 30.0}]), {"sampler": other})})
    sr4 = [(row.method_label, row.images) for row in table.rows if row.task == "sr4"]
    assert sr4 == [("DPS", 0), ("DDRM", 0), ("MCG", 0), ("PnP-ADMM", 0), ("Score-SDE (ILVR)", 0), ("ADMM-TV", 0),
                   ("Mine", 1)]  # fmt: skip
