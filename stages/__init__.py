"""Stage modules, and the recipes that chain them into studies.

A recipe names, in order, the stage modules a study kind runs. ``params.yaml`` picks a
recipe per study (``kind:``, default the study's name). This table is how the pipeline,
which never imports study code itself, finds the stages.
"""

RECIPES: dict[str, tuple[str, ...]] = {
    "ska_lm": (
        "stages.corpus",
        "stages.tokenize",
        "stages.ska_banks",
        "stages.lm_train",
        "stages.lm_evaluate",
        "stages.lm_report",
    ),
    "ska_minhash": ("stages.ska_delta", "stages.ska_delta_report"),
    "ska_bench": ("stages.ska_bench", "stages.ska_bench_report"),
    "ska_parity": ("stages.ska_parity", "stages.ska_parity_report"),
    "ska_vit": ("stages.images", "stages.vit_train", "stages.vit_evaluate", "stages.ranking_report"),
    "ska_diffusion": (
        "stages.images",
        "stages.fid_features",
        "stages.diffusion_train",
        "stages.diffusion_evaluate",
        "stages.ranking_report",
    ),
    "ska_text_diffusion": (
        "stages.corpus",
        "stages.tokenize",
        "stages.text_diffusion_train",
        "stages.text_diffusion_evaluate",
        "stages.ranking_report",
    ),
    "poh_injection": ("stages.sudoku_data", "stages.sudoku_train", "stages.sudoku_evaluate", "stages.ranking_report"),
    "poh_scaling": (
        "stages.maze_data",
        "stages.maze_parity",
        "stages.maze_train",
        "stages.maze_evaluate",
        "stages.maze_report",
    ),
}
