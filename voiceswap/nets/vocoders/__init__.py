"""Vocoder nets: log-mel -> waveform. Griffin-Lim (no training), HiFi-GAN and WaveGlow (trained in stage 7).

Each maps ``(B, n_mels, T)`` natural-log mel (the features before normalisation) to
``(B, T * hop_length)`` waveforms. Which vocoder a run uses, and loading trained weights, is the
business of the vocoder families (``voiceswap/families/griffinlim.py``, ``hifigan.py``, ``waveglow.py``).
WaveGlow's module also holds the flow of the ``waveglow_vq`` conversion model (VQ codes + speaker).
"""

from voiceswap.nets.vocoders.griffinlim import GriffinLimVocoder  # noqa: F401
from voiceswap.nets.vocoders.hifigan import HiFiGANGenerator, HiFiGANVocoder  # noqa: F401
from voiceswap.nets.vocoders.waveglow import WaveGlow, WaveGlowVocoder, WaveGlowVocoderNet, WaveGlowVQ  # noqa: F401
