"""The hardening directives a service gets, from the spec's [hardening] opt-outs.

The defaults score 1.0 (network service) and 0.3 (network = false) on
`systemd-analyze security --offline=true`; see tests/test_render_check.py. Only what the
service needs is left open: AF_UNIX for the journal and notify sockets, and AF_INET/AF_INET6
when it has a network.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from unitgen import escape
from unitgen.spec import Spec

Directive = tuple[str, str]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def hardening_directives(spec: Spec) -> list[Directive]:
    h = spec.hardening
    caps = " ".join(h.capabilities)
    # PrivateUsers= maps the service into a user namespace, where capabilities mean nothing
    # to the host (binding port 80 would fail), so granting capabilities turns it off.
    private_users = h.private_users and not h.capabilities
    families = ["AF_UNIX", *(["AF_INET", "AF_INET6"] if spec.network else []), *h.address_families]

    out: list[Directive] = [
        ("UMask", "0077"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", caps),
        ("AmbientCapabilities", caps),
        ("ProtectSystem", h.protect_system.value),
        ("ProtectHome", _yes(h.protect_home)),
        ("PrivateTmp", _yes(h.private_tmp)),
        ("PrivateDevices", _yes(h.private_devices)),
    ]
    if h.private_devices:
        out.append(("DevicePolicy", "closed"))
    out += [
        ("PrivateUsers", _yes(private_users)),
        ("PrivateMounts", "yes"),
        ("ProtectHostname", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
    ]
    if h.protect_proc:
        out += [("ProtectProc", "invisible"), ("ProcSubset", "pid")]
    if not spec.network:
        out.append(("PrivateNetwork", "yes"))
    out.append(("RestrictAddressFamilies", " ".join(families)))
    if not spec.network:
        out.append(("IPAddressDeny", "any"))
    elif h.ip_address_allow is not None:
        # An allow list must let the launcher reach etcd: the members given as addresses are added
        # (members given by name need their addresses listed, and DNS, by the spec itself).
        allow = [*h.ip_address_allow, *(a for a in etcd_addresses(spec) if a not in h.ip_address_allow)]
        out += [("IPAddressDeny", "any"), ("IPAddressAllow", " ".join(allow))]
    out += [
        ("RestrictNamespaces", _yes(h.restrict_namespaces)),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", _yes(h.memory_deny_write_execute)),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("RemoveIPC", "yes"),
        ("KeyringMode", "private"),
        ("SystemCallArchitectures", "native"),
    ]
    if h.system_call_filter:
        out += [
            ("SystemCallFilter", "@system-service"),
            ("SystemCallFilter", "~@privileged @resources"),
            ("SystemCallErrorNumber", "EPERM"),
        ]
    if h.read_write_paths:
        out.append(("ReadWritePaths", escape.word_list(h.read_write_paths)))
    return out


def etcd_addresses(spec: Spec) -> list[str]:
    """The fleet lock's etcd members that are IP addresses (in order, once each)."""
    found: list[str] = []
    for endpoint in spec.lock.etcd if spec.lock.is_fleet else ():
        try:
            address = str(ipaddress.ip_address(urlsplit(endpoint).hostname or ""))
        except ValueError:
            continue  # a host name
        if address not in found:
            found.append(address)
    return found


def limit_directives(spec: Spec) -> list[Directive]:
    lim = spec.limits
    pairs: list[tuple[str, object]] = [
        ("LimitNOFILE", lim.nofile),
        ("LimitNPROC", lim.nproc),
        ("MemoryMax", lim.memory_max),
        ("CPUQuota", lim.cpu_quota),
        ("TasksMax", lim.tasks_max),
    ]
    return [(name, str(value)) for name, value in pairs if value is not None]
