"""Benchmarks of scoring throughput, memory, training cost and MLflow overhead, and of the offline encoders (speed, SIB-200 accuracy) (see README.md)."""
