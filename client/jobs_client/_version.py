"""The distribution's version, read by ``pyproject.toml`` (``tool.setuptools.dynamic``) and the User-Agent."""

__version__ = "0.1.0"
