"""What every entry script in voiceswap/bin shares: its logging set-up."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"


def configure_logging(verbose: int = 1) -> None:
    """``--verbose``: 0 warnings, 1 info, 2 debug; the ParallelWaveGAN/ESPnet log line format."""
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][max(0, min(verbose, 2))],
                        format=LOG_FORMAT)
