"""The tool's version, in a module of its own so that the bundle writer can record it
without importing the package (which imports everything)."""

__version__ = "0.1.0"
