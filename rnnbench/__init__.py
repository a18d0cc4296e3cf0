"""rnnbench: run and compare recurrent text classifiers on real data, fairly and reproducibly."""

__version__ = "0.1.0"
