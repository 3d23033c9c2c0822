"""Model families: the glue between a family's nets and the generic Trainer.

Importing this package registers every family with ``voiceswap.train.registry``.
"""

from voiceswap.families import vqvae  # noqa: F401  (registers "vqvae")
from voiceswap.families import softvc  # noqa: F401  (registers "softvc_units" and "softvc")
from voiceswap.families import hifigan  # noqa: F401  (registers "hifigan")
from voiceswap.families import speaker_classifier  # noqa: F401  (registers "speaker_classifier")
from voiceswap.families import griffinlim  # noqa: F401  (registers "griffinlim")
from voiceswap.families import waveglow  # noqa: F401  (registers "waveglow" and "waveglow_vq")
from voiceswap.families import diffusion  # noqa: F401  (registers "diffusion" and "diffusion_classifier")
from voiceswap.families import vaegan  # noqa: F401  (registers "vaegan")
