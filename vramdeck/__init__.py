"""The vramdeck command: the desktop panel, or a headless command on the manager."""

#: The version where no package metadata is at hand (a PyInstaller bundle); the same as
#: pyproject.toml's, which a test checks.
__version__ = "0.1.0"
