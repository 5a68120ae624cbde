# ctest crds_up_to_date: regenerates the CRDs into OUT_DIR and compares them
# with the repo's crds/ and the chart's copies in charts/stockade/crds/ (the
# generated stockade.dev_*.yaml files, byte for byte).
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
list(SORT generated)
set(stale)
foreach(repo_dir ${REPO_CRDS})
  file(GLOB committed RELATIVE ${repo_dir} ${repo_dir}/stockade.dev_*.yaml)
  list(SORT committed)
  if(NOT generated STREQUAL committed)
    string(APPEND stale
      "\nfiles differ: generated [${generated}], ${repo_dir} has [${committed}]")
  endif()
  foreach(f ${generated})
    if(EXISTS ${repo_dir}/${f})
      file(READ ${OUT_DIR}/${f} want)
      file(READ ${repo_dir}/${f} have)
      if(NOT want STREQUAL have)
        string(APPEND stale "\n${repo_dir}/${f} differs (diff above)")
        # Straight to the test's output, unformatted.
        execute_process(COMMAND diff -u ${repo_dir}/${f} ${OUT_DIR}/${f})
      endif()
    endif()
  endforeach()
endforeach()
if(stale)
  message(FATAL_ERROR "crds/ or charts/stockade/crds/ is stale: run hack/gen-crds${stale}")
endif()
message(STATUS "crds/ and charts/stockade/crds/ are up to date (${generated})")
