"""Searching with a trained supernet: strategies, the resumable search loop, results store, selection.

Import from the modules themselves (`nas.results.store`, `nas.search.strategies`, ...): this package
imports none of them, so `nas.results.store` (standard library only) loads without torch, and worker
processes that only write results start quickly.
"""
