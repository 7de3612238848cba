"""Stage modules, and the recipes that chain them into studies.

A recipe names, in order, the stage modules a study kind runs. ``params.yaml`` picks a
recipe per study (``kind:``, default the study's name). This table is how the pipeline,
which never imports study code itself, finds the stages.
"""

RECIPES: dict[str, tuple[str, ...]] = {
    "ska_lm": (
        "stages.common.corpus",
        "stages.common.tokenize",
        "stages.ska.banks",
        "stages.ska.lm_train",
        "stages.ska.lm_evaluate",
        "stages.ska.lm_report",
    ),
    "ska_setrecall": (
        "stages.ska.setrecall_data",
        "stages.ska.setrecall_train",
        "stages.ska.setrecall_evaluate",
        "stages.common.ranking_report",
    ),
    "ska_minhash": ("stages.ska.delta", "stages.ska.delta_report"),
    "ska_bench": ("stages.ska.bench", "stages.ska.bench_report"),
    "ska_parity": ("stages.ska.parity", "stages.ska.parity_report"),
    "ska_vit": (
        "stages.common.images",
        "stages.ska.vit_train",
        "stages.ska.vit_evaluate",
        "stages.common.ranking_report",
    ),
    "ska_diffusion": (
        "stages.common.images",
        "stages.ska.fid_features",
        "stages.ska.diffusion_train",
        "stages.ska.diffusion_evaluate",
        "stages.common.ranking_report",
    ),
    "ska_text_diffusion": (
        "stages.common.corpus",
        "stages.common.tokenize",
        "stages.ska.text_diffusion_train",
        "stages.ska.text_diffusion_evaluate",
        "stages.common.ranking_report",
    ),
    "poh_injection": (
        "stages.common.sudoku_data",
        "stages.poh.sudoku_train",
        "stages.poh.sudoku_evaluate",
        "stages.common.ranking_report",
    ),
    "poh_scaling": (
        "stages.poh.maze_data",
        "stages.poh.maze_parity",
        "stages.poh.maze_train",
        "stages.poh.maze_evaluate",
        "stages.poh.maze_report",
    ),
    "ebm_sudoku": (
        "stages.common.sudoku_data",
        "stages.ebm.train",
        "stages.ebm.langevin",
        "stages.ebm.evaluate",
        "stages.ebm.report",
    ),
    "ebm_interp": ("stages.common.sudoku_data", "stages.ebm.train", "stages.ebm.interp"),
    "bridge": (
        "stages.bridge.bridge_data",
        "stages.bridge.lms",
        "stages.bridge.train",
        "stages.bridge.evaluate",
        "stages.bridge.quantize",
        "stages.bridge.bench",
        "stages.bridge.report",
    ),
}
