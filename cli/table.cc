#include "cli/table.h"

#include <algorithm>

#include "absl/strings/ascii.h"

namespace stockade::cli {
namespace {

constexpr char kEmpty[] = "<none>";
constexpr size_t kGap = 3;

size_t Width(const std::string& s) {
  // Count every byte that does not continue a UTF-8 sequence.
  return static_cast<size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

}  // namespace

std::string FormatTable(const TableRow& headers,
                        const std::vector<TableRow>& rows) {
  std::vector<TableRow> lines;
  lines.reserve(rows.size() + 1);
  TableRow head;
  for (const std::string& h : headers) head.push_back(absl::AsciiStrToUpper(h));
  lines.push_back(std::move(head));
  for (const TableRow& row : rows) {
    TableRow line(headers.size());
    for (size_t i = 0; i < headers.size(); ++i) {
      line[i] = i < row.size() && !row[i].empty() ? row[i] : kEmpty;
    }
    lines.push_back(std::move(line));
  }
  std::vector<size_t> widths(headers.size(), 0);
  for (const TableRow& line : lines) {
    for (size_t i = 0; i < line.size(); ++i) {
      widths[i] = std::max(widths[i], Width(line[i]));
    }
  }
  std::string out;
  for (const TableRow& line : lines) {
    std::string text;
    for (size_t i = 0; i < line.size(); ++i) {
      text += line[i];
      if (i + 1 < line.size()) {
        text.append(widths[i] - Width(line[i]) + kGap, ' ');
      }
    }
    out += text;
    out += '\n';
  }
  return out;
}

}  // namespace stockade::cli
