"""Helpers of benchmarks/gpu_check.py (the script is the entry point)."""
