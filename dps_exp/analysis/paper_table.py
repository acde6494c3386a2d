"""The paper's tables reproduced from runs on disk: one row per task and method, ours beside the paper's for each
metric, every method the paper reports (DPS and the baselines) with the paper's values where no run is on disk.

A run counts for a task of a data set through its recorded config: the operator class (`physics._target_`)
names the task, the sampler class (`sampler._target_`) the method, the prior's architecture (else the data class)
the data set. Runs of a task and method with the same settings (`SETTINGS`, the sampler's other keys, the
operator's protocol keys) make one row, each other setting of them another; a row's runs are pooled: per
image, several seeds are averaged, or, for best-of-N tasks, the seed with the best `by` metric is kept; a
cell is then mean ± std over images (n). FID is one number per set, for runs that score it: each seed's run
summary holds it; it is recomputed from disk (reconstruction PNGs and source images) for best-of-N selections
and for seeds split over several runs (unmerged shards); ± is then the std over seeds. Under the table, notes
say how the runs differ from the paper's protocol (settings, data, image count), how our implementation of a
method differs from the paper's (`deviations` of paper_values.yaml) and why a FID is missing.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dps_exp.analysis.report import shard_gap

VALUES = Path(__file__).with_name("paper_values.yaml")
DATA_CLASSES = {"FFHQVal": "ffhq", "ImageNetVal": "imagenet"}
SETTINGS = {"sampler.step_size": "step size", "sampler.eta": "η", "sampler.steps": "steps",
            "sampler.variance": "variance", "physics.noise.kind": "noise", "physics.noise.sigma": "σ",
            "physics.noise.rate": "rate"}  # fmt: skip
"""The settings that split a task into rows (runs differing in one are not pooled), with their labels; the
runs' other sampler keys and the task's operator keys of the protocol (`physics.mask`, ...) too, labelled by
their last part."""

FidFn = Callable[[Sequence[Mapping], Mapping], dict]
"""Recomputes FID over rows (each with `dir`, `reconstruction`, `source`) of runs with the given recorded
config (its data size, its FID features): {value, n, reason}."""


def load_values(path: Path = VALUES) -> dict:
    return yaml.safe_load(Path(path).read_text())


@dataclass
class Cell:
    mean: float | None = None
    std: float | None = None
    n: int = 0
    paper: float | None = None

    @property
    def diff(self) -> float | None:
        return None if self.mean is None or self.paper is None else self.mean - self.paper


@dataclass
class Row:
    task: str
    label: str
    """The row's name in the notes: task, method and the settings that tell it from the task's other rows."""
    method: str = "dps"
    method_label: str = "DPS"
    """The method column: the method and those settings, e.g. "DPS (step size 0.3)"."""
    task_label: str = ""
    images: int = 0
    seeds: int = 0
    step_sizes: list = field(default_factory=list)
    cells: dict[str, Cell] = field(default_factory=dict)


@dataclass
class Table:
    dataset: str
    title: str
    metrics: dict
    rows: list[Row]
    notes: list[str]


class Notes:
    """The notes under a table, each remark said once: the subjects (rows, FID sets) it applies to are listed
    together, e.g. "SR ×4; Motion deblur: data.size = 64 (paper: 256)"."""

    def __init__(self) -> None:
        self._subjects: dict[tuple[str, str], list[str]] = {}

    def add(self, subject: str, remark: str, prefix: str = "") -> None:
        subjects = self._subjects.setdefault((prefix, remark), [])
        if subject not in subjects:
            subjects.append(subject)

    def lines(self) -> list[str]:
        return [f"{prefix}{'; '.join(subjects)}: {remark}" for (prefix, remark), subjects in self._subjects.items()]


def class_name(node: Mapping | None) -> str:
    return str((node or {}).get("_target_", "")).rsplit(".", 1)[-1]


def dataset_of(config: Mapping) -> str | None:
    """`ffhq` or `imagenet`, from the prior's architecture, else from the data class."""
    arch = (config.get("denoiser") or {}).get("architecture")
    return arch if arch in ("ffhq", "imagenet") else DATA_CLASSES.get(class_name(config.get("data")))


def scores(run: Mapping, metric: str) -> bool:
    """Whether the run asked for `metric` (its recorded `metrics.names`; null, the default set, has no FID)."""
    return metric in (((run["summary"].get("config") or {}).get("metrics") or {}).get("names") or [])


def value_at(config: Mapping, key: str):
    for part in key.split("."):
        config = config.get(part) if isinstance(config, Mapping) else None
    return config


def method_of(config: Mapping, values: Mapping) -> str:
    """The method of a run: the key of paper_values.yaml's `methods` whose sampler class the run used, else the
    class name itself (a sampler the paper has no row for)."""
    sampler = class_name(config.get("sampler"))
    return next((m for m, spec in values["methods"].items() if spec["sampler"] == sampler), sampler or "unknown")


def method_label(method: str, values: Mapping) -> str:
    return values["methods"].get(method, {}).get("label", method)


def setting_keys(task: str, values: Mapping, runs: Sequence[Mapping] = ()) -> dict[str, str]:
    """{dotted key: label} of the settings that split `task` into rows: `SETTINGS`, every other sampler key of
    `runs` (a baseline's iterations, ρ, ...) and the task's operator keys of the protocol."""
    sampler = sorted({f"sampler.{k}" for run in runs for k in (run["summary"].get("config") or {}).get("sampler") or {}
                      if not k.startswith("_")} - set(SETTINGS))  # fmt: skip
    physics = [k for k in values["protocol"].get(task, {}) if k.startswith("physics.")]
    return SETTINGS | {k: k.rsplit(".", 1)[-1] for k in [*sampler, *physics]}


def settings_of(run: Mapping, keys: Sequence[str]) -> tuple:
    values = (value_at(run["summary"].get("config") or {}, key) for key in keys)
    return tuple(tuple(v) if isinstance(v, list) else v for v in values)


def task_of(config: Mapping, values: Mapping) -> str | None:
    physics = class_name(config.get("physics"))
    return next((t for t, spec in values["tasks"].items() if spec["physics"] == physics), None)


def spread(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def per_image(rows: Sequence[Mapping], metrics: Sequence[str], best: Mapping | None) -> dict[str, dict]:
    """{source: {metric: value}}: the mean over seeds, or the metrics of the best seed (`best`: {by, n})."""
    by_image: dict[str, list[Mapping]] = defaultdict(list)
    for row in rows:
        by_image[row["source"]].append(row)
    out = {}
    for source, group in by_image.items():
        if best:
            sign = 1 if best["better"] == "higher" else -1
            scored = [r for r in group if r["metrics"].get(best["by"]) is not None]
            pick = max(scored, key=lambda r: sign * r["metrics"][best["by"]]) if scored else group[0]
            out[source] = {"row": pick, **{m: pick["metrics"].get(m) for m in metrics}}
        else:
            out[source] = {m: spread([v for r in group if (v := r["metrics"].get(m)) is not None])[0] for m in metrics}
    return out


def fid_cell(sets: Mapping[str, tuple[list, Mapping | None]], config: Mapping, fid: FidFn | None, notes: Notes) -> Cell:
    """FID of a task from sets of rows, each {name: (rows, recorded FID or None)}: the recorded value, else
    recomputed from disk by `fid`; mean ± std over the sets (seeds), n the images of one set."""
    values, n = [], 0
    for name, (rows, recorded) in sets.items():
        result = recorded if recorded and recorded.get("value") is not None else None
        if result is None and fid is not None:
            result = fid(rows, config)
        if result is None or result.get("value") is None:
            notes.add(name, (result or {}).get("reason") or "not recorded, and not recomputed", prefix="FID of ")
            continue
        values.append(result["value"])
        n = max(n, result.get("n", len(rows)))
    mean, std = spread(values)
    return Cell(mean, std, n)


def fid_sets(label: str, runs: Sequence[Mapping], chosen: Sequence[Mapping] | None) -> dict:
    """The sets FID is taken over: the best-of-N `chosen` rows, or each seed's rows with the FID its run
    recorded (None when the seed's rows are split over several runs, e.g. unmerged shards). An image is in a set
    once, as in the other metrics' cells, though several runs hold it (shards next to their merged run)."""
    if chosen is not None:
        return {f"{label} (best of seeds)": (list(chosen), None)}
    sets = {}
    for seed in sorted({r["seed"] for run in runs for r in run["rows"]}):
        holders = [run for run in runs if any(r["seed"] == seed for r in run["rows"])]
        rows = [r for run in holders for r in run["rows"] if r["seed"] == seed and r.get("status") == "ok"]
        rows = list({r["source"]: r for r in reversed(rows)}.values())[::-1]  # the first row of each image
        recorded = (holders[0]["summary"].get("metrics") or {}).get("fid") if len(holders) == 1 else None
        sets[f"{label}, seed {seed}"] = (rows, recorded)
    return sets


def setting(config: Mapping, key: str) -> str:
    """A dotted key of a recorded config, as text ("None" when absent)."""
    return str(value_at(config, key))


def protocol_notes(label: str, runs: Sequence[Mapping], expected: Mapping, notes: Notes) -> None:
    """Note the run settings that differ from the protocol the paper's number was measured under (a group's
    other keys are not compared for runs whose class of that group already differs: `data.first` of a folder)."""
    for key, want in expected.items():
        group = key.split(".", 1)[0]
        target = expected.get(f"{group}._target_")
        same_class = [
            r for r in runs if target is None or setting(r["summary"]["config"], f"{group}._target_") == target
        ]
        got = sorted(
            {setting(run["summary"]["config"], key) for run in (runs if key.endswith("_target_") else same_class)}
        )
        if got and got != [str(want)]:
            notes.add(label, f"{key} = {', '.join(got)} (paper: {'unset' if want is None else want})")


def completeness_notes(label: str, runs: Sequence[Mapping], notes: Notes) -> None:
    """Note runs that did not finish, results left out of the cells (unreadable, diverged) and shards missing."""
    for status in sorted({run["summary"].get("status", "unknown") for run in runs} - {"complete", "merged"}):
        n = sum(run["summary"].get("status", "unknown") == status for run in runs)
        notes.add(label, f"{n} run(s) {status}: resume them (resume=true) to finish")
    results = [r for run in runs for r in run["rows"]]
    for status in ("unreadable", "diverged"):
        if n := sum(r.get("status") == status for r in results):
            notes.add(label, f"{n} of {len(results)} results {status}, left out of the cells")
    merged = any(run["summary"].get("status") == "merged" for run in runs)  # merge_runs.py said it when it merged
    if not merged and (gap := shard_gap([run["summary"].get("config") or {} for run in runs])):
        notes.add(label, gap)


def protocol_of(task: str, method: str, values: Mapping, spec: Mapping) -> dict:
    """The settings the paper's number of `method` on `task` of the data set `spec` was measured under."""
    protocol = values["protocol"]
    methods = protocol.get("methods", {}).get(method, {})
    return {**protocol["common"], **methods, **spec.get("protocol", {}), **protocol.get(task, {})}


def differences(label: str, runs: Sequence[Mapping], task: str, method: str, values: Mapping, spec: Mapping,
                notes: Notes) -> None:  # fmt: skip
    """Note how a row's runs differ from the paper's protocol: settings, a metric's settings (for the runs
    that score it) and the number of images."""
    protocol_notes(label, runs, protocol_of(task, method, values, spec), notes)
    for metric, expected in values["protocol"].get("metrics", {}).items():
        protocol_notes(label, [run for run in runs if scores(run, metric)], expected, notes)
    images = len({r["source"] for run in runs for r in run["rows"]})
    if spec.get("images") and images != spec["images"]:
        notes.add(label, f"images = {images} (paper: {spec['images']})")
    completeness_notes(label, runs, notes)


def task_row(task: str, method: str, runs: Sequence[Mapping], values: Mapping, spec: Mapping, fid: FidFn | None,
             notes: Notes, setting: str = "") -> Row:  # fmt: skip
    """One table row of the data set `spec`: the runs of `method` on `task` (of one setting) pooled, see the module
    docstring. `setting` tells the row from the task's other rows of the method, e.g. " (step size 0.3)"."""
    metrics = values["metrics"]
    paper = (spec["values"].get(task) or {}).get(method) or {}
    shown = method_label(method, values) + setting
    label = f"{values['tasks'][task]['label']}, {shown}"
    row = Row(
        task, label, method, shown, values["tasks"][task]["label"], cells={m: Cell(paper=paper.get(m)) for m in metrics}
    )
    if not runs:
        return row
    runs = [{**run, "rows": [{**r, "dir": run["dir"]} for r in run["rows"]]} for run in runs]
    ok = [r for run in runs for r in run["rows"] if r.get("status") == "ok"]
    step_sizes = {run["params"].get("sampler.step_size", value_at(run["summary"].get("config") or {},
                                                                  "sampler.step_size")) for run in runs}  # fmt: skip
    row.step_sizes = sorted(step_sizes, key=str)
    best = values.get("best_of", {}).get(task)
    if best:
        best = {**best, "better": metrics[best["by"]]["better"]}
    images = per_image(ok, [m for m in metrics if m != "fid"], best)
    row.images, row.seeds = len(images), len({r["seed"] for r in ok})
    if best:
        notes.add(label, f"per image the best of its samples (one per seed; the paper: best of {best['n']}), "
                         f"picked by {best['by']}")  # fmt: skip
    for m in metrics:
        if m != "fid":
            found = [v[m] for v in images.values() if v.get(m) is not None]
            row.cells[m] = Cell(*spread(found), len(found))
        elif all(scores(run, "fid") for run in runs):
            chosen = [v["row"] for v in images.values()] if best else None
            row.cells[m] = fid_cell(fid_sets(label, runs, chosen), runs[0]["summary"]["config"], fid, notes)
        else:  # not recomputed: that needs the Inception weights, which runs that never asked for FID may lack
            why = "left blank: the runs did not ask for it (fid is not in their metrics.names)"
            notes.add(label, why, prefix="FID of ")
        row.cells[m].paper = paper.get(m)
    differences(label, runs, task, method, values, spec, notes)
    return row


def setting_label(keys: Mapping[str, str], setting: tuple, varying: Sequence[str]) -> str:
    """What tells a row from its method's other rows of the task: the settings that vary, e.g.
    " (step size 0.3, η 0.5)"; empty when the method has one setting for the task."""
    if not varying:
        return ""
    shown = {k: f"{v:g}" if isinstance(v, int | float) else str(v) for k, v in zip(keys, setting, strict=True)}
    return f" ({', '.join(f'{keys[k]} {shown[k]}' for k in varying)})"


def method_order(found: Iterable[str], values: Mapping) -> list[str]:
    """The paper's methods in its order, then any other method run, by name."""
    return [*values["methods"], *sorted(set(found) - set(values["methods"]))]


def build(runs: Sequence[Mapping], dataset: str, values: Mapping, fid: FidFn | None = None) -> Table:
    """The table of `dataset` from collected runs (`dps_exp.analysis.report.collect`): per task (every task the
    paper reports for it and any other task run on it), a row for every method the paper reports on it and any
    other method run on it; a method run with several settings (e.g. the official code's and the paper's step-size
    convention, several η, another noise level) gets a row per setting. `fid` recomputes FID where no run recorded
    it (None: leave it blank)."""
    spec = values["datasets"][dataset]
    by_row: dict[tuple[str, str], list] = defaultdict(list)
    for run in runs:
        config = run["summary"].get("config", {})
        if task := task_of(config, values):
            by_row[task, method_of(config, values)].append(run)
    notes = Notes()
    rows = []
    for task in values["tasks"]:
        paper = spec["values"].get(task) or {}
        for method in method_order({m for t, m in by_row if t == task}, values):
            found = by_row.get((task, method), [])
            if method in paper and not found:
                rows.append(task_row(task, method, [], values, spec, fid, notes))
            keys = setting_keys(task, values, found)
            settings: dict[tuple, list] = defaultdict(list)
            for run in found:
                settings[settings_of(run, list(keys))].append(run)
            varying = [k for i, k in enumerate(keys) if len({s[i] for s in settings}) > 1]
            for setting in sorted(
                settings, key=lambda s: [(v is None, str(type(v)), 0 if v is None else v) for v in s]
            ):
                label = setting_label(keys, setting, varying)
                rows.append(task_row(task, method, settings[setting], values, spec, fid, notes, label))
    run_methods = {method for _, method in by_row}
    for method in method_order(run_methods, values):
        for deviation in values.get("deviations", {}).get(method, []) if method in run_methods else []:
            notes.add(method_label(method, values), deviation)
    names = {
        **{m: v["label"] for m, v in values["metrics"].items()},
        **{t: v["label"] for t, v in values["tasks"].items()},
    }
    sources = "; ".join(f"{names[k]}: {v}" for k, v in spec["source"].items())
    paper = f"Paper values ({values['paper']}): {sources}."
    return Table(dataset, spec["label"], values["metrics"], rows, [*notes.lines(), paper])


# ---------------------------------------------------------------------------------------------------------
# Formats: Markdown and LaTeX print `mean ± std (n)` | paper | Δ = ours − paper per metric; CSV the raw numbers.


def _num(value: float | None, decimals: int, signed: bool = False) -> str:
    return "–" if value is None else f"{value:{'+' if signed else ''}.{decimals}f}"


def _ours(cell: Cell, decimals: int, pm: str = " ± ") -> str:
    if cell.mean is None:
        return "–"
    spread_text = "" if cell.std is None else f"{pm}{cell.std:.{decimals}f}"
    return f"{cell.mean:.{decimals}f}{spread_text} ({cell.n})"


def _steps(row: Row) -> str:
    return ", ".join(f"{v:g}" for v in row.step_sizes if v is not None) or "–"


def to_markdown(table: Table) -> str:
    arrows = {"lower": "↓", "higher": "↑"}
    head = ["Task", "Method", "Images", "Seeds", "Step size"]
    for spec in table.metrics.values():
        head += [f"{spec['label']} {arrows[spec['better']]}", "paper", "Δ"]
    lines = [f"### {table.title}: reproduced vs. paper", "", "| " + " | ".join(head) + " |"]
    lines.append("|---|---|" + "---:|" * (len(head) - 2))
    for row in table.rows:
        cells = [row.task_label, row.method_label, str(row.images), str(row.seeds), _steps(row)]
        for m, spec in table.metrics.items():
            c, d = row.cells[m], spec["decimals"]
            cells += [_ours(c, d), _num(c.paper, d), _num(c.diff, d, signed=True)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Ours: mean ± std over images (number of images); FID: one value per seed, ± over seeds.", ""]
    return "\n".join(lines + [f"- {note}" for note in table.notes]) + "\n"


def _tex(text: str) -> str:
    for plain, tex in (("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("×", r"$\times$"), ("–", "--")):
        text = text.replace(plain, tex)
    return text


def to_latex(table: Table) -> str:
    arrows = {"lower": r"$\downarrow$", "higher": r"$\uparrow$"}
    k = len(table.metrics)
    lines = [f"% {_tex(table.title)}: reproduced vs. paper. Ours: mean $\\pm$ std over images (n).",
             r"\begin{tabular}{llrrr" + "rrr" * k + "}", r"\toprule"]  # fmt: skip
    groups = [rf"\multicolumn{{3}}{{c}}{{{s['label']} {arrows[s['better']]}}}" for s in table.metrics.values()]
    lines.append(" & & & & & " + " & ".join(groups) + r" \\")
    lines.append(" ".join(rf"\cmidrule(lr){{{6 + 3 * i}-{8 + 3 * i}}}" for i in range(k)))
    lines.append(
        "Task & Method & Images & Seeds & Step size & " + " & ".join(["ours & paper & $\\Delta$"] * k) + r" \\"
    )
    lines.append(r"\midrule")
    for row in table.rows:
        cells = [_tex(row.task_label), _tex(row.method_label), str(row.images), str(row.seeds), _tex(_steps(row))]
        for m, spec in table.metrics.items():
            c, d = row.cells[m], spec["decimals"]
            diff = _num(c.diff, d, signed=True)
            cells += [
                _tex(_ours(c, d, r" $\pm$ ")),
                _tex(_num(c.paper, d)),
                f"${diff}$" if c.diff is not None else "--",
            ]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"] + [f"% {_tex(note)}" for note in table.notes]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    def raw(v):
        return "" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)

    head = ["dataset", "task", "method", "row", "images", "seeds", "step_size"]  # row: task, method and setting
    head += [f"{m}{suffix}" for m in table.metrics for suffix in ("", "_std", "_n", "_paper", "_diff")]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(head)
    for row in table.rows:
        cells = [table.dataset, row.task, row.method, row.label, row.images, row.seeds]
        cells.append(" ".join(raw(v) for v in row.step_sizes))
        for m in table.metrics:
            c = row.cells[m]
            cells += [raw(c.mean), raw(c.std), c.n, raw(c.paper), raw(c.diff)]
        writer.writerow(cells)
    return out.getvalue()
