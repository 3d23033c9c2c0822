"""The VAE-GAN family (seed 003): one shared encoder, one generator and one discriminator per speaker.

Models (names as the config's ``optim`` section sees them): ``encoder``, ``shared_block`` (the
residual block every generator starts with), ``generator_<id>`` and ``discriminator_<id>`` for
every speaker id of the train set's ``spk2id`` (``exp/<tag>/spk2id`` says which speaker is which).

Training (stage 6), on random crops of ``data.crop_frames`` frames of the normalised log-mel
(``data.input_feats`` must equal ``data.target_feats``), seen as ``[B, 1, n_mels, frames]`` images:

* Every item of a batch has its source speaker ``s``; ``model.mode: many_to_many`` draws for every
  item a target speaker ``t != s`` among the *other speakers present in the batch* (so the batch
  holds real crops of every target for its discriminator), uniformly, with the global torch RNG
  (seeded and checkpointed by the Trainer, so a resumed run draws the same targets);
  ``one_to_one`` is the same with two speakers (``t`` is always the other one), the seed's setup.
  A batch with a single speaker has no translation: only the identity and KL terms train.
* Encoder and generators (one loss, one backward): ``mu = E(x)``, ``z = mu + N(0, I)``;
  identity ``L1(G_s(z), x)``, translation ``G_t(z)`` judged by ``D_t`` (least squares, target 1),
  cycle ``L1(G_s(E(G_t(z)) + N(0, I)), x)``, KL ``mean(mu^2)`` on the real and on the re-encoded
  translations (``loss.kl_cycle: 0`` switches the latter off, the seed's future-work item), and the
  latent term: L1 between the batch means of ``mu`` of every two speakers present (the seed's
  ``L1(mean mu_A, mean mu_B)`` for two). Weights (``loss:``): GAN 10, KL 0.1 + 0.1, identity 100,
  cycle 100, latent 10, as the seed. L1 terms count real frames only (``mask``).
* Discriminators: ``MSE(D_t(x_t), 1) + MSE(D_t(sg(G_t(z))), 0)`` for every target ``t`` of the
  batch, with the real crops of ``t`` in the batch. Discriminators do not learn from the
  generators' loss (their parameters are frozen during it) and generators not from the
  discriminators' (the translations are detached).

Optimisers come from ``optim:`` (voiceswap/train/optim.py). The discriminators may have one
optimiser each (``params: "discriminator_*"``): their losses are separate. The encoder, the
shared block and the generators learn from one loss with one backward pass, which
``OptimizerStep`` takes into one optimiser: one Adam over all of them (as the PyTorch original's
``optimizer_G`` over E, G1, G2); Adam's update is per parameter, so this is the same update as one
Adam per model with the same settings, up to gradient clipping, which covers them together.

Validation (every ``train.valid_interval`` steps, whole dev utterances): identity and cycle L1
with ``z = mu`` and the next speaker present as target, KL, and the discriminators' mean scores of
real and translated frames. GAN losses say little about quality, so ``best_mode: last``.

Training plots (the seed's ``plot_0t1``): at a validation, when ``plots.interval`` steps have
passed since the last plot, ``exp/<tag>/plots/train/step_<N>_<src>_to_<tgt>.png`` shows
input | translated and cycle | target for a fixed dev utterance (the first of the dev loader) and
a fixed direction (its speaker to the next speaker id), converted as stage 8 converts.

Conversion (stage 8): sliding windows of ``inference.window`` frames (null: ``data.crop_frames``,
the training width) every ``inference.hop`` frames (seed: 128 and 32), ``G_t(E(window))`` with
``z = mu`` (no sampling noise at inference), and overlap-add with a Hann weight: every output
frame is the average of the windows covering it, each weighted by ``hann(window + 2)[1:-1]`` at the
frame's position (strictly positive, so edge frames covered by one window take its output
unchanged; mid-window frames, furthest from a window's zero padding, count most). An utterance
shorter than a window is padded to one window with its quietest value per mel bin and cropped
back. The output has the source's frame count.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from voiceswap.data.atomic import temp_path_for
from voiceswap.data.dataset import read_spk2id
from voiceswap.nets.vaegan import (
    Encoder,
    PatchDiscriminator,
    SharedBlock,
    SpeakerGenerator,
    pad_to_multiple,
    sample_latent,
)
from voiceswap.train.config import ConfigError
from voiceswap.train.plan import Step
from voiceswap.train.registry import Family, register_family

logger = logging.getLogger(__name__)

MODES = ("many_to_many", "one_to_one")
#: Windows converted in one forward pass at inference (bounds memory on long utterances).
INFERENCE_BATCH = 16


def generator_name(speaker: int) -> str:
    return f"generator_{speaker}"


def discriminator_name(speaker: int) -> str:
    return f"discriminator_{speaker}"


@dataclass(frozen=True)
class LossWeights:
    """``loss:`` section: the seed's weights by default."""

    gan: float = 10.0
    kl: float = 0.1
    kl_cycle: float = 0.1
    identity: float = 100.0
    cycle: float = 100.0
    latent: float = 10.0

    @classmethod
    def of(cls, section: Optional[Mapping[str, Any]]) -> "LossWeights":
        section = dict(section or {})
        known = cls.__dataclass_fields__
        unknown = sorted(set(section) - set(known))
        if unknown:
            raise ConfigError(f"unknown key(s) loss.{', loss.'.join(unknown)}; the VAE-GAN loss weights are: "
                              f"{', '.join(known)}")
        for key, value in section.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"loss.{key} must be a number >= 0 (0 switches the term off), got {value!r}")
        return cls(**{key: float(value) for key, value in section.items()})


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over real bins and frames: images ``(B, 1, H, W)``, ``weights`` 1 on real, 0 on padding."""
    weights = weights.expand_as(prediction)
    return ((prediction - target).abs() * weights).sum() / weights.sum().clamp(min=1.0)


def hann_weights(window: int) -> torch.Tensor:
    """The overlap-add weight of each frame of a window: ``hann(window + 2)[1:-1]``, strictly positive."""
    return torch.hann_window(window + 2, periodic=False)[1:-1]


def overlap_add(outputs: torch.Tensor, starts: Sequence[int], frames: int) -> torch.Tensor:
    """Hann-weighted average of window outputs ``(N, window, D)`` placed at ``starts`` into ``(frames, D)``."""
    window = outputs.shape[1]
    weights = hann_weights(window).to(outputs)
    total = outputs.new_zeros(frames, outputs.shape[2])
    norm = outputs.new_zeros(frames, 1)
    for output, start in zip(outputs, starts):
        total[start:start + window] += weights[:, None] * output
        norm[start:start + window] += weights[:, None]
    return total / norm


def window_starts(frames: int, window: int, hop: int) -> List[int]:
    """Window offsets every ``hop`` frames, plus one flush with the end, covering ``frames >= window`` frames."""
    starts = list(range(0, frames - window + 1, hop))
    if starts[-1] != frames - window:
        starts.append(frames - window)
    return starts


@register_family("vaegan")
class VAEGANFamily(Family):
    """VAE-GAN voice conversion (AlBadawy & Lyu 2020), one-to-one or many-to-many; see the module docstring."""

    role = "conversion"
    default_config = "vaegan"

    def plan(self, config: Mapping[str, Any]) -> List[Step]:
        return [Step(6, "train")]

    # ------------------------------------------------------------------ build

    def build(self, config: Mapping[str, Any], num_speakers: int) -> Dict[str, nn.Module]:
        model, data = config["model"], config["data"]
        mode = model.get("mode", "many_to_many")
        if mode not in MODES:
            raise ConfigError(f"model.mode is {mode!r}; use one of {', '.join(MODES)}")
        if mode == "one_to_one" and num_speakers != 2:
            raise ConfigError(
                f"model.mode one_to_one trains two speakers, but the train set has {num_speakers}: name two with "
                "data.speakers=[A,B] (their names in the train set's utt2spk), or select two in data prep "
                "(flickr8k: --data-prep-opts '--speakers \"4 7\"'), or use model.mode=many_to_many")
        if num_speakers < 2:
            raise ConfigError(f"a VAE-GAN converts between speakers, but the train set has {num_speakers}: "
                              "it needs at least two")
        if data["input_feats"] != data["target_feats"]:
            raise ConfigError(f"data.input_feats ({data['input_feats']}) and data.target_feats "
                              f"({data['target_feats']}) differ: a VAE-GAN re-encodes its own output, so both must "
                              "be the same log-mel stream")
        if model["in_dim"] != model["out_dim"]:
            raise ConfigError(f"model.in_dim {model['in_dim']} != model.out_dim {model['out_dim']}: the VAE-GAN "
                              "reads and writes the same log-mel")
        encoder_channels = list(model["encoder_channels"])
        generator_channels = list(model["generator_channels"])
        if len(generator_channels) != len(encoder_channels) - 1:
            raise ConfigError(
                f"model.generator_channels {generator_channels} must have one entry per downsampling of "
                f"model.encoder_channels {encoder_channels} (i.e. {len(encoder_channels) - 1}), so that the "
                "generators restore the encoder's input size")
        self.mode = mode
        self.num_speakers = num_speakers
        self.weights = LossWeights.of(config.get("loss"))
        self._configure_inference(config)
        self.plot_interval = int((config.get("plots") or {}).get("interval") or 0)
        # The fixed dev utterance, a dev reference per speaker and the step of the last plot.
        self._plot_cache: Dict[str, Any] = {"source": None, "refs": {}, "last": None}
        self._step: Optional[int] = None  # steps taken, as train_step last saw them (None: not training)
        self.ema_targets = ["encoder", "shared_block"] + [generator_name(s) for s in range(num_speakers)]

        encoder = Encoder(encoder_channels, int(model["encoder_res_blocks"]))
        models: Dict[str, nn.Module] = {
            "encoder": encoder,
            "shared_block": SharedBlock(encoder.latent_channels, int(model["shared_res_blocks"])),
        }
        for speaker in range(num_speakers):
            models[generator_name(speaker)] = SpeakerGenerator(
                encoder.latent_channels, generator_channels, int(model["generator_res_blocks"]),
                float(model["output_scale"]))
        for speaker in range(num_speakers):
            models[discriminator_name(speaker)] = PatchDiscriminator(list(model["discriminator_channels"]))
        self.scale = encoder.scale
        return models

    def _configure_inference(self, config: Mapping[str, Any]) -> None:
        inference = config.get("inference") or {}
        window = inference.get("window") or config["data"]["crop_frames"]
        hop = inference.get("hop")
        if not isinstance(window, int) or window < 1:
            raise ConfigError(f"inference.window must be a positive number of frames (null: data.crop_frames), "
                              f"got {window!r}")
        if not isinstance(hop, int) or not 1 <= hop <= window:
            raise ConfigError(f"inference.hop must be a whole number of frames from 1 to the window ({window}), "
                              f"got {hop!r}")
        self.window, self.hop = window, hop

    # ------------------------------------------------------------------ optimisers

    def bind(self, models: Dict[str, nn.Module], optimizers: Dict[str, torch.optim.Optimizer],
             optimizer_step: Any) -> None:
        """As :meth:`Family.bind`, and find which optimiser updates which model (checked against the one-loss rule)."""
        super().bind(models, optimizers, optimizer_step)
        if any(isinstance(model, nn.parallel.DistributedDataParallel) for model in models.values()):
            # Each rank's batch has other speakers, so each rank would run other generators and
            # discriminators and DDP's gradient all-reduce would wait forever.
            raise ConfigError("the VAE-GAN family trains in one process (its per-speaker networks differ per batch): "
                              "use --ngpu 0 or 1")
        owner: Dict[str, str] = {}
        for opt_name, optimizer in optimizers.items():
            ids = {id(p) for group in optimizer.param_groups for p in group["params"]}
            for model_name, model in models.items():
                if any(id(p) in ids for p in model.parameters()):
                    owner[model_name] = opt_name
        missing = [name for name in models if name not in owner]
        if missing:
            raise ConfigError(f"no optimiser of the optim section updates {', '.join(missing)}: add them to an entry's "
                              "params (e.g. generators: {params: [encoder, shared_block, \"generator_*\"]})")
        generator_side = ["encoder", "shared_block"] + [generator_name(s) for s in range(self.num_speakers)]
        names = sorted({owner[name] for name in generator_side})
        if len(names) != 1:
            raise ConfigError(
                f"the encoder, shared_block and generators learn from one loss, so one optimiser must update them all, "
                f"but optim splits them over {', '.join(names)}: use one entry with params: "
                "[encoder, shared_block, \"generator_*\"]")
        shared = [owner[discriminator_name(s)] for s in range(self.num_speakers)
                  if owner[discriminator_name(s)] in names]
        if shared:
            raise ConfigError(f"optimiser {shared[0]} updates generators and discriminators together; give the "
                              "discriminators their own entry (params: \"discriminator_*\")")
        self.generator_optimizer = names[0]
        self.discriminator_optimizer = {s: owner[discriminator_name(s)] for s in range(self.num_speakers)}

    # ------------------------------------------------------------------ the networks, batched by speaker

    def _generate(self, z: torch.Tensor, speakers: torch.Tensor) -> torch.Tensor:
        """``G_{speakers[i]}(shared(z_i))`` for every item: each generator runs once on its items."""
        hidden = self.models["shared_block"](z)
        parts, order = [], []
        for speaker in torch.unique(speakers).tolist():
            index = torch.nonzero(speakers == speaker).squeeze(1)
            parts.append(self.models[generator_name(speaker)](hidden[index]))
            order.append(index)
        inverse = torch.empty_like(speakers)
        flat = torch.cat(order)
        inverse[flat] = torch.arange(len(flat), device=flat.device)
        return torch.cat(parts)[inverse]

    def _images(self, batch: Mapping[str, Any]) -> Tuple[torch.Tensor, torch.Tensor]:
        """The batch as images ``(B, 1, H, W)`` padded to the encoder's scale, and weights (1: a real bin and frame)."""
        features = batch["input"]
        mask = batch.get("mask")
        if mask is None:
            mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        images, _ = pad_to_multiple(features.transpose(1, 2).unsqueeze(1), self.scale)
        weights, _ = pad_to_multiple(mask[:, None, None, :].to(images.dtype).expand(-1, 1, features.shape[2], -1),
                                     self.scale)
        return images * weights, weights

    @staticmethod
    def _targets(speakers: torch.Tensor, random: bool = True) -> Optional[torch.Tensor]:
        """A target speaker per item among the other speakers present (None if only one is).

        ``random``: uniform among them, from the global torch RNG (which the Trainer seeds and
        checkpoints); else the next speaker present, in id order (validation).
        """
        present = torch.unique(speakers)
        if len(present) < 2:
            return None
        position = torch.searchsorted(present, speakers)
        if random:
            shift = 1 + torch.randint(len(present) - 1, speakers.shape, device=speakers.device)
        else:
            shift = torch.ones_like(position)
        return present[(position + shift) % len(present)]

    def _adversarial(self, images: torch.Tensor, speakers: torch.Tensor, value: float) -> torch.Tensor:
        """Least squares ``mean((D_{speakers[i]}(images_i) - value)^2)`` over every patch of every item."""
        total, count = images.new_zeros(()), 0
        for speaker in torch.unique(speakers).tolist():
            scores = self.models[discriminator_name(speaker)](images[speakers == speaker])
            total = total + (scores - value).pow(2).sum()
            count += scores.numel()
        return total / max(count, 1)

    @staticmethod
    def _latent_loss(mu: torch.Tensor, speakers: torch.Tensor) -> torch.Tensor:
        """Mean over every two speakers present of L1 between their batch-mean latents (the seed: A vs B)."""
        means = [mu[speakers == s].mean(0) for s in torch.unique(speakers).tolist()]
        pairs = list(itertools.combinations(means, 2))
        if not pairs:
            return mu.new_zeros(())
        return torch.stack([F.l1_loss(a, b) for a, b in pairs]).mean()

    # ------------------------------------------------------------------ training

    def train_step(self, batch: Mapping[str, Any], step: int) -> Dict[str, float]:
        self._step = step + 1
        real, weights = self._images(batch)
        speakers = batch["speakers"]
        targets = self._targets(speakers)
        w = self.weights
        discriminators = [self.models[discriminator_name(s)] for s in range(self.num_speakers)]

        # Encoder + generators. The discriminators judge but do not learn from this loss.
        flags = [p.requires_grad for d in discriminators for p in d.parameters()]
        for d in discriminators:
            d.requires_grad_(False)
        try:
            mu = self.models["encoder"](real)
            z = sample_latent(mu)
            identity = masked_l1(self._generate(z, speakers), real, weights)
            kl = mu.pow(2).mean()
            terms = {"identity": identity, "kl": kl}
            loss = w.identity * identity + w.kl * kl
            if targets is not None:
                fake = self._generate(z, targets) * weights
                adversarial = self._adversarial(fake, targets, 1.0)
                mu_fake = self.models["encoder"](fake)
                cycle = masked_l1(self._generate(sample_latent(mu_fake), speakers), real, weights)
                kl_cycle = mu_fake.pow(2).mean()
                latent = self._latent_loss(mu, speakers)
                terms.update({"g_adv": adversarial, "cycle": cycle, "kl_cycle": kl_cycle, "latent": latent})
                loss = (loss + w.gan * adversarial + w.cycle * cycle + w.kl_cycle * kl_cycle + w.latent * latent)
            g_norm = self.optimizer_step(loss, self.generator_optimizer)
        finally:
            parameters = (p for d in discriminators for p in d.parameters())
            for parameter, flag in zip(parameters, flags):
                parameter.requires_grad_(flag)
        metrics = {"loss": loss.item(), **{name: value.item() for name, value in terms.items()}}
        if g_norm is not None:  # None on accumulation micro-batches that do not update
            metrics["g_grad_norm"] = g_norm
        if targets is None:
            return metrics

        # Discriminators of this batch's targets: its real crops of t -> 1, its translations to t -> 0.
        fake = fake.detach()
        losses: Dict[str, torch.Tensor] = {}
        for speaker in torch.unique(targets).tolist():
            d = self.models[discriminator_name(speaker)]
            real_scores = d(real[speakers == speaker])
            fake_scores = d(fake[targets == speaker])
            d_loss = F.mse_loss(real_scores, torch.ones_like(real_scores)) + \
                F.mse_loss(fake_scores, torch.zeros_like(fake_scores))
            name = self.discriminator_optimizer[speaker]
            losses[name] = losses[name] + d_loss if name in losses else d_loss
        d_norms = [self.optimizer_step(d_loss, name) for name, d_loss in losses.items()]
        metrics["d_loss"] = sum(d_loss.item() for d_loss in losses.values()) / len(torch.unique(targets))
        d_norms = [n for n in d_norms if n is not None]
        if d_norms:
            metrics["d_grad_norm"] = sum(d_norms) / len(d_norms)
        return metrics

    @torch.no_grad()
    def valid_step(self, batch: Mapping[str, Any]) -> Dict[str, float]:
        real, weights = self._images(batch)
        speakers = batch["speakers"]
        mu = self.models["encoder"](real)
        identity = masked_l1(self._generate(mu, speakers), real, weights)
        metrics = {"identity": identity.item(), "kl": mu.pow(2).mean().item()}
        targets = self._targets(speakers, random=False)
        if targets is None:  # a dev batch of one speaker: translate to the next speaker id instead
            targets = (speakers + 1) % self.num_speakers
        fake = self._generate(mu, targets) * weights
        cycle = masked_l1(self._generate(self.models["encoder"](fake), speakers), real, weights)
        metrics.update({
            "cycle": cycle.item(),
            "loss": (self.weights.identity * identity + self.weights.cycle * cycle).item(),
            "d_real": self._mean_score(real, speakers),
            "d_fake": self._mean_score(fake, targets),
        })
        self._training_plot(batch)
        return metrics

    def _mean_score(self, images: torch.Tensor, speakers: torch.Tensor) -> float:
        """The mean patch score of the speakers' discriminators (1: judged real, 0: judged translated)."""
        scores = [self.models[discriminator_name(s)](images[speakers == s]).mean()
                  for s in torch.unique(speakers).tolist()]
        return float(torch.stack(scores).mean())

    # ------------------------------------------------------------------ conversion

    @torch.no_grad()
    def convert(self, features: torch.Tensor, target_speaker: int) -> torch.Tensor:
        """Normalised log-mel ``(T, n_mels)`` -> ``(T, n_mels)`` in the voice of ``target_speaker`` (see module doc)."""
        if not 0 <= target_speaker < self.num_speakers:
            raise ValueError(f"target speaker id {target_speaker} is not one of the model's {self.num_speakers}")
        device = features.device
        features = features.to(next(self.models["encoder"].parameters()).device)
        frames = features.shape[0]
        window, hop = self.window, self.hop
        if frames < window:
            logger.debug("an utterance of %d frames is shorter than the %d-frame window: padded with its quietest "
                         "value per mel bin and cropped back", frames, window)
            floor = features.min(dim=0, keepdim=True).values
            features = torch.cat([features, floor.expand(window - frames, -1)])
        starts = window_starts(features.shape[0], window, hop)
        windows = torch.stack([features[start:start + window] for start in starts])  # (N, window, D)
        outputs = []
        for chunk in windows.split(INFERENCE_BATCH):
            images, (height, width) = pad_to_multiple(chunk.transpose(1, 2).unsqueeze(1), self.scale)
            mu = self.models["encoder"](images)
            converted = self.models[generator_name(target_speaker)](self.models["shared_block"](mu))
            outputs.append(converted[:, 0, :height, :width].transpose(1, 2))
        return overlap_add(torch.cat(outputs), starts, features.shape[0])[:frames].to(device)

    # ------------------------------------------------------------------ training plots

    def _experiment_dir(self) -> Optional[Path]:
        """The experiment dir being trained: ``exp_dir`` if the Trainer gives one, else the dir of its train.log.

        The Trainer does not hand families its outdir; it does log everything (families included)
        to ``<outdir>/train.log`` through a handler on the root logger (rank 0 only).
        """
        exp_dir = getattr(self, "exp_dir", None)
        if exp_dir is not None:
            return Path(exp_dir)
        for handler in logging.getLogger().handlers:
            filename = getattr(handler, "baseFilename", None)
            if isinstance(handler, logging.FileHandler) and filename and Path(filename).name == "train.log":
                return Path(filename).parent
        return None

    def _training_plot(self, batch: Mapping[str, Any]) -> None:
        """Remember the fixed dev utterance and target reference; plot when ``plots.interval`` steps have passed."""
        step = self._step
        if not self.plot_interval or step is None:  # off, or validation outside training
            return
        cache = self._plot_cache
        speakers = batch["speakers"].tolist()
        mask = batch.get("mask")
        lengths = mask.sum(1).tolist() if mask is not None else [batch["input"].shape[1]] * len(speakers)
        utts = batch.get("utts") or [f"item {index}" for index in range(len(speakers))]
        for index, speaker in enumerate(speakers):
            item = (utts[index], speaker, batch["input"][index, :int(lengths[index])].detach().cpu())
            if cache["source"] is None:
                cache["source"] = item
            cache["refs"].setdefault(speaker, item)
        utt, source, features = cache["source"]
        target = (source + 1) % self.num_speakers
        if target not in cache["refs"] or cache["last"] == step:
            return
        if cache["last"] is not None and step - cache["last"] < self.plot_interval:
            return
        exp_dir = self._experiment_dir()
        if exp_dir is None:
            if cache["last"] is None:
                logger.info("no experiment dir known (no train.log handler): no training plots")
            cache["last"] = step
            return
        cache["last"] = step
        names = {index: name for name, index in read_spk2id(exp_dir / "spk2id").items()} \
            if (exp_dir / "spk2id").is_file() else {}
        source_name, target_name = names.get(source, f"spk{source}"), names.get(target, f"spk{target}")
        translated = self.convert(features, target)
        cycle = self.convert(translated, source)
        reference = cache["refs"][target]
        path = exp_dir / "plots" / "train" / f"step_{step:07d}_{source_name}_to_{target_name}.png"
        plot_translation(path, f"step {step}: {utt} ({source_name} -> {target_name})",
                         [(f"input ({source_name})", features), (f"translated (-> {target_name})", translated),
                          (f"cycle (-> {source_name})", cycle),
                          (f"target: {reference[0]} ({target_name})", reference[2])])


def plot_translation(path: Path, title: str, panels: Sequence[Tuple[str, torch.Tensor]]) -> Path:
    """2 x 2 spectrograms ``(T, n_mels)`` (input | translated, cycle | target) with one colour scale, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in jobs
    import matplotlib.pyplot as plt

    arrays = [panel.float().numpy() for _, panel in panels]
    vmin, vmax = min(float(a.min()) for a in arrays), max(float(a.max()) for a in arrays)
    fig, axes = plt.subplots(2, 2, figsize=(10, 6), squeeze=False)
    for ax, (label, _), array in zip(axes.flat, panels, arrays):
        ax.imshow(array.T, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="magma")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("frame")
        ax.set_ylabel("mel bin")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path
