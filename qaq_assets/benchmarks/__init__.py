"""Benchmarks behind ``qaq bench``: each prints its figures, the contract line last."""
