"""unitgen: hardened systemd units, a single-instance launcher and packages for a service."""

__version__ = "0.1.0"
