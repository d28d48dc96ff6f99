"""The package version, in a module of its own so that any stage can name it without importing
the package's public API (mnistlab/__init__.py imports predict).
"""

__version__ = "0.1.0"
