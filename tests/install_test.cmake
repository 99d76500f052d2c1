# Installs lmf to a temporary prefix and builds tests/consumer against it with
# find_package(lmf CONFIG), then runs the consumer; then builds the same consumer with the
# compiler alone and `pkg-config --cflags lmf` (the installed lmf.pc), and runs it.
file(REMOVE_RECURSE ${LMF_WORK})
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install test: '${ARGN}' failed (${rc}):\n${out}\n${err}")
  endif()
endfunction()
run(${CMAKE_COMMAND} -S ${LMF_SOURCE} -B ${LMF_WORK}/lmf -G ${LMF_GENERATOR} -DLMF_BUILD_TESTS=OFF
    -DLMF_BUILD_EXAMPLES=OFF -DLMF_BUILD_BENCH=OFF -DLMF_CUDA=OFF -DLMF_INSTALL=ON -DCMAKE_INSTALL_PREFIX=${LMF_WORK}/prefix)
run(${CMAKE_COMMAND} --install ${LMF_WORK}/lmf)
run(${CMAKE_COMMAND} -S ${LMF_SOURCE}/tests/consumer -B ${LMF_WORK}/consumer -G ${LMF_GENERATOR}
    -DCMAKE_PREFIX_PATH=${LMF_WORK}/prefix -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${LMF_WORK}/consumer)
run(${LMF_WORK}/consumer/consumer)
message(STATUS "install test: find_package(lmf CONFIG) consumer built and ran")

find_program(LMF_PKG_CONFIG pkg-config)
if(NOT LMF_PKG_CONFIG)
  message(FATAL_ERROR "install test: pkg-config not found (Debian: apt-get install pkg-config)")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${LMF_WORK}/prefix/share/pkgconfig
                        ${LMF_PKG_CONFIG} --cflags lmf
                RESULT_VARIABLE rc OUTPUT_VARIABLE cflags ERROR_VARIABLE err OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "install test: pkg-config --cflags lmf failed (${rc}): ${err}")
endif()
if(NOT cflags MATCHES "${LMF_WORK}/prefix/include")
  message(FATAL_ERROR "install test: pkg-config --cflags lmf gave '${cflags}', without the installed include directory")
endif()
separate_arguments(cflags UNIX_COMMAND "${cflags}")
run(${LMF_CXX} -std=c++17 -O1 ${cflags} ${LMF_SOURCE}/tests/consumer/consumer.cpp -o ${LMF_WORK}/consumer_pkgconfig)
run(${LMF_WORK}/consumer_pkgconfig)
message(STATUS "install test: pkg-config consumer (${cflags}) built and ran")
