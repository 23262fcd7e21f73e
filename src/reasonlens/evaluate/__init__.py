"""Evaluation: batched generation and task metrics."""
