"""Diffusion models of seed 000 (vq-voice-swap): UNet, noise and sampling schedules, sampler, noisy classifier."""
