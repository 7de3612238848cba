"""Stages of the energy-based Sudoku solver studies (ebm_sudoku, ebm_interp)."""
