"""``from lmgate.integrations.custom_logger import CustomLogger`` — the compatible import path."""

from .._callbacks.custom_logger import CustomLogger

__all__ = ["CustomLogger"]
