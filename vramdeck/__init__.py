"""The vramdeck command: the desktop panel, or a headless command on the manager."""
