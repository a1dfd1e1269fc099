"""Ranking quality of one-shot scores: correlations with intervals, top-k precision and regret."""
