"""Model families: the glue between a family's nets and the generic Trainer.

Importing this package registers every family with ``voiceswap.train.registry``.
"""

from voiceswap.families import vqvae  # noqa: F401  (registers "vqvae")
