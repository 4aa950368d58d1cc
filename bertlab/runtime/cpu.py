"""What the CPU says of itself in /proc/cpuinfo (Linux): its vendor, its model name."""

from __future__ import annotations


def cpuinfo(field: str) -> str:
    """The first `field` line of /proc/cpuinfo ('vendor_id' -> 'GenuineIntel', 'model name'
    -> 'Intel(R) Xeon(R) ...'), '' where the file or the field is missing (other systems)."""
    try:
        with open("/proc/cpuinfo") as lines:
            for line in lines:
                name, _, value = line.partition(":")
                if name.strip() == field:
                    return value.strip()
    except OSError:
        pass
    return ""
