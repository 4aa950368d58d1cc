"""cpuinfo reads a field of /proc/cpuinfo, '' when it is missing."""

import builtins
import io

from bertlab.runtime import cpu

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu vme

processor\t: 1
vendor_id\t: GenuineIntel
"""


def test_reads_the_first_line_of_a_field(monkeypatch):
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: io.StringIO(CPUINFO))
    assert cpu.cpuinfo("vendor_id") == "GenuineIntel"
    assert cpu.cpuinfo("model name") == "Intel(R) Xeon(R) Processor"
    assert cpu.cpuinfo("model") == ""  # a field name, not a prefix of one


def test_a_missing_file_gives_an_empty_string(monkeypatch):
    def missing(*args, **kwargs):
        raise FileNotFoundError("/proc/cpuinfo")

    monkeypatch.setattr(builtins, "open", missing)
    assert cpu.cpuinfo("vendor_id") == ""
