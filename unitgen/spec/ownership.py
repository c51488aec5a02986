"""What belongs to the service: a name no part of the system holds, and the directories named after it.

The service name becomes the unit, the package, the user, /run/NAME and SYSLOG_IDENTIFIER, and
systemd chowns what RuntimeDirectory=, StateDirectory= and ReadWritePaths= name, so both are held
to the rules of issue 9.2 here: `validate_name`, `own_directory`, `own_read_write_path`.
"""

from __future__ import annotations

import re
from pathlib import Path

from unitgen.spec.fields import SpecError, shown

# A service name is used as unit name, package name, user name, directory name and
# SYSLOG_IDENTIFIER, so it must be valid as all of them: the intersection of systemd's unit
# name characters, Debian's package name rules and sysusers' user name rules.
NAME_PATTERN = r"[a-z][a-z0-9-]{0,30}[a-z0-9]"


def validate_name(name: str) -> str:
    if not re.fullmatch(NAME_PATTERN, name):
        raise SpecError(
            "service name",
            "",
            f"{shown(name)} is not a valid service name",
            hint="use 2 to 32 lower-case letters, digits and '-', starting with a letter "
            "(it names the unit, the package, the user and the directories)",
        )
    if name in SYSTEM_NAMES:
        # The name becomes /run/NAME, the package NAME and the user NAME: all taken.
        raise SpecError(
            "service name",
            "",
            f"{shown(name)} belongs to the system, systemd or another package",
            hint="the name is used for the package, the user and /run/NAME; pick one of your own",
        )
    return name


# --- Directories the service may own (issue 9.2) -------------------------------------------
#
# systemd creates RuntimeDirectory=, StateDirectory=, CacheDirectory=, LogsDirectory= and
# ConfigurationDirectory= if missing, and chowns and chmods them (and, with DynamicUser=,
# moves them under private/) when they exist; the package purges state, cache and logs.
# Given a directory that is not the service's, that takes over /run/lock (1777 -> 0755),
# /run/systemd, /var/cache/apt or /var/lib/dpkg, as root, on a production machine. So the
# first component of each of them must be named after the service: NAME itself or NAME
# followed by '-', '.' or '_' and more (the same rule Debian applies to a package's paths).
# That alone keeps out every other package whose name does not start with the service's;
# the list below also keeps out what the base system, systemd and common packages ship
# when the service's name happens to be (or prefix) one of them: a service named "user"
# must not get /run/user, nor "ca" /etc/ca-certificates.


def _words(*groups: str) -> frozenset[str]:
    return frozenset(word for group in groups for word in group.split())


SYSTEM_NAMES = _words(
    # /run on Debian 12 and Fedora with systemd: systemd's own, the base system's, and
    # the world-writable lock and shm directories.
    "adduser agetty.reload blkid console-setup credentials cryptsetup dbus dhclient dmeventd "
    "faillock host initctl initramfs lock log lvm mdadm motd.d mount netns network nologin "
    "plymouth private resolvconf rpcbind screen sendsigs.omit.d setrans shm sshd sudo sysconfig "
    "systemd tmpfiles.d udev user utmp uuidd wpa_supplicant NetworkManager avahi-daemon chrony "
    "cups containerd docker nscd samba postgresql mysqld php apache2 nginx auditd crond atd "
    "rsyslogd polkit gdm3 lightdm sddm snapd netplan firewalld "
    # /var/lib: package managers, systemd (private/ holds DynamicUser= directories), base.
    "apt aptitude dpkg private pam polkit-1 ucf sgml-base xml-core python man-db logrotate misc "
    "ntp ntpdate update-rc.d vim emacsen-common dictionaries-common ispell aspell os-prober "
    "initramfs-tools ca-certificates shells.state git rpm rpm-state dnf yum PackageKit "
    "AccountsService usbutils pci locales tpm mysql colord upower flatpak alternatives "
    "portables machines lastlog sss selinux rsyslog cloud authselect nfs bluetooth fwupd "
    "command-not-found unattended-upgrades ubuntu-advantage landscape swcatalog app-info "
    "libxml-sax-perl tex-common texmf doc-base binfmts iptables dhcp debconf sudo-ldap "
    # /var/cache
    "man ldconfig fontconfig cracklib pollinate motd-news realmd "
    # /var/log
    "journal installer sysstat audit README alternatives.log dpkg.log btmp wtmp faillog "
    "fontconfig.log syslog messages auth.log kern.log daemon.log user.log debug secure cron "
    "maillog boot.log anaconda sssd tuned letsencrypt exim4 fsck runit Xorg.0.log "
    # /etc on a Debian 12 base system (and Fedora's common ones)
    "X11 adduser.conf alternatives apparmor apparmor.d bash.bashrc bash_completion.d "
    "bindresvport.blacklist binfmt.d ca-certificates.conf cron.d cron.daily cron.hourly "
    "cron.monthly cron.weekly cron.yearly crontab dbus-1 dconf debconf.conf debian_version "
    "default deluser.conf dhcp dpkg e2scrub.conf environment environment.d ethertypes fonts "
    "fstab gai.conf group group- gshadow gshadow- gss host.conf hostname hosts init.d inputrc "
    "iproute2 issue issue.net kernel ld.so.cache ld.so.conf ld.so.conf.d ldap libaudit.conf "
    "locale.alias locale.conf locale.gen localtime login.defs logrotate.conf logrotate.d "
    "machine-id magic magic.mime mailcap manpath.config mime.types mke2fs.conf modprobe.d "
    "modules modules-load.d motd mtab netconfig networks nsswitch.conf opt os-release pam.conf "
    "pam.d passwd passwd- perl pki profile profile.d protocols python3 rc.local rc0.d rc1.d "
    "rc2.d rc3.d rc4.d rc5.d rc6.d rcS.d resolv.conf rmt rpc security selinux services shadow "
    "shadow- shells skel ssh ssl subgid subuid sudoers sudoers.d sysctl.conf sysctl.d "
    "sysusers.d terminfo timezone ucf.conf update-motd.d vconsole.conf xattr.conf xdg xml "
    "sysconfig yum.repos.d "
    # /usr/lib (app.venv): the interpreter's, systemd's, the multiarch triplets.
    "python3.11 python3.12 python3.13 x86_64-linux-gnu aarch64-linux-gnu i386-linux-gnu "
    "arm-linux-gnueabihf locale firmware init lsb mime sasl2 gnupg openssh policykit-1 jvm gcc "
    "cpp git-core file groff pkgconfig dbus-1.0 girepository-1.0 software-properties "
    "node_modules tmpfiles.d "
    # Generic directory names of the file system hierarchy itself.
    "backups cache lib local mail run spool tmp www crash games",
)
_OWN_SUFFIX = re.compile(r"[-._][A-Za-z0-9._-]+")


def is_own_name(component: str, name: str) -> bool:
    """Whether a directory name (the first component under /run, /var/lib, ...) is the service's."""
    if component in SYSTEM_NAMES or component.lower() in SYSTEM_NAMES:
        return False
    return component == name or (
        component.startswith(name) and _OWN_SUFFIX.fullmatch(component[len(name) :]) is not None
    )


def _own_hint(name: str, base: str) -> str:
    return (
        f"use a directory named after the service: {base}/{name}, {base}/{name}/SUB or "
        f"{base}/{name}-SOMETHING; directories of the system, systemd and other packages are refused"
    )


def own_directory(where: str, key: str, relative: str, name: str, base: str, value: str | None = None) -> str:
    """`relative` (a directory under `base`, as RuntimeDirectory= and friends take it) must be
    the service's own; returns it, or raises `SpecError` naming the key and the value (`value`,
    when the spec wrote something else than `relative`, e.g. the lock file)."""
    first = relative.split("/")[0]
    if not is_own_name(first, name):
        where_it_is = (
            f"{base}/{relative}" if first == relative else f"{base}/{relative} is inside {base}/{first}, which"
        )
        raise SpecError(
            where,
            key,
            f"{shown(relative if value is None else value)}: {where_it_is} is not the service's own directory"
            + (": it belongs to the system, systemd or another package" if first in SYSTEM_NAMES else ""),
            hint=_own_hint(name, base),
        )
    return relative


# ReadWritePaths=: the service may write there although ProtectSystem=strict makes the rest of
# the file system read-only. Under these trees, only a directory named after the service
# (/run/NAME, /etc/NAME, /var/lib/NAME, /var/spool/NAME ...).
_SERVICE_TREES = ("/run", "/etc", "/var/lib", "/var/cache", "/var/log", "/var/spool", "/var/opt", "/var/www")
# Never writable for a service: the operating system itself, kernel interfaces, and the
# world-writable directories (anyone can plant a symlink there).
_SYSTEM_TREES = _words(
    "/usr /boot /efi /proc /sys /dev /bin /sbin /lib /lib32 /lib64 /libx32 /root /run/user",
    # World-writable (or symlinks into /run): anyone can plant a symlink there.
    "/tmp /var/tmp /run/lock /run/shm /var/lock /var/run /var/crash",  # noqa: S108 - refused, not used
    "/var/mail /var/backups /var/local",
)


def own_read_write_path(where: str, key: str, path: str, name: str) -> str:
    p = Path(path)
    refused = None
    if len(p.parts) <= 2:
        # "/", "/var", "/srv", "/home", ...: a whole top-level tree, never one service's.
        refused = "is a whole top-level directory"
    elif any(p == Path(t) or p.is_relative_to(t) for t in _SYSTEM_TREES):
        refused = "belongs to the operating system or is world-writable"
    else:
        for tree in _SERVICE_TREES:
            if p.is_relative_to(tree):
                rest = p.relative_to(tree).parts
                if not rest or not is_own_name(rest[0], name):
                    refused = f"is under {tree} but not named after the service"
                break
        else:
            if path.startswith("/var/"):
                refused = "is a system directory under /var"
    if refused:
        raise SpecError(
            where,
            key,
            f"{shown(path)} {refused}",
            hint=f"grant the service only its own directories, e.g. /var/lib/{name} (better: "
            "state_directory = true) or /srv/" + name,
        )
    return path
