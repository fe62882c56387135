"""Benchmarks of scoring throughput, memory, training cost and MLflow overhead (see README.md)."""
