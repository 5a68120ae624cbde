# ctest crds_up_to_date: regenerates the CRDs into OUT_DIR and compares them
# with the repo's crds/ (the generated stockade.dev_*.yaml files, byte for byte).
file(REMOVE_RECURSE ${OUT_DIR})
file(MAKE_DIRECTORY ${OUT_DIR})
set(includes -I ${PROTO_DIR})
foreach(dir ${PROTOBUF_INCLUDE_DIRS})
  list(APPEND includes -I ${dir})
endforeach()
execute_process(
  COMMAND ${PROTOC} --plugin=protoc-gen-stockade-crd=${PLUGIN}
          --stockade-crd_out=${OUT_DIR} ${includes} ${PROTOS}
  WORKING_DIRECTORY ${PROTO_DIR}
  RESULT_VARIABLE rc
  ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "protoc-gen-stockade-crd failed:\n${err}")
endif()

file(GLOB generated RELATIVE ${OUT_DIR} ${OUT_DIR}/stockade.dev_*.yaml)
file(GLOB committed RELATIVE ${REPO_CRDS} ${REPO_CRDS}/stockade.dev_*.yaml)
list(SORT generated)
list(SORT committed)
set(stale)
if(NOT generated STREQUAL committed)
  set(stale "files differ: generated [${generated}], crds/ has [${committed}]")
endif()
foreach(f ${generated})
  if(EXISTS ${REPO_CRDS}/${f})
    file(READ ${OUT_DIR}/${f} want)
    file(READ ${REPO_CRDS}/${f} have)
    if(NOT want STREQUAL have)
      string(APPEND stale "\n${f} differs (diff above)")
      # Straight to the test's output, unformatted.
      execute_process(COMMAND diff -u ${REPO_CRDS}/${f} ${OUT_DIR}/${f})
    endif()
  endif()
endforeach()
if(stale)
  message(FATAL_ERROR "crds/ is stale: run hack/gen-crds\n${stale}")
endif()
message(STATUS "crds/ is up to date (${generated})")
