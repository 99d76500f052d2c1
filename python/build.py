"""Builds lmf_torch (python/lmf_torch) into <repo>/build/python and prints that directory.

Flags: -O3 and OpenMP, no -march: lmf compiles its kernels for SSE2, AVX2 and AVX-512 and picks
the CPU's widest at run time, so the module also runs on other x86-64 machines. Called by
scripts/torch.sh.
"""
import os
import shutil
import subprocess
import sys

from torch.utils.cpp_extension import load

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
out = os.path.join(root, "build", "python")
work = os.path.join(out, "work")
os.makedirs(work, exist_ok=True)
try:
    eigen = subprocess.run(["pkg-config", "--cflags-only-I", "eigen3"], capture_output=True, text=True,
                           check=True).stdout.strip()[2:].split(" -I")[0]
except (OSError, subprocess.CalledProcessError):
    eigen = ""
eigen = eigen or "/usr/include/eigen3"
module = load(name="lmf_torch_C", sources=[os.path.join(root, "python", "lmf_torch", "_C.cpp")],
              extra_include_paths=[os.path.join(root, "include"), eigen],
              extra_cflags=["-std=c++17", "-O3", "-fopenmp", "-DNDEBUG", "-Wall", "-Wextra"],
              extra_ldflags=["-fopenmp"], build_directory=work, verbose=False)
shutil.copy2(module.__file__, os.path.join(out, "lmf_torch_C.so"))
os.makedirs(os.path.join(out, "lmf_torch"), exist_ok=True)
shutil.copy2(os.path.join(root, "python", "lmf_torch", "__init__.py"), os.path.join(out, "lmf_torch", "__init__.py"))
print(out)
