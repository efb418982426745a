// Bench row labels (see ftype.h).
#include "ftype.h"

#include <cctype>
#include <map>

namespace tfu_bench {

std::string llama_ftype_name(int64_t ftype) {
    // ref: llama.h enum llama_ftype
    static const std::map<int64_t, const char*> names = {
        {0, "F32"},     {1, "F16"},     {2, "Q4_0"},    {3, "Q4_1"},    {7, "Q8_0"},    {8, "Q5_0"},
        {9, "Q5_1"},    {10, "Q2_K"},   {11, "Q3_K_S"}, {12, "Q3_K_M"}, {13, "Q3_K_L"}, {14, "Q4_K_S"},
        {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"}, {18, "Q6_K"},   {32, "BF16"}};
    const auto it = names.find(ftype);
    return it != names.end() ? it->second : "";
}

std::string type_label(const char* weight_type) {
    std::string s = weight_type ? weight_type : "";
    for (char& c : s) c = char(std::toupper(static_cast<unsigned char>(c)));
    return s;
}

}  // namespace tfu_bench
