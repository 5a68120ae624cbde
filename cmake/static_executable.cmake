# stockade_static_executable(NAME SOURCES ... LIBS ...)
#
# Links an executable fully statically (-static, no dynamic loader) from the
# project's own static libraries and the static archives Debian ships beside
# each shared library they use (libabsl_*.a, libprotobuf.a, libyaml-cpp.a,
# libcrypto.a, ...). For binaries started once per container, whose start-up
# time and private memory count: a static binary does no symbol look-ups and
# dirties no relocated pages, and its text is shared through the page cache.
#
# Sanitizer and fuzz builds cannot link statically; there the executable is
# linked normally against LIBS.

# Appends the static archive beside the shared library `so` to `out`.
function(_stockade_static_archive so out)
  string(REGEX REPLACE "\\.so(\\.[0-9]+)*$" ".a" archive "${so}")
  if(NOT archive MATCHES "\\.a$" OR NOT EXISTS "${archive}")
    message(FATAL_ERROR "static link: no static archive for ${so}")
  endif()
  set(${out} ${${out}} ${archive} PARENT_SCOPE)
endfunction()

# The file an imported target stands for, whatever configuration it names.
function(_stockade_imported_location target out)
  get_target_property(loc ${target} IMPORTED_LOCATION)
  if(NOT loc)
    get_target_property(configs ${target} IMPORTED_CONFIGURATIONS)
    foreach(c IN LISTS configs)
      get_target_property(loc ${target} IMPORTED_LOCATION_${c})
      if(loc)
        break()
      endif()
    endforeach()
  endif()
  set(${out} "${loc}" PARENT_SCOPE)
endfunction()

function(stockade_static_executable name)
  cmake_parse_arguments(S "" "" "SOURCES;LIBS" ${ARGN})
  if(STOCKADE_SANITIZE OR STOCKADE_FUZZ)
    add_executable(${name} ${S_SOURCES})
    stockade_target(${name})
    target_link_libraries(${name} PRIVATE ${S_LIBS})
    return()
  endif()

  # Compiled with the usage requirements of LIBS, linked without them.
  add_library(${name}_objects OBJECT ${S_SOURCES})
  stockade_target(${name}_objects)
  target_link_libraries(${name}_objects PRIVATE ${S_LIBS})
  add_executable(${name} $<TARGET_OBJECTS:${name}_objects>)

  set(own)        # the project's static libraries, as $<TARGET_FILE:>
  set(archives)   # Debian's static archives
  set(need_absl OFF)
  set(seen)
  set(queue ${S_LIBS})
  while(queue)
    list(POP_FRONT queue item)
    string(REGEX REPLACE "^\\$<LINK_ONLY:(.*)>$" "\\1" item "${item}")
    if(item IN_LIST seen OR item STREQUAL "")
      continue()
    endif()
    list(APPEND seen ${item})
    if(item MATCHES "^absl::")
      set(need_absl ON)
    elseif(item STREQUAL "Threads::Threads" OR item MATCHES "^-")
      # -pthread is added below; other flags are not libraries.
    elseif(TARGET ${item})
      get_target_property(type ${item} TYPE)
      get_target_property(imported ${item} IMPORTED)
      set(deps)
      if(imported)
        if(NOT type STREQUAL "INTERFACE_LIBRARY")
          _stockade_imported_location(${item} loc)
          _stockade_static_archive("${loc}" archives)
        endif()
      elseif(type STREQUAL "STATIC_LIBRARY")
        list(APPEND own $<TARGET_FILE:${item}>)
        add_dependencies(${name} ${item})
        get_target_property(deps ${item} LINK_LIBRARIES)
      elseif(NOT type STREQUAL "INTERFACE_LIBRARY")
        message(FATAL_ERROR "static link of ${name}: ${item} is ${type}")
      endif()
      get_target_property(iface ${item} INTERFACE_LINK_LIBRARIES)
      foreach(list_ deps iface)
        if(${list_})
          list(APPEND queue ${${list_}})
        endif()
      endforeach()
    elseif(item MATCHES "\\.so(\\.[0-9]+)*$")
      _stockade_static_archive("${item}" archives)
    else()
      message(FATAL_ERROR "static link of ${name}: cannot resolve ${item}")
    endif()
  endwhile()
  if(need_absl)
    find_library(STOCKADE_ABSL_BASE_A NAMES libabsl_base.a REQUIRED)
    get_filename_component(absl_dir ${STOCKADE_ABSL_BASE_A} DIRECTORY)
    file(GLOB absl_archives ${absl_dir}/libabsl_*.a)
    list(SORT absl_archives)
    list(APPEND archives ${absl_archives})
  endif()
  list(REMOVE_DUPLICATES archives)
  target_link_options(${name} PRIVATE -static -pthread -Wl,--gc-sections)
  target_link_libraries(${name} PRIVATE -Wl,--start-group ${own} ${archives}
                        -Wl,--end-group)
endfunction()
