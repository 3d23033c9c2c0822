"""The family contract: every config of conf/ goes through its family's plan and comes out converting.

For each config (and its tiny overlay in tests/conf/), on a tiny synth corpus made once:
the jobs of stages 4-7 its family declares (voiceswap.train.jobs, the same jobs run.sh runs), each
trained section loaded as an Experiment (checkpoint round trip: the loaded weights are the saved
ones), one validation step on real data, then a conversion: a conversion family converts an eval
utterance into finite audio of the source's length, a vocoder vocodes a real log-mel, and any
other family raises UnsupportedByFamily. A new family or config that breaks the contract fails
here without anyone writing a new test.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
from pathlib import Path
from typing import Any, Dict, List

import kaldiio
import numpy as np
import pytest
import torch
import yaml

from conftest import REPO_ROOT, run_recipe_in

import voiceswap.families  # noqa: F401  (registers the families)
from voiceswap.conversion import ConversionConditions, Converter, TargetFeatures
from voiceswap.data.loaders import build_loaders
from voiceswap.data.streams import StreamLayout, stream_scp
from voiceswap.train.checkpoint import load_checkpoint_for_inference
from voiceswap.train.config import apply_overrides, flatten, load_config
from voiceswap.train.experiment import Experiment, load_vocoder
from voiceswap.train.jobs import RecipeContext, section_config, section_dir, stage_jobs
from voiceswap.train.registry import UnsupportedByFamily, get_family, registered_families

CONF = REPO_ROOT / "conf"
OVERLAYS = REPO_ROOT / "tests" / "conf"
CONFIGS = sorted(str(path.relative_to(CONF).with_suffix("")) for path in
                 list(CONF.glob("*.yaml")) + list((CONF / "vocoder").glob("*.yaml")))
TINY = ["--synth-speakers", "slt ked esf2", "--num-sentences", "6", "--num-dev-sentences", "1",
        "--num-eval-sentences", "1", "--num-pair-sentences", "1", "--nj", "2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("contract")
    result = run_recipe_in(tmp, TINY, "--stage", "0", "--stop-stage", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp


@pytest.fixture(scope="module")
def tiny_hubert(tmp_path_factory) -> Path:
    import torchaudio
    from test_softvc_recipe import TINY_HUBERT

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("hubert") / "hubert_tiny.pt"
    torch.save({"state_dict": torchaudio.models.wav2vec2_model(**TINY_HUBERT).state_dict(),
                "config": TINY_HUBERT}, path)
    return path


def overlay_overrides(name: str, tiny_hubert: Path) -> List[str]:
    """The overlay tests/conf/<name>.yaml as ``key=value`` overrides (YAML flow style for lists)."""
    overlay = OVERLAYS / f"{name}.yaml"
    assert overlay.is_file(), f"conf/{name}.yaml has no tiny overlay {overlay.relative_to(REPO_ROOT)}: add one"
    values = flatten(yaml.safe_load(overlay.read_text()) or {})
    overrides = []
    for key, value in values.items():
        text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        overrides.append(f"{key}={text.replace('{tiny_hubert}', str(tiny_hubert))}")
    return overrides


def run_in_process(command: List[str]) -> int:
    """A job's entry script run by its main(argv) in this process (no torch import per job)."""
    module = importlib.import_module(f"voiceswap.bin.{Path(command[0]).stem}")
    with contextlib.redirect_stdout(io.StringIO()):
        return module.main(command[1:])


def finite_metrics(metrics: Dict[str, Any]) -> bool:
    return bool(metrics) and all(math.isfinite(float(value)) for value in metrics.values())


def own_audio_converts(exp: Path, corpus: Path, target: str, utt: str) -> None:
    """convert_audio.py on a stereo 22.05 kHz copy of an eval utterance: 16 kHz mono of the same duration."""
    import soundfile as sf
    import torchaudio

    wav_scp = dict(line.split(maxsplit=1) for line in (corpus / "data" / "eval" / "wav.scp").read_text().splitlines())
    samples, rate = sf.read(wav_scp[utt].strip(), dtype="float32")
    resampled = torchaudio.functional.resample(torch.from_numpy(samples), rate, 22050).numpy()
    own = corpus / "own" / exp.name
    own.mkdir(parents=True, exist_ok=True)
    sf.write(own / "mine.wav", np.stack([resampled, 0.5 * resampled], axis=1), 22050)
    out = corpus / "own_out" / exp.name
    assert run_in_process(["convert_audio.py", "--exp-dir", str(exp), "--target-spk", target,
                           "--dump-dir", str(corpus / "dump"), "--out-dir", str(out), str(own)]) == 0
    converted, out_rate = sf.read(out / f"mine_to_{target}.wav")
    assert out_rate == 16000 and converted.ndim == 1 and np.isfinite(converted).all()
    assert abs(len(converted) - len(samples) * 16000 / rate) <= 2 * 160
    assert (out / "conversions").read_text().split()[:3] == ["mine", str(own / "mine.wav"), target]


def test_every_family_has_a_config_and_every_config_an_overlay():
    families = set()
    for name in CONFIGS:
        config = load_config(CONF / f"{name}.yaml")
        # A section with its own family: key (softvc's content:, diffusion's classifier:) is trained too.
        families |= {config["family"]} | {section["family"] for section in config.values()
                                          if isinstance(section, dict) and "family" in section}
    # Families of voiceswap.families only: other tests register toy families in the same process.
    ours = {name for name in registered_families() if get_family(name).__module__.startswith("voiceswap.families")}
    assert ours <= families, ours - families
    assert sorted(str(p.relative_to(OVERLAYS).with_suffix("")) for p in OVERLAYS.rglob("*.yaml")) == CONFIGS


@pytest.mark.parametrize("name", CONFIGS)
def test_family_contract(name, corpus, tiny_hubert):
    overrides = overlay_overrides(name, tiny_hubert)
    config = apply_overrides(load_config(CONF / f"{name}.yaml"), overrides)
    family = get_family(config["family"])()
    exp = corpus / "exp" / name.replace("/", "_")
    ctx = RecipeContext(str(CONF / f"{name}.yaml"), overrides, exp, corpus / "dump", corpus / "data")
    for stage in (4, 5, 6, 7):
        for job in stage_jobs(stage, family, config, ctx):
            assert run_in_process(job.command) == 0, f"stage {stage}: {job.describe} failed; see {job.log}"

    layout = StreamLayout(ctx.dump_dir, exp)
    trained = [step for step in family.plan(config) if step.kind == "train"]
    loaded = None
    for step in trained:
        experiment = Experiment(section_dir(exp, step.section))
        loaded = experiment.load()
        saved = load_checkpoint_for_inference(experiment.checkpoint())
        for model_name, model in loaded.models.items():  # the round trip: loaded weights are the saved ones
            weights = (saved.get("ema") or {}).get(model_name, {}).get("shadow") or saved["models"][model_name]
            for key, value in model.state_dict().items():
                torch.testing.assert_close(value, weights[key])
        section = section_config(config, step.section)
        loaders = build_loaders(section, layout, str(ctx.data_dir), stream_config=config)
        with torch.no_grad():
            metrics = loaded.family.valid_step(next(iter(loaders.valid)))
        assert finite_metrics(metrics), f"{name} {step.section or 'model'}: valid metrics {metrics}"

    if family.role == "vocoder":
        raw = kaldiio.load_scp(str(corpus / "dump" / "raw" / "logmel80" / "eval" / "feats.scp"))
        feature_config = TargetFeatures.of(corpus / "dump", "logmel80").config
        log_mel = torch.from_numpy(np.array(next(iter(raw.values())), dtype=np.float32))
        vocoder = load_vocoder(config, feature_config.to_dict(), exp)
        with torch.no_grad():
            audio = vocoder(log_mel.T.unsqueeze(0))
        assert audio.shape == (1, log_mel.shape[0] * feature_config.hop_length)
        assert torch.isfinite(audio).all()
    elif family.role == "conversion":
        model = Experiment(exp).load()
        data = model.config["data"]
        source_scp = stream_scp(model.config, data["input_feats"], "eval", layout)
        utt, features = next(iter(kaldiio.load_scp(str(source_scp)).items()))
        frames = int(dict(line.split() for line in (corpus / "dump" / "raw" / data["target_feats"] / "eval" /
                                                      "utt2num_frames").read_text().splitlines())[utt])
        converter = Converter(model, TargetFeatures.of(corpus / "dump", data["target_feats"]),
                              load_config(CONF / "vocoder" / "griffinlim.yaml"))
        target = sorted(model.spk2id)[-1]
        # What a model with data.cond_feats (Soft-VC's pitch) is also conditioned on, as stage 8 makes it.
        conditions = ConversionConditions.of(model, corpus / "dump", converter.target.config)
        utt2spk = dict(line.split() for line in (corpus / "data" / "eval" / "utt2spk").read_text().splitlines())
        extra = conditions.utterance("eval", utt, utt2spk[utt], target) if conditions else None
        log_mel, audio = converter.convert(torch.from_numpy(np.array(features, dtype=np.float32)), target, frames,
                                           conditions=extra)
        assert log_mel.shape == (frames, 80) and np.isfinite(log_mel).all()
        assert audio.shape == (frames * converter.target.config.hop_length,) and np.isfinite(audio).all()
        own_audio_converts(model.path, corpus, target, utt)
    else:
        assert loaded is not None
        with pytest.raises(UnsupportedByFamily):
            loaded.family.convert(torch.zeros(20, 80), 0)
