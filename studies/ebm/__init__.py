"""Energy-based Sudoku solver (docs/studies.md (energy-based solver)): a JEPA-trained model decoded by Langevin dynamics
in its latent space. Plain PyTorch; the pipeline stages import it, never the other way round."""
