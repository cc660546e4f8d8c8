"""Evaluation: similarity and analogy benchmarks, the tagging probe, and embedding layers
for language models."""
