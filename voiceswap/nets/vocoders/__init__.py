"""Vocoder nets: log-mel -> waveform. Griffin-Lim (no training), HiFi-GAN (trained in stage 7).

Each maps ``(B, n_mels, T)`` natural-log mel (the features before normalisation) to
``(B, T * hop_length)`` waveforms. Which vocoder a run uses, and loading trained weights, is the
business of the vocoder families (``voiceswap/families/griffinlim.py``, ``hifigan.py``).
"""

from voiceswap.nets.vocoders.griffinlim import GriffinLimVocoder  # noqa: F401
from voiceswap.nets.vocoders.hifigan import HiFiGANGenerator, HiFiGANVocoder  # noqa: F401
