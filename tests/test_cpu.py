"""Process-wide CPU settings."""

import platform

import pytest

from pathwise.cpu import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc settings exist in glibc only")
def test_glibc_accepts_the_malloc_settings():
    assert keep_freed_memory()
    assert keep_freed_memory()  # idempotent: a second configure_cpu (a resumed run in one process) is fine
