"""The package version (a leaf: modules below the package root read it here)."""

__version__ = "0.1.0"
