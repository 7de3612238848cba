"""The tiny model configuration the EBM tests share (fast on CPU, cell_context on)."""

from studies.ebm.model import EBMConfig

TINY = EBMConfig(
    d_model=16,
    n_layers=1,
    n_heads=2,
    d_ff=32,
    d_z=8,
    d_pred=16,
    dec_layers=1,
    dec_heads=2,
    d_cell=8,
    dropout=0.0,
    cell_context=True,
)
