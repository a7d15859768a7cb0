"""evolve: evolve Triton attention kernels with offline or agentic variation operators."""

__version__ = "0.1.0"
