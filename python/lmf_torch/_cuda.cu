// lmf_torch's CUDA part (built by scripts/torch.sh when PyTorch has CUDA and nvcc is found):
// registers lmf's CUDA backend, through which lmf::libtorch's modules take CUDA tensors.
#include <lmf/torch_cuda.cuh>
