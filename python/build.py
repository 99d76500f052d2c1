"""Builds lmf_torch (python/lmf_torch) into <repo>/build/python and prints that directory.

Flags: -O3 and OpenMP, no -march: lmf compiles its kernels for SSE2, AVX2 and AVX-512 and picks
the CPU's widest at run time, so the module also runs on other x86-64 machines. Called by
scripts/torch.sh.

CUDA: when PyTorch was built with CUDA and nvcc is found (torch.utils.cpp_extension.CUDA_HOME),
python/lmf_torch/_cuda.cu is compiled in too (lmf/torch_cuda.cuh: CUDA tensors go to lmf's
CUDA kernels), for TORCH_CUDA_ARCH_LIST if set, else for the GPUs present (PyTorch's rule).
LMF_TORCH_CUDA=0 leaves it out; LMF_TORCH_CUDA=1 makes its absence, or a failure to compile it,
an error; by default (auto) a CUDA part that fails to compile is reported and left out.
"""
import os
import shutil
import subprocess
import sys

import torch
from torch.utils.cpp_extension import CUDA_HOME, load

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
out = os.path.join(root, "build", "python")
try:
    eigen = subprocess.run(["pkg-config", "--cflags-only-I", "eigen3"], capture_output=True, text=True,
                           check=True).stdout.strip()[2:].split(" -I")[0]
except (OSError, subprocess.CalledProcessError):
    eigen = ""
eigen = eigen or "/usr/include/eigen3"

want = os.environ.get("LMF_TORCH_CUDA", "auto")
if want not in ("0", "1", "auto"):
    sys.exit(f"build.py: LMF_TORCH_CUDA is {want!r} (expected 0, 1 or auto)")
nvcc = os.path.join(CUDA_HOME, "bin", "nvcc") if CUDA_HOME else None
cuda = torch.version.cuda is not None and nvcc is not None and os.path.exists(nvcc)
if want == "0":
    cuda = False
elif want == "1" and not cuda:
    sys.exit(f"build.py: LMF_TORCH_CUDA=1 but PyTorch has no CUDA (torch.version.cuda = {torch.version.cuda}) "
             f"or nvcc was not found (CUDA_HOME = {CUDA_HOME})")
print(f"build.py: lmf_torch with CUDA: {'yes (' + nvcc + ')' if cuda else 'no'}", file=sys.stderr)

# lmf needs C++17: PyTorch 1.x defaults its extensions to C++14, 2.x to its own (17 or later)
std = ["-std=c++17"] if int(torch.__version__.split(".")[0]) < 2 else []


def build(with_cuda):
    # one build directory per variant: a CPU build and a CUDA build never share objects
    work = os.path.join(out, "work-cuda" if with_cuda else "work")
    os.makedirs(work, exist_ok=True)
    sources = [os.path.join(root, "python", "lmf_torch", "_C.cpp")]
    if with_cuda:
        sources.append(os.path.join(root, "python", "lmf_torch", "_cuda.cu"))
    # Eigen as a system directory: its nvcc-only pragmas would draw -Wunknown-pragmas from the
    # host compiler. --split-compile=0: nvcc's optimizer and ptxas on every core (the kernels'
    # instantiations take minutes on one). -fopenmp in both: one definition of lmf's inline code.
    return load(name="lmf_torch_C", sources=sources,
                extra_include_paths=[os.path.join(root, "include")],
                extra_cflags=std + ["-isystem", eigen, "-O3", "-fopenmp", "-DNDEBUG", "-Wall", "-Wextra"],
                extra_cuda_cflags=std + ["-isystem", eigen, "-O3", "-DNDEBUG", "-Xcompiler=-Wall,-Wextra,-fopenmp",
                                         "--split-compile=0"],
                extra_ldflags=["-fopenmp"], build_directory=work, verbose=False, with_cuda=with_cuda)


try:
    module = build(cuda)
except Exception as e:  # noqa: BLE001  (torch's build error is a RuntimeError or OSError)
    if not cuda or want == "1":
        raise
    print(f"build.py: the CUDA part failed to build; building for CPU tensors only:\n{e}", file=sys.stderr)
    module = build(False)
shutil.copy2(module.__file__, os.path.join(out, "lmf_torch_C.so"))
os.makedirs(os.path.join(out, "lmf_torch"), exist_ok=True)
shutil.copy2(os.path.join(root, "python", "lmf_torch", "__init__.py"), os.path.join(out, "lmf_torch", "__init__.py"))
print(out)
