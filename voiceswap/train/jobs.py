"""A family's plan expanded into the recipe's jobs: what run.sh stages 4-7 execute, family-blind.

Each :class:`~voiceswap.train.plan.Step` becomes one or more :class:`Job`\\ s: a command line, the
log it writes, the launcher that runs it (``train``: ``$train_cmd``/``$cuda_cmd``, with ``torchrun``
for DDP; ``cpu``: ``$train_cmd``; ``decode``: ``$decode_cmd``) and, for jobs whose output is a dir of
files, the stamp inputs that make re-running it a no-op when nothing changed (``utils/stamp.py``).
Training jobs have no stamp: ``train.py`` resumes from its checkpoints and stops at ``max_steps``.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from voiceswap.data.streams import StreamLayout, stream_dir, stream_scp
from voiceswap.train.experiment import Experiment
from voiceswap.train.plan import Step
from voiceswap.train.registry import Family

#: A job's fields as run.sh reads them, tab-separated on one line.
JOB_FIELDS = ("launcher", "out", "log", "text", "inputs", "describe", "command")


class PlanError(ValueError):
    """A plan that cannot be expanded (a config without what a step needs); the message says what to do."""


@dataclass
class Job:
    launcher: str  # train | cpu | decode
    command: List[str]
    log: Path
    describe: str
    out: Optional[Path] = None  # the dir stamped when the job succeeds (None: no stamp)
    text: str = ""  # options that change the output, hashed into the stamp
    inputs: List[Path] = field(default_factory=list)

    def line(self) -> str:
        values = {"launcher": self.launcher, "out": str(self.out) if self.out else "-", "log": str(self.log),
                  "text": self.text or "-", "inputs": " ".join(str(p) for p in self.inputs) or "-",
                  "describe": self.describe, "command": shlex.join(self.command)}
        for name, value in values.items():
            if "\t" in value or "\n" in value:
                raise PlanError(f"job field {name} contains a tab or newline: {value!r}")
        return "\t".join(values[name] for name in JOB_FIELDS)


@dataclass(frozen=True)
class RecipeContext:
    """What every job of one recipe run shares: the config and overrides, dirs and set names."""

    config_path: str
    overrides: Sequence[str]
    exp_dir: Path
    dump_dir: Path
    data_dir: Path
    train_set: str = "train"
    dev_set: str = "dev"
    eval_set: str = "eval"
    #: run.sh's --nj: the threads of a job that runs a neural feature extractor (Whisper, HuBERT)
    nj: int = 1

    @property
    def sets(self) -> List[str]:
        return [self.train_set, self.dev_set, self.eval_set]

    @property
    def layout(self) -> StreamLayout:
        return StreamLayout(self.dump_dir, self.exp_dir)

    def config_args(self) -> List[str]:
        args = ["--config", self.config_path]
        for override in self.overrides:
            args += ["--set", override]
        return args


def section_config(config: Mapping[str, Any], section: str) -> Dict[str, Any]:
    """The config a step trains: the whole config, or a section that is a complete config of its own."""
    if not section:
        return dict(config)
    sub = config.get(section)
    if not isinstance(sub, Mapping) or "family" not in sub:
        raise PlanError(f"the config has no section {section!r} with its own family: key to train")
    return dict(sub)


def section_dir(exp_dir: Path, section: str) -> Path:
    """``exp/<tag>`` for the whole config, ``exp/<tag>/<section>`` for a section."""
    return exp_dir / section if section else exp_dir


def units_dir(layout: StreamLayout, subset: str) -> Path:
    """Where stage 5 dumps an experiment's units of ``subset``: ``<dump>/units/<tag>/<set>`` (stage 9 reads them)."""
    return layout.dump_dir / "units" / layout.exp_dir.name / subset


def producer(family: Family, config: Mapping[str, Any], stream: str) -> Optional[Step]:
    """The step of the family's plan that writes ``stream`` (None: a feature of stages 2-3)."""
    for step in family.plan(config):
        if stream in step.writes:
            return step
    return None


def _done(directory: Path) -> Path:
    return directory / ".done"


def _only_stream(step: Step, what: str) -> str:
    streams = step.writes if what == "writes" else step.reads
    if len(streams) != 1:
        raise PlanError(f"a {step.kind} step {what} exactly one stream; this one lists {list(streams)}")
    return streams[0]


def expand(step: Step, family: Family, config: Mapping[str, Any], ctx: RecipeContext) -> List[Job]:
    """The jobs of one step."""
    layout, args = ctx.layout, ctx.config_args()
    where = section_dir(ctx.exp_dir, step.section)
    section_args = ["--section", step.section] if step.section else []
    dirs = ["--dump-dir", str(ctx.dump_dir), "--data-dir", str(ctx.data_dir)]

    if step.kind == "train":
        command = ["train.py", *args, *section_args, "--exp-dir", str(ctx.exp_dir), *dirs,
                   "--train-set", ctx.train_set, "--valid-set", ctx.dev_set]
        name = section_config(config, step.section)["family"]
        return [Job("train", command, where / "log" / "train.log", f"train {name} -> {where}")]

    if step.kind == "content_features":
        stream = _only_stream(step, "writes")
        features = (config.get("content") or {}).get("features")
        if not isinstance(features, Mapping):
            raise PlanError("a content_features step needs a content.features section in the config")
        jobs = []
        for subset in ctx.sets:
            out = stream_dir(config, stream, subset, layout)
            inputs = [ctx.data_dir / subset / "wav.scp"]
            if features.get("kind") == "spkcmvn":  # per-speaker CMVN of a stage-3 feature
                inputs.append(_done(ctx.dump_dir / "norm" / str(features["feats"]) / subset))
            if features.get("checkpoint"):
                inputs.append(Path(features["checkpoint"]))
            command = ["extract_content.py", *args, *dirs, subset, str(out)]
            if features.get("kind") in ("whisper", "hubert"):  # one model, nj threads: the sets run one by one
                command[1:1] = ["--num-threads", str(max(1, ctx.nj))]
            jobs.append(Job("cpu", command, out / "log" / "extract_content.log",
                            f"content features {out.parent.name} of {subset} -> {out}", out,
                            json.dumps(dict(features), sort_keys=True), inputs))
        return jobs

    if step.kind == "pitch":
        from voiceswap.features.pitch import PitchError, pitch_settings

        stream = _only_stream(step, "writes")
        try:
            settings = pitch_settings(config.get("pitch"))
        except PitchError as error:
            raise PlanError(f"a pitch step: {error}") from None
        target = Path(str(config["data"]["target_feats"])).name
        train_dir = stream_dir(config, stream, ctx.train_set, layout)
        jobs = []
        # The train set first: the other sets take the speaker means of its statistics.
        for subset in [ctx.train_set] + [s for s in ctx.sets if s != ctx.train_set]:
            out = stream_dir(config, stream, subset, layout)
            inputs = [ctx.data_dir / subset / "wav.scp", ctx.data_dir / subset / "utt2spk",
                      _done(ctx.dump_dir / "raw" / target / subset)]
            command = ["extract_pitch.py", *args, *dirs]
            if subset != ctx.train_set:
                command += ["--speaker-stats", str(train_dir / "spk_f0_stats")]
                inputs.append(_done(train_dir))
            command += [subset, str(out)]
            jobs.append(Job("cpu", command, out / "log" / "extract_pitch.log",
                            f"{settings['method']} F0 of {subset} -> {out}", out,
                            json.dumps({**settings, "target_feats": target}, sort_keys=True), inputs))
        return jobs

    if step.kind == "kmeans":
        source, target = _only_stream(step, "reads"), _only_stream(step, "writes")
        model_dir = where / "kmeans"
        model = model_dir / "model.npz"
        settings = json.dumps({"kmeans": config.get(step.section, {}).get("kmeans"),
                               "units": config.get(step.section, {}).get("model", {}).get("num_units")},
                              sort_keys=True)
        train_scp = stream_scp(config, source, ctx.train_set, layout)
        jobs = [Job("cpu", ["kmeans_units.py", "fit", *args, str(train_scp), str(model)],
                    model_dir / "log" / "fit.log", f"k-means on {train_scp.parent} -> {model}", model_dir, settings,
                    [_done(train_scp.parent)])]
        for subset in ctx.sets:
            scp = stream_scp(config, target, subset, layout)
            source_scp = stream_scp(config, source, subset, layout)
            jobs.append(Job("cpu", ["kmeans_units.py", "apply", "--name", scp.stem, str(model), str(source_scp),
                                    str(scp.parent)],
                            model_dir / "log" / f"apply.{subset}.log", f"k-means ids of {subset} -> {scp.parent}",
                            scp.parent, "", [model, _done(source_scp.parent)]))
        return jobs

    if step.kind == "dump_units":
        trained = Experiment(where, f"stage {_stage_of(family, config, step.section, 'train')}")
        checkpoint = trained.checkpoint()
        input_name = section_config(config, step.section)["data"]["input_feats"]
        jobs = []
        for subset in ctx.sets:
            out = units_dir(layout, subset)
            source = stream_scp(config, input_name, subset, layout)
            command = ["dump_units.py", *args, *section_args, "--exp-dir", str(ctx.exp_dir), *dirs, subset, str(out)]
            jobs.append(Job("decode", command, out / "log" / "dump_units.log",
                            f"units of {subset} from {where} -> {out}", out, str(checkpoint),
                            [checkpoint, _done(source.parent)]))
        return jobs

    raise PlanError(f"no expansion for step kind {step.kind!r}")


def _stage_of(family: Family, config: Mapping[str, Any], section: str, kind: str) -> int:
    for step in family.plan(config):
        if step.kind == kind and step.section == section:
            return step.stage
    return 4


def stage_jobs(stage: int, family: Family, config: Mapping[str, Any], ctx: RecipeContext) -> List[Job]:
    """Every job of ``stage`` in plan order."""
    return [job for step in family.plan(config) if step.stage == stage for job in expand(step, family, config, ctx)]
