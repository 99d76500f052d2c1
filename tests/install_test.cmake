# Installs lmf to a temporary prefix and builds tests/consumer against it with
# find_package(lmf CONFIG), then runs the consumer.
file(REMOVE_RECURSE ${LMF_WORK})
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install test: '${ARGN}' failed (${rc}):\n${out}\n${err}")
  endif()
endfunction()
run(${CMAKE_COMMAND} -S ${LMF_SOURCE} -B ${LMF_WORK}/lmf -G ${LMF_GENERATOR} -DLMF_BUILD_TESTS=OFF
    -DLMF_BUILD_EXAMPLES=OFF -DLMF_BUILD_BENCH=OFF -DLMF_INSTALL=ON -DCMAKE_INSTALL_PREFIX=${LMF_WORK}/prefix)
run(${CMAKE_COMMAND} --install ${LMF_WORK}/lmf)
run(${CMAKE_COMMAND} -S ${LMF_SOURCE}/tests/consumer -B ${LMF_WORK}/consumer -G ${LMF_GENERATOR}
    -DCMAKE_PREFIX_PATH=${LMF_WORK}/prefix -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${LMF_WORK}/consumer)
run(${LMF_WORK}/consumer/consumer)
message(STATUS "install test: find_package(lmf CONFIG) consumer built and ran")
