#!/usr/bin/env python3
"""Benchmark: CPU real-time factor of the vocoders (stage 8). Prints numbers; asserts nothing.

RTF = compute seconds / seconds of audio made, over the first ``--utts`` eval utterances' real
log-mels (dump/raw/logmel80/eval, stage 2), per torch thread count. HiFi-GAN runs the trained
generator of ``--vocoder-dir`` (stage 7) with weight norm folded in, as convert.py does; without a
trained one it times an untrained generator of ``--hifigan-config`` (speed does not depend on the
weights). WaveGlow likewise: the trained flow of ``--waveglow-dir`` (weight norm folded, sampling
with the config's sigma), else an untrained one of ``--waveglow-config``.

    python bench/vocoder_rtf.py [--dump-dir dump] [--vocoder-dir exp/vocoder_hifigan_synth]
                                [--waveglow-dir exp/vocoder_waveglow_synth] [--utts 20]
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Callable, List

import kaldiio
import torch

from voiceswap.features.spectral import load_feature_config
import voiceswap.families  # noqa: F401  (registers the vocoder families)
from voiceswap.nets.vocoders.hifigan import HiFiGANGenerator, HiFiGANVocoder
from voiceswap.nets.vocoders.waveglow import WaveGlowVocoder, WaveGlowVocoderNet
from voiceswap.train.config import load_config
from voiceswap.train.experiment import load_vocoder


def real_time_factor(vocoder: Callable[[torch.Tensor], torch.Tensor], mels: List[torch.Tensor],
                     sample_rate: int) -> float:
    with torch.inference_mode():
        vocoder(mels[0])  # warm-up: allocator, FFT plans
        start = time.perf_counter()
        samples = sum(vocoder(mel).shape[-1] for mel in mels)
        return (time.perf_counter() - start) / (samples / sample_rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dump-dir", default="dump")
    parser.add_argument("--eval-set", default="eval")
    parser.add_argument("--vocoder-dir", default=None, help="trained HiFi-GAN (stage 7); default: untrained")
    parser.add_argument("--hifigan-config", default="conf/vocoder/hifigan.yaml")
    parser.add_argument("--waveglow-dir", default=None, help="trained WaveGlow (stage 7); default: untrained")
    parser.add_argument("--waveglow-config", default="conf/vocoder/waveglow.yaml")
    parser.add_argument("--utts", type=int, default=20)
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    args = parser.parse_args()

    feats = Path(args.dump_dir) / "raw" / "logmel80" / args.eval_set
    feature_config = load_feature_config(feats / "feats_config.yaml").to_dict()
    mels = [torch.from_numpy(mel.T.copy()).unsqueeze(0)
            for _, mel in itertools.islice(kaldiio.load_scp_sequential(str(feats / "feats.scp")), args.utts)]
    seconds = sum(mel.shape[-1] for mel in mels) * feature_config["hop_length"] / feature_config["sample_rate"]
    if args.vocoder_dir:
        hifigan = load_vocoder(load_config(args.hifigan_config), feature_config, args.vocoder_dir)
        which = f"trained, {args.vocoder_dir}"
    else:
        generator_config = load_config(args.hifigan_config)["model"]["generator"]
        generator = HiFiGANGenerator(in_channels=feature_config["n_mels"], hop_length=feature_config["hop_length"],
                                     **generator_config)
        hifigan, which = HiFiGANVocoder(generator.eval()), f"untrained, {args.hifigan_config}"
    if args.waveglow_dir:
        waveglow = load_vocoder(load_config(args.waveglow_config), feature_config, args.waveglow_dir)
        waveglow_which = f"trained, {args.waveglow_dir}"
    else:
        waveglow_config = load_config(args.waveglow_config)
        net = WaveGlowVocoderNet(n_mels=feature_config["n_mels"], hop_length=feature_config["hop_length"],
                                 **waveglow_config["model"])
        waveglow, waveglow_which = WaveGlowVocoder(net.eval()), f"untrained, {args.waveglow_config}"
    griffinlim = load_vocoder(load_config("conf/vocoder/griffinlim.yaml"), feature_config)
    vocoders = {"griffinlim": griffinlim, f"hifigan ({which})": hifigan, f"waveglow ({waveglow_which})": waveglow}
    print(f"{len(mels)} {args.eval_set} utterances, {seconds:.1f} s of audio; RTF = compute s / audio s")
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for name, vocoder in vocoders.items():
            rtf = real_time_factor(vocoder, mels, feature_config["sample_rate"])
            print(f"threads={threads}  {name:60s} RTF {rtf:.4f}  ({1 / rtf:.0f}x real time)")


if __name__ == "__main__":
    main()
