"""Training methods beyond the fixed-distribution samplers of `OneShotModule` (one file each)."""
