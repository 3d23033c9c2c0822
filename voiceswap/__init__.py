"""voiceswap: a voice-conversion research toolkit in the Kaldi/ESPnet tradition."""

__version__ = "0.1.0"
