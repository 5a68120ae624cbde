# Writes a build-tree copy of one of Debian's containerd/gogo .proto files
# that protoc's C++ generator accepts: `import weak` becomes `import`, and
# gogo.proto is always imported as "gogoproto/gogo.proto".
# Usage: cmake -DSRC=<file> -DDST=<file> -P stage_proto.cmake
file(READ ${SRC} text)
string(REGEX REPLACE "import[ \t]+weak[ \t]+\"" "import \"" text "${text}")
string(REPLACE "\"github.com/gogo/protobuf/gogoproto/gogo.proto\""
               "\"gogoproto/gogo.proto\"" text "${text}")
file(WRITE ${DST}.tmp "${text}")
file(RENAME ${DST}.tmp ${DST})
