"""Defaults of image validation, apart from ``images`` (numpy, Pillow) so configs can name them cheaply."""

DEFAULT_ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
DEFAULT_MAX_PIXELS = 25_000_000
