# Debian 12's xsimd 8.1 exports its target with INTERFACE_LINK_LIBRARIES "xtl" but never finds
# xtl, so linking it adds a bare -lxtl that does not exist. lmf uses no xtl feature: where no
# xtl target is defined, define an empty one so that the name resolves to nothing.
if(TARGET xsimd AND NOT TARGET xtl)
  find_package(xtl QUIET CONFIG)
  if(NOT TARGET xtl)
    add_library(xtl INTERFACE IMPORTED)
  endif()
endif()
