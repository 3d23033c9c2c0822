#!/usr/bin/env python3
"""Speed/quality curve of the diffusion voice swap: sampling steps x sampling schedule (not a test).

Converts the same ``--num-pairs`` eval pairs (every 7th line of ``<data>/eval/pairs``: spread over
sources and targets) with a trained diffusion experiment at each of ``--steps`` (10, 25, 50, 100)
with each of ``--schedules`` (identity, square), through stage 8's ``convert.py`` (Griffin-Lim),
and scores each setting with stage 9's ``score.py`` (``--measures emb,asr``: speaker similarity to
the target and the Whisper judge's WER). Prints one row per setting: the real-time factor of the
whole conversion (diffusion + Griffin-Lim) in CPU seconds of the single-threaded process per second
of audio (robust to a busy machine) and in wall seconds, the speaker similarity and the WER; a
last row gives Griffin-Lim alone on the sources' real log-mel, so the diffusion's own share is the
difference.

Each setting is a pseudo-experiment ``<exp>/bench_steps/<setting>`` (links to the experiment's
checkpoints and config), so its scores stay out of the corpus's RESULTS.md, whose rows score every
pair. A setting scored before on the same pairs (its ``row.json``) is read back, not measured again,
so an interrupted bench resumes. ``--set inference.KEY=VALUE`` (guidance, its scale) applies to every
row and names the settings' directories and the table (``table_guidance-cfg_scale-3.md``). Example,
after stages 4-9 of ``./run.sh --model diffusion``:

    python bench/diffusion_steps.py --exp-dir exp/diffusion --dump-dir dump --data-dir data
    python bench/diffusion_steps.py --exp-dir exp/diffusion --steps 50 --schedules square \
        --set inference.guidance=classifier --set inference.scale=1000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import kaldiio
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from voiceswap.bin import convert as convert_script  # noqa: E402
from voiceswap.cli import configure_logging  # noqa: E402
from voiceswap.data.atomic import atomic_open  # noqa: E402
from voiceswap.conversion import TargetFeatures  # noqa: E402
from voiceswap.train.config import load_config  # noqa: E402
from voiceswap.train.experiment import load_vocoder  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", required=True, help="a trained diffusion experiment (exp/<tag>)")
    parser.add_argument("--dump-dir", default="dump")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--eval-set", default="eval")
    parser.add_argument("--num-pairs", type=int, default=40)
    parser.add_argument("--steps", default="10,25,50,100", help="sampling step counts, comma-separated")
    parser.add_argument("--schedules", default="identity,square", help="sampling schedules, comma-separated")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="inference.KEY=VALUE",
                        help="further inference settings for every row (e.g. inference.guidance=classifier); "
                             "each setting is its own dir, table_<settings>.md, and a scored one is not redone")
    parser.add_argument("--vocoder-config", default=str(REPO / "conf" / "vocoder" / "griffinlim.yaml"))
    return parser


def run(command: List[str]) -> None:
    env = dict(os.environ, PATH=os.pathsep.join([str(REPO / "voiceswap" / "bin"), str(REPO / "utils"),
                                                  os.environ["PATH"]]), OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{' '.join(command[:2])} failed:\n{result.stderr[-3000:]}")


def slug(override: str) -> str:
    """``inference.guidance=cfg`` -> ``guidance-cfg``: one directory per setting."""
    key, _, value = override.partition("=")
    return f"{key.split('.')[-1]}-{value}"


def pseudo_experiment(exp: Path, where: Path) -> None:
    """``where`` looks like ``exp`` to score.py (config, speakers, checkpoints) but holds its own outputs."""
    where.mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "spk2id", "checkpoints"):
        link = where / name
        if not link.exists():
            link.symlink_to((exp / name).resolve())


def score_row(pseudo: Path, args: argparse.Namespace) -> Dict[str, float]:
    run([sys.executable, str(REPO / "voiceswap" / "bin" / "score.py"), "measure", "--exp-dir", str(pseudo),
         "--data-dir", args.data_dir, "--dump-dir", args.dump_dir, "--eval-set", args.eval_set,
         "--vocoder", "griffinlim", "--vocoder-config", args.vocoder_config, "--measures", "emb,asr",
         "--units-dir", str(Path(args.dump_dir) / "units" / Path(args.exp_dir).name)])
    run([sys.executable, str(REPO / "voiceswap" / "bin" / "score.py"), "summarize", "--exp-dir", str(pseudo),
         "--data-dir", args.data_dir, "--dump-dir", args.dump_dir, "--eval-set", args.eval_set,
         "--vocoder", "griffinlim", "--vocoder-config", args.vocoder_config, "--measures", "emb,asr",
         "--units-dir", str(Path(args.dump_dir) / "units" / Path(args.exp_dir).name)])
    metrics = json.loads((pseudo / "scores_griffinlim" / "metrics.json").read_text())
    return {key: metrics["rows"]["converted"][key] for key in ("spk_sim_target", "wer", "wer_delta")}


def griffin_lim_rtf(items: List[List[str]], args: argparse.Namespace) -> float:
    """CPU seconds per audio second of Griffin-Lim alone on the sources' real log-mel."""
    target = TargetFeatures.of(args.dump_dir, "logmel80")
    vocoder = load_vocoder(load_config(args.vocoder_config), target.config.to_dict())
    raw = kaldiio.load_scp(str(Path(args.dump_dir) / "raw" / "logmel80" / args.eval_set / "feats.scp"))
    cpu, seconds = 0.0, 0.0
    for source, _, _ in items:
        log_mel = torch.from_numpy(np.array(raw[source], dtype=np.float32))
        start = time.process_time()
        with torch.no_grad():
            audio = vocoder(log_mel.T.unsqueeze(0))
        cpu += time.process_time() - start
        seconds += audio.shape[1] / target.config.sample_rate
    return cpu / seconds


def main() -> int:
    args = get_parser().parse_args()
    configure_logging(1)
    torch.set_num_threads(1)
    exp = Path(args.exp_dir)
    root = exp / "bench_steps"
    root.mkdir(parents=True, exist_ok=True)
    pairs = [line.split() for line in (Path(args.data_dir) / args.eval_set / "pairs").read_text().splitlines()
             if line.strip()]
    items = pairs[:: max(1, len(pairs) // args.num_pairs)][: args.num_pairs]
    (root / "items").write_text("".join(" ".join(item) + "\n" for item in items))
    target = TargetFeatures.of(args.dump_dir, "logmel80")
    rows = []
    for schedule in args.schedules.split(","):
        for steps in (int(s) for s in args.steps.split(",")):
            setting = "_".join([f"steps-{steps}", schedule, *(slug(o) for o in args.extra)])
            pseudo = root / setting
            done = pseudo / "row.json"
            if done.exists() and json.loads(done.read_text()).get("items") == items:
                row = json.loads(done.read_text())["row"]
                logging.info("%s: scored before (%s); delete it to measure again", setting, done)
                rows.append(row)
                print(json.dumps(row), flush=True)
                continue
            pseudo_experiment(exp, pseudo)
            out = pseudo / "convert_griffinlim"
            overrides = [f"inference.steps={steps}", f"inference.sampling_schedule={schedule}", *args.extra]
            command = ["--exp-dir", str(exp), "--dump-dir", args.dump_dir, "--data-set", args.eval_set,
                       "--utt2spk", str(Path(args.data_dir) / args.eval_set / "utt2spk"),
                       "--vocoder-config", args.vocoder_config, *[a for o in overrides for a in ("--set", o)],
                       str(root / "items"), str(out)]
            wall, cpu = time.perf_counter(), time.process_time()
            if convert_script.main(command) != 0:
                sys.exit(f"convert.py failed for {setting}")
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            # Stage 8 writes per-job files; run.sh merges them, and score.py reads the merged ones.
            conversions = (out / "conversions.1").read_text()
            (out / "conversions").write_text(conversions)
            (out / "mel.scp").write_text((out / "mel.1.scp").read_text())
            ids = [line.split()[0] for line in conversions.splitlines()]
            (out / "wav.scp").write_text("".join(f"{i} {(out / 'wav' / i).resolve()}.wav\n" for i in ids))
            frames = sum(m.shape[0] for _, m in kaldiio.load_scp_sequential(str(out / "mel.scp")))
            audio = frames * target.config.hop_length / target.config.sample_rate
            row = {"steps": steps, "schedule": schedule, "extra": "".join(f", {o}" for o in args.extra),
                   "rtf_cpu": cpu / audio, "rtf_wall": wall / audio,
                   **score_row(pseudo, args)}
            with atomic_open(done) as f:
                f.write(json.dumps({"items": items, "row": row}))
            rows.append(row)
            print(json.dumps(row), flush=True)
    gl = griffin_lim_rtf(items, args)
    lines = [f"{len(items)} eval pairs of {exp}, Griffin-Lim; RTF = seconds per second of audio (1 thread)",
             "", "| steps | schedule | RTF (CPU) | RTF (wall) | SpkSim tgt | WER % | dWER vs src |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['steps']} | {row['schedule']}{row.get('extra', '')} | {row['rtf_cpu']:.2f} | "
                     f"{row['rtf_wall']:.2f} | {row['spk_sim_target']:.3f} | {row['wer']:.1f} | "
                     f"{row['wer_delta']:+.1f} |")
    lines.append(f"| Griffin-Lim alone | | {gl:.2f} | | | | |")
    table = "\n".join(lines) + "\n"
    name = "_".join(["table", *(slug(o) for o in args.extra)])
    with atomic_open(root / f"{name}.md") as f:
        f.write(table)
    with atomic_open(root / f"{name}.json") as f:
        f.write(json.dumps({"rows": rows, "griffinlim_rtf_cpu": gl}, indent=1))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
