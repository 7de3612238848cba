"""A toy recipe (no torch, sub-second stages) for testing the pipeline with real engines."""

RECIPES = {"toy": ("stages.gen", "stages.power", "stages.report")}
