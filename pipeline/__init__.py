"""Engine-neutral core of the ablation pipeline. Never imports torch: planning stays fast."""
