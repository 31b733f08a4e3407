"""Text encoders (bi-encoders) that embed queries, items and users."""

from lmrec.text.base import FakeEncoder, TextEncoder, normalize

__all__ = ["FakeEncoder", "TextEncoder", "normalize"]
