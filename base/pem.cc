#include "base/pem.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace stockade {

absl::StatusOr<std::string> ReadPemFile(const std::string& path,
                                        const std::string& what) {
  if (path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("mTLS needs the ", what, " file (or --insecure)"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read the ", what, " file ", path));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text.find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("the ", what, " file ", path, " holds no PEM block"));
  }
  return text;
}

}  // namespace stockade
