# Instruction sets for lmf's own targets.
#
# lmf_isa_flags(<isa> <out-var>): compiler flags for an instruction set name:
#   baseline  nothing (the compiler's default: SSE2 on x86-64)
#   avx2      -mavx2 -mfma
#   avx512    AVX-512 F, CD, BW, DQ, VL, with FMA (lmf's avx512 set)
#   native    -march=native
#   anything else is taken as flags (a string of space-separated options)
# lmf_host_isas(<out-var>): baseline, then avx2 and avx512 where this host can run them.
function(lmf_isa_flags isa out)
  if(isa STREQUAL "baseline")
    set(flags "")
  elseif(isa STREQUAL "avx2")
    set(flags -mavx2 -mfma)
  elseif(isa STREQUAL "avx512")
    set(flags -mavx2 -mfma -mavx512f -mavx512cd -mavx512bw -mavx512dq -mavx512vl)
  elseif(isa STREQUAL "native")
    set(flags -march=native)
  else()
    separate_arguments(flags UNIX_COMMAND "${isa}")
  endif()
  set(${out} "${flags}" PARENT_SCOPE)
endfunction()

function(lmf_host_isas out)
  set(isas baseline)
  if(EXISTS /proc/cpuinfo AND CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
    file(READ /proc/cpuinfo cpuinfo)
    if(cpuinfo MATCHES " avx2 " AND cpuinfo MATCHES " fma ")
      list(APPEND isas avx2)
    endif()
    if(cpuinfo MATCHES " avx512f " AND cpuinfo MATCHES " avx512bw " AND cpuinfo MATCHES " avx512dq "
       AND cpuinfo MATCHES " avx512vl " AND cpuinfo MATCHES " avx512cd ")
      list(APPEND isas avx512)
    endif()
  endif()
  set(${out} "${isas}" PARENT_SCOPE)
endfunction()
