"""Stella Export Center: reproducible, signed bundles of supply-chain security evidence."""

__version__ = "0.1.0"
TOOL_NAME = "stella-export-center"

__all__ = ["TOOL_NAME", "__version__"]
