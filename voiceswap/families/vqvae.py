"""The VQ-VAE family: losses, batch steps and inference on top of ``voiceswap.nets.vqvae``.

Input and target are feature streams of the same utterance (normalised MFCC-39 or log-mel in,
normalised log-mel out) with the same frame count; the loss is the masked MSE of the
reconstruction plus the VQ bottleneck's own loss.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from voiceswap.nets.vqvae import VQVAE
from voiceswap.train.plan import Step
from voiceswap.train.registry import SingleLossFamily, register_family
from voiceswap.train.speakers import Target, batch_speakers, model_speaker_vector, target_batch


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over real frames only; prediction/target ``(B, D, T)``, mask ``(B, T)``."""
    weights = mask.unsqueeze(1).to(prediction.dtype)
    squared = (prediction - target).pow(2) * weights
    return squared.sum() / (weights.sum() * prediction.shape[1]).clamp(min=1.0)


@register_family("vqvae")
class VQVAEFamily(SingleLossFamily):
    """Chorowski-style VQ-VAE; one model, one optimiser (Adam, amsgrad as in seed 004).

    Plan: stage 4 trains encoder, codebook and decoder together; stage 5 dumps the codes.
    """

    role = "conversion"
    default_config = "vqvae"

    def plan(self, config: Mapping[str, Any]) -> List[Step]:
        return [Step(4, "train"), Step(5, "dump_units")]

    def unit_inventory(self) -> Optional[int]:
        return int(self.models["model"].vq.codebook_size)

    def build(self, config: Mapping[str, Any], num_speakers: int) -> Dict[str, torch.nn.Module]:
        return {"model": VQVAE(num_speakers=num_speakers, **config["model"])}

    def losses(self, batch: Mapping[str, Any]) -> Tuple[torch.Tensor, Dict[str, float]]:
        model = self.models["model"]
        features = batch["input"].transpose(1, 2)
        target = batch["target"].transpose(1, 2)
        output = model(features, batch_speakers(batch), batch["mask"])
        reconstruction_loss = masked_mse(output["reconstruction"], target, batch["mask"])
        vq = output["vq"]
        loss = reconstruction_loss + vq.loss
        return loss, {
            "loss": loss.item(),
            "reconstruction": reconstruction_loss.item(),
            "vq": vq.loss.item(),
            "perplexity": float(vq.perplexity),
            "codes_used": float(vq.num_codes_used),
        }


    @torch.no_grad()
    def encode_units(self, features: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``(T, in_dim)`` -> code ``indices (ceil(T/2),)`` and code ``vectors (ceil(T/2), code_dim)``."""
        output = self.models["model"].quantize(self.models["model"].encode(features.T.unsqueeze(0)))
        return {"indices": output.indices[0], "vectors": output.quantized[0].T}

    def speaker_vector(self, references: Sequence[torch.Tensor]) -> torch.Tensor:
        return model_speaker_vector(self.models["model"], references)

    @torch.no_grad()
    def convert(self, features: torch.Tensor, target_speaker: Target) -> torch.Tensor:
        """Encode the source, decode with the target's speaker embedding (an id of the table, or a vector of
        :meth:`speaker_vector`): ``(T, in_dim) -> (T, out_dim)``."""
        speakers = target_batch(target_speaker, features.device)
        return self.models["model"].convert(features.T.unsqueeze(0), speakers)[0].T


