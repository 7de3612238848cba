"""Stages of the latent bridge study (bridge): two frozen LMs joined by a trained translator."""
