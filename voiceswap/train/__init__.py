"""The generic training framework: config overrides, checkpoints, EMA, the family registry, the Trainer."""
