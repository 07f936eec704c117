"""Benchmarks: scripts run by path (``python bench/hot_path.py``), except
``neutron_startup``, which imports the end-to-end lab and so runs as a module
from the repository root (``python -m bench.neutron_startup``); see README.md."""
