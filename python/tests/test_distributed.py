"""The torch.distributed example (python/examples/distributed.py): two gloo processes with half a
batch each, all-reducing lmf's totals, match one process to 1e-12."""
import os
import subprocess
import sys


def test_two_processes_match_one():
    example = os.path.join(os.path.dirname(__file__), "..", "examples", "distributed.py")
    r = subprocess.run([sys.executable, example], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "shards agree with one process" in r.stdout
