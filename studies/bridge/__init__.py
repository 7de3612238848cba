"""Latent bridge between two language models: a translator from LM A's hidden states to soft
tokens LM B reads (docs/studies.md, the bridge section)."""
