# FindCUDNN: cuDNN is not part of CMake's CUDAToolkit targets.
# Looks in CUDNN_ROOT, the CUDA toolkit and the system paths; reads the version from cudnn_version.h.
# Provides CUDNN_FOUND, CUDNN_VERSION and the imported target CUDNN::cudnn.
find_path(CUDNN_INCLUDE_DIR cudnn.h
  HINTS ${CUDNN_ROOT} $ENV{CUDNN_ROOT} ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda
  PATH_SUFFIXES include)
find_library(CUDNN_LIBRARY cudnn
  HINTS ${CUDNN_ROOT} $ENV{CUDNN_ROOT} ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda
  PATH_SUFFIXES lib64 lib lib/x86_64-linux-gnu)

if(CUDNN_INCLUDE_DIR)
  set(_cudnn_version_file ${CUDNN_INCLUDE_DIR}/cudnn_version.h)
  if(NOT EXISTS ${_cudnn_version_file})
    set(_cudnn_version_file ${CUDNN_INCLUDE_DIR}/cudnn.h)
  endif()
  file(STRINGS ${_cudnn_version_file} _cudnn_major REGEX "^#define CUDNN_MAJOR +[0-9]+")
  file(STRINGS ${_cudnn_version_file} _cudnn_minor REGEX "^#define CUDNN_MINOR +[0-9]+")
  file(STRINGS ${_cudnn_version_file} _cudnn_patch REGEX "^#define CUDNN_PATCHLEVEL +[0-9]+")
  string(REGEX MATCH "[0-9]+$" _cudnn_major "${_cudnn_major}")
  string(REGEX MATCH "[0-9]+$" _cudnn_minor "${_cudnn_minor}")
  string(REGEX MATCH "[0-9]+$" _cudnn_patch "${_cudnn_patch}")
  set(CUDNN_VERSION "${_cudnn_major}.${_cudnn_minor}.${_cudnn_patch}")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(CUDNN
  REQUIRED_VARS CUDNN_LIBRARY CUDNN_INCLUDE_DIR
  VERSION_VAR CUDNN_VERSION)

if(CUDNN_FOUND AND NOT TARGET CUDNN::cudnn)
  add_library(CUDNN::cudnn UNKNOWN IMPORTED GLOBAL)
  set_target_properties(CUDNN::cudnn PROPERTIES
    IMPORTED_LOCATION ${CUDNN_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${CUDNN_INCLUDE_DIR})
endif()
mark_as_advanced(CUDNN_INCLUDE_DIR CUDNN_LIBRARY)
