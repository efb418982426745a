// AST of a parsed chat template: expression and statement nodes (shapes documented per kind).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "chat/value.h"

namespace tfu::chat {

struct expr;
using expr_ptr = std::unique_ptr<expr>;

struct expr {
    enum class kind {
        literal,      // lit
        name,         // name: variable lookup
        list,         // kids: elements; name "tuple" for (a, b)
        dict,         // kids: k0, v0, k1, v1, ...
        attr,         // kids[0].name (x.y)
        item,         // kids[0][kids[1]]
        slice,        // kids[0][kids[1]:kids[2]:kids[3]], absent parts are null
        call,         // kids[0](args)          args: kids[1..1+n_pos) positional, then kw_names.size() keyword
        filter,       // name: filter; kids[0] input (null inside {% filter %}: the block text), then args
        test,         // name: test; kids[0] subject, then args; negate for "is not"
        not_,         // not kids[0]
        neg,          // -kids[0]
        pos,          // +kids[0]
        binary,       // kids[0] op kids[1]; op in + - * / // % ** ~
        compare,      // kids[0] ops[0] kids[1] ops[1] kids[2] ...; ops in == != < <= > >= in notin
        and_,         // kids[0] and kids[1]
        or_,          // kids[0] or kids[1]
        cond,         // kids[0] if kids[1] else kids[2] (kids[2] may be null: undefined)
    };
    kind k;
    int line = 0;
    int depth = 1;                     // 1 + deepest child: bounded by the parser (stack safety)
    value lit;
    std::string name;                  // name, attribute, filter, test, or binary operator
    std::vector<expr_ptr> kids;
    size_t n_pos = 0;                  // call/filter/test: number of positional args after kids[0]
    std::vector<std::string> kw_names; // call/filter/test: keyword args (the last kw_names.size() kids)
    std::vector<std::string> ops;      // compare
    bool negate = false;               // test: "is not"
};

struct stmt;
using stmt_ptr = std::unique_ptr<stmt>;
using stmt_list = std::vector<stmt_ptr>;

struct macro_param {
    std::string name;
    expr_ptr default_value;  // null: required (undefined when not passed, as Jinja)
};

struct stmt {
    enum class kind {
        text,         // text
        output,       // {{ e }}
        if_,          // if e: body else else_body (elif is a nested if_ inside else_body)
        for_,         // for targets in e [if cond]: body else else_body
        set,          // set targets = e; attr non-empty: set targets[0].attr = e (namespace)
        set_block,    // {% set targets[0] %}body{% endset %}, filters applied when e (a filter chain) is set
        macro,        // macro name(params): body
        call_block,   // {% call e %}body{% endcall %}: e is a call whose callee sees caller() = body
        filter_block, // {% filter e %}body{% endfilter %}: e is a filter chain over the block text
        break_,
        continue_,
    };
    kind k;
    int line = 0;
    std::string text;
    expr_ptr e;
    expr_ptr cond;                      // for_: the "if" filter
    std::vector<std::string> targets;   // for_/set: names (several: tuple unpacking)
    std::string attr;                   // set: namespace attribute
    std::string name;                   // macro name
    std::vector<macro_param> params;    // macro parameters
    stmt_list body, else_body;
};

}  // namespace tfu::chat
