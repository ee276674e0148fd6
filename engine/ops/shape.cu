// CUDA side of shape.h: nothing. reshape/permute/transpose/slice are views and concat copies
// through strided_copy (copy.cu), so shape.h declares no kernels. This file keeps the CMake
// list of ops uniform (every op has NAME.cpp and NAME.cu).
