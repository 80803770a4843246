"""ops/ansible passes ansible-lint with the production profile (needs the `fleet` extra)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ANSIBLE_DIR = Path(__file__).resolve().parents[1] / "ops" / "ansible"
LINT = Path(sys.executable).with_name("ansible-lint")


@pytest.mark.skipif(not LINT.exists(),
                    reason="ansible-lint not installed: pip install -e '.[fleet]'")
def test_ansible_lint_production_profile_is_clean(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=f"{LINT.parent}{os.pathsep}{os.environ.get('PATH', '')}",
               NO_COLOR="1", ANSIBLE_HOME=str(tmp_path / "ansible-home"))
    out = subprocess.run([str(LINT), "--offline", "--profile", "production", "--nocolor"],
                         cwd=ANSIBLE_DIR, env=env, capture_output=True, text=True, timeout=600)
    report = out.stdout + out.stderr
    assert out.returncode == 0, report
    assert "Profile 'production' was required, and it passed" in report, report
