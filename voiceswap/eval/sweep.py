"""Sweeps: many runs of stages 4-9, one per override set and seed, and one report over them.

``utils/sweep.sh`` is the command; this module is its library. A sweep is

* **points**: the grid of every ``--sweep key=v1,v2,...`` (the cartesian product when several keys
  are swept), each combined with every ``--sets "k=v k=v"`` override set when those are given;
* **seeds**: each point is run once per seed, ``<seed key>=<seed>`` for every seed key (default
  ``train.seed``); no seeds: each point once, with the config's own seed.

Each run is the base overrides + the point's + the seed's, and its experiment tag is
:func:`voiceswap.train.config.experiment_tag` of them -- what ``plan.py tag`` and so ``run.sh`` give,
so every run has its own ``exp/<tag>`` and a finished one is found again by its stamps. The runs
are kept in ``sweep.json``; the report reads each run's stage-9 ``exp/<tag>/scores_<vocoder>/metrics.json``
and writes

* ``sweep.md``: one row per point, each metric of the corpus RESULTS.md table as mean ± sample std
  over the seeds that finished, then one row per run;
* ``sweep.tsv``: the same per point, ``<metric>_mean/_std/_min/_max/_n`` columns, and
  ``sweep_runs.tsv``: one row per run with every metric;
* ``plots/<metric>.png`` for each headline metric against the swept value (each seed a dot, the
  mean a line, ± std error bars) and ``plots/overview.png`` with all of them.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from voiceswap.data.atomic import atomic_open
from voiceswap.eval.layout import scores_dir
from voiceswap.eval.results import CODE_COLUMNS, FORMATS, TABLE_COLUMNS, fmt, markdown_table
from voiceswap.eval.summary import ROW_METRICS
from voiceswap.train.config import ConfigError, apply_overrides, experiment_tag, load_config, parse_override

#: The runs of a sweep, written by ``sweep.py runs`` into the report dir.
MANIFEST = "sweep.json"

#: Metrics plotted by default: intelligibility first (what matters most), then identity and quality.
HEADLINE_METRICS = ("converted.wer", "converted.cer", "converted.spk_sim_target", "converted.spk_acc",
                    "converted.mcd", "converted.f0_corr", "converted.mos_ovrl", "codes.perplexity")

#: Higher is better, per metric key (for the arrows of the table headings).
HIGHER_IS_BETTER = {key: up for key, _, _, up in ROW_METRICS}
HIGHER_IS_BETTER.update({"perplexity": True, "codes_used": True, "phone_purity": True,
                         "many_to_one_accuracy": True, "nmi": True})


class SweepError(ValueError):
    """A sweep that cannot be expanded or reported: the message says what to change."""


@dataclass
class Run:
    tag: str
    point: str  # the point's overrides as one string ("" for the config's own values)
    seed: Optional[int]
    overrides: List[str]  # everything run.sh gets in --train-overrides: base + point + seed


@dataclass
class Sweep:
    config: str
    base: List[str]
    axes: List[Tuple[str, List[str]]]  # (key, values) of each --sweep, in the order given
    sets: List[str]
    seeds: List[int]
    seed_keys: List[str]
    runs: List[Run] = field(default_factory=list)

    def points(self) -> List[str]:
        """The points in sweep order, each once."""
        return list(dict.fromkeys(run.point for run in self.runs))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as f:
            json.dump(asdict(self), f, indent=1)
            f.write("\n")

    @classmethod
    def load(cls, path: Path) -> "Sweep":
        try:
            raw = json.loads(Path(path).read_text())
            runs = [Run(**run) for run in raw.pop("runs")]
            raw["axes"] = [(key, list(values)) for key, values in raw["axes"]]
            return cls(**raw, runs=runs)
        except FileNotFoundError:
            raise SweepError(f"no sweep manifest {path}: run utils/sweep.sh first (it writes it)") from None
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise SweepError(f"{path} is not a sweep manifest ({error!r}): run utils/sweep.sh again") from None


def split_values(text: str) -> List[str]:
    """``"32,64,[10,4]"`` -> ``["32", "64", "[10,4]"]``: commas inside brackets or braces stay."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += char
    values.append(current)
    return [value.strip() for value in values]


def parse_axis(spec: str) -> Tuple[str, List[str]]:
    """``"model.codebook_size=32,64"`` -> ``("model.codebook_size", ["32", "64"])``."""
    key, sep, values_text = spec.partition("=")
    key = key.strip()
    values = split_values(values_text) if sep else []
    if not key or not values or any(not value for value in values):
        raise SweepError(f"--sweep {spec!r}: write KEY=V1,V2,..., e.g. --sweep model.codebook_size=32,64,128")
    if len(set(values)) != len(values):
        raise SweepError(f"--sweep {spec!r} names a value twice")
    return key, values


def _check_override(override: str, where: str) -> None:
    # run.sh splits --train-overrides on whitespace, so a value with a space would become two overrides.
    if any(char.isspace() for char in override):
        raise SweepError(f"{where}: override {override!r} contains whitespace, which run.sh's --train-overrides "
                         "cannot carry; write lists without spaces, e.g. [10,4]")
    try:
        parse_override(override)
    except ConfigError as error:
        raise SweepError(f"{where}: {error}") from None


def expand(config: str, base: Sequence[str] = (), sweeps: Sequence[str] = (), sets: Sequence[str] = (),
           seeds: Sequence[int] = (), seed_keys: Sequence[str] = ("train.seed",)) -> Sweep:
    """Every run of a sweep, checked against the config (an unknown key or a wrong type fails here)."""
    if not sweeps and not sets and not seeds:
        raise SweepError("nothing to sweep: give --sweep KEY=V1,V2,..., --sets \"k=v ...\" and/or --seeds \"0 1 2\"")
    axes = [parse_axis(spec) for spec in sweeps]
    keys = [key for key, _ in axes]
    if len(set(keys)) != len(keys):
        raise SweepError(f"--sweep names a key twice: {' '.join(keys)}")
    base = [o for o in base if o]
    for override in base:
        _check_override(override, "--train-overrides")
    set_lists = [spec.split() for spec in sets] or [[]]
    for spec in set_lists:
        loose = [override for override in spec if "=" not in override]
        if loose:
            raise SweepError(f"--sets {' '.join(spec)!r}: {loose[0]!r} is not KEY=VALUE; a set is overrides "
                             "separated by spaces, so values cannot contain spaces (write lists as [10,4])")
        for override in spec:
            _check_override(override, f"--sets {' '.join(spec)!r}")
    if seeds and not seed_keys:
        raise SweepError("--seeds needs at least one --seed-keys key (e.g. train.seed)")
    swept = set(keys) | {".".join(parse_override(o)[0]) for spec in set_lists for o in spec}
    if seeds and swept & set(seed_keys):
        raise SweepError(f"{' '.join(sorted(swept & set(seed_keys)))} is both swept and the seed key: "
                         "sweep it with --seeds only")
    loaded = load_config(config)
    grid = list(itertools.product(*[[f"{key}={value}" for value in values] for key, values in axes]))
    sweep = Sweep(str(config), list(base), axes, [" ".join(spec) for spec in set_lists if spec], list(seeds),
                  list(seed_keys))
    tags: Dict[str, str] = {}
    for spec in set_lists:
        for grid_point in grid:
            point_overrides = [*spec, *grid_point]
            for seed in (list(seeds) or [None]):
                seed_overrides = [f"{key}={seed}" for key in seed_keys] if seed is not None else []
                overrides = [*base, *point_overrides, *seed_overrides]
                try:
                    apply_overrides(loaded, overrides)
                except ConfigError as error:
                    raise SweepError(f"{config}: {error}") from None
                tag = experiment_tag(config, overrides)
                label = " ".join(point_overrides)
                if tag in tags:
                    raise SweepError(f"two runs have the same tag {tag} ({tags[tag]!r} and {label!r}): "
                                     "a set repeats another point")
                tags[tag] = label
                sweep.runs.append(Run(tag, label, seed, overrides))
    return sweep


# ----------------------------------------------------------------------------------------------- report

def metric_columns() -> List[Tuple[str, str]]:
    """``(metric id, heading)`` of every column the report can show: the corpus table's, in its order."""
    columns = [(f"{row}.{key}", heading) for row, key, heading in TABLE_COLUMNS]
    return columns + [(f"codes.{key}", heading) for key, heading in CODE_COLUMNS]


def metric_value(metrics: Mapping[str, Any], metric: str) -> Optional[float]:
    """``converted.wer`` -> ``metrics["rows"]["converted"]["wer"]``; ``codes.nmi`` -> the model's units' NMI."""
    where, _, key = metric.partition(".")
    if where == "codes":
        value = (metrics.get("codes") or {}).get("model", {}).get(key)
    else:
        value = metrics.get("rows", {}).get(where, {}).get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def load_run_metrics(exp_dir: Path, runs: Sequence[Run], vocoder: str) -> Dict[str, Optional[Dict[str, Any]]]:
    """``{tag: metrics.json}`` of each run; None where stage 9 has not finished (no metrics.json)."""
    found: Dict[str, Optional[Dict[str, Any]]] = {}
    for run in runs:
        path = scores_dir(exp_dir / run.tag, vocoder) / "metrics.json"
        if not path.is_file():
            found[run.tag] = None
            continue
        try:
            found[run.tag] = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise SweepError(f"{path}: not valid JSON ({error}); re-run stage 9 of {run.tag}") from None
    return found


@dataclass
class Stat:
    values: List[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> Optional[float]:
        return float(np.mean(self.values)) if self.values else None

    @property
    def std(self) -> Optional[float]:
        """Sample standard deviation (ddof 1): the spread over seeds; None below two values."""
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else None

    @property
    def min(self) -> Optional[float]:
        return min(self.values) if self.values else None

    @property
    def max(self) -> Optional[float]:
        return max(self.values) if self.values else None


def summarise(sweep: Sweep, metrics: Mapping[str, Optional[Mapping[str, Any]]],
              columns: Sequence[str]) -> Dict[str, Dict[str, Stat]]:
    """``{point: {metric: Stat over the point's finished runs}}``."""
    out: Dict[str, Dict[str, Stat]] = {}
    for point in sweep.points():
        runs = [run for run in sweep.runs if run.point == point and metrics.get(run.tag) is not None]
        out[point] = {}
        for metric in columns:
            values = [metric_value(metrics[run.tag], metric) for run in runs]
            out[point][metric] = Stat([v for v in values if v is not None])
    return out


def present_columns(metrics: Mapping[str, Optional[Mapping[str, Any]]]) -> List[Tuple[str, str]]:
    """The columns with a value in at least one run."""
    done = [m for m in metrics.values() if m is not None]
    return [(metric, heading) for metric, heading in metric_columns()
            if any(metric_value(m, metric) is not None for m in done)]


def _arrow(metric: str) -> str:
    up = HIGHER_IS_BETTER.get(metric.partition(".")[2])
    return "" if up is None else (" ↑" if up else " ↓")


def _point_label(point: str) -> str:
    return point or "(config)"


def numeric_axis(sweep: Sweep) -> Optional[Tuple[str, Dict[str, float]]]:
    """``(key, {point: x})`` when one key is swept (no sets) and all its values are numbers; else None."""
    if len(sweep.axes) != 1 or sweep.sets:
        return None
    key, values = sweep.axes[0]
    try:
        numbers = [float(value) for value in values]
    except ValueError:
        return None
    if not all(math.isfinite(number) for number in numbers):
        return None
    return key, {f"{key}={value}": number for value, number in zip(values, numbers)}


def _number(key: str, value: float, averaged: bool) -> str:
    """``value`` in the metric's table format; a mean or spread of counts keeps a decimal."""
    if averaged and FORMATS.get(key, "").endswith("d}"):
        return f"{value:.1f}"
    return fmt(key, value)


def _cell(metric: str, stat: Stat) -> str:
    key = metric.partition(".")[2]
    if stat.mean is None:
        return "-"
    mean = _number(key, stat.mean, stat.n > 1)
    if stat.std is None:
        return mean
    return f"{mean} ± {_number(key, stat.std, True).lstrip('+')}"


def markdown_report(sweep: Sweep, metrics: Mapping[str, Optional[Mapping[str, Any]]], vocoder: str,
                    exp_dir: Path, plots: Sequence[Path] = ()) -> str:
    columns = present_columns(metrics)
    stats = summarise(sweep, metrics, [m for m, _ in columns])
    done = sum(m is not None for m in metrics.values())
    out = [f"# Sweep of {sweep.config}\n",
           f"- base overrides: `{' '.join(sweep.base) or '(none)'}`",
           f"- swept: {'; '.join(f'`{key}` = ' + ', '.join(values) for key, values in sweep.axes) or '-'}"
           + (f"; override sets: {'; '.join(f'`{s}`' for s in sweep.sets)}" if sweep.sets else ""),
           "- seeds: " + (" ".join(map(str, sweep.seeds)) or "the config's own")
           + (f" (`{' '.join(sweep.seed_keys)}`)" if sweep.seeds else ""),
           f"- experiments: `{exp_dir}/<tag>`, scores of vocoder `{vocoder}`; {done} of {len(sweep.runs)} runs "
           "scored",
           "- cells: mean ± sample std over the seeds that finished (n = their number); metrics as in RESULTS.md "
           "(WER/CER % by the Whisper judge, 'src' = the real source, oracle = the reference through the vocoder)",
           ""]
    header = ["point", "n"] + [heading + _arrow(metric) for metric, heading in columns]
    rows = []
    for point, by_metric in stats.items():
        n = sum(1 for run in sweep.runs if run.point == point and metrics.get(run.tag) is not None)
        rows.append([_point_label(point), str(n)] + [_cell(metric, by_metric[metric]) for metric, _ in columns])
    out.append("## Per point\n")
    out.append(markdown_table(header, rows) if columns else "No run has finished stage 9 yet.\n")
    headline = [(m, h) for m, h in columns if m in HEADLINE_METRICS]
    out.append("## Per run\n")
    run_rows = []
    for run in sweep.runs:
        m = metrics.get(run.tag)
        cells = [fmt(metric.partition(".")[2], metric_value(m, metric)) if m else "-" for metric, _ in headline]
        run_rows.append([_point_label(run.point), "-" if run.seed is None else str(run.seed),
                         f"`{run.tag}`", "done" if m else "not scored"] + cells)
    out.append(markdown_table(["point", "seed", "tag", "stage 9"] + [h + _arrow(m) for m, h in headline], run_rows))
    if plots:
        out.append("\n## Plots\n")
        out += [f"![{path.stem}](plots/{path.name})" for path in plots]
    return "\n".join(out) + "\n"


def _write_tsv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    def cell(value: Any) -> str:
        if value is None:
            return ""
        return f"{value:.6g}" if isinstance(value, float) else str(value)

    with atomic_open(path) as f:
        f.write("\t".join(header) + "\n")
        f.writelines("\t".join(cell(v) for v in row) + "\n" for row in rows)


def plot_metrics(sweep: Sweep, metrics: Mapping[str, Optional[Mapping[str, Any]]], out_dir: Path,
                 wanted: Sequence[str] = HEADLINE_METRICS) -> List[Path]:
    """One PNG per wanted metric that some run has, plus ``overview.png``; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in jobs
    import matplotlib.pyplot as plt

    from voiceswap.eval.plots import _save

    headings = dict(metric_columns())
    present = {metric for metric, _ in present_columns(metrics)}
    chosen = [metric for metric in wanted if metric in present]
    if not chosen:
        return []
    points = sweep.points()
    numeric = numeric_axis(sweep)
    if numeric:
        key, xs = numeric
        x_of = {point: xs[point] for point in points}
        positive = [x for x in x_of.values() if x > 0]
        log_x = len(positive) == len(x_of) and max(positive) / min(positive) >= 8
        x_label = key
    else:
        x_of = {point: float(i) for i, point in enumerate(points)}
        log_x, x_label = False, " / ".join(k for k, _ in sweep.axes) or "override set"

    def draw(ax, metric: str) -> None:
        for point in points:  # every finished seed a dot
            values = [metric_value(metrics[run.tag], metric) for run in sweep.runs
                      if run.point == point and metrics.get(run.tag) is not None]
            values = [v for v in values if v is not None]
            ax.scatter([x_of[point]] * len(values), values, s=14, color="0.55", zorder=2)
        stats = summarise(sweep, metrics, [metric])
        shown = [p for p in points if stats[p][metric].mean is not None]
        means = [stats[p][metric].mean for p in shown]
        stds = [stats[p][metric].std or 0.0 for p in shown]
        ax.errorbar([x_of[p] for p in shown], means, yerr=stds, marker="o", capsize=4, color="C0", zorder=3,
                    label="mean ± std over seeds" if sweep.seeds else "value")
        ax.set_ylabel(headings[metric] + _arrow(metric))
        ax.set_xlabel(x_label)
        if log_x:
            ax.set_xscale("log", base=2)
        if numeric:
            ax.set_xticks([x_of[p] for p in points])
            ax.set_xticklabels([p.partition("=")[2] for p in points])
        else:
            ax.set_xticks([x_of[p] for p in points])
            ax.set_xticklabels([_point_label(p) for p in points], rotation=20, ha="right", fontsize=8)
        ax.grid(alpha=0.3)

    written = []
    for metric in chosen:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        draw(ax, metric)
        ax.set_title(f"{headings[metric]} ({metric})", fontsize=10)
        ax.legend(fontsize=8)
        written.append(_save(fig, out_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', metric)}.png"))
    cols = min(4, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, chosen):
        draw(ax, metric)
        ax.set_title(headings[metric], fontsize=10)
    for ax in list(axes.flat)[len(chosen):]:
        ax.axis("off")
    fig.tight_layout()
    written.append(_save(fig, out_dir / "overview.png"))
    return written


def write_report(sweep: Sweep, exp_dir: str | Path, vocoder: str, out_dir: str | Path,
                 plot: Sequence[str] = HEADLINE_METRICS) -> Dict[str, Path]:
    """``sweep.md``, ``sweep.tsv``, ``sweep_runs.tsv`` and ``plots/*.png`` under ``out_dir``."""
    exp_dir, out_dir = Path(exp_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = load_run_metrics(exp_dir, sweep.runs, vocoder)
    columns = present_columns(metrics)
    stats = summarise(sweep, metrics, [m for m, _ in columns])
    axis_keys = [key for key, _ in sweep.axes]

    def axis_values(point: str) -> List[str]:
        values = dict(o.split("=", 1) for o in point.split())
        return [values.get(key, "") for key in axis_keys]

    header = ["point", *axis_keys, "n"] + [f"{metric}_{stat}" for metric, _ in columns
                                          for stat in ("mean", "std", "min", "max", "n")]
    rows = []
    for point, by_metric in stats.items():
        n = sum(1 for run in sweep.runs if run.point == point and metrics.get(run.tag) is not None)
        row: List[Any] = [point or "-", *axis_values(point), n]
        for metric, _ in columns:
            stat = by_metric[metric]
            row += [stat.mean, stat.std, stat.min, stat.max, stat.n]
        rows.append(row)
    paths = {"tsv": out_dir / "sweep.tsv", "runs_tsv": out_dir / "sweep_runs.tsv", "md": out_dir / "sweep.md"}
    _write_tsv(paths["tsv"], header, rows)
    _write_tsv(paths["runs_tsv"], ["tag", "point", *axis_keys, "seed", "scored"] + [m for m, _ in columns],
               [[run.tag, run.point or "-", *axis_values(run.point), "" if run.seed is None else run.seed,
                 int(metrics.get(run.tag) is not None)]
                + [metric_value(metrics[run.tag], m) if metrics.get(run.tag) else None for m, _ in columns]
                for run in sweep.runs])
    plots = plot_metrics(sweep, metrics, out_dir / "plots", plot)
    with atomic_open(paths["md"]) as f:
        f.write(markdown_report(sweep, metrics, vocoder, exp_dir, plots))
    paths.update({path.stem: path for path in plots})
    return paths
