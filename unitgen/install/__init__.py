"""`unitgen install NAME` / `unitgen uninstall NAME`: a rendered service onto a running host
without a package, and off it again, by a manifest under /var/lib/unitgen/.

One module per concern:

- `rootfs`: file operations under the root that follow no symbolic link, atomic per file;
- `manifest`: the record of what was installed (and, while installing, what may be left);
- `plan`: the staging tree as manifest entries, and every reason to refuse before writing;
- `steps`: the packages' systemd steps (sysusers, tmpfiles, bytecode, daemon-reload, enable, start);
- `apply`: `install` and `uninstall`, in that order of things.
"""

from __future__ import annotations

from unitgen.install.apply import InstallResult, UninstallResult, install, uninstall

__all__ = ["InstallResult", "UninstallResult", "install", "uninstall"]
