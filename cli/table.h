// Aligned text tables as kubectl prints them: upper-case headers, columns
// padded to their widest cell and separated by three spaces, no trailing
// blanks; empty cells print as "<none>".
#ifndef STOCKADE_CLI_TABLE_H_
#define STOCKADE_CLI_TABLE_H_

#include <string>
#include <vector>

namespace stockade::cli {

using TableRow = std::vector<std::string>;

// One line per row under a header line. Rows shorter than the header get
// empty cells. Widths count UTF-8 characters, not bytes.
std::string FormatTable(const TableRow& headers,
                        const std::vector<TableRow>& rows);

}  // namespace stockade::cli

#endif  // STOCKADE_CLI_TABLE_H_
