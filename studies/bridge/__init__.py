"""Latent bridge between two language models: a translator from LM A's hidden states to soft tokens LM B reads (STUDIES.md §5)."""  # noqa: E501
